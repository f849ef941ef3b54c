"""Release management end to end: lifecycle hooks seen by a config-listed plugin, the
authorization gate, rollback, and KPIs over what the sync recorded."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.cli import main

PLUGIN = '''
from bridge import hookimpl

SEEN = []


@hookimpl
def relbridge_release_state_changed(release, old, new, source):
    SEEN.append(("state_changed", release.key, old, new, source))


@hookimpl
def relbridge_release_deployed(release, source):
    SEEN.append(("deployed", release.key, source))


@hookimpl
def relbridge_release_rolled_back(release, source):
    SEEN.append(("rolled_back", release.key, source))
'''


@pytest.fixture
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A plugin module importable by name, listed in [plugins] modules like a company's would be."""
    name = f"recorder_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def seed_release(bridge, *, approved: bool):
    release = bridge.sn.create("rm_release", short_description="Billing 9.0", state="1",
                               start_date="2026-06-01 08:00:00", end_date="2026-06-20 17:00:00")
    change = bridge.sn.create("change_request", short_description="Deploy billing 9", state="-2" if approved else "-4",
                              approval="approved" if approved else "requested", type="normal", risk="3")
    bridge.sn.link(release, change)
    return release, change


def jira_version(bridge, name: str) -> dict:
    return next(v for v in bridge.jira.versions() if v["name"] == name)


def authorize_deploy_roll_back(key: str) -> list[tuple[str, ...]]:
    """What the recorder sees when a release is authorized by its change, released in Jira
    and then unreleased: each move once, with old, new and source (sync and daemon alike)."""
    return [
        ("state_changed", key, "planned", "authorized", "relbridge"),
        ("state_changed", key, "authorized", "deployed", "jira"),
        ("deployed", key, "jira"),
        ("state_changed", key, "deployed", "rolled_back", "jira"),
        ("rolled_back", key, "jira"),
    ]


def test_plugin_sees_each_state_change_once_with_old_new_and_source(bridge, recorder: str) -> None:
    import importlib

    bridge.sections["plugins"] = {"modules": [recorder]}
    release, change = seed_release(bridge, approved=False)
    assert not bridge.sync().errors

    bridge.sn.update("change_request", change["sys_id"], approval="approved", state="-2")
    assert not bridge.sync().errors  # derived: the release is now authorized

    version = jira_version(bridge, "Billing 9.0")
    bridge.jira.update_version(version["id"], released=True)
    assert not bridge.sync().errors  # Jira released it: deployed

    bridge.jira.update_version(version["id"], released=False)
    assert not bridge.sync().errors  # unreleased after going live: rolled back
    assert not bridge.sync().errors  # nothing new: no repeated notifications

    seen = importlib.import_module(recorder).SEEN
    key = release["number"]
    assert seen == authorize_deploy_roll_back(key)
    # The rollback reached ServiceNow, and the release's change was marked unsuccessful.
    assert bridge.sn.get("rm_release", release["sys_id"])["state"] == "4"
    assert bridge.sn.get("change_request", change["sys_id"])["close_code"] == "unsuccessful"


def test_gate_reverts_unauthorized_release_then_lets_it_through(bridge, tmp_path: Path) -> None:
    release, change = seed_release(bridge, approved=False)
    assert not bridge.sync().errors
    version = jira_version(bridge, "Billing 9.0")

    bridge.jira.update_version(version["id"], released=True)
    assert not bridge.sync().errors
    assert jira_version(bridge, "Billing 9.0")["released"] is False  # put back by the gate
    assert bridge.sn.get("rm_release", release["sys_id"])["state"] == "1"

    config_file = tmp_path / "config.toml"
    config_file.write_text(
        f'[servicenow]\nurl = "{bridge.sims.servicenow_url}"\n[jira]\nurl = "{bridge.sims.jira_url}"\n'
        f'[store]\nurl = "{bridge.store_url}"\n'
    )
    shown = CliRunner().invoke(main, ["release", "show", "Billing 9.0", "--json", "--config", str(config_file)])
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.output)
    [veto] = document["vetoes"]
    assert (veto["old"], veto["new"], veto["source"]) == ("planned", "deployed", "jira")
    assert change["number"] in veto["reason"] and "not approved" in veto["reason"]
    assert document["authorized"] is False
    assert document["missing_for_authorization"] == [
        f"{change['number']} is not approved (requested)",
        f"{change['number']} is in assess, needs scheduled or later",
    ]

    bridge.sn.update("change_request", change["sys_id"], approval="approved", state="-2")
    assert not bridge.sync().errors
    bridge.jira.update_version(version["id"], released=True)
    assert not bridge.sync().errors
    assert jira_version(bridge, "Billing 9.0")["released"] is True
    assert bridge.sn.get("rm_release", release["sys_id"])["state"] == "2"  # deployed is "2" in ServiceNow
    assert bridge.runtime().store.vetoes(release_key=release["number"]) != []  # the first veto stays on record


def test_gate_warn_policy_records_but_lets_the_move_stand(bridge) -> None:
    bridge.sections["gate"] = {"policy": "warn"}
    release, _ = seed_release(bridge, approved=False)
    assert not bridge.sync().errors
    version = jira_version(bridge, "Billing 9.0")
    bridge.jira.update_version(version["id"], released=True)
    assert not bridge.sync().errors
    assert jira_version(bridge, "Billing 9.0")["released"] is True
    rt = bridge.runtime()
    assert rt.store.get_record("release", release["number"])["fields"]["state"] == "deployed"
    assert len(rt.store.vetoes(release_key=release["number"])) == 1


def test_kpi_command_reports_what_the_sync_recorded(bridge, tmp_path: Path) -> None:
    release, change = seed_release(bridge, approved=True)
    bridge.sn.create("incident", short_description="Invoices missing", state="1", priority="1",
                     caused_by=change["sys_id"])
    assert not bridge.sync().errors
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        f'[servicenow]\nurl = "{bridge.sims.servicenow_url}"\n[jira]\nurl = "{bridge.sims.jira_url}"\n'
        f'[store]\nurl = "{bridge.store_url}"\n'
    )
    runner = CliRunner()
    result = runner.invoke(main, ["kpi", "--format", "json", "--since", "2026-06-01", "--until", "2026-06-30",
                                  "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    kpis = json.loads(result.output)
    assert kpis["releases"] == 1
    assert kpis["incidents_caused_total"] == 1
    assert kpis["incidents_by_release"]["Billing 9.0"]["by_priority"] == {"1": 1}
    csv_out = runner.invoke(main, ["kpi", "--format", "csv", "--config", str(config_file)])
    assert csv_out.exit_code == 0 and "incidents_caused_total" in csv_out.output
    report = tmp_path / "kpi.html"
    html_out = runner.invoke(main, ["kpi", "--html", str(report), "--config", str(config_file)])
    assert html_out.exit_code == 0, html_out.output
    page = report.read_text()
    assert "<svg" in page and "Billing 9.0" in page and "http://" not in page and "https://" not in page
    bad = runner.invoke(main, ["kpi", "--since", "2026-07-01", "--until", "2026-06-01", "--config", str(config_file)])
    assert bad.exit_code == 2 and "after its end" in bad.output and "Traceback" not in bad.output


def test_plugin_sees_the_same_sequence_in_the_daemon(bridge, recorder: str) -> None:
    import importlib

    from tests.integration.daemon_support import eventually, start_daemon

    release, change = seed_release(bridge, approved=False)
    daemon = start_daemon(bridge, plugins={"modules": [recorder]})
    store = daemon.runtime.store
    key = release["number"]

    def state() -> str | None:
        data = store.get_record("release", key)
        return data["fields"]["state"] if data else None

    try:
        eventually(lambda: state() == "planned" and bridge.jira.versions(), what="release synced to Jira")
        bridge.sn.update("change_request", change["sys_id"], approval="approved", state="-2")
        eventually(lambda: state() == "authorized", what="derived authorized")
        version = jira_version(bridge, "Billing 9.0")
        bridge.jira.update_version(version["id"], released=True)
        eventually(lambda: state() == "deployed", what="deployed from Jira")
        bridge.jira.update_version(version["id"], released=False)
        eventually(lambda: state() == "rolled_back", what="rolled back from Jira")
        eventually(lambda: bridge.sn.get("rm_release", release["sys_id"])["state"] == "4", what="rollback in ServiceNow")
    finally:
        daemon.stop()

    seen = importlib.import_module(recorder).SEEN
    assert seen == authorize_deploy_roll_back(key)


def test_no_record_lock_is_held_while_another_record_is_locked(bridge, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lock-order safety: links, derived states and rollback marking lock other records only
    after the current record's lock is released (two workers cannot deadlock)."""
    from bridge.engine.locks import RecordLocks

    depths: list[int] = []
    original = RecordLocks.hold

    def watching(self, entity: str, key: str):
        depths.append(self._state.records)
        return original(self, entity, key)

    monkeypatch.setattr(RecordLocks, "hold", watching)
    release, change = seed_release(bridge, approved=True)
    bridge.sn.create("incident", short_description="Broken", state="1", priority="2", caused_by=change["sys_id"])
    assert not bridge.sync().errors
    version = jira_version(bridge, "Billing 9.0")
    bridge.jira.update_version(version["id"], released=True)
    assert not bridge.sync().errors
    bridge.jira.update_version(version["id"], released=False)  # rollback: marks the change too
    assert not bridge.sync().errors
    assert depths and set(depths) == {0}
