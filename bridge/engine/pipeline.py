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

The ``Engine`` is used by ``sync --once`` (list changes, ingest, propagate) and by daemon
workers (re-read one object, ingest, propagate). It composes the steps, each its own
object: ``Ingest`` (``bridge.engine.ingest``), ``Propagation`` (``bridge.engine.propagate``),
``Creates``, ``Records`` (validate and save), the record locks, the safety brake, and the
release rules (``bridge.release.bookkeeping.ReleaseRules``: gate, hooks, links, derived
lifecycle), which reach the engine only through ``RecordKeeping``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any

from bridge.adapter import Adapter, SystemRecord
from bridge.config import Config
from bridge.daemon.inbox import queued_events
from bridge.engine import users
from bridge.engine.creates import Creates, raw_fields
from bridge.engine.envelope import Envelope, HeldRecord, StoreResolver, SyncReport
from bridge.engine.ingest import Ingest, name_field
from bridge.engine.locks import RecordLocks
from bridge.engine.propagate import Propagation
from bridge.engine.records import OTHER, Records
from bridge.engine.safety import SafetyBrake
from bridge.errors import NotThisEntity, RelbridgeError, TransientError
from bridge.mapping.loader import Mappings
from bridge.model import SYSTEMS
from bridge.plugins import Hooks
from bridge.release.bookkeeping import DERIVED, STALE_RETRIES, ReleaseRules
from bridge.release.plan import sync_plan_states
from bridge.release.verify import Verifier
from bridge.store import Store
from bridge.store.rows import RefRow
from bridge.timeutil import utc_now

log = logging.getLogger(__name__)

__all__ = ["Engine", "ENTITY_ORDER", "OTHER"]

ENTITY_ORDER = ("release", "change", "incident")
_NONE = object()  # no first item
LINK_BATCH = 100  # listed records whose links are looked up together


class Engine:
    """The sync engine of one process: its steps composed (see the module docstring)."""

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
        for system in SYSTEMS:
            if system not in adapters:
                raise RelbridgeError(f"no adapter for {system!r}: is its plugin disabled or broken? (relbridge plugins)")
        self.store = store
        self.mappings = mappings
        self.adapters = dict(adapters)
        self.hooks = hooks
        self.config = config
        self.clock = clock
        # Names this engine as a lease holder (create leases) among processes sharing the store.
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.resolvers = {system: StoreResolver(store, system) for system in SYSTEMS}
        self.brake = SafetyBrake(config.safety, store, clock)  # bounds destructive writes
        self.locks = RecordLocks()
        self.records = Records(store, self.brake, self.locks, clock)
        self.records.on_veto = on_veto
        self.release = ReleaseRules(self.records, hooks, config, mappings)
        self.verifier = self.release.verifier = Verifier(self)
        self.creates = Creates(self)
        self.ingestion = Ingest(self)
        self.propagation = Propagation(self)

    @property
    def on_veto(self) -> Callable[[str], None] | None:
        """Told the key of each release a veto was recorded for."""
        return self.records.on_veto

    @on_veto.setter
    def on_veto(self, listener: Callable[[str], None] | None) -> None:
        self.records.on_veto = listener

    # -- public entry points -------------------------------------------------------------

    def sync_once(self, progress: Callable[[str, int], None] | None = None) -> SyncReport:
        """One full pass: every change since the watermarks, in both systems, then propagate.

        Both systems are read before anything is written, so an edit made on both sides
        since the last pass is seen as a conflict rather than overwritten. ``progress`` is
        called with (phase, records done) as work advances.
        """
        report = SyncReport()
        # A watermark proves every older object was linked only when no event listed by a
        # daemon's poller still waits in the inbox (it may be an object never linked yet).
        marks_complete = queued_events(self.store) == 0
        self.creates.proven = set()
        self.brake.start_pass()
        self.release.start_pass()
        try:
            touched, marks = self._read_all(report, progress, marks_complete)
        finally:
            self.release.close_reads()  # even after a failed read: what was stored stays linked
        sync_plan_states(self.store, self.adapters)  # release plans' task states, before go-lives are judged
        self.release.settle_pass()
        users.rematch(self.store, self.mappings, self.adapters)  # assignees whose user now exists
        touched_keys = self.propagation.pending_keys(touched)
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

    def _read_all(self, report: SyncReport, progress: Callable[[str, int], None] | None,
                  marks_complete: bool) -> tuple[dict[str, set[str]], dict[tuple[str, str], datetime]]:
        """Ingest every change since the watermarks; returns the keys touched per entity and
        the watermarks to set once they are propagated."""
        touched: dict[str, set[str]] = {entity: set() for entity in ENTITY_ORDER}
        marks: dict[tuple[str, str], datetime] = {}
        for entity in ENTITY_ORDER:
            for system in SYSTEMS:
                started = self.clock()
                complete = marks_complete or self.store.get_watermark(system, entity) is None
                # Records are ingested as the listing yields them: a page is ingested while
                # the next one is read, so the listing's round trips overlap the work.
                keys = self._run_parallel(
                    system, self._with_links(system, entity, self._list_changed(system, entity)),
                    lambda item, r=report: self.ingestion.ingest(item[0], r, links=item[1]),
                    progress, f"read {system} {entity}",
                )
                touched[entity].update(k for k in keys if k)
                marks[(system, entity)] = started
                if complete:
                    self.creates.proven.add((system, entity))
        return touched, marks

    def process(self, system: str, entity: str, ext_id: str, *, deleted: bool = False,
                report: SyncReport | None = None) -> str | None:
        """Daemon worker path: re-read one object, ingest it, propagate. Returns its key.

        For an object already linked, the record lock is held from the read to the last
        write: another worker's read of the same record cannot fall between this one's
        writes and then be taken for a newer edit (a stale read wins no merge). The record
        and its links are then read once, and handed from ingest to propagation.
        """
        report = report or SyncReport()
        # The resolver remembers links (a worker asked it already, naming the event in its
        # log); a link ended meanwhile elsewhere is caught by ``HeldRecord.ref`` in ingest.
        known = self.resolvers[system].to_key(entity, ext_id)
        pairing = self.locks.pairing(None) if entity == "release" else nullcontext()  # name read later
        with pairing, self.locks.hold(entity, known) if known else nullcontext():
            held = HeldRecord(self.store, entity, known) if known else None
            key = self._settle(system, entity, ext_id, deleted, report, held)
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

    def ingest(self, record: SystemRecord, report: SyncReport) -> str | None:
        """Map one system record into its canonical record (``Ingest.ingest``)."""
        return self.ingestion.ingest(record, report)

    def propagate(self, entity: str, key: str, report: SyncReport) -> None:
        """Write what changed to each system that lacks it; create where missing."""
        self.propagation.propagate(entity, key, report)

    def transition(self, release_key: str, new: str, source: str) -> bool:
        """Move a release to ``new`` on relbridge's own account (``ReleaseRules.transition``)."""
        return self.release.transition(release_key, new, source)

    def finish_release_work(self, timeout: float | None = None) -> None:
        """Wait for the deployment verifications this engine started (before a command exits)."""
        self.verifier.drain(timeout)

    def release_view(self, key: str) -> dict[str, Any] | None:
        """Everything ``release show`` prints about one release."""
        return self.release.release_view(key)

    def name_field(self, system: str) -> str:
        return name_field(self.mappings, system)

    def link_found(self, found: SystemRecord, key: str, report: SyncReport) -> None:
        """An object exists already (our create cut short, a lost store, a pair made by
        hand): link it, finishing our own create or adopting it, so nothing is made twice."""
        self.ingestion.ingest_locked(found, key, report)
        self.locks.follow_ups.add(found.entity, key)

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

    def _settle(self, system: str, entity: str, ext_id: str, deleted: bool, report: SyncReport,
                held: HeldRecord | None) -> str | None:
        record = self._reread(system, entity, ext_id, deleted, report)
        if record is None:
            return None
        key = self.ingestion.ingest(record, report, held)
        if key is None:
            return None
        if held is None or held.key != key:
            # Not linked when the event began: nothing was held from the read on, so
            # ingest and propagation each read the record for themselves.
            self._read_other_side(system, entity, HeldRecord(self.store, entity, key), None, report)
            self.propagate(entity, key, report)
        else:
            self._read_other_side(system, entity, held, held, report)
            self.propagation.propagate(entity, key, report, held)
        return key

    def _reread(self, system: str, entity: str, ext_id: str, deleted: bool,
                report: SyncReport) -> SystemRecord | None:
        """The object as its system has it now. A notice, a deletion notice too, is only a
        hint: only the system's own "not found" (read gives None) makes it a deletion."""
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
        elif deleted:
            log.info("%s %s %s was reported deleted but still exists: synced as an update",
                     system, entity, ext_id)
        return record

    def _read_other_side(self, system: str, entity: str, loaded: HeldRecord, held: HeldRecord | None,
                         report: SyncReport) -> None:
        """Read the other side too before writing to it: an edit made there since the last
        sync becomes a conflict instead of being overwritten. ``held``: the record, if its
        lock has been held since it was read."""
        other = OTHER[system]
        ref = loaded.refs.get(other)
        if ref is None or loaded.env is None or not loaded.env.pending.get(other):
            return
        record = self.adapters[other].read(entity, ref.ext_id, self.mappings.for_system(other).fields_to_read(entity))
        if record is not None:
            self.ingestion.ingest(record, report, held)

    def changed_records(self, system: str, entity: str) -> list[tuple[SystemRecord, str | None]]:
        """Records changed since the watermark whose version differs from the one we hold,
        each with the version held (None: not linked). Pollers enqueue only these, so an idle
        poll costs the listing calls; the links are looked up in one query, not per record."""
        records = list(self._list_changed(system, entity))
        links = self.store.refs_for_ids(system, entity, [record.id for record in records]) if records else {}
        held = {ext_id: ref.version for ext_id, ref in links.items()}
        changed = [(record, held.get(record.id)) for record in records
                   if record.id not in held or held[record.id] != record.version]
        echoes = self._echoes(system, entity, [record for record, version in changed if version is not None],
                              links)
        return [(record, version) for record, version in changed if record.id not in echoes]

    def _echoes(self, system: str, entity: str, records: list[SystemRecord],
                links: Mapping[str, RefRow]) -> set[str]:
        """Ids of listed objects that hold exactly the fields we last wrote or read there, with
        nothing left to write: our own writes coming back. Their version moved (a Jira issue's
        ``updated``), their content did not, so reading them again would find nothing; one
        query for the page's records instead of a read per object. Any doubt (a field we
        never held, a pending write) leaves the object to the worker."""
        if not records:
            return set()
        names = self.mappings.for_system(system).fields_to_read(entity)
        data = self.store.get_records(entity, {links[record.id].key for record in records})
        echoes = set()
        for record in records:
            stored = data.get(links[record.id].key)
            if stored is None or stored.get("pending", {}).get(system) or stored.get("creating", {}).get(system):
                continue
            held_raw = stored.get("raw", {}).get(system)
            listed = raw_fields(record, names)
            if held_raw is not None and listed and all(
                    name in held_raw and _same_json(value, held_raw[name]) for name, value in listed.items()):
                echoes.add(record.id)
        return echoes

    # -- reading -------------------------------------------------------------------------

    def _list_changed(self, system: str, entity: str) -> Iterator[SystemRecord]:
        mark = self.store.get_watermark(system, entity)
        since = mark - timedelta(seconds=self.config.sync.overlap_seconds) if mark else None
        mapping = self.mappings.for_system(system)
        if entity not in mapping.entities:
            return
        yield from self.adapters[system].list_changed(entity, since, mapping.fields_to_read(entity))

    def _with_links(self, system: str, entity: str, records: Iterable[SystemRecord],
                    batch: int = LINK_BATCH) -> Iterator[tuple[SystemRecord, Mapping[str, RefRow]]]:
        """Each listed record with the links of its batch, looked up in one query per batch
        instead of one per record."""
        records = iter(records)
        while part := list(itertools.islice(records, batch)):
            links = self.store.refs_for_ids(system, entity, [record.id for record in part])
            yield from ((record, links) for record in part)

    def _run_parallel(self, label: str, items: Iterable[Any], work: Callable[[Any], Any],
                      progress: Callable[[str, int], None] | None, phase: str) -> list[Any]:
        """``work`` on every item with ``[sync] concurrency`` threads; results in item order.
        ``items`` may be a generator (a listing): each item is handed out as it comes."""
        items = iter(items)
        first = next(items, _NONE)
        if first is _NONE:
            return []
        if progress:
            progress(phase, 0)
        results: list[Any] = []

        def collect(future: Future[Any]) -> None:
            results.append(future.result())
            if progress:
                progress(phase, len(results))

        # At most two pages in flight: a listing is never held whole in memory, and the
        # next page is still read while the previous one is worked on. The pool starts a
        # thread per item handed out, up to ``concurrency``: no idle ones.
        in_flight: deque[Future[Any]] = deque()
        limit = 2 * max(self.config.sync.page_size, self.config.sync.concurrency)

        def pinned(item: Any) -> Any:  # the item's dozen store calls share one connection
            with self.store.pinned():
                return work(item)

        with ThreadPoolExecutor(max_workers=self.config.sync.concurrency,
                                thread_name_prefix=f"sync-{label}") as pool:
            try:
                for item in itertools.chain([first], items):
                    in_flight.append(pool.submit(pinned, item))
                    if len(in_flight) >= limit:
                        collect(in_flight.popleft())
                while in_flight:
                    collect(in_flight.popleft())
            except BaseException:
                for future in in_flight:  # as Executor.map does: nothing more starts
                    future.cancel()
                raise
        return results

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


def _same_json(value: Any, stored: Any) -> bool:
    """Whether a value read from a system equals the one the store keeps (as JSON)."""
    try:
        return json.loads(json.dumps(value)) == stored
    except (TypeError, ValueError):  # not plain JSON (a datetime, say): let the worker decide
        return False
