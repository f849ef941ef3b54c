"""Release plans: a deployment model made into phases and tasks in both systems.

``relbridge release plan REF --model NAME [--set K=V ...]`` computes the plan (names with
the variables filled in, ``when`` conditions applied, dates from the release's planned
start) and creates each phase and task in every system whose adapter offers plans
(``bridge.adapter.PlanSupport``), linked to the release there.

Idempotent and crash-safe: each item carries a *tag* derived from the release key, the
phase and the task name, the same in both systems. The plan's rows are stored before the
first create; a system's id is stored right after its create; an item without one is
looked up by tag before it is created. So a rerun creates nothing new, and a run cut short
between two creates (a crash, a failing API) resumes where it stopped without duplicates.

States sync both ways (``sync_plan_states``, once per ``sync --once`` pass and per daemon
sweep): the stored
state is the one both systems last agreed on; a system that differs from it moved since,
and the others are brought to its state (both moved differently: the later one wins). A
release may not go live while a task of a phase before "Deploy" is open (``open_tasks``,
asked by the gate; ``[deployment] block_go_live_on_open_tasks``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bridge.adapter import PlanItem, PlanObject, PlanSupport
from bridge.errors import BadInput, RelbridgeError, did_you_mean
from bridge.model import SYSTEMS, Release
from bridge.release.models import DEPLOY_PHASE, VARIABLE, DeploymentModel, ModelError
from bridge.store import Store

log = logging.getLogger("bridge.release.plan")

TAG_PREFIX = "relbridge-plan-"
#: Releases whose plan no longer moves: their items' states are not synced any more.
FINISHED = frozenset({"closed", "cancelled"})


@dataclass(frozen=True)
class PlannedItem:
    """A plan item and whether it must be done before the release goes live."""

    item: PlanItem
    blocks_go_live: bool


@dataclass
class PlanResult:
    release_key: str
    model: str
    items: list[PlannedItem]
    created: dict[str, list[str]] = field(default_factory=dict)  # system -> item names made
    existing: dict[str, int] = field(default_factory=dict)  # system -> items already there
    skipped: list[str] = field(default_factory=list)  # systems without plan support


def parse_sets(values: Iterable[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` options as a dict; ``BadInput`` naming the first bad one."""
    sets: dict[str, str] = {}
    for raw in values:
        key, sep, value = raw.partition("=")
        key = key.strip()
        if not sep or not VARIABLE.match(key) or not value.strip():
            raise BadInput(f"--set {raw!r}: write KEY=VALUE (e.g. --set region=eu-west)")
        if key in sets and sets[key] != value:
            raise BadInput(f"--set {key} is given twice ({sets[key]!r} and {value!r})")
        sets[key] = value.strip()
    return sets


def plan_tag(release_key: str, phase: str, task: str | None) -> str:
    """The correlation tag of one item: the same in every system and on every rerun. A
    digest, since keys and names may hold what a label or an id may not (spaces)."""
    text = "\x1f".join([release_key, phase.casefold(), (task or "").casefold()])
    return TAG_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:20]


def instantiate(model: DeploymentModel, release_key: str, start: datetime,
                sets: Mapping[str, str]) -> list[PlannedItem]:
    """The plan's items in order (each phase, then its tasks). Every variable a name or a
    ``when`` uses must be given, and every given one must be used: ``ModelError`` with the
    model file's line otherwise."""
    _check_sets(model, sets)
    items: list[PlannedItem] = []
    deploy_seen = False
    for phase in model.phases:
        if not _applies(phase.when, sets):
            continue
        phase_name = phase.name.format_map(sets)
        deploy_seen = deploy_seen or _is_deploy(phase.name)
        phase_start = start + timedelta(days=phase.offset_days)
        phase_end = phase_start + timedelta(days=phase.duration_days)
        items.append(PlannedItem(PlanItem(plan_tag(release_key, phase_name, None), "phase", phase_name,
                                          phase_name, phase_start, phase_end, len(items)), False))
        for task in phase.tasks:
            if not _applies(task.when, sets):
                continue
            name = task.name.format_map(sets)
            item = PlanItem(plan_tag(release_key, phase_name, name), "task", name, phase_name, phase_start,
                            phase_start + timedelta(hours=task.duration_hours), len(items))
            items.append(PlannedItem(item, blocks_go_live=not deploy_seen))
    _unique(model, items)
    return items


def _check_sets(model: DeploymentModel, sets: Mapping[str, str]) -> None:
    used = model.variables()
    for name, line in used.items():
        if name not in sets:
            raise ModelError(f"{model.source}:{line}: {{{name}}} needs a value: pass --set {name}=VALUE")
    for name in sets:
        if name not in used:
            raise ModelError(f"--set {name}: model {model.name!r} uses no variable {name!r}"
                             f"{did_you_mean(name, used)} (it uses: {', '.join(used) or 'none'})")


def _applies(when: Mapping[str, str], sets: Mapping[str, str]) -> bool:
    return all(sets.get(key) == value for key, value in when.items())


def _is_deploy(template: str) -> bool:
    """The phase named "Deploy" (or "Deploy to {region}"): tasks before it block a go-live."""
    words = template.casefold().split()
    return bool(words) and words[0] == DEPLOY_PHASE


def _unique(model: DeploymentModel, items: list[PlannedItem]) -> None:
    seen: set[str] = set()
    for planned in items:
        if planned.item.tag in seen:
            raise ModelError(f"{model.source}: with these --set values {planned.item.kind} "
                             f"{planned.item.name!r} appears twice in phase {planned.item.phase!r}")
        seen.add(planned.item.tag)


class Planner:
    """Makes plans and keeps their states in step, through the adapters that offer plans."""

    def __init__(self, store: Store, adapters: Mapping[str, Any]) -> None:
        self.store = store
        self.adapters = {system: adapter for system, adapter in adapters.items()
                         if system in SYSTEMS and isinstance(adapter, PlanSupport)}

    def release(self, key: str) -> tuple[Release, dict[str, str]]:
        """The release and its id per system; ``BadInput`` without a planned start."""
        record = self.store.get_record("release", key)
        if record is None:
            raise BadInput(f"no release {key!r}")
        release = Release.model_validate({"key": key, **record["fields"]})
        if release.planned_start is None:
            raise BadInput(f"{key}: the release has no planned start, which a plan's dates count from")
        refs = {system: ref.ext_id for system, ref in self.store.refs("release", key).items()}
        return release, refs

    def plan(self, key: str, model: DeploymentModel, sets: Mapping[str, str], *,
             dry_run: bool = False) -> PlanResult:
        release, refs = self.release(key)
        assert release.planned_start is not None
        items = instantiate(model, key, release.planned_start, sets)
        result = PlanResult(key, model.name, items,
                            skipped=[s for s in SYSTEMS if s not in self.adapters])
        missing = [s for s in self.adapters if s not in refs]
        if missing:
            raise RelbridgeError(f"{key} is not in {', '.join(missing)} yet: run relbridge sync --once first")
        rows = {row["tag"]: row for row in self.store.plan_items(key)}
        if not dry_run:
            for planned in items:  # stored before the first create: a crash leaves the plan known
                rows.setdefault(planned.item.tag, self._new_row(key, model.name, planned))
                self.store.put_plan_item(rows[planned.item.tag])
        for system, adapter in self.adapters.items():
            self._make(system, adapter, refs[system], items, rows, result, dry_run)
        return result

    def _make(self, system: str, adapter: Any, release_id: str, items: list[PlannedItem],
              rows: dict[str, dict[str, Any]], result: PlanResult, dry_run: bool) -> None:
        """Create in ``system`` what it lacks: stored ids first, then a look-up by tag."""
        lacking = [p.item for p in items if system not in rows.get(p.item.tag, {}).get("ids", {})]
        found = adapter.plan_objects([item.tag for item in lacking]) if lacking else {}
        result.existing[system] = len(items) - len(lacking) + len(found)
        made = result.created.setdefault(system, [])
        phase_ids: dict[str, str] = {}
        for planned in items:
            item = planned.item
            row = rows.get(item.tag)
            known = row["ids"].get(system) if row else None
            if known is None and item.tag in found:
                known = self._remember(row, system, found[item.tag], dry_run)
            if known is None:
                made.append(f"{item.kind} {item.name}")
                if dry_run:
                    continue
                created = adapter.create_plan_item(release_id, item, phase_ids.get(item.phase))
                known = self._remember(row, system, created, dry_run)
            if item.kind == "phase":
                phase_ids[item.phase] = known

    def _remember(self, row: dict[str, Any] | None, system: str, found: PlanObject, dry_run: bool) -> str:
        if row is not None and not dry_run:
            row["ids"] = {**row["ids"], system: found.id}
            row["keys"] = {**row["keys"], system: found.key}
            self.store.put_plan_item(row)
        return found.id

    # -- states, both ways ---------------------------------------------------------------------

    def sync_states(self) -> list[str]:
        """Bring every system to the state a plan item was moved to in another; the moves
        made, as ``"RLSE0001001 Deploy / Smoke test: to_do -> done"``. Costs per unfinished
        planned release: each system's ``plan_objects`` (a query or two)."""
        moves: list[str] = []
        by_release: dict[str, list[dict[str, Any]]] = {}
        for row in self.store.plan_items():
            by_release.setdefault(row["release_key"], []).append(row)
        for key, rows in sorted(by_release.items()):
            record = self.store.get_record("release", key)
            if record is None or record["fields"].get("state") in FINISHED:
                continue
            seen = {system: adapter.plan_objects([r["tag"] for r in rows if system in r["ids"]])
                    for system, adapter in self.adapters.items()}
            for row in rows:
                move = self._settle_state(row, {s: found[row["tag"]] for s, found in seen.items()
                                                if row["tag"] in found})
                if move:
                    moves.append(f"{key} {row['phase']} / {row['name']}: {move}")
        return moves

    def _settle_state(self, row: dict[str, Any], objects: dict[str, PlanObject]) -> str | None:
        """Copy one item's new state to the systems that lack it; store it once all have it."""
        moved = {system: obj for system, obj in objects.items() if obj.state != row["state"]}
        if not moved:
            return None
        winner = max(moved.values(), key=lambda obj: obj.updated_at).state
        for system, obj in sorted(objects.items()):
            if obj.state != winner:
                self.adapters[system].set_plan_state(row["kind"], obj.id, winner)
        old, row["state"] = row["state"], winner
        self.store.put_plan_item(row)
        return f"{old} -> {winner}"

    @staticmethod
    def _new_row(key: str, model: str, planned: PlannedItem) -> dict[str, Any]:
        item = planned.item
        return {"release_key": key, "tag": item.tag, "model": model, "kind": item.kind,
                "phase": item.phase, "name": item.name, "position": item.position,
                "planned_start": item.start, "planned_end": item.end,
                "blocks_go_live": planned.blocks_go_live, "ids": {}, "keys": {}, "state": "to_do"}


def open_tasks(store: Store, release_key: str) -> list[str]:
    """The release's open tasks of phases before "Deploy": ``"Prepare / Rehearse backout"``."""
    return [f"{row['phase']} / {row['name']}" for row in store.plan_items(release_key)
            if row["kind"] == "task" and row["blocks_go_live"] and row["state"] != "done"]


def sync_plan_states(store: Store, adapters: Mapping[str, Any]) -> list[str]:
    """One pass of plan state sync (``Planner.sync_states``). A system that fails is logged
    and the pass goes on: the items keep their stored state and are compared again next
    pass (a move half copied is finished then)."""
    try:
        moves = Planner(store, adapters).sync_states()
    except RelbridgeError as exc:
        log.warning("release plans: states not synced this pass: %s", exc)
        return []
    for move in moves:
        log.info("release plan: %s", move)
    return moves
