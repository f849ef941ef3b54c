"""The statements the store runs for every record, built once with bound parameters:
building a statement and computing its cache key costs more than running it (SQLAlchemy
caches the compiled form of a statement object, keyed by that object)."""

from __future__ import annotations

from functools import cache

from sqlalchemy import (
    Connection,
    Insert,
    Table,
    Text,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from bridge.store import schema as t


def upsert(dialect_name: str, table: Table) -> Insert:
    """``INSERT`` with ``ON CONFLICT`` support for the database named ``dialect_name``."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    return dialect.insert(table)  # type: ignore[no-any-return]


_records, _refs, _leases, _errors = t.records, t.external_refs, t.leases, t.record_errors
LOAD_RECORD = select(_records).where(
    _records.c.entity == bindparam("entity"), _records.c.key == bindparam("key"))
GET_RECORDS = select(_records.c.key, _records.c.data).where(
    _records.c.entity == bindparam("entity"), _records.c.key.in_(bindparam("keys", expanding=True)))
UPDATE_RECORD = (
    update(_records)
    .where(_records.c.entity == bindparam("w_entity"), _records.c.key == bindparam("w_key"),
           _records.c.revision == bindparam("w_revision"))
    .values(data=bindparam("new_data"), updated_at=bindparam("new_at"), revision=_records.c.revision + 1)
    .returning(_records.c.revision)
)
# external_refs.fields_fingerprint is a column nothing reads or writes any more; it stays
# in the table (dropping it would need a migration for no gain) but not in RefRow.
REF_FIELDS = [column for column in _refs.c if column.name != "fields_fingerprint"]
FIND_REF = select(*REF_FIELDS).where(
    _refs.c.system == bindparam("system"), _refs.c.entity == bindparam("entity"),
    _refs.c.ext_id == bindparam("ext_id"))
REFS_BY_IDS = select(*REF_FIELDS).where(
    _refs.c.system == bindparam("system"), _refs.c.entity == bindparam("entity"),
    _refs.c.ext_id.in_(bindparam("ext_ids", expanding=True)))
REFS_BY_KEYS = select(*REF_FIELDS).where(
    _refs.c.entity == bindparam("entity"), _refs.c.key.in_(bindparam("keys", expanding=True)))
# One key's links, each with whether its object has an error on record (no IN: an expanding
# parameter is compiled again on every run).
REFS_OF_KEY = select(*REF_FIELDS, exists().where(
    _errors.c.system == _refs.c.system, _errors.c.entity == _refs.c.entity,
    _errors.c.ext_id == _refs.c.ext_id).label("has_error")).where(
    _refs.c.entity == bindparam("entity"), _refs.c.key == bindparam("key"))
REF_OWNER = select(_refs.c.key).where(
    _refs.c.system == bindparam("system"), _refs.c.entity == bindparam("entity"),
    _refs.c.ext_id == bindparam("ext_id"), _refs.c.key != bindparam("key"))
ADD_HISTORY = t.history.insert()
RECORD_HISTORY = select(t.history).where(
    t.history.c.entity == bindparam("entity"), t.history.c.key == bindparam("key")
).order_by(t.history.c.at, t.history.c.id)
CLEAR_ERROR = delete(_errors).where(
    _errors.c.system == bindparam("system"), _errors.c.entity == bindparam("entity"),
    _errors.c.ext_id == bindparam("ext_id"))
RELEASE_LEASE = delete(_leases).where(
    _leases.c.name == bindparam("name"), _leases.c.holder == bindparam("holder"))
GET_WATERMARK = select(t.watermarks.c.value).where(
    t.watermarks.c.system == bindparam("system"), t.watermarks.c.entity == bindparam("entity"))
# Records with pending writes or a create journal, found without parsing every record: the
# engine's envelope is stored as JSON with sorted keys and no spaces (``schema.dump_json``),
# so an empty journal begins the text (``{"creating":{}``) and an empty pending map appears
# as ``"pending":{}``. Matching rows are confirmed after parsing.
_data_text = type_coerce(_records.c.data, Text)
MAYBE_UNFINISHED = select(_records.c.entity, _records.c.key, _records.c.data, _records.c.updated_at).where(
    or_(~_data_text.like('{"creating":{}%'), ~_data_text.like('%"pending":{}%')))
REF_COLUMNS = ("ext_id", "ext_key", "url", "version", "updated_at")


class Upserts:
    """The per-database ``INSERT … ON CONFLICT`` statements (executed with all columns)."""

    def __init__(self, dialect_name: str) -> None:
        ins = upsert(dialect_name, _records)
        self.record = ins.on_conflict_do_update(
            index_elements=["entity", "key"],
            set_={"data": ins.excluded.data, "updated_at": ins.excluded.updated_at,
                  "revision": _records.c.revision + 1},
        ).returning(_records.c.revision)
        self.new_record = ins.on_conflict_do_nothing(
            index_elements=["entity", "key"]).returning(_records.c.revision)
        ins = upsert(dialect_name, _refs)
        self.ref = ins.on_conflict_do_update(
            index_elements=["entity", "key", "system"],
            set_={name: ins.excluded[name] for name in REF_COLUMNS})
        ins = upsert(dialect_name, _leases)
        self.lease = ins.on_conflict_do_update(
            index_elements=["name"],
            set_={"holder": ins.excluded.holder, "expires_at": ins.excluded.expires_at},
            where=(_leases.c.holder == ins.excluded.holder)
            | (_leases.c.expires_at <= bindparam("w_now", type_=t.UtcDateTime())),
        ).returning(_leases.c.holder)  # no row when someone else holds it
        ins = upsert(dialect_name, t.watermarks)
        self.watermark = ins.on_conflict_do_update(
            index_elements=["system", "entity"],
            set_={"value": ins.excluded.value, "updated_at": ins.excluded.updated_at})
        e = t.record_errors
        ins = upsert(dialect_name, e)
        self.error = ins.on_conflict_do_update(
            index_elements=["system", "entity", "ext_id"],
            set_={"code": ins.excluded.code, "message": ins.excluded.message,
                  "at": ins.excluded.at, "count": e.c.count + 1,
                  "key": func.coalesce(ins.excluded.key, e.c.key)})


@cache
def upserts_for(dialect_name: str) -> Upserts:
    return Upserts(dialect_name)


def upserts(conn: Connection) -> Upserts:
    return upserts_for(conn.dialect.name)
