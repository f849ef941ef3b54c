"""Prometheus metrics (all prefixed ``relbridge_``), served at ``/metrics`` by the daemon.

One ``Metrics`` object per process holds its own registry, so tests can build fresh ones
and nothing leaks between them. Gauges that mirror the store (queue depth, oldest pending
event, dead letters, held writes) are refreshed by ``refresh_from(inbox)`` before each scrape.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_received = Counter(
            "relbridge_events_received", "Events put in the inbox", ["system", "entity", "source"], registry=r)
        self.events_ignored = Counter(
            "relbridge_events_ignored", "Webhook deliveries accepted but ignored", ["system", "reason"], registry=r)
        self.events_processed = Counter(
            "relbridge_events_processed", "Events processed successfully", ["system", "entity"], registry=r)
        self.events_failed = Counter(
            "relbridge_events_failed", "Event processing failures", ["system", "entity", "kind"], registry=r)
        self.queue_depth = Gauge("relbridge_queue_depth", "Pending events in the inbox", registry=r)
        self.oldest_pending = Gauge(
            "relbridge_queue_oldest_pending_seconds", "Age of the oldest pending event", registry=r)
        self.dead_letters = Gauge("relbridge_dead_letters", "Events in the dead-letter list", registry=r)
        self.held_writes = Gauge(
            "relbridge_held_writes", "Destructive writes held by the safety brake (relbridge held list)", registry=r)
        self.api_calls = Counter(
            "relbridge_api_calls", "Calls to ServiceNow and Jira", ["system", "method", "status"], registry=r)
        self.api_errors = Counter(
            "relbridge_api_errors", "Failed calls (status 0: no response)", ["system", "status"], registry=r)
        self.sync_latency = Histogram(
            "relbridge_sync_latency_seconds", "From an event's arrival to its change landing in the other system",
            ["system", "entity"], buckets=LATENCY_BUCKETS, registry=r)
        self.conflicts = Counter("relbridge_conflicts", "Conflicting edits resolved", ["entity"], registry=r)
        self.vetoes = Counter("relbridge_gate_vetoes", "Release moves vetoed by the gate", registry=r)
        self.store_errors = Counter(
            "relbridge_store_errors", "Store statements that failed (I/O, read-only, unreachable)", registry=r)
        self.webhook_requests = Counter(
            "relbridge_webhook_requests", "Webhook requests by endpoint and answer", ["endpoint", "status"], registry=r)

    def api_call(self, system: str, method: str, status: int) -> None:
        """The adapters' ``on_call`` callback."""
        self.api_calls.labels(system, method, str(status)).inc()
        if status == 0 or status >= 400:
            self.api_errors.labels(system, str(status)).inc()

    def refresh_from(self, inbox: Any) -> None:
        self.queue_depth.set(inbox.depth())
        age = inbox.oldest_pending_age()
        self.oldest_pending.set(age or 0)
        self.dead_letters.set(len(inbox.dead_letters()))
        self.held_writes.set(inbox.store.held_count())

    def render(self) -> bytes:
        return generate_latest(self.registry)
