"""Pollers: one per (system, entity), each under a store lease.

Webhooks can be missed (not configured, a delivery lost, the daemon down); polling is the
backstop that makes sure every change is seen. With several instances sharing one
PostgreSQL store, the lease ``poll:<system>:<entity>`` lets one of them poll a stream at a
time; when its holder dies, the lease expires and another instance takes it over.

Dedupe: a sighting is (id, version seen, version held), see ``Poller.delivery_id``.

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

from bridge.adapter import SystemRecord
from bridge.engine import Engine
from bridge.metrics import Metrics
from bridge.queue import Inbox
from bridge.retry import RetryPolicy
from bridge.store import Store

log = logging.getLogger(__name__)

MIN_LEASE_SECONDS = 1.0


def lease_name(system: str, entity: str) -> str:
    return f"poll:{system}:{entity}"


class Poller:
    """Polls one stream every ``interval`` seconds while this instance holds its lease."""

    def __init__(self, engine: Engine, inbox: Inbox, metrics: Metrics, system: str, entity: str, *,
                 holder: str, interval: float, stopping: threading.Event,
                 on_enqueued: Callable[[], None] = lambda: None, policy: RetryPolicy | None = None) -> None:
        self.engine = engine
        self.store: Store = engine.store
        self.inbox = inbox
        self.metrics = metrics
        self.system = system
        self.entity = entity
        self.holder = holder
        self.interval = interval
        self.lease_ttl = max(3 * interval, MIN_LEASE_SECONDS)
        self.stopping = stopping
        self.on_enqueued = on_enqueued
        self.policy = policy or RetryPolicy(attempts=1)
        self.lease = lease_name(system, entity)
        self.holding = False

    def run(self) -> None:
        """Thread body: poll, sleep, repeat until stopping; then give the lease up."""
        while not self.stopping.is_set():
            began = time.monotonic()
            try:
                self.cycle()
            except Exception as exc:  # a system or the store is down: try again next interval
                log.warning("poll %s %s failed: %s", self.system, self.entity, exc,
                            exc_info=log.isEnabledFor(logging.DEBUG))
            self.stopping.wait(max(0.0, self.interval - (time.monotonic() - began)))
        self.give_up_lease()

    def cycle(self) -> int | None:
        """Renew or take the lease, then poll. None when another instance holds the lease."""
        held = self.store.acquire_lease(self.lease, self.holder, self.lease_ttl)
        if held != self.holding:
            log.info("%s lease %s", "took" if held else "lost", self.lease)
            self.holding = held
        if not held:
            return None
        # A transient failure is retried briefly; the watermark stays put until a poll
        # completes, so a poll that keeps failing only delays, never skips, changes.
        return self.policy.call(self.poll, stopping=self.stopping)

    def poll(self) -> int:
        """List what changed, enqueue it and advance the watermark together. Returns how
        many events were newly accepted (repeats of a (id, version) seen before are not)."""
        started = self.engine.clock()
        records = list(self.engine.changed_records(self.system, self.entity))
        ids = [self.delivery_id(record) for record in records]
        accepted = 0
        with self.store.transaction() as tx:
            for record, delivery_id in zip(records, ids, strict=True):
                if self.inbox.enqueue(self.system, self.entity, record.id, source="poll",
                                      delivery_id=delivery_id, within=tx):
                    accepted += 1
            tx.set_watermark(self.system, self.entity, started)
        if accepted:
            self.metrics.events_received.labels(self.system, self.entity, "poll").inc(accepted)
            log.info("poll %s %s: %d changed", self.system, self.entity, accepted)
            self.on_enqueued()
        return accepted

    def delivery_id(self, record: SystemRecord) -> str:
        """Dedupes repeated sightings of one change across overlapping polls, including one
        whose event is a dead letter (it is not retried behind the operator's back).

        The version we hold is part of it: a version that is a hash of the fields (Jira
        versions) comes back when a value is changed back, and that is a new change.
        """
        key = self.store.find_key(self.system, self.entity, record.id)
        ref = self.store.refs(self.entity, key).get(self.system) if key else None
        held = ref.version if ref is not None else None
        return f"poll:{record.id}:{record.version}:{held}"

    def give_up_lease(self) -> None:
        """At shutdown: let another instance take the stream over at once."""
        if not self.holding:
            return
        try:
            self.store.release_lease(self.lease, self.holder)
        except Exception as exc:  # it expires on its own
            log.warning("could not release lease %s: %s", self.lease, exc)
        self.holding = False
