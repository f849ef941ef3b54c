"""Effort and direct cost per release state against hand-computed answers.

Scenario (2024, UTC): release R planned to end 04-10, created planned 04-01, in progress
04-02, deployed 04-05, closed 04-06; changes C1 and C2 are R's. Rates: 100 an hour, the
``ops`` group 150.

- e1: C1, 03-30, 2 h, no group: before R existed -> planned (the state it was created in), 200;
- e2: C1, 04-02 00:00 exactly, 3 h, ops: the move's own instant -> in_progress, 450;
- e3: C2, 04-03, 1.5 h, group dev (no rate of its own) -> in_progress, 150;
- e4: R itself, 04-05 12:00, 1 h -> deployed, 100;
- e5: a change of release S (planned end outside the period), e6: a change of no release,
  e7: an incident: none counts.

Effort planned 2, in_progress 4.5, deployed 1; cost 200, 600, 100; total 900.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from bridge.config import ConfigError, load_config
from bridge.model import ChangeRequest, Release, ReleaseState
from bridge.reports.cost import NO_RATE, NO_TIME, Rates, TimeEntry
from bridge.reports.dora import NO_RELEASES
from bridge.reports.kpi import HistoryEntry, compute_kpis, render_csv, render_html, render_table


def t(month: int, day: int, hour: int = 0) -> datetime:
    return datetime(2024, month, day, hour, tzinfo=UTC)


def moves(key: str, steps: list[tuple[datetime, str]], first_old: str | None = None) -> list[HistoryEntry]:
    rows, old = [], first_old
    for at, new in steps:
        rows.append(HistoryEntry("release", key, "state", old, new, "servicenow", at))
        old = new
    return rows


RELEASES = [
    Release(key="R", name="Rel", state=ReleaseState.CLOSED, planned_end=t(4, 10), change_requests=["C1"]),
    Release(key="S", name="Other", state=ReleaseState.PLANNED, planned_end=t(9, 1)),
]
CHANGES = [ChangeRequest(key="C2", summary="two", release="R"), ChangeRequest(key="C9", summary="s", release="S")]
HISTORY = moves("R", [(t(4, 1), "planned"), (t(4, 2), "in_progress"), (t(4, 5), "deployed"), (t(4, 6), "closed")])
ENTRIES = [
    TimeEntry("change", "C1", t(3, 30), 7200),
    TimeEntry("change", "C1", t(4, 2), 3 * 3600, "ops"),
    TimeEntry("change", "C2", t(4, 3), 5400, "dev"),
    TimeEntry("release", "R", t(4, 5, 12), 3600),
    TimeEntry("change", "C9", t(4, 3), 3600),
    TimeEntry("change", "C404", t(4, 3), 3600),
    TimeEntry("incident", "INC1", t(4, 3), 3600),
]
RATES = Rates(100.0, {"ops": 150.0})


def kpis(entries: list[TimeEntry] = ENTRIES, rates: Rates = RATES, releases: list[Release] = RELEASES,
         history: list[HistoryEntry] = HISTORY) -> dict:
    return compute_kpis(releases, history, [], CHANGES, [], since=date(2024, 4, 1), until=date(2024, 4, 30),
                        now=t(6, 1), time_entries=entries, rates=rates)


def test_effort_and_cost_per_state_match_the_hand_computed_answer() -> None:
    k = kpis()
    assert k["effort_hours_by_state"] == {"planned": 2.0, "in_progress": 4.5, "deployed": 1.0}
    assert k["direct_cost_by_state"] == {"planned": 200.0, "in_progress": 600.0, "deployed": 100.0}
    assert k["direct_cost_total"] == 900.0
    assert k["direct_cost_unpriced_hours"] == 0.0
    assert not {"effort_hours_by_state", "direct_cost_total", "direct_cost_by_state"} & set(k["no_data"])
    assert k["by_month"]["2024-04"]["direct_cost_total"] == 900.0


def test_an_entry_without_any_rate_counts_as_effort_not_cost() -> None:
    k = kpis(rates=Rates(None, {"ops": 150.0}))
    assert k["effort_hours_by_state"] == {"planned": 2.0, "in_progress": 4.5, "deployed": 1.0}
    assert k["direct_cost_by_state"] == {"in_progress": 450.0}
    assert (k["direct_cost_total"], k["direct_cost_unpriced_hours"]) == (450.0, 4.5)


def test_no_rate_at_all_is_no_data_with_the_reason() -> None:
    k = kpis(rates=Rates())
    assert (k["direct_cost_total"], k["direct_cost_by_state"], k["direct_cost_unpriced_hours"]) == (None, {}, 7.5)
    assert k["no_data"]["direct_cost_total"] == k["no_data"]["direct_cost_by_state"] == NO_RATE
    assert "effort_hours_by_state" not in k["no_data"]


def test_no_worklogs_is_no_data_never_a_crash() -> None:
    k = kpis(entries=[])
    assert (k["effort_hours_by_state"], k["direct_cost_total"], k["direct_cost_by_state"]) == ({}, None, {})
    assert {k["no_data"][name] for name in ("effort_hours_by_state", "direct_cost_total", "direct_cost_by_state")} == {NO_TIME}
    assert "n/a" in render_table(k) and "direct_cost_total,," in render_csv(k)
    assert "no time logged" in render_html(k)


def test_no_release_in_the_period_says_so() -> None:
    k = compute_kpis(RELEASES, HISTORY, [], CHANGES, [], since=date(2030, 1, 1), until=None, now=t(6, 1),
                     time_entries=ENTRIES, rates=RATES)
    assert k["direct_cost_total"] is None and k["no_data"]["direct_cost_total"] == NO_RELEASES


def test_history_starting_mid_life_and_no_history_at_all() -> None:
    # The first recorded move is in_progress -> deployed: earlier work was in progress.
    history = moves("R", [(t(4, 5), "deployed")], first_old="in_progress")
    assert kpis(history=history)["effort_hours_by_state"] == {"in_progress": 6.5, "deployed": 1.0}
    # No state history: the current state is the only one known.
    assert kpis(history=[])["effort_hours_by_state"] == {"closed": 7.5}


def test_the_table_and_csv_show_the_figures() -> None:
    k = kpis()
    table = render_table(k)
    assert "Direct cost" in table and "900.0" in table
    assert "Effort by release state" in table and "in_progress" in table
    lines = render_csv(k).splitlines()
    assert "effort_hours_by_state,in_progress,4.5" in lines
    assert "direct_cost_by_state,planned,200.0" in lines
    assert "direct_cost_total,,900.0" in lines
    html = render_html(k)
    assert "Effort by release state" in html and "900.0" in html


def test_kpi_rates_come_from_the_file_and_the_environment(tmp_path) -> None:
    path = tmp_path / "relbridge.toml"
    path.write_text('[kpi]\nhourly_rate = 80\ngroup_rates = { ops = 120.5 }\n')
    config = load_config(path, env={}, sections={})
    assert Rates.of_config(config.kpi) == Rates(80.0, {"ops": 120.5})
    config = load_config(path, env={"RELBRIDGE_KPI__HOURLY_RATE": "95", "RELBRIDGE_KPI__GROUP_RATES": '{"dev": 70}'},
                         sections={})
    assert Rates.of_config(config.kpi) == Rates(95.0, {"dev": 70.0})
    path.write_text('[kpi]\ngroup_rates = { ops = -1 }\n')
    with pytest.raises(ConfigError, match="negative"):
        load_config(path, env={}, sections={})
