"""Charts as inline SVG (no namespace URL: HTML5 does not need one), for the KPI dashboard.

Each mark carries a ``<title>`` so hovering shows the exact value; every label goes
through :func:`bridge.reports.html.esc`.
"""

from __future__ import annotations

from collections.abc import Sequence

from bridge.reports.html import Html, attr, esc, no_data

_LABEL_CHARS = 32


def _short(name: str) -> str:
    return name if len(name) <= _LABEL_CHARS else name[: _LABEL_CHARS - 1] + "…"


def bar_chart(label: str, items: Sequence[tuple[str, float]], *, unit: str = "", scale: float | None = None,
              empty: str = "nothing to show") -> Html:
    """Horizontal bars. Long labels are shortened to fit; the full one is in the tooltip."""
    if not items:
        return no_data(empty)
    top = scale or max(v for _, v in items) or 1
    row, left, width = 24, 220, 360
    parts = [f'<svg role="img" aria-label="{attr(label)}" width="{left + width + 90}" height="{row * len(items) + 8}">']
    for i, (name, value) in enumerate(items):
        y, w = i * row + 4, max(width * value / top, 1 if value else 0)
        parts.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{esc(_short(name))}</text>'
            f'<rect class="bar" x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 8}">'
            f"<title>{esc(name)}: {esc(value)}{esc(unit) if unit else ''}</title></rect>"
            f'<text x="{left + w + 6:.1f}" y="{y + 15}">{esc(value)}{esc(unit) if unit else ""}</text>'
        )
    parts.append("</svg>")
    return Html("".join(parts))


def trend_chart(label: str, points: Sequence[tuple[str, float | None]], *, unit: str = "",
                empty: str = "no months with data") -> Html:
    """A line over months (x: the months in order, y: from 0 to the largest value). A month
    without a value breaks the line rather than counting as zero."""
    known = [v for _, v in points if v is not None]
    if not known:
        return no_data(empty)
    width, height, left, bottom, top_pad = 360, 170, 44, 28, 12
    plot_w, plot_h = width - left - 12, height - bottom - top_pad
    top = max(known) or 1
    step = plot_w / max(len(points) - 1, 1)

    def xy(i: int, value: float) -> tuple[float, float]:
        return left + i * step, top_pad + plot_h * (1 - value / top)

    parts = [f'<svg role="img" aria-label="{attr(label)}" width="{width}" height="{height}">',
             f'<line class="axis" x1="{left}" y1="{top_pad + plot_h}" x2="{width - 8}" y2="{top_pad + plot_h}"/>',
             f'<line class="axis" x1="{left}" y1="{top_pad}" x2="{left}" y2="{top_pad + plot_h}"/>',
             f'<text x="{left - 6}" y="{top_pad + 4}" text-anchor="end">{esc(_round(top))}</text>',
             f'<text x="{left - 6}" y="{top_pad + plot_h}" text-anchor="end">0</text>']
    segment: list[str] = []
    for i, (month, value) in enumerate(points):
        if value is None:
            parts.append(_polyline(segment))
            segment = []
            continue
        x, y = xy(i, value)
        segment.append(f"{x:.1f},{y:.1f}")
        parts.append(f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3.5">'
                     f"<title>{esc(month)}: {esc(value)}{esc(unit) if unit else ''}</title></circle>")
    parts.append(_polyline(segment))
    every = -(-len(points) // 4)  # at most 4 month labels, so they never overlap
    for i, (month, _) in enumerate(points):
        if i % every == 0:
            anchor = "start" if i == 0 else "end" if i == len(points) - 1 else "middle"
            parts.append(f'<text x="{left + i * step:.1f}" y="{height - 8}" text-anchor="{anchor}">{esc(month)}</text>')
    parts.append("</svg>")
    return Html("".join(parts))


def _polyline(points: list[str]) -> str:
    return f'<polyline class="line" points="{" ".join(points)}"/>' if len(points) > 1 else ""


def _round(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"
