"""Per-release facts the KPI modules share: history rows as data, a release's state moves,
its baseline and actual end, when it was deployed, and the incidents it caused.

Plain data in, plain data out (no store), so every KPI can be checked against a
hand-computed answer. Definitions are in :mod:`bridge.reports.kpi` and
:mod:`bridge.reports.dora`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from datetime import datetime
from functools import cache
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple

from bridge.lifecycle import classify
from bridge.model import ChangeRequest, Incident, IncidentState, Release, ReleaseState
from bridge.timeutil import as_utc

FINISHED = (ReleaseState.DEPLOYED, ReleaseState.CLOSED)


class HistoryEntry(NamedTuple):
    """One accepted field change; values as text (state names, ISO-8601 datetimes), None for unset.

    A named tuple, not a dataclass: a report builds one per history row (tens of thousands)."""

    entity: str
    key: str
    field: str
    old: str | None
    new: str | None
    source: str
    at: datetime


#: One history row as the facts read it: ``(key, field, old, new, at)``, values as text,
#: ``at`` aware UTC. The shape ``Store.field_history`` returns: a report uses the store's
#: 60,000 rows as they come instead of building a ``HistoryEntry`` for each.
FieldRow = tuple[str, str, str | None, str | None, datetime]


class ChangeEntry(NamedTuple):
    """A change as the KPIs read it: its key, its release's key, when it was opened.

    A named tuple, not a ``ChangeRequest``: building 30,000 pydantic models, even without
    validation, took most of a 10,000-release report's time."""

    key: str
    release: str | None
    opened_at: datetime | None


class ReleaseEntry(NamedTuple):
    """A release as the KPIs read it: the fields they use, as a ``Release`` holds them.

    A named tuple, not a ``Release``: validating 10,000 stored releases again (the store
    holds records validated when written) was a large share of a report's time."""

    key: str
    name: str
    state: ReleaseState
    planned_end: datetime | None
    actual_end: datetime | None
    baseline_planned_end: datetime | None
    change_requests: list[str]
    revision_count: int
    satisfaction: float | None


class IncidentEntry(NamedTuple):
    """An incident as the KPIs read it (a named tuple for the same reason)."""

    key: str
    state: IncidentState
    priority: int
    caused_by_change: str | None
    caused_by_release: str | None
    opened_at: datetime | None
    resolved_at: datetime | None


#: What the KPIs take: the models (tests, callers holding them) or the lean rows (the store).
AnyRelease = Release | ReleaseEntry
AnyIncident = Incident | IncidentEntry


class VetoEntry(NamedTuple):
    """One move the authorization gate refused."""

    release_key: str
    old: str
    new: str
    reason: str
    at: datetime


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        return None


_STATES = {state.value: state for state in ReleaseState}


def parse_state(text: str | None) -> ReleaseState | None:
    """The state a history value names; None for a value the lifecycle does not know."""
    return _STATES.get(text) if text else None


def pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def hours(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 3600


def summary(values: list[float]) -> dict[str, Any]:
    """count, median and nearest-rank p90 (an observed value), hours to two decimals."""
    ordered = sorted(values)
    p90 = ordered[math.ceil(0.9 * len(ordered)) - 1]
    return {"count": len(ordered), "median": round(statistics.median(ordered), 2), "p90": round(p90, 2)}


def median_or_none(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


class ReleaseFacts:
    """One release with its state moves ``(old, new, at)`` in time order and its planned-end
    changes ``(old, new)`` (text), in time order.

    Derived facts are plain attributes, computed once when it is built: the report measures
    each release twice (for the period and for its month) and reads them hundreds of
    thousands of times, which a ``cached_property`` (a lock per read) made its main cost.
    """

    __slots__ = ("release", "states", "planned_ends", "now", "move_times", "entered", "baseline", "actual_end",
                 "was_deployed", "deployed_at", "rolled_back", "rescheduled", "delayed", "revised",
                 "completed_as_planned")

    def __init__(self, release: AnyRelease, states: list[tuple[ReleaseState | None, ReleaseState, datetime]],
                 planned_ends: list[tuple[str | None, str | None]], now: datetime) -> None:
        self.release, self.states, self.planned_ends = release, states, planned_ends
        self.now = now  # the report's "now": an open release past its baseline is overdue
        #: When each state move happened, in order (to find the state at a time by bisection).
        self.move_times: list[datetime] = []
        #: State -> when the release entered it, in time order (asked for many times).
        self.entered: dict[ReleaseState, list[datetime]] = {}
        revised = release.revision_count > 0
        for old, new, at in states:  # one pass: a report builds 10,000 of these
            self.move_times.append(at)
            self.entered.setdefault(new, []).append(at)
            revised = revised or (old is not None and _is_revision(old, new))
        self.revised = revised
        deployed, rolled = self.entered.get(_DEPLOYED), self.entered.get(_ROLLED_BACK)
        self.baseline = _baseline(release, planned_ends)
        self.actual_end = _actual_end(release, deployed or self.entered.get(_CLOSED))
        #: It went out: entered deployed, or is deployed, closed or rolled back now.
        self.was_deployed = bool(deployed) or release.state in _WENT_OUT
        #: First entry into deployed; else the actual end (a release whose history predates
        #: relbridge); else, for a rolled-back one, its first entry into rolled_back.
        self.deployed_at = deployed[0] if deployed else (
            release.actual_end or (rolled[0] if rolled else None)) if self.was_deployed else None
        self.rolled_back = release.state == _ROLLED_BACK or bool(rolled)
        self.rescheduled = _rescheduled(release, planned_ends, self.baseline)
        self.delayed = _delayed(release.state, self.baseline, self.actual_end, now)
        self.completed_as_planned = (release.state == _CLOSED and self.actual_end is not None
                                     and not (self.rescheduled or self.delayed or revised))


# Read once: an enum member looked up on its class costs as much as a dict lookup.
_DEPLOYED, _CLOSED, _ROLLED_BACK = ReleaseState.DEPLOYED, ReleaseState.CLOSED, ReleaseState.ROLLED_BACK
_WENT_OUT = (*FINISHED, ReleaseState.ROLLED_BACK)
_DONE = (*FINISHED, ReleaseState.CANCELLED)


def _delayed(state: ReleaseState, baseline: datetime | None, end: datetime | None, now: datetime) -> bool:
    if baseline is None:
        return False
    if end is not None:
        return end > baseline
    return state not in _DONE and now > baseline  # still open and past its baseline: overdue


def _baseline(release: AnyRelease, planned_ends: list[tuple[str | None, str | None]]) -> datetime | None:
    if release.baseline_planned_end is not None:
        return release.baseline_planned_end
    for old, new in planned_ends:
        first = parse_time(old) or parse_time(new)
        if first is not None:
            return first
    return release.planned_end


def _actual_end(release: AnyRelease, entered: list[datetime] | None) -> datetime | None:
    """``entered``: when it entered deployed, else closed."""
    if release.actual_end is not None:
        return release.actual_end
    if release.state not in FINISHED:
        return None
    return entered[-1] if entered else None


def _rescheduled(release: AnyRelease, planned_ends: list[tuple[str | None, str | None]],
                 baseline: datetime | None) -> bool:
    for old_text, new_text in planned_ends:
        if not old_text:
            continue  # the first commitment, not a move
        old, new = parse_time(old_text), parse_time(new_text)
        if (old != new) if old and new else (old_text != new_text):
            return True
    return baseline is not None and release.planned_end != baseline


@cache
def _is_revision(old: ReleaseState, new: ReleaseState) -> bool:
    """``classify(old, new).is_revision``, remembered: a report asks about the same few
    pairs of states tens of thousands of times."""
    return classify(old, new).is_revision


def release_history(history: Iterable[HistoryEntry]) -> dict[str, list[FieldRow]]:
    """Release history rows by key, each release's in time order (one pass)."""
    grouped: dict[str, list[FieldRow]] = {}
    for row in history:
        if row.entity == "release":
            grouped.setdefault(row.key, []).append((row.key, row.field, row.old, row.new, as_utc(row.at)))
    for rows in grouped.values():
        rows.sort(key=itemgetter(4))  # stable: rows at the same time keep their order
    return grouped


def grouped_rows(rows: Iterable[FieldRow]) -> dict[str, list[FieldRow]]:
    """``Store.field_history`` rows (by record, each record's oldest first) by key, as they are."""
    grouped: dict[str, list[FieldRow]] = {}
    for key, group in groupby(rows, itemgetter(0)):
        grouped.setdefault(key, []).extend(group)
    return grouped


def facts_of(release: AnyRelease, rows: list[FieldRow], now: datetime) -> ReleaseFacts:
    """``rows``: the release's history (:func:`release_history`), in time order."""
    states, planned_ends = [], []
    for _, field, old_text, new_text, at in rows:
        if field == "planned_end":
            planned_ends.append((old_text, new_text))
        elif field == "state":  # parse_state, inline: tens of thousands of rows
            old, new = _STATES.get(old_text) if old_text else None, _STATES.get(new_text) if new_text else None
            if new is not None and new != old:
                states.append((old, new, at))
    return ReleaseFacts(release, states, planned_ends, now)


def release_of_change(changes: Iterable[ChangeRequest | ChangeEntry], releases: Iterable[AnyRelease]) -> dict[str, str]:
    """Change key -> release key, from both the release's list and the change's own link."""
    owner = {key: r.key for r in releases for key in r.change_requests}
    owner.update({c.key: c.release for c in changes if c.release})
    return owner


def caused_incidents(incidents: Iterable[AnyIncident], owner: dict[str, str]) -> dict[str, list[AnyIncident]]:
    """Release key -> the non-canceled incidents it caused (its own link first, else through
    the causing change)."""
    found: dict[str, list[AnyIncident]] = {}
    for incident in incidents:
        if incident.state == IncidentState.CANCELED:
            continue
        key = incident.caused_by_release or owner.get(incident.caused_by_change or "")
        if key:
            found.setdefault(key, []).append(incident)
    return found
