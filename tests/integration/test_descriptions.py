"""Descriptions of changes and incidents cross both ways against the simulators: plain text
in ServiceNow, wiki markup in Jira (REST v2), stable over round trips (no growth, no
flapping), long texts and unicode included."""

from __future__ import annotations

from tests.integration.helpers import clear_log, writes

PLAIN = "Steps:\n- drain node *a* (on-call: _bob_)\nh1. not a heading\n{code} stays [as typed] \\o/ ✓ 🚀 日本語"


def synced_pair(bridge, **fields):
    change = bridge.sn.create("change_request", short_description="Patch kernel", state="-5",
                              approval="not requested", type="normal", risk="3", **fields)
    assert not bridge.sync().errors
    [issue] = bridge.jira.search('project = OPS AND issuetype = "Change"')
    return change, issue


def quiet_pass(bridge) -> None:
    """A pass after the writes: their echoes come back and nothing more is written."""
    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    assert not bridge.sync().errors
    assert writes(bridge.sims.servicenow_url) == [] and writes(bridge.sims.jira_url) == []


def test_plain_text_crosses_to_jira_shows_as_typed_and_comes_back_unchanged(bridge) -> None:
    change, issue = synced_pair(bridge, description=PLAIN)
    wiki = bridge.jira.issue(issue["key"])["fields"]["description"]
    assert wiki != PLAIN and "\\*a*" in wiki and "h1\\. not" in wiki  # escaped, shows as typed
    quiet_pass(bridge)
    quiet_pass(bridge)
    assert bridge.sn.get("change_request", change["sys_id"])["description"] == PLAIN


def test_markup_written_in_jira_reaches_servicenow_as_plain_text_once(bridge) -> None:
    change, issue = synced_pair(bridge)
    bridge.jira.update_issue(issue["key"], description="h2. Plan\n*Friday* 18:00, see [runbook|https://wiki.example/rb]")
    assert not bridge.sync().errors
    assert bridge.sn.get("change_request", change["sys_id"])["description"] == \
        "Plan\nFriday 18:00, see runbook (https://wiki.example/rb)"
    quiet_pass(bridge)  # Jira keeps the person's markup: its text is the same, nothing rewritten
    assert bridge.jira.issue(issue["key"])["fields"]["description"].startswith("h2. Plan\n*Friday*")


def test_long_unicode_incident_description_round_trips_without_growth(bridge) -> None:
    text = ("Ünïcødé ✓ 🚀 *x* [y] {z} -w- \\ " * 200)[:3_990]
    incident = bridge.sn.create("incident", short_description="Outage", state="1", priority="2", description=text)
    assert not bridge.sync().errors
    [issue] = bridge.jira.search('project = OPS AND issuetype = "Incident"')
    bridge.jira.update_issue(issue["key"], description=bridge.jira.issue(issue["key"])["fields"]["description"] + "\nmore")
    assert not bridge.sync().errors
    assert bridge.sn.get("incident", incident["sys_id"])["description"] == text + "\nmore"
    quiet_pass(bridge)
    bridge.sn.update("incident", incident["sys_id"], description="")  # emptied in ServiceNow
    assert not bridge.sync().errors
    assert bridge.jira.issue(issue["key"])["fields"]["description"] in (None, "")
    quiet_pass(bridge)
