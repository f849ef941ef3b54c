"""The release overview: ``relbridge release list`` and the console's releases page.

One row per release: state, authorization and what blocks it (readiness), plan against
actual. Built from two bulk reads (releases, then the changes they link), so listing
10,000 releases costs two queries, not one per release.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from bridge import lifecycle
from bridge.errors import BadInput, did_you_mean
from bridge.model import Approval, ChangeState, ReleaseState
from bridge.reports.facts import parse_time

if TYPE_CHECKING:
    from bridge.store import Store


def _day(value: Any) -> str | None:
    at = parse_time(value) if isinstance(value, str) else None
    return at.date().isoformat() if at else None


def _slip_days(fields: dict[str, Any]) -> int | None:
    """Actual end minus planned end in whole days (positive: late); None while unknown."""
    planned, actual = parse_time(fields.get("planned_end")), parse_time(fields.get("actual_end"))
    if planned is None or actual is None:
        return None
    return (actual.date() - planned.date()).days


class _Change(NamedTuple):
    """What authorization reads of a change (``lifecycle.Authorizing``)."""

    key: str
    state: ChangeState
    approval: Approval


def _changes(store: Store, keys: set[str]) -> dict[str, _Change]:
    """The linked changes, only what authorization reads: the stored records were
    validated when written, and making a whole ``ChangeRequest`` of each of 30,000 changes
    again took most of the overview's time."""
    return {key: _Change(key, ChangeState(data["fields"].get("state") or ChangeState.NEW),
                         Approval(data["fields"].get("approval") or Approval.NOT_REQUESTED))
            for key, data in store.get_records("change", keys).items()}


def check_state(state: str | None) -> None:
    """``BadInput`` for a state no release can be in."""
    if state is not None and state not in ReleaseState.__members__.values():
        raise BadInput(f"unknown release state {state!r}{did_you_mean(state, list(ReleaseState))} "
                       f"(one of: {', '.join(ReleaseState)})")


def _planned_end_from(since: date | None, planned_end: Any) -> bool:
    """True when there is no ``since`` or the planned end is on or after it."""
    if since is None:
        return True
    end = parse_time(planned_end)
    return end is not None and end.date() >= since


def pick_rows(rows: list[dict[str, Any]], *, state: str | None = None, since: date | None = None) -> list[dict[str, Any]]:
    """The rows of the whole overview that ``release_rows(state=, since=)`` would give."""
    check_state(state)
    return [r for r in rows if (state is None or r["state"] == state) and _planned_end_from(since, r["planned_end"])]


def release_rows(store: Store, *, state: str | None = None, since: date | None = None) -> list[dict[str, Any]]:
    """The overview rows, latest planned end first. ``state`` and ``since`` (planned end on
    or after that day) filter; an unknown state is ``BadInput``."""
    check_state(state)
    picked = []
    for key, data in store.records("release"):
        fields = data["fields"]
        if state is not None and fields.get("state") != state:
            continue
        if not _planned_end_from(since, fields.get("planned_end")):
            continue
        picked.append((key, fields))
    changes = _changes(store, {c for _, f in picked for c in f.get("change_requests") or ()})
    rows = []
    for key, fields in picked:
        linked = [changes[c] for c in fields.get("change_requests") or () if c in changes]
        missing = lifecycle.missing_for_authorization(linked)
        rows.append({
            "key": key, "name": fields.get("name"), "state": fields.get("state"),
            "authorized": not missing, "missing_for_authorization": missing,
            "planned_start": fields.get("planned_start"), "planned_end": fields.get("planned_end"),
            "actual_start": fields.get("actual_start"), "actual_end": fields.get("actual_end"),
            "slip_days": _slip_days(fields), "changes": len(linked), "incidents": len(fields.get("incidents") or ()),
        })
    rows.sort(key=lambda r: r["key"])
    rows.sort(key=lambda r: r["planned_end"] or "", reverse=True)  # stable: latest first, undated last
    return rows


def render_release_rows(rows: list[dict[str, Any]]) -> str:
    """Aligned text: key, state, authorized, planned end, actual end, slip, name."""
    if not rows:
        return "no releases match"
    header = ("KEY", "STATE", "AUTH", "PLANNED END", "ACTUAL END", "SLIP", "NAME")
    table = [header] + [
        (r["key"], r["state"] or "-", "yes" if r["authorized"] else "no", _day(r["planned_end"]) or "-",
         _day(r["actual_end"]) or "-", "-" if r["slip_days"] is None else f"{r['slip_days']:+d}d", r["name"] or "")
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
        for line in table
    )


def release_names(store: Store) -> list[str]:
    """Every release's key and name, for did-you-mean on a mistyped reference."""
    names = []
    for key, data in store.records("release"):
        names += [key, str(data["fields"].get("name") or "")]
    return [n for n in names if n]


def parse_day(text: str | None, what: str) -> date | None:
    """A ``YYYY-MM-DD`` query value; ``BadInput`` naming the parameter otherwise."""
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise BadInput(f"{what}: {text!r} is not a date (YYYY-MM-DD)") from None
