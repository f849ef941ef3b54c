"""Propagation: write what changed in a canonical record to each system that lacks it, and
create the record's object where it has none (``bridge.engine.creates``).

Only the fields listed as pending for a system are mapped and written, and only those whose
system value differs; the safety brake screens each write first. Fields written leave the
pending list in the same transaction that records the write.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Protocol

from bridge.adapter import Adapter
from bridge.engine import users
from bridge.engine.comments import sync_comments
from bridge.engine.creates import Creates
from bridge.engine.envelope import Envelope, HeldRecord, StoreResolver, SyncReport
from bridge.engine.locks import RecordLocks
from bridge.engine.safety import SafetyBrake
from bridge.mapping.loader import Mappings, SystemMapping, UnmappableValue
from bridge.model import SYSTEMS
from bridge.plugins import Hooks
from bridge.store import Store
from bridge.store.rows import RecordRow, RefRow, StaleRecord

#: Renames of a release met between reading its name and taking its locks that are followed
#: by name; past them, the release is held under every name's pairing lock.
RENAMES_FOLLOWED = 2


class PropagateContext(Protocol):
    """What propagation needs from the engine."""

    store: Store
    mappings: Mappings
    adapters: Mapping[str, Adapter]
    resolvers: Mapping[str, StoreResolver]
    hooks: Hooks
    locks: RecordLocks
    brake: SafetyBrake
    creates: Creates


class Propagation:
    """Propagation for one engine (see the module docstring)."""

    def __init__(self, engine: PropagateContext) -> None:
        self.engine = engine
        self.store = engine.store
        self.locks = engine.locks

    def propagate(self, entity: str, key: str, report: SyncReport, held: HeldRecord | None = None) -> None:
        """Write what changed to each system that lacks it; create where missing. ``held``:
        the record as read under its lock, when the caller holds it."""
        systems = [(system, mapping) for system in SYSTEMS
                   if entity in (mapping := self.engine.mappings.for_system(system)).entities]
        with self._locked(entity, key, held) as held:
            for system, mapping in systems:
                if held.env is None:
                    return
                self._propagate_to(system, mapping, entity, key, held, report)
            # Comments cross once the record's fields are written (bridge.engine.comments).
            sync_comments(self.engine, held, report)

    @contextmanager
    def _locked(self, entity: str, key: str, held: HeldRecord | None) -> Iterator[HeldRecord]:
        """The record read under its lock. A release's create looks its counterpart up by
        name, so a release is also held under its name's pairing lock, taken first (always
        in that order: no lock-order deadlock). The name is read before the locks; should
        the record read under them bear another (renamed meanwhile), the locks are let go
        and taken again for that name (after a few renames: for every name)."""
        if held is not None and (held.entity, held.key) != (entity, key):
            held = None
        if entity != "release":
            with self.locks.hold(entity, key):
                yield held or HeldRecord(self.store, entity, key)
            return
        name = _name(held.env) if held is not None else _name(self.store.load_record(entity, key))
        for attempt in range(RENAMES_FOLLOWED + 1):
            last = attempt == RENAMES_FOLLOWED
            with self.locks.pairing(None if last else name), self.locks.hold(entity, key):
                held = held or HeldRecord(self.store, entity, key)
                if last or _name(held.env) == name:
                    yield held
                    return
                name, held = _name(held.env), None

    def _propagate_to(self, system: str, mapping: SystemMapping, entity: str, key: str, held: HeldRecord,
                      report: SyncReport) -> None:
        env, refs = held.env, held.refs
        assert env is not None
        try:
            if system in refs:
                self._write_pending(system, mapping, entity, key, env, refs[system], report)
            elif system not in env.gone:  # deleted there on purpose: never re-created
                made = self.engine.creates.create(system, mapping, entity, key, env, report)
                if made is None:
                    held.forget()  # it found the object and merged it, or another made it: read again
                else:
                    held.saved(env, made)  # what was just saved: no need to read it back
        except StaleRecord:
            self.locks.follow_ups.add(entity, key)
            held.forget()
        except UnmappableValue as exc:
            report.error(entity, system, f"{entity} {key} -> {system}: {exc}")
            self.store.record_error(system, entity, f"key:{key}", code=exc.code, message=str(exc), key=key)
            self.engine.hooks.sync_failed(system, entity, key, exc, True)

    def _write_pending(self, system: str, mapping: SystemMapping, entity: str, key: str, env: Envelope,
                       ref: RefRow, report: SyncReport) -> None:
        names = env.pending.get(system)
        if not names:
            return
        resolver = self.engine.resolvers[system]
        out = mapping.to_system(entity, env.fields, env.raw.get(system, {}), resolver, fields=names)
        held = self.engine.brake.screen(mapping, entity, key, env, ref, out, resolver)
        adapter = self.engine.adapters[system]
        users.screen(adapter, entity, out)
        if out.payload:
            adapter.write(entity, ref.ext_id, out.payload)
            env.raw.setdefault(system, {}).update(out.payload)
            report.add(entity, system, "updated")
        env.pending[system] = sorted({p.field for p in out.pending})  # held writes leave the pending list
        with self.store.transaction() as tx:
            env.revision = tx.put_record(entity, key, env.dump(), expected_revision=env.revision)
            self.engine.brake.settle(tx, entity, key, system, names, held)
            users.record(tx, adapter, mapping, entity, key, out, names)
        if held:
            report.add(entity, system, "held", len(held))

    def pending_keys(self, touched: dict[str, set[str]]) -> dict[str, set[str]]:
        """Touched keys plus any record left with pending writes (a crash, a failed write)."""
        keys = {entity: set(found) for entity, found in touched.items()}
        for entity, key, _ in self.store.unfinished_records():
            if entity in keys:
                keys[entity].add(key)
        for entity, key in self.locks.follow_ups.pop_all():
            keys[entity].add(key)
        return keys


def _name(record: Envelope | RecordRow | None) -> object:
    """A release's name, as its pairing lock knows it."""
    if record is None:
        return None
    fields = record.fields if isinstance(record, Envelope) else record.data.get("fields", {})
    return fields.get("name")
