"""``relbridge kpi`` reads the store as lean rows (bridge/reports/reading.py: named tuples of
the fields the KPIs use, times the database writes as text): over generated releases and
the cases they lack, every figure equals the one computed from the records validated as
models and the history and time logged read the ordinary way."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import select

from bridge.adapter import WorklogEntry
from bridge.model import ChangeRequest, Incident, Release
from bridge.reports.cost import Rates, TimeEntry
from bridge.reports.kpi import HistoryEntry, VetoEntry, compute_kpis, kpis_from_store
from bridge.store import Store
from bridge.store import schema as t

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _records import record_data, seed_records  # noqa: E402

NOW = datetime(2026, 7, 1, tzinfo=UTC)
RATES = Rates(80.0, {"ops": 120.0})


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def add_edge_cases(store: Store) -> None:
    """What the generated data lacks: unset fields at the models' defaults, a committed
    baseline, revisions, a change owned through the release's list only, incidents linked
    only through a change or canceled, moves at the same instant, time on the release."""
    store.put_record("release", "RLSE7000001", record_data({"name": "Only a name"}))
    store.put_record("release", "RLSE7000002", record_data({
        "name": "Rebaselined", "state": "closed", "planned_start": at(1), "planned_end": at(9),
        "baseline_planned_end": at(5), "actual_end": at(10), "revision_count": 2, "satisfaction": 1.5,
        "change_requests": ["CHG7000002A"]}))
    store.put_record("release", "RLSE7000003", record_data({"name": "Rebaselined", "state": "deploying",
                                                            "planned_end": at(20)}))
    store.put_record("change", "CHG7000002A", record_data({"summary": "Listed on its release", "opened_at": at(2)}))
    store.put_record("incident", "INC7000001", record_data({
        "summary": "Through its change", "caused_by_change": "CHG7000002A", "opened_at": at(11),
        "resolved_at": at(12)}))
    store.put_record("incident", "INC7000002", record_data({
        "summary": "Canceled", "state": "canceled", "priority": 1, "caused_by_release": "RLSE7000002"}))
    store.put_record("incident", "INC7000003", record_data({
        "summary": "Open", "state": "in_progress", "priority": 2, "caused_by_release": "RLSE7000003",
        "opened_at": at(21)}))
    for old, new, when in ((None, "planned", at(1)), ("planned", "deployed", at(4)), ("deployed", "planned", at(4)),
                           ("planned", "deployed", at(6)), ("deployed", "closed", at(10))):
        store.add_history("release", "RLSE7000002", "state", old, new, "jira", at=when)
    plus_two = timezone(timedelta(hours=2))
    store.add_history("release", "RLSE7000002", "planned_end", "2026-03-05T00:00:00Z", "2026-03-09T02:00:00+02:00",
                      "servicenow", at=datetime(2026, 3, 3, 12, tzinfo=plus_two))
    store.add_history("release", "RLSE7000003", "state", "authorized", "deploying", "jira", at=at(19))
    store.put_worklogs("jira", "release", "10002", "RLSE7000002", [
        WorklogEntry("1", at(3), 3600, "a", "ops"), WorklogEntry("2", at(8), 1800, "b", None)])
    store.add_veto("RLSE7000003", "authorized", "deploying", "not authorized", "jira", at=at(18))


def model_kpis(store: Store, **period: Any) -> dict[str, Any]:
    """The KPIs the ordinary way: records validated as models, full rows with their types."""

    def models(entity: str, model: Any) -> list[Any]:
        return TypeAdapter(list[model]).validate_python([{"key": key, **data["fields"]}
                                                         for key, data in store.records(entity)])

    history = [HistoryEntry(h.entity, h.key, h.field, h.old, h.new, h.source, h.at) for h in store.history("release")]
    vetoes = [VetoEntry(v.release_key, v.old or "", v.new, v.reason, v.at) for v in store.vetoes()]
    w = t.worklogs
    with store.begin(write=False) as conn:
        logged = [TimeEntry(*row) for row in conn.execute(select(w.c.entity, w.c.key, w.c.started, w.c.seconds,
                                                                 w.c.work_group))]
    return compute_kpis(models("release", Release), history, models("incident", Incident),
                        models("change", ChangeRequest), vetoes, now=NOW, time_entries=logged, rates=RATES, **period)


def test_the_lean_read_gives_exactly_the_kpis_of_the_models(store: Store) -> None:
    seed_records(store, 150, months=4)
    add_edge_cases(store)
    expected = model_kpis(store)
    assert expected["releases"] > 100 and expected["deployments"] and expected["direct_cost_total"]
    assert kpis_from_store(store, since=None, until=None, now=NOW, rates=RATES) == expected
    period = {"since": datetime(2026, 3, 1).date(), "until": datetime(2026, 5, 31).date()}
    assert kpis_from_store(store, now=NOW, rates=RATES, **period) == model_kpis(store, **period)


def test_field_history_gives_values_as_text_and_times_as_aware_utc(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    store.add_history("release", "R2", "state", None, "planned", "jira", at=datetime(2026, 3, 1, 12, tzinfo=plus_two))
    store.add_history("release", "R1", "planned_end", "2026-03-05T00:00:00Z", 'say "when"', "jira", at=at(2))
    store.add_history("release", "R1", "revision_count", 1, 2, "jira", at=at(1, 7))
    store.add_history("release", "R1", "state", "planned", "authorized", "jira", at=at(1, 7))
    store.add_history("change", "C1", "state", "new", "assess", "jira", at=at(1))
    rows = store.field_history("release", ("state", "planned_end", "revision_count"))
    assert rows == [("R1", "revision_count", "1", "2", at(1, 7)), ("R1", "state", "planned", "authorized", at(1, 7)),
                    ("R1", "planned_end", "2026-03-05T00:00:00Z", 'say "when"', at(2)),
                    ("R2", "state", None, "planned", at(1, 10))]
    assert all(row[4].tzinfo is UTC for row in rows)


def test_worklog_rows_give_aware_utc_times(store: Store) -> None:
    store.put_worklogs("jira", "change", "10001", "C1", [
        WorklogEntry("1", datetime(2026, 3, 1, 9, 30, 15, 250, tzinfo=timezone(timedelta(hours=-5))), 600, "a")])
    [row] = store.worklog_rows()
    assert row.started == datetime(2026, 3, 1, 14, 30, 15, 250, tzinfo=UTC) and row.started.tzinfo is UTC
