"""The sync pipeline: read -> map -> merge -> persist -> propagate (DESIGN §3).

One canonical record per release, change and incident is kept in the store as an
*envelope*: the canonical fields, the last raw fields seen in (or written to) each system,
when each field last changed, which fields still have to be written to which system, and
a create journal. That is enough to

* recognise echoes of our own writes (the raw fields we wrote come back unchanged),
* tell which side changed a field (compare raw fields with the previous raw fields), so
  concurrent edits become conflicts instead of silent overwrites,
* resume after a crash: fields not yet written stay listed as pending, and a create that
  may have reached the system is looked up by correlation before it is tried again.

The engine is used by ``sync --once`` (list changes, ingest, propagate) and by daemon
workers (re-read one object, ingest, propagate). The envelope lives in ``bridge.engine.envelope``;
gate, hooks, links and derived lifecycle in ``bridge.release.bookkeeping``.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from bridge import lifecycle
from bridge.adapter import Adapter, FieldTime, SystemRecord
from bridge.config import Config
from bridge.daemon.inbox import queued_events
from bridge.engine.adoption import FieldClock, Pair, add_field_times, adopt, clock, seen_of
from bridge.engine.comments import sync_comments
from bridge.engine.creates import Creates, raw_fields
from bridge.engine.envelope import Envelope, StoreResolver, SyncReport
from bridge.engine.locks import RecordLocks
from bridge.engine.merge import MergeResult, merge
from bridge.engine.safety import SafetyBrake
from bridge.errors import NotThisEntity, PermanentError, RelbridgeError, TransientError
from bridge.mapping.loader import Mappings, SystemMapping, UnmappableValue
from bridge.model import KEY_PATTERN, SYSTEMS, Release, System, json_value, model_for
from bridge.plugins import Hooks
from bridge.release.bookkeeping import (
    DERIVED,
    ENGINE_FIELDS,
    STALE_RETRIES,
    ReleaseBookkeeping,
)
from bridge.store import Store
from bridge.store.rows import RefConflict, RefRow, StaleRecord
from bridge.timeutil import utc_now

log = logging.getLogger(__name__)

__all__ = ["Engine", "ENTITY_ORDER", "OTHER"]

ENTITY_ORDER = ("release", "change", "incident")
#: Releases pair up by name across systems: one worker of a process at a time pairs or
#: creates one (taken before any record lock).
PAIRING = "release-pairing"
#: The other system, for each: changes flow from one to the other.
OTHER = {a.value: b.value for a, b in itertools.permutations(System, 2)}


# --- the engine ------------------------------------------------------------------------------


class Engine(ReleaseBookkeeping):
    def __init__(
        self,
        store: Store,
        mappings: Mappings,
        adapters: Mapping[str, Adapter],
        hooks: Hooks,
        config: Config,
        *,
        clock: Callable[[], datetime] = utc_now,
        on_veto: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.mappings = mappings
        self.adapters = dict(adapters)
        self.hooks = hooks
        self.config = config
        self.clock = clock
        self.on_veto = on_veto
        # Names this engine as a lease holder (create leases) among processes sharing the store.
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.resolvers = {system: StoreResolver(store, system) for system in SYSTEMS}
        self.brake = SafetyBrake(config.safety, store, clock)  # bounds destructive writes
        self.locks = RecordLocks()
        self._deferred_gates: list[tuple[str, str, str]] | None = None
        self._deferred_derives: set[str] = set()
        self._deferred_links: dict[str, list[tuple[str, str, bool]]] = {}
        self.creates = Creates(self)
        self._names: dict[str, str] | None = None  # release name -> key, built on first use
        self._names_lock = threading.Lock()
        self._deferred_lock = threading.Lock()
        for system in SYSTEMS:
            if system not in self.adapters:
                raise RelbridgeError(f"no adapter for {system!r}: is its plugin disabled or broken? (relbridge plugins)")

    # -- public entry points -------------------------------------------------------------

    def sync_once(self, progress: Callable[[str, int], None] | None = None) -> SyncReport:
        """One full pass: every change since the watermarks, in both systems, then propagate.

        Both systems are read before anything is written, so an edit made on both sides
        since the last pass is seen as a conflict rather than overwritten. ``progress`` is
        called with (phase, records done) as work advances.
        """
        report = SyncReport()
        touched: dict[str, set[str]] = {entity: set() for entity in ENTITY_ORDER}
        marks: dict[tuple[str, str], datetime] = {}
        self._deferred_gates = []
        # A watermark proves every older object was linked only when no event listed by a
        # daemon's poller still waits in the inbox (it may be an object never linked yet).
        marks_complete = queued_events(self.store) == 0
        self.creates.proven = set()
        self.brake.start_pass()
        try:
            for entity in ENTITY_ORDER:
                for system in SYSTEMS:
                    started = self.clock()
                    complete = marks_complete or self.store.get_watermark(system, entity) is None
                    records = list(self._list_changed(system, entity))
                    keys = self._run_parallel(
                        system, records, lambda rec, r=report: self.ingest(rec, r), progress,
                        f"read {system} {entity}",
                    )
                    touched[entity].update(k for k in keys if k)
                    marks[(system, entity)] = started
                    if complete:
                        self.creates.proven.add((system, entity))
        finally:
            deferred, self._deferred_gates = self._deferred_gates, None
            self._apply_deferred_links()  # even after a failed read: what was stored stays linked
        for key, new, source in deferred:
            self.transition(key, new, source)
        derives, self._deferred_derives = sorted(self._deferred_derives), set()
        for key in derives:
            self._derive_release_state(key)
        touched_keys = self._pending_keys(touched)
        for entity in ENTITY_ORDER:
            keys = sorted(touched_keys[entity])
            self._run_parallel(
                "write", keys, lambda k, e=entity: self.propagate(e, k, report), progress, f"write {entity}"
            )
        # Watermarks move only after everything read was persisted and propagated: a crash
        # before this point re-reads the same window next time (nothing lost).
        for (system, entity), value in marks.items():
            self.store.set_watermark(system, entity, value)
        self.creates.proven = set()
        return report

    def process(self, system: str, entity: str, ext_id: str, *, deleted: bool = False,
                report: SyncReport | None = None) -> str | None:
        """Daemon worker path: re-read one object, ingest it, propagate. Returns its key.

        For an object already linked, the record lock is held from the read to the last
        write: another worker's read of the same record cannot fall between this one's
        writes and then be taken for a newer edit (a stale read wins no merge).
        """
        report = report or SyncReport()
        known = self.store.find_ref(system, entity, ext_id)
        pairing = self.locks.exclusive(PAIRING) if entity == "release" else nullcontext()
        with pairing, self.locks.hold(entity, known.key) if known else nullcontext():
            key = self._settle(system, entity, ext_id, deleted, report)
        if key is None:
            return None
        # Records this step touched besides its own (a release whose derived state moved, a
        # write that met a concurrent one): settle them now, or have the event retried.
        for _ in range(STALE_RETRIES):
            follow_ups = self.locks.follow_ups.pop_all()
            if not follow_ups:
                return key
            for follow_entity, follow_key in follow_ups:
                self.propagate(follow_entity, follow_key, report)
        self.locks.follow_ups.pop_all()
        raise TransientError(f"{entity} {key}: related records kept changing while being written; retrying")

    def reconcile(self, report: SyncReport) -> None:
        """Find objects deleted in either system that no change listing can report (a missed
        webhook, a polling-only setup): each vanished object is read to confirm it is gone,
        then unlinked like any deletion. Costs a full listing per system and entity."""
        for entity in ENTITY_ORDER:
            for system in SYSTEMS:
                fields = self.mappings.for_system(system).fields_to_read(entity)
                for ext_id in self.vanished(system, entity):
                    try:
                        gone = self.adapters[system].read(entity, ext_id, fields) is None
                    except NotThisEntity as exc:  # moved to another type or project: a person decides
                        log.warning("%s %s %s: %s; left linked", system, entity, ext_id, exc)
                        continue
                    if gone:
                        self.unlink(system, entity, ext_id, report)

    def vanished(self, system: str, entity: str) -> list[str]:
        """Linked objects that a full listing of ``system`` no longer shows: deleted, or
        moved out of what relbridge lists (a read tells which)."""
        mapping = self.mappings.for_system(system)
        if entity not in mapping.entities:
            return []
        linked = self.store.linked_ids(system, entity)
        if linked:
            for record in self.adapters[system].list_changed(entity, None, mapping.fields_to_read(entity)):
                linked.discard(record.id)
        return sorted(linked)

    def _settle(self, system: str, entity: str, ext_id: str, deleted: bool, report: SyncReport) -> str | None:
        # A notice, a deletion notice too, is only a hint: the object is read, and only the
        # system's own "not found" (read gives None) makes it a deletion.
        mapping = self.mappings.for_system(system)
        try:
            record = self.adapters[system].read(entity, ext_id, mapping.fields_to_read(entity))
        except NotThisEntity as exc:
            if self.store.find_key(system, entity, ext_id) is not None:
                raise  # a linked object changed type or project: held for a person to decide
            log.warning("ignored a notice for %s %s %s: %s", system, entity, ext_id, exc)
            report.add(entity, system, "ignored")
            return None
        if record is None:
            self.unlink(system, entity, ext_id, report)
            return None
        if deleted:
            log.info("%s %s %s was reported deleted but still exists: synced as an update",
                     system, entity, ext_id)
        key = self.ingest(record, report)
        if key is None:
            return None
        # Read the other side too before writing to it: an edit made there since the last
        # sync becomes a conflict instead of being overwritten.
        row, refs = self.store.record_and_refs(entity, key)
        ref = refs.get(OTHER[system])
        if ref is not None and row is not None and row.data.get("pending", {}).get(OTHER[system]):
            other = self.adapters[OTHER[system]].read(
                entity, ref.ext_id, self.mappings.for_system(OTHER[system]).fields_to_read(entity)
            )
            if other is not None:
                self.ingest(other, report)
        self.propagate(entity, key, report)
        return key

    def changed_records(self, system: str, entity: str) -> Iterator[SystemRecord]:
        """Records changed since the watermark whose version differs from the one we hold
        (pollers enqueue only these, so an idle poll costs the listing calls and no more)."""
        for record in self._list_changed(system, entity):
            ref = self.store.find_ref(system, entity, record.id)
            if ref is None or ref.version != record.version:
                yield record

    # -- reading -------------------------------------------------------------------------

    def _list_changed(self, system: str, entity: str) -> Iterator[SystemRecord]:
        mark = self.store.get_watermark(system, entity)
        since = mark - timedelta(seconds=self.config.sync.overlap_seconds) if mark else None
        mapping = self.mappings.for_system(system)
        if entity not in mapping.entities:
            return
        yield from self.adapters[system].list_changed(entity, since, mapping.fields_to_read(entity))

    def _run_parallel(self, label: str, items: list[Any], work: Callable[[Any], Any],
                      progress: Callable[[str, int], None] | None, phase: str) -> list[Any]:
        if not items:
            return []
        if progress:
            progress(phase, 0)
        done = 0
        results = []
        workers = min(self.config.sync.concurrency, len(items))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"sync-{label}") as pool:
            for result in pool.map(work, items):
                results.append(result)
                done += 1
                if progress:
                    progress(phase, done)
        return results

    # -- ingest --------------------------------------------------------------------------

    def ingest(self, record: SystemRecord, report: SyncReport) -> str | None:
        """Map one system record into its canonical record. Returns the key, or None when the
        record was skipped (reported as an error)."""
        for attempt in range(STALE_RETRIES):
            try:
                return self._ingest(record, report)
            except (StaleRecord, RefConflict):
                # Another worker changed the record, or linked this object to a record of
                # its own (a pair met from both sides at once): read the link again.
                if attempt == STALE_RETRIES - 1:
                    raise
            except UnmappableValue as exc:
                self._record_error(record, exc, report)
                return None
            except ValidationError as exc:
                self._record_error(record, PermanentError(_validation_message(exc)), report)
                return None
        return None

    def _ingest(self, record: SystemRecord, report: SyncReport) -> str | None:
        system, entity = record.system, record.entity
        ref = self.store.find_ref(system, entity, record.id)
        if ref is not None:
            key = ref.key
            if ref.version == record.version:
                report.add(entity, system, "unchanged")
                return key
        else:
            if entity == "release":
                return self._ingest_unlinked_release(record, report)
            key = self._correlate(record)
        with self.locks.hold(entity, key):
            return self._ingest_locked(record, key, report)

    def _ingest_unlinked_release(self, record: SystemRecord, report: SyncReport) -> str | None:
        """Releases pair up by name: matching one to a record and saving the link happen
        while no other worker of this process pairs or creates a release, so two workers
        meeting a pair from both sides at once cannot make two records of it."""
        with self.locks.exclusive(PAIRING):
            ref = self.store.find_ref(record.system, record.entity, record.id)
            key = ref.key if ref is not None else self._correlate(record)
            with self.locks.hold(record.entity, key):
                return self._ingest_locked(record, key, report)

    def _ingest_locked(self, record: SystemRecord, key: str, report: SyncReport) -> str | None:
        system, entity = record.system, record.entity
        mapping = self.mappings.for_system(system)
        row = self.store.load_record(entity, key)
        env = Envelope.load(row.data, row.revision) if row else None
        canonical = dict(env.fields) if env else None
        raw_new = raw_fields(record, mapping.fields_to_read(entity))
        mapped = self._to_canonical(mapping, system, entity, raw_new, canonical)
        raw_old = env.raw.get(system) if env else None
        if env is None:
            return self._create_canonical(record, key, raw_new, mapped, report)

        if raw_old is None and env.creating.get(system):
            return self._finish_create(record, key, env, raw_new, report)
        if raw_old is None:
            # Never synced with this object (a fresh or lost store, a pair linked by hand):
            # adopt it field by field, writing only what the systems prove (DESIGN §10).
            changed = dict(mapped)
            result = self._adopt(record, key, env, raw_new, mapped)
            env.seen.clear()
        else:
            before = self._to_canonical(mapping, system, entity, raw_old, canonical, strict=False)
            # A column absent from the raw we hold was never seen (a create keeps only what
            # it sent, not what the system filled in, such as Jira's `created`): its first
            # value is a baseline, not an edit.
            unseen = {spec.field for spec in mapping.fields(entity) if spec.source not in raw_old}
            changed = {f: v for f, v in mapped.items() if v != before.get(f) and f not in unseen}
            pending_here = set(env.pending.get(system, ()))
            source_times = self._field_times(record, changed)
            canonical_times = {f: t for f in changed if (t := env.field_time(f))}
            meeting = {f for f in changed if f in pending_here and changed[f] != env.fields.get(f)}
            if meeting and self.config.sync.conflict_policy == "last_writer_wins":
                # Both sides edited these fields: ask the systems when, field by field.
                audited = self._audited_times(system, entity, record.id, meeting - set(source_times))
                source_times.update({f: t.at for f, t in audited.items()})
                other = self.store.refs(entity, key).get(OTHER[system])
                if other is not None:
                    audited = self._audited_times(OTHER[system], entity, other.ext_id, meeting)
                    canonical_times.update({f: t.at for f, t in audited.items()})
            result = merge(
                source=system,
                changed=changed,
                canonical=env.fields,
                pending_for_source=pending_here,
                owners={f: self.mappings.owner(entity, f) for f in changed},
                policy=self.config.sync.conflict_policy,
                source_time=record.updated_at,
                field_times=canonical_times,
                source_field_times=source_times,
            )
        new_fields = dict(env.fields)
        for name, (_, value) in result.accepted.items():
            new_fields[name] = value
        vetoes = []
        # Adoption learns where a release already is; the gate judges moves people make.
        if entity == "release" and "state" in result.accepted and raw_old is not None:
            vetoes = self._gate(key, env.fields, new_fields, system, result)
        accepted = {f: (env.fields.get(f), new_fields.get(f)) for f in result.accepted
                    if env.fields.get(f) != new_fields.get(f)}
        new_fields = self._validated(entity, key, new_fields, env.fields)

        env.fields = new_fields
        env.raw[system] = raw_new
        times = self._field_times(record, accepted)
        for name in accepted:
            env.times[name] = times.get(name, record.updated_at).isoformat()
        # The source now holds the accepted values; restored fields go back to it; the
        # other system gets whatever changed.
        env.pending[system] = sorted((set(env.pending.get(system, ())) - set(accepted) - set(changed))
                                     | result.restore | self._owned_by_other(system, entity))
        env.mark_pending(OTHER[system], accepted)
        self._save(entity, key, env, record, accepted, system, result.conflicts, vetoes)
        report.add(entity, system, "updated" if accepted else "unchanged")
        for conflict in result.conflicts:
            report.add(entity, system, "conflicts")
            winner = conflict.source_value if conflict.source_won else conflict.canonical_value
            self.hooks.conflict(entity, key, conflict.field,
                                {system: conflict.source_value, OTHER[system]: conflict.canonical_value},
                                conflict.resolution, winner)
        if accepted:
            self.locks.after_unlock(lambda: self._after_change(entity, key, accepted, system, new_fields, created=False))
        return key

    def _adopt(self, record: SystemRecord, key: str, env: Envelope, raw_new: dict[str, Any],
               mapped: dict[str, Any]) -> MergeResult:
        system, entity = record.system, record.entity
        other = OTHER[system]
        this_map, other_map = self.mappings.for_system(system), self.mappings.for_system(other)
        this_seen = seen_of(record, this_map)

        def writes_as(mapping: SystemMapping, name: str, value: Any, raw: Mapping[str, Any]) -> bool:
            out = mapping.to_system(entity, {name: value}, raw, self.resolvers[mapping.system], fields=[name])
            return not out.payload and not out.pending

        other_seen = dict(env.seen.get(other) or {})
        audited = False

        def clocks(name: str) -> tuple[FieldClock, FieldClock]:
            nonlocal audited
            if not audited:  # once, for every differing field: a system that keeps field times apart
                audited = True
                differing = {f for f, v in mapped.items() if v != env.fields.get(f)}
                add_field_times(this_seen, self._audited_times(system, entity, record.id, differing))
                ref = self.store.refs(entity, key).get(other)
                if ref is not None and other_seen:
                    add_field_times(other_seen, self._audited_times(other, entity, ref.ext_id, differing))
            return (clock(this_seen, name, record.updated_at),
                    clock(other_seen, name, env.field_time(name)))

        pair = Pair(entity, this_map, other_map, raw_new, env.raw.get(other), writes_as)
        result = adopt(pair, mapped, env.fields, clocks)
        for conflict in result.conflicts:
            log.warning("%s %s: %s differs between the systems (%s: %r, %s: %r) and neither side can be "
                        "shown to have changed it last: left as it is on both, recorded as a conflict",
                        entity, env.fields.get("name") or record.key, conflict.field, system,
                        conflict.source_value, other, conflict.canonical_value)
        return result

    def _finish_create(self, record: SystemRecord, key: str, env: Envelope, raw_new: dict[str, Any],
                       report: SyncReport) -> str:
        """Our own create, cut short (a crash, a lost reply, a failed transition) and found
        again: the object is finished from the canonical record, never merged back as if a
        person had edited it (what relbridge half-wrote never wins against a person's value)."""
        system, entity = record.system, record.entity
        env.creating.pop(system, None)
        env.seen.clear()
        env.raw[system] = raw_new
        writable = {spec.field for spec in self.mappings.for_system(system).fields(entity)
                    if spec.direction != "inbound"}
        env.mark_pending(system, writable)
        self._save(entity, key, env, record, {}, system, [], [])
        self.locks.follow_ups.add(entity, key)
        report.add(entity, system, "unchanged")
        return key

    def _field_times(self, record: SystemRecord, names: Iterable[str]) -> dict[str, datetime]:
        """When the system last set each canonical field, where it records it (Jira's
        changelog): last-writer-wins then means the last writer of that field."""
        if not record.field_times:
            return {}
        wanted = set(names)
        return {spec.field: record.field_times[spec.source]
                for spec in self.mappings.for_system(record.system).fields(record.entity)
                if spec.field in wanted and spec.source in record.field_times}

    def _audited_times(self, system: str, entity: str, ext_id: str, names: set[str]) -> dict[str, FieldTime]:
        """Per-field change times from a system that keeps them apart from its records
        (``field_times``, optional in the adapter contract: ServiceNow's ``sys_audit``)."""
        look_up = getattr(self.adapters[system], "field_times", None)
        if look_up is None or not names:
            return {}
        sources = {spec.source: spec.field for spec in self.mappings.for_system(system).fields(entity)
                   if spec.field in names}
        times = look_up(entity, ext_id, list(sources))
        return {sources[source]: at for source, at in times.items() if source in sources}

    def _owned_by_other(self, system: str, entity: str) -> set[str]:
        """Fields the other system owns: the mapping ignores this system's edits of them, so
        they are always re-checked against it (and restored if it changed them; writing
        costs nothing when it did not)."""
        return {spec.field for spec in self.mappings.for_system(system).fields(entity)
                if self.mappings.owner(entity, spec.field) == OTHER[system]}

    def _create_canonical(self, record: SystemRecord, key: str, raw: dict[str, Any],
                          mapped: dict[str, Any], report: SyncReport) -> str:
        system, entity = record.system, record.entity
        fields = self._validated(entity, key, mapped, None)
        env = Envelope(fields=fields, raw={system: raw})
        env.seen[system] = seen_of(record, self.mappings.for_system(system))
        times = self._field_times(record, mapped)
        env.times = {name: times.get(name, record.updated_at).isoformat() for name in mapped}
        env.mark_pending(OTHER[system], mapped)
        accepted = {name: (None, value) for name, value in fields.items() if value not in (None, [], "")}
        self._save(entity, key, env, record, accepted, system, [], [])
        report.add(entity, system, "created")
        self.locks.after_unlock(lambda: self._after_change(entity, key, accepted, system, fields, created=True))
        return key

    def _to_canonical(self, mapping: SystemMapping, system: str, entity: str, raw: Mapping[str, Any],
                      canonical: Mapping[str, Any] | None, *, strict: bool = True) -> dict[str, Any]:
        resolver = self.resolvers[system]
        try:
            result = mapping.to_canonical(entity, raw, canonical, resolver)
        except UnmappableValue:
            if strict:
                raise
            return {}
        if strict and result.unresolved:
            # A reference to an object we have not seen yet (older than the watermark, or a
            # webhook that arrived first): read it now, then map again.
            specs = {spec.field: spec for spec in mapping.fields(entity)}
            for ref in result.unresolved:
                self._pull(system, specs[ref.field].ref, ref.system_id)
            result = mapping.to_canonical(entity, raw, canonical, resolver)
        # One text form per value (as the store keeps it): equal instants compare equal.
        values = {name: json_value(value) for name, value in result.values.items()}
        for ref in result.unresolved:
            values.pop(ref.field, None)  # keep the canonical value until the target is known
        return values

    def _pull(self, system: str, entity: str | None, ext_id: str) -> None:
        if entity is None or self.store.find_key(system, entity, ext_id):
            return
        mapping = self.mappings.for_system(system)
        try:
            record = self.adapters[system].read(entity, ext_id, mapping.fields_to_read(entity))
        except NotThisEntity as exc:
            # e.g. an incident "caused by" a Jira issue that is no change: the reference stays
            # unresolved (the canonical value is kept) rather than a record of the wrong kind.
            log.warning("%s %s %s is referenced but %s", system, entity, ext_id, exc)
            return
        if record is not None:
            key = self.ingest(record, SyncReport())
            if key:
                self.locks.follow_ups.add(entity, key)

    def _correlate(self, record: SystemRecord) -> str:
        """The canonical key for an object relbridge has not linked yet."""
        if record.correlation and KEY_PATTERN.match(record.correlation):
            return record.correlation
        if record.entity == "release":
            name = record.fields.get(self.name_field(record.system))
            match = self._release_named(name, record.system) if name else None
            if match:
                return match
        if record.system == "jira" and record.entity == "release":
            return f"JV{record.id}"
        if record.key and KEY_PATTERN.match(record.key):
            return record.key
        return f"{record.system[:2].upper()}{zlib.crc32(record.id.encode()):08X}"

    def name_field(self, system: str) -> str:
        specs = {spec.field: spec for spec in self.mappings.for_system(system).fields("release")}
        return specs["name"].source if "name" in specs else "name"

    def _release_named(self, name: str, system: str) -> str | None:
        """A canonical release of that name not yet linked in ``system`` (Jira versions
        correlate with releases by name)."""
        with self._names_lock:
            if self._names is None:
                self._names = {data["fields"].get("name"): key for key, data in self.store.records("release")}
            key = self._names.get(name)
        if key is None or system in self.store.refs("release", key):
            return None
        return key

    def _validated(self, entity: str, key: str, fields: dict[str, Any],
                   before: Mapping[str, Any] | None) -> dict[str, Any]:
        model = model_for(entity)
        merged = {**{f: v for f, v in (before or {}).items()}, **fields}
        instance = model.model_validate({"key": key, **merged})
        if isinstance(instance, Release):
            previous = Release.model_validate({"key": key, **before}) if before else None
            instance = lifecycle.apply_facts(previous, instance)
        return instance.sync_fields()

    def _models(self, entity: str, keys: Iterable[str]) -> list[Any]:
        model = model_for(entity)
        return [model.model_validate({"key": k, **data["fields"]})
                for k, data in sorted(self.store.get_records(entity, keys).items())]

    # -- persisting ------------------------------------------------------------------------

    def _save(self, entity: str, key: str, env: Envelope, record: SystemRecord | None,
              accepted: Mapping[str, tuple[Any, Any]], source: str, conflicts: list[Any],
              vetoes: list[tuple[lifecycle.Veto, str, str]]) -> None:
        now = self.clock()
        if entity == "release" and self._names is not None:
            with self._names_lock:
                self._names[env.fields.get("name")] = key
        with self.store.transaction() as tx:
            env.revision = tx.put_record(entity, key, env.dump(), expected_revision=env.revision)
            if record is not None:
                tx.put_ref(entity, key, record.system, record.id, ext_key=record.key, url=record.url,
                           version=record.version, updated_at=record.updated_at)
                tx.clear_error(record.system, entity, record.id)
            tx.add_history_rows(entity, key, {
                name: change for name, change in accepted.items()
                if name not in ENGINE_FIELDS.get(entity, ()) or name in ("change_requests", "incidents")
            }, source, now)
            self.brake.supersede(tx, entity, key, accepted, source)
            for conflict in conflicts:
                values = {source: conflict.source_value, OTHER[source]: conflict.canonical_value}
                winner = conflict.source_value if conflict.source_won else conflict.canonical_value
                tx.add_conflict(entity, key, conflict.field, values["servicenow"], values["jira"],
                                conflict.resolution, winner, now)
            for veto, old, new in vetoes:
                reason = "; ".join([veto.reason, *veto.missing])
                tx.add_veto(key, old, new, reason, source, now)
        for _ in vetoes:
            if self.on_veto:
                self.on_veto(key)

    def _record_error(self, record: SystemRecord, exc: RelbridgeError, report: SyncReport) -> None:
        log.warning("%s %s %s skipped: %s", record.system, record.entity, record.key or record.id, exc)
        self.store.record_error(record.system, record.entity, record.id, code=exc.code, message=str(exc),
                                key=record.key)
        report.error(record.entity, record.system, f"{record.system} {record.entity} {record.key or record.id}: {exc}")
        self.hooks.sync_failed(record.system, record.entity, record.id, exc, True)

    # -- propagation -----------------------------------------------------------------------

    def _pending_keys(self, touched: dict[str, set[str]]) -> dict[str, set[str]]:
        """Touched keys plus any record left with pending writes (a crash, a failed write)."""
        keys = {entity: set(found) for entity, found in touched.items()}
        for entity, key, _ in self.store.unfinished_records():
            if entity in keys:
                keys[entity].add(key)
        for entity, key in self.locks.follow_ups.pop_all():
            keys[entity].add(key)
        return keys

    def propagate(self, entity: str, key: str, report: SyncReport) -> None:
        """Write what changed to each system that lacks it; create where missing."""
        systems = [(system, mapping) for system in SYSTEMS
                   if entity in (mapping := self.mappings.for_system(system)).entities]
        # A release's create looks its counterpart up by name: pair releases one at a time
        # (taken before the record lock, always in that order: no lock-order deadlock).
        pairing = self.locks.exclusive(PAIRING) if entity == "release" else nullcontext()
        with pairing, self.locks.hold(entity, key):
            loaded: tuple[Envelope, dict[str, RefRow]] | None = None
            for system, mapping in systems:
                try:
                    if loaded is None:
                        row, refs = self.store.record_and_refs(entity, key)
                        if row is None:
                            return
                        loaded = Envelope.load(row.data, row.revision), refs
                    env, refs = loaded
                    if system in refs:
                        self._write_pending(system, mapping, entity, key, env, refs[system], report)
                    elif system not in env.gone:  # deleted there on purpose: never re-created
                        self.creates.create(system, mapping, entity, key, env, report)
                        loaded = None  # a create may also have merged what it found: re-read
                except StaleRecord:
                    self.locks.follow_ups.add(entity, key)
                    loaded = None
                except UnmappableValue as exc:
                    report.error(entity, system, f"{entity} {key} -> {system}: {exc}")
                    self.store.record_error(system, entity, f"key:{key}", code=exc.code, message=str(exc), key=key)
                    self.hooks.sync_failed(system, entity, key, exc, True)
            # Comments cross once the record's fields are written (bridge.engine.comments).
            sync_comments(self, entity, key, report)

    def _write_pending(self, system: str, mapping: SystemMapping, entity: str, key: str, env: Envelope,
                       ref: RefRow, report: SyncReport) -> None:
        names = env.pending.get(system)
        if not names:
            return
        out = mapping.to_system(entity, env.fields, env.raw.get(system, {}), self.resolvers[system], fields=names)
        held = self.brake.screen(mapping, entity, key, env, ref, out, self.resolvers[system])
        if out.payload:
            self.adapters[system].write(entity, ref.ext_id, out.payload)
            env.raw.setdefault(system, {}).update(out.payload)
            report.add(entity, system, "updated")
        env.pending[system] = sorted({p.field for p in out.pending})  # held writes leave the pending list
        with self.store.transaction() as tx:
            env.revision = tx.put_record(entity, key, env.dump(), expected_revision=env.revision)
            self.brake.settle(tx, entity, key, system, names, held)
        if held:
            report.add(entity, system, "held", len(held))

    def link_found(self, found: SystemRecord, key: str, report: SyncReport) -> None:
        """An object exists already (our create cut short, a lost store, a pair made by
        hand): link it, finishing our own create or adopting it, so nothing is made twice."""
        self._ingest_locked(found, key, report)
        self.locks.follow_ups.add(found.entity, key)

    # -- deletions -------------------------------------------------------------------------

    def unlink(self, system: str, entity: str, ext_id: str, report: SyncReport) -> None:
        """The object is gone from ``system``: unlink and record it; delete it in the other
        system only when ``[sync] propagate_deletes`` says so."""
        key = self.store.find_key(system, entity, ext_id)
        if key is None:
            return
        with self.locks.hold(entity, key), self.store.transaction() as tx:
            row = tx.load_record(entity, key)
            if row is not None:
                env = Envelope.load(row.data, row.revision)
                env.gone[system] = self.clock().isoformat()
                env.pending.pop(system, None)
                env.raw.pop(system, None)
                tx.put_record(entity, key, env.dump(), expected_revision=env.revision)
            tx.drop_ref(system, entity, ext_id)
            tx.drop_held(entity, key, system=system)  # writes held for an object that is gone
            tx.add_history(entity, key, f"_ref.{system}", ext_id, None, system, self.clock())
        self.resolvers[system].forget(entity, key, ext_id)
        report.add(entity, system, "deleted")
        if self.config.sync.propagate_deletes:
            other = self.store.refs(entity, key).get(OTHER[system])
            if other is not None and self.brake.admit_delete(entity, key, OTHER[system], other, report):
                self.apply_delete(OTHER[system], entity, key, other.ext_id)

    def apply_delete(self, system: str, entity: str, key: str, ext_id: str) -> None:
        """Delete the record's object in ``system`` (it is gone from the other one already),
        then the record itself."""
        self.adapters[system].delete(entity, ext_id)
        self.resolvers[system].forget(entity, key, ext_id)
        with self.store.transaction() as tx:
            tx.drop_ref(system, entity, ext_id)
            tx.add_history(entity, key, f"_ref.{system}", ext_id, None, DERIVED, self.clock())
            tx.delete_record(entity, key)
            tx.drop_held(entity, key)

    # -- helpers ---------------------------------------------------------------------------

def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"]) or "record"
        parts.append(f"{loc}: {error['msg']}")
    return "; ".join(parts)

