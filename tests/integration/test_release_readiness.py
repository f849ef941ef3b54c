"""Readiness in the gate, end to end against the simulators: a release whose changes lack
a backout plan or a passed CAB date cannot go live; the veto and ``release show`` name the
change and what it lacks; filling them in lets the release through."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bridge.cli import main
from tests.integration.test_release_management import jira_version, seed_release

READY = {"require_change_fields": ["backout_plan", "test_plan"], "require_cab": True}


def write_config(bridge, tmp_path: Path) -> Path:
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        f'[servicenow]\nurl = "{bridge.sims.servicenow_url}"\n[jira]\nurl = "{bridge.sims.jira_url}"\n'
        f'[store]\nurl = "{bridge.store_url}"\n'
        '[gate]\nrequire_change_fields = ["backout_plan", "test_plan"]\nrequire_cab = true\n'
    )
    return config_file


def test_release_without_backout_plan_or_cab_cannot_go_live(bridge, tmp_path: Path) -> None:
    bridge.sections["gate"] = READY
    release, change = seed_release(bridge, approved=True)
    bridge.sn.update("change_request", change["sys_id"], test_plan="Smoke suite",
                     cab_date_time="2099-01-01 10:00:00")
    assert not bridge.sync().errors
    version = jira_version(bridge, "Billing 9.0")

    bridge.jira.update_version(version["id"], released=True)
    assert not bridge.sync().errors
    assert jira_version(bridge, "Billing 9.0")["released"] is False  # put back: not ready
    [veto] = bridge.runtime().store.vetoes(release_key=release["number"])
    assert f"{change['number']} has no backout_plan" in veto.reason
    assert f"{change['number']}: cab_date 2099-01-01T10:00:00Z has not passed" in veto.reason

    shown = CliRunner().invoke(main, ["release", "show", release["number"], "--json",
                                      "--config", str(write_config(bridge, tmp_path))])
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.output)
    assert document["authorized"] is True and document["ready"] is False
    [listed] = document["changes"]
    assert listed["readiness"] == ["no backout_plan", "cab_date 2099-01-01T10:00:00Z has not passed"]
    text = CliRunner().invoke(main, ["release", "show", release["number"],
                                     "--config", str(write_config(bridge, tmp_path))])
    assert "not ready: no backout_plan" in text.output

    bridge.sn.update("change_request", change["sys_id"], backout_plan="Redeploy 8.4",
                     cab_date_time="2026-01-05 10:00:00")
    assert not bridge.sync().errors
    bridge.jira.update_version(version["id"], released=True)
    assert not bridge.sync().errors
    assert jira_version(bridge, "Billing 9.0")["released"] is True
    rt = bridge.runtime()
    assert rt.store.get_record("release", release["number"])["fields"]["state"] == "deployed"


def test_readiness_is_off_by_default(bridge) -> None:
    release, _ = seed_release(bridge, approved=True)
    assert not bridge.sync().errors
    version = jira_version(bridge, "Billing 9.0")
    bridge.jira.update_version(version["id"], released=True)
    assert not bridge.sync().errors
    assert jira_version(bridge, "Billing 9.0")["released"] is True


def test_unknown_required_field_is_one_line_exit_2(bridge, tmp_path: Path) -> None:
    config_file = write_config(bridge, tmp_path)
    config_file.write_text(config_file.read_text().replace('"test_plan"]', '"tst_plan"]'))
    result = CliRunner().invoke(main, ["release", "show", "X", "--config", str(config_file)])
    assert result.exit_code == 2
    assert "gate.require_change_fields" in result.output and "did you mean 'test_plan'" in result.output


def test_required_fields_come_from_the_environment_too(bridge, tmp_path: Path, monkeypatch) -> None:
    config_file = write_config(bridge, tmp_path)
    monkeypatch.setenv("RELBRIDGE_GATE__REQUIRE_CHANGE_FIELDS", '["nope"]')
    result = CliRunner().invoke(main, ["release", "show", "X", "--config", str(config_file)])
    assert result.exit_code == 2
    assert "RELBRIDGE_GATE__REQUIRE_CHANGE_FIELDS" in result.output
