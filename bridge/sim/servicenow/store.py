"""In-memory tables of the simulated ServiceNow instance, and their state file.

Records are stored the way the instance stores them: every column a string, `""` for empty,
references as the target's sys_id, date/times as UTC `YYYY-MM-DD HH:MM:SS`. The store keeps
the system columns (`sys_id`, `sys_created_*`, `sys_updated_*`, `sys_mod_count`,
`sys_class_name`) and per-table numbering, and tells listeners about every write so webhooks
and the state file can follow.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.sim.servicenow.schema import (
    AUDITED_TABLES,
    BOOLEAN,
    DATETIME,
    JOURNAL,
    REFERENCE,
    SYS_FIELDS,
    TABLES,
    Column,
    Table,
    descendants,
)
from bridge.sim.servicenow.zones import UserZone

log = logging.getLogger(__name__)

Record = dict[str, str]
#: (table, record after the write, "insert" | "update" | "delete")
Listener = Callable[[str, Record, str], None]

SYS_ID = re.compile(r"[0-9a-f]{32}")
TABLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,79}")
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
STATE_VERSION = 1


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def new_sys_id() -> str:
    return uuid.uuid4().hex


class _Unchanged:
    """Marks an input the instance would not store (an unparsable date)."""


UNCHANGED = _Unchanged()


class ServiceNowStore:
    """The instance's data. Thread-safe; readers get the live record dicts (never mutate)."""

    def __init__(self, clock: Callable[[], str] = now_utc) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.tables: dict[str, Table] = dict(TABLES)
        self.rows: dict[str, dict[str, Record]] = {name: {} for name in self.tables}
        self.counters: dict[str, int] = {}
        self.listeners: list[Listener] = []
        self._ordered: dict[str, list[Record]] = {}

    # -- reads -------------------------------------------------------------------------

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    def records(self, table: str) -> list[Record]:
        """All rows in the instance's stable default order: by created on, ties in insert order.

        A parent table (`task`) lists its own rows and those of every table extending it, as
        the instance's table-per-hierarchy storage does.
        """
        with self.lock:
            family = descendants(table)
            if len(family) > 1:
                rows = [r for name in family for r in self.rows.get(name, {}).values()]
                return sorted(rows, key=lambda r: r["sys_created_on"])
            ordered = self._ordered.get(table)
            if ordered is None:
                ordered = sorted(self.rows.get(table, {}).values(),
                                 key=lambda r: r["sys_created_on"])
                self._ordered[table] = ordered
            return ordered

    def get(self, table: str, sys_id: str) -> Record | None:
        for name in descendants(table):
            record = self.rows.get(name, {}).get(sys_id)
            if record is not None:
                return record
        return None

    def journal(self, table: str, sys_id: str, element: str) -> list[Record]:
        """The `sys_journal_field` entries of one journal field, newest first."""
        rows = [r for r in self.records("sys_journal_field")
                if r["element_id"] == sys_id and r["element"] == element and r["name"] == table]
        return rows[::-1]  # records() is oldest first, ties in insert order

    def find(self, table: str, column: str, value: str) -> Record | None:
        for record in self.records(table):
            if record.get(column) == value:
                return record
        return None

    def display_value(self, table: str, sys_id: str) -> str:
        """What a reference to this record shows: the target's display column."""
        target = self.tables.get(table)
        record = self.get(table, sys_id)
        if record is None or target is None:
            return ""
        return record.get(target.display_column, "") if target.display_column else sys_id

    # -- writes ------------------------------------------------------------------------

    def insert(self, table_name: str, values: Mapping[str, Any], user: str, *,
               input_display: bool = False, zone: UserZone | None = None,
               sys_values: Mapping[str, str] | None = None) -> Record:
        """Insert one record; `sys_values` (seeds and state files only) may set sys columns.

        The table must exist (the API refuses others first); a valid client `sys_id` not yet
        used is kept, as the instance keeps it.
        """
        with self.lock:
            table = self.tables[table_name]
            now = self.clock()
            record: Record = {name: column.default for name, column in table.columns.items()}
            given, notes = self._incoming(table, values, input_display, zone)
            record.update(given)
            requested_id = str(values.get("sys_id") or "")
            sys_id = requested_id if (SYS_ID.fullmatch(requested_id)
                                      and requested_id not in self.rows[table.name]) else ""
            record.update({
                "sys_id": sys_id or new_sys_id(),
                "sys_created_on": now, "sys_updated_on": now,
                "sys_created_by": user, "sys_updated_by": user,
                "sys_mod_count": "0", "sys_class_name": table.name,
            })
            if sys_values:
                record.update(sys_values)
            if "number" in table.columns and not record["number"] and table.number_prefix:
                record["number"] = self._next_number(table)
            self.rows[table.name][record["sys_id"]] = record
            self._ordered.pop(table.name, None)
            self._audit(table, record, {name: ("", record.get(name, "")) for name in values
                                        if name in table.columns and name not in SYS_FIELDS
                                        and record.get(name, "") != ""}, user)
            self._add_journal(table, record, notes, user)
        self._notify(table.name, record, "insert")
        return record

    def update(self, table_name: str, sys_id: str, values: Mapping[str, Any], user: str, *,
               input_display: bool = False,
               zone: UserZone | None = None) -> tuple[Record, bool] | None:
        """Apply changed values; returns (record, changed) or None when there is no such record.

        A write that changes nothing leaves the record (and its sys_mod_count) alone, as the
        instance skips updates without changes unless a script forces them.
        """
        with self.lock:
            record = self.get(table_name, sys_id)
            if record is None:
                return None
            table = self.tables[record["sys_class_name"]]
            given, notes = self._incoming(table, values, input_display, zone)
            changes = {name: (record.get(name, ""), value) for name, value in given.items()
                       if record.get(name, "") != value}
            record.update({name: new for name, (_, new) in changes.items()})
            changed = bool(changes) or bool(notes)  # a journal entry updates the record too
            if changed:
                record["sys_updated_on"] = self.clock()
                record["sys_updated_by"] = user
                record["sys_mod_count"] = str(int(record["sys_mod_count"] or 0) + 1)
                self._audit(table, record, changes, user)
                self._add_journal(table, record, notes, user)
        if changed:
            self._notify(record["sys_class_name"], record, "update")
        return record, changed

    def _incoming(self, table: Table, values: Mapping[str, Any], input_display: bool,
                  zone: UserZone | None) -> tuple[dict[str, Any], dict[str, str]]:
        """A write's column values as stored (sys columns, unknown columns and values left
        as they were dropped), and its journal entries (non-empty text per journal field)."""
        given: dict[str, Any] = {}
        notes: dict[str, str] = {}
        for name, raw in values.items():
            column = table.columns.get(name)
            if column is None or name in SYS_FIELDS:
                continue
            value = self._coerce(column, raw, input_display, zone)
            if column.type == JOURNAL:
                if isinstance(value, str) and value.strip():
                    notes[name] = value
            elif not isinstance(value, _Unchanged):
                given[name] = value
        return given, notes

    def delete(self, table_name: str, sys_id: str) -> Record | None:
        with self.lock:
            found = self.get(table_name, sys_id)
            if found is None:
                return None
            own = found["sys_class_name"]
            record = self.rows[own].pop(sys_id)
            self._ordered.pop(own, None)
        self._notify(own, record, "delete")
        return record

    def clear(self) -> None:
        """Drop every record (back to a bare instance)."""
        with self.lock:
            self.tables = dict(TABLES)
            self.rows = {name: {} for name in self.tables}
            self.counters = {}
            self._ordered = {}

    def _next_number(self, table: Table) -> str:
        n = self.counters.get(table.name, table.number_start)
        existing = {r.get("number") for r in self.rows[table.name].values()}
        while table.format_number(n) in existing:
            n += 1
        self.counters[table.name] = n + 1
        return table.format_number(n)

    def _coerce(self, column: Column, raw: Any, input_display: bool,
                zone: UserZone | None = None) -> str | _Unchanged:
        """The stored form of a written value. With `sysparm_input_display_value=true` the
        value is a display value: a choice label, or a datetime in the session user's time
        zone and date format (`zone`)."""
        value = _to_text(raw)
        if column.type == DATETIME:
            if input_display and value.strip():
                stored = (zone or UserZone()).from_display(value)
                return UNCHANGED if stored is None else stored
            return _to_datetime(value)
        if column.type == REFERENCE and value and column.reference:
            return self.resolve_reference(column.reference, value)
        if column.type == BOOLEAN and value.lower() in ("true", "false", "1", "0"):
            return "true" if value.lower() in ("true", "1") else "false"
        if column.choices and input_display:
            return column.value_of_label(value) or value
        return value

    def resolve_reference(self, target: str, value: str) -> str:
        """A sys_id stays; a display value (e.g. a number) is looked up, as the instance does."""
        if self.get(target, value) is not None or SYS_ID.fullmatch(value):
            return value
        target_table = self.tables.get(target)
        if target_table and target_table.display_column:
            match = self.find(target, target_table.display_column, value)
            if match is not None:
                return match["sys_id"]
        return value

    def _audit(self, table: Table, record: Record, changes: Mapping[str, tuple[str, str]], user: str) -> None:
        """One `sys_audit` row per field an insert set or an update changed (audited tables
        only), stamped with the record's update time, as the instance's history does."""
        if table.name not in AUDITED_TABLES or not changes:
            return
        audit = self.tables["sys_audit"]
        for name, (old, new) in changes.items():
            row: Record = {column: spec.default for column, spec in audit.columns.items()}
            row.update({
                "sys_id": new_sys_id(), "tablename": table.name, "fieldname": name,
                "documentkey": record["sys_id"], "user": user, "oldvalue": old, "newvalue": new,
                "record_checkpoint": record["sys_mod_count"],
                "sys_created_on": record["sys_updated_on"], "sys_updated_on": record["sys_updated_on"],
                "sys_created_by": user, "sys_updated_by": user, "sys_mod_count": "0",
                "sys_class_name": "sys_audit",
            })
            self.rows["sys_audit"][row["sys_id"]] = row
        self._ordered.pop("sys_audit", None)

    def _add_journal(self, table: Table, record: Record, notes: Mapping[str, str],
                     user: str) -> None:
        """One `sys_journal_field` row per journal field written (work notes, comments)."""
        if not notes:
            return
        journal = self.tables["sys_journal_field"]
        for element, value in notes.items():
            row: Record = {column: spec.default for column, spec in journal.columns.items()}
            row.update({
                "sys_id": new_sys_id(), "name": table.name, "element_id": record["sys_id"],
                "element": element, "value": value,
                "sys_created_on": record["sys_updated_on"], "sys_updated_on": record["sys_updated_on"],
                "sys_created_by": user, "sys_updated_by": user, "sys_mod_count": "0",
                "sys_class_name": "sys_journal_field",
            })
            self.rows["sys_journal_field"][row["sys_id"]] = row
        self._ordered.pop("sys_journal_field", None)

    def _notify(self, table: str, record: Record, operation: str) -> None:
        for listener in list(self.listeners):
            try:
                listener(table, record, operation)
            except Exception:  # a broken listener must not fail the API request
                log.exception("store listener failed")

    # -- state file --------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        with self.lock:
            return {
                "version": STATE_VERSION,
                "counters": dict(self.counters),
                "rows": {n: [dict(r) for r in self.records(n)] for n in self.rows if self.rows[n]},
            }

    def load(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported state file version {state.get('version')!r}")
        with self.lock:
            self.clear()
            for name, records in state.get("rows", {}).items():
                table = self.tables.get(name)
                if table is None:
                    continue
                defaults = {n: c.default for n, c in table.columns.items()}
                for stored in records:
                    record = {**defaults, **{k: str(v) for k, v in stored.items()}}
                    self.rows[name][record["sys_id"]] = record
            self.counters = {k: int(v) for k, v in state.get("counters", {}).items()}


def _to_text(raw: Any) -> str:
    """JSON input as the instance stores it: everything becomes a string."""
    if raw is None:
        return ""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, dict):  # a reference echoed back as {"link", "value"}
        return _to_text(raw.get("value", raw.get("sys_id", "")))
    if isinstance(raw, list):
        return ",".join(_to_text(item) for item in raw)
    return str(raw)


def _to_datetime(value: str) -> str | _Unchanged:
    """Accept the instance's own formats; anything else is not stored (the field keeps its value)."""
    value = value.strip()
    if value == "" or _DATE_TIME.fullmatch(value):
        return value
    if _DATE.fullmatch(value):
        return f"{value} 00:00:00"
    return UNCHANGED


class StateFile:
    """Saves the store to a JSON file shortly after writes (debounced) and on demand."""

    def __init__(self, path: Path, store: ServiceNowStore, *, delay: float = 0.5) -> None:
        self.path = path
        self.store = store
        self.delay = delay
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # a timer save and a final save never interleave

    def load_if_present(self) -> bool:
        if not self.path.exists():
            return False
        try:
            self.store.load(json.loads(self.path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"state file {self.path} cannot be loaded: {exc}") from exc
        return True

    def schedule(self, *_: object) -> None:
        """Save soon; many writes in a burst cost one save."""
        with self._lock:
            if self._timer is not None:
                return
            self._timer = threading.Timer(self.delay, self.save)
            self._timer.daemon = True
            self._timer.start()

    def save(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        with self._write_lock:
            text = json.dumps(self.store.dump(), separators=(",", ":"))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.path)  # atomic: a crash never leaves half a state file
