"""A state store full of canonical records with their history, written in bulk: the input of
the KPI benchmark, the console's browser tests and the README screenshots.

Each release walks planned -> in_progress -> authorized -> deploying -> deployed -> closed
(some stop early, some roll back), with a planned-end history, linked changes (opened
before the deployment, each with time logged against it while the release was under way), incidents some of them caused, a satisfaction score on most, gate
vetoes on a few, conflicts and a held write. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.model import json_value
from bridge.store import Store
from bridge.store import schema as t

PATH = ("planned", "in_progress", "authorized", "deploying", "deployed", "closed")
CHANGES_PER_RELEASE = 3


def record_data(values: dict[str, Any]) -> dict[str, Any]:
    return {"fields": {k: json_value(v) for k, v in values.items()}}


def _release(i: int, rng: random.Random, now: datetime, months: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    key = f"RLSE{i + 1:07d}"
    start = now - timedelta(days=rng.uniform(0, months * 30))
    steps = rng.choice((2, 3, 4, 5, 6, 6, 6, 6))
    rolled = steps >= 5 and rng.random() < 0.08
    at, history, state = start, [], None
    for new in PATH[:steps]:
        history.append({"entity": "release", "key": key, "field": "state", "old": state, "new": new,
                        "source": "servicenow", "at": at})
        state, at = new, at + timedelta(hours=rng.uniform(4, 96))
    if rolled:
        history.append({"entity": "release", "key": key, "field": "state", "old": state, "new": "rolled_back",
                        "source": "jira", "at": at})
        state = "rolled_back"
    planned_end = start + timedelta(days=rng.uniform(5, 20))
    history.append({"entity": "release", "key": key, "field": "planned_end", "old": None,
                    "new": json_value(planned_end), "source": "servicenow", "at": start})
    if rng.random() < 0.2:
        moved = planned_end + timedelta(days=rng.uniform(1, 7))
        history.append({"entity": "release", "key": key, "field": "planned_end", "old": json_value(planned_end),
                        "new": json_value(moved), "source": "jira", "at": start + timedelta(days=2)})
        planned_end = moved
    done = state in ("deployed", "closed")
    fields = {"name": f"{2024 + i // 4000}.{i % 4000 + 1} {rng.choice(('Payments', 'Checkout', 'Search', 'Mobile'))}",
              "state": state, "planned_start": start, "planned_end": planned_end,
              "actual_start": start if steps >= 4 else None, "actual_end": at if done else None,
              "change_requests": [f"CHG{i + 1:07d}{c}" for c in "ABC"[:CHANGES_PER_RELEASE]],
              "incidents": [], "revision_count": int(rolled), "baseline_planned_end": None,
              "satisfaction": rng.choice((None, 2, 3, 3.67, 4, 4.5, 5)) if done else None,
              "description": "", "owner": None}
    return fields, history


def seed_records(store: Store, n: int, *, seed: int = 11, months: int = 12,
                 now: datetime | None = None) -> dict[str, int]:
    """``n`` releases with full history, their changes and incidents, in a few bulk inserts."""
    rng = random.Random(seed)
    work_rng = random.Random(seed + 1)  # apart, so the rest of the data is as before
    now = now or datetime(2026, 6, 30, tzinfo=UTC)
    records, history, refs, vetoes, worklogs = [], [], [], [], []
    for i in range(n):
        fields, rows = _release(i, rng, now, months)
        key = f"RLSE{i + 1:07d}"
        deployed = next((r["at"] for r in rows if r["new"] == "deployed"), None)
        start = fields["planned_start"]
        for number, change in enumerate(fields["change_requests"]):
            opened = start - timedelta(hours=rng.uniform(12, 240))
            records.append(("change", change, record_data({
                "summary": f"Change {number + 1} of {key}", "state": "closed" if deployed else "scheduled",
                "approval": "approved", "type": "normal", "release": key, "opened_at": opened})))
            last = max(max(r["at"] for r in rows), opened + timedelta(hours=1))
            worklogs.append({"system": "jira", "entity": "change", "ext_id": change, "entry_id": "1", "key": change,
                             "started": opened + (last - opened) * work_rng.random(),
                             "seconds": work_rng.choice((1800, 3600, 5400, 7200, 14400)), "author": "bench",
                             "work_group": work_rng.choice(("ops", "dev", None))})
        if deployed and rng.random() < 0.3:
            opened = deployed + timedelta(hours=rng.uniform(1, 24 * 30))
            incident = f"INC{i + 1:07d}"
            fields["incidents"] = [incident]
            records.append(("incident", incident, record_data({
                "summary": f"Errors after {fields['name']}", "state": "resolved", "priority": rng.randint(1, 4),
                "caused_by_change": fields["change_requests"][0], "caused_by_release": key, "opened_at": opened,
                "resolved_at": opened + timedelta(hours=rng.uniform(0.5, 48))})))
        records.append(("release", key, record_data(fields)))
        history += rows
        refs.append({"entity": "release", "key": key, "system": "servicenow", "ext_id": f"{i:032x}",
                     "ext_key": key, "url": f"https://example.service-now.com/rm_release.do?sys_id={i:032x}"})
        if rng.random() < 0.02:
            vetoes.append({"release_key": key, "old": "in_progress", "new": "deploying",
                           "reason": "release is not authorized to enter deploying", "source": "jira",
                           "at": start + timedelta(days=1)})
    _insert(store, records, history, refs, vetoes, now)
    with store.begin() as conn:
        for part in range(0, len(worklogs), 5000):
            conn.execute(t.worklogs.insert(), worklogs[part:part + 5000])
    return {"releases": n, "records": len(records), "history": len(history), "vetoes": len(vetoes),
            "worklogs": len(worklogs)}


def _insert(store: Store, records: list[tuple[str, str, dict[str, Any]]], history: list[dict[str, Any]],
            refs: list[dict[str, Any]], vetoes: list[dict[str, Any]], now: datetime) -> None:
    with store.begin() as conn:
        conn.execute(t.records.insert(), [{"entity": e, "key": k, "data": d, "revision": 1, "updated_at": now}
                                          for e, k, d in records])
        for part in range(0, len(history), 5000):
            conn.execute(t.history.insert(), history[part:part + 5000])
        conn.execute(t.external_refs.insert(), [{**r, "version": "1", "updated_at": now} for r in refs])
        if vetoes:
            conn.execute(t.vetoes.insert(), vetoes)


def seed_console_extras(store: Store) -> None:
    """What the console's other pages show: conflicts, a held write, dead letters, and a
    release whose name is markup (it must be shown, never run)."""
    from bridge.config import SyncConfig
    from bridge.daemon.inbox import Inbox

    at = datetime(2026, 6, 20, 9, 30, tzinfo=UTC)
    store.put_record("release", "RLSE9999999", record_data({
        "name": "<script>alert('x')</script> & co", "state": "planned", "planned_end": at}))
    store.add_conflict("release", "RLSE0000001", "planned_end", "2026-06-01T00:00:00Z", "2026-06-03T00:00:00Z",
                       "last_writer_wins", "2026-06-03T00:00:00Z", at=at)
    store.add_conflict("change", "CHG0000002A", "summary", "Rotate keys", "Rotate <b>keys</b>",
                       "servicenow_wins", "Rotate keys", at=at + timedelta(hours=1))
    store.hold_write("release", "RLSE0000003", "jira", "state", kind="backward", old="deployed", new="planned",
                     reason="moves a deployed release back", ext_id="10003", ext_key="2024.3 Search", at=at)
    inbox = Inbox.from_config(store, SyncConfig())
    reasons = {("servicenow", "release", "a1b2c3"): "403 Forbidden: ACL denies write of rm_release.state",
               ("jira", "change", "OPS-17"): "400 Bad Request: field 'fixVersions' cannot be set"}
    for system, entity, ext_id in reasons:
        inbox.enqueue(system, entity, ext_id, source="poll")
    for event in inbox.claim("seed", limit=10):
        inbox.dead_letter(event, reasons[(event.system, event.entity, event.ext_id)])
