"""Store operations on ``conflicts`` that a person settles (``relbridge conflicts``).

A mixin of ``Operations`` (works on the ``Store`` and inside a ``UnitOfWork``). The engine
records conflicts as they happen (``Operations.add_conflict``); this module finds one by
id and marks it settled. What settling writes lives in ``bridge.engine.settle``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from bridge.store import schema as t
from bridge.store.rows import ConflictRow


class ConflictOperations:
    """``conflicts`` reads and writes for people; mixed in after ``Operations``."""

    connection: Any  # (write: bool = True) -> AbstractContextManager[Connection]
    _now: Any  # (at: datetime | None = None) -> datetime

    def conflict(self, conflict_id: int) -> ConflictRow | None:
        c = t.conflicts
        with self.connection(write=False) as conn:
            row = conn.execute(select(c).where(c.c.id == conflict_id)).first()
            return ConflictRow(**row._mapping) if row else None

    def settle_conflict(self, conflict_id: int, by: str, value: Any, at: datetime | None = None) -> bool:
        """Mark a conflict settled by ``by`` with ``value``; False when it was settled already
        (two people at once: the first one counts)."""
        c = t.conflicts
        with self.connection() as conn:
            result = conn.execute(update(c).where(c.c.id == conflict_id, c.c.settled_at.is_(None))
                                  .values(settled_by=by, settled_value=value, settled_at=self._now(at)))
            return bool(result.rowcount)

    def open_conflict_count(self) -> int:
        """Conflicts no person has settled yet."""
        c = t.conflicts
        with self.connection(write=False) as conn:
            return int(conn.execute(select(func.count()).select_from(c)
                                    .where(c.c.settled_at.is_(None))).scalar_one())
