"""Settling a conflict by hand (``relbridge conflicts resolve ID --take …``).

A conflict was already decided by ``[sync] conflict_policy`` (or, on adoption, left as it
was on both sides); a person may overrule that. The value chosen — one side's, or one
typed in — becomes the canonical value and is written to *both* systems through the
engine's normal write path: under the record lock, past the safety brake, remembered as
written so its echo is dropped. A release state goes through the authorization gate like
any other move.

The canonical record, its history (the value's change, and who settled which conflict with
what) and the conflict's settled mark are saved in one transaction, with the field left
pending for both systems; the writes follow. A crash after that transaction loses
nothing: the next pass (``sync --once``, the daemon's sweeper) finds the pending field and
writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from bridge.engine.envelope import Envelope, SyncReport
from bridge.errors import BadInput, RelbridgeError
from bridge.model import SYSTEMS, model_for
from bridge.release.bookkeeping import STALE_RETRIES
from bridge.store.rows import ConflictRow, StaleRecord

if TYPE_CHECKING:
    from bridge.engine.pipeline import Engine

PERSON = "person"  # history source of a value a person settled
SETTLED = "_settled."  # history field prefix of a settlement's own row: who, which conflict


@dataclass(frozen=True)
class Settlement:
    conflict: ConflictRow
    took: str  # a system's name, or "value"
    value: Any
    report: SyncReport


def open_conflict(engine: Engine, conflict_id: int) -> ConflictRow:
    """The conflict, if a person can still settle it; else ``BadInput`` (exit 2)."""
    row = engine.store.conflict(conflict_id)
    if row is None:
        raise BadInput(f"no conflict {conflict_id} (see relbridge conflicts list)")
    if row.settled_at is not None:
        raise BadInput(f"conflict {conflict_id} was settled already by {row.settled_by} "
                       f"at {row.settled_at.isoformat()}")
    return row


def chosen_value(engine: Engine, row: ConflictRow, take: str) -> tuple[str, Any]:
    """(what was taken, the canonical value): a system's side, or ``take`` read as a value
    of the field's type (``""`` empties a field that may be empty)."""
    data = engine.store.get_record(row.entity, row.key)
    if data is None:
        raise BadInput(f"conflict {row.id}: {row.entity} {row.key} is no longer in the store")
    if take in SYSTEMS:
        return take, getattr(row, f"{take}_value")
    model = model_for(row.entity)
    fields = dict(data["fields"])
    candidates: list[Any] = [take, None] if take == "" else [take]
    for candidate in candidates:
        try:
            return "value", model.model_validate({**fields, "key": row.key, row.field: candidate}).sync_fields()[row.field]
        except ValidationError as exc:
            problem = "; ".join(e["msg"] for e in exc.errors())
    raise BadInput(f"conflict {row.id}: {take!r} is not a valid {row.entity}.{row.field} ({problem})")


def settle(engine: Engine, conflict_id: int, take: str, by: str) -> Settlement:
    """Make the chosen value canonical, mark the conflict settled, write both systems."""
    row = open_conflict(engine, conflict_id)
    took, value = chosen_value(engine, row, take)
    if (row.entity, row.field) == ("release", "state"):
        engine.transition(row.key, value, PERSON)  # through the gate, like any move
        if engine.store.get_record(row.entity, row.key)["fields"].get("state") != value:
            raise RelbridgeError(f"conflict {conflict_id}: the authorization gate refused release "
                                 f"{row.key} -> {value} (see relbridge release show {row.key})")
    accepted = _save(engine, row, took, value, by)
    if accepted:
        fields = engine.store.get_record(row.entity, row.key)["fields"]
        engine.release.after_change(row.entity, row.key, accepted, PERSON, fields, created=False)
    report = SyncReport()
    engine.propagate(row.entity, row.key, report)
    for entity, key in engine.locks.follow_ups.pop_all():  # e.g. a release a link moved
        engine.propagate(entity, key, report)
    return Settlement(row, took, value, report)


def _save(engine: Engine, row: ConflictRow, took: str, value: Any, by: str) -> dict[str, tuple[Any, Any]]:
    """One transaction: the value, history rows, the field pending for both systems and the
    conflict marked settled. Returns the field's change (empty when it held that value)."""
    with engine.locks.hold(row.entity, row.key):
        for attempt in range(STALE_RETRIES):
            loaded = engine.store.load_record(row.entity, row.key)
            if loaded is None:
                raise BadInput(f"conflict {row.id}: {row.entity} {row.key} is no longer in the store")
            env = Envelope.load(loaded.data, loaded.revision)
            old = env.fields.get(row.field)
            env.fields = engine.records.validated(row.entity, row.key, {row.field: value}, env.fields)
            accepted = {row.field: (old, value)} if old != value else {}
            now = engine.clock()
            env.times[row.field] = now.isoformat()
            for system in SYSTEMS:  # both: the side that kept the other value gets it now
                env.mark_pending(system, [row.field])
            note = {"conflict": row.id, "by": by, "took": took, "value": value}
            try:
                with engine.store.transaction() as tx:
                    env.revision = tx.put_record(row.entity, row.key, env.dump(), expected_revision=env.revision)
                    tx.add_history_rows(row.entity, row.key, accepted, PERSON, now)
                    tx.add_history(row.entity, row.key, SETTLED + row.field, None, note, PERSON, now)
                    engine.brake.supersede(tx, row.entity, row.key, accepted, PERSON)
                    if not tx.settle_conflict(row.id, by, value, now):
                        raise BadInput(f"conflict {row.id} was settled by someone else meanwhile")
                return accepted
            except StaleRecord:
                if attempt == STALE_RETRIES - 1:
                    raise
    return {}
