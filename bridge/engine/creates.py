"""Creating a record's object in a system: at most once, across every process.

A create is journalled in the record's envelope before it is made, under a create lease
that gives one creator at a time among processes sharing the store. After a crash between
the system's create and our commit, or whenever the store cannot prove the object is new (a
fresh or lost store, another installation, a daemon's listed objects still in its inbox),
the object is looked up first -- by correlation tag, by the key it was born under, a
release also by name -- and linked (our cut-short create is then finished; a pair that
existed before is adopted) instead of created again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from bridge.adapter import Adapter, SystemRecord
from bridge.config import Config
from bridge.engine import users
from bridge.engine.envelope import Envelope, StoreResolver, SyncReport
from bridge.engine.locks import RecordLocks
from bridge.errors import TransientError
from bridge.mapping.convert import OutboundResult
from bridge.mapping.loader import SystemMapping
from bridge.store import Store, UnitOfWork
from bridge.store.rows import RefRow

if TYPE_CHECKING:
    from collections.abc import Iterable


class CreateContext(Protocol):
    """What creates need from the engine."""

    store: Store
    adapters: Mapping[str, Adapter]
    resolvers: Mapping[str, StoreResolver]
    config: Config
    clock: Callable[[], datetime]
    instance_id: str
    locks: RecordLocks

    def name_field(self, system: str) -> str: ...

    def link_found(self, found: SystemRecord, key: str, report: SyncReport) -> None: ...


class CreateInProgress(TransientError):
    """Another process is creating this object in that system right now: try again once
    it finished (``retry_after``: when its lease runs out at the latest)."""

    code = "create_in_progress"


class Creates:
    """Creates for one engine (see the module docstring). ``proven``: the streams
    (system, entity) a ``sync --once`` pass has read and linked in full, where a look-up
    can be saved."""

    def __init__(self, engine: CreateContext) -> None:
        self.engine = engine
        self.proven: set[tuple[str, str]] = set()

    def may_exist_unlinked(self, system: str, entity: str, env: Envelope) -> bool:
        """Whether an object for this record might exist in ``system`` without a link here:
        a create that may have reached the system before a crash, or anything the store
        cannot prove it has read: a fresh or lost store, a restored backup, another
        installation, a daemon whose listed objects still wait in its inbox. Only a
        ``sync --once`` pass that has read and linked the whole stream can save the call."""
        return bool(env.creating.get(system)) or (system, entity) not in self.proven

    def create(self, system: str, mapping: SystemMapping, entity: str, key: str, env: Envelope,
               report: SyncReport) -> RefRow | None:
        """Create the record's object in ``system``, at most once across every process.
        Returns the new link when this call made the object (``env`` is then the record as
        saved); None when it found the object, or left it to another creator.

        A create lease gives one creator at a time across processes sharing the store (the
        record lock covers one process): another instance's create still in flight cannot be
        found by correlation yet, so creating meanwhile would make a duplicate. The create
        is journalled before it is made: after a crash between the system's create and our
        commit, the next attempt looks the object up first. Lease and journal are written in
        one transaction, the result and the lease's release in another.
        """
        lease = f"create:{system}:{entity}:{key}"
        look_up = self.may_exist_unlinked(system, entity, env)
        out = mapping.to_system(entity, env.fields, None, self.engine.resolvers[system])
        users.screen(self.engine.adapters[system], entity, out)
        held = False
        try:
            journal = self._journal(out, mapping, entity, env)
            if not self._lease_and_journal(lease, system, entity, key, env, journal, look_up=look_up):
                return None
            held = True
            if look_up:
                found = self.look_up(system, entity, key, env)
                if found is not None:
                    self.engine.link_found(found, key, report)
                    return None
                env.creating[system] = journal
                env.revision = self.engine.store.put_record(entity, key, env.dump(), expected_revision=env.revision)
            ref = self._make(lease, system, mapping, entity, key, env, out)
            held = False
            report.add(entity, system, "created")
            return ref
        finally:
            if held:
                self.engine.store.release_lease(lease, self.engine.instance_id)

    def _lease_and_journal(self, lease: str, system: str, entity: str, key: str, env: Envelope,
                           journal: dict[str, Any], *, look_up: bool) -> bool:
        """Take the create lease and, when no look-up comes first, journal the create, in
        one transaction. False when another instance has linked the object meanwhile."""
        with self.engine.store.transaction() as tx:
            self._take_lease(tx, lease, system, entity, key)
            # Another instance may have just made it: then the journal write below finds
            # a newer revision (StaleRecord: re-read, then write its pending fields).
            if look_up and system in tx.refs(entity, key):
                tx.release_lease(lease, self.engine.instance_id)
                self.engine.locks.follow_ups.add(entity, key)
                return False
            if not look_up:
                env.creating[system] = journal
                env.revision = tx.put_record(entity, key, env.dump(), expected_revision=env.revision)
        return True

    def _journal(self, out: OutboundResult, mapping: SystemMapping, entity: str, env: Envelope) -> dict[str, Any]:
        """The create journal: when it started and what it sends (an empty text field left
        out holds empty). Finding the object again after a cut-short create, a field that
        differs from what was sent is a person's edit (``Ingest._finish_create``)."""
        return {"at": self.engine.clock().isoformat(),
                "sent": {**_left_empty(mapping, entity, env.fields), **out.payload}}

    def _make(self, lease: str, system: str, mapping: SystemMapping, entity: str, key: str, env: Envelope,
              out: OutboundResult) -> RefRow:
        """Create the object, then record it, its link and the lease's release together."""
        created = self.engine.adapters[system].create(entity, out.payload, key)
        env.creating.pop(system, None)
        env.seen.clear()
        env.raw[system] = {**_left_empty(mapping, entity, env.fields), **out.payload,
                           **raw_fields(created, mapping.fields_to_read(entity), only_present=True)}
        env.pending[system] = sorted({p.field for p in out.pending})
        with self.engine.store.transaction() as tx:
            env.revision = tx.put_record(entity, key, env.dump(), expected_revision=env.revision)
            tx.put_ref(entity, key, system, created.id, ext_key=created.key, url=created.url,
                       version=None, updated_at=created.updated_at)
            tx.release_lease(lease, self.engine.instance_id)
            users.record(tx, self.engine.adapters[system], mapping, entity, key, out)
        return RefRow(entity=entity, key=key, system=system, ext_id=created.id, ext_key=created.key,
                      url=created.url, version=None, updated_at=created.updated_at)

    def _take_lease(self, tx: UnitOfWork, lease: str, system: str, entity: str, key: str) -> None:
        """Hold ``lease`` (until the create is recorded, or for twice the system's timeout if
        this process dies first), or raise ``CreateInProgress``."""
        ttl = 2 * getattr(self.engine.config, system).timeout_seconds + 10
        if not tx.acquire_lease(lease, self.engine.instance_id, ttl):
            row = tx.lease(lease)
            wait = (row.expires_at - self.engine.store.clock()).total_seconds() if row else 1.0
            raise CreateInProgress(f"{entity} {key}: another instance is creating it in {system}",
                                   retry_after=max(1.0, wait))

    def look_up(self, system: str, entity: str, key: str, env: Envelope) -> SystemRecord | None:
        """The object in ``system`` that already stands for this record: tagged with its key
        (or born there under it); for a release, also the one of the same name (a release
        born in ``system`` carries no tag), unless another record has it linked."""
        adapter = self.engine.adapters[system]
        correlation = self._correlation(entity, key, env, system)
        found = adapter.find_by_correlation(entity, correlation)
        name = env.fields.get("name")
        if found is None and entity == "release" and name and name != correlation:
            found = adapter.find_by_field(entity, self.engine.name_field(system), str(name))
            if found is not None and self.engine.store.find_key(system, entity, found.id) not in (None, key):
                found = None
        return found

    def _correlation(self, entity: str, key: str, env: Envelope, system: str) -> str:
        # Jira versions carry no labels: they correlate with releases by name (DESIGN §3).
        if entity == "release" and system == "jira":
            return str(env.fields.get("name"))
        return key


def _left_empty(mapping: SystemMapping, entity: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Text fields a create leaves out because they are empty: the new object holds them
    empty, so a person's first edit of one (a description) is an edit, not a baseline."""
    return {spec.source: None for spec in mapping.fields(entity)
            if spec.direction != "inbound" and fields.get(spec.field) == ""}


def raw_fields(record: SystemRecord, names: Iterable[str], *, only_present: bool = False) -> dict[str, Any]:
    """The system fields of ``record`` relbridge reads (absent ones as None, or left out)."""
    if only_present:
        return {n: record.fields[n] for n in names if n in record.fields}
    return {n: record.fields.get(n) for n in names}
