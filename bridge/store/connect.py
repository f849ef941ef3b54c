"""Turning a store URL into a configured SQLAlchemy Engine.

One code path serves SQLite and PostgreSQL; the differences live here:

* SQLite: WAL (readers never block the writer), a busy timeout (writers wait instead of
  failing), foreign keys on, and explicit ``BEGIN`` / ``BEGIN IMMEDIATE`` so that a write
  transaction takes the write lock up front and cannot fail half-way when upgrading a
  read lock.
* PostgreSQL: always the psycopg 3 driver; transaction-scoped advisory locks serialise
  the few critical sections (migrating, claiming) across processes.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from bridge.errors import ConfigError

SQLITE_BUSY_TIMEOUT_MS = 30_000

#: Execution option read by the SQLite ``begin`` hook: "IMMEDIATE" for write transactions.
SQLITE_BEGIN = "relbridge_sqlite_begin"


def safe_url(url: str | URL) -> str:
    """The URL with its password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def parse_store_url(url: str) -> URL:
    """Validate ``url`` and pick the driver. Raises ``ConfigError`` naming the masked URL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"store.url {safe_url(url)!r} is not a database URL "
            "(use sqlite:///path/to/relbridge.db or postgresql://user@host/db)"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        if parsed.database in (None, "", ":memory:") or "mode=memory" in str(parsed):
            raise ConfigError(
                f"store.url {safe_url(url)!r}: an in-memory SQLite store would lose every "
                "event on restart; give a file path (sqlite:///relbridge.db)"
            )
        return parsed.set(drivername="sqlite+pysqlite")
    raise ConfigError(
        f"store.url {safe_url(url)!r}: unsupported database {parsed.drivername!r} "
        "(supported: sqlite:///PATH, postgresql://... with psycopg 3)"
    )


def create_store_engine(url: URL) -> Engine:
    """An Engine set up for the store's concurrency rules (see the module docstring)."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_engine(url: URL) -> Engine:
    path = Path(url.database or "")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"store.url {safe_url(url)!r}: cannot create folder {str(path.parent)!r} ({exc.strerror})"
        ) from None
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=10,
        max_overflow=40,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook below issue BEGIN itself (pysqlite's own implicit
        # transactions start late and cannot be IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            _enable_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")  # durable with WAL, much faster than FULL
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A read (mode None) is one statement at a time: each SELECT is atomic on its own,
        # and skipping BEGIN/COMMIT halves the round trips of the engine's look-ups.
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        if mode is not None:
            conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL (persistent, so usually already done).

    Switching needs a moment of exclusive access and SQLite reports "locked" at once,
    without its busy handler, when another connection is in the middle of the same
    switch; so wait and try again, within the usual busy timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def advisory_lock(conn: Connection, name: str) -> None:
    """Hold a lock named ``name`` until the current transaction ends.

    PostgreSQL: ``pg_advisory_xact_lock`` keyed by the name and the current schema (two
    deployments sharing a database in different schemas do not block each other).
    SQLite: nothing to do, a write transaction (``BEGIN IMMEDIATE``) already excludes
    every other writer.
    """
    if conn.dialect.name != "postgresql":
        return
    key = zlib.crc32(name.encode()) - 2**31  # int4 range, stable across processes
    conn.execute(
        text("SELECT pg_advisory_xact_lock(:key, hashtext(current_schema()))"), {"key": key}
    )


@contextmanager
def scratch_schema(base: str, prefix: str = "relbridge_scratch") -> Iterator[str]:
    """A URL on PostgreSQL ``base`` whose connections use a new, empty schema, dropped
    afterwards: the tests' and benchmarks' throwaway store."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    url = make_url(base).set(drivername="postgresql+psycopg")
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
