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
from dataclasses import dataclass
from datetime import datetime
from functools import cache, cached_property
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


class ChangeEntry(NamedTuple):
    """A change as the KPIs read it: its key, its release's key, when it was opened.

    A named tuple, not a ``ChangeRequest``: building 30,000 pydantic models, even without
    validation, took most of a 10,000-release report's time."""

    key: str
    release: str | None
    opened_at: datetime | None


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


@dataclass(frozen=True)
class ReleaseFacts:
    """One release with its state moves ``(old, new, at)`` in time order and its planned-end rows.

    Derived facts are computed once (``cached_property``): the report measures each release
    twice, for the period and for its month.
    """

    release: Release
    states: list[tuple[ReleaseState | None, ReleaseState, datetime]]
    planned_ends: list[HistoryEntry]
    now: datetime  # the report's "now": an open release past its baseline is overdue

    def entries(self, state: ReleaseState) -> list[datetime]:
        return self._entered.get(state, [])

    @cached_property
    def move_times(self) -> list[datetime]:
        """When each state move happened, in order (to find the state at a time by bisection)."""
        return [at for _, _, at in self.states]

    @cached_property
    def _entered(self) -> dict[ReleaseState, list[datetime]]:
        """State -> when the release entered it, in time order (asked for many times)."""
        entered: dict[ReleaseState, list[datetime]] = {}
        for _, new, at in self.states:
            entered.setdefault(new, []).append(at)
        return entered

    @cached_property
    def baseline(self) -> datetime | None:
        if self.release.baseline_planned_end is not None:
            return self.release.baseline_planned_end
        for row in self.planned_ends:
            first = parse_time(row.old) or parse_time(row.new)
            if first is not None:
                return first
        return self.release.planned_end

    @cached_property
    def actual_end(self) -> datetime | None:
        if self.release.actual_end is not None:
            return self.release.actual_end
        if self.release.state not in FINISHED:
            return None
        entered = self.entries(ReleaseState.DEPLOYED) or self.entries(ReleaseState.CLOSED)
        return entered[-1] if entered else None

    @cached_property
    def was_deployed(self) -> bool:
        """It went out: entered deployed, or is deployed, closed or rolled back now."""
        return bool(self.entries(ReleaseState.DEPLOYED)) or self.release.state in (*FINISHED, ReleaseState.ROLLED_BACK)

    @cached_property
    def deployed_at(self) -> datetime | None:
        """First entry into deployed; else the actual end (a release whose history predates
        relbridge); else, for a rolled-back one, its first entry into rolled_back."""
        entered = self.entries(ReleaseState.DEPLOYED)
        if entered:
            return entered[0]
        if not self.was_deployed:
            return None
        rolled = self.entries(ReleaseState.ROLLED_BACK)
        return self.release.actual_end or (rolled[0] if rolled else None)

    @cached_property
    def rolled_back(self) -> bool:
        return self.release.state == ReleaseState.ROLLED_BACK or bool(self.entries(ReleaseState.ROLLED_BACK))

    @cached_property
    def rescheduled(self) -> bool:
        for row in self.planned_ends:
            if not row.old:
                continue  # the first commitment, not a move
            old, new = parse_time(row.old), parse_time(row.new)
            if (old != new) if old and new else (row.old != row.new):
                return True
        baseline = self.baseline
        return baseline is not None and self.release.planned_end != baseline

    @cached_property
    def delayed(self) -> bool:
        baseline, end = self.baseline, self.actual_end
        if baseline is None:
            return False
        if end is not None:
            return end > baseline
        open_ = self.release.state not in (*FINISHED, ReleaseState.CANCELLED)
        return open_ and self.now > baseline

    @cached_property
    def revised(self) -> bool:
        if self.release.revision_count > 0:
            return True
        return any(old is not None and _is_revision(old, new) for old, new, _ in self.states)

    @cached_property
    def completed_as_planned(self) -> bool:
        return (
            self.release.state == ReleaseState.CLOSED
            and self.actual_end is not None
            and not (self.rescheduled or self.delayed or self.revised)
        )


@cache
def _is_revision(old: ReleaseState, new: ReleaseState) -> bool:
    """``classify(old, new).is_revision``, remembered: a report asks about the same few
    pairs of states tens of thousands of times."""
    return classify(old, new).is_revision


def release_history(history: Iterable[HistoryEntry], keys: set[str]) -> dict[str, list[HistoryEntry]]:
    """History rows of the given releases, grouped by key, in time order (one pass)."""
    grouped: dict[str, list[HistoryEntry]] = {key: [] for key in keys}
    for row in history:
        if row.entity == "release" and row.key in grouped:
            grouped[row.key].append(row)
    for rows in grouped.values():
        rows.sort(key=lambda h: as_utc(h.at))
    return grouped


def facts_of(release: Release, rows: list[HistoryEntry], now: datetime) -> ReleaseFacts:
    states, planned_ends = [], []
    for row in rows:
        if row.field == "planned_end":
            planned_ends.append(row)
        elif row.field == "state":
            old, new = parse_state(row.old), parse_state(row.new)
            if new is not None and new != old:
                states.append((old, new, as_utc(row.at)))
    return ReleaseFacts(release, states, planned_ends, now)


def release_of_change(changes: Iterable[ChangeRequest | ChangeEntry], releases: Iterable[Release]) -> dict[str, str]:
    """Change key -> release key, from both the release's list and the change's own link."""
    owner = {key: r.key for r in releases for key in r.change_requests}
    owner.update({c.key: c.release for c in changes if c.release})
    return owner


def caused_incidents(incidents: Iterable[Incident], owner: dict[str, str]) -> dict[str, list[Incident]]:
    """Release key -> the non-canceled incidents it caused (its own link first, else through
    the causing change)."""
    found: dict[str, list[Incident]] = {}
    for incident in incidents:
        if incident.state == IncidentState.CANCELED:
            continue
        key = incident.caused_by_release or owner.get(incident.caused_by_change or "")
        if key:
            found.setdefault(key, []).append(incident)
    return found
