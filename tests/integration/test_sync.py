"""End-to-end two-way sync through the real adapters and simulators (issue: sync engine)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.integration.helpers import clear_log, writes


def seed_servicenow(bridge) -> dict:
    sn = bridge.sn
    release = sn.create("rm_release", short_description="Payments 2026.4", state="1",
                        start_date="2026-04-01 08:00:00", end_date="2026-04-30 17:00:00")
    changes = [
        sn.create("change_request", short_description=f"Deploy payments API step {i}", state="-5",
                  approval="not requested", type="normal", risk="3")
        for i in (1, 2)
    ]
    for change in changes:
        sn.link(release, change)
    incident = sn.create("incident", short_description="Card payments failing", state="1", priority="2",
                         caused_by=changes[0]["sys_id"])
    return {"release": release, "changes": changes, "incident": incident}


def jira_issues(bridge, issuetype: str) -> list[dict]:
    return bridge.jira.search(f'project = OPS AND issuetype = "{issuetype}"')


def test_servicenow_to_jira_with_links(bridge) -> None:
    seeded = seed_servicenow(bridge)
    report = bridge.sync()
    assert not report.errors

    versions = bridge.jira.versions()
    assert [v["name"] for v in versions] == ["Payments 2026.4"]
    version = versions[0]
    assert version["released"] is False
    assert version["releaseDate"] == "2026-04-30" and version["startDate"] == "2026-04-01"

    changes = jira_issues(bridge, "Change")
    assert sorted(i["fields"]["summary"] for i in changes) == ["Deploy payments API step 1", "Deploy payments API step 2"]
    for issue in changes:
        assert [v["id"] for v in issue["fields"]["fixVersions"]] == [version["id"]]
        assert any(label.startswith("relbridge-CHG") for label in issue["fields"]["labels"])
    incidents = jira_issues(bridge, "Incident")
    assert len(incidents) == 1
    incident = incidents[0]
    assert [v["id"] for v in incident["fields"]["versions"]] == [version["id"]]
    first_change = next(i for i in changes if i["fields"]["summary"].endswith("1"))
    linked = [link.get("inwardIssue", link.get("outwardIssue"))["key"] for link in incident["fields"]["issuelinks"]]
    assert linked == [first_change["key"]]

    rt = bridge.runtime()
    view = rt.engine.release_view(seeded["release"]["number"])
    assert sorted(c.key for c in view["changes"]) == sorted(c["number"] for c in seeded["changes"])
    assert [i.key for i in view["incidents"]] == [seeded["incident"]["number"]]
    assert view["incidents"][0].caused_by_release == seeded["release"]["number"]


def test_jira_to_servicenow_with_links(bridge) -> None:
    jira = bridge.jira
    version = jira.create_version("Checkout 7.1", startDate="2026-05-04", releaseDate="2026-05-29")
    change = jira.create_issue("Change", "Roll out checkout service", fixVersions=[{"id": version["id"]}])
    incident = jira.create_issue("Incident", "Checkout timeouts", versions=[{"id": version["id"]}])
    jira.link("Problem/Incident", change["key"], incident["key"])  # the change causes the incident

    report = bridge.sync()
    assert not report.errors

    releases = bridge.sn.list("rm_release")
    assert [r["short_description"] for r in releases] == ["Checkout 7.1"]
    release = releases[0]
    assert release["end_date"].startswith("2026-05-29") and release["start_date"].startswith("2026-05-04")
    changes = bridge.sn.list("change_request")
    assert [c["short_description"] for c in changes] == ["Roll out checkout service"]
    assert changes[0]["correlation_id"] == change["key"]
    links = bridge.sn.list("rm_m2m_release_task")
    assert [(row["release"], row["task"]) for row in links] == [(release["sys_id"], changes[0]["sys_id"])]
    incidents = bridge.sn.list("incident")
    assert len(incidents) == 1 and incidents[0]["caused_by"] == changes[0]["sys_id"]


@pytest.mark.parametrize("timezone, expected", [("America/Los_Angeles", "2026-04-30"), ("Pacific/Auckland", "2026-05-01")])
def test_dates_cross_timezones(bridge, timezone: str, expected: str) -> None:
    # 2026-05-01 03:30 UTC is still April 30 in Los Angeles and already May 1 in Auckland.
    bridge.sn.create("rm_release", short_description="Edge of midnight", state="1",
                     start_date="2026-04-20 00:00:00", end_date="2026-05-01 03:30:00")
    report = bridge.sync(jira={"timezone": timezone})
    assert not report.errors
    assert bridge.jira.versions()[0]["releaseDate"] == expected


def test_second_sync_writes_nothing(bridge) -> None:
    seed_servicenow(bridge)
    bridge.jira.create_version("From Jira 1.0")
    assert not bridge.sync().errors
    assert not bridge.sync().errors  # echoes of the first sync's writes settle here
    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    report = bridge.sync()
    assert not report.errors
    assert writes(bridge.sims.servicenow_url) == []
    assert writes(bridge.sims.jira_url) == []
    assert report.total("created") == report.total("updated") == 0


def test_lost_store_relinks_without_duplicates(bridge, store_url: str, tmp_path: Path) -> None:
    if not store_url.startswith("sqlite"):
        pytest.skip("deleting the store is shown on SQLite; PostgreSQL runs the same engine code")
    seed_servicenow(bridge)
    jira_version = bridge.jira.create_version("Jira-born 2.0")
    bridge.jira.create_issue("Change", "Jira-born change", fixVersions=[{"id": jira_version["id"]}])
    assert not bridge.sync().errors
    counts = (len(bridge.jira.versions()), len(jira_issues(bridge, "Change")), len(jira_issues(bridge, "Incident")),
              len(bridge.sn.list("rm_release")), len(bridge.sn.list("change_request")), len(bridge.sn.list("incident")),
              len(bridge.sn.list("rm_m2m_release_task")))

    db = Path(store_url.removeprefix("sqlite:///"))
    shutil.rmtree(db.parent)
    report = bridge.sync()
    assert not report.errors
    after = (len(bridge.jira.versions()), len(jira_issues(bridge, "Change")), len(jira_issues(bridge, "Incident")),
             len(bridge.sn.list("rm_release")), len(bridge.sn.list("change_request")), len(bridge.sn.list("incident")),
             len(bridge.sn.list("rm_m2m_release_task")))
    assert after == counts


def test_sync_once_command_prints_a_summary_and_exit_codes(bridge, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bridge.cli import main

    seed_servicenow(bridge)
    config = tmp_path / "config.toml"
    config.write_text(f'[servicenow]\nurl = "{bridge.sims.servicenow_url}"\n'
                      f'[jira]\nurl = "{bridge.sims.jira_url}"\n[store]\nurl = "{bridge.store_url}"\n')
    result = CliRunner().invoke(main, ["sync", "--once", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "entity/system" in result.output and "created" in result.output
    assert "change/servicenow" in result.output

    bridge.sn.create("incident", short_description="Unknown priority", state="1", priority="9")
    result = CliRunner().invoke(main, ["sync", "--once", "--json", "--config", str(config)])
    assert result.exit_code == 1  # some records could not be synced; the rest landed
    summary = json.loads(result.stdout)
    [error] = summary["errors"]
    assert "incident" in error and "priority" in error

    changes = bridge.sn.list("change_request")
    bridge.sn.delete("change_request", changes[0]["sys_id"])
    result = CliRunner().invoke(main, ["sync", "--once", "--reconcile", "--json", "--config", str(config)])
    summary = json.loads(result.stdout)
    assert summary["by_entity"]["change/servicenow"]["deleted"] == 1


def test_every_api_call_is_reported_to_the_runtime(bridge) -> None:
    seed_servicenow(bridge)
    rt = bridge.runtime()
    calls: list[tuple[str, str, int]] = []
    rt.on_api_call = lambda system, method, status: calls.append((system, method, status))
    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    assert not rt.engine.sync_once().errors
    from tests.integration.helpers import requests_log

    assert sum(1 for c in calls if c[0] == "servicenow") == requests_log(bridge.sims.servicenow_url)["count"]
    assert sum(1 for c in calls if c[0] == "jira") == requests_log(bridge.sims.jira_url)["count"]
    assert ("jira", "POST", 201) in calls and ("servicenow", "GET", 200) in calls


def test_an_incident_caused_by_an_issue_that_is_no_change_keeps_the_cause_unset(bridge) -> None:
    """A Problem/Incident link to an issue of another type (here another incident) is not a
    change: no ServiceNow change is made from it, the pass does not fail, and both incidents sync."""
    cause = bridge.jira.create_issue("Incident", "Upstream outage")
    effect = bridge.jira.create_issue("Incident", "Checkout errors")
    bridge.jira.link("Problem/Incident", effect["key"], cause["key"])
    report = bridge.sync()
    assert not report.errors
    assert bridge.sn.list("change_request") == []
    incidents = {i["short_description"]: i for i in bridge.sn.list("incident")}
    assert set(incidents) == {"Upstream outage", "Checkout errors"}
    assert incidents["Checkout errors"]["caused_by"] == ""
