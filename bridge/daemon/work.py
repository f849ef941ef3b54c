"""Workers: claim an event, re-read and sync its object, settle the event.

How an event ends:

* success: ``complete`` (removed) and its latency, from arrival to landing, observed;
* transient failure (``bridge.retry``): retried in process a few times, then handed back
  to the inbox with ``retry`` (exponential backoff, never sooner than ``Retry-After``;
  a dead letter once attempts are used up);
* permanent failure (a 4xx other than 429, a value that cannot be mapped, invalid data):
  ``dead_letter`` at once, replayable with ``relbridge dlq retry``;
* anything else (a bug): handed back like a transient failure, so it is retried a bounded
  number of times and then kept as a dead letter with its reason, never lost.

Claims carry a lease; ``ClaimKeeper`` renews the leases of events still being worked on,
so a slow event is not handed to another worker, while a dead worker's claims expire.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from functools import partial

from pydantic import ValidationError

from bridge.daemon.inbox import Event, Inbox
from bridge.daemon.logs import log_context, update_log_context
from bridge.daemon.metrics import Metrics
from bridge.engine import Engine
from bridge.errors import BadInput, PermanentError
from bridge.plugins import Hooks
from bridge.retry import RetryPolicy, is_transient, retry_after_of
from bridge.timeutil import as_utc

log = logging.getLogger(__name__)

PERMANENT: tuple[type[BaseException], ...] = (PermanentError, BadInput, ValidationError)
IDLE_WAIT_SECONDS = 0.5


def failure_reason(exc: BaseException) -> str:
    """The reason stored with a failed event: type and message, one line."""
    text = " ".join(str(exc).split()) or "(no message)"
    status = getattr(exc, "status", None)
    return f"{type(exc).__name__}{f' {status}' if status else ''}: {text}"[:2000]


class Doorbell:
    """Wakes idle workers when something was enqueued in this process."""

    def __init__(self) -> None:
        self._condition = threading.Condition()

    def ring(self) -> None:
        with self._condition:
            self._condition.notify_all()

    def ring_one(self) -> None:
        """One event was enqueued: wake one idle worker, not all of them to race for it
        (each losing claim is a write transaction)."""
        with self._condition:
            self._condition.notify()

    def wait(self, timeout: float) -> None:
        with self._condition:
            self._condition.wait(timeout)


class InFlight:
    """Events claimed by this process and still being worked on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[int, Event] = {}

    def add(self, event: Event) -> None:
        with self._lock:
            self._events[event.id] = event

    def discard(self, event: Event) -> None:
        with self._lock:
            self._events.pop(event.id, None)

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self._events.values())

    def __contains__(self, event: object) -> bool:
        with self._lock:
            return isinstance(event, Event) and self._events.get(event.id) == event

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)


class Worker:
    """One worker thread's loop (see the module docstring)."""

    def __init__(self, name: str, engine: Engine, inbox: Inbox, hooks: Hooks, metrics: Metrics, *,
                 policy: RetryPolicy, in_flight: InFlight, stopping: threading.Event,
                 doorbell: Doorbell, claim_lease_seconds: float) -> None:
        self.name = name
        self.engine = engine
        self.inbox = inbox
        self.hooks = hooks
        self.metrics = metrics
        self.policy = policy
        self.in_flight = in_flight
        self.stopping = stopping
        self.doorbell = doorbell
        self.claim_lease_seconds = claim_lease_seconds

    def run(self) -> None:
        """Thread body: claim and handle events until stopping (the current one finishes)."""
        while not self.stopping.is_set():
            # One connection serves the claim and its event's store calls (``Store.pinned``);
            # it goes back to the pool before the worker waits.
            with self.inbox.store.pinned():
                worked = self._claim_and_handle()
            if worked is None:
                self.stopping.wait(1.0)
            elif not worked:
                self.doorbell.wait(IDLE_WAIT_SECONDS)

    def _claim_and_handle(self) -> bool | None:
        """Claim an event and handle it: whether there was one (None: the claim failed)."""
        try:
            events = self.inbox.claim(self.name, 1, self.claim_lease_seconds)
        except Exception as exc:  # the store is unreachable: wait, then try again
            log.warning("claiming events failed: %s", exc)
            return None
        for event in events:
            try:
                self.handle(event)
            except Exception as exc:  # settling failed (store down): its claim expires, it is retried
                log.error("event %s could not be settled: %s", event.id, exc)
        return bool(events)

    def handle(self, event: Event) -> None:
        self.in_flight.add(event)
        try:
            with log_context(event_id=event.id, system=event.system, entity=event.entity,
                             ext_id=event.ext_id, worker=self.name):
                self._handle(event)
        finally:
            self.in_flight.discard(event)

    def _handle(self, event: Event) -> None:
        # The log names the record from the links already known (no store query per event).
        update_log_context(key=self.engine.resolvers[event.system].to_key(event.entity, event.ext_id))
        try:
            key = self.policy.call(partial(self.engine.process, event.system, event.entity, event.ext_id,
                                           deleted=event.deleted), stopping=self.stopping)
        except PERMANENT as exc:
            self._dead(event, exc)
        except Exception as exc:
            self._retry(event, exc)
        else:
            update_log_context(key=key)
            if not self.inbox.complete(event):
                log.warning("event %s finished after its claim expired; another worker has it", event.id)
                return
            latency = (datetime.now(UTC) - as_utc(event.received_at)).total_seconds()
            self.metrics.sync_latency.labels(event.system, event.entity).observe(max(0.0, latency))
            self.metrics.events_processed.labels(event.system, event.entity).inc()
            log.info("synced %s %s %s (%s) %.2fs after it arrived", event.system, event.entity,
                     key or event.ext_id, event.source, latency)

    def _dead(self, event: Event, exc: BaseException) -> None:
        reason = failure_reason(exc)
        self.metrics.events_failed.labels(event.system, event.entity, "permanent").inc()
        log.error("event %s is a dead letter: %s", event.id, reason)
        self.inbox.dead_letter(event, reason)
        self.hooks.sync_failed(event.system, event.entity, event.ext_id, _as_exception(exc), True)

    def _retry(self, event: Event, exc: BaseException) -> None:
        reason = failure_reason(exc)
        transient = is_transient(exc)
        self.metrics.events_failed.labels(event.system, event.entity, "transient" if transient else "error").inc()
        if transient:
            log.warning("event %s failed, will retry: %s", event.id, reason)
        else:
            log.error("event %s failed unexpectedly, will retry: %s", event.id, reason, exc_info=exc)
        outcome = self.inbox.retry(event, reason, retry_after=retry_after_of(exc))
        if outcome == "dead":
            log.error("event %s is a dead letter after %d attempts: %s", event.id, event.attempts + 1, reason)
        self.hooks.sync_failed(event.system, event.entity, event.ext_id, _as_exception(exc), outcome == "dead")


class ClaimKeeper:
    """Renews the claims of in-flight events and does the inbox's housekeeping."""

    PRUNE_EVERY_SECONDS = 3600.0

    def __init__(self, inbox: Inbox, in_flight: InFlight, *, claim_lease_seconds: float) -> None:
        self.inbox = inbox
        self.in_flight = in_flight
        self.claim_lease_seconds = claim_lease_seconds
        self.halt = threading.Event()  # set by the daemon once its workers are done

    def run(self) -> None:
        every = self.claim_lease_seconds / 3
        last_prune = time.monotonic()
        while not self.halt.wait(every):
            self.renew()
            if time.monotonic() - last_prune > self.PRUNE_EVERY_SECONDS:
                last_prune = time.monotonic()
                try:
                    self.inbox.prune_deliveries()
                except Exception as exc:
                    log.warning("pruning delivery ids failed: %s", exc)

    def renew(self) -> None:
        for event in self.in_flight.snapshot():
            try:
                renewed = self.inbox.renew(event, self.claim_lease_seconds)
                if not renewed and event in self.in_flight:  # not merely finished meanwhile
                    log.warning("claim on event %s expired before renewal", event.id)
            except Exception as exc:
                log.warning("renewing the claim on event %s failed: %s", event.id, exc)


def _as_exception(exc: BaseException) -> Exception:
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))
