"""``Store``: the state store over one SQLAlchemy Engine (SQLite or PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, cast, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError, OperationalError

from bridge.errors import ConfigError, SyncFailure
from bridge.store import migrations
from bridge.store import schema as t
from bridge.store.comment_links import CommentLinkOperations
from bridge.store.conflicts import ConflictOperations
from bridge.store.connect import SQLITE_BEGIN, create_store_engine, parse_store_url, safe_url
from bridge.store.held import HeldWriteOperations
from bridge.store.operations import Operations
from bridge.store.release_process import ReleaseProcessOperations
from bridge.store.snapshots import SnapshotOperations
from bridge.store.unmatched_users import UnmatchedUserOperations
from bridge.store.worklogs import WorklogOperations
from bridge.timeutil import utc_now


class _Pin(threading.local):
    """The connection ``Store.pinned`` holds for the current thread, if any."""

    conn: Connection | None = None


class StoreUnavailable(SyncFailure):
    """The database did not answer (down, refused, timed out, credentials refused): a
    failure of the environment (exit 1), not of the input, so scripts and supervisors retry."""

    code = "store_unavailable"


class UnitOfWork(Operations, HeldWriteOperations, CommentLinkOperations, ReleaseProcessOperations,
                 ConflictOperations, WorklogOperations,
                 UnmatchedUserOperations, SnapshotOperations):
    """Operations inside one transaction: everything commits together or not at all."""

    def __init__(self, conn: Connection, clock: Callable[[], datetime]) -> None:
        self._conn = conn
        self.clock = clock

    def connection(self, write: bool = True) -> AbstractContextManager[Connection]:
        return nullcontext(self._conn)


class Store(Operations, HeldWriteOperations, CommentLinkOperations, ReleaseProcessOperations,
                 ConflictOperations, WorklogOperations,
                 UnmatchedUserOperations, SnapshotOperations):
    """The state store. ``Store("sqlite:///relbridge.db")`` or ``Store("postgresql://…")``.

    Opening checks that the database is reachable, refuses a schema newer than this code,
    and (unless ``migrate=False``) applies missing migrations. Every method runs in its own
    short transaction; use ``transaction()`` to group writes. ``clock`` is the one source of
    "now" for stored times, claims and leases (tests pass a fake one).
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], datetime] = utc_now,
        migrate: bool = True,
        steps: Sequence[migrations.Migration] = migrations.MIGRATIONS,
    ) -> None:
        self.url = safe_url(url)
        self.clock = clock
        self._pin = _Pin()
        self.steps = tuple(steps)
        self.engine = create_store_engine(parse_store_url(url))
        self.dialect: str = self.engine.dialect.name
        try:
            with self.engine.connect() as conn:
                version = migrations.current_version(conn)
            migrations.refuse_newer(version, self.steps, self.url)
            if migrate:
                self.migrate()
        except OperationalError as exc:  # unreachable, refused, bad credentials, …
            self.engine.dispose()
            raise StoreUnavailable(f"cannot open the store at {self.url}: {_reason(exc)}") from None
        except DBAPIError as exc:  # not a database, no permission on the schema, …
            self.engine.dispose()
            raise ConfigError(f"cannot open the store at {self.url}: {_reason(exc)}") from None
        except BaseException:
            self.engine.dispose()
            raise

    def migrate(self) -> list[int]:
        """Apply missing migrations (idempotent, safe to run from several processes)."""
        return migrations.migrate(self.engine, self.steps, self.clock, self.url)

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return migrations.current_version(conn)

    @contextmanager
    def begin(self, write: bool = True) -> Iterator[Connection]:
        """A connection in a transaction that commits on success, rolls back on error.

        For modules that keep their own tables in the store (the inbox). On SQLite a write
        transaction is ``BEGIN IMMEDIATE``: it waits for the write lock up front; a read
        (``write=False``) runs each statement on its own, with no transaction around them.
        """
        options = {SQLITE_BEGIN: "IMMEDIATE" if write else None}
        pinned = self._pin.conn
        if pinned is None or pinned.in_transaction() or pinned.invalidated:
            with self.engine.connect().execution_options(**options) as conn, conn.begin():
                yield conn
            return
        try:
            with pinned.execution_options(**options).begin():
                yield pinned
        except BaseException:
            self._pin.conn = None  # rolled back; the rest of the block takes fresh connections
            pinned.close()
            raise

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Within the block, this thread's store calls share one pooled connection; each
        call is still its own transaction. A worker's event makes a dozen short calls, and
        a check-out and check-in of a connection costs more than a short statement. A call
        made while the pinned connection is inside a transaction (nested) takes its own
        connection, as without a pin. Pins take at most the pool's steady size (many
        workers, each holding its connection through its calls to the systems, would
        otherwise wait for connections): past that, calls check out their own."""
        size = getattr(self.engine.pool, "size", None)
        if self._pin.conn is not None or size is None or self.engine.pool.checkedout() >= size():
            yield
            return
        conn = self._pin.conn = self.engine.connect()
        try:
            yield
        finally:
            self._pin.conn = None
            conn.close()

    def connection(self, write: bool = True) -> AbstractContextManager[Connection]:
        return self.begin(write)

    @contextmanager
    def transaction(self) -> Iterator[UnitOfWork]:
        """A unit of work: ``with store.transaction() as tx: tx.put_record(...)``.

        Use ``tx`` (not the store) inside the block: a store call would run in a separate
        transaction and, on SQLite, wait for this one's write lock.
        """
        with self.begin(write=True) as conn:
            yield UnitOfWork(conn, self.clock)

    def field_history(self, entity: str, fields: Iterable[str]) -> list[tuple[str, str, str | None, str | None, datetime]]:
        """(key, field, old, new, at) of changes to ``fields``, by record, each record's oldest
        first: a lean read for reports. Values as text (a JSON string's own text, another
        JSON value's JSON), None when unset.

        The database decodes the values and writes the times as ISO text (each then one C
        call): SQLAlchemy's per-row processing was most of the time over 60,000 rows. By
        record, not oldest first overall: SQLite reads that order off its index, while
        sorting by time took as long as the read."""
        h = t.history
        with self.begin(write=False) as conn:
            dialect = conn.dialect.name
            query = select(h.c.key, h.c.field, t.json_text(h.c.old, dialect), t.json_text(h.c.new, dialect),
                           t.utc_text(h.c.at, dialect)).where(h.c.entity == entity, h.c.field.in_(list(fields)))
            rows = conn.execute(query.order_by(h.c.key, h.c.at, h.c.id)).all()
        parse = datetime.fromisoformat
        return [(key, field, old, new, parse(at)) for key, field, old, new, at in rows]

    def record_values(self, entity: str, names: Sequence[str]) -> list[tuple[Any, ...]]:
        """(key, *values) of every record of ``entity``: the named top-level fields only,
        picked out by the database (a lean read for reports: no record decoded here).
        Values are as JSON holds them (text for strings and times), None when unset."""
        r = t.records
        with self.begin(write=False) as conn:
            if conn.dialect.name == "postgresql":
                # Each record's text parsed once, not once per field: OFFSET 0 keeps the
                # planner from copying the cast into every column (several times slower).
                parsed = select(r.c.key, cast(r.c.data, JSONB)["fields"].label("fields")).where(
                    r.c.entity == entity).offset(0).subquery()
                query = select(parsed.c.key, *[parsed.c.fields[name].astext for name in names])
            else:
                columns = [func.json_extract(r.c.data, f"$.fields.{name}") for name in names]
                query = select(r.c.key, *columns).where(r.c.entity == entity)
            return [tuple(row) for row in conn.execute(query).all()]  # all(): one fetch, not one per row

    def data_version(self) -> tuple[Any, ...]:
        """A cheap fingerprint of what reports read (record count and latest update, latest
        history row and veto): equal fingerprints mean a cached report is still true."""
        query = select(func.count(), func.max(t.records.c.updated_at),
                       select(func.max(t.history.c.id)).scalar_subquery(),
                       select(func.max(t.vetoes.c.id)).scalar_subquery()).select_from(t.records)
        with self.begin(write=False) as conn:
            return tuple(conn.execute(query).one())

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"


def _reason(exc: DBAPIError) -> str:
    """The driver's first line (psycopg puts host and port there, never the password)."""
    text = str(exc.orig) if exc.orig is not None else str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc.orig).__name__
