"""Release rules beside the sync pipeline: the authorization gate, lifecycle hooks, links
between releases, changes and incidents, states derived from linked changes, and rollback.

The engine holds one ``ReleaseRules`` and calls it at declared points (a release's state
moving in an ingest, a change committed, the end of a pass); the rules reach the records
only through ``RecordKeeping``, the engine's one way to validate, load and save them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from bridge import lifecycle
from bridge.engine.envelope import Envelope
from bridge.model import SYSTEMS, ExternalRef, Release, ReleaseState
from bridge.release import early_life
from bridge.release.plan import open_tasks
from bridge.release.readiness import readiness
from bridge.release.verify import Verifier
from bridge.store.rows import StaleRecord

if TYPE_CHECKING:
    from bridge.adapter import SystemRecord
    from bridge.config import Config
    from bridge.engine.locks import RecordLocks
    from bridge.mapping.loader import Mappings
    from bridge.plugins import Hooks
    from bridge.store import Store

log = logging.getLogger("bridge.engine")

DERIVED = "relbridge"  # history source for facts relbridge derived itself
STALE_RETRIES = 5
DERIVE_BATCH = 200  # releases whose derived states are judged on one read (a pass's end)
# Canonical fields that no system holds: maintained by the engine from links and history.
ENGINE_FIELDS = {
    "release": {"change_requests", "incidents", "revision_count", "baseline_planned_end"},
    "incident": {"caused_by_release"},
    "change": set(),
}


class RecordKeeping(Protocol):
    """What the release rules need from the engine: its store, clock and record locks, and
    its one way to validate, load and save a canonical record."""

    store: Store
    clock: Callable[[], datetime]
    locks: RecordLocks

    def validated(self, entity: str, key: str, fields: dict[str, Any],
                  before: Mapping[str, Any] | None) -> dict[str, Any]: ...

    def models(self, entity: str, keys: Iterable[str]) -> list[Any]: ...

    def save(self, entity: str, key: str, env: Envelope, record: SystemRecord | None,
             accepted: Mapping[str, tuple[Any, Any]], source: str, conflicts: list[Any],
             vetoes: list[tuple[lifecycle.Veto, str, str]]) -> None: ...


class ReleaseRules:
    """Gate, hooks, links and derived lifecycle (see the module docstring).

    During a full pass (``start_pass`` .. ``settle_pass``) gates, derived states and list
    links wait until every record is read: a release's changes may not be read yet.
    """

    def __init__(self, records: RecordKeeping, hooks: Hooks, config: Config, mappings: Mappings) -> None:
        self.records = records
        self.store = records.store
        self.locks = records.locks
        self.hooks = hooks
        self.config = config
        self.mappings = mappings
        self._deferred_gates: list[tuple[str, str, str]] | None = None
        self._deferred_derives: set[str] = set()
        self._deferred_links: dict[str, list[tuple[str, str, bool]]] = {}
        self._deferred_lock = threading.Lock()
        self._pass_gates: list[tuple[str, str, str]] = []
        # Set by the engine: a verification writes through it (notes, a rollback).
        self.verifier: Verifier | None = None

    # -- a full pass ---------------------------------------------------------------------------

    def start_pass(self) -> None:
        """From now on, defer gates, derived states and list links to the pass's end."""
        self._deferred_gates = []

    def close_reads(self) -> None:
        """Every record is read (or the reads failed): stop deferring, write the links (what
        was stored stays linked)."""
        self._pass_gates, self._deferred_gates = self._deferred_gates or [], None
        self._apply_deferred_links()

    def settle_pass(self) -> None:
        """Judge the deferred moves and derive the states the pass's changes imply."""
        gates, self._pass_gates = self._pass_gates, []
        for key, new, source in gates:
            self.transition(key, new, source)
        derives, self._deferred_derives = sorted(self._deferred_derives), set()
        for start in range(0, len(derives), DERIVE_BATCH):
            self._derive_release_states(derives[start:start + DERIVE_BATCH])

    # -- the gate --------------------------------------------------------------------------------

    def gate(self, key: str, old_fields: Mapping[str, Any], new_fields: dict[str, Any],
             source: str, result: Any) -> list[tuple[lifecycle.Veto, str, str]]:
        """Judge a release's state move made in ``source`` (``new_fields`` and the merge
        ``result`` are put back when it is refused); returns the vetoes to record."""
        old, new = old_fields["state"], new_fields["state"]
        if old in ("deployed", "closed") and lifecycle.ORDER.get(ReleaseState(new), 99) < lifecycle.ORDER[ReleaseState.DEPLOYING]:
            # A live release going back to a pre-deployment state (its Jira version was
            # unreleased) is a rollback, not a re-plan.
            new = new_fields["state"] = ReleaseState.ROLLED_BACK.value
        if self._deferred_gates is not None and lifecycle.needs_authorization(new):
            # During a full pass the release's changes may not be read yet (an approval
            # made just before the go-live): decide once everything is read.
            new_fields["state"] = old
            result.accepted.pop("state", None)
            with self._deferred_lock:
                self._deferred_gates.append((key, new, source))
            return []
        veto = self._check_transition(key, new_fields, old, new, source)
        if veto is None:
            return []
        if self._policy(veto) == "revert":
            new_fields["state"] = old
            result.accepted.pop("state", None)
            result.restore.add("state")
        return [(veto, old, new)]

    def _check_transition(self, key: str, fields: Mapping[str, Any], old: str, new: str,
                          source: str) -> lifecycle.Veto | None:
        release = Release.model_validate({"key": key, **fields})
        changes = self.records.models("change", release.change_requests)
        tasks = open_tasks(self.store, key) if lifecycle.needs_authorization(new) else []
        veto = self.hooks.check_transition(release, old, new, changes, source, tasks)
        if veto is not None:
            log.warning("release %s: %s -> %s vetoed (%s): %s", key, old, new, self._policy(veto), veto.reason)
        return veto

    def _repeated(self, key: str, old: str, new: str, source: str) -> bool:
        """The same move was vetoed last time already (a derived proposal re-made on every
        change edit is recorded once)."""
        last = self.store.vetoes(release_key=key)[-1:]
        return bool(last) and (last[0].old, last[0].new, last[0].source) == (old, new, source)

    def _policy(self, veto: lifecycle.Veto) -> str:
        return veto.policy or self.config.gate.policy

    # -- lifecycle and links -----------------------------------------------------------------

    def after_change(self, entity: str, key: str, accepted: Mapping[str, tuple[Any, Any]],
                      source: str, fields: Mapping[str, Any], *, created: bool) -> None:
        """Hooks and derived facts after a change was committed (``fields``: the record's
        fields as committed). Hook arguments are only built for hooks a plugin implements."""
        if entity == "release":
            self._release_hooks(key, accepted, source, created)
        elif entity == "change":
            if "release" in accepted:
                old, new = accepted["release"]
                self._relink("change_requests", key, old, new)
                if self.hooks.wants("change_linked"):
                    change = self.records.models("change", [key])[0]
                    release = next(iter(self.records.models("release", [new])), None) if new else None
                    self.hooks.change_linked(change, release, source)
            release_key = fields.get("release")
            moves = created or "release" in accepted or not lifecycle.DERIVING_CHANGE_FIELDS.isdisjoint(accepted)
            if release_key and moves and self.config.sync.derive_lifecycle:
                if self._deferred_gates is not None:
                    with self._deferred_lock:
                        self._deferred_derives.add(release_key)
                else:
                    self._derive_release_state(release_key)
        elif entity == "incident":
            self._link_incident(key, accepted, source, fields)

    def _release_hooks(self, key: str, accepted: Mapping[str, tuple[Any, Any]], source: str, created: bool) -> None:
        if created:
            if self.hooks.wants("release_created"):
                self.hooks.release_created(self.records.models("release", [key])[0], source)
            return
        release = self.records.models("release", [key])[0]
        self.hooks.release_updated(release, dict(accepted), source)
        if "state" in accepted:
            old, new = accepted["state"]
            self.hooks.release_state_changed(release, old, new, source)
            if new == "deployed":
                self.hooks.release_deployed(release, source)
                if self.hooks.notifying and self.verifier is not None:  # a dry run verifies nothing
                    self.verifier.deployed(release)
                for incident_key in release.incidents:  # linked before the go-live was seen
                    early_life.check_incident(self, incident_key, key)
            elif new == "rolled_back":
                self.hooks.release_rolled_back(release, source)
                self._mark_rolled_back_changes(release)
        if "planned_end" in accepted and release.baseline_planned_end is not None:
            old_end, new_end = accepted["planned_end"]
            if old_end is not None and lifecycle.is_rescheduled(release.baseline_planned_end, release.planned_end):
                self.hooks.release_rescheduled(release, old_end, new_end, source)

    def _relink(self, list_field: str, member: str, old_release: str | None, new_release: str | None) -> None:
        for release_key, add in ((old_release, False), (new_release, True)):
            if not release_key:
                continue
            if self._deferred_gates is not None:
                # A full pass links many changes to one release: write its list once.
                with self._deferred_lock:
                    self._deferred_links.setdefault(release_key, []).append((list_field, member, add))
                continue
            self._update_fields("release", release_key, DERIVED, lambda f, add=add: _toggle(f, list_field, member, add))

    def _apply_deferred_links(self) -> None:
        links, self._deferred_links = self._deferred_links, {}
        for release_key, toggles in sorted(links.items()):
            def apply(fields: dict[str, Any], toggles: list[tuple[str, str, bool]] = toggles) -> dict[str, Any]:
                for list_field, member, add in toggles:
                    fields = _toggle(fields, list_field, member, add)
                return fields

            self._update_fields("release", release_key, DERIVED, apply)

    def _link_incident(self, key: str, accepted: Mapping[str, tuple[Any, Any]], source: str,
                       fields: Mapping[str, Any]) -> None:
        """Keep the incident's release (derived through its change when no system says it)
        and the release's incident list in step."""
        change_key = fields.get("caused_by_change")
        release_key = fields.get("caused_by_release") or (
            self._fields("change", change_key).get("release") if change_key else None)
        if release_key and fields.get("caused_by_release") != release_key:
            self._update_fields("incident", key, DERIVED, lambda f: {**f, "caused_by_release": release_key})
        old_release = accepted.get("caused_by_release", (None, None))[0]
        self._relink("incidents", key, old_release if old_release != release_key else None, release_key)
        if release_key:
            early_life.check_incident(self, key, release_key)
        if "caused_by_change" in accepted and change_key and self.hooks.wants("incident_linked"):
            incident = self.records.models("incident", [key])[0]
            change_model = self.records.models("change", [change_key])
            release = self.records.models("release", [release_key]) if release_key else []
            self.hooks.incident_linked(incident, change_model[0] if change_model else None,
                                       release[0] if release else None, source)

    def _derive_release_state(self, release_key: str) -> None:
        env = self._envelope("release", release_key)
        if env is None:
            return
        release = Release.model_validate({"key": release_key, **env.fields})
        self._derive(release, self.records.models("change", release.change_requests), env.raw)

    def _derive_release_states(self, keys: list[str]) -> None:
        """``_derive_release_state`` of many releases (a pass's end): their records and
        their changes are read in a few queries instead of two per release. A move is made
        by ``transition``, which reads the release again under its lock."""
        found = self.store.get_records("release", keys)
        releases = [Release.model_validate({"key": key, **data["fields"]}) for key, data in sorted(found.items())]
        changes = {change.key: change for change in self.records.models(
            "change", {key for release in releases for key in release.change_requests})}
        for release in releases:
            linked = [changes[key] for key in sorted(set(release.change_requests)) if key in changes]
            self._derive(release, linked, found[release.key].get("raw", {}))

    def _derive(self, release: Release, changes: list[Any], raw: Mapping[str, Any]) -> None:
        """Move the release to the state its changes imply (and its Jira version's flag)."""
        jira_state = raw.get("jira", {}).get("state")
        released = None if jira_state is None else jira_state == "released"
        new = lifecycle.derive_state(release, changes, jira_released=released)
        if new is None or new == release.state:
            return
        self.transition(release.key, new.value, DERIVED)

    def transition(self, release_key: str, new: str, source: str) -> bool:
        """Move a release to ``new`` on relbridge's own account (derived lifecycle,
        rollback), through the gate. Returns whether the move was accepted."""
        with self.locks.hold("release", release_key):
            row = self.store.load_record("release", release_key)
            if row is None:
                return False
            env = Envelope.load(row.data, row.revision)
            old = env.fields["state"]
            if old == new:
                return False
            veto = self._check_transition(release_key, env.fields, old, new, source)
            vetoes = [(veto, old, new)] if veto is not None and not self._repeated(release_key, old, new, source) else []
            if veto is not None and self._policy(veto) == "revert":
                if source in SYSTEMS:
                    env.mark_pending(source, ["state"])  # put the system that moved back
                if vetoes or source in SYSTEMS:
                    self.records.save("release", release_key, env, None, {}, source, [], vetoes)
                    self.locks.follow_ups.add("release", release_key)
                return False
            env.fields = self.records.validated("release", release_key, {"state": new}, env.fields)
            env.times["state"] = self.records.clock().isoformat()
            for system in SYSTEMS:
                env.mark_pending(system, ["state"])
            self.records.save("release", release_key, env, None, {"state": (old, new)}, source, [], vetoes)
        self.locks.follow_ups.add("release", release_key)
        self.locks.after_unlock(lambda: self._release_hooks(release_key, {"state": (old, new)}, source, created=False))
        return True

    def _mark_rolled_back_changes(self, release: Release) -> None:
        code = self.config.rollback.mark_changes
        if not code:
            return
        for change in self.records.models("change", release.change_requests):
            if change.close_code is not None or change.state.value == "canceled":
                continue
            if self._update_fields("change", change.key, DERIVED, lambda f: {**f, "close_code": code},
                                   propagate=True):
                self.locks.follow_ups.add("change", change.key)

    def _update_fields(self, entity: str, key: str, source: str,
                       change: Callable[[dict[str, Any]], dict[str, Any]], *, propagate: bool = False,
                       derived: bool = False) -> bool:
        """Apply ``change`` to a record's fields and save it. ``derived``: the change sets a
        field the lifecycle derives (``revision_count``), so it is kept as given."""
        with self.locks.hold(entity, key):
            for attempt in range(STALE_RETRIES):
                row = self.store.load_record(entity, key)
                if row is None:
                    return False
                env = Envelope.load(row.data, row.revision)
                new_fields = change(dict(env.fields))
                diff = {f: (env.fields.get(f), v) for f, v in new_fields.items() if env.fields.get(f) != v}
                if not diff:
                    return False
                env.fields = new_fields if derived else self.records.validated(entity, key, new_fields, env.fields)
                if propagate:
                    for system in SYSTEMS:
                        env.mark_pending(system, diff)
                try:
                    self.records.save(entity, key, env, None, diff, source, [], [])
                    return True
                except StaleRecord:
                    if attempt == STALE_RETRIES - 1:
                        raise
        return False

    def _fields(self, entity: str, key: str | None) -> dict[str, Any]:
        data = self.store.get_record(entity, key) if key else None
        return dict(data["fields"]) if data else {}

    def _envelope(self, entity: str, key: str) -> Envelope | None:
        row = self.store.load_record(entity, key)
        return Envelope.load(row.data, row.revision) if row else None

    def release_view(self, key: str) -> dict[str, Any] | None:
        """Everything ``release show`` prints about one release."""
        data = self.store.get_record("release", key)
        if data is None:
            return None
        refs = self.store.refs("release", key)
        release = Release.model_validate({
            "key": key, **data["fields"],
            "refs": {s: ExternalRef(system=s, id=r.ext_id, key=r.ext_key, url=r.url, version=r.version,
                                    updated_at=r.updated_at) for s, r in refs.items()},
        })
        changes = self.records.models("change", release.change_requests)
        incidents = self.records.models("incident", release.incidents)
        gate = self.config.gate
        ready = readiness(changes, gate.require_change_fields, gate.require_cab, self.records.clock())
        return {
            "release": release,
            "changes": changes,
            "incidents": incidents,
            "owners": {f: DERIVED if f in ENGINE_FIELDS["release"] else self.mappings.owner("release", f)
                       for f in release.sync_fields()},
            "missing_for_authorization": lifecycle.missing_for_authorization(changes),
            "authorized": lifecycle.is_authorized(changes),
            "readiness": ready,
            "ready": not any(ready.values()),
            "verifications": self.store.verifications(key),
            "early_life_incidents": self.store.early_life_incidents(key),
            "pending": data.get("pending", {}),
        }


def _toggle(fields: dict[str, Any], list_field: str, member: str, add: bool) -> dict[str, Any]:
    members = [m for m in fields.get(list_field, []) if m != member]
    if add:
        members.append(member)
    return {**fields, list_field: sorted(members)}
