"""Effort and direct cost per release state, from the time logged against a release's
records (Jira worklogs, ServiceNow ``task_time_worked``; see :mod:`bridge.adapter`).

Definitions (over the releases the report selects; see :mod:`bridge.reports.kpi`):

- an entry counts for a release when it was logged against the release itself or one of
  its changes;
- it is attributed to the state the release was in at the entry's ``started`` time: the
  state of the last state move at or before it. An entry from before the first recorded
  move counts in the state the release was in then: the move's old state, or, when the
  first move is the release's creation (work before the record existed is preparation
  for it), the state it was created in. A release without state history counts every
  entry in its current state, the only one known;
- ``effort_hours_by_state``: hours per state, two decimals, in lifecycle order;
- cost of an entry = its hours x the rate of its group (``[kpi] group_rates``), else
  ``[kpi] hourly_rate``; an entry with neither has no cost: its hours still count as
  effort and appear in ``direct_cost_unpriced_hours``;
- ``direct_cost_total`` and ``direct_cost_by_state``: the sum of the priced entries'
  cost, two decimals.

No entry at all, or no rate for any entry, makes ``direct_cost_total`` null and the two
per-state figures empty, each with its reason in ``no_data``; never a division by zero.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from bridge.model import ReleaseState
from bridge.reports.facts import ReleaseFacts

NO_TIME = ("no time logged against the releases in the period or their changes "
           "(worklogs, time worked: read while syncing with [kpi] read_time_worked = true)")
NO_RATE = "no rate for the time logged: set [kpi] hourly_rate or group_rates"
#: The report's keys, in the order they appear.
COST_KEYS = ("effort_hours_by_state", "direct_cost_total", "direct_cost_by_state", "direct_cost_unpriced_hours")


class TimeEntry(NamedTuple):
    """One entry as the KPIs read it: where it was logged, when, how long, for which team."""

    entity: str  # "release" or "change"
    key: str  # the canonical record it was logged against
    started: datetime
    seconds: int
    group: str | None = None


@dataclass(frozen=True)
class Rates:
    """``[kpi] hourly_rate`` and ``group_rates``."""

    hourly: float | None = None
    groups: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of_config(cls, config: Any) -> Rates:
        """From the ``[kpi]`` section (``bridge.config.KpiConfig``)."""
        return cls(config.hourly_rate, dict(config.group_rates))

    def of(self, group: str | None) -> float | None:
        if group is not None and group in self.groups:
            return self.groups[group]
        return self.hourly


def entries_by_release(entries: Iterable[TimeEntry], owner: Mapping[str, str]) -> dict[str, list[TimeEntry]]:
    """Release key -> its entries (logged on the release, or on a change ``owner`` links to one)."""
    found: dict[str, list[TimeEntry]] = {}
    for entry in entries:
        key = entry.key if entry.entity == "release" else owner.get(entry.key) if entry.entity == "change" else None
        if key is not None:
            found.setdefault(key, []).append(entry)
    return found


def state_at(fact: ReleaseFacts, at: datetime) -> ReleaseState:
    """The state the release was in at ``at`` (see the module doc for times before its history)."""
    moves = fact.states
    if not moves:
        return fact.release.state
    index = bisect_right(fact.move_times, at)
    if index:
        return moves[index - 1][1]
    old, new, _ = moves[0]
    return old if old is not None else new


class _Spent(NamedTuple):
    """One release's time, attributed: hours and cost per state, and hours without a rate."""

    hours: dict[ReleaseState, float]
    cost: dict[ReleaseState, float]
    unpriced: float


class CostBook:
    """The time logged against each release, attributed to its states once and summed for
    any group of releases (the report's period, each month)."""

    def __init__(self, logged: Mapping[str, list[TimeEntry]], rates: Rates) -> None:
        self.logged, self.rates = logged, rates
        self._spent: dict[str, _Spent] = {}

    def _of(self, fact: ReleaseFacts) -> _Spent:
        key = fact.release.key
        spent = self._spent.get(key)
        if spent is None:
            spent = self._spent[key] = self._attributed(fact)
        return spent

    def _attributed(self, fact: ReleaseFacts) -> _Spent:
        hours: dict[ReleaseState, float] = {}
        cost: dict[ReleaseState, float] = {}
        unpriced = 0.0
        for entry in self.logged.get(fact.release.key, ()):
            state, spent = state_at(fact, entry.started), entry.seconds / 3600
            hours[state] = hours.get(state, 0.0) + spent
            rate = self.rates.of(entry.group)
            if rate is None:
                unpriced += spent
            else:
                cost[state] = cost.get(state, 0.0) + spent * rate
        return _Spent(hours, cost, unpriced)

    def figures(self, facts: list[ReleaseFacts]) -> tuple[dict[str, Any], dict[str, str]]:
        """The four cost figures of a group of releases, and a reason for each with no data."""
        hours: dict[ReleaseState, float] = {}
        cost: dict[ReleaseState, float] = {}
        unpriced = 0.0
        for fact in facts:
            spent = self._of(fact)
            for state, value in spent.hours.items():
                hours[state] = hours.get(state, 0.0) + value
            for state, value in spent.cost.items():
                cost[state] = cost.get(state, 0.0) + value
            unpriced += spent.unpriced
        order = [s for s in ReleaseState if s in hours]
        figures = {
            "effort_hours_by_state": {s.value: round(hours[s], 2) for s in order},
            "direct_cost_total": round(sum(cost.values()), 2) if cost else None,
            "direct_cost_by_state": {s.value: round(cost[s], 2) for s in order if s in cost},
            "direct_cost_unpriced_hours": round(unpriced, 2),
        }
        reasons = {}
        if not hours:
            reasons = dict.fromkeys(("effort_hours_by_state", "direct_cost_total", "direct_cost_by_state"), NO_TIME)
        elif not cost:
            reasons = dict.fromkeys(("direct_cost_total", "direct_cost_by_state"), NO_RATE)
        return figures, reasons
