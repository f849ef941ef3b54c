"""Ingest: one system record into its canonical record (read -> map -> merge -> persist).

A record relbridge has linked before is merged field by field (``bridge.engine.merge``); one
never synced with its object is adopted (``bridge.engine.adoption``); our own create found
again is finished; an object never seen makes a new canonical record. What was accepted is
saved with its history in one transaction, and the release rules hear of it once the record
lock is released.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from bridge.adapter import Adapter, FieldTime, SystemRecord
from bridge.config import Config
from bridge.engine.adoption import FieldClock, Pair, add_field_times, adopt, clock, seen_of
from bridge.engine.creates import raw_fields
from bridge.engine.envelope import Envelope, HeldRecord, StoreResolver, SyncReport
from bridge.engine.locks import RecordLocks
from bridge.engine.merge import MergeResult, merge
from bridge.engine.records import OTHER, Records
from bridge.errors import NotThisEntity, PermanentError, RelbridgeError
from bridge.mapping.loader import Mappings, SystemMapping, UnmappableValue
from bridge.model import KEY_PATTERN, json_value
from bridge.plugins import Hooks
from bridge.release.bookkeeping import STALE_RETRIES, ReleaseRules
from bridge.store import Store
from bridge.store.rows import RefConflict, RefRow, StaleRecord

log = logging.getLogger("bridge.engine")


class IngestContext(Protocol):
    """What ingest needs from the engine."""

    store: Store
    mappings: Mappings
    adapters: Mapping[str, Adapter]
    resolvers: Mapping[str, StoreResolver]
    hooks: Hooks
    config: Config
    locks: RecordLocks
    records: Records
    release: ReleaseRules


def name_field(mappings: Mappings, system: str) -> str:
    """The system field that holds a release's name."""
    specs = {spec.field: spec for spec in mappings.for_system(system).fields("release")}
    return specs["name"].source if "name" in specs else "name"


class Ingest:
    """Ingest for one engine (see the module docstring)."""

    def __init__(self, engine: IngestContext) -> None:
        self.engine = engine
        self.store = engine.store
        self.mappings = engine.mappings
        self.records = engine.records
        self.locks = engine.locks

    def ingest(self, record: SystemRecord, report: SyncReport, held: HeldRecord | None = None,
               links: Mapping[str, RefRow] | None = None) -> str | None:
        """Map one system record into its canonical record. Returns the key, or None when the
        record was skipped (reported as an error). ``held``: the record as read under its
        lock, when the caller holds it (saves reading it again). ``links``: the links of a
        batch of listed objects including this one, looked up together (saves a look-up)."""
        for attempt in range(STALE_RETRIES):
            try:
                return self._ingest(record, report, held, links)
            except (StaleRecord, RefConflict):
                links = None  # the batch's look-up is older than what just happened
                # Another worker changed the record, or linked this object to a record of
                # its own (a pair met from both sides at once): read the link again.
                if attempt == STALE_RETRIES - 1:
                    raise
                if held is not None:
                    held.forget()
            except UnmappableValue as exc:
                self._record_error(record, exc, report)
                return None
            except ValidationError as exc:
                self._record_error(record, PermanentError(_validation_message(exc)), report)
                return None
        return None

    def _ingest(self, record: SystemRecord, report: SyncReport, held: HeldRecord | None,
                links: Mapping[str, RefRow] | None) -> str | None:
        system, entity = record.system, record.entity
        ref = held.ref(system, record.id) if held is not None else None
        if ref is None:
            held = None  # the record held is not this object's (it was unlinked meanwhile)
            ref = links.get(record.id) if links is not None else self.store.find_ref(system, entity, record.id)
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
            return self.ingest_locked(record, key, report, held)

    def _ingest_unlinked_release(self, record: SystemRecord, report: SyncReport) -> str | None:
        """Releases pair up by name: matching one to a record and saving the link happen
        while no other worker of this process pairs or creates a release of that name, so
        two workers meeting a pair from both sides at once cannot make two records of it."""
        with self.locks.pairing(record.fields.get(name_field(self.mappings, record.system))):
            ref = self.store.find_ref(record.system, record.entity, record.id)
            key = ref.key if ref is not None else self._correlate(record)
            with self.locks.hold(record.entity, key):
                return self.ingest_locked(record, key, report)

    def ingest_locked(self, record: SystemRecord, key: str, report: SyncReport,
                      held: HeldRecord | None = None) -> str | None:
        """Ingest ``record`` into the record ``key``, whose lock the caller holds."""
        system, entity = record.system, record.entity
        mapping = self.mappings.for_system(system)
        held = held or HeldRecord(self.store, entity, key, with_refs=False)
        env = held.env
        canonical = dict(env.fields) if env else None
        raw_new = raw_fields(record, mapping.fields_to_read(entity))
        mapped = self._to_canonical(mapping, system, entity, raw_new, canonical)
        if env is None:
            return self._create_canonical(record, key, raw_new, mapped, report, held)
        raw_old = env.raw.get(system)
        if raw_old is None and env.creating.get(system):
            return self._finish_create(record, key, env, raw_new, mapped, report, held)
        if raw_old is None:
            # Never synced with this object (a fresh or lost store, a pair linked by hand):
            # adopt it field by field, writing only what the systems prove (DESIGN §10).
            changed = dict(mapped)
            result = self._adopt(record, key, env, raw_new, mapped, held)
            env.seen.clear()
        else:
            changed, result = self._merge_edit(record, key, env, mapping, raw_old, mapped, held)
        self._accept(record, key, env, raw_new, changed, result, gate=raw_old is not None, held=held,
                     report=report)
        return key

    def _merge_edit(self, record: SystemRecord, key: str, env: Envelope, mapping: SystemMapping,
                    raw_old: dict[str, Any], mapped: dict[str, Any],
                    held: HeldRecord) -> tuple[dict[str, Any], MergeResult]:
        """What a person changed in the system since the raw fields we hold, merged."""
        system, entity = record.system, record.entity
        before = self._to_canonical(mapping, system, entity, raw_old, env.fields, strict=False)
        # A column absent from the raw we hold was never seen (a create keeps only what
        # it sent, not what the system filled in, such as Jira's `created`): its first
        # value is a baseline, not an edit.
        unseen = {spec.field for spec in mapping.fields(entity) if spec.source not in raw_old}
        changed = {f: v for f, v in mapped.items() if v != before.get(f) and f not in unseen}
        pending_here = set(env.pending.get(system, ()))
        source_times = self._field_times(record, changed)
        canonical_times = {f: t for f in changed if (t := env.field_time(f))}
        meeting = {f for f in changed if f in pending_here and changed[f] != env.fields.get(f)}
        if meeting and self.engine.config.sync.conflict_policy == "last_writer_wins":
            # Both sides edited these fields: ask the systems when, field by field.
            audited = self._audited_times(system, entity, record.id, meeting - set(source_times))
            source_times.update({f: t.at for f, t in audited.items()})
            other = held.refs.get(OTHER[system])
            if other is not None:
                audited = self._audited_times(OTHER[system], entity, other.ext_id, meeting)
                canonical_times.update({f: t.at for f, t in audited.items()})
        return changed, merge(
            source=system, changed=changed, canonical=env.fields, pending_for_source=pending_here,
            owners={f: self.mappings.owner(entity, f) for f in changed},
            policy=self.engine.config.sync.conflict_policy, source_time=record.updated_at,
            field_times=canonical_times, source_field_times=source_times,
        )

    def _accept(self, record: SystemRecord, key: str, env: Envelope, raw_new: dict[str, Any],
                changed: Mapping[str, Any], result: MergeResult, *, gate: bool, held: HeldRecord,
                report: SyncReport) -> None:
        """Apply what the merge accepted (through the gate for a release's state), save, and
        mark what the systems still have to be written."""
        system, entity = record.system, record.entity
        as_read = (env.fields, env.raw.get(system), env.dump()["pending"])
        new_fields = dict(env.fields)
        for name, (_, value) in result.accepted.items():
            new_fields[name] = value
        vetoes = []
        # Adoption learns where a release already is; the gate judges moves people make.
        if entity == "release" and "state" in result.accepted and gate:
            vetoes = self.engine.release.gate(key, env.fields, new_fields, system, result)
        accepted = {f: (env.fields.get(f), new_fields.get(f)) for f in result.accepted
                    if env.fields.get(f) != new_fields.get(f)}
        env.fields = new_fields = self.records.validated(entity, key, new_fields, env.fields)
        env.raw[system] = raw_new
        times = self._field_times(record, accepted)
        for name in accepted:
            env.times[name] = times.get(name, record.updated_at).isoformat()
        # The source now holds the accepted values; restored fields go back to it; the
        # other system gets whatever changed.
        env.pending[system] = sorted((set(env.pending.get(system, ())) - set(accepted) - set(changed))
                                     | result.restore | self._owned_by_other(system, entity))
        env.mark_pending(OTHER[system], accepted)
        unchanged = as_read == (env.fields, env.raw.get(system), env.dump()["pending"])
        self._save(env, record, key, accepted, result.conflicts, vetoes, held, unchanged=unchanged)
        report.add(entity, system, "updated" if accepted else "unchanged")
        self._report_conflicts(record, key, result, report)
        if accepted:
            self.locks.after_unlock(
                lambda: self.engine.release.after_change(entity, key, accepted, system, new_fields, created=False))

    def _save(self, env: Envelope, record: SystemRecord, key: str, accepted: Mapping[str, tuple[Any, Any]],
              conflicts: list[Any], vetoes: list[Any], held: HeldRecord, *, unchanged: bool = False) -> None:
        self.records.save(record.entity, key, env, record, accepted, record.system, conflicts, vetoes,
                          known=held.known_ref(record.system), unchanged=unchanged)
        held.saved(env, RefRow(entity=record.entity, key=key, system=record.system, ext_id=record.id,
                               ext_key=record.key, url=record.url, version=record.version,
                               updated_at=record.updated_at))

    def _report_conflicts(self, record: SystemRecord, key: str, result: MergeResult, report: SyncReport) -> None:
        system, entity = record.system, record.entity
        for conflict in result.conflicts:
            report.add(entity, system, "conflicts")
            winner = conflict.source_value if conflict.source_won else conflict.canonical_value
            self.engine.hooks.conflict(entity, key, conflict.field,
                                       {system: conflict.source_value, OTHER[system]: conflict.canonical_value},
                                       conflict.resolution, winner)

    def _adopt(self, record: SystemRecord, key: str, env: Envelope, raw_new: dict[str, Any],
               mapped: dict[str, Any], held: HeldRecord) -> MergeResult:
        system, entity = record.system, record.entity
        other = OTHER[system]
        this_map, other_map = self.mappings.for_system(system), self.mappings.for_system(other)
        this_seen = seen_of(record, this_map)
        resolvers = self.engine.resolvers

        def writes_as(mapping: SystemMapping, name: str, value: Any, raw: Mapping[str, Any]) -> bool:
            out = mapping.to_system(entity, {name: value}, raw, resolvers[mapping.system], fields=[name])
            return not out.payload and not out.pending

        other_seen = dict(env.seen.get(other) or {})
        audited = False

        def clocks(name: str) -> tuple[FieldClock, FieldClock]:
            nonlocal audited
            if not audited:  # once, for every differing field: a system that keeps field times apart
                audited = True
                differing = {f for f, v in mapped.items() if v != env.fields.get(f)}
                add_field_times(this_seen, self._audited_times(system, entity, record.id, differing))
                ref = held.refs.get(other)
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
                       mapped: dict[str, Any], report: SyncReport, held: HeldRecord) -> str:
        """Our own create, cut short (a crash, a lost reply, a failed transition) and found
        again. What relbridge half-wrote never wins against a person's value, either way:
        the object is finished from the canonical record, except for what a person changed
        on it since our create reached it: a field that differs from what we sent and that
        the system shows changed since the creation is their edit, merged like any other."""
        system, entity = record.system, record.entity
        journal = env.creating.pop(system, None)
        env.seen.clear()
        mapping = self.mappings.for_system(system)
        writable = {spec.field for spec in mapping.fields(entity) if spec.direction != "inbound"}
        sent = journal.get("sent") if isinstance(journal, dict) else None
        # What the create's first call wrote and the system shows changed since the object's
        # creation is a person's; what a later step of the create writes (a workflow walk,
        # a link row) may just be unfinished.
        later = getattr(self.engine.adapters[system], "set_after_create", lambda _: frozenset())(entity)
        sent = {name: value for name, value in (sent or {}).items()
                if name not in record.untouched and name not in later}
        if not sent:  # nothing a person can have changed, or an old journal: finish every field
            env.raw[system] = raw_new
            env.mark_pending(system, writable)
            self._save(env, record, key, {}, [], [], held)
            self.locks.follow_ups.add(entity, key)
            report.add(entity, system, "unchanged")
            return key
        as_sent = self._to_canonical(mapping, system, entity, sent, env.fields, strict=False)
        unsent = {spec.field for spec in mapping.fields(entity) if spec.source not in sent}
        # Still to write: what the create never carried, and what changed here since it was sent.
        env.pending[system] = sorted(f for f in writable if f in unsent or env.fields.get(f) != as_sent.get(f))
        changed, result = self._merge_edit(record, key, env, mapping, sent, mapped, held)
        self._accept(record, key, env, raw_new, changed, result, gate=True, held=held, report=report)
        self.locks.follow_ups.add(entity, key)
        return key

    def _create_canonical(self, record: SystemRecord, key: str, raw: dict[str, Any],
                          mapped: dict[str, Any], report: SyncReport, held: HeldRecord) -> str:
        system, entity = record.system, record.entity
        fields = self.records.validated(entity, key, mapped, None)
        env = Envelope(fields=fields, raw={system: raw})
        env.seen[system] = seen_of(record, self.mappings.for_system(system))
        times = self._field_times(record, mapped)
        env.times = {name: times.get(name, record.updated_at).isoformat() for name in mapped}
        env.mark_pending(OTHER[system], mapped)
        accepted = {name: (None, value) for name, value in fields.items() if value not in (None, [], "")}
        self._save(env, record, key, accepted, [], [], held)
        report.add(entity, system, "created")
        self.locks.after_unlock(
            lambda: self.engine.release.after_change(entity, key, accepted, system, fields, created=True))
        return key

    # -- mapping -----------------------------------------------------------------------------

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
        look_up = getattr(self.engine.adapters[system], "field_times", None)
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

    def _to_canonical(self, mapping: SystemMapping, system: str, entity: str, raw: Mapping[str, Any],
                      canonical: Mapping[str, Any] | None, *, strict: bool = True) -> dict[str, Any]:
        resolver = self.engine.resolvers[system]
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
            record = self.engine.adapters[system].read(entity, ext_id, mapping.fields_to_read(entity))
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
            name = record.fields.get(name_field(self.mappings, record.system))
            match = self._release_named(name, record.system) if name else None
            if match:
                return match
        if record.system == "jira" and record.entity == "release":
            return f"JV{record.id}"
        if record.key and KEY_PATTERN.match(record.key):
            return record.key
        return f"{record.system[:2].upper()}{zlib.crc32(record.id.encode()):08X}"

    def _release_named(self, name: str, system: str) -> str | None:
        """A canonical release of that name not yet linked in ``system`` (Jira versions
        correlate with releases by name)."""
        key = self.records.release_named(name)
        if key is None or system in self.store.refs("release", key):
            return None
        return key

    def _record_error(self, record: SystemRecord, exc: RelbridgeError, report: SyncReport) -> None:
        log.warning("%s %s %s skipped: %s", record.system, record.entity, record.key or record.id, exc)
        self.store.record_error(record.system, record.entity, record.id, code=exc.code, message=str(exc),
                                key=record.key)
        report.error(record.entity, record.system, f"{record.system} {record.entity} {record.key or record.id}: {exc}")
        self.engine.hooks.sync_failed(record.system, record.entity, record.id, exc, True)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"]) or "record"
        parts.append(f"{loc}: {error['msg']}")
    return "; ".join(parts)
