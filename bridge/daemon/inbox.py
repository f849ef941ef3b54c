"""The durable inbox: events ``(system, entity, ext_id)`` waiting to be synced.

Pollers and the webhook receiver ``enqueue``; workers ``claim``, then ``complete``,
``retry`` or ``dead_letter``. It lives in the store's database, so an accepted event
survives a crash, and the rules below hold across processes:

* a pending event for an object absorbs later arrivals for it (coalescing); an event
  already being processed does not, so a change made meanwhile gets its own pending event;
* a webhook delivery id seen before is dropped;
* at most one event per object is in flight; a claim whose worker died (lease expired)
  becomes claimable again and counts as a failed attempt, so a poison event cannot loop;
* failures back off exponentially with full jitter, never sooner than the system's
  ``Retry-After``; after ``max_attempts`` the event becomes a dead letter, replayable.

Claiming is one transaction: ``BEGIN IMMEDIATE`` on SQLite; on PostgreSQL
``SELECT … FOR UPDATE SKIP LOCKED`` (pass rows other transactions are touching) under a
short advisory lock, which makes the "object not already in flight" check atomic across
claimers (row locks alone cannot: the conflicting event is another row).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import (
    Connection,
    Insert,
    Row,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    update,
)

from bridge.config import CLAIM_LEASE_SECONDS
from bridge.store import schema
from bridge.store.connect import advisory_lock
from bridge.store.schema import UtcDateTime
from bridge.store.statements import upsert
from bridge.timeutil import as_utc

if TYPE_CHECKING:
    from bridge.config import SyncConfig
    from bridge.store import Store, UnitOfWork

Source = Literal["webhook", "poll", "retry"]
SOURCES: tuple[str, ...] = ("webhook", "poll", "retry")
RetryOutcome = Literal["retry", "dead", "lost"]

CLAIM_LOCK = "relbridge.inbox.claim"
PENDING, CLAIMED, DEAD = "pending", "claimed", "dead"

_events = schema.events


# The statements of the hot paths (enqueue, claim, complete) are built once, with bound
# parameters (see bridge.store.operations).
def _claimable() -> tuple[Any, Any]:
    """(the claimable events, oldest first; the id of any one of them) at ``now``."""
    e, other = _events, _events.alias("other")
    now = bindparam("now", type_=UtcDateTime())
    in_flight = exists().where(
        other.c.system == e.c.system, other.c.entity == e.c.entity,
        other.c.ext_id == e.c.ext_id, other.c.id != e.c.id,
        other.c.state == CLAIMED, other.c.claim_expires > now)
    due = or_(and_(e.c.state == PENDING, e.c.not_before <= now),
              and_(e.c.state == CLAIMED, e.c.claim_expires <= now))
    return (select(e).where(due, ~in_flight).order_by(e.c.not_before, e.c.id)
            .limit(bindparam("limit")).with_for_update(skip_locked=True, of=e),
            select(e.c.id).where(due, ~in_flight).limit(1))


_CLAIMABLE, _ANY_CLAIMABLE = _claimable()
_TAKE = update(_events).where(_events.c.id == bindparam("w_id")).values(
    state=CLAIMED, attempts=bindparam("new_attempts"), last_error=bindparam("new_error"),
    claimed_by=bindparam("worker"), claim_token=bindparam("token"), claim_expires=bindparam("expires"))
# The row of an event as long as the claim that handed it out still holds it (parameters:
# ``_mine(event)``).
_MINE = and_(_events.c.id == bindparam("w_id"), _events.c.state == CLAIMED,
             _events.c.claim_token == bindparam("w_token"))
_SELECT_MINE = select(_events).where(_MINE)
_COMPLETE = delete(_events).where(_MINE)
_RENEW = update(_events).where(_MINE).values(claim_expires=bindparam("expires"))


@cache
def _enqueue_statements(dialect_name: str) -> tuple[Insert, Insert]:
    """(delivery id seen first?, coalescing event insert) for one database."""
    d = schema.deliveries
    first = upsert(dialect_name, d).on_conflict_do_nothing(
        index_elements=["system", "delivery_id"]).returning(d.c.delivery_id)
    ins = upsert(dialect_name, _events)
    coalesce = ins.on_conflict_do_update(
        index_elements=["system", "entity", "ext_id"],
        # A literal, not a parameter: PostgreSQL matches the partial index by it.
        index_where=text(f"state = '{PENDING}'"),
        set_={
            "deleted": _events.c.deleted | ins.excluded.deleted,
            # A new change does not cut short a backoff the system asked for.
            "not_before": case((_events.c.attempts > 0, _events.c.not_before),
                               else_=ins.excluded.not_before),
        })
    return first, coalesce


@dataclass(frozen=True)
class Event:
    """One inbox entry. ``claim_token`` identifies the claim that handed it out."""

    id: int
    system: str
    entity: str
    ext_id: str
    source: str
    attempts: int
    received_at: datetime
    deleted: bool
    last_error: str | None
    claim_token: str | None = None
    dead_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> Event:
        return cls(id=row.id, system=row.system, entity=row.entity, ext_id=row.ext_id,
                   source=row.source, attempts=row.attempts, received_at=row.received_at,
                   deleted=row.deleted, last_error=row.last_error,
                   claim_token=row.claim_token, dead_at=row.dead_at)


class Inbox:
    """The durable event queue in ``store``'s database (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        max_attempts: int = 8,
        retry_base_seconds: float = 1.0,
        retry_max_seconds: float = 300.0,
        delivery_retention: timedelta = timedelta(days=7),
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1 or retry_base_seconds <= 0 or retry_max_seconds <= 0:
            raise ValueError("max_attempts >= 1 and positive retry delays are required")
        self.store = store
        self.max_attempts = max_attempts
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self.delivery_retention = delivery_retention
        self.rng = rng or random.Random()

    @classmethod
    def from_config(cls, store: Store, sync: SyncConfig) -> Inbox:
        return cls(store, max_attempts=sync.max_attempts,
                   retry_base_seconds=sync.retry_base_seconds,
                   retry_max_seconds=sync.retry_max_seconds)

    def _now(self) -> datetime:
        return as_utc(self.store.clock())

    # -- producers -------------------------------------------------------------------------

    def enqueue(
        self, system: str, entity: str, ext_id: str, *, source: Source,
        delivery_id: str | None = None, deleted: bool = False, within: UnitOfWork | None = None,
    ) -> bool:
        """Accept a change notice; False when ``delivery_id`` was already accepted.

        A pending event for the same object absorbs this one (earliest ``received_at``
        kept; due now, unless it is backing off after a failure). ``within`` enqueues as
        part of a caller's unit of work (e.g. together with a poller's watermark).
        """
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
        context = within.connection() if within is not None else self.store.begin()
        with context as conn:
            now = self._now()
            first, coalesce = _enqueue_statements(conn.dialect.name)
            if delivery_id is not None and conn.execute(first, {
                    "system": system, "delivery_id": delivery_id, "seen_at": now}).first() is None:
                return False
            conn.execute(coalesce, {
                "system": system, "entity": entity, "ext_id": ext_id, "source": source,
                "deleted": deleted, "state": PENDING, "attempts": 0, "received_at": now,
                "not_before": now})
        return True

    def prune_deliveries(self) -> int:
        """Forget delivery ids older than the retention; returns how many."""
        d = schema.deliveries
        with self.store.begin() as conn:
            cutoff = self._now() - self.delivery_retention
            return conn.execute(delete(d).where(d.c.seen_at < cutoff)).rowcount

    # -- workers ---------------------------------------------------------------------------

    def claim(self, worker: str, limit: int = 1,
              lease_seconds: float = CLAIM_LEASE_SECONDS) -> list[Event]:
        """Hand out up to ``limit`` due events to ``worker`` for ``lease_seconds``.

        Never two events of one object at once; expired claims are taken back (counted as
        a failed attempt, dead-lettered once attempts are used up).
        """
        if limit < 1:
            return []
        # A look first, without the write lock: an idle worker asks twice a second, and a
        # worker done with an event asks again at once, mostly finding nothing.
        with self.store.begin(write=False) as conn:
            if conn.execute(_ANY_CLAIMABLE, {"now": self._now()}).first() is None:
                return []
        with self.store.begin() as conn:
            advisory_lock(conn, CLAIM_LOCK)
            now = self._now()
            # Read a few extra: rows of an object already picked in this batch are skipped.
            rows = conn.execute(_CLAIMABLE, {"now": now, "limit": limit * 2}).all()
            claimed: list[Event] = []
            objects: set[tuple[str, str, str]] = set()
            for row in rows:
                obj = (row.system, row.entity, row.ext_id)
                if len(claimed) == limit or obj in objects:
                    continue
                event = self._take(conn, row, worker, now, lease_seconds)
                if event is not None:
                    objects.add(obj)
                    claimed.append(event)
        return claimed

    def _take(
        self, conn: Connection, row: Row[Any], worker: str, now: datetime, lease_seconds: float
    ) -> Event | None:
        attempts, last_error = row.attempts, row.last_error
        if row.state == CLAIMED:  # its worker stopped without finishing
            attempts += 1
            last_error = f"claim by {row.claimed_by} expired before it finished"
            if attempts >= self.max_attempts:
                conn.execute(update(_events).where(_events.c.id == row.id).values(
                    state=DEAD, attempts=attempts, last_error=last_error, dead_at=now,
                    claimed_by=None, claim_token=None, claim_expires=None))
                return None
        token = uuid.uuid4().hex
        conn.execute(_TAKE, {"w_id": row.id, "new_attempts": attempts, "new_error": last_error,
                             "worker": worker, "token": token,
                             "expires": now + timedelta(seconds=lease_seconds)})
        return Event(id=row.id, system=row.system, entity=row.entity, ext_id=row.ext_id,
                     source=row.source, attempts=attempts, received_at=row.received_at,
                     deleted=row.deleted, last_error=last_error, claim_token=token)

    def complete(self, event: Event) -> bool:
        """Done: remove the event. False if the claim had expired and been handed out again."""
        with self.store.begin() as conn:
            return conn.execute(_COMPLETE, _mine(event)).rowcount > 0

    def renew(self, event: Event, lease_seconds: float = CLAIM_LEASE_SECONDS) -> bool:
        """Extend a claim for slow work; False if it had already expired and been taken."""
        with self.store.begin() as conn:
            return conn.execute(_RENEW, {**_mine(event),
                                         "expires": self._now() + timedelta(seconds=lease_seconds)}).rowcount > 0

    def retry(self, event: Event, error: str, *, retry_after: float | None = None) -> RetryOutcome:
        """Failed, try again later: ``"retry"``, ``"dead"`` (attempts used up) or ``"lost"``
        (the claim had expired and been handed out again: nothing changed)."""
        with self.store.begin() as conn:
            row = conn.execute(_SELECT_MINE, _mine(event)).first()
            if row is None:
                return "lost"
            now = self._now()
            attempts = row.attempts + 1
            if attempts >= self.max_attempts:
                self._bury(conn, row.id, attempts, error, now)
                return "dead"
            not_before = now + timedelta(seconds=self.backoff(attempts, retry_after))
            pending = self._pending_for(conn, row)
            if pending is None:
                conn.execute(update(_events).where(_events.c.id == row.id).values(
                    state=PENDING, attempts=attempts, last_error=error, not_before=not_before,
                    claimed_by=None, claim_token=None, claim_expires=None))
            else:  # a newer change is already waiting: one event covers both
                conn.execute(delete(_events).where(_events.c.id == row.id))
                conn.execute(update(_events).where(_events.c.id == pending.id).values(
                    attempts=max(attempts, pending.attempts), last_error=error,
                    not_before=max(not_before, pending.not_before),
                    received_at=min(row.received_at, pending.received_at),
                    deleted=row.deleted or pending.deleted))
            return "retry"

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds before attempt ``attempts + 1``: full jitter, at least ``retry_after``."""
        exponent = min(max(attempts - 1, 0), 60)
        ceiling = min(self.retry_max_seconds, self.retry_base_seconds * 2.0**exponent)
        delay = self.rng.uniform(0, ceiling)
        return max(delay, retry_after) if retry_after is not None else delay

    def dead_letter(self, event: Event, reason: str) -> bool:
        """Give up on a claimed event now (a permanent error); False if no longer ours."""
        with self.store.begin() as conn:
            row = conn.execute(_SELECT_MINE, _mine(event)).first()
            if row is None:
                return False
            self._bury(conn, row.id, row.attempts + 1, reason, self._now())
            return True

    @staticmethod
    def _bury(conn: Connection, event_id: int, attempts: int, reason: str, now: datetime) -> None:
        conn.execute(update(_events).where(_events.c.id == event_id).values(
            state=DEAD, attempts=attempts, last_error=reason, dead_at=now,
            claimed_by=None, claim_token=None, claim_expires=None))

    @staticmethod
    def _pending_for(conn: Connection, row: Row[Any]) -> Row[Any] | None:
        return conn.execute(select(_events).where(
            _events.c.system == row.system, _events.c.entity == row.entity,
            _events.c.ext_id == row.ext_id, _events.c.state == PENDING)).first()

    # -- dead letters ----------------------------------------------------------------------

    def dead_letters(self) -> list[Event]:
        """Dead letters, most recent first."""
        with self.store.begin(write=False) as conn:
            rows = conn.execute(select(_events).where(_events.c.state == DEAD)
                                .order_by(_events.c.dead_at.desc(), _events.c.id.desc()))
            return [Event.from_row(row) for row in rows]

    def retry_dead(self, event_id: int) -> bool:
        """Put a dead letter back in the queue with fresh attempts; False if no such one."""
        with self.store.begin() as conn:
            row = conn.execute(select(_events).where(
                _events.c.id == event_id, _events.c.state == DEAD)).first()
            if row is None:
                return False
            if self._pending_for(conn, row) is not None:  # already queued again
                conn.execute(delete(_events).where(_events.c.id == event_id))
                return True
            conn.execute(update(_events).where(_events.c.id == event_id).values(
                state=PENDING, source="retry", attempts=0, not_before=self._now(),
                dead_at=None))
            return True

    def drop_dead(self, event_id: int) -> bool:
        with self.store.begin() as conn:
            return conn.execute(delete(_events).where(
                _events.c.id == event_id, _events.c.state == DEAD)).rowcount > 0

    # -- gauges ----------------------------------------------------------------------------

    def depth(self) -> int:
        """Events waiting or in flight (dead letters excluded)."""
        return queued_events(self.store)

    def oldest_pending_age(self) -> float | None:
        """Seconds since the oldest waiting or in-flight event arrived; None when empty."""
        with self.store.begin(write=False) as conn:
            oldest = conn.execute(select(func.min(_events.c.received_at))
                                  .where(_events.c.state != DEAD)).scalar()
        return None if oldest is None else max(0.0, (self._now() - oldest).total_seconds())


def queued_events(store: Store) -> int:
    """Events waiting or in flight in ``store``'s inbox (dead letters excluded)."""
    with store.begin(write=False) as conn:
        return conn.execute(select(func.count()).select_from(_events)
                            .where(_events.c.state != DEAD)).scalar_one()


def _mine(event: Event) -> dict[str, Any]:
    """The parameters of ``_MINE`` for ``event``."""
    return {"w_id": event.id, "w_token": event.claim_token}


def add_dead_letter(store: Store, system: str, entity: str, ext_id: str, reason: str) -> int:
    """A dead letter for part of an object's sync that the other system refused (one
    comment), while the rest of the object synced: ``relbridge dlq retry`` re-reads the
    object and tries that part again. Returns its id."""
    now = as_utc(store.clock())
    with store.begin() as conn:
        return int(conn.execute(_events.insert().values(
            system=system, entity=entity, ext_id=ext_id, source="retry", deleted=False,
            state=DEAD, attempts=1, received_at=now, not_before=now, last_error=reason,
            dead_at=now).returning(_events.c.id)).scalar_one())


def event_state(store: Store, event_id: int) -> str | None:
    """``pending`` | ``claimed`` | ``dead``, or None once the event is done or dropped."""
    with store.begin(write=False) as conn:
        return conn.execute(select(_events.c.state).where(_events.c.id == event_id)).scalar()
