"""Release KPIs from the record and its history, and the report formats for them.

The computation takes plain data (no store access) so every figure can be checked against a
hand-computed answer. The store turns its rows into :class:`HistoryEntry` and
:class:`VetoEntry`; ``relbridge kpi`` renders the result with one of the ``render_*``
functions. The JSON key names are a public contract: scripts and dashboards read them.

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

Percentages are of ``releases``, rounded to one decimal, null when no release is selected.
Hours are rounded to two decimals; ``p90`` is the nearest-rank 90th percentile (an observed
value), ``median`` the usual median.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from bridge.errors import BadInput
from bridge.lifecycle import classify
from bridge.model import ChangeRequest, Incident, IncidentState, Release, ReleaseState
from bridge.timeutil import as_utc

#: Lead times reported, as (from state, to state).
LEAD_TIMES: tuple[tuple[ReleaseState, ReleaseState], ...] = (
    (ReleaseState.PLANNED, ReleaseState.AUTHORIZED),
    (ReleaseState.AUTHORIZED, ReleaseState.DEPLOYED),
    (ReleaseState.DEPLOYED, ReleaseState.CLOSED),
    (ReleaseState.PLANNED, ReleaseState.DEPLOYED),
)
_FINISHED = (ReleaseState.DEPLOYED, ReleaseState.CLOSED)


@dataclass(frozen=True)
class HistoryEntry:
    """One accepted field change; values as text (state names, ISO-8601 datetimes), None for unset."""

    entity: str
    key: str
    field: str
    old: str | None
    new: str | None
    source: str
    at: datetime


@dataclass(frozen=True)
class VetoEntry:
    """One move the authorization gate refused."""

    release_key: str
    old: str
    new: str
    reason: str
    at: datetime


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        return None


def _parse_state(text: str | None) -> ReleaseState | None:
    try:
        return ReleaseState(text) if text else None
    except ValueError:  # a value the lifecycle does not know; not ours to crash on
        return None


def _pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def _hours(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 3600


def _summary(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    p90 = ordered[math.ceil(0.9 * len(ordered)) - 1]
    return {"count": len(ordered), "median": round(statistics.median(ordered), 2), "p90": round(p90, 2)}


# --- per-release facts ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Facts:
    release: Release
    states: list[tuple[ReleaseState | None, ReleaseState, datetime]]  # (old, new, at), in time order
    planned_ends: list[HistoryEntry]

    def entries(self, state: ReleaseState) -> list[datetime]:
        return [at for _, new, at in self.states if new == state]

    @property
    def baseline(self) -> datetime | None:
        if self.release.baseline_planned_end is not None:
            return self.release.baseline_planned_end
        for row in self.planned_ends:
            first = _parse_time(row.old) or _parse_time(row.new)
            if first is not None:
                return first
        return self.release.planned_end

    @property
    def actual_end(self) -> datetime | None:
        if self.release.actual_end is not None:
            return self.release.actual_end
        if self.release.state not in _FINISHED:
            return None
        entered = self.entries(ReleaseState.DEPLOYED) or self.entries(ReleaseState.CLOSED)
        return entered[-1] if entered else None

    @property
    def rescheduled(self) -> bool:
        for row in self.planned_ends:
            if not row.old:
                continue  # the first commitment, not a move
            old, new = _parse_time(row.old), _parse_time(row.new)
            if (old != new) if old and new else (row.old != row.new):
                return True
        baseline = self.baseline
        return baseline is not None and self.release.planned_end != baseline

    def delayed(self, now: datetime) -> bool:
        baseline, end = self.baseline, self.actual_end
        if baseline is None:
            return False
        if end is not None:
            return end > baseline
        open_ = self.release.state not in (*_FINISHED, ReleaseState.CANCELLED)
        return open_ and now > baseline

    @property
    def revised(self) -> bool:
        if self.release.revision_count > 0:
            return True
        return any(old is not None and classify(old, new).is_revision for old, new, _ in self.states)

    def completed_as_planned(self, now: datetime) -> bool:
        return (
            self.release.state == ReleaseState.CLOSED
            and self.actual_end is not None
            and not (self.rescheduled or self.delayed(now) or self.revised)
        )


def _release_history(history: list[HistoryEntry], keys: set[str]) -> dict[str, list[HistoryEntry]]:
    """History rows of the given releases, grouped by key, in time order (one pass)."""
    grouped: dict[str, list[HistoryEntry]] = {key: [] for key in keys}
    for row in history:
        if row.entity == "release" and row.key in grouped:
            grouped[row.key].append(row)
    for rows in grouped.values():
        rows.sort(key=lambda h: as_utc(h.at))
    return grouped


def _facts(release: Release, rows: list[HistoryEntry]) -> _Facts:
    states = []
    for row in rows:
        new = _parse_state(row.new) if row.field == "state" else None
        if new is not None and new != _parse_state(row.old):
            states.append((_parse_state(row.old), new, as_utc(row.at)))
    return _Facts(release, states, [r for r in rows if r.field == "planned_end"])


# --- the metrics ---------------------------------------------------------------------------


def _in_period(release: Release, since: date | None, until: date | None) -> bool:
    if release.planned_end is None:
        return False
    day = release.planned_end.date()
    return (since is None or day >= since) and (until is None or day <= until)


def _release_of_change(changes: list[ChangeRequest], releases: list[Release]) -> dict[str, str]:
    owner = {key: r.key for r in releases for key in r.change_requests}
    owner.update({c.key: c.release for c in changes if c.release})
    return owner


def _incidents(selected: list[Release], incidents: list[Incident], owner: dict[str, str]) -> dict[str, Any]:
    names = Counter(r.name for r in selected)
    label = {r.key: r.name if names[r.name] == 1 else f"{r.name} ({r.key})" for r in selected}
    by_release: dict[str, Counter[int]] = {}
    for incident in incidents:
        if incident.state == IncidentState.CANCELED:
            continue
        key = incident.caused_by_release or owner.get(incident.caused_by_change or "")
        if key in label:
            by_release.setdefault(key, Counter())[incident.priority] += 1
    ordered = [r.key for r in selected if r.key in by_release]
    return {
        label[key]: {
            "total": sum(by_release[key].values()),
            "by_priority": {str(p): n for p, n in sorted(by_release[key].items())},
        }
        for key in ordered
    }


def _time_in_state(facts: list[_Facts]) -> dict[str, Any]:
    stays: dict[ReleaseState, list[float]] = {}
    for fact in facts:
        for (_, state, entered), (_, _, left) in zip(fact.states, fact.states[1:], strict=False):
            stays.setdefault(state, []).append(_hours(entered, left))
    return {s.value: _summary(stays[s]) for s in ReleaseState if s in stays}


def _lead_times(facts: list[_Facts]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for start, end in LEAD_TIMES:
        values = []
        for fact in facts:
            starts = fact.entries(start)
            ends = [at for at in fact.entries(end) if starts and at >= starts[0]]
            if starts and ends:
                values.append(_hours(starts[0], ends[0]))
        if values:
            result[f"{start.value}->{end.value}"] = _summary(values)
    return result


def compute_kpis(
    releases: list[Release],
    history: list[HistoryEntry],
    incidents: list[Incident],
    changes: list[ChangeRequest],
    vetoes: list[VetoEntry],
    *,
    since: date | None = None,
    until: date | None = None,
    now: datetime,
) -> dict[str, Any]:
    """The release KPIs for releases planned to end in ``[since, until]`` (see module doc)."""
    if since is not None and until is not None and since > until:
        raise BadInput(f"period start {since} is after its end {until}")
    now = as_utc(now)
    selected = [r for r in releases if _in_period(r, since, until)]
    keys = {r.key for r in selected}
    grouped = _release_history(history, keys)
    facts = [_facts(r, grouped[r.key]) for r in selected]
    counts = {
        "completed_as_planned": sum(f.completed_as_planned(now) for f in facts),
        "rescheduled_or_delayed": sum(f.rescheduled or f.delayed(now) for f in facts),
        "needing_revision": sum(f.revised for f in facts),
    }
    by_release = _incidents(selected, incidents, _release_of_change(changes, releases))
    vetoed = [v for v in vetoes if v.release_key in keys]
    return {
        "period": {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None},
        "generated_at": now.isoformat(),
        "releases": len(selected),
        "releases_without_planned_end": sum(r.planned_end is None for r in releases),
        "completed_as_planned_pct": _pct(counts["completed_as_planned"], len(selected)),
        "rescheduled_or_delayed_pct": _pct(counts["rescheduled_or_delayed"], len(selected)),
        "needing_revision_pct": _pct(counts["needing_revision"], len(selected)),
        "counts": counts,
        "incidents_caused_total": sum(v["total"] for v in by_release.values()),
        "incidents_by_release": by_release,
        "time_in_state_hours": _time_in_state(facts),
        "lead_times_hours": _lead_times(facts),
        "vetoed_releases": len({v.release_key for v in vetoed}),
        "vetoes_total": len(vetoed),
    }


# --- formats -------------------------------------------------------------------------------


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


def _fmt(value: Any, unit: str = "") -> str:
    return "n/a" if value is None else f"{value}{unit}"


_PERCENTAGES = (
    ("Completed as planned", "completed_as_planned_pct"),
    ("Rescheduled or delayed", "rescheduled_or_delayed_pct"),
    ("Needing revision", "needing_revision_pct"),
)


def _summary_rows(kpis: dict[str, Any]) -> list[list[str]]:
    return [
        ["Releases", str(kpis["releases"])],
        *([title, _fmt(kpis[key], " %")] for title, key in _PERCENTAGES),
        ["Incidents caused", str(kpis["incidents_caused_total"])],
        ["Vetoed releases", str(kpis["vetoed_releases"])],
        ["Gate vetoes", str(kpis["vetoes_total"])],
        ["Without planned end (not counted)", str(kpis["releases_without_planned_end"])],
    ]


_INCIDENT_HEADER = ["total", "P1", "P2", "P3", "P4", "P5"]


def _incident_rows(kpis: dict[str, Any]) -> list[list[str]]:
    return [
        [name, str(v["total"]), *(str(v["by_priority"].get(str(p), 0)) for p in range(1, 6))]
        for name, v in kpis["incidents_by_release"].items()
    ]


def _stats_rows(section: dict[str, Any]) -> list[list[str]]:
    return [[name, str(s["count"]), str(s["median"]), str(s["p90"])] for name, s in section.items()]


_STATS_SECTIONS = (("Time in state (hours)", "time_in_state_hours"), ("Lead times (hours)", "lead_times_hours"))
_STATS_HEADER = ["count", "median", "p90"]


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
        *_grid(["Metric", "Value"], _summary_rows(kpis)),
    ]
    if kpis["incidents_by_release"]:
        lines += ["", *_grid(["Incidents by release", *_INCIDENT_HEADER], _incident_rows(kpis))]
    for title, key in _STATS_SECTIONS:
        if kpis[key]:
            lines += ["", *_grid([title, *_STATS_HEADER], _stats_rows(kpis[key]))]
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1f2933;max-width:60rem}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.25rem .75rem;border-bottom:1px solid #d9e2ec;text-align:right}
td:first-child,th:first-child{text-align:left}.muted{color:#627d98}
svg text{font-size:12px;fill:#1f2933}svg .bar{fill:#2f80ed}
"""
_LABEL_CHARS = 32


def _bar_chart(label: str, items: list[tuple[str, float]], *, unit: str = "", scale: float | None = None) -> str:
    """A horizontal bar chart as inline SVG (no namespace URL: HTML5 does not need one).

    Long labels are shortened to fit; the full label is in each bar's tooltip.
    """
    if not items:
        return '<p class="muted">No data.</p>'
    top = scale or max(v for _, v in items) or 1
    row, left, width = 24, 220, 360
    parts = [f'<svg role="img" aria-label="{html.escape(label)}" width="{left + width + 90}" height="{row * len(items) + 8}">']
    for i, (name, value) in enumerate(items):
        y, w = i * row + 4, max(width * value / top, 1 if value else 0)
        short = name if len(name) <= _LABEL_CHARS else name[: _LABEL_CHARS - 1] + "…"
        parts.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{html.escape(short)}</text>'
            f'<rect class="bar" x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 8}">'
            f"<title>{html.escape(name)}: {value}{unit}</title></rect>"
            f'<text x="{left + w + 6:.1f}" y="{y + 15}">{value}{unit}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(kpis: dict[str, Any]) -> str:
    """One self-contained HTML page: inline CSS and SVG charts, nothing loaded from elsewhere."""
    period = kpis["period"]
    pcts = [(title, kpis[key]) for title, key in _PERCENTAGES if kpis[key] is not None]
    incidents = [(name, v["total"]) for name, v in kpis["incidents_by_release"].items()]
    medians = [(state, s["median"]) for state, s in kpis["time_in_state_hours"].items()]
    sections = [
        f"<h1>Release KPIs {html.escape(period['since'] or '…')} – {html.escape(period['until'] or '…')}</h1>",
        f'<p class="muted">Generated {html.escape(kpis["generated_at"])}. Releases are selected by their planned end.</p>',
        _html_table(["Metric", "Value"], _summary_rows(kpis)),
        "<h2>Delivery against plan (% of releases)</h2>",
        _bar_chart("Delivery against plan", pcts, unit=" %", scale=100),
        "<h2>Incidents caused, by release</h2>",
        _bar_chart("Incidents caused by release", incidents),
    ]
    if incidents:
        sections.append(_html_table(["Release", *_INCIDENT_HEADER], _incident_rows(kpis)))
    sections += ["<h2>Median time in state (hours)</h2>", _bar_chart("Median hours in state", medians, unit=" h")]
    for title, key in _STATS_SECTIONS:
        if kpis[key]:
            sections += [f"<h2>{title}</h2>", _html_table(["", *_STATS_HEADER], _stats_rows(kpis[key]))]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Release KPIs</title>"
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )


def render(kpis: dict[str, Any], fmt: str) -> str:
    """Render in a named format (``table``, ``json``, ``csv``, ``html``)."""
    renderers = {"table": render_table, "json": render_json, "csv": render_csv, "html": render_html}
    if fmt not in renderers:
        raise BadInput(f"unknown KPI format {fmt!r} (one of: {', '.join(renderers)})")
    return renderers[fmt](kpis)


def kpis_from_store(store: Any, *, since: date | None, until: date | None, now: datetime) -> dict[str, Any]:
    """The KPIs over what the state store holds (records, history, vetoes)."""

    def models(entity: str, model: Any) -> list[Any]:
        return [model.model_validate({"key": key, **data["fields"]}) for key, data in store.records(entity)]

    history = [
        HistoryEntry(h.entity, h.key, h.field, _text(h.old), _text(h.new), h.source, h.at)
        for h in store.history(entity="release")
    ]
    vetoes = [VetoEntry(v.release_key, v.old or "", v.new, v.reason, v.at) for v in store.vetoes()]
    return compute_kpis(
        models("release", Release), history, models("incident", Incident), models("change", ChangeRequest),
        vetoes, since=since, until=until, now=now,
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
