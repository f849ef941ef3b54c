"""The canonical records in the store: the engine's one way to validate a record, load
records as models, and save one (with its link, history, conflicts and vetoes) in one
transaction. Ingest, propagation and the release rules all write through it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from bridge import lifecycle
from bridge.adapter import SystemRecord
from bridge.engine.envelope import Envelope
from bridge.engine.locks import RecordLocks
from bridge.engine.safety import SafetyBrake
from bridge.model import SYSTEMS, Release, System, model_for
from bridge.release.bookkeeping import ENGINE_FIELDS
from bridge.store import Store, UnitOfWork
from bridge.store.rows import RefRow

#: The other system, for each: changes flow from one to the other.
OTHER = {a.value: b.value for a, b in itertools.permutations(System, 2)}
#: History keeps the lists of linked records, not the other facts the engine maintains.
_LINK_LISTS = ("change_requests", "incidents")


class Records:
    """Validate, load and save canonical records (see the module docstring).

    ``on_veto`` is told the key of each release a veto was recorded for (the daemon's
    metrics). Release names are cached here too: a release not linked yet pairs up by name.
    """

    def __init__(self, store: Store, brake: SafetyBrake, locks: RecordLocks,
                 clock: Callable[[], datetime]) -> None:
        self.store = store
        self.brake = brake
        self.locks = locks
        self.clock = clock
        self.on_veto: Callable[[str], None] | None = None
        self._names: dict[str, str] | None = None  # release name -> key, built on first use
        self._names_lock = threading.Lock()

    def validated(self, entity: str, key: str, fields: dict[str, Any],
                  before: Mapping[str, Any] | None) -> dict[str, Any]:
        """``fields`` over ``before`` as the model validates them (a release's lifecycle
        facts applied)."""
        model = model_for(entity)
        merged = {**{f: v for f, v in (before or {}).items()}, **fields}
        instance = model.model_validate({"key": key, **merged})
        if isinstance(instance, Release):
            previous = Release.model_validate({"key": key, **before}) if before else None
            instance = lifecycle.apply_facts(previous, instance)
        return instance.sync_fields()

    def models(self, entity: str, keys: Iterable[str]) -> list[Any]:
        """The records of ``keys`` that exist, as models, in key order."""
        model = model_for(entity)
        return [model.model_validate({"key": k, **data["fields"]})
                for k, data in sorted(self.store.get_records(entity, keys).items())]

    def release_named(self, name: str) -> str | None:
        """The key of the canonical release called ``name``, if any."""
        with self._names_lock:
            if self._names is None:
                self._names = {data["fields"].get("name"): key for key, data in self.store.records("release")}
            return self._names.get(name)

    def save(self, entity: str, key: str, env: Envelope, record: SystemRecord | None,
             accepted: Mapping[str, tuple[Any, Any]], source: str, conflicts: list[Any],
             vetoes: list[tuple[lifecycle.Veto, str, str]], *, known: RefRow | None = None,
             unchanged: bool = False) -> None:
        """Write the envelope (at the revision it was read), ``record``'s link, the accepted
        changes' history, conflicts and vetoes in one transaction.

        ``known``: ``record``'s link as read under the record's lock; what it shows is so
        already is not written again. ``unchanged``: the envelope is as read; with nothing
        else to write either (a read of the other side before a write, mostly), no
        transaction is made at all."""
        link = _link_writes(key, record, known)
        if unchanged and not (accepted or conflicts or vetoes) and (record is None or record.worklogs is None):
            if link and record is not None:  # a newer version of the same content (our own write, read back)
                with self.store.transaction() as tx:
                    _write_link(tx, entity, key, record, link)
            return
        now = self.clock()
        if entity == "release" and self._names is not None:
            with self._names_lock:
                self._names[env.fields.get("name")] = key
        with self.store.transaction() as tx:
            env.revision = tx.put_record(entity, key, env.dump(), expected_revision=env.revision)
            if record is not None:
                _write_link(tx, entity, key, record, link)
                if record.worklogs is not None:
                    tx.put_worklogs(record.system, entity, record.id, key, record.worklogs)
            tx.add_history_rows(entity, key, {
                name: change for name, change in accepted.items()
                if name not in ENGINE_FIELDS.get(entity, ()) or name in _LINK_LISTS
            }, source, now)
            self.brake.supersede(tx, entity, key, accepted, source)
            _add_conflicts(tx, entity, key, source, conflicts, now)
            for veto, old, new in vetoes:
                tx.add_veto(key, old, new, "; ".join([veto.reason, *veto.missing]), source, now)
        for _ in vetoes:
            if self.on_veto:
                self.on_veto(key)


def _link_writes(key: str, record: SystemRecord | None, known: RefRow | None) -> set[str]:
    """What saving ``record`` must write of its link: "new link" (a link not read under the
    lock: whether another record holds the object is checked), "link" (this record's link,
    changed) and "error" (clearing an error that may be on record). ``known``: the link
    read under the lock."""
    if record is None:
        return set()
    if known is None or (known.key, known.system, known.ext_id) != (key, record.system, record.id):
        return {"new link", "error"}
    no_error = known.has_error is not None and not known.has_error
    writes = set() if no_error else {"error"}
    if (known.ext_key, known.url, known.version, known.updated_at) != (record.key, record.url, record.version,
                                                                       record.updated_at):
        writes.add("link")
    return writes


def _write_link(tx: UnitOfWork, entity: str, key: str, record: SystemRecord, writes: set[str]) -> None:
    if writes & {"new link", "link"}:
        tx.put_ref(entity, key, record.system, record.id, ext_key=record.key, url=record.url,
                   version=record.version, updated_at=record.updated_at, linked="new link" not in writes)
    if "error" in writes:
        tx.clear_error(record.system, entity, record.id)


def _add_conflicts(tx: UnitOfWork, entity: str, key: str, source: str, conflicts: list[Any],
                   now: datetime) -> None:
    # The conflicts table has a column per system, in the order of SYSTEMS.
    for conflict in conflicts:
        other = next(system for system in SYSTEMS if system != source)
        values = {source: conflict.source_value, other: conflict.canonical_value}
        winner = conflict.source_value if conflict.source_won else conflict.canonical_value
        tx.add_conflict(entity, key, conflict.field, *(values[system] for system in SYSTEMS),
                        conflict.resolution, winner, now)
