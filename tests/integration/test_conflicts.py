"""Concurrent edits, ownership, unmappable values (issue: sync engine)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bridge.mapping.loader import load_mappings


def synced_change(bridge):
    change = bridge.sn.create("change_request", short_description="Patch kernel", state="-5",
                              approval="not requested", type="normal", risk="3")
    assert not bridge.sync().errors
    [issue] = bridge.jira.search('project = OPS AND issuetype = "Change"')
    return change, issue


@pytest.mark.parametrize("policy, winner", [
    ("last_writer_wins", "jira"), ("servicenow_wins", "servicenow"), ("jira_wins", "jira"),
])
def test_concurrent_edit_is_a_conflict_resolved_by_policy(bridge, policy: str, winner: str) -> None:
    bridge.sections["sync"] = {"conflict_policy": policy}
    change, issue = synced_change(bridge)
    bridge.sn.update("change_request", change["sys_id"], short_description="Patch kernel (ServiceNow)")
    time.sleep(1.1)  # ServiceNow times have one-second resolution: make Jira's edit clearly later
    bridge.jira.update_issue(issue["key"], summary="Patch kernel (Jira)")

    report = bridge.sync()
    assert not report.errors
    assert report.total("conflicts") == 1
    expected = "Patch kernel (Jira)" if winner == "jira" else "Patch kernel (ServiceNow)"
    assert bridge.sn.get("change_request", change["sys_id"])["short_description"] == expected
    assert bridge.jira.issue(issue["key"])["fields"]["summary"] == expected

    rt = bridge.runtime()
    [conflict] = rt.store.conflicts()
    assert (conflict.entity, conflict.key, conflict.field) == ("change", change["number"], "summary")
    assert conflict.servicenow_value == "Patch kernel (ServiceNow)"
    assert conflict.jira_value == "Patch kernel (Jira)"
    assert (conflict.resolution, conflict.resolved_value) == (policy, expected)
    # Settled: the next pass finds nothing to do.
    assert bridge.sync().total("conflicts") == 0


def owned_mappings(tmp_path: Path) -> dict[str, str]:
    """The default mappings with the change summary owned by ServiceNow."""
    import importlib.resources

    files = importlib.resources.files("bridge.default_mappings")
    paths = {}
    for system in ("servicenow", "jira"):
        text = (files / f"{system}.toml").read_text()
        text = text.replace("[change.fields.summary]\n", '[change.fields.summary]\nowner = "servicenow"\n', 1)
        path = tmp_path / f"{system}.toml"
        path.write_text(text)
        paths[system] = str(path)
    load_mappings(Path(paths["servicenow"]), Path(paths["jira"]))  # valid as edited
    return paths


def test_field_owned_by_one_system_is_restored_when_the_other_edits_it(bridge, tmp_path: Path) -> None:
    bridge.sections["mappings"] = owned_mappings(tmp_path)
    change, issue = synced_change(bridge)
    bridge.jira.update_issue(issue["key"], summary="Renamed in Jira")
    assert not bridge.sync().errors
    assert bridge.jira.issue(issue["key"])["fields"]["summary"] == "Patch kernel"  # put back
    assert bridge.sn.get("change_request", change["sys_id"])["short_description"] == "Patch kernel"

    bridge.sn.update("change_request", change["sys_id"], short_description="Renamed in ServiceNow")
    assert not bridge.sync().errors
    assert bridge.jira.issue(issue["key"])["fields"]["summary"] == "Renamed in ServiceNow"


def test_unmappable_value_is_reported_and_skipped_whole_the_rest_lands(bridge) -> None:
    good = bridge.sn.create("change_request", short_description="Good change", state="-5",
                            approval="not requested", type="normal", risk="3")
    bad = bridge.sn.create("change_request", short_description="Odd state", state="99",
                           approval="approved", type="normal", risk="3")
    report = bridge.sync()
    assert len(report.errors) == 1 and bad["number"] in report.errors[0] and "'99'" in report.errors[0]
    summaries = [i["fields"]["summary"] for i in bridge.jira.search('project = OPS AND issuetype = "Change"')]
    assert summaries == ["Good change"]  # nothing of the bad record, not even its summary

    rt = bridge.runtime()
    assert rt.store.get_record("change", bad["number"]) is None
    [error] = rt.store.errors()
    assert (error.system, error.entity, error.ext_id) == ("servicenow", "change", bad["sys_id"])

    # Once fixed at the source, it syncs and the error clears.
    bridge.sn.update("change_request", bad["sys_id"], state="-4")
    assert not bridge.sync().errors
    assert len(bridge.jira.search('project = OPS AND issuetype = "Change"')) == 2
    assert rt.store.errors() == []
    assert good["number"]
