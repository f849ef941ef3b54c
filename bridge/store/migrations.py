"""Ordered schema migrations, recorded in the ``schema_version`` table.

``migrate()`` applies every step the database lacks, all in one transaction, under a lock
(PostgreSQL advisory lock; SQLite ``BEGIN IMMEDIATE``), so two processes starting at once
migrate exactly once and a failed step leaves the database as it was. A database whose
version is newer than the code's steps is refused: old code must not write a schema it
does not understand.

Adding a step: append ``Migration(n, "what it does", function)`` to ``MIGRATIONS`` and
change the tables in ``schema.py`` to match. Steps are numbered in increasing order and a
number may be left free for a step being written elsewhere: each database records the
steps it has, and ``migrate()`` applies every step it lacks, in order, so a step that
arrives later with a lower number still runs once (steps must therefore not depend on
one another's order beyond step 1). Step 1 builds tables from ``schema.py``;
before a later step alters a table that step 1 creates, copy that table's version-1
definition into step 1 so a fresh database replays history exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    inspect,
    select,
)

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


# ``conflicts`` as step 1 made it (step 7 adds who settled a conflict, when, and how).
_V1 = MetaData()
_CONFLICTS_V1 = Table(
    "conflicts", _V1,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entity", String(schema.ENTITY), nullable=False),
    Column("key", String(schema.KEY), nullable=False),
    Column("field", String(schema.KEY), nullable=False),
    Column("servicenow_value", schema.JsonText),
    Column("jira_value", schema.JsonText),
    Column("resolution", String(64), nullable=False),
    Column("resolved_value", schema.JsonText),
    Column("at", schema.UtcDateTime, nullable=False),
    Index("ix_conflicts_record", "entity", "key"),
    sqlite_autoincrement=True,
)
#: Columns a later step adds to a table step 1 creates: step 1 uses that table's old shape.
_ALTERED_LATER = {schema.conflicts.name: _CONFLICTS_V1}


def _initial_schema(conn: Connection) -> None:
    later = {schema.schema_version.name, *(t.name for t in ADDED_BY_LATER_STEPS), *_ALTERED_LATER}
    tables = [t for t in schema.metadata.sorted_tables if t.name not in later]
    schema.metadata.create_all(conn, tables=tables)
    _V1.create_all(conn)


def _mapping_check_cache(conn: Connection) -> None:
    schema.mapping_checks.create(conn)


def _held_writes_table(conn: Connection) -> None:
    """The safety brake's held destructive writes (``bridge.engine.safety``)."""
    schema.held_writes.create(conn, checkfirst=True)


def _comment_links_table(conn: Connection) -> None:
    """Which comment is which across the systems (``bridge.engine.comments``)."""
    schema.comment_links.create(conn, checkfirst=True)


def _release_process_tables(conn: Connection) -> None:
    """Verification per deployment and early-life incidents (``bridge.release``)."""
    schema.verifications.create(conn, checkfirst=True)
    schema.early_life_incidents.create(conn, checkfirst=True)


def _unmatched_users_table(conn: Connection) -> None:
    """Assignees left unwritten for want of a user with their e-mail (``bridge.engine.users``)."""
    schema.unmatched_users.create(conn, checkfirst=True)


def _conflicts_settled(conn: Connection) -> None:
    """Who settled a conflict, when and with which value (``relbridge conflicts resolve``)."""
    for name in ("settled_by", "settled_at", "settled_value"):
        column = schema.conflicts.c[name]
        kind = column.type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE conflicts ADD COLUMN {name} {kind}")


def _worklogs_table(conn: Connection) -> None:
    """Time logged against records, for the KPIs' effort and direct cost."""
    schema.worklogs.create(conn, checkfirst=True)


def _plan_items_table(conn: Connection) -> None:
    """Phases and tasks of release plans made from deployment models (``bridge.release.plan``)."""
    schema.plan_items.create(conn, checkfirst=True)


def _console_snapshots_table(conn: Connection) -> None:
    """The console's last built views, kept across restarts (``bridge.reports.freshness``)."""
    schema.console_snapshots.create(conn, checkfirst=True)


#: Tables that a later step creates: step 1 leaves them out so that a fresh database
#: replays history exactly.
ADDED_BY_LATER_STEPS = (schema.mapping_checks, schema.held_writes, schema.comment_links,
                        schema.verifications, schema.early_life_incidents, schema.worklogs,
                        schema.unmatched_users, schema.plan_items, schema.console_snapshots)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _initial_schema),
    Migration(2, "mapping check cache (sync/run start-up check)", _mapping_check_cache),
    Migration(3, "held_writes: destructive writes held by the safety brake", _held_writes_table),
    Migration(4, "comment_links: which comment is which across the systems", _comment_links_table),
    Migration(5, "verifications and early_life_incidents (release process)", _release_process_tables),
    Migration(6, "worklogs: time logged against records (effort and direct cost)", _worklogs_table),
    Migration(7, "conflicts: who settled a conflict, when and with which value", _conflicts_settled),
    Migration(8, "plan_items: phases and tasks of release plans", _plan_items_table),
    Migration(9, "unmatched_users: assignees no user of the other system matched", _unmatched_users_table),
    Migration(10, "console_snapshots: the console's last built views, kept across restarts",
              _console_snapshots_table),
)


def check_steps(steps: Sequence[Migration]) -> None:
    """Steps start at 1 and are numbered in increasing order: anything else is a
    programming error (a free number is allowed, see the module docstring)."""
    previous = 0
    for step in steps:
        if step.version <= previous or (previous == 0 and step.version != 1):
            raise ValueError(f"migration {step.version} out of order (after {previous})")
        previous = step.version


def applied_versions(conn: Connection) -> set[int]:
    """The steps this database has (empty for an empty database)."""
    if not inspect(conn).has_table(schema.schema_version.name):
        return set()
    return set(conn.execute(select(schema.schema_version.c.version)).scalars())


def current_version(conn: Connection) -> int:
    """The database's schema version; 0 for an empty database."""
    if not inspect(conn).has_table(schema.schema_version.name):
        return 0
    return conn.execute(select(func.max(schema.schema_version.c.version))).scalar() or 0


def refuse_newer(version: int, steps: Sequence[Migration], where: str) -> None:
    known = steps[-1].version if steps else 0
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
        present = applied_versions(conn)
        applied = []
        for step in (s for s in steps if s.version not in present):
            step.apply(conn)
            conn.execute(
                schema.schema_version.insert().values(
                    version=step.version, description=step.description, applied_at=now()
                )
            )
            applied.append(step.version)
        return applied
