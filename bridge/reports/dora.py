"""DORA's four keys and early-life incidents over a set of releases.

Definitions (each over the releases the report selects; see :mod:`bridge.reports.kpi`):

- *deployed release*: its history shows it entering ``deployed``, or it is deployed,
  closed or rolled back now (a rollback means it went out).
- *deployed at*: its first entry into ``deployed``; else its ``actual_end``; else, for a
  rolled-back release, its first entry into ``rolled_back``.
- ``deployment_frequency_per_week``: deployed releases / (days in the window / 7), two
  decimals. The window is the report's period; an open bound is replaced by the earliest
  (latest) planned-end day of the selected releases. Per month (``by_month``) the window
  is that calendar month's days inside the period.
- ``lead_time_for_changes_hours``: median, over the changes of deployed releases with a
  known ``opened_at`` not after the deployment, of change opened -> its release deployed.
- ``change_failure_rate_pct``: deployed releases that caused an incident (non-canceled,
  linked to the release or to one of its changes) or were rolled back, as a percentage of
  deployed releases, one decimal.
- ``time_to_restore_hours``: median, over incidents the selected releases caused that
  have both ``opened_at`` and ``resolved_at``, of opened -> resolved.
- ``early_life_incidents``: incidents the releases caused that were opened within
  ``early_life_days`` (default 14) after the release was deployed (``deployed_at <=
  opened_at < deployed_at + N days``).

A figure that cannot be computed is null, and ``no_data`` in the report says why (no
deployed release, no change with an opened date, ...), never a division by zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from bridge.model import ChangeRequest
from bridge.reports.facts import AnyIncident, ChangeEntry, ReleaseFacts, hours, median_or_none, pct

#: Days after a deployment in which an incident it caused counts as early-life.
EARLY_LIFE_DAYS = 14

NO_RELEASES = "no releases in the period"
NO_DEPLOYMENTS = "no deployed releases in the period"


def deployment_frequency(deployed: int, window_days: int | None) -> tuple[float | None, str | None]:
    if not window_days:
        return None, NO_RELEASES
    return round(deployed / (window_days / 7), 2), None


def lead_time_for_changes(
    deployed: list[ReleaseFacts], changes_of: Mapping[str, list[ChangeRequest | ChangeEntry]]
) -> tuple[float | None, str | None]:
    values = []
    for fact in deployed:
        at = fact.deployed_at
        if at is None:
            continue
        for change in changes_of.get(fact.release.key, ()):
            opened = change.opened_at
            if opened is not None and opened <= at:
                values.append((at - opened).total_seconds() / 3600)  # hours(), inline: 30,000 changes
    if values:
        return median_or_none(values), None
    return None, NO_DEPLOYMENTS if not deployed else "no change of a deployed release has an opened date before the deployment"


def change_failure_rate(
    deployed: list[ReleaseFacts], caused: Mapping[str, list[AnyIncident]]
) -> tuple[float | None, str | None]:
    failed = sum(1 for f in deployed if f.rolled_back or caused.get(f.release.key))
    rate = pct(failed, len(deployed))
    return rate, None if rate is not None else NO_DEPLOYMENTS


def time_to_restore(facts: list[ReleaseFacts], caused: Mapping[str, list[AnyIncident]]) -> tuple[float | None, str | None]:
    values = [
        hours(i.opened_at, i.resolved_at)
        for f in facts for i in caused.get(f.release.key, ())
        if i.opened_at is not None and i.resolved_at is not None
    ]
    if values:
        return median_or_none(values), None
    return None, "no incident caused by these releases has both an opened and a resolved time"


def early_life_incidents(
    deployed: list[ReleaseFacts], caused: Mapping[str, list[AnyIncident]], days: int = EARLY_LIFE_DAYS
) -> tuple[int | None, str | None]:
    known = [f for f in deployed if f.deployed_at is not None]
    if not known:
        return None, NO_DEPLOYMENTS if not deployed else "no deployed release has a known deployment time"
    span = timedelta(days=days)
    count = 0
    for fact in known:
        start = fact.deployed_at
        assert start is not None
        count += sum(1 for i in caused.get(fact.release.key, ())
                     if i.opened_at is not None and start <= i.opened_at < start + span)
    return count, None


def dora_figures(
    facts: list[ReleaseFacts],
    caused: Mapping[str, list[AnyIncident]],
    changes_of: Mapping[str, list[ChangeRequest | ChangeEntry]],
    *,
    window_days: int | None,
    early_life_days: int = EARLY_LIFE_DAYS,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The four keys and early-life incidents, and a reason for each one that is null."""
    deployed = [f for f in facts if f.was_deployed]
    results = {
        "deployment_frequency_per_week": deployment_frequency(len(deployed), window_days),
        "lead_time_for_changes_hours": lead_time_for_changes(deployed, changes_of),
        "change_failure_rate_pct": change_failure_rate(deployed, caused),
        "time_to_restore_hours": time_to_restore(facts, caused),
        "early_life_incidents": early_life_incidents(deployed, caused, early_life_days),
    }
    figures = {"deployments": len(deployed), **{name: value for name, (value, _) in results.items()}}
    reasons = {name: NO_RELEASES if not facts else reason for name, (_, reason) in results.items() if reason}
    return figures, reasons
