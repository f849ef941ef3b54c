"""Store operations on ``comment_links``: which comment on one side is which on the other.

A mixin of ``Operations`` (works on the ``Store`` and inside a ``UnitOfWork``). The rules
(when a comment crosses, how a cut-short copy is found again) live in
``bridge.engine.comments``; this module only keeps the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update

from bridge.store import schema as t
from bridge.store.statements import upsert


@dataclass(frozen=True)
class CommentLink:
    id: int
    entity: str
    key: str
    source_system: str
    source_id: str
    target_system: str
    target_id: str | None
    state: str  # sending | sent | failed
    body_hash: str
    reason: str | None
    event_id: int | None
    at: datetime


_c = t.comment_links
# Read for every record whose comments are synced: built once (see bridge.store.operations).
_RECORD_LINKS = select(_c).where(_c.c.entity == bindparam("entity"), _c.c.key == bindparam("key")).order_by(_c.c.id)


class CommentLinkOperations:
    """``comment_links`` reads and writes; mixed in after ``Operations``."""

    connection: Any  # (write: bool = True) -> AbstractContextManager[Connection]
    _now: Any  # (at: datetime | None = None) -> datetime

    def comment_links(self, entity: str, key: str) -> list[CommentLink]:
        """Every link of one record's comments, oldest first."""
        with self.connection(write=False) as conn:
            rows = conn.execute(_RECORD_LINKS, {"entity": entity, "key": key})
            return [CommentLink(**row._mapping) for row in rows]

    def put_comment_link(
        self, entity: str, key: str, source_system: str, source_id: str, target_system: str, *,
        state: str, body_hash: str, target_id: str | None = None, reason: str | None = None,
        event_id: int | None = None, at: datetime | None = None,
    ) -> None:
        """Insert or replace the link of one source comment to one target system."""
        c = t.comment_links
        values = {"key": key, "target_id": target_id, "state": state, "body_hash": body_hash,
                  "reason": reason, "event_id": event_id, "at": self._now(at)}
        with self.connection() as conn:
            ins = upsert(conn.dialect.name, c)
            conn.execute(ins.on_conflict_do_update(
                index_elements=["entity", "source_system", "source_id", "target_system"],
                set_={name: ins.excluded[name] for name in values},
            ), {"entity": entity, "source_system": source_system, "source_id": source_id,
                "target_system": target_system, **values})

    def claim_comment_link(
        self, entity: str, key: str, source_system: str, source_id: str, target_system: str, *,
        body_hash: str, at: datetime | None = None,
    ) -> bool:
        """Record, before a copy is sent, that it is being sent (state ``sending``); False
        when a link exists already (another worker or process has it)."""
        c = t.comment_links
        with self.connection() as conn:
            ins = upsert(conn.dialect.name, c)
            result = conn.execute(ins.on_conflict_do_nothing(
                index_elements=["entity", "source_system", "source_id", "target_system"]), {
                "entity": entity, "key": key, "source_system": source_system,
                "source_id": source_id, "target_system": target_system, "state": "sending",
                "body_hash": body_hash, "at": self._now(at)})
            return bool(result.rowcount)

    def set_comment_target(self, link_id: int, target_id: str) -> None:
        """Remember which comment a copy became (learnt when its marker is read back)."""
        c = t.comment_links
        with self.connection() as conn:
            conn.execute(update(c).where(c.c.id == link_id).values(target_id=target_id))
