"""The release overview: ``relbridge release list`` and the console's releases page.

One row per release: state, authorization and what blocks it (readiness), plan against
actual. Built from two bulk reads of only the fields shown (releases, then every change's
state and approval, picked out by the database), so listing 10,000 releases costs two
queries and decodes no whole record.
"""

from __future__ import annotations

import json
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


#: What a row shows of a release, read without decoding the whole record.
_ROW_FIELDS = ("name", "state", "planned_start", "planned_end", "actual_start", "actual_end", "change_requests",
               "incidents")


# Looked up, not called: 60,000 enum calls were a fifth of the overview's time.
_STATES = {s.value: s for s in ChangeState}
_APPROVALS = {a.value: a for a in Approval}


def _changes(store: Store) -> dict[str, _Change]:
    """Every change, only what authorization reads, picked out by the database: the
    stored records were validated when written, and decoding and validating 30,000 whole
    changes again was most of the overview's time."""
    return {key: _Change(key, _STATES.get(state or "new") or ChangeState(state),
                         _APPROVALS.get(approval or "not_requested") or Approval(approval))
            for key, state, approval in store.record_values("change", ("state", "approval"))}


def _array(value: Any) -> list[Any]:
    """A list field as ``record_values`` hands it out (its JSON text), or none."""
    if value is None:
        return []
    return json.loads(value) if isinstance(value, str) else list(value)


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
    picked = [fields for fields in (dict(zip(("key", *_ROW_FIELDS), values, strict=True))
                                    for values in store.record_values("release", _ROW_FIELDS))
              if (state is None or fields["state"] == state) and _planned_end_from(since, fields["planned_end"])]
    changes = _changes(store) if picked else {}
    rows = []
    for fields in picked:
        linked = [changes[c] for c in _array(fields["change_requests"]) if c in changes]
        missing = lifecycle.missing_for_authorization(linked)
        rows.append({
            "key": fields["key"], "name": fields["name"], "state": fields["state"],
            "authorized": not missing, "missing_for_authorization": missing,
            "planned_start": fields["planned_start"], "planned_end": fields["planned_end"],
            "actual_start": fields["actual_start"], "actual_end": fields["actual_end"],
            "slip_days": _slip_days(fields), "changes": len(linked), "incidents": len(_array(fields["incidents"])),
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
