"""What the store returns: small immutable rows, and the store's own errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.errors import PermanentError, TransientError


class StaleRecord(TransientError):
    """``put_record`` with an ``expected_revision`` lost a race: re-read and merge again."""

    code = "stale_record"


class RefConflict(PermanentError):
    """An external object is already linked to a different canonical record."""

    code = "ref_conflict"


@dataclass(frozen=True)
class RecordRow:
    entity: str
    key: str
    data: dict[str, Any]
    revision: int
    updated_at: datetime


@dataclass(frozen=True)
class RefRow:
    """Where a canonical record lives in one system (mirrors ``bridge.model.ExternalRef``)."""

    entity: str
    key: str
    system: str
    ext_id: str
    ext_key: str | None
    url: str | None
    version: str | None
    updated_at: datetime | None
    # Whether the object has an error on record (``record_errors``); None: not asked.
    # Read with the record under its lock, it spares a save the clearing statement.
    has_error: bool | None = field(default=None, compare=False)


@dataclass(frozen=True)
class HistoryRow:
    id: int
    entity: str
    key: str
    field: str
    old: Any
    new: Any
    source: str
    at: datetime


@dataclass(frozen=True)
class ConflictRow:
    id: int
    entity: str
    key: str
    field: str
    servicenow_value: Any
    jira_value: Any
    resolution: str
    resolved_value: Any
    at: datetime
    settled_by: str | None = None
    settled_at: datetime | None = None
    settled_value: Any = None


@dataclass(frozen=True)
class ErrorRow:
    """The latest failure to sync one external object, and how often it failed."""

    system: str
    entity: str
    ext_id: str
    key: str | None
    code: str
    message: str
    first_at: datetime
    at: datetime
    count: int


@dataclass(frozen=True)
class VetoRow:
    id: int
    release_key: str
    old: str | None
    new: str
    reason: str
    source: str
    at: datetime


@dataclass(frozen=True)
class LeaseRow:
    name: str
    holder: str
    expires_at: datetime


@dataclass(frozen=True)
class HeldWriteRow:
    """A destructive write the safety brake held back (see ``bridge.engine.safety``)."""

    id: int
    entity: str
    key: str
    system: str
    field: str
    kind: str
    ext_id: str | None
    ext_key: str | None
    old: Any
    new: Any
    reason: str
    held_at: datetime
