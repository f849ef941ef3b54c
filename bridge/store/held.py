"""Store operations on ``held_writes``: destructive writes the safety brake held back.

A mixin of ``Operations`` (so it works on the ``Store`` and inside a ``UnitOfWork``). The
rules about what is held and when a hold ends live in ``bridge.engine.safety``; this module only
keeps the rows: one per record, target system and field, a newer hold replacing an older.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select

from bridge.store import schema as t
from bridge.store.rows import HeldWriteRow
from bridge.store.statements import upsert

_HELD_COLUMNS = ("kind", "ext_id", "ext_key", "old", "new", "reason", "held_at")

# ``drop_held`` runs on every record write: its four forms are built once, with bound
# parameters, and a list of fields is sent as one statement per field (executemany), not as
# an expanding ``IN``, which SQLAlchemy compiles again on every run.
_h = t.held_writes
_DROP_HELD = delete(_h).where(_h.c.entity == bindparam("entity"), _h.c.key == bindparam("key"))
_DROP_HELD_FORMS = {
    (by_field, by_system): _DROP_HELD.where(
        *([_h.c.field == bindparam("field")] if by_field else []),
        *([_h.c.system == bindparam("system")] if by_system else []))
    for by_field in (False, True) for by_system in (False, True)
}


class HeldWriteOperations:
    """``held_writes`` reads and writes (see the module docstring); mixed in after
    ``Operations``, whose ``connection`` and ``_now`` it uses."""

    connection: Any  # (write: bool = True) -> AbstractContextManager[Connection]
    _now: Any  # (at: datetime | None = None) -> datetime

    def hold_write(
        self, entity: str, key: str, system: str, field: str, *, kind: str, old: Any, new: Any,
        reason: str, ext_id: str | None = None, ext_key: str | None = None,
        at: datetime | None = None,
    ) -> int:
        """Keep a held write; returns its id (the same id when the field was held already)."""
        h = t.held_writes
        with self.connection() as conn:
            ins = upsert(conn.dialect.name, h)
            statement = ins.on_conflict_do_update(
                index_elements=["entity", "key", "system", "field"],
                set_={name: ins.excluded[name] for name in _HELD_COLUMNS},
            ).returning(h.c.id)
            return int(conn.execute(statement, {
                "entity": entity, "key": key, "system": system, "field": field, "kind": kind,
                "ext_id": ext_id, "ext_key": ext_key, "old": old, "new": new, "reason": reason,
                "held_at": self._now(at),
            }).scalar_one())

    def held_writes(self, ids: Iterable[int] | None = None, *, entity: str | None = None,
                    key: str | None = None) -> list[HeldWriteRow]:
        """Held writes, oldest first (only ``ids``, or one record's, when given)."""
        h = t.held_writes
        query = select(h).order_by(h.c.id)
        if ids is not None:
            query = query.where(h.c.id.in_(list(ids)))
        if entity is not None:
            query = query.where(h.c.entity == entity)
        if key is not None:
            query = query.where(h.c.key == key)
        with self.connection(write=False) as conn:
            return [HeldWriteRow(**row._mapping) for row in conn.execute(query)]

    def held_count(self) -> int:
        with self.connection(write=False) as conn:
            return int(conn.execute(select(func.count()).select_from(t.held_writes)).scalar_one())

    def drop_held(self, entity: str, key: str, fields: Iterable[str] | None = None,
                  system: str | None = None) -> int:
        """Forget the holds of these fields of one record (every field when None; in one
        system, or in every one)."""
        params: dict[str, Any] = {"entity": entity, "key": key}
        if system is not None:
            params["system"] = system
        rows = [params] if fields is None else [{**params, "field": field} for field in sorted(set(fields))]
        if not rows:
            return 0
        statement = _DROP_HELD_FORMS[(fields is not None, system is not None)]
        with self.connection() as conn:
            return int(conn.execute(statement, rows if len(rows) > 1 else rows[0]).rowcount)

    def delete_held(self, ids: Iterable[int]) -> int:
        h = t.held_writes
        with self.connection() as conn:
            return int(conn.execute(delete(h).where(h.c.id.in_(list(ids)))).rowcount)
