"""Release KPIs from the record and its history.

The computation takes plain data (no store access) so every figure can be checked against a
hand-computed answer. The store turns its rows into :class:`HistoryEntry` and
:class:`VetoEntry`; ``relbridge kpi`` renders the result with :func:`render` (formats in
:mod:`bridge.reports.formats`, the HTML dashboard in :mod:`bridge.reports.dashboard`). The
JSON key names are a public contract: scripts and dashboards read them.

Which releases count: those whose *current* planned end falls in ``[since, until]``
(inclusive; either bound may be open). A release without a planned end has no plan to
measure against and is only counted in ``releases_without_planned_end``.

Definitions (per selected release):

- *baseline*: the first committed planned end — ``baseline_planned_end``, else the first
  value in the planned_end history, else the current planned end.
- *actual end*: ``actual_end``, else (for a deployed or closed release) the last time the
  state history shows it entering deployed, else closed (Jira has no actual end date).
- *rescheduled*: the planned_end history has a change from a non-null value, or the
  current planned end differs from the baseline.
- *delayed*: the actual end is after the baseline, or the release is not finished (not
  deployed, closed or cancelled) and ``now`` is past the baseline (overdue).
- *revised*: ``revision_count`` > 0, or the state history has a backward move or rollback.
- *completed as planned*: closed, with a known actual end, neither rescheduled, delayed
  nor revised.
- *incidents caused*: non-canceled incidents whose ``caused_by_release`` is the release or,
  when that is unset, whose ``caused_by_change`` belongs to it.
- *time in state*: completed stays only (entering a state until leaving it); the current
  stay is open-ended and not counted, so a stuck release does not skew the medians.
- *lead time* ``a->b``: first entry into ``a`` to the first entry into ``b`` after it.
- *vetoes*: gate vetoes recorded for the selected releases.
- ``satisfaction_avg``: the mean of the releases' ``satisfaction`` scores (1-5, a mapped
  field), two decimals; ``satisfaction_responses``: how many releases have a score.
- DORA's four keys and ``early_life_incidents``: see :mod:`bridge.reports.dora`.
- ``effort_hours_by_state``, ``direct_cost_total``, ``direct_cost_by_state`` and
  ``direct_cost_unpriced_hours``: time logged against the releases and their changes,
  per state the release was in when it was logged, and what it cost at ``[kpi]`` rates;
  see :mod:`bridge.reports.cost`.
- ``by_month``: per calendar month of the planned end (``"2024-03"``), the main figures
  (releases, the three percentages, incidents, satisfaction, deployments and the DORA
  figures), in month order, for trend charts.
- ``no_data``: for each figure that is null, why (``"no releases in the period"``, ...).

Percentages are of ``releases``, rounded to one decimal, null when no release is selected.
Hours are rounded to two decimals; ``p90`` is the nearest-rank 90th percentile (an observed
value), ``median`` the usual median.
"""

from __future__ import annotations

import calendar
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from bridge.errors import BadInput
from bridge.model import ChangeRequest, ReleaseState
from bridge.reports.cost import COST_KEYS, CostBook, Rates, TimeEntry, entries_by_release
from bridge.reports.dora import EARLY_LIFE_DAYS, NO_RELEASES, dora_figures
from bridge.reports.facts import (
    AnyIncident,
    AnyRelease,
    ChangeEntry,
    FieldRow,
    HistoryEntry,
    ReleaseFacts,
    VetoEntry,
    caused_incidents,
    facts_of,
    pct,
    release_history,
    release_of_change,
    summary,
)
from bridge.reports.formats import flatten, render_csv, render_json, render_table
from bridge.reports.reading import (
    collector_paused,
    read_changes,
    read_history,
    read_incidents,
    read_releases,
    read_time_entries,
    read_vetoes,
)
from bridge.timeutil import as_utc

__all__ = [
    "HistoryEntry", "Rates", "TimeEntry", "VetoEntry", "compute_kpis", "flatten", "kpis_from_store", "render", "render_csv",
    "render_html", "render_json", "render_table",
]

#: Lead times reported, as (from state, to state).
LEAD_TIMES: tuple[tuple[ReleaseState, ReleaseState], ...] = (
    (ReleaseState.PLANNED, ReleaseState.AUTHORIZED),
    (ReleaseState.AUTHORIZED, ReleaseState.DEPLOYED),
    (ReleaseState.DEPLOYED, ReleaseState.CLOSED),
    (ReleaseState.PLANNED, ReleaseState.DEPLOYED),
)
NO_SATISFACTION = "no release in the period has a satisfaction score (map release.satisfaction)"


def _in_period(release: AnyRelease, since: date | None, until: date | None) -> bool:
    if release.planned_end is None:
        return False
    day = release.planned_end.date()
    return (since is None or day >= since) and (until is None or day <= until)


def _incidents(selected: list[AnyRelease], caused: Mapping[str, list[AnyIncident]]) -> dict[str, Any]:
    names = Counter(r.name for r in selected)
    label = {r.key: r.name if names[r.name] == 1 else f"{r.name} ({r.key})" for r in selected}
    result = {}
    for release in selected:
        if release.key not in caused:
            continue
        by_priority = Counter(i.priority for i in caused[release.key])
        if by_priority:
            result[label[release.key]] = {
                "total": sum(by_priority.values()),
                "by_priority": {str(p): n for p, n in sorted(by_priority.items())},
            }
    return result


def _time_in_state(facts: list[ReleaseFacts]) -> dict[str, Any]:
    stays: dict[ReleaseState, list[float]] = {}
    for fact in facts:
        states = fact.states
        for (_, state, entered), (_, _, left) in zip(states, states[1:], strict=False):
            stays.setdefault(state, []).append((left - entered).total_seconds() / 3600)  # hours(), inline
    return {s.value: summary(stays[s]) for s in ReleaseState if s in stays}


def _lead_times(facts: list[ReleaseFacts]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for start, end in LEAD_TIMES:
        values = []
        for fact in facts:
            starts = fact.entered.get(start)
            if starts:  # to the first entry into ``end`` at or after the first into ``start``
                first = starts[0]
                ended = next((at for at in fact.entered.get(end, ()) if at >= first), None)
                if ended is not None:
                    values.append((ended - first).total_seconds() / 3600)
        if values:
            result[f"{start.value}->{end.value}"] = summary(values)
    return result


class _Inputs:
    """What every group of releases is measured against: the incidents each release caused
    and the changes of each release, computed once for the whole report."""

    def __init__(self, releases: Sequence[AnyRelease], incidents: Sequence[AnyIncident],
                 changes: Sequence[ChangeRequest | ChangeEntry],
                 early_life_days: int, time_entries: Sequence[TimeEntry], rates: Rates) -> None:
        owner = release_of_change(changes, releases)
        self.cost = CostBook(entries_by_release(time_entries, owner), rates)
        self.caused = caused_incidents(incidents, owner)
        self.changes_of: dict[str, list[ChangeRequest | ChangeEntry]] = {}
        for change in changes:
            if change.key in owner:
                self.changes_of.setdefault(owner[change.key], []).append(change)
        self.early_life_days = early_life_days


def _figures(facts: list[ReleaseFacts], given: _Inputs, window_days: int | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The main figures of a group of releases (the report, or one month) and why any is null."""
    n = len(facts)
    counts = {
        "completed_as_planned": sum(f.completed_as_planned for f in facts),
        "rescheduled_or_delayed": sum(f.rescheduled or f.delayed for f in facts),
        "needing_revision": sum(f.revised for f in facts),
    }
    scores = [f.release.satisfaction for f in facts if f.release.satisfaction is not None]
    figures: dict[str, Any] = {
        "releases": n,
        **{f"{name}_pct": pct(count, n) for name, count in counts.items()},
        "incidents_caused_total": sum(len(given.caused.get(f.release.key, ())) for f in facts),
        "satisfaction_avg": round(sum(scores) / len(scores), 2) if scores else None,
        "satisfaction_responses": len(scores),
    }
    dora, reasons = dora_figures(facts, given.caused, given.changes_of, window_days=window_days,
                                 early_life_days=given.early_life_days)
    cost, cost_reasons = given.cost.figures(facts)
    reasons.update({name: NO_RELEASES for name in cost_reasons} if not n else cost_reasons)
    if not n:
        reasons.update({f"{name}_pct": NO_RELEASES for name in counts})
    if not scores:
        reasons["satisfaction_avg"] = NO_SATISFACTION if n else NO_RELEASES
    return {**figures, **dora, **cost, "counts": counts}, reasons


def _days(first: date | None, last: date | None) -> int | None:
    return (last - first).days + 1 if first is not None and last is not None and last >= first else None


def _window(facts: list[ReleaseFacts], since: date | None, until: date | None) -> int | None:
    """Days in the period; an open bound is the earliest (latest) planned-end day selected."""
    ends = [f.release.planned_end.date() for f in facts if f.release.planned_end is not None]
    if not ends:
        return None
    return _days(since or min(ends), until or max(ends))


def _by_month(facts: list[ReleaseFacts], given: _Inputs, since: date | None, until: date | None) -> dict[str, Any]:
    by_number: dict[tuple[int, int], list[ReleaseFacts]] = {}
    for fact in facts:
        end = fact.release.planned_end
        assert end is not None  # selected releases have one
        by_number.setdefault((end.year, end.month), []).append(fact)
    # Named once per month, not once per release (strftime was a tenth of the time here).
    months = {date(year, number, 1).strftime("%Y-%m"): group for (year, number), group in by_number.items()}
    result = {}
    for month in sorted(months):
        year, number = int(month[:4]), int(month[5:])
        first, last = date(year, number, 1), date(year, number, calendar.monthrange(year, number)[1])
        window = _days(max(first, since) if since else first, min(last, until) if until else last)
        figures, _ = _figures(months[month], given, window)
        for name in ("counts", "effort_hours_by_state", "direct_cost_by_state"):
            figures.pop(name)
        result[month] = figures
    return result


def compute_kpis(
    releases: Sequence[AnyRelease],
    history: Sequence[HistoryEntry],
    incidents: Sequence[AnyIncident],
    changes: Sequence[ChangeRequest | ChangeEntry],
    vetoes: Sequence[VetoEntry],
    *,
    since: date | None = None,
    until: date | None = None,
    now: datetime,
    early_life_days: int = EARLY_LIFE_DAYS,
    time_entries: Sequence[TimeEntry] | None = None,
    rates: Rates | None = None,
) -> dict[str, Any]:
    """The release KPIs for releases planned to end in ``[since, until]`` (see module doc)."""
    return _kpis(releases, release_history(history), incidents, changes, vetoes, since=since, until=until,
                 now=now, early_life_days=early_life_days, time_entries=time_entries or (), rates=rates or Rates())


def _kpis(releases: Sequence[AnyRelease], histories: Mapping[str, list[FieldRow]], incidents: Sequence[AnyIncident],
          changes: Sequence[ChangeRequest | ChangeEntry], vetoes: Sequence[VetoEntry], *, since: date | None,
          until: date | None, now: datetime, early_life_days: int, time_entries: Sequence[TimeEntry],
          rates: Rates) -> dict[str, Any]:
    """:func:`compute_kpis` over each release's history rows (``histories``: key -> rows in time order)."""
    if since is not None and until is not None and since > until:
        raise BadInput(f"period start {since} is after its end {until}")
    now = as_utc(now)
    selected = [r for r in releases if _in_period(r, since, until)]
    keys = {r.key for r in selected}
    facts = [facts_of(r, histories.get(r.key, []), now) for r in selected]
    given = _Inputs(releases, incidents, changes, early_life_days, time_entries, rates)
    figures, reasons = _figures(facts, given, _window(facts, since, until))
    vetoed = [v for v in vetoes if v.release_key in keys]
    return {
        "period": {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None},
        "generated_at": now.isoformat(),
        "releases": len(selected),
        "releases_without_planned_end": sum(r.planned_end is None for r in releases),
        **{key: figures[key] for key in ("completed_as_planned_pct", "rescheduled_or_delayed_pct",
                                          "needing_revision_pct", "counts", "incidents_caused_total")},
        "incidents_by_release": _incidents(selected, given.caused),
        "time_in_state_hours": _time_in_state(facts),
        "lead_times_hours": _lead_times(facts),
        "vetoed_releases": len({v.release_key for v in vetoed}),
        "vetoes_total": len(vetoed),
        **{key: figures[key] for key in ("satisfaction_avg", "satisfaction_responses", "deployments",
                                          "deployment_frequency_per_week", "lead_time_for_changes_hours",
                                          "change_failure_rate_pct", "time_to_restore_hours",
                                          "early_life_incidents", *COST_KEYS)},
        "early_life_days": early_life_days,
        "by_month": _by_month(facts, given, since, until),
        "no_data": reasons,
    }


def render_html(kpis: dict[str, Any]) -> str:
    """The KPI dashboard as one self-contained HTML file (the console's ``/ui/kpi`` page)."""
    from bridge.reports.dashboard import dashboard_file

    return dashboard_file(kpis)


def render(kpis: dict[str, Any], fmt: str) -> str:
    """Render in a named format (``table``, ``json``, ``csv``, ``html``)."""
    renderers = {"table": render_table, "json": render_json, "csv": render_csv, "html": render_html}
    if fmt not in renderers:
        raise BadInput(f"unknown KPI format {fmt!r} (one of: {', '.join(renderers)})")
    return renderers[fmt](kpis)


def kpis_from_store(store: Any, *, since: date | None, until: date | None, now: datetime,
                    early_life_days: int = EARLY_LIFE_DAYS, rates: Rates | None = None) -> dict[str, Any]:
    """The KPIs over what the state store holds (records, history, vetoes, time logged),
    read as lean rows (:mod:`bridge.reports.reading`)."""
    with collector_paused():
        return _kpis(read_releases(store), read_history(store), read_incidents(store), read_changes(store),
                     read_vetoes(store), since=since, until=until, now=now, early_life_days=early_life_days,
                     time_entries=read_time_entries(store), rates=rates or Rates())
