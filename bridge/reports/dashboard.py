"""The KPI dashboard: headline tiles, trend charts per month, delivery against plan,
incidents by release, time in state. The console serves it at ``/ui/kpi``;
``relbridge kpi --html FILE`` saves the same page as one self-contained file.
"""

from __future__ import annotations

from typing import Any

from bridge.reports.formats import (
    EFFORT_HEADER,
    INCIDENT_HEADER,
    INSIGHT,
    MONTH_COLUMNS,
    PERCENTAGES,
    STATS_HEADER,
    STATS_SECTIONS,
    effort_rows,
    fmt,
    incident_rows,
    month_rows,
    stats_rows,
    summary_rows,
)
from bridge.reports.html import Html, esc, no_data, page, table
from bridge.reports.svg import bar_chart, trend_chart

#: Trend charts over ``by_month``: (title, key, unit).
TRENDS = (
    ("Deployments per week", "deployment_frequency_per_week", ""),
    ("Change failure rate (%)", "change_failure_rate_pct", " %"),
    ("Lead time for changes (median hours)", "lead_time_for_changes_hours", " h"),
    ("Time to restore (median hours)", "time_to_restore_hours", " h"),
    ("Completed as planned (%)", "completed_as_planned_pct", " %"),
    ("Satisfaction (1-5)", "satisfaction_avg", ""),
)


def _tiles(kpis: dict[str, Any]) -> Html:
    reasons = kpis.get("no_data", {})
    cards = []
    for title, key, unit in (("Releases", "releases", ""), *INSIGHT):
        value = kpis.get(key)
        hint = f' title="{esc(reasons[key])}"' if value is None and key in reasons else ""
        shown = fmt(value, unit) if value is not None else "no data"
        cards.append(f'<div class="tile"{hint}><div class="v">{esc(shown)}</div><div class="k">{esc(title)}</div></div>')
    return Html('<div class="tiles">' + "".join(cards) + "</div>")


def _trends(kpis: dict[str, Any]) -> list[str]:
    months = kpis.get("by_month", {})
    if not months:
        return [no_data("no releases in the period")]
    charts = []
    for title, key, unit in TRENDS:
        points = [(month, figures.get(key)) for month, figures in months.items()]
        charts.append(f'<div class="chart"><h3>{esc(title)}</h3>{trend_chart(title, points, unit=unit)}</div>')
    return ['<div class="charts">' + "".join(charts) + "</div>",
            table(["Month", *(title for title, _ in MONTH_COLUMNS)], month_rows(kpis))]


def _period(period: dict[str, Any]) -> Html:
    if not period["since"] and not period["until"]:
        return esc("(every planned end)")
    return esc(f"{period['since'] or '…'} – {period['until'] or '…'}")


def dashboard_sections(kpis: dict[str, Any]) -> list[str]:
    """The dashboard's body, for the console page and the saved file alike."""
    period = kpis["period"]
    pcts = [(title, kpis[key]) for title, key in PERCENTAGES if kpis[key] is not None]
    incidents = [(name, v["total"]) for name, v in kpis["incidents_by_release"].items()]
    medians = [(state, s["median"]) for state, s in kpis["time_in_state_hours"].items()]
    none_selected = "no releases in the period" if not kpis["releases"] else "nothing to show"
    sections = [
        f"<h1>Release KPIs {_period(period)}</h1>",
        f'<p class="muted">Generated {esc(kpis["generated_at"][:19].replace("T", " "))} UTC. Releases are selected by their planned end; '
        f'early-life incidents are those opened within {esc(kpis.get("early_life_days"))} days of the deployment.</p>',
        _tiles(kpis),
        "<h2>Trends by month</h2>", *_trends(kpis),
        "<h2>Delivery against plan (% of releases)</h2>",
        bar_chart("Delivery against plan", pcts, unit=" %", scale=100, empty=none_selected),
        "<h2>Incidents caused, by release</h2>",
        bar_chart("Incidents caused by release", incidents, empty="no release in the period caused an incident"),
    ]
    if incidents:
        sections.append(table(["Release", *INCIDENT_HEADER], incident_rows(kpis)))
    sections += ["<h2>Median time in state (hours)</h2>",
                 bar_chart("Median hours in state", medians, unit=" h", empty="no completed stays in a state")]
    for title, key in STATS_SECTIONS:
        if kpis[key]:
            sections += [f"<h2>{esc(title)}</h2>", table(["", *STATS_HEADER], stats_rows(kpis[key]))]
    sections += _effort(kpis)
    sections += ["<h2>All figures</h2>", table(["Metric", "Value"], summary_rows(kpis))]
    if kpis.get("no_data"):
        sections += ["<h2>Why some figures have no data</h2>",
                     table(["Figure", "Reason"], kpis["no_data"].items(), numeric_from=9)]
    return sections


def _effort(kpis: dict[str, Any]) -> list[str]:
    """Hours logged per release state (a chart) and what they cost (a table)."""
    spent = list((kpis.get("effort_hours_by_state") or {}).items())
    reason = kpis.get("no_data", {}).get("effort_hours_by_state", "no time logged")
    sections = ["<h2>Effort by release state (hours logged)</h2>",
                bar_chart("Hours logged by release state", spent, unit=" h", empty=reason)]
    if spent:
        sections.append(table(["State", *EFFORT_HEADER], effort_rows(kpis)))
    return sections


def dashboard_file(kpis: dict[str, Any]) -> str:
    """One self-contained HTML page: inline CSS and SVG charts, nothing loaded from elsewhere."""
    return page("Release KPIs", dashboard_sections(kpis))
