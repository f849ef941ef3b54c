"""`relbridge conflicts list` and `conflicts resolve` against the simulators: a person settles
a conflict, the value reaches both systems once, the history says who, and nothing echoes."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner

from bridge.cli import main
from tests.integration.daemon_support import add_fault, clear_faults
from tests.integration.helpers import clear_log, writes


def config_file(bridge, tmp_path: Path) -> str:
    lines = [f'[servicenow]\nurl = "{bridge.sims.servicenow_url}"', f'[jira]\nurl = "{bridge.sims.jira_url}"',
             f'[store]\nurl = "{bridge.store_url}"', "[sync]\noverlap_seconds = 5"]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def conflicting_change(bridge):
    """A change whose summary was edited on both sides between two passes (Jira last)."""
    change = bridge.sn.create("change_request", short_description="Patch kernel", state="-5",
                              approval="not requested", type="normal", risk="3")
    assert not bridge.sync().errors
    [issue] = bridge.jira.search('project = OPS AND issuetype = "Change"')
    bridge.sn.update("change_request", change["sys_id"], short_description="Patch kernel (ServiceNow)")
    time.sleep(1.1)  # ServiceNow times have one-second resolution: Jira's edit is clearly later
    bridge.jira.update_issue(issue["key"], summary="Patch kernel (Jira)")
    assert bridge.sync().total("conflicts") == 1
    return change, issue


def both_summaries(bridge, change, issue) -> tuple[str, str]:
    return (bridge.sn.get("change_request", change["sys_id"])["short_description"],
            bridge.jira.issue(issue["key"])["fields"]["summary"])


def test_list_shows_record_field_both_values_time_and_policy(bridge, tmp_path: Path) -> None:
    change, issue = conflicting_change(bridge)
    config = config_file(bridge, tmp_path)
    listed = cli("conflicts", "list", "--json", "--config", config)
    assert listed.exit_code == 0, listed.output
    [doc] = json.loads(listed.output)
    assert doc["entity"] == "change" and doc["key"] == change["number"] and doc["field"] == "summary"
    assert doc["refs"] == {"servicenow": change["number"], "jira": issue["key"]}
    assert (doc["servicenow"], doc["jira"]) == ("Patch kernel (ServiceNow)", "Patch kernel (Jira)")
    assert (doc["policy"], doc["kept"], doc["settled"]) == ("last_writer_wins", "Patch kernel (Jira)", None)
    assert doc["at"]
    text = cli("conflicts", "list", "--config", config).output
    assert f"#{doc['id']}" in text and issue["key"] in text and "last_writer_wins" in text


def test_resolve_writes_the_chosen_side_to_both_records_who_and_never_echoes(bridge, tmp_path: Path) -> None:
    change, issue = conflicting_change(bridge)
    assert both_summaries(bridge, change, issue) == ("Patch kernel (Jira)",) * 2  # the policy's choice
    config = config_file(bridge, tmp_path)
    [doc] = json.loads(cli("conflicts", "list", "--json", "--config", config).output)

    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    done = cli("conflicts", "resolve", str(doc["id"]), "--take", "servicenow", "--by", "Ada Lovelace",
               "--config", config)
    assert done.exit_code == 0, done.output
    assert "settled conflict" in done.output and "Ada Lovelace" in done.output
    assert both_summaries(bridge, change, issue) == ("Patch kernel (ServiceNow)",) * 2
    assert len(writes(bridge.sims.servicenow_url)) == 1 and len(writes(bridge.sims.jira_url)) == 1

    rt = bridge.runtime()
    history = [(h.field, h.new, h.source) for h in rt.store.history(entity="change", key=change["number"])]
    assert ("summary", "Patch kernel (ServiceNow)", "person") in history
    settled = [new for field, new, source in history if field == "_settled.summary"]
    assert settled == [{"conflict": doc["id"], "by": "Ada Lovelace", "took": "servicenow",
                        "value": "Patch kernel (ServiceNow)"}]
    assert json.loads(cli("conflicts", "list", "--json", "--config", config).output) == []
    [shown] = json.loads(cli("conflicts", "list", "--all", "--json", "--config", config).output)
    assert shown["settled"]["by"] == "Ada Lovelace" and shown["settled"]["value"] == "Patch kernel (ServiceNow)"

    # The writes' echoes come back on the next pass: recognised, nothing written, no conflict.
    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    report = bridge.sync()
    assert not report.errors and report.total("conflicts") == 0
    assert writes(bridge.sims.servicenow_url) == [] and writes(bridge.sims.jira_url) == []


def test_resolve_with_a_value_of_the_fields_type(bridge, tmp_path: Path) -> None:
    change, issue = conflicting_change(bridge)
    config = config_file(bridge, tmp_path)
    [doc] = json.loads(cli("conflicts", "list", "--json", "--config", config).output)
    done = cli("conflicts", "resolve", str(doc["id"]), "--take", "Patch kernel — agreed ✓", "--config", config)
    assert done.exit_code == 0, done.output
    assert both_summaries(bridge, change, issue) == ("Patch kernel — agreed ✓",) * 2


def test_unknown_settled_and_invalid_are_one_line_and_exit_2(bridge, tmp_path: Path) -> None:
    change, issue = conflicting_change(bridge)
    config = config_file(bridge, tmp_path)
    [doc] = json.loads(cli("conflicts", "list", "--json", "--config", config).output)
    for args, words in (
        (["999", "--take", "jira"], "no conflict 999"),
        ([str(doc["id"]), "--take", ""], "is not a valid change.summary"),
        ([str(doc["id"]), "--take", "x" * 300], "is not a valid change.summary"),
    ):
        result = cli("conflicts", "resolve", *args, "--config", config)
        assert result.exit_code == 2, result.output
        assert words in result.output and len(result.output.strip().splitlines()) == 1
    assert cli("conflicts", "resolve", str(doc["id"]), "--take", "jira", "--config", config).exit_code == 0
    again = cli("conflicts", "resolve", str(doc["id"]), "--take", "servicenow", "--config", config)
    assert again.exit_code == 2 and "settled already" in again.output
    assert both_summaries(bridge, change, issue) == ("Patch kernel (Jira)",) * 2


def test_a_failed_write_after_settling_is_finished_by_the_next_sync_once(bridge, tmp_path: Path) -> None:
    change, issue = conflicting_change(bridge)
    config = config_file(bridge, tmp_path)
    [doc] = json.loads(cli("conflicts", "list", "--json", "--config", config).output)
    add_fault(bridge.sims.jira_url, method="PUT", path=f"/issue/({issue['id']}|{issue['key']})$",
              status=400, times=None)
    failed = cli("conflicts", "resolve", str(doc["id"]), "--take", "servicenow", "--config", config)
    assert failed.exit_code == 1, failed.output
    # Settled and saved, written to ServiceNow; Jira's write is pending, not lost.
    assert both_summaries(bridge, change, issue) == ("Patch kernel (ServiceNow)", "Patch kernel (Jira)")
    assert json.loads(cli("conflicts", "list", "--json", "--config", config).output) == []
    clear_faults(bridge.sims.jira_url)

    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    assert not bridge.sync().errors
    assert both_summaries(bridge, change, issue) == ("Patch kernel (ServiceNow)",) * 2
    assert writes(bridge.sims.servicenow_url) == [] and len(writes(bridge.sims.jira_url)) == 1
    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    assert not bridge.sync().errors and writes(bridge.sims.jira_url) == []


def test_a_difference_held_for_review_at_adoption_is_settled_by_a_person(bridge, tmp_path: Path) -> None:
    from bridge.engine.adoption import HELD
    from tests.integration.test_adoption import tagged_copy

    change = bridge.sn.create("change_request", short_description="Base", state="-5")
    issue = tagged_copy(bridge, change, "Base")
    bridge.jira.update_issue(issue["key"], summary="Base (Jira)")
    bridge.sn.update("change_request", change["sys_id"], short_description="Base (ServiceNow)")
    assert not bridge.sync().errors
    config = config_file(bridge, tmp_path)
    [doc] = json.loads(cli("conflicts", "list", "--json", "--config", config).output)
    assert doc["policy"] == HELD
    assert both_summaries(bridge, change, issue) == ("Base (ServiceNow)", "Base (Jira)")  # nothing written

    done = cli("conflicts", "resolve", str(doc["id"]), "--take", "jira", "--config", config)
    assert done.exit_code == 0, done.output
    assert both_summaries(bridge, change, issue) == ("Base (Jira)",) * 2
    quiet = bridge.sync()
    assert not quiet.errors and quiet.total("conflicts") == 0
    assert both_summaries(bridge, change, issue) == ("Base (Jira)",) * 2
