"""What ``relbridge conflicts list`` shows: each conflict with the record it is on (and
that record's numbers in each system), the field, both values, when, the policy applied
and the value it kept, and who settled it, if anyone. Plain data first (``--json``), text
second."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.model import SYSTEMS

if TYPE_CHECKING:
    from bridge.store import ConflictRow, Store


def conflict_documents(store: Store, *, include_settled: bool = False) -> list[dict[str, Any]]:
    """Conflicts oldest first; only those nobody settled unless ``include_settled``."""
    rows = [row for row in store.conflicts() if include_settled or row.settled_at is None]
    refs = {}
    for row in rows:
        if (row.entity, row.key) not in refs:
            refs[(row.entity, row.key)] = {system: ref.ext_key or ref.ext_id
                                           for system, ref in store.refs(row.entity, row.key).items()}
    return [conflict_document(row, refs[(row.entity, row.key)]) for row in rows]


def conflict_document(row: ConflictRow, refs: dict[str, str]) -> dict[str, Any]:
    """One conflict as ``conflicts list --json`` shows it (a stable contract)."""
    return {
        "id": row.id,
        "entity": row.entity,
        "key": row.key,
        "refs": refs,
        "field": row.field,
        **{system: getattr(row, f"{system}_value") for system in SYSTEMS},
        "at": row.at.isoformat(),
        "policy": row.resolution,
        "kept": row.resolved_value,
        "settled": None if row.settled_at is None else {
            "by": row.settled_by, "at": row.settled_at.isoformat(), "value": row.settled_value},
    }


def render_conflicts(documents: list[dict[str, Any]]) -> str:
    if not documents:
        return "no conflicts to settle"
    lines = []
    for doc in documents:
        where = ", ".join(f"{system} {ref}" for system, ref in doc["refs"].items())
        lines.append(f"#{doc['id']}  {doc['entity']} {doc['key']} ({where or 'not linked'})  "
                     f"{doc['field']}  at {doc['at']}")
        for system in SYSTEMS:
            lines.append(f"    {system + ':':<12} {_show(doc[system])}")
        lines.append(f"    policy {doc['policy']}, kept {_show(doc['kept'])}")
        settled = doc["settled"]
        if settled:
            lines.append(f"    settled by {settled['by']} at {settled['at']}: {_show(settled['value'])}")
    if any(doc["settled"] is None for doc in documents):
        lines.append("settle one with: relbridge conflicts resolve ID --take " + "|".join(SYSTEMS) + "|VALUE")
    return "\n".join(lines)


def _show(value: Any) -> str:
    return "(empty)" if value in (None, "") else repr(value)
