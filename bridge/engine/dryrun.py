"""``relbridge sync --once --dry-run``: the plan of one pass, with nothing written anywhere.

Why this way: the plan must be exactly what the next real pass would do, so it is made by
the real engine, not by a second implementation of its rules. The engine runs against

* a scratch copy of the state store (every table copied through SQLAlchemy into a
  temporary SQLite file, so it works the same for SQLite and PostgreSQL stores): what the
  pass records (watermarks, links, pending writes, held writes) lands in the copy, which
  is thrown away; the real store is only read;
* adapters that read through to the live systems and record, instead of making, every
  create, write and delete (answering them with synthetic results, as a system would);
* hooks that ask the gate but notify no plugin (a plugin reacting to a planned deploy
  would act on something that did not happen).

The recorded writes, grouped per record and told in canonical terms (field, old -> new;
links to records by key), plus the writes the safety brake would hold, are the plan.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, select

from bridge.adapter import SystemRecord
from bridge.engine.envelope import StoreResolver, SyncReport
from bridge.engine.pipeline import ENTITY_ORDER, Engine
from bridge.engine.safety import DELETE_FIELD, put_back
from bridge.errors import RelbridgeError
from bridge.mapping.loader import Mappings, UnmappableValue
from bridge.model import SYSTEMS
from bridge.plugins import Hooks
from bridge.store import Store
from bridge.store import schema as tables
from bridge.store.connect import parse_store_url
from bridge.timeutil import utc_now

if TYPE_CHECKING:
    from bridge.runtime import Runtime

#: Adapter methods that only read. Everything else an engine calls on an adapter during a
#: dry run is refused: a method not known to be read-only must not reach a live system.
READS = frozenset({"list_changed", "read", "find_by_correlation", "find_by_field", "field_times", "parse_webhook",
                   "metadata", "check_auth", "find_comment", "user_fields", "match_users"})
COPY_PAGE = 1000


# --- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    field: str  # canonical field
    kind: str  # "update" | "transition" (a state) | "link" (a reference to another record)
    old: Any  # canonical values; references as canonical keys
    new: Any
    system_field: str
    system_old: Any
    system_new: Any


@dataclass(frozen=True)
class PlannedWrite:
    entity: str
    key: str
    system: str
    action: str  # "create" | "update" | "delete" | "held"
    ref: str | None  # the object in the system (number, issue key, version name); None if new
    changes: tuple[FieldChange, ...] = ()
    reason: str | None = None  # for "held": the kind of destructive write


@dataclass
class Plan:
    writes: list[PlannedWrite] = field(default_factory=list)
    report: SyncReport = field(default_factory=SyncReport)
    titles: dict[tuple[str, str], str] = field(default_factory=dict)  # (entity, key) -> name/summary

    @property
    def held(self) -> list[PlannedWrite]:
        return [w for w in self.writes if w.action == "held"]

    @property
    def errors(self) -> list[str]:
        return self.report.errors

    def by_record(self) -> list[tuple[tuple[str, str], list[PlannedWrite]]]:
        grouped: dict[tuple[str, str], list[PlannedWrite]] = {}
        order = {entity: n for n, entity in enumerate(ENTITY_ORDER)}
        for write in sorted(self.writes, key=lambda w: (order.get(w.entity, 9), w.key, SYSTEMS.index(w.system)
                                                        if w.system in SYSTEMS else 9, w.action)):
            grouped.setdefault((write.entity, write.key), []).append(write)
        return list(grouped.items())

    def summary(self) -> dict[str, int]:
        counts = {"records": len(self.by_record()), "create": 0, "update": 0, "transition": 0, "link": 0,
                  "delete": 0, "held": 0}
        for write in self.writes:
            if write.action == "update":
                kinds = {c.kind for c in write.changes}
                for kind in kinds:
                    counts[kind] += 1
            else:
                counts[write.action] += 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": True,
            "records": [
                {"entity": entity, "key": key, "title": self.titles.get((entity, key)),
                 "writes": [_write_document(w) for w in writes]}
                for (entity, key), writes in self.by_record()
            ],
            "summary": self.summary(),
            "errors": list(self.errors),
        }


def _write_document(write: PlannedWrite) -> dict[str, Any]:
    document: dict[str, Any] = {"system": write.system, "action": write.action, "ref": write.ref}
    if write.reason:
        document["reason"] = write.reason
    document["changes"] = [
        {"field": c.field, "kind": c.kind, "old": _plain(c.old), "new": _plain(c.new),
         "system_field": c.system_field, "system_old": _plain(c.system_old), "system_new": _plain(c.system_new)}
        for c in write.changes
    ]
    return document


def render_plan(plan: Plan, *, limit: int | None = None) -> str:
    """The plan as text, one record a block (``limit``: at most that many records)."""
    lines = ["dry run: nothing was written to either system or to the store"]
    records = plan.by_record()
    for (entity, key), writes in records[:limit]:
        title = plan.titles.get((entity, key))
        lines.append(f"{entity} {key}" + (f"  {title!r}" if title else ""))
        for write in writes:
            where = f"{write.system} {write.ref}" if write.ref else write.system
            if write.action == "create":
                lines.append(f"  create in {write.system}: "
                             + ", ".join(f"{c.field}={_short(c.new)}" for c in write.changes))
            elif write.action == "delete":
                lines.append(f"  delete in {where}")
            elif write.action == "held":
                for c in write.changes:
                    what = "delete" if c.field == DELETE_FIELD else f"{c.field}: {_short(c.old)} -> {_short(c.new)}"
                    lines.append(f"  HELD by the safety brake ({write.reason}) in {where}: {what}")
            else:
                for c in write.changes:
                    lines.append(f"  {c.kind:<10} in {where}: {c.field}: {_short(c.old)} -> {_short(c.new)}")
    if limit is not None and len(records) > limit:
        lines.append(f"… and {len(records) - limit} more record(s)")
    counts = plan.summary()
    lines.append("plan: " + ", ".join(f"{n} {name}" for name, n in counts.items()))
    lines += [f"error: {error}" for error in plan.errors]
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else value


def _short(value: Any) -> str:
    text = "-" if value in (None, "", []) else str(_plain(value))
    return text if len(text) <= 60 else text[:57] + "..."


# --- recording writes -------------------------------------------------------------------------


class Recorder:
    """Turns the creates, writes and deletes an engine makes into ``PlannedWrite``s, in
    canonical terms, reading the store the engine works on for what each object holds now."""

    def __init__(self, store: Store, mappings: Mappings) -> None:
        self.store = store
        self.mappings = mappings
        self.resolvers = {system: StoreResolver(store, system) for system in SYSTEMS}
        self.writes: list[PlannedWrite] = []
        self._lock = threading.Lock()

    def created(self, system: str, entity: str, payload: Mapping[str, Any], correlation: str) -> None:
        fields = (self.store.get_record(entity, correlation) or {}).get("fields", {})
        changes = self._changes(system, entity, {}, payload, fields)
        self._add(PlannedWrite(entity, correlation, system, "create", None, tuple(changes)))

    def written(self, system: str, entity: str, ext_id: str, payload: Mapping[str, Any]) -> None:
        key, ref, raw, fields = self._current(system, entity, ext_id)
        changes = self._changes(system, entity, raw, payload, fields)
        self._add(PlannedWrite(entity, key, system, "update", ref, tuple(changes)))

    def deleted(self, system: str, entity: str, ext_id: str) -> None:
        key, ref, _, _ = self._current(system, entity, ext_id)
        self._add(PlannedWrite(entity, key, system, "delete", ref))

    def _add(self, write: PlannedWrite) -> None:
        with self._lock:
            self.writes.append(write)

    def _current(self, system: str, entity: str,
                 ext_id: str) -> tuple[str, str | None, dict[str, Any], dict[str, Any]]:
        """The record's key, the object's number/name, the raw fields the object holds now,
        and the record's canonical fields."""
        ref = self.store.find_ref(system, entity, ext_id)
        if ref is None:
            return f"{system}:{ext_id}", ext_id, {}, {}
        data = self.store.get_record(entity, ref.key) or {}
        shown = None if ext_id.startswith(SYNTHETIC) else (ref.ext_key or ext_id)
        return ref.key, shown, dict(data.get("raw", {}).get(system, {})), dict(data.get("fields", {}))

    def _changes(self, system: str, entity: str, raw: Mapping[str, Any], payload: Mapping[str, Any],
                 fields: Mapping[str, Any]) -> list[FieldChange]:
        """Each written system field as a canonical change: the old value as the system holds
        it, the new one as the record holds it (where the written value stands for it)."""
        mapping = self.mappings.for_system(system)
        specs = {spec.source: spec for spec in mapping.fields(entity)}
        changes = []
        for source, value in payload.items():
            spec = specs.get(source)
            old_raw = raw.get(source)
            if isinstance(old_raw, list):  # a comment field: a new comment is added, none replaced
                old_raw = None
            if spec is None:
                changes.append(FieldChange(source, "update", old_raw, value, source, old_raw, value))
                continue
            kind = "link" if spec.ref else "transition" if spec.field == "state" else "update"
            old = self._canonical(system, entity, spec.field, old_raw) if source in raw else None
            new = self._canonical(system, entity, spec.field, value, fields.get(spec.field))
            changes.append(FieldChange(spec.field, kind, old, new, source, old_raw, value))
        return changes

    def _canonical(self, system: str, entity: str, name: str, value: Any, current: Any = None) -> Any:
        try:
            return self.mappings.for_system(system).read_value(entity, name, value, self.resolvers[system],
                                                               current)
        except (UnmappableValue, RelbridgeError, KeyError):
            return value


SYNTHETIC = "dry-run-"


class RecordingAdapter:
    """An adapter whose reads reach the live system and whose writes are only recorded.

    Creates answer with a synthetic object (id ``dry-run-<entity>-<key>``, the same in every
    dry run) holding what was sent, as a system's answer would; writes answer None (the
    engine does not need the echo)."""

    def __init__(self, adapter: Any, recorder: Recorder, clock: Callable[[], datetime] = utc_now) -> None:
        self._adapter = adapter
        self._recorder = recorder
        self._clock = clock
        self.name = adapter.name
        self.entities = adapter.entities

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._adapter, name)
        if callable(attribute) and name not in READS:
            raise RelbridgeError(f"dry run: the {self.name} adapter's {name}() is not known to be read-only, "
                                 "so a dry run cannot call it (bridge.engine.dryrun.READS lists the ones it may)")
        return attribute

    def create(self, entity: str, payload: Mapping[str, Any], correlation: str) -> SystemRecord:
        self._recorder.created(self.name, entity, payload, correlation)
        ext_id = f"{SYNTHETIC}{entity}-{correlation}"
        return SystemRecord(system=self.name, entity=entity, id=ext_id, key=None, updated_at=self._clock(),
                            version=ext_id, fields=dict(payload), correlation=correlation)

    def write(self, entity: str, id: str, payload: Mapping[str, Any]) -> SystemRecord | None:
        if payload:
            self._recorder.written(self.name, entity, id, payload)
        return None

    def delete(self, entity: str, id: str) -> None:
        self._recorder.deleted(self.name, entity, id)

    # Release plans: their states are read and compared as in a real pass (the gate judges
    # a go-live by them), and a state copy is not made; plans are made only by `release plan`.
    def plan_objects(self, tags: Iterable[str]) -> dict[str, Any]:
        finder = getattr(self._adapter, "plan_objects", None)
        return finder(tags) if finder is not None else {}

    def create_plan_item(self, release_id: str, item: Any, phase_id: str | None) -> Any:
        raise RelbridgeError("dry run: a sync pass makes no release plans")

    def set_plan_state(self, kind: str, id: str, state: str) -> None:
        pass

    def add_comment(self, entity: str, id: str, field: str, text: str, internal: bool) -> str | None:
        """A comment that would cross shows in the plan as a write of its comment field."""
        self._recorder.written(self.name, entity, id, {field: text})
        return None


class _QuietHooks(Hooks):
    """The runtime's hooks minus notifications: the gate still decides, no plugin hears."""

    notifying = False

    def __init__(self, hooks: Hooks) -> None:
        super().__init__(hooks.pm)

    def wants(self, name: str) -> bool:
        return False

    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        return None


# --- the scratch store ------------------------------------------------------------------------


def copy_store(source: Store | None, target: Store) -> None:
    """Copy every table ``source`` has into ``target`` (an empty, migrated store)."""
    if source is None:
        return
    with source.engine.connect() as conn:
        present = set(inspect(conn).get_table_names())
    with target.begin() as out:
        for table in tables.metadata.sorted_tables:
            if table is tables.schema_version or table.name not in present:
                continue
            with source.begin(write=False) as conn:
                result = conn.execution_options(stream_results=True).execute(select(table))
                for rows in result.mappings().partitions(COPY_PAGE):
                    out.execute(table.insert(), [dict(row) for row in rows])


def open_source(url: str) -> Store | None:
    """The real store, only to be read: not migrated, not created when it does not exist
    yet (a first pass then plans from an empty store)."""
    parsed = parse_store_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
        return None
    return Store(url, migrate=False)


# --- the dry run ------------------------------------------------------------------------------


def dry_run(rt: Runtime, *, reconcile: bool = False, allow_destructive: bool = False,
            progress: Callable[[str, int], None] | None = None) -> Plan:
    """Plan one ``sync --once`` pass (with ``--reconcile`` / ``--allow-destructive`` as
    given) against the live systems and a scratch copy of the store; write nothing."""
    source = open_source(rt.config.store.url)
    try:
        with tempfile.TemporaryDirectory(prefix="relbridge-dry-run-") as folder:
            scratch = Store(f"sqlite:///{Path(folder) / 'plan.db'}")
            try:
                copy_store(source, scratch)
                if source is not None:
                    source.close()
                    source = None
                return _plan(rt, scratch, reconcile=reconcile, allow_destructive=allow_destructive,
                             progress=progress)
            finally:
                scratch.close()
    finally:
        if source is not None:
            source.close()


def _plan(rt: Runtime, scratch: Store, *, reconcile: bool, allow_destructive: bool,
          progress: Callable[[str, int], None] | None) -> Plan:
    recorder = Recorder(scratch, rt.mappings)
    adapters = {name: RecordingAdapter(adapter, recorder) for name, adapter in rt.adapters.items()}
    engine = Engine(scratch, rt.mappings, adapters, _QuietHooks(rt.hooks), rt.config)
    plan = Plan()
    if allow_destructive:
        engine.brake.unbounded = True
        put_back(engine, scratch.held_writes(), plan.report)
    plan.report.merge(engine.sync_once(progress=progress))
    if reconcile:
        engine.reconcile(plan.report)
    plan.writes = list(recorder.writes)
    for held in engine.brake.held:
        change = FieldChange(held.field, "held", held.old, held.new, held.field, None, None)
        plan.writes.append(PlannedWrite(held.entity, held.key, held.system, "held",
                                        held.ext_key or held.ext_id, (change,), reason=held.kind.value))
    plan.titles = _titles(scratch, {(w.entity, w.key) for w in plan.writes})
    return plan


def _titles(store: Store, records: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    found = {}
    for entity, key in records:
        data = store.get_record(entity, key)
        if data:
            title = data["fields"].get("name") or data["fields"].get("summary")
            if title:
                found[(entity, key)] = str(title)
    return found
