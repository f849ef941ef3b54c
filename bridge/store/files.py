"""The files a SQLite store writes, and whether they can be written.

SQLite in WAL mode writes its ``-shm`` file through a memory mapping: once that file cannot
be written (permissions, the immutable flag, a read-only mount), the next write into the
mapping kills the process with SIGBUS, an error SQLite cannot return. So writers check the
files first and refuse with one line instead (``relbridge run`` before every statement,
``sync``/``run`` at start).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.store import Store

SQLITE_SIDE_FILES = ("-wal", "-shm")


def sqlite_files(store: Store) -> list[Path]:
    """The files SQLite writes for this store (none for PostgreSQL): folder first."""
    if store.dialect != "sqlite" or not store.engine.url.database:
        return []
    db = Path(store.engine.url.database).resolve()
    return [db.parent, db, *(db.with_name(db.name + suffix) for suffix in SQLITE_SIDE_FILES)]


def unwritable(files: list[Path]) -> str | None:
    """The first of ``files`` that exists and cannot be written, as a reason; else None.

    Cheap enough to run before every statement: one ``access`` call per file, more only
    for a file that fails it: a missing ``-wal`` is fine, and one that SQLite removed and
    made again between our two looks is asked about once more."""
    for path in files:
        if not os.access(path, os.W_OK) and path.exists() and not os.access(path, os.W_OK):
            return f"{path} is not writable (permissions, the immutable flag or a read-only mount)"
    return None
