"""What ``relbridge status`` and ``relbridge release show`` report, as plain data first
(for ``--json``) and as text second."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from bridge.engine import ENTITY_ORDER
from bridge.engine.safety import held_document
from bridge.model import SYSTEMS

if TYPE_CHECKING:
    from bridge.engine import Engine
    from bridge.store import Store


def collect_status(store: Store) -> dict[str, Any]:
    watermarks = {
        f"{system}/{entity}": store.get_watermark(system, entity) for system in SYSTEMS for entity in ENTITY_ORDER
    }
    counts = store.counts()
    return {
        "watermarks": {k: v.isoformat() if v else None for k, v in watermarks.items()},
        **counts,
        "open_conflicts": store.open_conflict_count(),
        "recent_conflicts": [
            {"entity": c.entity, "key": c.key, "field": c.field, "servicenow": c.servicenow_value,
             "jira": c.jira_value, "resolution": c.resolution, "kept": c.resolved_value, "at": c.at.isoformat(),
             "id": c.id, "settled_by": c.settled_by}
            for c in store.conflicts()[-10:]
        ],
        "failing_records": [
            {"system": e.system, "entity": e.entity, "id": e.ext_id, "key": e.key, "code": e.code,
             "message": e.message, "count": e.count, "at": e.at.isoformat()}
            for e in store.errors()
        ],
        "held_writes": [held_document(row) for row in store.held_writes()],
        "unfinished_records": unfinished_documents(store),
        # people not written to a system that has no user with their e-mail (bridge.engine.users)
        "unmatched_users": [{"entity": u.entity, "key": u.key, "system": u.system, "field": u.field,
                             "email": u.email, "at": u.at.isoformat()} for u in store.unmatched_users()],
    }


def unfinished_documents(store: Store) -> list[dict[str, Any]]:
    """Records whose writes were accepted but not made yet (pending fields per system, a
    create that may have reached a system): finished by the next pass or the sweeper, or
    stuck behind a dead letter."""
    found = []
    for entity, key, updated_at in store.unfinished_records():
        row = store.load_record(entity, key)
        if row is None:
            continue
        found.append({"entity": entity, "key": key, "since": updated_at.isoformat(),
                      "pending": {s: list(v) for s, v in (row.data.get("pending") or {}).items() if v},
                      "creating": sorted(row.data.get("creating") or {})})
    return found


def render_status(status: dict[str, Any]) -> str:
    lines = ["watermarks:"]
    lines += [f"  {name:<22} {value or 'never synced'}" for name, value in status["watermarks"].items()]
    records = status["records"]
    lines.append("records:  " + ", ".join(f"{e} {records.get(e, 0)}" for e in ENTITY_ORDER))
    to_settle = f" ({status['open_conflicts']} to review: relbridge conflicts list)" if status["open_conflicts"] else ""
    lines.append(f"conflicts: {status['conflicts']}{to_settle}   failing records: {status['errors']}   "
                 f"pending events: {status['pending_events']}   dead letters: {status['dead_letters']}")
    for error in status["failing_records"]:
        lines.append(f"  ! {error['system']} {error['entity']} {error['key'] or error['id']}: {error['message']}")
    unfinished = status["unfinished_records"]
    lines.append(f"unfinished writes: {len(unfinished)}")
    lines += _first_ten(unfinished, _unfinished_line)
    unmatched = status["unmatched_users"]
    lines.append(f"unmatched users: {len(unmatched)}"
                 + ("   (left as they were: no user there has the e-mail)" if unmatched else ""))
    lines += _first_ten(unmatched, lambda doc: f"  ? {doc['entity']} {doc['key']} {doc['field']} in "
                                               f"{doc['system']}: {doc['email']}")
    held = status["held_writes"]
    lines.append(f"held destructive writes: {len(held)}"
                 + ("   (relbridge held list; apply with relbridge held release)" if held else ""))
    lines += _first_ten(held, _held_line)
    return "\n".join(lines)


def _first_ten(rows: list[dict[str, Any]], line: Callable[[dict[str, Any]], str]) -> list[str]:
    """A line for each of the first ten rows, then how many more there are."""
    more = [f"  … and {len(rows) - 10} more"] if len(rows) > 10 else []
    return [line(row) for row in rows[:10]] + more


def _unfinished_line(doc: dict[str, Any]) -> str:
    what = [f"{s}: {', '.join(v)}" for s, v in doc["pending"].items()]
    what += [f"create in {s}" for s in doc["creating"]]
    return f"  ~ {doc['entity']} {doc['key']} since {doc['since']}: {'; '.join(what)}"


def _held_line(row: dict[str, Any]) -> str:
    what = "delete" if row["field"] is None else f"{row['field']}: {row['old']} -> {row['new']}"
    return f"  ! #{row['id']} {row['entity']} {row['key']} in {row['system']} {row['ref'] or ''}: {what}"


def find_release(store: Store, ref: str, *, named: Iterable[tuple[str, Any]] | None = None) -> str | None:
    """A canonical key from a key, a ServiceNow number or a Jira version name. ``named``
    ((key, name) pairs, e.g. the console's built overview) spares reading every release
    to match a name."""
    if store.get_record("release", ref) is not None:
        return ref
    for system in SYSTEMS:
        key = store.find_key_by_ext_key(system, "release", ref)
        if key:
            return key
    pairs = named if named is not None else ((key, data["fields"].get("name")) for key, data in store.records("release"))
    return next((key for key, name in pairs if name == ref), None)


def release_document(engine: Engine, key: str) -> dict[str, Any]:
    view = engine.release_view(key)
    assert view is not None
    release = view["release"]
    store = engine.store
    return {
        "key": key,
        "fields": release.sync_fields(),
        "owners": view["owners"],
        "authorized": view["authorized"],
        "missing_for_authorization": view["missing_for_authorization"],
        "ready": view["ready"],
        "refs": {s: r.model_dump(mode="json") for s, r in release.refs.items()},
        "pending_writes": view["pending"],
        "changes": [
            {"key": c.key, "summary": c.summary, "state": c.state.value, "approval": c.approval.value,
             "close_code": c.close_code.value if c.close_code else None,
             "readiness": view["readiness"].get(c.key, []),
             "refs": {s: r.ext_key for s, r in store.refs("change", c.key).items()}}
            for c in view["changes"]
        ],
        "incidents": [
            {"key": i.key, "summary": i.summary, "state": i.state.value, "priority": i.priority,
             "caused_by_change": i.caused_by_change,
             "refs": {s: r.ext_key for s, r in store.refs("incident", i.key).items()}}
            for i in view["incidents"]
        ],
        **_release_process(view),
        "vetoes": [
            {"old": v.old, "new": v.new, "reason": v.reason, "source": v.source, "at": v.at.isoformat()}
            for v in store.vetoes(release_key=key)
        ],
        "history": [
            {"field": h.field, "old": h.old, "new": h.new, "source": h.source, "at": h.at.isoformat()}
            for h in store.history(entity="release", key=key)
        ],
    }


def _release_process(view: dict[str, Any]) -> dict[str, Any]:
    """Verification per deployment and early-life incidents, as ``release show`` gives them."""
    verifications = [
        {"deployment": v["deployment"], "deployed_at": _iso(v["deployed_at"]), "state": v["state"],
         "checks": v["checks"] or [], "action": v["action"], "noted_in": v["noted"] or [],
         "finished_at": _iso(v["finished_at"])}
        for v in view["verifications"]
    ]
    return {
        "verifications": verifications,
        "needs_revision": bool(verifications) and verifications[-1]["state"] == "failed",
        "early_life_incidents": [
            {"incident": e["incident_key"], "opened_at": _iso(e["opened_at"]), "deployed_at": _iso(e["deployed_at"])}
            for e in view["early_life_incidents"]
        ],
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _render_process(doc: dict[str, Any]) -> list[str]:
    lines = []
    for v in doc["verifications"]:
        action = f", {v['action']}" if v["action"] else ""
        lines.append(f"verification of deployment {v['deployment']} ({v['deployed_at']}): {v['state']}{action}")
        lines += [f"  {c['name']:<20} {'ok' if c['ok'] else 'FAILED'}  {c['detail']}" for c in v["checks"]]
    if doc["early_life_incidents"]:
        lines.append("early-life incidents:")
        lines += [f"  {e['incident']}  opened {e['opened_at']} (deployed {e['deployed_at']})"
                  for e in doc["early_life_incidents"]]
    return lines


def render_release(doc: dict[str, Any]) -> str:
    f = doc["fields"]
    lines = [f"{doc['key']}  {f['name']}  [{f['state']}]"]
    for name, value in f.items():
        if name in ("name", "change_requests", "incidents"):
            continue
        lines.append(f"  {name:<22} {value if value not in (None, '') else '-'}   (owner: {doc['owners'].get(name, 'relbridge')})")
    for system, ref in doc["refs"].items():
        lines.append(f"  in {system:<19} {ref.get('key') or ref['id']}  {ref.get('url') or ''}")
    lines.append("  authorized: " + ("yes" if doc["authorized"] else "no — " + "; ".join(doc["missing_for_authorization"])))
    lines.append("  ready: " + ("yes" if doc["ready"] else "no (see changes)"))
    lines.append(f"changes ({len(doc['changes'])}):")
    for c in doc["changes"]:
        where = ", ".join(f"{s} {k}" for s, k in c["refs"].items())
        lines.append(f"  {c['key']:<14} {c['state']:<10} {c['approval']:<14} {c['summary']}  ({where})")
        if c["readiness"]:
            lines.append(f"  {'':<14} not ready: {', '.join(c['readiness'])}")
    lines.append(f"incidents ({len(doc['incidents'])}):")
    for i in doc["incidents"]:
        lines.append(f"  {i['key']:<14} P{i['priority']} {i['state']:<12} {i['summary']}  (caused by {i['caused_by_change']})")
    lines += _render_process(doc)
    if doc["vetoes"]:
        lines.append("vetoes:")
        for v in doc["vetoes"]:
            lines.append(f"  {v['at']}  {v['old']} -> {v['new']} from {v['source']}: {v['reason']}")
    lines.append("history:")
    for h in doc["history"][-20:]:
        lines.append(f"  {h['at']}  {h['field']}: {h['old']!r} -> {h['new']!r}  ({h['source']})")
    return "\n".join(lines)
