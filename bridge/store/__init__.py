"""The state store: canonical records, external refs, history, watermarks, conflicts,
per-record errors, vetoes, leases, writes held by the safety brake and the inbox's tables.

SQLAlchemy Core over SQLite (default) or PostgreSQL, with the same code and ordered
migrations. Start with ``Store(url)``; group writes with ``store.transaction()``.
"""

from bridge.store.migrations import MIGRATIONS, Migration, SchemaVersionError
from bridge.store.rows import (
    ConflictRow,
    ErrorRow,
    HeldWriteRow,
    HistoryRow,
    LeaseRow,
    RecordRow,
    RefConflict,
    RefRow,
    StaleRecord,
    VetoRow,
)
from bridge.store.store import Store, StoreUnavailable, UnitOfWork

__all__ = [
    "MIGRATIONS",
    "ConflictRow",
    "ErrorRow",
    "HeldWriteRow",
    "HistoryRow",
    "LeaseRow",
    "Migration",
    "RecordRow",
    "RefConflict",
    "RefRow",
    "SchemaVersionError",
    "StaleRecord",
    "Store",
    "StoreUnavailable",
    "UnitOfWork",
    "VetoRow",
]
