"""Reads and writes of the state store, written once for both ``Store`` and ``UnitOfWork``.

Each method asks ``self.connection(write=...)`` for a connection inside a transaction: the
``Store`` opens a short transaction per call, a ``UnitOfWork`` hands out its own so that
all its writes commit or roll back together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    Select,
    Table,
    and_,
    delete,
    func,
    select,
)
from sqlalchemy.sql.expression import Executable

from bridge.store import schema as t
from bridge.store import statements as q
from bridge.store.rows import (
    ConflictRow,
    ErrorRow,
    HistoryRow,
    LeaseRow,
    RecordRow,
    RefConflict,
    RefRow,
    StaleRecord,
    VetoRow,
)
from bridge.timeutil import as_utc

#: Ids per ``IN (...)`` list: well under SQLite's bound-parameter limit.
CHUNK = 500


def chunks(items: Sequence[str], size: int = CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _ref(row: Row[Any]) -> RefRow:
    return RefRow(**row._mapping)


_refs = t.external_refs


def _run(conn: Connection, statement: Executable, **params: Any) -> Any:
    return conn.execute(statement, params)


class Operations:
    """Store operations; subclasses say how a call gets its connection."""

    clock: Callable[[], datetime]

    def connection(self, write: bool = True) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _now(self, at: datetime | None = None) -> datetime:
        return as_utc(at) if at is not None else as_utc(self.clock())

    # -- records ---------------------------------------------------------------------------

    def load_record(self, entity: str, key: str) -> RecordRow | None:
        """The record with its revision (for ``put_record(expected_revision=...)``)."""
        with self.connection(write=False) as conn:
            row = _run(conn, q.LOAD_RECORD, entity=entity, key=key).first()
        return RecordRow(**row._mapping) if row else None

    def record_and_refs(self, entity: str, key: str) -> tuple[RecordRow | None, dict[str, RefRow]]:
        """The record (as ``load_record``) and its refs by system, in one round trip."""
        with self.connection(write=False) as conn:
            row = _run(conn, q.LOAD_RECORD, entity=entity, key=key).first()
            refs = {ref.system: _ref(ref) for ref in _run(conn, q.REFS_OF_KEY, entity=entity, key=key)}
        return (RecordRow(**row._mapping) if row else None), refs

    def get_record(self, entity: str, key: str) -> dict[str, Any] | None:
        row = self.load_record(entity, key)
        return row.data if row else None

    def get_records(self, entity: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Many records in a few queries: ``{key: data}`` for the keys that exist."""
        found: dict[str, dict[str, Any]] = {}
        with self.connection(write=False) as conn:
            for part in chunks(sorted(set(keys))):
                found.update({key: data for key, data in _run(conn, q.GET_RECORDS, entity=entity, keys=part)})
        return found

    def put_record(
        self, entity: str, key: str, data: dict[str, Any], *, expected_revision: int | None = None
    ) -> int:
        """Write a record; returns its new revision.

        With ``expected_revision`` (0 = must not exist yet) the write only happens if nobody
        wrote the record since it was read; otherwise ``StaleRecord`` is raised."""
        now = self._now()
        with self.connection() as conn:
            if expected_revision is None or expected_revision == 0:
                statement = q.upserts(conn).record if expected_revision is None else q.upserts(conn).new_record
                revision = _run(conn, statement, entity=entity, key=key, data=data, revision=1,
                                updated_at=now).scalar()
            else:
                revision = _run(conn, q.UPDATE_RECORD, w_entity=entity, w_key=key,
                                w_revision=expected_revision, new_data=data, new_at=now).scalar()
        if revision is None:
            raise StaleRecord(
                f"{entity} {key} changed since revision {expected_revision} was read"
            )
        return revision

    def unfinished_records(self) -> list[tuple[str, str, datetime]]:
        """(entity, key, updated_at) of every record left with pending writes or a create
        journal (``data["pending"]`` / ``data["creating"]`` not empty)."""
        # Streamed: after a first pass nearly every record qualifies, and holding all their
        # decoded envelopes at once was the backfill's peak of memory.
        with self.connection(write=False) as conn:
            rows = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(q.MAYBE_UNFINISHED)
            return [(row.entity, row.key, row.updated_at) for row in rows
                    if isinstance(row.data, dict) and (row.data.get("pending") or row.data.get("creating"))]

    def delete_record(self, entity: str, key: str) -> bool:
        """Remove a record and its external refs; its history stays."""
        with self.connection() as conn:
            conn.execute(delete(t.external_refs).where(
                t.external_refs.c.entity == entity, t.external_refs.c.key == key))
            result = conn.execute(delete(t.records).where(
                t.records.c.entity == entity, t.records.c.key == key))
        return result.rowcount > 0

    def records(self, entity: str, page_size: int = CHUNK) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every record of ``entity`` by key, read in pages (no transaction held between)."""
        after: str | None = None
        while True:
            query = select(t.records.c.key, t.records.c.data).where(t.records.c.entity == entity)
            if after is not None:
                query = query.where(t.records.c.key > after)
            with self.connection(write=False) as conn:
                page = [(row.key, row.data) for row in
                        conn.execute(query.order_by(t.records.c.key).limit(page_size))]
            yield from page
            if len(page) < page_size:
                return
            after = page[-1][0]

    # -- external refs ---------------------------------------------------------------------

    def find_key(self, system: str, entity: str, ext_id: str) -> str | None:
        ref = self.find_ref(system, entity, ext_id)
        return ref.key if ref else None

    def find_ref(self, system: str, entity: str, ext_id: str) -> RefRow | None:
        """The link of the object ``ext_id`` in ``system``, if relbridge holds one."""
        with self.connection(write=False) as conn:
            row = _run(conn, q.FIND_REF, system=system, entity=entity, ext_id=ext_id).first()
        return _ref(row) if row else None

    def find_key_by_ext_key(self, system: str, entity: str, ext_key: str) -> str | None:
        refs = t.external_refs
        with self.connection(write=False) as conn:
            return conn.execute(select(refs.c.key).where(
                refs.c.system == system, refs.c.entity == entity, refs.c.ext_key == ext_key
            ).limit(1)).scalar()

    def refs_for_ids(self, system: str, entity: str, ext_ids: Iterable[str]) -> dict[str, RefRow]:
        """``{ext_id: link}`` for the linked ones among many objects, in a few queries."""
        found: dict[str, RefRow] = {}
        with self.connection(write=False) as conn:
            for part in chunks(sorted(set(ext_ids))):
                found.update({row.ext_id: _ref(row) for row in
                              _run(conn, q.REFS_BY_IDS, system=system, entity=entity, ext_ids=part)})
        return found

    def linked_ids(self, system: str, entity: str) -> set[str]:
        """Ids of every ``system`` object of ``entity`` linked to a record."""
        with self.connection(write=False) as conn:
            return set(conn.execute(select(_refs.c.ext_id).where(
                _refs.c.system == system, _refs.c.entity == entity)).scalars())

    def refs(self, entity: str, key: str) -> dict[str, RefRow]:
        with self.connection(write=False) as conn:
            return {row.system: _ref(row) for row in _run(conn, q.REFS_OF_KEY, entity=entity, key=key)}

    def refs_for_keys(self, entity: str, keys: Iterable[str]) -> dict[str, dict[str, RefRow]]:
        """``{key: {system: RefRow}}`` for many records in a few queries."""
        found: dict[str, dict[str, RefRow]] = {}
        with self.connection(write=False) as conn:
            for part in chunks(sorted(set(keys))):
                for row in _run(conn, q.REFS_BY_KEYS, entity=entity, keys=part):
                    found.setdefault(row.key, {})[row.system] = _ref(row)
        return found

    def put_ref(
        self, entity: str, key: str, system: str, ext_id: str, ext_key: str | None = None,
        url: str | None = None, version: str | None = None, updated_at: datetime | None = None,
        *, linked: bool = False,
    ) -> None:
        """Link (or update the link of) ``entity``/``key`` to an object in ``system``.

        Raises ``RefConflict`` when that object is already linked to another record: two
        canonical records must never claim the same external object (``linked``: the caller
        read this very link under the record's lock, so no other record can hold it)."""
        with self.connection() as conn:
            owner = None if linked else _run(
                conn, q.REF_OWNER, system=system, entity=entity, ext_id=ext_id, key=key).scalar()
            if owner is not None:
                raise RefConflict(
                    f"{system} {entity} {ext_id} is already linked to {owner}, not {key}")
            _run(conn, q.upserts(conn).ref, entity=entity, key=key, system=system, ext_id=ext_id,
                 ext_key=ext_key, url=url, version=version, updated_at=updated_at)

    def drop_ref(self, system: str, entity: str, ext_id: str) -> bool:
        refs = t.external_refs
        with self.connection() as conn:
            result = conn.execute(delete(refs).where(
                refs.c.system == system, refs.c.entity == entity, refs.c.ext_id == ext_id))
        return result.rowcount > 0

    # -- history ---------------------------------------------------------------------------

    def add_history(
        self, entity: str, key: str, field: str, old: Any, new: Any, source: str,
        at: datetime | None = None,
    ) -> None:
        self.add_history_rows(entity, key, {field: (old, new)}, source, at)

    def add_history_rows(
        self, entity: str, key: str, changes: Mapping[str, tuple[Any, Any]], source: str,
        at: datetime | None = None,
    ) -> None:
        """One history row per changed field (field -> (old, new)), in one statement."""
        if not changes:
            return
        now = self._now(at)
        rows = [dict(entity=entity, key=key, field=field, old=old, new=new, source=source, at=now)
                for field, (old, new) in changes.items()]
        with self.connection() as conn:
            conn.execute(q.ADD_HISTORY, rows)

    def history(
        self, entity: str | None = None, key: str | None = None, since: datetime | None = None
    ) -> list[HistoryRow]:
        """Accepted changes, oldest first, optionally for one entity / record / period."""
        h = t.history
        if entity is not None and key is not None and since is None:  # one record's: built once
            query, params = q.RECORD_HISTORY, {"entity": entity, "key": key}
        else:
            query, params = _filtered(select(h), h, entity=entity, key=key, since=since).order_by(h.c.at, h.c.id), {}
        with self.connection(write=False) as conn:
            return [HistoryRow(**row._mapping) for row in conn.execute(query, params)]

    # -- watermarks and echo detection -----------------------------------------------------

    def get_watermark(self, system: str, entity: str) -> datetime | None:
        with self.connection(write=False) as conn:
            return _run(conn, q.GET_WATERMARK, system=system, entity=entity).scalar()  # type: ignore[no-any-return]

    def set_watermark(self, system: str, entity: str, value: datetime) -> None:
        with self.connection() as conn:
            _run(conn, q.upserts(conn).watermark, system=system, entity=entity, value=value,
                 updated_at=self._now())

    def add_conflict(
        self, entity: str, key: str, field: str, servicenow_value: Any, jira_value: Any,
        resolution: str, resolved_value: Any, at: datetime | None = None,
    ) -> int:
        with self.connection() as conn:
            return conn.execute(t.conflicts.insert().values(
                entity=entity, key=key, field=field, servicenow_value=servicenow_value,
                jira_value=jira_value, resolution=resolution, resolved_value=resolved_value,
                at=self._now(at)).returning(t.conflicts.c.id)).scalar_one()

    def conflicts(
        self, entity: str | None = None, key: str | None = None, since: datetime | None = None
    ) -> list[ConflictRow]:
        c = t.conflicts
        query = _filtered(select(c), c, entity=entity, key=key, since=since)
        with self.connection(write=False) as conn:
            return [ConflictRow(**row._mapping) for row in
                    conn.execute(query.order_by(c.c.at, c.c.id))]

    def record_error(
        self, system: str, entity: str, ext_id: str, *, code: str, message: str,
        key: str | None = None, at: datetime | None = None,
    ) -> None:
        """Remember that syncing this object failed (once per object; repeats count up)."""
        now = self._now(at)
        with self.connection() as conn:
            _run(conn, q.upserts(conn).error, system=system, entity=entity, ext_id=ext_id, key=key,
                 code=code, message=message, first_at=now, at=now, count=1)

    def clear_error(self, system: str, entity: str, ext_id: str) -> bool:
        """Forget the error of an object that has now synced."""
        with self.connection() as conn:
            result = _run(conn, q.CLEAR_ERROR, system=system, entity=entity, ext_id=ext_id)
        return result.rowcount > 0  # type: ignore[no-any-return]

    def errors(self) -> list[ErrorRow]:
        e = t.record_errors
        with self.connection(write=False) as conn:
            return [ErrorRow(**row._mapping) for row in
                    conn.execute(select(e).order_by(e.c.at.desc(), e.c.system, e.c.ext_id))]

    def add_veto(
        self, release_key: str, old: str | None, new: str, reason: str, source: str,
        at: datetime | None = None,
    ) -> int:
        with self.connection() as conn:
            return conn.execute(t.vetoes.insert().values(
                release_key=release_key, old=old, new=new, reason=reason, source=source,
                at=self._now(at)).returning(t.vetoes.c.id)).scalar_one()

    def vetoes(
        self, release_key: str | None = None, since: datetime | None = None
    ) -> list[VetoRow]:
        v = t.vetoes
        query = select(v)
        if release_key is not None:
            query = query.where(v.c.release_key == release_key)
        if since is not None:
            query = query.where(v.c.at >= since)
        with self.connection(write=False) as conn:
            return [VetoRow(**row._mapping) for row in conn.execute(query.order_by(v.c.at, v.c.id))]

    # -- leases ----------------------------------------------------------------------------

    def acquire_lease(
        self, name: str, holder: str, ttl_seconds: float, *, now: datetime | None = None
    ) -> bool:
        """Take or renew lease ``name`` for ``ttl_seconds``: True when ``holder`` has it.

        Succeeds when the lease is free, expired, or already held by ``holder`` (renewal).
        """
        now = self._now(now)
        with self.connection() as conn:
            taken = _run(conn, q.upserts(conn).lease, name=name, holder=holder,
                         expires_at=now + timedelta(seconds=ttl_seconds), w_now=now).first()
        return taken is not None

    def release_lease(self, name: str, holder: str) -> bool:
        """Give a lease up early (shutdown) so another instance takes over at once."""
        with self.connection() as conn:
            result = _run(conn, q.RELEASE_LEASE, name=name, holder=holder)
        return result.rowcount > 0  # type: ignore[no-any-return]

    def lease(self, name: str) -> LeaseRow | None:
        with self.connection(write=False) as conn:
            row = conn.execute(select(t.leases).where(t.leases.c.name == name)).first()
        return LeaseRow(**row._mapping) if row else None

    # -- overview --------------------------------------------------------------------------

    def counts(self) -> dict[str, Any]:
        """Figures for ``relbridge status`` and metrics, in one short read."""
        ev = t.events
        with self.connection(write=False) as conn:
            per_entity = dict(conn.execute(
                select(t.records.c.entity, func.count()).group_by(t.records.c.entity)).all())
            by_state = dict(conn.execute(
                select(ev.c.state, func.count()).group_by(ev.c.state)).all())
            errors = conn.execute(select(func.count()).select_from(t.record_errors)).scalar_one()
            conflicts = conn.execute(select(func.count()).select_from(t.conflicts)).scalar_one()
        return {
            "records": per_entity,
            "errors": errors,
            "conflicts": conflicts,
            "dead_letters": by_state.get("dead", 0),
            "pending_events": by_state.get("pending", 0),
            "in_flight_events": by_state.get("claimed", 0),
        }


def _filtered(
    query: Select[Any], table: Table, *, entity: str | None, key: str | None,
    since: datetime | None,
) -> Select[Any]:
    conditions = []
    if entity is not None:
        conditions.append(table.c.entity == entity)
    if key is not None:
        conditions.append(table.c.key == key)
    if since is not None:
        conditions.append(table.c.at >= since)
    return query.where(and_(*conditions)) if conditions else query
