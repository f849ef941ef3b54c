"""Adoption: the first meeting of two objects that relbridge has never synced (DESIGN §10).

A fresh or lost store, a second installation, or systems linked by hand all bring pairs of
objects that already hold data on both sides. Merging them as if one side had just been
edited would let whichever side was read last overwrite the other, so adoption asks, per
field, what the systems themselves can prove:

* both sides agree, or one value writes as the other (a Jira ``released`` version and a
  ServiceNow state that stands for ``deployed``; a Jira date and a ServiceNow date-time on
  that day): the more precise value is taken and nothing is written;
* they differ and the systems' own times prove which side changed the field last: that side
  wins. A value relbridge set when it created an object (the object carries relbridge's
  correlation tag and the field has not changed since) is relbridge's copy, never a
  person's, so it loses to the other side;
* otherwise (no history, overlapping times) the difference is recorded as a conflict and
  **nothing is written**: a person settles it.

Whatever the times say, adoption never writes a release state backwards, never writes a
close code, and never rewrites a read-only fact (a field one system only reports, such as
an incident's ``opened_at``): those are recorded as conflicts instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bridge.adapter import FieldTime, SystemRecord
from bridge.engine.merge import Conflict, MergeResult
from bridge.mapping.loader import SystemMapping

#: The resolution recorded for a difference adoption could not settle.
HELD = "held_for_review"

#: Release states in the order a release moves forward; adoption only writes forward moves.
FORWARD = ("planned", "in_progress", "authorized", "deploying", "deployed", "closed")

#: Fields adoption never writes, whatever the times say (a person decides).
NEVER_WRITTEN = {"change": {"close_code"}}


@dataclass(frozen=True)
class FieldClock:
    """When one side's value of a field was last set: no earlier than ``earliest`` and no
    later than ``latest`` (None: unbounded); ``by_relbridge`` when it is the value relbridge
    set when it created the object."""

    earliest: datetime | None
    latest: datetime | None
    by_relbridge: bool = False


def seen_of(record: SystemRecord, mapping: SystemMapping) -> dict[str, Any]:
    """What the envelope keeps about an object read before its pair was adopted: enough to
    rebuild its fields' clocks later (JSON-safe)."""
    specs = mapping.fields(record.entity)
    return {
        "updated": record.updated_at.isoformat(),
        "made": record.correlation is not None,
        "times": {spec.field: record.field_times[spec.source].isoformat()
                  for spec in specs if spec.source in record.field_times},
        "untouched": sorted({spec.field for spec in specs if spec.source in record.untouched}),
    }


def add_field_times(seen: dict[str, Any], times: Mapping[str, FieldTime]) -> None:
    """Field times learnt later (an audit history) join what ``seen_of`` kept."""
    if not times:
        return
    seen["times"] = {**seen.get("times", {}), **{f: t.at.isoformat() for f, t in times.items()}}
    untouched = set(seen.get("untouched", ())) - set(times)
    seen["untouched"] = sorted(untouched | {f for f, t in times.items() if t.at_creation})


def clock(seen: Mapping[str, Any] | None, field: str, fallback: datetime | None) -> FieldClock:
    """The clock of ``field`` from ``seen_of`` data (``fallback``: the latest time known when
    nothing was kept, e.g. a record stored before adoption existed)."""
    if not seen:
        return FieldClock(None, fallback)
    exact = seen.get("times", {}).get(field)
    if exact:
        at = datetime.fromisoformat(exact)
        return FieldClock(at, at, bool(seen.get("made")) and field in seen.get("untouched", ()))
    return FieldClock(None, datetime.fromisoformat(seen["updated"]))


#: Two systems' clocks are only compared beyond this margin: ServiceNow keeps whole seconds,
#: and two servers' clocks drift apart.
CLOCK_MARGIN = timedelta(seconds=2)


def last_writer(this: FieldClock, other: FieldClock) -> str | None:
    """"this" or "other" when the clocks prove who set the field last, else None."""
    if this.by_relbridge != other.by_relbridge:
        return "other" if this.by_relbridge else "this"
    if _after(this.earliest, other.latest):
        return "this"
    if _after(other.earliest, this.latest):
        return "other"
    return None


def _after(earliest: datetime | None, latest: datetime | None) -> bool:
    return earliest is not None and latest is not None and earliest > latest + CLOCK_MARGIN


@dataclass
class Pair:
    """One field's two sides during adoption."""

    entity: str
    this: SystemMapping  # the system being read now
    other: SystemMapping  # the system the canonical record came from
    this_raw: Mapping[str, Any]
    other_raw: Mapping[str, Any] | None
    writes_as: Callable[[SystemMapping, str, Any, Mapping[str, Any]], bool]


def adopt(
    pair: Pair,
    mapped: Mapping[str, Any],
    canonical: Mapping[str, Any],
    clocks: Callable[[str], tuple[FieldClock, FieldClock]],
) -> MergeResult:
    """Settle every field the object being read maps (see the module docstring).

    ``accepted`` holds the values taken from this side (written to the other side when they
    differ there); ``restore`` the fields the other side won (written to this side);
    ``conflicts`` the differences left for a person, with nothing written.
    """
    result = MergeResult()
    for name, value in mapped.items():
        current = canonical.get(name)
        if value == current or current is None and value in (None, "", []):
            continue
        if current is None:
            result.accepted[name] = (current, value)  # only this side has it: take it
            continue
        # One side's value may write as the other's (lossy maps): no write needed anywhere.
        if pair.writes_as(pair.this, name, current, pair.this_raw):
            continue
        if pair.other_raw is not None and pair.writes_as(pair.other, name, value, pair.other_raw):
            result.accepted[name] = (current, value)
            continue
        winner = _winner(pair, name, current, value, clocks)
        if winner == "this":
            result.accepted[name] = (current, value)
        elif winner == "other":
            result.restore.add(name)
        else:
            result.conflicts.append(Conflict(name, value, current, HELD, False))
    return result


def _winner(pair: Pair, name: str, current: Any, value: Any,
            clocks: Callable[[str], tuple[FieldClock, FieldClock]]) -> str | None:
    if name in NEVER_WRITTEN.get(pair.entity, ()) or _read_only(pair, name):
        return None
    winner = last_writer(*clocks(name))
    if winner is not None and pair.entity == "release" and name == "state":
        old, new = (current, value) if winner == "this" else (value, current)
        if not _forward(old, new):
            return None
    return winner


def _read_only(pair: Pair, name: str) -> bool:
    """A fact one of the systems only reports (``direction = "inbound"``) is never
    rewritten by adoption."""
    for mapping in (pair.this, pair.other):
        for spec in mapping.fields(pair.entity):
            if spec.field == name and spec.direction == "inbound":
                return True
    return False


def _forward(old: Any, new: Any) -> bool:
    return old in FORWARD and new in FORWARD and FORWARD.index(new) > FORWARD.index(old)
