"""Small HTML helpers for the KPI report and the console: one escaping rule for all pages.

Every value reaches the page through :func:`esc` (text) or :func:`attr` (attribute
values); only :class:`Html` — markup this module or :mod:`bridge.reports.svg` built — is
inserted as is. So a release called ``<script>`` is shown, never run. Pages carry their
CSS inline and load nothing from elsewhere (no CDN, no JavaScript).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit


class Html(str):
    """Markup that is already safe: inserted as is by :func:`esc` and :func:`table`."""

    __slots__ = ()


def esc(value: Any) -> Html:
    """Text as HTML; None is an em dash; :class:`Html` passes through."""
    if isinstance(value, Html):
        return value
    return Html("—" if value is None or value == "" else html.escape(str(value), quote=True))


def attr(value: Any) -> str:
    return html.escape(str(value), quote=True)


def link(href: str | None, text: Any) -> Html:
    """A link to a relative path or an http(s) page; any other scheme (``javascript:``) is
    shown as text, not made clickable."""
    if not href or urlsplit(href).scheme not in ("", "http", "https"):
        return esc(text)
    return Html(f'<a href="{attr(href)}">{esc(text)}</a>')


def no_data(reason: str) -> Html:
    return Html(f'<p class="muted no-data">No data: {esc(reason)}.</p>')


def empty(text: str) -> Html:
    """An empty list, said in words."""
    return Html(f'<p class="muted">{esc(text)}.</p>')


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric_from: int = 1) -> Html:
    """A table; columns from ``numeric_from`` on are right-aligned (numbers)."""
    def cell(tag: str, i: int, value: Any) -> str:
        css = ' class="num"' if i >= numeric_from else ""
        return f"<{tag}{css}>{esc(value) if value is not None else ''}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>" for r in rows)
    return Html(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def badge(text: str, kind: str) -> Html:
    """A coloured label (kind: ok, warn, bad, info)."""
    return Html(f'<span class="badge {attr(kind)}">{esc(text)}</span>')


CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2933;background:#f5f7fa}
main{padding:1.5rem 2rem;max-width:72rem}
nav{background:#102a43;padding:.6rem 2rem;display:flex;gap:1.25rem;align-items:center}
nav a{color:#d9e2ec;text-decoration:none}nav a.here{color:#fff;font-weight:600;border-bottom:2px solid #fff}
nav .brand{color:#fff;font-weight:700;margin-right:1rem}
h1{font-size:1.4rem;margin:.5rem 0 1rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;background:#fff}
td,th{padding:.3rem .75rem;border-bottom:1px solid #d9e2ec;text-align:left;vertical-align:top}
th{background:#f0f4f8;font-weight:600}.num{text-align:right}td:first-child{white-space:nowrap}
a{color:#1d5fbf}.muted{color:#627d98}
.badge{display:inline-block;padding:0 .45rem;border-radius:.6rem;font-size:.85em;white-space:nowrap}
.ok{background:#e3f9e5;color:#1e6e35}.warn{background:#fff3c4;color:#8d6708}
.bad{background:#ffe3e3;color:#a61b1b}.info{background:#e0e8f9;color:#2d3a8c}
.tiles{display:flex;flex-wrap:wrap;gap:.75rem}
.tile{background:#fff;border:1px solid #d9e2ec;border-radius:.4rem;padding:.6rem .9rem;min-width:11rem}
.tile .v{font-size:1.5rem;font-weight:600}.tile .k{color:#627d98;font-size:.85rem}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.chart{background:#fff;border:1px solid #d9e2ec;padding:.5rem}
.chart h3{font-size:.95rem;margin:.2rem 0}
svg text{font-size:12px;fill:#1f2933}svg .bar{fill:#2f80ed}svg .line{stroke:#2f80ed;fill:none;stroke-width:2}
svg .dot{fill:#2f80ed}svg .axis{stroke:#9fb3c8}
form.filter{margin:.5rem 0}dl.fields{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}
dl.fields dt{color:#627d98}dl.fields dd{margin:0}
"""

#: The console's pages, in the order the navigation shows them: (path, title).
CONSOLE_PAGES = (
    ("/ui", "Releases"),
    ("/ui/kpi", "KPIs"),
    ("/ui/conflicts", "Conflicts"),
    ("/ui/held", "Held writes"),
    ("/ui/dlq", "Dead letters"),
)


_HERE = ' class="here"'


def _nav(here: str) -> str:
    items = "".join(
        f'<a href="{path}"{_HERE if path == here else ""}>{title}</a>' for path, title in CONSOLE_PAGES
    )
    return f'<nav><span class="brand">relbridge</span>{items}</nav>'


def page(title: str, body: Iterable[str], *, here: str | None = None, reload_seconds: int | None = None) -> str:
    """A whole document. ``here`` (a console path) adds the console's navigation; without
    it the page stands alone (the file ``relbridge kpi --html`` writes). ``reload_seconds``
    has the browser load the page again after that long (no script needed)."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        + (f'<meta http-equiv="refresh" content="{int(reload_seconds)}">' if reload_seconds else "") +
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n"
        + (_nav(here) if here is not None else "")
        + "<main>\n" + "\n".join(body) + "\n</main></body></html>\n"
    )
