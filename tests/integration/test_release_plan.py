"""Release plans from deployment models, end to end against the simulators with the real
pysnow and jira clients: phases and tasks made in both systems, nothing made twice (a
rerun, a run cut short by a failing API), states copied both ways, and a release that
cannot go live while a task before "Deploy" is open."""

from __future__ import annotations

import json
from pathlib import Path

import requests
from click.testing import CliRunner

from bridge.cli import main
from tests.integration.test_release_management import jira_version, seed_release

STAGED = ["plan", "--model", "staged", "--set", "region=eu-west", "--set", "scale=large"]


def write_config(bridge, tmp_path: Path, extra: str = "") -> Path:
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        f'[servicenow]\nurl = "{bridge.sims.servicenow_url}"\n[jira]\nurl = "{bridge.sims.jira_url}"\n'
        f'[store]\nurl = "{bridge.store_url}"\n{extra}')
    return config_file


def run(bridge, tmp_path: Path, *args: str, extra: str = ""):
    return CliRunner().invoke(main, [*args, "--config", str(write_config(bridge, tmp_path, extra))])


def plan_issues(bridge) -> list[dict]:
    return bridge.jira.search('labels = "relbridge-plan"')


def test_plan_creates_phases_and_tasks_once_in_both_systems(bridge, tmp_path: Path) -> None:
    release, _ = seed_release(bridge, approved=True)
    assert not bridge.sync().errors
    number = release["number"]

    result = run(bridge, tmp_path, "release", "plan", number, *STAGED[1:], "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    names = [item["name"] for item in document["items"]]
    assert "Deploy to eu-west" in names and "Rehearse backout" in names
    assert document["created"] == {"servicenow": names, "jira": names} or all(
        len(made) == len(names) for made in document["created"].values())

    phases = bridge.sn.list("rm_release_phase")
    tasks = bridge.sn.list("rm_task")
    assert sorted(p["short_description"] for p in phases) == ["Deploy", "Early life support", "Prepare", "Roll out"]
    assert len(tasks) == len(names) - 4
    prepare = next(p for p in phases if p["short_description"] == "Prepare")
    assert prepare["start_date"] == "2026-05-27 08:00:00" and prepare["end_date"] == "2026-05-30 08:00:00"
    assert all(t["release"] == release["sys_id"] for t in tasks)
    rehearse = next(t for t in tasks if t["short_description"] == "Rehearse backout")
    assert rehearse["phase"] == prepare["sys_id"]
    issues = plan_issues(bridge)
    assert len(issues) == len(names)
    version = jira_version(bridge, "Billing 9.0")
    assert all(i["fields"]["fixVersions"][0]["id"] == version["id"] for i in issues)
    assert {i["fields"]["issuetype"]["name"] for i in issues} == {"Task"}

    again = run(bridge, tmp_path, "release", "plan", number, *STAGED[1:], "--json")
    assert again.exit_code == 0, again.output
    assert all(made == [] for made in json.loads(again.output)["created"].values())
    assert len(bridge.sn.list("rm_task")) == len(tasks) and len(plan_issues(bridge)) == len(names)


def lose_reply(url: str, path: str) -> None:
    """The next POST to ``path`` is carried out, but its answer is lost (a crash, a proxy)."""
    requests.post(f"{url}/_sim/faults", timeout=5, json={
        "method": "POST", "path": path, "status": 0, "reset": True, "after": True, "times": 1,
    }).raise_for_status()


def test_a_plan_cut_short_by_lost_replies_resumes_without_duplicates(bridge, tmp_path: Path) -> None:
    release, _ = seed_release(bridge, approved=True)
    assert not bridge.sync().errors
    lose_reply(bridge.sims.servicenow_url, "/api/now/table/rm_task$")
    first = run(bridge, tmp_path, "release", "plan", release["number"], *STAGED[1:])
    assert first.exit_code == 1, first.output
    lose_reply(bridge.sims.jira_url, "/rest/api/2/issue$")
    second = run(bridge, tmp_path, "release", "plan", release["number"], *STAGED[1:])
    assert second.exit_code == 1, second.output
    third = run(bridge, tmp_path, "release", "plan", release["number"], *STAGED[1:])
    assert third.exit_code == 0, third.output
    tasks = bridge.sn.list("rm_task")
    assert len(tasks) == len({t["correlation_id"] for t in tasks}) == 7
    assert len(plan_issues(bridge)) == 11


def test_a_plan_made_while_the_store_was_lost_is_found_by_tag(bridge, bridge_factory, tmp_path: Path) -> None:
    release, _ = seed_release(bridge, approved=True)
    assert not bridge.sync().errors
    assert run(bridge, tmp_path, "release", "plan", release["number"], *STAGED[1:]).exit_code == 0
    rt = bridge.runtime()
    with rt.store.connection() as conn:  # forget the ids: the next run must look them up
        conn.exec_driver_sql("UPDATE plan_items SET ids = '{}', keys = '{}'")
    again = run(bridge, tmp_path, "release", "plan", release["number"], *STAGED[1:], "--json")
    assert again.exit_code == 0, again.output
    assert all(made == [] for made in json.loads(again.output)["created"].values())
    assert len(bridge.sn.list("rm_task")) == 7


def test_task_states_sync_both_ways_and_open_tasks_block_the_go_live(bridge, tmp_path: Path) -> None:
    release, _ = seed_release(bridge, approved=True)
    assert not bridge.sync().errors
    number = release["number"]
    assert run(bridge, tmp_path, "release", "plan", number, "--model", "standard").exit_code == 0
    version = jira_version(bridge, "Billing 9.0")

    bridge.jira.update_version(version["id"], released=True)
    assert not bridge.sync().errors
    assert jira_version(bridge, "Billing 9.0")["released"] is False  # put back: tasks are open
    [veto] = bridge.runtime().store.vetoes(release_key=number)
    assert "task Prepare / Freeze the release branch is open" in veto.reason

    freeze = next(i for i in plan_issues(bridge) if i["fields"]["summary"] == "Freeze the release branch")
    bridge.jira.transition(freeze["key"], "Done")  # done in Jira ...
    tests = next(t for t in bridge.sn.list("rm_task") if t["short_description"] == "Run the acceptance tests")
    bridge.sn.update("rm_task", tests["sys_id"], state="3")  # ... and in ServiceNow
    assert not bridge.sync().errors
    frozen = next(t for t in bridge.sn.list("rm_task") if t["short_description"] == "Freeze the release branch")
    assert frozen["state"] == "3"  # copied to ServiceNow
    tested = next(i for i in plan_issues(bridge) if i["fields"]["summary"] == "Run the acceptance tests")
    assert tested["fields"]["status"]["name"] == "Done"  # copied to Jira

    bridge.jira.update_version(version["id"], released=True)
    assert not bridge.sync().errors
    assert jira_version(bridge, "Billing 9.0")["released"] is True
    assert bridge.runtime().store.get_record("release", number)["fields"]["state"] == "deployed"


def test_the_go_live_rule_can_be_turned_off(bridge) -> None:
    bridge.sections["deployment"] = {"block_go_live_on_open_tasks": False}
    release, _ = seed_release(bridge, approved=True)
    assert not bridge.sync().errors
    rt = bridge.runtime()
    from bridge.release.models import load_model
    from bridge.release.plan import Planner

    Planner(rt.store, rt.adapters).plan(release["number"], load_model("standard", None), {})
    version = jira_version(bridge, "Billing 9.0")
    bridge.jira.update_version(version["id"], released=True)
    assert not bridge.sync().errors
    assert jira_version(bridge, "Billing 9.0")["released"] is True


def test_dry_run_creates_nothing(bridge, tmp_path: Path) -> None:
    release, _ = seed_release(bridge, approved=True)
    assert not bridge.sync().errors
    result = run(bridge, tmp_path, "release", "plan", release["number"], "--model", "emergency", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would create 6" in result.output
    assert bridge.sn.list("rm_task") == [] and plan_issues(bridge) == []
    assert bridge.runtime().store.plan_items() == []


def test_bad_input_is_one_line_and_exit_2(bridge, tmp_path: Path) -> None:
    release, _ = seed_release(bridge, approved=True)
    assert not bridge.sync().errors
    number = release["number"]
    cases = {
        ("--model", "stagd"): "did you mean 'staged'",
        ("--model", "staged", "--set", "region=eu-west"): "staged.toml:19: {scale} needs a value",
        ("--model", "staged", "--set", "region"): "write KEY=VALUE",
        ("--model", "standard", "--set", "regoin=x"): "uses no variable 'regoin'",
    }
    for args, message in cases.items():
        result = run(bridge, tmp_path, "release", "plan", number, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert run(bridge, tmp_path, "release", "plan", "NOPE", "--model", "standard").exit_code == 2


def test_the_daemon_copies_task_states_in_its_sweep(bridge, tmp_path: Path) -> None:
    """`relbridge run` copies plan task states too: its sweep (one daemon at a time, under
    the sweep's lease) moves a task done in Jira to done in ServiceNow."""
    import threading

    from bridge.daemon.inbox import Inbox
    from bridge.daemon.metrics import Metrics
    from bridge.daemon.poll import Sweeper

    release, _ = seed_release(bridge, approved=True)
    assert not bridge.sync().errors
    assert run(bridge, tmp_path, "release", "plan", release["number"], "--model", "standard").exit_code == 0
    freeze = next(i for i in plan_issues(bridge) if i["fields"]["summary"] == "Freeze the release branch")
    bridge.jira.transition(freeze["key"], "Done")
    rt = bridge.runtime()
    sweeper = Sweeper(rt.engine, Inbox(rt.store), Metrics(), holder="test", interval=60, min_age=0,
                      stopping=threading.Event())

    sweeper.work()

    frozen = next(t for t in bridge.sn.list("rm_task") if t["short_description"] == "Freeze the release branch")
    assert frozen["state"] == "3"
