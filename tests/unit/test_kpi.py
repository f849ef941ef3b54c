"""Release KPIs against a hand-computed scenario, and the report formats.

Period 2024-03-10 .. 2024-03-31, now = 2024-03-30 12:00 UTC. Selected releases:

- R1 "On time": closed, no actual_end (taken from history: deployed 03-10 16:00 <= 18:00
  baseline), never moved, never revised -> completed as planned.
- R2 "Late": closed, actual_end 03-16 12:00 after its baseline 03-15 (baseline only in the
  history: the record predates baselines) -> delayed.
- R3 "Rescheduled": planned_end moved 03-20 -> 03-25; deployed -> rescheduled.
- R4 "Rolled back": rolled back, revision_count 1, still open past its 03-22 baseline ->
  delayed (overdue) and revised.
- R5 "Vetoed": authorized -> in_progress in history (revised, revision_count 0 on the
  record); baseline 03-31 not yet reached; vetoed twice.
Not selected: R6 (planned end 04-01, has an incident and a veto), R7 (no planned end).

Hand-computed: completed 1/5 = 20.0 %, rescheduled or delayed {R2,R3,R4} = 60.0 %,
revised {R4,R5} = 40.0 %. Time in state (completed stays, hours):
planned R1 24, R2 48, R4 48, R5 24; in_progress R1 48, R3 240, R5 48;
authorized R1 156, R2 240, R3 120, R4 216, R5 24; deploying R1 4, R3 24, R4 6;
deployed R1 48, R2 24, R4 12. Lead times: planned->authorized R1 72, R2 48, R4 48, R5 72;
authorized->deployed R1 160, R2 240, R3 144, R4 222; deployed->closed R1 48, R2 24;
planned->deployed R1 232, R2 288, R4 270.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime

import pytest

from bridge.errors import BadInput
from bridge.model import ChangeRequest, Incident, Release, ReleaseState
from bridge.reports.cost import NO_TIME
from bridge.reports.kpi import (
    HistoryEntry,
    VetoEntry,
    compute_kpis,
    flatten,
    render,
    render_csv,
    render_html,
    render_json,
    render_table,
)

SINCE, UNTIL = date(2024, 3, 10), date(2024, 3, 31)
NOW = datetime(2024, 3, 30, 12, 0, tzinfo=UTC)


def t(day: int, hour: int = 0, month: int = 3) -> datetime:
    return datetime(2024, month, day, hour, tzinfo=UTC)


def state_history(key: str, steps: list[tuple[datetime, str]]) -> list[HistoryEntry]:
    rows, old = [], None
    for at, new in steps:
        rows.append(HistoryEntry("release", key, "state", old, new, "servicenow", at))
        old = new
    return rows


def planned_end_history(key: str, steps: list[tuple[datetime, datetime]]) -> list[HistoryEntry]:
    rows, old = [], None
    for at, value in steps:
        rows.append(HistoryEntry("release", key, "planned_end", old, value.isoformat(), "jira", at))
        old = value.isoformat()
    return rows


def rel(key: str, name: str, state: str, planned_end: datetime | None, **fields: object) -> Release:
    return Release(key=key, name=name, state=ReleaseState(state), planned_end=planned_end, **fields)


RELEASES = [
    rel("RLSE1", "On time", "closed", t(10, 18), baseline_planned_end=t(10, 18)),
    rel("RLSE2", "Late", "closed", t(15), actual_end=datetime(2024, 3, 16, 12, tzinfo=UTC)),
    rel("RLSE3", "Rescheduled", "deployed", t(25), baseline_planned_end=t(20), change_requests=["CHG3A"]),
    rel("RLSE4", "Rolled back", "rolled_back", t(22), baseline_planned_end=t(22), revision_count=1),
    rel("RLSE5", "Vetoed", "in_progress", t(31), baseline_planned_end=t(31)),
    rel("RLSE6", "Outside", "closed", t(1, month=4), baseline_planned_end=t(1, month=4)),
    rel("RLSE7", "Unplanned", "planned", None),
]

HISTORY = [
    *state_history("RLSE1", [(t(1), "planned"), (t(2), "in_progress"), (t(4), "authorized"),
                             (t(10, 12), "deploying"), (t(10, 16), "deployed"), (t(12, 16), "closed")]),
    *planned_end_history("RLSE1", [(t(1), t(10, 18))]),
    *state_history("RLSE2", [(t(5), "planned"), (t(7), "authorized"), (t(17), "deployed"), (t(18), "closed")]),
    *planned_end_history("RLSE2", [(t(5), t(15))]),
    *state_history("RLSE3", [(t(8), "in_progress"), (t(18), "authorized"), (t(23), "deploying"), (t(24), "deployed")]),
    *planned_end_history("RLSE3", [(t(8), t(20)), (t(15), t(25))]),
    *state_history("RLSE4", [(t(10), "planned"), (t(12), "authorized"), (t(21), "deploying"),
                             (t(21, 6), "deployed"), (t(21, 18), "rolled_back")]),
    *state_history("RLSE5", [(t(15), "planned"), (t(16), "in_progress"), (t(18), "authorized"), (t(19), "in_progress")]),
    *state_history("RLSE6", [(t(1), "planned"), (t(2), "in_progress"), (t(30), "closed")]),
    # rows the KPIs must not trip over: other entities, other fields, unknown values
    HistoryEntry("change", "CHG2A", "state", "scheduled", "implement", "servicenow", t(16)),
    HistoryEntry("release", "RLSE1", "name", "On-time", "On time", "jira", t(3)),
    HistoryEntry("release", "RLSE6", "state", "closed", "bogus", "jira", t(31)),
]

CHANGES = [
    ChangeRequest(key="CHG2A", summary="db migration", release="RLSE2"),
    ChangeRequest(key="CHG3A", summary="api rollout"),  # linked through RLSE3.change_requests
    ChangeRequest(key="CHG4A", summary="payment switch", release="RLSE4"),
]


def inc(key: str, priority: int, *, change: str | None = None, release: str | None = None, state: str = "resolved") -> Incident:
    return Incident(key=key, summary=f"incident {key}", priority=priority, caused_by_change=change,
                    caused_by_release=release, state=state)


INCIDENTS = [
    inc("INC1", 2, change="CHG2A"),
    inc("INC2", 3, release="RLSE2"),
    inc("INC3", 1, change="CHG3A"),
    inc("INC4", 1, change="CHG4A"),
    inc("INC5", 1, change="CHG4A", state="new"),
    inc("INC6", 2, release="RLSE4", state="canceled"),  # canceled: not caused by anything
    inc("INC8", 4, change="CHG4A", release="RLSE1"),  # explicit release wins over the change's
    inc("INC9", 3),  # no cause
    inc("INC10", 3, change="CHG9UNKNOWN"),
    inc("INC11", 1, release="RLSE6"),  # outside the period
]

VETOES = [
    VetoEntry("RLSE5", "in_progress", "deploying", "release is not authorized", t(20)),
    VetoEntry("RLSE5", "in_progress", "deployed", "release is not authorized", t(21)),
    VetoEntry("RLSE6", "planned", "deploying", "release is not authorized", t(25)),
]


def stats(count: int, median: float, p90: float) -> dict[str, object]:
    return {"count": count, "median": median, "p90": p90}


EXPECTED = {
    "period": {"since": "2024-03-10", "until": "2024-03-31"},
    "generated_at": "2024-03-30T12:00:00+00:00",
    "releases": 5,
    "releases_without_planned_end": 1,
    "completed_as_planned_pct": 20.0,
    "rescheduled_or_delayed_pct": 60.0,
    "needing_revision_pct": 40.0,
    "counts": {"completed_as_planned": 1, "rescheduled_or_delayed": 3, "needing_revision": 2},
    "incidents_caused_total": 6,
    "incidents_by_release": {
        "On time": {"total": 1, "by_priority": {"4": 1}},
        "Late": {"total": 2, "by_priority": {"2": 1, "3": 1}},
        "Rescheduled": {"total": 1, "by_priority": {"1": 1}},
        "Rolled back": {"total": 2, "by_priority": {"1": 2}},
    },
    "time_in_state_hours": {
        "planned": stats(4, 36.0, 48.0),
        "in_progress": stats(3, 48.0, 240.0),
        "authorized": stats(5, 156.0, 240.0),
        "deploying": stats(3, 6.0, 24.0),
        "deployed": stats(3, 24.0, 48.0),
    },
    "lead_times_hours": {
        "planned->authorized": stats(4, 60.0, 72.0),
        "authorized->deployed": stats(4, 191.0, 240.0),
        "deployed->closed": stats(2, 36.0, 48.0),
        "planned->deployed": stats(3, 270.0, 288.0),
    },
    "vetoed_releases": 1,
    "vetoes_total": 2,
    # R1-R4 went out (R4 then rolled back), each caused an incident or was rolled back: 4 of
    # 4 failed; 4 deployments over the 22-day period = 1.27 a week. Nothing has an opened
    # date, so lead time and time to restore have no data; no release has a score.
    "satisfaction_avg": None,
    "satisfaction_responses": 0,
    "deployments": 4,
    "deployment_frequency_per_week": 1.27,
    "lead_time_for_changes_hours": None,
    "change_failure_rate_pct": 100.0,
    "time_to_restore_hours": None,
    "early_life_incidents": 0,
    "effort_hours_by_state": {},
    "direct_cost_total": None,
    "direct_cost_by_state": {},
    "direct_cost_unpriced_hours": 0.0,
    "early_life_days": 14,
    "by_month": {"2024-03": {
        "releases": 5, "completed_as_planned_pct": 20.0, "rescheduled_or_delayed_pct": 60.0,
        "needing_revision_pct": 40.0, "incidents_caused_total": 6, "satisfaction_avg": None,
        "satisfaction_responses": 0, "deployments": 4, "deployment_frequency_per_week": 1.27,
        "lead_time_for_changes_hours": None, "change_failure_rate_pct": 100.0, "time_to_restore_hours": None,
        "early_life_incidents": 0, "direct_cost_total": None, "direct_cost_unpriced_hours": 0.0,
    }},
    "no_data": {
        "satisfaction_avg": "no release in the period has a satisfaction score (map release.satisfaction)",
        "lead_time_for_changes_hours": "no change of a deployed release has an opened date before the deployment",
        "time_to_restore_hours": "no incident caused by these releases has both an opened and a resolved time",
        **dict.fromkeys(("effort_hours_by_state", "direct_cost_total", "direct_cost_by_state"), NO_TIME),
    },
}


@pytest.fixture()
def kpis() -> dict[str, object]:
    return compute_kpis(RELEASES, HISTORY, INCIDENTS, CHANGES, VETOES, since=SINCE, until=UNTIL, now=NOW)


def test_every_kpi_matches_the_hand_computed_answer(kpis: dict[str, object]) -> None:
    assert kpis == EXPECTED


def test_json_text_carries_the_same_answers(kpis: dict[str, object]) -> None:
    text = render_json(kpis)
    assert json.loads(text) == EXPECTED
    assert '"completed_as_planned_pct": 20.0' in text
    assert '"vetoed_releases": 1' in text


def test_csv_is_flat_metric_key_value(kpis: dict[str, object]) -> None:
    text = render_csv(kpis)
    lines = text.splitlines()
    assert lines[0] == "metric,key,value"
    for expected in [
        "period,since,2024-03-10",
        "period,until,2024-03-31",
        "releases,,5",
        "completed_as_planned_pct,,20.0",
        "rescheduled_or_delayed_pct,,60.0",
        "needing_revision_pct,,40.0",
        "counts,needing_revision,2",
        "incidents_caused_total,,6",
        "incidents_by_release.total,Late,2",
        "incidents_by_release.by_priority.1,Rolled back,2",
        "incidents_by_release.by_priority.4,On time,1",
        "time_in_state_hours.median,authorized,156.0",
        "time_in_state_hours.p90,in_progress,240.0",
        "time_in_state_hours.count,deploying,3",
        "lead_times_hours.median,authorized->deployed,191.0",
        "lead_times_hours.p90,planned->deployed,288.0",
        "vetoed_releases,,1",
        "vetoes_total,,2",
    ]:
        assert expected in lines, expected
    rows = list(csv.reader(io.StringIO(text)))
    assert all(len(r) == 3 for r in rows)
    assert "by_month.change_failure_rate_pct,2024-03,100.0" in lines
    assert "deployment_frequency_per_week,,1.27" in lines
    # 2 period + generated_at + 5 release scalars + 3 counts + 3 incident/veto scalars
    # + per release (total + priorities) + 5 states x 3 + 4 lead times x 3
    # + 9 insight scalars + 2 cost scalars (the per-state figures are empty: no time logged)
    # + 15 figures of one month + 6 reasons
    assert len(rows) - 1 == 2 + 1 + 5 + 3 + 3 + (2 + 3 + 2 + 2) + 15 + 12 + 9 + 2 + 15 + 6


def test_csv_writes_null_as_empty_and_quotes_awkward_names() -> None:
    kpis = compute_kpis([rel("R1", 'Big, "quoted" release', "planned", t(12))],
                        [], [inc("I1", 1, release="R1")], [], [], since=date(2030, 1, 1), until=None, now=NOW)
    assert "completed_as_planned_pct,," in render_csv(kpis).splitlines()
    kpis = compute_kpis([rel("R1", 'Big, "quoted" release', "planned", t(12))],
                        [], [inc("I1", 1, release="R1")], [], [], now=NOW)
    rows = list(csv.reader(io.StringIO(render_csv(kpis))))
    assert ["incidents_by_release.total", 'Big, "quoted" release', "1"] in rows


def test_table_is_aligned_text(kpis: dict[str, object]) -> None:
    text = render_table(kpis)
    assert "2024-03-10 .. 2024-03-31" in text
    assert re.search(r"^Completed as planned\s+20\.0 %$", text, re.M)
    assert re.search(r"^Gate vetoes\s+2$", text, re.M)
    assert re.search(r"^Rolled back\s+2\s+2\s+0\s+0\s+0\s+0$", text, re.M)
    assert re.search(r"^authorized->deployed\s+4\s+191\.0\s+240\.0$", text, re.M)
    header = next(line for line in text.splitlines() if line.startswith("Time in state"))
    row = next(line for line in text.splitlines() if line.startswith("authorized "))
    assert len(row) == len(header)  # right-aligned to the same edge


def test_html_is_self_contained_with_charts(kpis: dict[str, object]) -> None:
    page = render_html(kpis)
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") >= 3 + 3  # plan, incidents, time in state + the trends with data
    assert not re.search(r"https?://", page)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "Rolled back" in page and "20.0 %" in page


def test_html_shortens_long_labels_but_keeps_them_in_tooltips() -> None:
    name = "Quarterly platform release with a very long descriptive name"
    kpis = compute_kpis([rel("R1", name, "planned", t(12))], [], [inc("I1", 1, release="R1")], [], [], now=NOW)
    page = render_html(kpis)
    assert f"<title>{name}: 1</title>" in page
    assert ">Quarterly platform release with…</text>" in page


def test_html_escapes_names() -> None:
    kpis = compute_kpis([rel("R1", "<b>x</b> & co", "planned", t(12))], [], [inc("I1", 1, release="R1")], [], [], now=NOW)
    page = render_html(kpis)
    assert "<b>x</b>" not in page
    assert "&lt;b&gt;x&lt;/b&gt; &amp; co" in page


def test_empty_period_gives_nulls_not_errors() -> None:
    kpis = compute_kpis(RELEASES, HISTORY, INCIDENTS, CHANGES, VETOES, since=date(2030, 1, 1), until=None, now=NOW)
    assert kpis["releases"] == 0
    assert kpis["completed_as_planned_pct"] is None
    assert kpis["rescheduled_or_delayed_pct"] is None
    assert kpis["incidents_by_release"] == {} and kpis["time_in_state_hours"] == {}
    assert kpis["vetoes_total"] == 0
    for fmt in ("table", "json", "csv", "html"):
        assert render(kpis, fmt)
    assert "n/a" in render_table(kpis)
    assert "No data: no releases in the period." in render_html(kpis)
    assert kpis["no_data"]["completed_as_planned_pct"] == "no releases in the period"
    assert kpis["deployment_frequency_per_week"] is None and kpis["by_month"] == {}


def test_open_bounds_select_every_planned_release() -> None:
    kpis = compute_kpis(RELEASES, HISTORY, INCIDENTS, CHANGES, VETOES, now=NOW)
    assert kpis["period"] == {"since": None, "until": None}
    assert kpis["releases"] == 6  # R7 has no planned end
    assert kpis["vetoed_releases"] == 2 and kpis["vetoes_total"] == 3
    assert kpis["incidents_caused_total"] == 7
    assert kpis["completed_as_planned_pct"] == 33.3  # R1, R6 of 6


def test_period_bounds_are_inclusive_days() -> None:
    only = compute_kpis(RELEASES, HISTORY, [], [], [], since=date(2024, 3, 10), until=date(2024, 3, 10), now=NOW)
    assert only["releases"] == 1  # R1 ends 03-10 18:00
    before = compute_kpis(RELEASES, HISTORY, [], [], [], until=date(2024, 3, 9), now=NOW)
    assert before["releases"] == 0


def test_since_after_until_is_bad_input() -> None:
    with pytest.raises(BadInput, match="period start 2024-04-01 is after its end 2024-03-01"):
        compute_kpis([], [], [], [], [], since=date(2024, 4, 1), until=date(2024, 3, 1), now=NOW)


def test_unknown_format_is_bad_input(kpis: dict[str, object]) -> None:
    with pytest.raises(BadInput, match="unknown KPI format 'xml'"):
        render(kpis, "xml")


def test_clock_change_in_history_text_is_not_a_reschedule() -> None:
    release = rel("R1", "R1", "closed", t(12), actual_end=t(11))
    history = [
        HistoryEntry("release", "R1", "planned_end", None, "2024-03-12T00:00:00+00:00", "jira", t(1)),
        HistoryEntry("release", "R1", "planned_end", "2024-03-12T00:00:00+00:00", "2024-03-12T01:00:00+01:00", "servicenow", t(2)),
    ]
    kpis = compute_kpis([release], history, [], [], [], now=NOW)
    assert kpis["rescheduled_or_delayed_pct"] == 0.0
    assert kpis["completed_as_planned_pct"] == 100.0


def test_reschedule_seen_only_in_history_counts() -> None:
    # the record's baseline was lost but the history shows the move 03-10 -> 03-12
    release = rel("R1", "R1", "closed", t(12), actual_end=t(11), baseline_planned_end=t(12))
    kpis = compute_kpis([release], planned_end_history("R1", [(t(1), t(10)), (t(2), t(12))]), [], [], [], now=NOW)
    assert kpis["rescheduled_or_delayed_pct"] == 100.0
    assert kpis["completed_as_planned_pct"] == 0.0


def test_closed_without_any_actual_end_is_not_counted_as_on_plan() -> None:
    kpis = compute_kpis([rel("R1", "R1", "closed", t(12))], [], [], [], [], now=NOW)
    assert kpis["completed_as_planned_pct"] == 0.0
    assert kpis["rescheduled_or_delayed_pct"] == 0.0  # unknown is not late


def test_duplicate_release_names_are_told_apart() -> None:
    releases = [rel("A1", "2024.3", "planned", t(12)), rel("B1", "2024.3", "planned", t(13))]
    kpis = compute_kpis(releases, [], [inc("I1", 1, release="A1"), inc("I2", 2, release="B1")], [], [], now=NOW)
    assert set(kpis["incidents_by_release"]) == {"2024.3 (A1)", "2024.3 (B1)"}


def test_naive_timestamps_are_read_as_utc() -> None:
    history = [HistoryEntry("release", "R1", "state", None, "planned", "jira", datetime(2024, 3, 1)),
               HistoryEntry("release", "R1", "state", "planned", "authorized", "jira", t(2))]
    kpis = compute_kpis([rel("R1", "R1", "authorized", t(12))], history, [], [], [], now=datetime(2024, 3, 3))
    assert kpis["time_in_state_hours"]["planned"] == stats(1, 24.0, 24.0)


def test_flatten_shapes() -> None:
    rows = list(flatten({"a": 1, "b": {"x": None}, "c": {"r": {"total": 2, "by": {"1": 2}}}}))
    assert rows == [("a", "", 1), ("b", "x", None), ("c.total", "r", 2), ("c.by.1", "r", 2)]


def test_finishing_exactly_at_the_baseline_is_on_plan() -> None:
    kpis = compute_kpis([rel("R1", "R1", "closed", t(12), actual_end=t(12))], [], [], [], [], now=NOW)
    assert kpis["completed_as_planned_pct"] == 100.0
    assert kpis["rescheduled_or_delayed_pct"] == 0.0
