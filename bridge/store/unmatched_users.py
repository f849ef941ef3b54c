"""Store operations on ``unmatched_users``: assignees left unwritten because the other
system has no user with their e-mail (``bridge.engine.users``; shown by ``relbridge status``).

A mixin of ``Operations`` (works on the ``Store`` and inside a ``UnitOfWork``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select

from bridge.store import schema as t
from bridge.store.statements import upsert

_u = t.unmatched_users
# Run by every create and write of a record with person fields: built once.
_CLEAR = delete(_u).where(_u.c.entity == bindparam("entity"), _u.c.key == bindparam("key"),
                          _u.c.system == bindparam("system"),
                          _u.c.field.in_(bindparam("fields", expanding=True)))


@dataclass(frozen=True)
class UnmatchedUser:
    entity: str
    key: str
    system: str  # the system with no user of that e-mail
    field: str  # that system's field left as it was
    email: str
    at: datetime


class UnmatchedUserOperations:
    """``unmatched_users`` reads and writes; mixed in after ``Operations``."""

    connection: Any  # (write: bool = True) -> AbstractContextManager[Connection]
    _now: Any  # (at: datetime | None = None) -> datetime

    def put_unmatched_user(self, entity: str, key: str, system: str, field: str, email: str,
                           at: datetime | None = None) -> None:
        """Record (or refresh) that ``email`` matched no user of ``system`` for ``field``."""
        u = t.unmatched_users
        with self.connection() as conn:
            ins = upsert(conn.dialect.name, u)
            conn.execute(ins.on_conflict_do_update(
                index_elements=["entity", "key", "system", "field"],
                set_={"email": ins.excluded.email, "at": ins.excluded.at},
            ), {"entity": entity, "key": key, "system": system, "field": field, "email": email,
                "at": self._now(at)})

    def clear_unmatched_users(self, entity: str, key: str, system: str, fields: list[str]) -> None:
        """The record's ``fields`` in ``system`` are matched (or unassigned) now."""
        if not fields:
            return
        with self.connection() as conn:
            conn.execute(_CLEAR, {"entity": entity, "key": key, "system": system, "fields": list(fields)})

    def unmatched_users(self) -> list[UnmatchedUser]:
        """Every unmatched user, by record."""
        u = t.unmatched_users
        with self.connection(write=False) as conn:
            rows = conn.execute(select(u).order_by(u.c.entity, u.c.key, u.c.system, u.c.field))
            return [UnmatchedUser(**row._mapping) for row in rows]
