"""Early-life support: incidents a release caused soon after it went live.

ITIL's early-life support watches a release for a while after deployment. An incident
linked to a release (directly or through its change) whose opening falls within
``[verify] early_life_days`` of the release's latest deployment is flagged on the release
(``early_life_incidents`` in the store: ``release show`` lists them and the KPI report
counts them) and raises ``relbridge_early_life_incident`` once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bridge.release.verify import deployment_of

if TYPE_CHECKING:
    from bridge.release.bookkeeping import ReleaseRules
    from bridge.store import Store


def deployed_before(store: Store, release_key: str, at: datetime) -> datetime | None:
    """When the release last entered ``deployed`` at or before ``at`` (None: not yet)."""
    entries = [h.at for h in store.history(entity="release", key=release_key)
               if h.field == "state" and h.new == "deployed" and h.at <= at]
    return entries[-1] if entries else None


def check_incident(engine: ReleaseRules, incident_key: str, release_key: str) -> bool:
    """Flag the incident when it is an early-life one; True when newly flagged."""
    if deployment_of(engine.store, release_key) is None:
        return False
    incident = next(iter(engine.records.models("incident", [incident_key])), None)
    release = next(iter(engine.records.models("release", [release_key])), None)
    if incident is None or release is None:
        return False
    opened = incident.opened_at or engine.records.clock()
    deployed_at = deployed_before(engine.store, release_key, opened)
    if deployed_at is None or opened - deployed_at > timedelta(days=engine.config.verify.early_life_days):
        return False
    if not engine.store.flag_early_life(release_key, incident_key, deployed_at, opened):
        return False
    engine.hooks.early_life_incident(release, incident, deployed_at)
    return True
