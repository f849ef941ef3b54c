"""Assignees cross both ways against the simulators, matched by e-mail (ServiceNow
sys_user.email <-> Jira emailAddress): no echo, no guess for a person the other side has
no user for (reported, then matched once the user exists), one user look-up per e-mail
however many records, and nothing doubled by a crash between the write and the commit.

The Jira simulator's users behave as Jira Cloud's do: a user may hide their e-mail, and then
``emailAddress`` is left out of every user object the API returns
(https://developer.atlassian.com/cloud/jira/platform/api-changes-for-user-privacy-announcement-connect/,
"restricting the visibility of other personal data, such as email, in conjunction with a
user's profile privacy settings"; https://confluence.atlassian.com/jirakb/retrieving-email-addresses-of-users-through-jira-cloud-rest-api-1333827414.html)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from bridge.reports.status import collect_status, render_status
from bridge.store import Store
from bridge.store.unmatched_users import UnmatchedUserOperations
from tests.integration.helpers import AUTH, clear_log, requests_log, writes

ALICE = "5b10ac8d82e05b22cc7d4ef5"  # Jira Cloud account ids of the simulator's users
BOB = "5b10a0effa615349cb016cd8"


def sn_user(bridge, name: str, email: str) -> str:
    return bridge.sn.create("sys_user", user_name=name, name=name.title(), email=email)["sys_id"]


def new_change(bridge, **fields: Any) -> dict[str, Any]:
    values = {"short_description": "Patch kernel", "state": "-5", "approval": "not requested",
              "type": "normal", "risk": "3", **fields}
    return bridge.sn.create("change_request", **values)


def jira_assignee(bridge, summary: str = "Patch kernel") -> dict[str, Any] | None:
    [issue] = [i for i in bridge.jira.search('project = OPS AND issuetype = "Change"')
               if i["fields"]["summary"] == summary]
    return issue["fields"]["assignee"]


def quiet_pass(bridge) -> None:
    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    assert not bridge.sync().errors
    assert writes(bridge.sims.servicenow_url) == [] and writes(bridge.sims.jira_url) == []


def unmatched(bridge) -> list[dict[str, Any]]:
    with Store(bridge.store_url) as store:
        return collect_status(store)["unmatched_users"]


def user_searches(bridge) -> int:
    return sum(1 for r in requests_log(bridge.sims.jira_url)["requests"] if r["path"].endswith("/user/search"))


def test_an_assignee_crosses_both_ways_by_email_and_is_not_echoed(bridge) -> None:
    alice = sn_user(bridge, "alice.sn", "Alice@Example.com")  # case differs from Jira's
    bob = sn_user(bridge, "bob.sn", "bob@example.com")
    change = new_change(bridge, assigned_to=alice)
    assert not bridge.sync().errors
    assert jira_assignee(bridge)["accountId"] == ALICE
    quiet_pass(bridge)
    quiet_pass(bridge)
    [issue] = bridge.jira.search('project = OPS AND issuetype = "Change"')
    bridge.jira.update_issue(issue["key"], assignee={"accountId": BOB})
    assert not bridge.sync().errors
    assert bridge.sn.get("change_request", change["sys_id"])["assigned_to"] == bob
    quiet_pass(bridge)
    bridge.jira.update_issue(issue["key"], assignee=None)  # unassigned in Jira: unassigned in ServiceNow
    assert not bridge.sync().errors
    assert bridge.sn.get("change_request", change["sys_id"])["assigned_to"] in ("", None)
    quiet_pass(bridge)
    assert unmatched(bridge) == []


def test_an_unmatched_person_is_not_written_is_reported_then_crosses_once_the_user_exists(bridge) -> None:
    dave = sn_user(bridge, "dave", "dave@example.com")  # no Jira user has this e-mail
    carol = sn_user(bridge, "carol", "carol@example.com")  # Jira's Carol hides her e-mail
    new_change(bridge, assigned_to=dave)
    new_change(bridge, assigned_to=carol, short_description="Rotate certs")
    assert not bridge.sync().errors
    assert jira_assignee(bridge) is None and jira_assignee(bridge, "Rotate certs") is None  # never guessed
    found = unmatched(bridge)
    assert sorted((u["system"], u["field"], u["email"]) for u in found) == [
        ("jira", "assignee", "carol@example.com"), ("jira", "assignee", "dave@example.com")]
    with Store(bridge.store_url) as store:
        assert "dave@example.com" in render_status(collect_status(store))
    quiet_pass(bridge)
    r = requests.post(f"{bridge.sims.jira_url}/rest/api/2/user", auth=AUTH,
                      json={"emailAddress": "dave@example.com", "displayName": "Dave Ops"})
    r.raise_for_status()
    assert not bridge.sync().errors
    assert jira_assignee(bridge)["accountId"] == r.json()["accountId"]
    assert [u["email"] for u in unmatched(bridge)] == ["carol@example.com"]
    quiet_pass(bridge)


def test_a_person_jira_has_no_user_for_leaves_the_jira_assignee_as_it_was(bridge) -> None:
    dave = sn_user(bridge, "dave", "dave@example.com")
    change = new_change(bridge)
    assert not bridge.sync().errors
    [issue] = bridge.jira.search('project = OPS AND issuetype = "Change"')
    bridge.jira.update_issue(issue["key"], assignee={"accountId": BOB})
    assert not bridge.sync().errors
    # ServiceNow has no Bob: its change stays unassigned, and Bob is reported
    assert bridge.sn.get("change_request", change["sys_id"])["assigned_to"] in ("", None)
    assert [(u["system"], u["email"]) for u in unmatched(bridge)] == [("servicenow", "bob@example.com")]
    bridge.sn.update("change_request", change["sys_id"], assigned_to=dave)
    assert not bridge.sync().errors
    assert jira_assignee(bridge)["accountId"] == BOB  # never cleared for want of a match
    # the record is Dave's now: Bob's report is gone, Dave's is there
    assert [(u["system"], u["email"]) for u in unmatched(bridge)] == [("jira", "dave@example.com")]


def test_one_user_look_up_per_email_not_per_record(bridge) -> None:
    alice = sn_user(bridge, "alice.sn", "alice@example.com")
    dave = sn_user(bridge, "dave", "dave@example.com")
    for n in range(4):
        new_change(bridge, assigned_to=alice if n % 2 else dave, short_description=f"Change {n}")
    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    assert not bridge.sync().errors
    assert user_searches(bridge) == 2
    sn_user_reads = [r for r in requests_log(bridge.sims.servicenow_url)["requests"]
                     if "/table/sys_user" in r["path"]]
    assert len(sn_user_reads) == 1  # the page's sys_ids, one query


def test_jira_server_writes_the_user_by_name(bridge_factory) -> None:
    bridge = bridge_factory(jira_flavor="server")
    alice = sn_user(bridge, "alice.sn", "alice@example.com")
    new_change(bridge, assigned_to=alice)
    assert not bridge.sync().errors
    assert jira_assignee(bridge)["name"] == "alice"
    quiet_pass(bridge)


def test_a_crash_between_the_write_and_the_commit_doubles_nothing(bridge, monkeypatch) -> None:
    alice = sn_user(bridge, "alice.sn", "alice@example.com")
    change = new_change(bridge)
    assert not bridge.sync().errors
    bridge.sn.update("change_request", change["sys_id"], assigned_to=alice)
    original = UnmatchedUserOperations.clear_unmatched_users

    def crash(self, *args: Any, **kwargs: Any) -> None:
        raise SystemExit("killed between the write and the commit")

    monkeypatch.setattr(UnmatchedUserOperations, "clear_unmatched_users", crash)
    with pytest.raises(SystemExit):
        bridge.sync()
    monkeypatch.setattr(UnmatchedUserOperations, "clear_unmatched_users", original)
    assert jira_assignee(bridge)["accountId"] == ALICE  # written before the "crash"
    assert not bridge.sync().errors
    assert jira_assignee(bridge)["accountId"] == ALICE
    quiet_pass(bridge)
