"""Store operations on ``worklogs``: the time logged against records, as last read.

A mixin of ``Operations`` (works on the ``Store`` and inside a ``UnitOfWork``, where the
engine writes an object's entries with its record so both land or neither does).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, select

from bridge.adapter import WorklogEntry
from bridge.store import schema as t
from bridge.store.statements import upsert


class WorklogRow(NamedTuple):
    """One entry as the KPIs read it."""

    entity: str
    key: str
    started: datetime
    seconds: int
    group: str | None


class WorklogOperations:
    """``worklogs`` reads and writes; mixed in after ``Operations``."""

    connection: Any  # (write: bool = True) -> AbstractContextManager[Connection]

    def put_worklogs(self, system: str, entity: str, ext_id: str, key: str,
                     entries: Iterable[WorklogEntry]) -> None:
        """Make the stored entries of one object exactly ``entries`` (every entry it has):
        insert or update each (idempotent), and drop those the system no longer has."""
        w = t.worklogs
        rows = [{"system": system, "entity": entity, "ext_id": ext_id, "entry_id": e.id, "key": key,
                 "started": e.started, "seconds": int(e.seconds), "author": e.author[:255],
                 "work_group": e.group[:255] if e.group else None} for e in entries]
        where = (w.c.system == system, w.c.entity == entity, w.c.ext_id == ext_id)
        with self.connection() as conn:
            conn.execute(delete(w).where(*where, w.c.entry_id.not_in([r["entry_id"] for r in rows])))
            if rows:
                ins = upsert(conn.dialect.name, w)
                conn.execute(ins.on_conflict_do_update(
                    index_elements=["system", "entity", "ext_id", "entry_id"],
                    set_={name: ins.excluded[name] for name in ("key", "started", "seconds", "author", "work_group")},
                ), rows)

    def worklog_rows(self) -> list[WorklogRow]:
        """Every stored entry: a lean read for reports."""
        w = t.worklogs
        with self.connection(write=False) as conn:
            started = t.utc_text(w.c.started, conn.dialect.name)  # see utc_text: the lean way
            rows = conn.execute(select(w.c.entity, w.c.key, started, w.c.seconds, w.c.work_group)).all()
        parse = datetime.fromisoformat
        return [WorklogRow(entity, key, parse(at), seconds, group) for entity, key, at, seconds, group in rows]
