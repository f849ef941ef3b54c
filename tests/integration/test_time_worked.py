"""Time logged against changes (ServiceNow ``task_time_worked``, Jira worklogs) is read with
the records during sync, through the real adapters and simulators, stored once per entry,
and priced by ``relbridge kpi`` (issue #16): one query per page, never one per record."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.reports.kpi import Rates, kpis_from_store
from bridge.store.worklogs import WorklogOperations
from tests.integration.helpers import clear_log, requests_log

KPI = {"read_time_worked": True, "hourly_rate": 100}


def seed(bridge, changes: int = 1) -> list[dict[str, Any]]:
    release = bridge.sn.create("rm_release", short_description="Billing 9.0", state="1",
                               start_date="2026-06-01 08:00:00", end_date="2026-06-20 17:00:00")
    made = []
    for n in range(changes):
        change = bridge.sn.create("change_request", short_description=f"Deploy billing 9 part {n}", state="-5",
                                  approval="not requested", type="normal", risk="3")
        bridge.sn.link(release, change)
        made.append(change)
    return made


def log_jira_work(bridge, key: str, seconds: int) -> None:
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    r = bridge.jira.session.post(f"{bridge.jira.api}/issue/{key}/worklog",
                                 json={"timeSpentSeconds": seconds, "started": started})
    r.raise_for_status()


def jira_change_key(bridge) -> str:
    [issue] = bridge.jira.search('project = OPS AND issuetype = "Change"')
    return issue["key"]


def paths(url: str, suffix: str) -> list[dict[str, Any]]:
    return [r for r in requests_log(url)["requests"] if r["method"] == "GET" and r["path"].endswith(suffix)]


def test_time_from_both_systems_is_stored_once_and_priced(bridge) -> None:
    bridge.sections["kpi"] = KPI
    [change] = seed(bridge)
    bridge.sn.create("task_time_worked", task=change["sys_id"], time_worked="1970-01-01 01:30:00",
                     time_in_seconds=5400)
    assert not bridge.sync().errors
    key = jira_change_key(bridge)
    for _ in range(22):  # more than the 20 an issue's worklog field holds
        log_jira_work(bridge, key, 600)
    clear_log(bridge.sims.jira_url)
    assert not bridge.sync().errors
    assert len(paths(bridge.sims.jira_url, f"/{bridge.jira.issue(key)['id']}/worklog")) == 1  # the cut-short one
    for _ in range(2):  # read again: nothing doubles
        assert not bridge.sync().errors
    rt = bridge.runtime()
    rows = rt.store.worklog_rows()
    assert sorted(r.seconds for r in rows) == [600] * 22 + [5400]
    assert {(r.entity, r.key) for r in rows} == {("change", rows[0].key)}
    kpis = kpis_from_store(rt.store, since=None, until=None, now=datetime.now(UTC), rates=Rates(100.0))
    assert sum(kpis["effort_hours_by_state"].values()) == pytest.approx(1.5 + 22 * 600 / 3600, abs=0.02)
    assert kpis["direct_cost_total"] == pytest.approx(100 * (1.5 + 22 * 600 / 3600), abs=1)


def test_servicenow_reads_time_once_per_page_of_records(bridge) -> None:
    bridge.sections["kpi"] = KPI
    for change in seed(bridge, changes=3):
        bridge.sn.create("task_time_worked", task=change["sys_id"], time_in_seconds=3600)
    clear_log(bridge.sims.servicenow_url)
    assert not bridge.sync().errors
    time_reads = paths(bridge.sims.servicenow_url, "/task_time_worked")
    pages = paths(bridge.sims.servicenow_url, "/change_request") + paths(bridge.sims.servicenow_url, "/rm_release")
    assert 1 <= len(time_reads) <= len(pages)
    assert len(bridge.runtime().store.worklog_rows()) == 3


def test_without_read_time_worked_nothing_more_is_asked(bridge) -> None:
    [change] = seed(bridge)
    bridge.sn.create("task_time_worked", task=change["sys_id"], time_in_seconds=3600)
    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    assert not bridge.sync().errors
    assert not paths(bridge.sims.servicenow_url, "/task_time_worked")
    assert not any("worklog" in str(r.get("query", "")) for r in requests_log(bridge.sims.jira_url)["requests"])
    assert bridge.runtime().store.worklog_rows() == []


def test_a_crash_before_the_record_is_saved_keeps_no_entry_and_the_next_pass_stores_them(bridge, monkeypatch) -> None:
    bridge.sections["kpi"] = KPI
    [change] = seed(bridge)
    bridge.sn.create("task_time_worked", task=change["sys_id"], time_in_seconds=3600)
    original = WorklogOperations.put_worklogs

    def crash(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        raise SystemExit("killed inside the record's transaction")

    monkeypatch.setattr(WorklogOperations, "put_worklogs", crash)
    with pytest.raises(SystemExit):
        bridge.sync()
    monkeypatch.setattr(WorklogOperations, "put_worklogs", original)
    assert bridge.runtime().store.worklog_rows() == []
    assert not bridge.sync().errors
    assert [r.seconds for r in bridge.runtime().store.worklog_rows()] == [3600]


def test_the_kpi_command_prices_the_time_from_the_config_file_and_environment(bridge, tmp_path, monkeypatch) -> None:
    bridge.sections["kpi"] = KPI
    [change] = seed(bridge)
    bridge.sn.create("task_time_worked", task=change["sys_id"], time_in_seconds=7200)
    assert not bridge.sync().errors
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        f'[servicenow]\nurl = "{bridge.sims.servicenow_url}"\n[jira]\nurl = "{bridge.sims.jira_url}"\n'
        f'[store]\nurl = "{bridge.store_url}"\n[kpi]\nhourly_rate = 80\n')
    runner = CliRunner()
    out = runner.invoke(main, ["kpi", "--format", "json", "--config", str(config_file)])
    assert out.exit_code == 0, out.output
    kpis = json.loads(out.output)
    assert sum(kpis["effort_hours_by_state"].values()) == 2.0 and kpis["direct_cost_total"] == 160.0
    monkeypatch.setenv("RELBRIDGE_KPI__HOURLY_RATE", "100")
    table = runner.invoke(main, ["kpi", "--config", str(config_file)])
    assert table.exit_code == 0 and "Direct cost" in table.output and "200.0" in table.output
    monkeypatch.setenv("RELBRIDGE_KPI__HOURLY_RATE", "-5")
    bad = runner.invoke(main, ["kpi", "--config", str(config_file)])
    assert bad.exit_code == 2 and "RELBRIDGE_KPI__HOURLY_RATE" in bad.output and "Traceback" not in bad.output


def test_group_rates_price_each_entry_at_its_tasks_group(bridge, tmp_path) -> None:
    """Known answer: Network 100/h, DBA 150/h, anything else 80/h. Planned: 2 h on a Network
    change, 0.5 h on a change in no group; in progress: 1 h on a DBA change. Direct cost
    2 x 100 + 0.5 x 80 = 240 planned, 1 x 150 = 150 in progress, 390 in all."""
    for name in ("Network", "DBA"):
        bridge.sn.create("sys_user_group", name=name)
    release = bridge.sn.create("rm_release", short_description="Billing 9.0", state="1",
                               start_date="2026-06-01 08:00:00", end_date="2026-06-20 17:00:00")
    network, dba, loose = (bridge.sn.create("change_request", short_description=f"Part {n}", state="-5",
                                            assignment_group=group)
                           for n, group in ((1, "Network"), (2, "DBA"), (3, "")))
    for change in (network, dba, loose):
        bridge.sn.link(release, change)
    bridge.sn.create("task_time_worked", task=network["sys_id"], time_in_seconds=7200)
    bridge.sn.create("task_time_worked", task=loose["sys_id"], time_in_seconds=1800)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[servicenow]\nurl = "{bridge.sims.servicenow_url}"\n[jira]\nurl = "{bridge.sims.jira_url}"\n'
        f'[store]\nurl = "{bridge.store_url}"\n'
        '[kpi]\nread_time_worked = true\nhourly_rate = 80\ngroup_rates = { Network = 100, DBA = 150 }\n')
    runner = CliRunner()
    assert runner.invoke(main, ["sync", "--once", "--config", str(config)]).exit_code == 0
    bridge.sn.update("rm_release", release["sys_id"], state="2")  # work in progress from now on
    assert runner.invoke(main, ["sync", "--once", "--config", str(config)]).exit_code == 0
    time.sleep(1.1)  # entries are stamped to the second: clearly after the move
    bridge.sn.create("task_time_worked", task=dba["sys_id"], time_in_seconds=3600)
    # Time is read with its record: the form that logs it also updates the task.
    bridge.sn.update("change_request", dba["sys_id"], description="1 h logged")
    assert runner.invoke(main, ["sync", "--once", "--config", str(config)]).exit_code == 0

    groups = sorted((r.seconds, r.group) for r in bridge.runtime().store.worklog_rows())
    assert groups == [(1800, None), (3600, "DBA"), (7200, "Network")]
    out = runner.invoke(main, ["kpi", "--format", "json", "--config", str(config)])
    assert out.exit_code == 0, out.output
    kpis = json.loads(out.output)
    assert kpis["effort_hours_by_state"] == {"planned": 2.5, "in_progress": 1.0}
    assert kpis["direct_cost_by_state"] == {"planned": 240.0, "in_progress": 150.0}
    assert (kpis["direct_cost_total"], kpis["direct_cost_unpriced_hours"]) == (390.0, 0.0)
