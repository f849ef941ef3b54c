"""The KPI report as JSON, CSV and aligned text (``relbridge kpi --format``).

The HTML dashboard is :mod:`bridge.reports.dashboard`; the figures are
:func:`bridge.reports.kpi.compute_kpis`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any


def render_json(kpis: dict[str, Any]) -> str:
    return json.dumps(kpis, indent=2, ensure_ascii=False)


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}" if path else str(k))
    else:
        yield path, value


def flatten(kpis: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """``(metric, key, value)`` rows: the shape of the CSV report.

    A top-level number has an empty key (``releases,,6``); a mapping of numbers puts its
    names in ``key`` (``period,since,2024-01-01``); a mapping of records (per release,
    state or lead time) puts the record's name in ``key`` and the path inside the record
    in ``metric`` (``time_in_state_hours.median,authorized,12.0``).
    """
    for name, value in kpis.items():
        if not isinstance(value, dict):
            yield name, "", value
            continue
        for key, inner in value.items():
            if isinstance(inner, dict):
                for path, leaf in _leaves(inner):
                    yield f"{name}.{path}", str(key), leaf
            else:
                yield name, str(key), inner


def render_csv(kpis: dict[str, Any]) -> str:
    """Columns ``metric,key,value`` (see :func:`flatten`); null is an empty value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["metric", "key", "value"])
    for metric, key, value in flatten(kpis):
        writer.writerow([metric, key, "" if value is None else value])
    return out.getvalue()


def fmt(value: Any, unit: str = "") -> str:
    return "n/a" if value is None else f"{value}{unit}"


PERCENTAGES = (
    ("Completed as planned", "completed_as_planned_pct"),
    ("Rescheduled or delayed", "rescheduled_or_delayed_pct"),
    ("Needing revision", "needing_revision_pct"),
)


def summary_rows(kpis: dict[str, Any]) -> list[list[str]]:
    return [
        ["Releases", str(kpis["releases"])],
        *([title, fmt(kpis[key], " %")] for title, key in PERCENTAGES),
        ["Incidents caused", str(kpis["incidents_caused_total"])],
        ["Vetoed releases", str(kpis["vetoed_releases"])],
        ["Gate vetoes", str(kpis["vetoes_total"])],
        ["Without planned end (not counted)", str(kpis["releases_without_planned_end"])],
        *([title, fmt(kpis.get(key), unit)] for title, key, unit in INSIGHT),
    ]


#: Satisfaction, DORA's four keys and early-life incidents: (title, key, unit).
INSIGHT = (
    ("Satisfaction (1-5)", "satisfaction_avg", ""),
    ("Satisfaction responses", "satisfaction_responses", ""),
    ("Deployments per week", "deployment_frequency_per_week", ""),
    ("Lead time for changes (median)", "lead_time_for_changes_hours", " h"),
    ("Change failure rate", "change_failure_rate_pct", " %"),
    ("Time to restore (median)", "time_to_restore_hours", " h"),
    ("Early-life incidents", "early_life_incidents", ""),
    ("Direct cost", "direct_cost_total", ""),
    ("Hours without a rate", "direct_cost_unpriced_hours", " h"),
)

#: The columns of the per-month trend table: (title, key in a ``by_month`` entry).
MONTH_COLUMNS = (
    ("releases", "releases"),
    ("on plan %", "completed_as_planned_pct"),
    ("deploys/wk", "deployment_frequency_per_week"),
    ("lead time h", "lead_time_for_changes_hours"),
    ("fail %", "change_failure_rate_pct"),
    ("restore h", "time_to_restore_hours"),
    ("incidents", "incidents_caused_total"),
    ("satisfaction", "satisfaction_avg"),
    ("direct cost", "direct_cost_total"),
)


def month_rows(kpis: dict[str, Any]) -> list[list[str]]:
    return [[month, *(fmt(figures.get(key)) for _, key in MONTH_COLUMNS)]
            for month, figures in kpis.get("by_month", {}).items()]


INCIDENT_HEADER = ["total", "P1", "P2", "P3", "P4", "P5"]


def incident_rows(kpis: dict[str, Any]) -> list[list[str]]:
    return [
        [name, str(v["total"]), *(str(v["by_priority"].get(str(p), 0)) for p in range(1, 6))]
        for name, v in kpis["incidents_by_release"].items()
    ]


def stats_rows(section: dict[str, Any]) -> list[list[str]]:
    return [[name, str(s["count"]), str(s["median"]), str(s["p90"])] for name, s in section.items()]


EFFORT_HEADER = ["hours", "direct cost"]


def effort_rows(kpis: dict[str, Any]) -> list[list[str]]:
    """Per release state: hours logged, and their cost ("n/a" for hours without a rate)."""
    costs = kpis.get("direct_cost_by_state") or {}
    return [[state, str(spent), fmt(costs.get(state))] for state, spent in (kpis.get("effort_hours_by_state") or {}).items()]


STATS_SECTIONS = (("Time in state (hours)", "time_in_state_hours"), ("Lead times (hours)", "lead_times_hours"))
STATS_HEADER = ["count", "median", "p90"]


def _grid(header: list[str], rows: list[list[str]]) -> list[str]:
    """Rows as text columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded).rstrip()

    return [line(header), *(line(r) for r in rows)]


def render_table(kpis: dict[str, Any]) -> str:
    """Aligned plain text for a terminal."""
    period = kpis["period"]
    lines = [
        f"Release KPIs  {period['since'] or '…'} .. {period['until'] or '…'}  (generated {kpis['generated_at']})",
        "",
        *_grid(["Metric", "Value"], summary_rows(kpis)),
    ]
    if kpis["incidents_by_release"]:
        lines += ["", *_grid(["Incidents by release", *INCIDENT_HEADER], incident_rows(kpis))]
    for title, key in STATS_SECTIONS:
        if kpis[key]:
            lines += ["", *_grid([title, *STATS_HEADER], stats_rows(kpis[key]))]
    if kpis.get("effort_hours_by_state"):
        lines += ["", *_grid(["Effort by release state", *EFFORT_HEADER], effort_rows(kpis))]
    if kpis.get("by_month"):
        lines += ["", *_grid(["By month", *(title for title, _ in MONTH_COLUMNS)], month_rows(kpis))]
    if kpis.get("no_data"):
        lines += ["", "No data:", *(f"  {key}: {reason}" for key, reason in kpis["no_data"].items())]
    return "\n".join(lines) + "\n"


