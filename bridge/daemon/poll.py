"""Pollers: one per (system, entity), each under a store lease.

Webhooks can be missed (not configured, a delivery lost, the daemon down); polling is the
backstop that makes sure every change is seen. With several instances sharing one
PostgreSQL store, the lease ``poll:<system>:<entity>`` lets one of them poll a stream at a
time; when its holder dies, the lease expires and another instance takes it over.

Dedupe: a sighting is (id, version seen, version held), see ``delivery_id``.

Deletions: a change listing never shows a deleted object, so every
``[sync] reconcile_interval_seconds`` (first one interval after the lease was taken) a
poller lists its stream in full and enqueues every linked object it no longer sees; the
worker's re-read confirms the deletion (or finds the object moved out of the listing).

Watermark rule: a poll enqueues what it found and moves the watermark to the poll's start
in **one transaction**. If listing fails half-way or the process dies before the commit,
neither the events nor the new watermark exist, and the next poll lists the same window
again: the watermark never moves past a change that was not enqueued.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from bridge.adapter import SystemRecord
from bridge.daemon.inbox import Inbox, Source
from bridge.daemon.metrics import Metrics
from bridge.engine import Engine, users
from bridge.release.plan import sync_plan_states
from bridge.retry import RetryPolicy
from bridge.store import Store

log = logging.getLogger(__name__)

MIN_LEASE_SECONDS = 1.0


SWEEP_LEASE = "sweep:unfinished"


def delivery_id(record: SystemRecord, held: str | None) -> str:
    """Dedupes repeated sightings of one change across overlapping polls, including one
    whose event is a dead letter (it is not retried behind the operator's back).

    The version we hold (``held``; None when not linked) is part of it: a version that is a
    hash of the fields (Jira versions) comes back when a value is changed back, and that is
    a new change.
    """
    return f"poll:{record.id}:{record.version}:{held}"


def lease_name(system: str, entity: str) -> str:
    return f"poll:{system}:{entity}"


class LeasedLoop:
    """Runs ``work`` every ``interval`` seconds while this instance holds lease ``lease``
    (one instance at a time; the lease expires when its holder dies); the work feeds the
    inbox."""

    def __init__(self, engine: Engine, inbox: Inbox, metrics: Metrics, lease: str, *, holder: str,
                 interval: float, stopping: threading.Event, on_enqueued: Callable[[], None],
                 policy: RetryPolicy | None) -> None:
        self.engine = engine
        self.store: Store = engine.store
        self.inbox = inbox
        self.metrics = metrics
        self.on_enqueued = on_enqueued
        self.lease = lease
        self.holder = holder
        self.interval = interval
        self.lease_ttl = max(3 * interval, MIN_LEASE_SECONDS)
        self.stopping = stopping
        self.policy = policy or RetryPolicy(attempts=1)
        self.holding = False

    def run(self) -> None:
        """Thread body: work, sleep, repeat until stopping; then give the lease up."""
        while not self.stopping.is_set():
            began = time.monotonic()
            try:
                self.cycle()
            except Exception as exc:  # a system or the store is down: try again next interval
                log.warning("%s failed: %s", self.lease, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            self.stopping.wait(max(0.0, self.interval - (time.monotonic() - began)))
        self.give_up_lease()

    def cycle(self) -> int | None:
        """Renew or take the lease, then work. None when another instance holds the lease."""
        held = self.store.acquire_lease(self.lease, self.holder, self.lease_ttl)
        if held != self.holding:
            log.info("%s lease %s", "took" if held else "lost", self.lease)
            self.holding = held
            self.lease_changed()
        if not held:
            return None
        # A transient failure is retried briefly; what the work has not finished stays for
        # the next cycle.
        return self.policy.call(self.work, stopping=self.stopping)

    def work(self) -> int:
        raise NotImplementedError

    def lease_changed(self) -> None:
        """Called when this instance takes or loses the lease."""

    def enqueue_all(self, objects: list[tuple[str, str, str]], source: Source) -> None:
        """Queue (system, entity, id) objects in one transaction, then wake the workers."""
        with self.store.transaction() as tx:
            for system, entity, ext_id in objects:
                self.inbox.enqueue(system, entity, ext_id, source=source, within=tx)
        self.on_enqueued()

    def give_up_lease(self) -> None:
        """At shutdown: let another instance take the work over at once."""
        if not self.holding:
            return
        try:
            self.store.release_lease(self.lease, self.holder)
        except Exception as exc:  # it expires on its own
            log.warning("could not release lease %s: %s", self.lease, exc)
        self.holding = False


class Poller(LeasedLoop):
    """Polls one stream every ``interval`` seconds while this instance holds its lease."""

    def __init__(self, engine: Engine, inbox: Inbox, metrics: Metrics, system: str, entity: str, *,
                 holder: str, interval: float, stopping: threading.Event,
                 on_enqueued: Callable[[], None] = lambda: None, policy: RetryPolicy | None = None,
                 reconcile_interval: float = 0) -> None:
        super().__init__(engine, inbox, metrics, lease_name(system, entity), holder=holder, interval=interval,
                         stopping=stopping, on_enqueued=on_enqueued, policy=policy)
        self.system = system
        self.entity = entity
        self.reconcile_interval = reconcile_interval
        self.next_reconcile: float | None = None  # monotonic time; set when the lease is taken

    def lease_changed(self) -> None:
        self.next_reconcile = time.monotonic() + self.reconcile_interval if self.holding else None

    def work(self) -> int:
        """Poll (the watermark stays put until a poll completes, so a poll that keeps failing
        only delays, never skips, changes); reconcile when due."""
        accepted = self.poll()
        if self.reconcile_interval and self.next_reconcile is not None and time.monotonic() >= self.next_reconcile:
            self.reconcile()
            self.next_reconcile = time.monotonic() + self.reconcile_interval
        return accepted

    def reconcile(self) -> int:
        """Enqueue every linked object a full listing no longer shows. Returns how many."""
        vanished = self.engine.vanished(self.system, self.entity)
        if vanished:
            self.enqueue_all([(self.system, self.entity, ext_id) for ext_id in vanished], "poll")
            self.metrics.events_received.labels(self.system, self.entity, "poll").inc(len(vanished))
            log.info("reconcile %s %s: %d linked objects no longer listed", self.system, self.entity, len(vanished))
        return len(vanished)

    def poll(self) -> int:
        """List what changed, enqueue it and advance the watermark together. Returns how
        many events were newly accepted (repeats of a (id, version) seen before are not)."""
        started = self.engine.clock()
        changed = self.engine.changed_records(self.system, self.entity)
        accepted = 0
        with self.store.transaction() as tx:
            for record, held in changed:
                if self.inbox.enqueue(self.system, self.entity, record.id, source="poll",
                                      delivery_id=delivery_id(record, held), within=tx):
                    accepted += 1
            tx.set_watermark(self.system, self.entity, started)
        if accepted:
            self.metrics.events_received.labels(self.system, self.entity, "poll").inc(accepted)
            log.info("poll %s %s: %d changed", self.system, self.entity, accepted)
            self.on_enqueued()
        return accepted

class Sweeper(LeasedLoop):
    """Re-queues records left with unfinished writes.

    An event's work can leave another record half-done: a related record whose create failed
    while it was being settled as a follow-up (the retried event does not redo it), or a
    crash between two steps. Such a record keeps its pending writes or create journal in the
    store (``relbridge status`` lists it); every interval, each one not touched for ``min_age`` seconds (work in flight
    is younger) gets an event for the object to read first: the one in a system it has
    pending writes for (a concurrent edit there becomes a conflict, not an overwrite),
    else any object it is linked to. The worker then finishes its writes and creates. A
    record whose object has a dead letter is left alone: its attempts are spent, and the dead
    letter (replayable) is where a person sees it.
    """

    def __init__(self, engine: Engine, inbox: Inbox, metrics: Metrics, *, holder: str, interval: float,
                 min_age: float, stopping: threading.Event, on_enqueued: Callable[[], None] = lambda: None,
                 policy: RetryPolicy | None = None) -> None:
        super().__init__(engine, inbox, metrics, SWEEP_LEASE, holder=holder, interval=interval,
                         stopping=stopping, on_enqueued=on_enqueued, policy=policy)
        self.min_age = min_age

    def work(self) -> int:
        # An assignee whose user now exists becomes a pending write, queued below in turn.
        users.rematch(self.store, self.engine.mappings, self.engine.adapters)
        # Release plans' task states cross here, one daemon at a time (the sweep's lease);
        # the gate judges go-lives on the states copied last.
        sync_plan_states(self.store, self.engine.adapters)
        cutoff = self.engine.clock() - timedelta(seconds=self.min_age)
        found = []
        unfinished = [(entity, key) for entity, key, updated_at in self.store.unfinished_records()
                      if updated_at <= cutoff]
        # A record whose event already failed for good waits for a person (`relbridge dlq
        # retry`): queuing it again would only repeat the failure every interval, forever.
        dead = {(e.system, e.entity, e.ext_id) for e in self.inbox.dead_letters()} if unfinished else set()
        for entity, key in unfinished:
            target = self._object_to_read(entity, key, dead)
            if target is not None:
                found.append((target[0], entity, target[1]))
        if found:
            self.enqueue_all(found, "retry")
            log.info("sweep: %d records with unfinished writes queued again", len(found))
        return len(found)

    def _object_to_read(self, entity: str, key: str,
                        dead: set[tuple[str, str, str]]) -> tuple[str, str] | None:
        row, refs = self.store.record_and_refs(entity, key)
        if row is None or not refs or any((s, entity, ref.ext_id) in dead for s, ref in refs.items()):
            return None
        pending = [system for system, names in (row.data.get("pending") or {}).items() if names]
        system = next((s for s in pending if s in refs), next(iter(sorted(refs))))
        return system, refs[system].ext_id
