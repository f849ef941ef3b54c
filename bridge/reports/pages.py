"""The console's pages as HTML, from plain data (the same documents ``--json`` prints).

Pure functions: :mod:`bridge.reports.console` reads the store and serves them. Every value
goes through :mod:`bridge.reports.html`'s escaping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

from bridge.model import SYSTEMS, ReleaseState
from bridge.reports.html import Html, attr, badge, empty, esc, link, page, table

PAGE_SIZE = 100
_STATE_KIND = {"planned": "info", "in_progress": "info", "authorized": "ok", "deploying": "warn",
               "deployed": "ok", "closed": "ok", "rolled_back": "bad", "cancelled": "bad"}


def _when(value: Any) -> str | None:
    """An ISO time as ``YYYY-MM-DD HH:MM`` (UTC), shorter in tables."""
    text = str(value) if value else ""
    return text[:16].replace("T", " ") if len(text) >= 16 else (text or None)


def _day(value: Any) -> str:
    return str(value)[:10] if value else "…"


def release_href(key: str) -> str:
    return "/ui/releases/" + quote(key, safe="")


def state_badge(state: Any) -> Html:
    return badge(str(state or "unknown"), _STATE_KIND.get(str(state), "info"))


def _readiness(row: dict[str, Any]) -> Html:
    missing = row["missing_for_authorization"]
    if not missing:
        return badge("authorized", "ok")
    more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
    return Html(f'{badge("not authorized", "warn")} <span class="muted">{esc(missing[0] + more)}</span>')


def _slip(days: int | None) -> Html:
    if days is None:
        return esc(None)
    return badge(f"{days:+d} d", "bad" if days > 0 else "ok")


def _filter_form(state: str | None, since: str | None, listed: str) -> str:
    options = "".join(f'<option value="{s}"{" selected" if s == state else ""}>{s}</option>' for s in ReleaseState)
    return (f'<form class="filter" method="get" action="/ui/">State <select name="state"><option value="">any</option>'
            f'{options}</select> Planned end from <input type="date" name="since" value="{attr(since or "")}"> '
            f'<button type="submit">Filter</button> <span class="muted">{esc(listed)}</span></form>')


def releases_page(rows: list[dict[str, Any]], *, state: str | None, since: str | None, number: int,
                  listed: str = "") -> str:
    """One page of the release overview (``PAGE_SIZE`` rows), latest planned end first."""
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    shown = rows[(number - 1) * PAGE_SIZE: number * PAGE_SIZE]
    body = [f"<h1>Releases <span class=\"muted\">({len(rows)})</span></h1>",
            _filter_form(state, since, listed)]
    if not rows:
        body.append(empty("no release matches the filter" if state or since else "no releases synced yet"))
        return page("Releases", body, here="/ui")
    body.append(table(
        ["Release", "Name", "State", "Authorization / readiness", "Planned", "Actual", "Slip"],
        [[link(release_href(r["key"]), r["key"]), r["name"], state_badge(r["state"]), _readiness(r),
          f"{_day(r['planned_start'])} → {_day(r['planned_end'])}",
          f"{_day(r['actual_start'])} → {_day(r['actual_end'])}", _slip(r["slip_days"])]
         for r in shown], numeric_from=6))
    if pages > 1:
        query = {k: v for k, v in (("state", state), ("since", since)) if v}
        nav = [link("/ui/?" + urlencode({**query, "page": n}), label) for n, label in
               ((number - 1, "← newer"), (number + 1, "older →")) if 1 <= n <= pages]
        body.append(f'<p>Page {number} of {pages} &nbsp; {" &nbsp; ".join(nav)}</p>')
    return page("Releases", body, here="/ui")


def _fields(doc: dict[str, Any]) -> str:
    f = doc["fields"]
    shown = ("state", "planned_start", "planned_end", "actual_start", "actual_end", "baseline_planned_end",
             "owner", "satisfaction", "revision_count", "description")
    items = "".join(f"<dt>{esc(name.replace('_', ' '))}</dt><dd>{esc(_when(f.get(name)) if 'start' in name or 'end' in name else f.get(name))}</dd>"
                    for name in shown)
    links = " · ".join(link(ref.get("url"), f"{system}: {ref.get('key') or ref['id']}") for system, ref in doc["refs"].items())
    return f'<dl class="fields"><dt>key</dt><dd>{esc(doc["key"])}</dd>{items}<dt>open in</dt><dd>{links or esc(None)}</dd></dl>'


def _checks(doc: dict[str, Any]) -> list[str]:
    rows: list[list[Any]] = [["Authorization", badge("pass", "ok") if doc["authorized"] else badge("fail", "bad"),
                              "; ".join(doc["missing_for_authorization"]) or "every change approved and scheduled"]]
    pending = {s: sorted(v) for s, v in (doc.get("pending_writes") or {}).items() if v}
    rows.append(["Writes to make", badge("pending", "warn") if pending else badge("none", "ok"),
                 "; ".join(f"{s}: {', '.join(v)}" for s, v in pending.items()) or "in step with both systems"])
    return ["<h2>Checks</h2>", table(["Check", "Result", "Detail"], rows, numeric_from=9)]


def release_page(doc: dict[str, Any]) -> str:
    """One release: fields, where it lives, checks, changes, incidents, vetoes, history."""
    f = doc["fields"]
    body = [f"<h1>{esc(f['name'])} {state_badge(f['state'])}</h1>", _fields(doc), *_checks(doc)]
    body += [f"<h2>Changes ({len(doc['changes'])})</h2>", table(
        ["Change", "Summary", "State", "Approval", "Close code", "In"],
        [[c["key"], c["summary"], c["state"], c["approval"], c["close_code"],
          ", ".join(f"{s} {k}" for s, k in c["refs"].items())] for c in doc["changes"]], numeric_from=9)
        if doc["changes"] else empty("no change requests linked")]
    body += [f"<h2>Incidents ({len(doc['incidents'])})</h2>", table(
        ["Incident", "Summary", "Priority", "State", "Caused by change"],
        [[i["key"], i["summary"], f"P{i['priority']}", i["state"], i["caused_by_change"]] for i in doc["incidents"]],
        numeric_from=9) if doc["incidents"] else empty("no incidents linked")]
    body += ["<h2>Vetoes</h2>", table(
        ["At", "Move", "From", "Reason"],
        [[_when(v["at"]), f"{v['old']} → {v['new']}", v["source"], v["reason"]] for v in doc["vetoes"]],
        numeric_from=9) if doc["vetoes"] else empty("the gate never refused a move of this release")]
    history = list(reversed(doc["history"]))[:200]
    body += [f"<h2>History <span class=\"muted\">(latest {len(history)} of {len(doc['history'])})</span></h2>", table(
        ["At", "Field", "Old", "New", "From"],
        [[_when(h["at"]), h["field"], _short(h["old"]), _short(h["new"]), h["source"]] for h in history],
        numeric_from=9) if history else empty("no recorded changes")]
    return page(f"{f['name']} — release", body, here="/ui")


def _short(value: Any, limit: int = 80) -> str | None:
    text = None if value is None else str(value)
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"


def kpi_page(kpis: dict[str, Any], *, computed: str, sections: str) -> str:
    """The dashboard; ``sections`` is ``dashboard_sections(kpis)`` rendered already (the
    console's builder renders them once per build: at 10,000 releases that is ~0.7 MB)."""
    period = kpis["period"]
    form = ('<form class="filter" method="get" action="/ui/kpi">Planned end from '
            f'<input type="date" name="since" value="{attr(period["since"] or "")}"> to '
            f'<input type="date" name="until" value="{attr(period["until"] or "")}"> '
            f'<button type="submit">Show</button> <span class="muted">{esc(computed)}</span></form>')
    return page("Release KPIs", [form, sections], here="/ui/kpi")


def conflicts_page(conflicts: Sequence[Any]) -> str:
    recent = list(reversed(conflicts))[:200]
    body = [f"<h1>Conflicts <span class=\"muted\">({len(conflicts)})</span></h1>",
            '<p class="muted">Fields both systems changed since the last sync, and what the policy kept.</p>']
    body.append(table(
        ["At", "Record", "Field", *(f"in {s}" for s in SYSTEMS), "Resolution", "Kept"],
        [[_when(c.at.isoformat()), _record_link(c.entity, c.key), c.field,
          *(_short(getattr(c, f"{s}_value")) for s in SYSTEMS), c.resolution, _short(c.resolved_value)]
         for c in recent], numeric_from=99) if recent else empty("no conflicts recorded"))
    return page("Conflicts", body, here="/ui/conflicts")


def _record_link(entity: str, key: str) -> Html:
    return link(release_href(key), f"{entity} {key}") if entity == "release" else esc(f"{entity} {key}")


def held_page(held: list[dict[str, Any]]) -> str:
    body = [f"<h1>Held writes <span class=\"muted\">({len(held)})</span></h1>",
            '<p class="muted">Destructive writes the safety brake held back; apply one with '
            "<code>relbridge held release ID</code>.</p>"]
    body.append(table(
        ["ID", "Record", "In", "Change", "Kind", "Held at"],
        [[h["id"], _record_link(h["entity"], h["key"]), f"{h['system']} {h['ref'] or ''}",
          "delete" if h["field"] is None else f"{h['field']}: {_short(h['old'])} → {_short(h['new'])}",
          h["kind"], _when(h["held_at"])] for h in held], numeric_from=99) if held else empty("no writes are held"))
    return page("Held writes", body, here="/ui/held")


def dlq_page(letters: list[dict[str, Any]]) -> str:
    body = [f"<h1>Dead letters <span class=\"muted\">({len(letters)})</span></h1>",
            '<p class="muted">Events that failed for good; replay one with <code>relbridge dlq retry ID</code> '
            "after fixing the cause.</p>"]
    body.append(table(
        ["ID", "System", "Object", "Attempts", "Reason", "Dead since"],
        [[d["id"], d["system"], f"{d['entity']} {d['ext_id']}", d["attempts"], d["last_error"], _when(d["dead_at"])]
         for d in letters], numeric_from=99) if letters else empty("no dead letters"))
    return page("Dead letters", body, here="/ui/dlq")


def problem_page(status: int, message: str) -> str:
    return page(f"{status}", [f"<h1>{status}</h1>", f"<p>{esc(message)}</p>", '<p><a href="/ui/">Releases</a></p>'])


def computing_page(title: str, headline: str, why: str, *, here: str) -> str:
    """Instead of a page whose figures were never computed yet: what is being computed and
    why it is not ready; the browser reloads it every few seconds until it is."""
    body = [f"<h1>{esc(title)}</h1>", f"<p><strong>{esc(headline)}</strong></p>",
            f'<p class="muted">{esc(why)}</p>']
    return page(title, body, here=here, reload_seconds=5)
