"""The safety brake end to end: destructive writes past [safety] max_destructive_writes are
held (kept, listed, not retried), applied by `held release` or `--allow-destructive`, and a
newer edit supersedes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from bridge.cli import main
from bridge.engine.envelope import SyncReport
from bridge.engine.safety import release as release_held
from tests.integration.helpers import clear_log, writes


def closed_releases(bridge, count: int) -> list[dict]:
    """Releases closed in ServiceNow, synced: released versions in Jira."""
    releases = [bridge.sn.create("rm_release", short_description=f"Closed {n}", state="3",
                                 start_date="2026-03-01 08:00:00", end_date="2026-03-20 17:00:00")
                for n in range(count)]
    assert not bridge.sync().errors
    assert all(v["released"] for v in bridge.jira.versions())
    return releases


def roll_back_in_servicenow(bridge, releases: list[dict]) -> None:
    for release in releases:  # a person (or a script gone wrong) closes them all incomplete
        bridge.sn.update("rm_release", release["sys_id"], state="4")


def released(bridge) -> dict[str, bool]:
    return {v["name"]: v["released"] for v in bridge.jira.versions()}


def config_file(bridge, tmp_path: Path, **safety: object) -> Path:
    lines = [f'[servicenow]\nurl = "{bridge.sims.servicenow_url}"', f'[jira]\nurl = "{bridge.sims.jira_url}"',
             f'[store]\nurl = "{bridge.store_url}"', "[sync]\noverlap_seconds = 5"]
    if safety:
        lines.append("[safety]\n" + "\n".join(f"{k} = {v}" for k, v in safety.items()))
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(*args: str) -> object:
    return CliRunner().invoke(main, list(args))


def test_a_pass_writes_up_to_the_bound_and_holds_the_rest_without_retrying(bridge) -> None:
    bridge.sections["safety"] = {"max_destructive_writes": 2}
    releases = closed_releases(bridge, 4)
    roll_back_in_servicenow(bridge, releases)

    rt = bridge.runtime()
    report = rt.engine.sync_once()
    assert not report.errors
    assert report.total("held") == 2 and len(rt.engine.brake.held) == 2
    assert sorted(released(bridge).values()) == [False, False, True, True]  # two rolled back, two held
    held = rt.store.held_writes()
    assert [(h.entity, h.system, h.field, h.kind, h.old, h.new) for h in held] == [
        ("release", "jira", "state", "rollback", "deployed", "rolled_back")] * 2
    assert {h.ext_key for h in held} == {name for name, on in released(bridge).items() if on}
    for row in held:  # taken off the record's pending writes
        assert "jira" not in rt.store.get_record("release", row.key).get("pending", {})

    # The next pass neither retries nor re-holds them: nothing is written, nothing new held.
    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    rt = bridge.runtime()
    report = rt.engine.sync_once()
    assert report.total("held") == 0 and rt.engine.brake.held == []
    assert writes(bridge.sims.jira_url) == [] and writes(bridge.sims.servicenow_url) == []
    assert [h.id for h in rt.store.held_writes()] == [h.id for h in held]


def test_sync_once_exits_1_naming_the_brake_then_held_list_release_and_allow_destructive(
        bridge, tmp_path: Path) -> None:
    releases = closed_releases(bridge, 3)
    roll_back_in_servicenow(bridge, releases)
    config = str(config_file(bridge, tmp_path, max_destructive_writes=1))

    result = cli("sync", "--once", "--config", config)
    assert result.exit_code == 1, result.output
    assert "safety brake: held 2 destructive write(s)" in result.stderr
    assert "max_destructive_writes = 1" in result.stderr and "relbridge held list" in result.stderr

    listed = cli("held", "list", "--json", "--config", config)
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["entity"], r["system"], r["field"], r["old"], r["new"], r["kind"]) for r in rows] == [
        ("release", "jira", "state", "deployed", "rolled_back", "rollback")] * 2
    text = cli("held", "list", "--config", config)
    assert f"{rows[0]['id']:>5}  release" in text.stdout and "deployed -> rolled_back" in text.stdout
    status = json.loads(cli("status", "--json", "--config", config).stdout)
    assert [r["id"] for r in status["held_writes"]] == [r["id"] for r in rows]
    assert "held destructive writes: 2" in cli("status", "--config", config).stdout

    # Nothing new held: the next pass exits 0 and says what still waits.
    again = cli("sync", "--once", "--config", config)
    assert again.exit_code == 0 and "2 destructive write(s) held earlier" in again.stderr

    first = rows[0]
    released_one = cli("held", "release", str(first["id"]), "--config", config)
    assert released_one.exit_code == 0, released_one.output
    assert "applied 1" in released_one.stdout
    assert released(bridge)[first["ref"]] is False
    assert [r["id"] for r in json.loads(cli("held", "list", "--json", "--config", config).stdout)] == [rows[1]["id"]]

    allowed = cli("sync", "--once", "--allow-destructive", "--config", config)
    assert allowed.exit_code == 0, allowed.output
    assert not any(released(bridge).values())
    assert json.loads(cli("held", "list", "--json", "--config", config).stdout) == []
    assert cli("held", "list", "--config", config).stdout.strip() == "no held writes"


@pytest.mark.parametrize("args, message", [
    ((), "give held write ids or --all"),
    (("7", "--all"), "give held write ids or --all"),
    (("424242",), "no held write 424242"),
])
def test_held_release_bad_input_is_exit_2(bridge, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = cli("held", "release", *args, "--config", str(config_file(bridge, tmp_path)))
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


def test_a_newer_edit_of_the_field_supersedes_the_held_write_other_edits_keep_it(bridge) -> None:
    bridge.sections["safety"] = {"max_destructive_writes": 0}
    [release] = closed_releases(bridge, 1)
    roll_back_in_servicenow(bridge, [release])
    assert bridge.sync().total("held") == 1
    rt = bridge.runtime()
    [held] = rt.store.held_writes()

    # Another field changes: written across, the held state write stays held.
    bridge.sn.update("rm_release", release["sys_id"], description="Rolled back after the outage")
    assert not bridge.sync().errors
    version = next(v for v in bridge.jira.versions() if v["name"] == "Closed 0")
    assert version["description"] == "Rolled back after the outage" and version["released"] is True
    assert [h.id for h in rt.store.held_writes()] == [held.id]

    # A person archives the version in Jira: their newer edit of the state wins, the hold ends.
    bridge.jira.update_version(version["id"], archived=True)
    assert not bridge.sync().errors
    assert rt.store.held_writes() == []
    assert rt.store.get_record("release", release["number"])["fields"]["state"] == "cancelled"
    assert bridge.sn.get("rm_release", release["sys_id"])["state"] == "7"
    assert next(v for v in bridge.jira.versions() if v["name"] == "Closed 0")["released"] is True


def test_a_rollback_relbridge_derives_counts_as_destructive(bridge) -> None:
    bridge.sections["safety"] = {"max_destructive_writes": 1}
    release = bridge.sn.create("rm_release", short_description="Billing 9.0", state="1",
                               start_date="2026-06-01 08:00:00", end_date="2026-06-20 17:00:00")
    change = bridge.sn.create("change_request", short_description="Deploy billing 9", state="-2",
                              approval="approved", type="normal", risk="3")
    bridge.sn.link(release, change)
    assert not bridge.sync().errors
    version = next(v for v in bridge.jira.versions() if v["name"] == "Billing 9.0")
    bridge.jira.update_version(version["id"], released=True)
    assert not bridge.sync().errors
    assert bridge.runtime().store.get_record("release", release["number"])["fields"]["state"] == "deployed"

    # The change fails: relbridge derives the release's rollback, to be written to both systems.
    bridge.sn.update("change_request", change["sys_id"], state="3", close_code="unsuccessful")
    report = bridge.sync()
    assert report.total("held") == 1
    rt = bridge.runtime()
    assert rt.store.get_record("release", release["number"])["fields"]["state"] == "rolled_back"
    [held] = rt.store.held_writes()
    assert (held.key, held.field, held.kind, held.new) == (release["number"], "state", "rollback", "rolled_back")
    written = {"jira": not bridge.jira.versions()[0]["released"],
               "servicenow": bridge.sn.get("rm_release", release["sys_id"])["state"] == "4"}
    assert written == {"jira": held.system != "jira", "servicenow": held.system != "servicenow"}


def test_a_propagated_delete_past_the_bound_is_held_then_released(bridge) -> None:
    change = bridge.sn.create("change_request", short_description="Short-lived", state="-5",
                              approval="not requested", type="normal", risk="3")
    bridge.sections["sync"] = {"propagate_deletes": True}
    bridge.sections["safety"] = {"max_destructive_writes": 0}
    assert not bridge.sync().errors
    [issue] = bridge.jira.search('project = OPS AND issuetype = "Change"')

    bridge.sn.delete("change_request", change["sys_id"])
    rt = bridge.runtime()
    assert rt.engine.process("servicenow", "change", change["sys_id"]) is None
    assert len(bridge.jira.search('project = OPS AND issuetype = "Change"')) == 1  # held, not deleted
    [held] = rt.store.held_writes()
    assert (held.kind, held.system, held.field, held.ext_key) == ("delete", "jira", "_delete", issue["key"])
    assert rt.store.get_record("change", change["number"]) is not None

    rt = bridge.runtime()
    outcome = release_held(rt.engine, rt.store.held_writes(), SyncReport())
    assert outcome.applied == [held.id] and outcome.still_held == []
    assert bridge.jira.search('project = OPS AND issuetype = "Change"') == []
    assert rt.store.get_record("change", change["number"]) is None
    assert rt.store.held_writes() == []


def test_the_daemon_bounds_per_window_keeps_running_and_reports_held_writes(bridge) -> None:
    from tests.integration.daemon_support import eventually, start_daemon

    releases = closed_releases(bridge, 3)
    daemon = start_daemon(bridge, safety={"max_destructive_writes": 1, "window_seconds": 3600})
    try:
        assert daemon.runtime.engine.brake.per_pass is False
        roll_back_in_servicenow(bridge, releases)
        store = daemon.runtime.store
        eventually(lambda: store.held_count() == 2, what="two rollbacks held")
        assert sorted(released(bridge).values()) == [False, True, True]
        assert daemon.runtime.engine.brake.in_window() == 1
        scrape = requests.get(f"{daemon.receiver.url}/metrics", timeout=10)
        assert "relbridge_held_writes 2.0" in scrape.text.splitlines()
        # Still running: other edits keep flowing.
        bridge.sn.update("rm_release", releases[0]["sys_id"], description="Post-mortem scheduled")
        eventually(lambda: any(v.get("description") == "Post-mortem scheduled" for v in bridge.jira.versions()),
                   what="the description synced")
    finally:
        daemon.stop(timeout=5)


def test_writes_held_for_an_object_deleted_since_end_with_it(bridge) -> None:
    bridge.sections["safety"] = {"max_destructive_writes": 0}
    [release] = closed_releases(bridge, 1)
    roll_back_in_servicenow(bridge, [release])
    assert bridge.sync().total("held") == 1
    version = bridge.jira.versions()[0]
    bridge.jira.session.delete(f"{bridge.jira.api}/version/{version['id']}").raise_for_status()
    rt = bridge.runtime()
    assert rt.engine.process("jira", "release", version["id"]) is None  # read: gone, unlinked
    assert rt.store.held_writes() == []
    assert bridge.sn.get("rm_release", release["sys_id"])["state"] == "4"  # nothing deleted there
