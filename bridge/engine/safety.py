"""The safety brake: a bound on destructive writes, and what happens to the ones past it.

Why: a wrong store, a mapping mistake or a person's mass edit can make relbridge roll back
dozens of releases, close changes as unsuccessful or delete objects in one pass; nobody
can undo that by hand. So writes that are hard to take back are counted, and past
``[safety] max_destructive_writes`` (per ``sync --once`` pass, or per ``[safety]
window_seconds`` in the daemon) they are *held*: not written, kept in the store's
``held_writes`` table, taken off the record's pending writes (so they are not retried on
every pass) and listed (``relbridge held list``, ``status``, ``/metrics``) until an admin
applies them (``relbridge held release``, ``sync --once --allow-destructive``).

A write is *destructive*, judged in canonical terms (what the target system holds now,
read through its mapping, against what would be written; never by one system's raw
values) when it

* moves a released release back: from deployed/closed to a state before deployed,
* rolls a release back (to ``rolled_back``, also when relbridge derived the rollback),
* writes an unsuccessful close code on a change,
* deletes an object (``[sync] propagate_deletes``).

A hold ends when the write is applied, when the field is written or found settled on a
later pass, or when a newer edit of the same field supersedes it (the canonical value
moved on, so the held value is stale; the new value is judged afresh).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from bridge.engine.envelope import Envelope, SyncReport
from bridge.errors import RelbridgeError
from bridge.mapping.loader import OutboundResult, RefResolver, SystemMapping, UnmappableValue
from bridge.model import SYSTEMS, CloseCode, ReleaseState
from bridge.store.rows import HeldWriteRow, RefRow, StaleRecord
from bridge.store.schema import dump_json

if TYPE_CHECKING:
    from bridge.config import SafetyConfig
    from bridge.engine.pipeline import Engine
    from bridge.store import Store, UnitOfWork

log = logging.getLogger(__name__)

DELETE_FIELD = "_delete"  # the held_writes "field" of a held delete

_RELEASED = frozenset({ReleaseState.DEPLOYED.value, ReleaseState.CLOSED.value})
# Moving a released release to one of these is not "backwards": closing it, or cancelling
# it (which a system may do; the gate judges it, not the brake).
_NOT_BACKWARDS = _RELEASED | {ReleaseState.CANCELLED.value}
# The canonical fields a destructive write can touch; only these are looked at.
WATCHED = frozenset({("release", "state"), ("change", "close_code")})


class Kind(StrEnum):
    RELEASE_BACKWARDS = "release_backwards"
    ROLLBACK = "rollback"
    UNSUCCESSFUL_CLOSE = "unsuccessful_close_code"
    DELETE = "delete"


def destructive_kind(entity: str, field: str, old: Any, new: Any) -> Kind | None:
    """Whether replacing ``old`` by ``new`` (canonical values of ``entity.field``) is a
    destructive write, and which kind."""
    if old == new:
        return None
    if (entity, field) == ("release", "state"):
        if new == ReleaseState.ROLLED_BACK.value:
            return Kind.ROLLBACK
        if old in _RELEASED and new not in _NOT_BACKWARDS:
            return Kind.RELEASE_BACKWARDS
    if (entity, field) == ("change", "close_code") and new == CloseCode.UNSUCCESSFUL.value:
        return Kind.UNSUCCESSFUL_CLOSE
    return None


@dataclass(frozen=True)
class DestructiveWrite:
    """One destructive write, in canonical terms, to ``system``."""

    entity: str
    key: str
    system: str
    field: str
    kind: Kind
    old: Any
    new: Any
    ext_id: str | None = None
    ext_key: str | None = None

    @property
    def target(self) -> tuple[str, str, str, str]:
        return (self.entity, self.key, self.system, self.field)

    def describe(self) -> str:
        where = f"{self.system} {self.ext_key or self.ext_id or ''}".strip()
        if self.kind == Kind.DELETE:
            return f"delete {self.entity} {self.key} in {where}"
        return f"{self.entity} {self.key} {self.field}: {self.old} -> {self.new} in {where}"


def destructive_writes(mapping: SystemMapping, entity: str, key: str, fields: Mapping[str, Any],
                       current: Mapping[str, Any], out: OutboundResult, resolver: RefResolver,
                       ref: RefRow) -> list[DestructiveWrite]:
    """The destructive writes among ``out.payload`` (a write of canonical ``fields`` over
    the system's ``current`` raw fields)."""
    found = []
    for spec in mapping.fields(entity):
        if (entity, spec.field) not in WATCHED or spec.source not in out.payload:
            continue
        try:
            old = mapping.read_value(entity, spec.field, current[spec.source], resolver) \
                if spec.source in current else None
        except UnmappableValue:
            old = None  # a value we cannot read: judge the write by what it writes
        new = fields.get(spec.field)
        kind = destructive_kind(entity, spec.field, old, new)
        if kind is not None:
            found.append(DestructiveWrite(entity, key, mapping.system, spec.field, kind, old, new,
                                          ext_id=ref.ext_id, ext_key=ref.ext_key))
    return found


class SafetyBrake:
    """Counts destructive writes and decides which go through (see the module docstring).

    Per pass by default (``start_pass`` resets the count; ``sync --once``); ``use_window``
    makes it a sliding window of ``[safety] window_seconds`` (the daemon). Thread-safe:
    the engine writes from several threads.
    """

    def __init__(self, config: SafetyConfig, store: Store, clock: Callable[[], datetime]) -> None:
        self.limit = config.max_destructive_writes
        self.window = timedelta(seconds=config.window_seconds)
        self.store = store
        self.clock = clock
        self.per_pass = True
        self.unbounded = False  # --allow-destructive
        self._lock = threading.Lock()
        self._spent: deque[datetime] = deque()  # when each admitted destructive write was made
        self._approved: set[tuple[str, str, str, str]] = set()  # released by an admin: bypass once
        self.applied: list[DestructiveWrite] = []  # approved ones written (for `held release`)
        self.held: list[DestructiveWrite] = []  # newly held since start_pass

    # -- modes -------------------------------------------------------------------------------

    def start_pass(self) -> None:
        with self._lock:
            if self.per_pass:
                self._spent.clear()
            self.held = []

    def use_window(self) -> None:
        """Count per sliding window of ``window_seconds`` instead of per pass (the daemon)."""
        with self._lock:
            self.per_pass = False

    def approve(self, rows: Iterable[HeldWriteRow]) -> None:
        """Let these held writes through once, past the bound (``relbridge held release``)."""
        with self._lock:
            self._approved.update((r.entity, r.key, r.system, r.field) for r in rows)

    def in_window(self) -> int:
        """Destructive writes admitted in the current pass or window."""
        with self._lock:
            self._expire(self.clock())
            return len(self._spent)

    # -- decisions ---------------------------------------------------------------------------

    def screen(self, mapping: SystemMapping, entity: str, key: str, env: Envelope, ref: RefRow,
               out: OutboundResult, resolver: RefResolver) -> list[DestructiveWrite]:
        """Take the held destructive writes out of ``out.payload`` and return them; the rest
        of the payload may be written. Called by the engine before each write."""
        candidates = destructive_writes(mapping, entity, key, env.fields, env.raw.get(mapping.system, {}),
                                        out, resolver, ref)
        if not candidates:
            return []
        already = {(r.field, _jsonable(r.new)) for r in self.store.held_writes(key=key, entity=entity)
                   if r.system == mapping.system}
        held = []
        for write in candidates:
            if not self._admit(write, already_held=(write.field, _jsonable(write.new)) in already):
                held.append(write)
                for spec in mapping.fields(entity):
                    if spec.field == write.field:
                        out.payload.pop(spec.source, None)
        return held

    def admit_delete(self, entity: str, key: str, system: str, ref: RefRow, report: SyncReport) -> bool:
        """Whether the delete of ``ref``'s object may go ahead; if not it is held."""
        write = DestructiveWrite(entity, key, system, DELETE_FIELD, Kind.DELETE, ref.ext_key or ref.ext_id, None,
                                 ext_id=ref.ext_id, ext_key=ref.ext_key)
        if self._admit(write, already_held=False):
            return True
        self.keep(self.store, [write])
        report.add(entity, system, "held")
        return False

    def _admit(self, write: DestructiveWrite, *, already_held: bool) -> bool:
        with self._lock:
            if self.unbounded or write.target in self._approved:
                self._approved.discard(write.target)
                self.applied.append(write)
                return True
            if already_held:
                return False  # held before and still held: not written, not counted again
            now = self.clock()
            self._expire(now)
            if len(self._spent) < self.limit:
                self._spent.append(now)
                return True
            self.held.append(write)
        log.warning("safety brake: held %s (more than %d destructive writes %s)", write.describe(),
                    self.limit, "in this pass" if self.per_pass else f"in {self.window.total_seconds():g} s")
        return False

    def _expire(self, now: datetime) -> None:
        if self.per_pass:
            return
        while self._spent and self._spent[0] <= now - self.window:
            self._spent.popleft()

    # -- bookkeeping in the store -------------------------------------------------------------

    @staticmethod
    def keep(tx: Store | UnitOfWork, held: Iterable[DestructiveWrite]) -> None:
        """Store held writes (in the transaction that takes them off the pending writes)."""
        for write in held:
            tx.hold_write(write.entity, write.key, write.system, write.field, kind=write.kind.value,
                          old=write.old, new=write.new, ext_id=write.ext_id, ext_key=write.ext_key,
                          reason=f"safety brake: {write.kind.value.replace('_', ' ')}")

    @staticmethod
    def settle(tx: UnitOfWork, entity: str, key: str, system: str, considered: Iterable[str],
               held: Iterable[DestructiveWrite]) -> None:
        """After a write to ``system``: keep what was held, and end the holds of fields that
        were written or found settled."""
        held = list(held)
        SafetyBrake.keep(tx, held)
        done = set(considered) - {write.field for write in held}
        if done:
            tx.drop_held(entity, key, done, system=system)

    @staticmethod
    def supersede(tx: UnitOfWork, entity: str, key: str, accepted: Iterable[str], source: str) -> None:
        """A newer edit of a field ends its holds: the value moved on and is judged afresh
        when written. A person's edit of an object whose delete is held keeps the object."""
        fields = set(accepted)
        if fields and source in SYSTEMS:
            fields.add(DELETE_FIELD)
        if fields:
            tx.drop_held(entity, key, fields)


# --- applying held writes (relbridge held release, sync --once --allow-destructive) -------------


@dataclass
class ReleaseResult:
    applied: list[int]  # held write ids written now
    ended: list[int]  # held write ids no longer needed (superseded, or the system agrees now)
    still_held: list[int]  # could not be applied (an error; see the report)


def put_back(engine: Engine, rows: Iterable[HeldWriteRow], report: SyncReport) -> None:
    """Make held writes pending again (deletes are made at once: their source is gone).
    The next propagation of each record writes them; with the brake approving them or
    unbounded, past the bound."""
    for row in rows:
        if row.field == DELETE_FIELD:
            ref = engine.store.refs(row.entity, row.key).get(row.system)
            if ref is not None:
                engine.apply_delete(row.system, row.entity, row.key, ref.ext_id)
                report.add(row.entity, row.system, "deleted")
            engine.store.delete_held([row.id])
            continue
        _mark_pending(engine, row)


def release(engine: Engine, rows: list[HeldWriteRow], report: SyncReport) -> ReleaseResult:
    """``relbridge held release``: apply ``rows`` now, past the bound. Each target object
    is read first, so a newer edit made there since the hold wins over the held write."""
    engine.brake.approve(r for r in rows if r.field != DELETE_FIELD)
    put_back(engine, rows, report)
    targets = sorted({(r.system, r.entity, r.key) for r in rows if r.field != DELETE_FIELD})
    for system, entity, key in targets:
        ref = engine.store.refs(entity, key).get(system)
        if ref is None:  # the object is gone from that system: nothing left to write to
            engine.store.delete_held([r.id for r in rows if (r.system, r.entity, r.key) == (system, entity, key)])
            continue
        try:
            engine.process(system, entity, ref.ext_id, report=report)
        except RelbridgeError as exc:
            report.error(entity, system, f"{entity} {key} -> {system}: {exc}")
    applied_targets = {w.target for w in engine.brake.applied}
    remaining = {r.id for r in engine.store.held_writes(ids=[r.id for r in rows])}
    result = ReleaseResult([], [], [])
    for row in rows:
        if row.id in remaining:
            result.still_held.append(row.id)
        elif row.field == DELETE_FIELD or (row.entity, row.key, row.system, row.field) in applied_targets:
            result.applied.append(row.id)
        else:
            result.ended.append(row.id)
    return result


def _mark_pending(engine: Engine, row: HeldWriteRow) -> None:
    for _ in range(5):
        loaded = engine.store.load_record(row.entity, row.key)
        if loaded is None:
            engine.store.delete_held([row.id])
            return
        env = Envelope.load(loaded.data, loaded.revision)
        env.mark_pending(row.system, [row.field])
        try:
            engine.store.put_record(row.entity, row.key, env.dump(), expected_revision=env.revision)
            return
        except StaleRecord:
            continue
    raise StaleRecord(f"{row.entity} {row.key} kept changing while its held write was put back; try again")


def held_document(row: HeldWriteRow) -> dict[str, Any]:
    """One held write as ``held list --json`` and ``status --json`` show it."""
    return {"id": row.id, "entity": row.entity, "key": row.key, "system": row.system,
            "ref": row.ext_key or row.ext_id, "field": None if row.field == DELETE_FIELD else row.field,
            "kind": row.kind, "old": row.old, "new": row.new, "held_at": row.held_at.isoformat()}


def describe_held(row: HeldWriteRow) -> str:
    where = f"{row.system} {row.ext_key or row.ext_id or ''}".strip()
    if row.field == DELETE_FIELD:
        what = f"delete in {where}"
    else:
        what = f"{row.field}: {_text(row.old)} -> {_text(row.new)} in {where}"
    return f"{row.id:>5}  {row.entity:<8} {row.key:<14} {what}   ({row.kind}, held {row.held_at:%Y-%m-%d %H:%M} UTC)"


def _text(value: Any) -> str:
    return "-" if value in (None, "") else str(value)


def _jsonable(value: Any) -> Any:
    """Values as they come back from the store's JSON column, for comparing."""
    return json.loads(dump_json(value))
