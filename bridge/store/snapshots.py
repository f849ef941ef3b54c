"""Store operations on ``console_snapshots``: the console's last built views.

A mixin of ``Operations``. The console (``bridge.reports.freshness``) decides what a view
is and when it is stale; this module only keeps one row per view, a newer build replacing
the older (two daemons sharing a store may both write it: either one is a true picture).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select

from bridge.store import schema as t
from bridge.store.statements import upsert


class SnapshotRow(NamedTuple):
    """A built view: the data version it was built from, when, and the value."""

    data_version: str
    computed_at: datetime
    value: Any


class SnapshotOperations:
    """``console_snapshots`` reads and writes; mixed in after ``Operations``."""

    connection: Any  # (write: bool = True) -> AbstractContextManager[Connection]

    def save_snapshot(self, name: str, data_version: str, computed_at: datetime, value: Any) -> None:
        s = t.console_snapshots
        row = {"name": name, "data_version": data_version, "computed_at": computed_at,
               "value": json.dumps(value, separators=(",", ":"))}
        with self.connection() as conn:
            statement = upsert(conn.dialect.name, s).values(**row)
            conn.execute(statement.on_conflict_do_update(
                index_elements=["name"], set_={k: statement.excluded[k] for k in row if k != "name"}))

    def snapshot(self, name: str) -> SnapshotRow | None:
        s = t.console_snapshots
        with self.connection(write=False) as conn:
            row = conn.execute(select(s.c.data_version, s.c.computed_at, s.c.value).where(s.c.name == name)).first()
        return SnapshotRow(row.data_version, row.computed_at, json.loads(row.value)) if row else None
