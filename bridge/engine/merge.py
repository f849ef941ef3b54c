"""Per-field merge of one system's changes into the canonical record (DESIGN §3 step 4).

Pure: the engine gives what the source system changed since relbridge last saw it, the
canonical values, and which canonical fields are still waiting to be written to that
system (changed by the other side, not yet propagated). The answer says which values to
accept, which fields to put back in the source system, and which conflicts happened.

Rules, per field the source changed:
* same value as canonical: nothing to do (set-valued maps make most echoes land here);
* owned by the other system: refused, and the canonical value is written back;
* the other side changed it too since the last sync (it is still pending for the source):
  a conflict, settled by policy — ``last_writer_wins`` compares the two systems' update
  times, ``servicenow_wins`` / ``jira_wins`` always prefer that system;
* otherwise accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ANY = "any"


@dataclass(frozen=True)
class Conflict:
    field: str
    source_value: Any
    canonical_value: Any
    resolution: str  # the policy applied
    source_won: bool


@dataclass
class MergeResult:
    accepted: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field -> (old, new)
    restore: set[str] = field(default_factory=set)  # fields to write back to the source
    conflicts: list[Conflict] = field(default_factory=list)


def merge(
    *,
    source: str,
    changed: Mapping[str, Any],
    canonical: Mapping[str, Any],
    pending_for_source: set[str],
    owners: Mapping[str, str],
    policy: str,
    source_time: datetime,
    field_times: Mapping[str, datetime],
    source_field_times: Mapping[str, datetime] | None = None,
) -> MergeResult:
    """Merge ``changed`` (canonical field -> value the source now has) into ``canonical``.

    ``source_time`` is when the source record last changed; ``source_field_times`` when the
    source last set individual fields, where it records that (more precise, preferred);
    ``field_times`` when the canonical values were set."""
    source_field_times = source_field_times or {}
    result = MergeResult()
    for name, value in changed.items():
        current = canonical.get(name)
        if value == current:
            continue
        owner = owners.get(name, ANY)
        if owner not in (ANY, source):
            result.restore.add(name)
            continue
        if owner == ANY and name in pending_for_source:
            won = _source_wins(source, policy, source_field_times.get(name, source_time), field_times.get(name))
            result.conflicts.append(Conflict(name, value, current, policy, won))
            if not won:
                result.restore.add(name)
                continue
        result.accepted[name] = (current, value)
    return result


def _source_wins(source: str, policy: str, source_time: datetime, canonical_time: datetime | None) -> bool:
    if policy == "last_writer_wins":
        return canonical_time is None or source_time >= canonical_time
    return policy == f"{source}_wins"
