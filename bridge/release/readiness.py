"""Readiness: "all implications identified and validated prior to deployment" (ITIL).

Authorization says the changes were approved; readiness says each change carries what a
deployment needs: the plans ``[gate] require_change_fields`` names (implementation, backout,
test…) and, with ``[gate] require_cab``, a CAB date that has passed. Pure: the gate plugin,
``release show`` and the console share this one definition.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from bridge.model import ChangeRequest, ChangeState


def change_gaps(change: ChangeRequest, fields: Iterable[str], require_cab: bool, now: datetime) -> list[str]:
    """What ``change`` lacks to be ready, one short phrase per gap ([] when ready)."""
    gaps = [f"no {name}" for name in fields if _empty(getattr(change, name, None))]
    if require_cab:
        if change.cab_date is None:
            gaps.append("no cab_date")
        elif change.cab_date > now:
            gaps.append(f"cab_date {change.cab_date.isoformat().replace('+00:00', 'Z')} has not passed")
    return gaps


def readiness(changes: Iterable[ChangeRequest], fields: Iterable[str], require_cab: bool,
              now: datetime) -> dict[str, list[str]]:
    """Per linked change (canceled ones do not count): its gaps, [] when it is ready."""
    names = list(fields)
    return {c.key: change_gaps(c, names, require_cab, now)
            for c in changes if c.state != ChangeState.CANCELED}


def missing_for_readiness(changes: Iterable[ChangeRequest], fields: Iterable[str], require_cab: bool,
                          now: datetime) -> list[str]:
    """``"CHG0030001 has no backout_plan"``-style reasons, one per gap; empty when ready."""
    return [f"{key} has {gap}" if gap.startswith("no ") else f"{key}: {gap}"
            for key, gaps in readiness(changes, fields, require_cab, now).items() for gap in gaps]


def _empty(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
