"""What the KPIs read from the store: lean rows (named tuples), not models.

The store holds records validated when they were written, so a report picks out only the
fields it uses (the database does: ``Store.record_values``) and validates nothing again:
building 10,000 releases and their incidents as pydantic models was a large share of a
10,000-release report's time. A test checks that the rows give the KPIs the models give
(tests/store/test_kpi_reading.py).
"""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bridge.model import IncidentState, ReleaseState
from bridge.reports.cost import TimeEntry
from bridge.reports.facts import (
    ChangeEntry,
    FieldRow,
    IncidentEntry,
    ReleaseEntry,
    VetoEntry,
    grouped_rows,
    parse_time,
)

_RELEASE_STATES = {state.value: state for state in ReleaseState}
_INCIDENT_STATES = {state.value: state for state in IncidentState}


def read_releases(store: Any) -> list[ReleaseEntry]:
    """Every release, its unset fields at the model's defaults. Numbers come back as
    numbers (SQLite) or text (PostgreSQL), lists as JSON text (both)."""
    rows = store.record_values("release", ReleaseEntry._fields[1:])
    return [ReleaseEntry(key, name, _RELEASE_STATES[state] if state else ReleaseState.PLANNED,
                         parse_time(planned_end), parse_time(actual_end), parse_time(baseline),
                         json.loads(changes) if changes else [], int(revisions) if revisions else 0,
                         None if score is None else float(score))
            for key, name, state, planned_end, actual_end, baseline, changes, revisions, score in rows]


def read_incidents(store: Any) -> list[IncidentEntry]:
    rows = store.record_values("incident", IncidentEntry._fields[1:])
    return [IncidentEntry(key, _INCIDENT_STATES[state] if state else IncidentState.NEW,
                          int(priority) if priority is not None else 4, by_change, by_release,
                          parse_time(opened), parse_time(resolved))
            for key, state, priority, by_change, by_release, opened, resolved in rows]


def read_changes(store: Any) -> list[ChangeEntry]:
    """Changes as the KPIs read them (key, release, opened_at)."""
    return [ChangeEntry(key, release, parse_time(opened))
            for key, release, opened in store.record_values("change", ("release", "opened_at"))]


def read_history(store: Any) -> dict[str, list[FieldRow]]:
    """The releases' state and planned-end changes by release, each in time order."""
    return grouped_rows(store.field_history("release", ("state", "planned_end")))


def read_vetoes(store: Any) -> list[VetoEntry]:
    return [VetoEntry(v.release_key, v.old or "", v.new, v.reason, v.at) for v in store.vetoes()]


def read_time_entries(store: Any) -> list[TimeEntry]:
    return [TimeEntry._make(row) for row in store.worklog_rows()]


_paused = threading.Lock()
_pausing = [0, False]  # how many callers are inside collector_paused; was the collector on before


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a report reads and measures the store.

    A 10,000-release report builds half a million small objects, none in a cycle; the
    collector, started again and again by those allocations, walked them all each time
    (a third of the report's time). Reference counting still frees everything; the
    collector is back on when the last caller leaves (calls may overlap in the console's
    threads), unless it was off before."""
    with _paused:
        if not _pausing[0]:
            _pausing[1] = gc.isenabled()
            gc.disable()
        _pausing[0] += 1
    try:
        yield
    finally:
        with _paused:
            _pausing[0] -= 1
            if not _pausing[0] and _pausing[1]:
                gc.enable()
