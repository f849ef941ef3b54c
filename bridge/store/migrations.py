"""Ordered schema migrations, recorded in the ``schema_version`` table.

``migrate()`` applies every step the database lacks, all in one transaction, under a lock
(PostgreSQL advisory lock; SQLite ``BEGIN IMMEDIATE``), so two processes starting at once
migrate exactly once and a failed step leaves the database as it was. A database whose
version is newer than the code's steps is refused: old code must not write a schema it
does not understand.

Adding a step: append ``Migration(n + 1, "what it does", function)`` to ``MIGRATIONS`` and
change the tables in ``schema.py`` to match. Step 1 builds tables from ``schema.py``;
before a later step alters a table that step 1 creates, copy that table's version-1
definition into step 1 so a fresh database replays history exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, func, inspect, select

from bridge.errors import ConfigError
from bridge.store import schema
from bridge.store.connect import SQLITE_BEGIN, advisory_lock

MIGRATION_LOCK = "relbridge.migrate"


class SchemaVersionError(ConfigError):
    """The database was migrated by a newer relbridge than this one."""

    code = "schema_version"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _initial_schema(conn: Connection) -> None:
    later = {schema.schema_version.name, *(t.name for t in ADDED_BY_LATER_STEPS)}
    tables = [t for t in schema.metadata.sorted_tables if t.name not in later]
    schema.metadata.create_all(conn, tables=tables)


def _mapping_check_cache(conn: Connection) -> None:
    schema.mapping_checks.create(conn)


def _held_writes_table(conn: Connection) -> None:
    """The safety brake's held destructive writes (``bridge.engine.safety``)."""
    schema.held_writes.create(conn, checkfirst=True)


def _comment_links_table(conn: Connection) -> None:
    """Which comment is which across the systems (``bridge.engine.comments``)."""
    schema.comment_links.create(conn, checkfirst=True)


def _worklogs_table(conn: Connection) -> None:
    """Time logged against records, for the KPIs' effort and direct cost."""
    schema.worklogs.create(conn, checkfirst=True)


#: Tables that a later step creates: step 1 leaves them out so that a fresh database
#: replays history exactly.
ADDED_BY_LATER_STEPS = (schema.mapping_checks, schema.held_writes, schema.comment_links, schema.worklogs)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _initial_schema),
    Migration(2, "mapping check cache (sync/run start-up check)", _mapping_check_cache),
    Migration(3, "held_writes: destructive writes held by the safety brake", _held_writes_table),
    Migration(4, "comment_links: which comment is which across the systems", _comment_links_table),
    Migration(5, "worklogs: time logged against records (effort and direct cost)", _worklogs_table),
)


def check_steps(steps: Sequence[Migration]) -> None:
    """Steps must be numbered 1, 2, 3, … in order: a gap is a programming error."""
    for expected, step in enumerate(steps, start=1):
        if step.version != expected:
            raise ValueError(f"migration {step.version} out of order (expected {expected})")


def current_version(conn: Connection) -> int:
    """The database's schema version; 0 for an empty database."""
    if not inspect(conn).has_table(schema.schema_version.name):
        return 0
    return conn.execute(select(func.max(schema.schema_version.c.version))).scalar() or 0


def refuse_newer(version: int, steps: Sequence[Migration], where: str) -> None:
    known = len(steps)
    if version > known:
        raise SchemaVersionError(
            f"store {where} has schema version {version}, but this relbridge knows only "
            f"up to {known}: upgrade relbridge (or point store.url at another database)"
        )


def migrate(
    engine: Engine, steps: Sequence[Migration], now: Callable[[], datetime], where: str
) -> list[int]:
    """Apply the missing ``steps``; returns the versions applied (empty when up to date)."""
    check_steps(steps)
    with engine.connect().execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}) as conn, conn.begin():
        advisory_lock(conn, MIGRATION_LOCK)
        # Read under the lock: another process may have migrated while we waited.
        version = current_version(conn)
        refuse_newer(version, steps, where)
        if version == 0:
            schema.schema_version.create(conn, checkfirst=True)
        applied = []
        for step in steps[version:]:
            step.apply(conn)
            conn.execute(
                schema.schema_version.insert().values(
                    version=step.version, description=step.description, applied_at=now()
                )
            )
            applied.append(step.version)
        return applied
