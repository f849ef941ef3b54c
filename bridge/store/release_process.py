"""Store operations on ``verifications``, ``early_life_incidents`` and ``plan_items`` (``bridge.release``).

A mixin of ``Operations`` like ``held.py``. A deployment's verification row is unique per
(release, deployment number): whoever inserts it first owns the run, and a run is claimed
with a lease so a second daemon, or a restart, never verifies the same deployment twice
while the first is alive, and takes over when it died.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update

from bridge.store import schema as t
from bridge.store.statements import upsert

_V = t.verifications


class ReleaseProcessOperations:
    """Rows of the release process (see the module docstring); mixed in after ``Operations``."""

    connection: Any  # (write: bool = True) -> AbstractContextManager[Connection]
    _now: Any  # (at: datetime | None = None) -> datetime

    def open_verification(self, release_key: str, deployment: int, deployed_at: datetime) -> bool:
        """Record a deployment to verify; False when it is recorded already."""
        with self.connection() as conn:
            # RETURNING, not rowcount: PostgreSQL reports no count for an insert that returns.
            statement = upsert(conn.dialect.name, _V).on_conflict_do_nothing(
                index_elements=["release_key", "deployment"]).returning(_V.c.id)
            result = conn.execute(statement, {
                "release_key": release_key, "deployment": deployment, "deployed_at": deployed_at,
                "state": "pending", "checks": [], "noted": []})
            return result.first() is not None

    def claim_verification(self, release_key: str, deployment: int, holder: str, ttl_seconds: float) -> bool:
        """Take the run of one deployment's verification: True when ``holder`` has it (it
        was pending, or running under an expired lease)."""
        now = self._now()
        due = or_(_V.c.state == "pending", and_(_V.c.state == "running", _V.c.lease_until <= now))
        with self.connection() as conn:
            result = conn.execute(
                update(_V).where(_V.c.release_key == release_key, _V.c.deployment == deployment, due)
                .values(state="running", holder=holder, lease_until=now + timedelta(seconds=ttl_seconds)))
            return bool(result.rowcount)

    def finish_verification(self, release_key: str, deployment: int, *, passed: bool,
                            checks: list[dict[str, Any]]) -> None:
        with self.connection() as conn:
            conn.execute(update(_V).where(_V.c.release_key == release_key, _V.c.deployment == deployment)
                         .values(state="passed" if passed else "failed", checks=checks,
                                 finished_at=self._now(), lease_until=None))

    def set_verification(self, release_key: str, deployment: int, **values: Any) -> None:
        """Update ``noted`` or ``action`` of a finished verification."""
        with self.connection() as conn:
            conn.execute(update(_V).where(_V.c.release_key == release_key, _V.c.deployment == deployment)
                         .values(**values))

    def verifications(self, release_key: str | None = None, *, due: bool = False) -> list[dict[str, Any]]:
        """Verification rows, oldest first (one release's; or only those waiting for a run:
        pending, or running under an expired lease)."""
        query = select(_V).order_by(_V.c.id)
        if release_key is not None:
            query = query.where(_V.c.release_key == release_key)
        if due:
            now = self._now()
            query = query.where(or_(_V.c.state == "pending",
                                    and_(_V.c.state == "running", _V.c.lease_until <= now)))
        with self.connection(write=False) as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def flag_early_life(self, release_key: str, incident_key: str, deployed_at: datetime,
                        opened_at: datetime) -> bool:
        """Flag an incident the release caused in its early life; False when flagged already."""
        e = t.early_life_incidents
        with self.connection() as conn:
            statement = upsert(conn.dialect.name, e).on_conflict_do_nothing(
                index_elements=["release_key", "incident_key"]).returning(e.c.incident_key)
            result = conn.execute(statement, {
                "release_key": release_key, "incident_key": incident_key, "deployed_at": deployed_at,
                "opened_at": opened_at, "flagged_at": self._now()})
            return result.first() is not None

    def early_life_incidents(self, release_key: str | None = None) -> list[dict[str, Any]]:
        """Flagged early-life incidents (``release_key``, ``incident_key``, ``deployed_at``,
        ``opened_at``, ``flagged_at``), by release then opening time."""
        e = t.early_life_incidents
        query = select(e).order_by(e.c.release_key, e.c.opened_at)
        if release_key is not None:
            query = query.where(e.c.release_key == release_key)
        with self.connection(write=False) as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    # -- release plans (``bridge.release.plan``) ------------------------------------------

    def plan_items(self, release_key: str | None = None) -> list[dict[str, Any]]:
        """Plan rows in plan order (one release's, or every release's)."""
        p = t.plan_items
        query = select(p).order_by(p.c.release_key, p.c.position, p.c.tag)
        if release_key is not None:
            query = query.where(p.c.release_key == release_key)
        with self.connection(write=False) as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def put_plan_item(self, row: dict[str, Any]) -> None:
        """Insert or replace one plan row (``release_key`` and ``tag`` name it)."""
        p = t.plan_items
        values = {**row, "updated_at": self._now()}
        with self.connection() as conn:
            statement = upsert(conn.dialect.name, p).values(values)
            conn.execute(statement.on_conflict_do_update(
                index_elements=["release_key", "tag"],
                set_={k: v for k, v in values.items() if k not in ("release_key", "tag")}))
