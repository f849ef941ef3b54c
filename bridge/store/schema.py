"""Tables of the state store (SQLAlchemy Core), identical on SQLite and PostgreSQL.

Two column types carry the cross-database rules:

* ``UtcDateTime``: aware UTC in, aware UTC out. PostgreSQL keeps ``timestamptz``; SQLite
  keeps naive UTC text in a fixed-width format, so text order is time order and SQL
  comparisons work.
* ``JsonText``: any JSON value kept as text, so the same column works on both databases
  and a ``NULL`` column means "no value" (``None``).

These are the *current* table shapes. ``migrations.py`` builds a fresh database from them
in its first step; see its docstring for the rule when a later step changes a table.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    cast,
    func,
    literal_column,
    text,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from bridge.timeutil import as_utc

metadata = MetaData()

# Column sizes: wide enough for every id/key seen in ServiceNow and Jira, bounded so the
# indexes stay small on PostgreSQL.
ENTITY = 32
SYSTEM = 32
KEY = 128
EXT_ID = 255


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        value = as_utc(value)
        # SQLite has no time zones: keep naive UTC text.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


def utc_text(column: ColumnElement[datetime], dialect: str) -> ColumnElement[str]:
    """A ``UtcDateTime`` column as ISO-8601 text with its zone (``...+00:00``), written by
    the database: a lean read parses it with ``datetime.fromisoformat`` (aware UTC, one C
    call) instead of SQLAlchemy's per-row processing, several times slower."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
    return type_coerce(column, Text).concat("+00:00")  # SQLite holds naive UTC text


def json_text(column: ColumnElement[Any], dialect: str) -> ColumnElement[str]:
    """A ``JsonText`` column's value as text, decoded by the database: a JSON string's own
    text, another value's JSON text, NULL for unset."""
    if dialect == "postgresql":
        return cast(column, JSONB).op("#>>")(literal_column("'{}'::text[]"))  # the top-level value
    return cast(func.json_extract(column, "$"), Text)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dump_json(value: Any) -> str:
    """Stable JSON text (sorted keys) so equal values store equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


class JsonText(TypeDecorator[Any]):
    """A JSON value stored as text; ``None`` is SQL ``NULL``."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else dump_json(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", UtcDateTime, nullable=False),
)

records = Table(
    "records",
    metadata,
    Column("entity", String(ENTITY), primary_key=True),
    Column("key", String(KEY), primary_key=True),
    Column("data", JsonText, nullable=False),
    Column("revision", Integer, nullable=False),  # +1 on every write, for optimistic concurrency
    Column("updated_at", UtcDateTime, nullable=False),
)

external_refs = Table(
    "external_refs",
    metadata,
    Column("entity", String(ENTITY), primary_key=True),
    Column("key", String(KEY), primary_key=True),
    Column("system", String(SYSTEM), primary_key=True),
    Column("ext_id", String(EXT_ID), nullable=False),
    Column("ext_key", String(EXT_ID)),
    Column("url", Text),
    Column("version", String(EXT_ID)),
    Column("updated_at", UtcDateTime),
    Column("fields_fingerprint", String(128)),  # unused; kept so old and new databases match
    UniqueConstraint("system", "entity", "ext_id", name="uq_external_refs_ext_id"),
    Index("ix_external_refs_ext_key", "system", "entity", "ext_key"),
)

history = Table(
    "history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entity", String(ENTITY), nullable=False),
    Column("key", String(KEY), nullable=False),
    Column("field", String(KEY), nullable=False),
    Column("old", JsonText),
    Column("new", JsonText),
    Column("source", String(SYSTEM), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_history_record", "entity", "key", "at"),
    Index("ix_history_at", "at"),
    sqlite_autoincrement=True,
)

watermarks = Table(
    "watermarks",
    metadata,
    Column("system", String(SYSTEM), primary_key=True),
    Column("entity", String(ENTITY), primary_key=True),
    Column("value", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

conflicts = Table(
    "conflicts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entity", String(ENTITY), nullable=False),
    Column("key", String(KEY), nullable=False),
    Column("field", String(KEY), nullable=False),
    Column("servicenow_value", JsonText),
    Column("jira_value", JsonText),
    Column("resolution", String(64), nullable=False),
    Column("resolved_value", JsonText),  # the value the policy kept
    Column("at", UtcDateTime, nullable=False),
    # Settled by a person (``relbridge conflicts resolve``): who, when, the value written.
    Column("settled_by", String(200)),
    Column("settled_at", UtcDateTime),
    Column("settled_value", JsonText),
    Index("ix_conflicts_record", "entity", "key"),
    sqlite_autoincrement=True,
)

record_errors = Table(
    "record_errors",
    metadata,
    Column("system", String(SYSTEM), primary_key=True),
    Column("entity", String(ENTITY), primary_key=True),
    Column("ext_id", String(EXT_ID), primary_key=True),
    Column("key", String(KEY)),
    Column("code", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("first_at", UtcDateTime, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("count", Integer, nullable=False),
)

# The durable inbox (``bridge.daemon.inbox``). ``state`` is pending | claimed | dead. At most one
# pending event per object (the partial unique index) so arrivals coalesce; a claimed one
# may coexist with it, which is how a change made during processing is kept.
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("system", String(SYSTEM), nullable=False),
    Column("entity", String(ENTITY), nullable=False),
    Column("ext_id", String(EXT_ID), nullable=False),
    Column("source", String(16), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("not_before", UtcDateTime, nullable=False),
    Column("claimed_by", String(255)),
    Column("claim_token", String(64)),
    Column("claim_expires", UtcDateTime),
    Column("last_error", Text),
    Column("dead_at", UtcDateTime),
    Index("ix_events_due", "state", "not_before"),
    Index("ix_events_object", "system", "entity", "ext_id", "state"),
    Index(
        "uq_events_pending_object",
        "system",
        "entity",
        "ext_id",
        unique=True,
        sqlite_where=text("state = 'pending'"),
        postgresql_where=text("state = 'pending'"),
    ),
    sqlite_autoincrement=True,  # never reuse an id: `relbridge dlq retry ID` must be unambiguous
)

# Webhook delivery ids already accepted, so a redelivery is dropped; pruned after a retention.
deliveries = Table(
    "deliveries",
    metadata,
    Column("system", String(SYSTEM), primary_key=True),
    Column("delivery_id", String(255), primary_key=True),
    Column("seen_at", UtcDateTime, nullable=False),
    Index("ix_deliveries_seen_at", "seen_at"),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

vetoes = Table(
    "vetoes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("release_key", String(KEY), nullable=False),
    Column("old", String(64)),
    Column("new", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("source", String(SYSTEM), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_vetoes_release", "release_key", "at"),
    sqlite_autoincrement=True,
)

# Added by migration step 2. One row per system: the fingerprint (mapping file, system url,
# relbridge version) whose live check passed, so a restart need not read metadata again.
mapping_checks = Table(
    "mapping_checks",
    metadata,
    Column("system", String(SYSTEM), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("checked_at", UtcDateTime, nullable=False),
)

# Destructive writes the safety brake held back (``bridge.engine.safety``): one row per record,
# target system and field (a newer hold of the same field replaces the older one), kept
# until ``relbridge held release`` applies it or a newer edit of the field supersedes it.
# Added by migration step 3.
held_writes = Table(
    "held_writes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entity", String(ENTITY), nullable=False),
    Column("key", String(KEY), nullable=False),
    Column("system", String(SYSTEM), nullable=False),  # where the write would go
    Column("field", String(KEY), nullable=False),  # canonical field, or "_delete"
    Column("kind", String(32), nullable=False),  # bridge.engine.safety.Kind
    Column("ext_id", String(EXT_ID)),
    Column("ext_key", String(EXT_ID)),
    Column("old", JsonText),  # what the system holds now, in canonical terms
    Column("new", JsonText),  # what would have been written, in canonical terms
    Column("reason", Text, nullable=False),
    Column("held_at", UtcDateTime, nullable=False),
    UniqueConstraint("entity", "key", "system", "field", name="uq_held_writes_target"),
    sqlite_autoincrement=True,  # never reuse an id: `relbridge held release ID` must be unambiguous
)

# Which comment on one side is which on the other (``bridge.engine.comments``): one row per
# comment that crosses, written *before* the copy is sent (state ``sending``), so that after
# a crash between the write and the commit the copy is looked up by its marker instead of
# being written twice. ``failed`` rows were refused by the other system (a dead letter,
# ``event_id``). Added by migration step 4.
comment_links = Table(
    "comment_links",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entity", String(ENTITY), nullable=False),
    Column("key", String(KEY), nullable=False),
    Column("source_system", String(SYSTEM), nullable=False),
    Column("source_id", String(EXT_ID), nullable=False),
    Column("target_system", String(SYSTEM), nullable=False),
    Column("target_id", String(EXT_ID)),
    Column("state", String(16), nullable=False),  # sending | sent | failed
    Column("body_hash", String(64), nullable=False),  # of the source text last copied
    Column("reason", Text),
    Column("event_id", Integer),
    Column("at", UtcDateTime, nullable=False),
    UniqueConstraint("entity", "source_system", "source_id", "target_system",
                     name="uq_comment_links_source"),
    Index("ix_comment_links_record", "entity", "key"),
    sqlite_autoincrement=True,
)

# Release verification (``bridge.release.verify``), added by migration step 5: one row per
# deployment of a release (its n-th entry into ``deployed``), so a deployment is verified
# once however many daemons saw it. ``state``: pending | running | passed | failed; a
# running row whose lease expired (its process died) is taken over.
verifications = Table(
    "verifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("release_key", String(KEY), nullable=False),
    Column("deployment", Integer, nullable=False),
    Column("deployed_at", UtcDateTime, nullable=False),
    Column("state", String(16), nullable=False),
    Column("holder", String(255)),
    Column("lease_until", UtcDateTime),
    Column("checks", JsonText),  # [{"name", "ok", "detail", "seconds"}]
    Column("noted", JsonText),  # systems whose note about the result is written
    Column("action", String(32)),  # what a failure led to: needs_revision | rolled_back | rollback_refused
    Column("finished_at", UtcDateTime),
    UniqueConstraint("release_key", "deployment", name="uq_verifications_deployment"),
    sqlite_autoincrement=True,
)

# Early-life support, added by migration step 5: incidents caused by a release within
# ``[verify] early_life_days`` of its deployment, one row per (release, incident). The KPI
# report counts them (``early_life_incidents``).
early_life_incidents = Table(
    "early_life_incidents",
    metadata,
    Column("release_key", String(KEY), primary_key=True),
    Column("incident_key", String(KEY), primary_key=True),
    Column("deployed_at", UtcDateTime, nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("flagged_at", UtcDateTime, nullable=False),
)

# Time logged against a record in its system (Jira worklogs, ServiceNow task_time_worked),
# as last read with the record: the KPIs' effort and direct cost per release state. One row
# per entry, keyed by where it lives; ``key`` is the canonical record it was logged against.
# Added by migration step 6.
worklogs = Table(
    "worklogs",
    metadata,
    Column("system", String(SYSTEM), primary_key=True),
    Column("entity", String(ENTITY), primary_key=True),
    Column("ext_id", String(EXT_ID), primary_key=True),
    Column("entry_id", String(EXT_ID), primary_key=True),
    Column("key", String(KEY), nullable=False),
    Column("started", UtcDateTime, nullable=False),
    Column("seconds", Integer, nullable=False),
    Column("author", String(255), nullable=False),
    Column("work_group", String(255)),  # the team charged, when the system records one
    Index("ix_worklogs_record", "entity", "key"),
)

# People relbridge could not match across the systems (``bridge.engine.users``), added by
# migration step 9: one row per record, system and user field whose value was not written
# there because no user of that system has the e-mail (or shows it). Cleared once it is.
unmatched_users = Table(
    "unmatched_users",
    metadata,
    Column("entity", String(ENTITY), primary_key=True),
    Column("key", String(KEY), primary_key=True),
    Column("system", String(SYSTEM), primary_key=True),  # where no user matched
    Column("field", String(KEY), primary_key=True),  # that system's field
    Column("email", String(EXT_ID), nullable=False),
    Column("at", UtcDateTime, nullable=False),
)

# Release plans (``bridge.release.plan``), added by migration step 8: one row per phase or
# task made from a deployment model, keyed by its tag (the correlation both systems carry).
# ``ids``/``keys``: system -> the object's id / number there, written right after each
# create (a rerun looks a missing one up by tag before creating). ``state`` is the state
# both systems last agreed on (to_do | in_progress | done): a system that differs from it
# moved since, and the other is brought along.
plan_items = Table(
    "plan_items",
    metadata,
    Column("release_key", String(KEY), primary_key=True),
    Column("tag", String(64), primary_key=True),
    Column("model", String(64), nullable=False),
    Column("kind", String(8), nullable=False),  # phase | task
    Column("phase", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("position", Integer, nullable=False),
    Column("planned_start", UtcDateTime, nullable=False),
    Column("planned_end", UtcDateTime, nullable=False),
    Column("blocks_go_live", Boolean, nullable=False),  # a task of a phase before "Deploy"
    Column("ids", JsonText, nullable=False),
    Column("keys", JsonText, nullable=False),
    Column("state", String(16), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# The console's last built views (``bridge.reports.freshness``), added by migration step 10:
# one row per view (the release overview, the all-time KPIs) with the store's data version
# it was built from and when, so after a restart the console shows the last figures at once
# (saying when they were computed) while it rebuilds them. Derived data: losing it costs one
# rebuild.
console_snapshots = Table(
    "console_snapshots",
    metadata,
    Column("name", String(KEY), primary_key=True),
    Column("data_version", Text, nullable=False),
    Column("computed_at", UtcDateTime, nullable=False),
    Column("value", Text, nullable=False),  # JSON in the view's own key order (JsonText sorts keys)
)
