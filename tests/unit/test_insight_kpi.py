"""Satisfaction, DORA's four keys, early-life incidents and by_month against hand-computed answers.

Scenario (2024, all UTC), now = 2024-06-01:

- A: planned end 04-05; planned 04-01, deployed 04-05 12:00, closed 04-06; satisfaction 4.
  Changes CA1 opened 04-01 12:00 (lead 96 h), CA2 opened 04-03 12:00 (48 h).
  Incidents IA1 (via CA1) opened 04-06 12:00, resolved 18:00 (6 h, early life);
  IA2 opened 04-25 12:00 (19.5 days after: not early life), resolved 04-26 12:00 (24 h);
  IA3 without dates; IA4 canceled (never counts).
- B: planned end 04-12; deployed 04-12 00:00, rolled back 06:00; satisfaction 2; change CB1
  opened 04-10 00:00 (48 h).
- C: planned end 04-20; deployed with actual_end 04-20 and no history (deployed at =
  actual end); change CC1 opened 04-21, after the deployment (not counted).
- D: planned end 04-25; in progress (not deployed); satisfaction 5; incident ID1 opened
  04-24 00:00, resolved 02:00 (2 h).
- E: planned end 05-02; deployed 05-02, closed 05-03; satisfaction 5; change CE1 opened
  04-30 (48 h).

Period 04-01..05-31 (61 days): deployed A, B, C, E -> 4 / (61/7) = 0.46 a week; lead time
median of 96, 48, 48, 48 = 48; failed A (incidents) and B (rolled back) = 2 / 4 = 50 %;
time to restore median of 6, 24, 2 = 6; early life 1 (IA1); satisfaction (4+2+5+5)/4 = 4.0.
April (30 days): 3 / (30/7) = 0.7; failures 2 / 3 = 66.7 %; satisfaction 11/3 = 3.67.
May (31 days): 1 / (31/7) = 0.23; failures 0 %.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from bridge.model import ChangeRequest, Incident, Release, ReleaseState
from bridge.reports.kpi import HistoryEntry, compute_kpis, render_html, render_table

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def t(month: int, day: int, hour: int = 0) -> datetime:
    return datetime(2024, month, day, hour, tzinfo=UTC)


def states(key: str, steps: list[tuple[datetime, str]]) -> list[HistoryEntry]:
    rows, old = [], None
    for at, new in steps:
        rows.append(HistoryEntry("release", key, "state", old, new, "servicenow", at))
        old = new
    return rows


RELEASES = [
    Release(key="A", name="Alpha", state=ReleaseState.CLOSED, planned_end=t(4, 5, 18), satisfaction=4,
            change_requests=["CA1", "CA2"]),
    Release(key="B", name="Beta", state=ReleaseState.ROLLED_BACK, planned_end=t(4, 12), satisfaction=2),
    Release(key="C", name="Gamma", state=ReleaseState.DEPLOYED, planned_end=t(4, 20), actual_end=t(4, 20)),
    Release(key="D", name="Delta", state=ReleaseState.IN_PROGRESS, planned_end=t(4, 25), satisfaction=5),
    Release(key="E", name="Epsilon", state=ReleaseState.CLOSED, planned_end=t(5, 2), satisfaction=5),
]
HISTORY = [
    *states("A", [(t(4, 1), "planned"), (t(4, 5, 12), "deployed"), (t(4, 6), "closed")]),
    *states("B", [(t(4, 1), "planned"), (t(4, 12), "deployed"), (t(4, 12, 6), "rolled_back")]),
    *states("D", [(t(4, 1), "planned"), (t(4, 2), "in_progress")]),
    *states("E", [(t(4, 20), "planned"), (t(5, 2), "deployed"), (t(5, 3), "closed")]),
]
CHANGES = [
    ChangeRequest(key="CA1", summary="a1", opened_at=t(4, 1, 12)),
    ChangeRequest(key="CA2", summary="a2", opened_at=t(4, 3, 12)),
    ChangeRequest(key="CB1", summary="b1", release="B", opened_at=t(4, 10)),
    ChangeRequest(key="CC1", summary="c1", release="C", opened_at=t(4, 21)),
    ChangeRequest(key="CE1", summary="e1", release="E", opened_at=t(4, 30)),
]
INCIDENTS = [
    Incident(key="IA1", summary="x", caused_by_change="CA1", opened_at=t(4, 6, 12), resolved_at=t(4, 6, 18)),
    Incident(key="IA2", summary="x", caused_by_release="A", opened_at=t(4, 25, 12), resolved_at=t(4, 26, 12)),
    Incident(key="IA3", summary="x", caused_by_release="A"),
    Incident(key="IA4", summary="x", caused_by_release="A", state="canceled", opened_at=t(4, 6), resolved_at=t(4, 7)),
    Incident(key="ID1", summary="x", caused_by_release="D", opened_at=t(4, 24), resolved_at=t(4, 24, 2)),
]


def kpis(**kwargs: object) -> dict:
    period = {"since": date(2024, 4, 1), "until": date(2024, 5, 31), **kwargs}
    return compute_kpis(RELEASES, HISTORY, INCIDENTS, CHANGES, [], now=NOW, **period)


def test_dora_and_satisfaction_match_the_hand_computed_answers() -> None:
    k = kpis()
    assert {key: k[key] for key in (
        "releases", "deployments", "deployment_frequency_per_week", "lead_time_for_changes_hours",
        "change_failure_rate_pct", "time_to_restore_hours", "early_life_incidents", "satisfaction_avg",
        "satisfaction_responses", "incidents_caused_total")} == {
        "releases": 5, "deployments": 4, "deployment_frequency_per_week": 0.46, "lead_time_for_changes_hours": 48.0,
        "change_failure_rate_pct": 50.0, "time_to_restore_hours": 6.0, "early_life_incidents": 1,
        "satisfaction_avg": 4.0, "satisfaction_responses": 4, "incidents_caused_total": 4,
    }
    # No time was logged in this scenario: only the cost figures say so.
    assert set(k["no_data"]) == {"effort_hours_by_state", "direct_cost_total", "direct_cost_by_state"}


def test_by_month_gives_each_month_its_own_figures() -> None:
    months = kpis()["by_month"]
    assert list(months) == ["2024-04", "2024-05"]
    april, may = months["2024-04"], months["2024-05"]
    assert (april["releases"], april["deployments"], april["deployment_frequency_per_week"]) == (4, 3, 0.7)
    assert (april["change_failure_rate_pct"], april["lead_time_for_changes_hours"]) == (66.7, 48.0)
    assert (april["time_to_restore_hours"], april["early_life_incidents"], april["satisfaction_avg"]) == (6.0, 1, 3.67)
    assert april["incidents_caused_total"] == 4
    assert (may["releases"], may["deployments"], may["deployment_frequency_per_week"]) == (1, 1, 0.23)
    assert (may["change_failure_rate_pct"], may["lead_time_for_changes_hours"], may["satisfaction_avg"]) == (0.0, 48.0, 5.0)
    assert may["time_to_restore_hours"] is None and may["early_life_incidents"] == 0


def test_a_shorter_period_and_an_open_one() -> None:
    april = kpis(until=date(2024, 4, 28))  # 28 days: A, B, C deployed
    assert (april["deployment_frequency_per_week"], april["change_failure_rate_pct"]) == (0.75, 66.7)
    assert (april["satisfaction_avg"], april["satisfaction_responses"]) == (3.67, 3)
    open_ = kpis(since=None, until=None)  # window = first to last planned end: 04-05..05-02, 28 days
    assert open_["deployment_frequency_per_week"] == 1.0


def test_early_life_window_is_a_parameter() -> None:
    assert kpis(early_life_days=30)["early_life_incidents"] == 2
    assert kpis(early_life_days=30)["early_life_days"] == 30


def test_no_data_has_a_reason_and_never_divides_by_zero() -> None:
    empty = compute_kpis([], [], [], [], [], now=NOW)
    for key in ("deployment_frequency_per_week", "lead_time_for_changes_hours", "change_failure_rate_pct",
                "time_to_restore_hours", "early_life_incidents", "satisfaction_avg"):
        assert empty[key] is None
        assert empty["no_data"][key] == "no releases in the period"
    assert empty["satisfaction_responses"] == 0 and empty["deployments"] == 0
    # deployed without any date, no satisfaction mapped, no changes: nothing to measure from
    undated = Release(key="U", name="Undated", state=ReleaseState.CLOSED, planned_end=t(4, 2))
    k = compute_kpis([undated, Release(key="N", name="No dates")], [], [], [], [], now=NOW)
    assert k["deployments"] == 1 and k["change_failure_rate_pct"] == 0.0
    assert k["no_data"]["early_life_incidents"] == "no deployed release has a known deployment time"
    assert k["no_data"]["satisfaction_avg"].startswith("no release in the period has a satisfaction score")
    assert k["releases_without_planned_end"] == 1
    for page in (render_html(k), render_table(k), render_html(empty)):
        assert "no deployed release has a known deployment time" in page or "no releases in the period" in page


def test_dashboard_shows_trends_and_escapes_names() -> None:
    releases = [*RELEASES, Release(key="X", name="<script>alert(1)</script>", planned_end=t(4, 9))]
    incidents = [*INCIDENTS, Incident(key="IX", summary="x", caused_by_release="X")]
    page = render_html(compute_kpis(releases, HISTORY, incidents, CHANGES, [], now=NOW))
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count('class="line"') >= 5  # a line per trend with two months of data
    assert "2024-04" in page and "2024-05" in page
