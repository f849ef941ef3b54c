"""Signed but bogus webhooks through the daemon's real receiver and workers (issue 11, item 4).

A signature proves who sent a delivery, not that it is true: whoever can configure a
webhook (or write the body a business rule sends) can name any id, any type, or a deletion
that never happened. These tests send such deliveries, signed, to a running daemon and then
check with the simulators' request logs and contents that nothing was requested that should
not have been, and nothing changed in either system.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
import requests

from bridge.daemon.service import Daemon
from bridge.reports.dlq import list_dead_letters
from tests.integration.daemon_support import (
    JIRA_SECRET,
    SN_SECRET,
    eventually,
    queue_idle,
    start_daemon,
)
from tests.integration.helpers import clear_log, requests_log, writes

# -- signed deliveries ---------------------------------------------------------------------------


def send_jira(daemon: Daemon, body: dict[str, Any]) -> requests.Response:
    raw = json.dumps(body).encode()
    signature = "sha256=" + hmac.new(JIRA_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert daemon.receiver is not None
    return requests.post(f"{daemon.receiver.url}/webhooks/jira", data=raw, timeout=10, headers={
        "Content-Type": "application/json", "X-Hub-Signature": signature})


def send_servicenow(daemon: Daemon, body: dict[str, Any]) -> requests.Response:
    raw = json.dumps(body).encode()
    stamp = str(int(time.time()))
    signature = "sha256=" + hmac.new(SN_SECRET.encode(), stamp.encode() + b"." + raw,
                                     hashlib.sha256).hexdigest()
    assert daemon.receiver is not None
    return requests.post(f"{daemon.receiver.url}/webhooks/servicenow", data=raw, timeout=10, headers={
        "Content-Type": "application/json", "X-Relbridge-Timestamp": stamp,
        "X-Relbridge-Signature": signature})


def jira_issue(event: str, issue_id: Any, type_name: str, key: Any = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"id": issue_id, "fields": {"issuetype": {"name": type_name}}}
    if key is not None:
        issue["key"] = key
    return {"timestamp": int(time.time() * 1000), "webhookEvent": event, "issue": issue}


def jira_version(event: str, version_id: Any) -> dict[str, Any]:
    return {"timestamp": int(time.time() * 1000), "webhookEvent": event,
            "version": {"id": version_id, "name": "x", "projectId": 10000}}


def sn_notice(table: str, sys_id: Any, operation: str = "update", **extra: Any) -> dict[str, Any]:
    return {"table": table, "sys_id": sys_id, "operation": operation,
            "sys_updated_on": "2026-01-01 00:00:00", "sys_mod_count": str(time.time_ns()), **extra}


def settled(daemon: Daemon) -> None:
    """Until every queued event was worked off (the 202 came after the event was stored)."""
    eventually(lambda: queue_idle(daemon.inbox), what="an empty inbox")


# -- the world the deliveries lie about ------------------------------------------------------------

CHANGE_TO_CLOSED = ("Assess", "Authorize", "Scheduled", "Implement", "Review", "Closed")
INCIDENT_TO_CLOSED = ("In Progress", "Resolved", "Closed")


def closed(jira, issue: dict[str, Any], steps: tuple[str, ...]) -> dict[str, Any]:
    """The issue walked to ``Closed``: a status both the change and the incident mapping
    know, so an issue read as the wrong type maps cleanly (and would be created)."""
    for status in steps:
        jira.transition(issue["key"], status)
    return jira.issue(issue["key"])



def seed_and_sync(bridge) -> dict[str, Any]:
    """One release, change and incident from each side, synced: every object linked."""
    sn, jira = bridge.sn, bridge.jira
    release = sn.create("rm_release", short_description="Hostile 1.0", state="1",
                        start_date="2026-06-01 08:00:00", end_date="2026-06-30 17:00:00")
    change = sn.create("change_request", short_description="SN change", state="-5",
                       approval="not requested", type="normal", risk="3")
    sn.link(release, change)
    incident = sn.create("incident", short_description="SN incident", state="1", priority="3",
                         caused_by=change["sys_id"])
    version = jira.create_version("Hostile 2.0", releaseDate="2026-07-31")
    issue = closed(jira, jira.create_issue("Change", "Jira change", fixVersions=[{"id": version["id"]}]),
                   CHANGE_TO_CLOSED)
    jira_incident = closed(jira, jira.create_issue("Incident", "Jira incident"), INCIDENT_TO_CLOSED)
    report = bridge.sync()
    assert not report.errors
    return {"release": release, "change": change, "incident": incident, "version": version,
            "issue": issue, "jira_incident": jira_incident}


def contents(bridge) -> dict[str, Any]:
    """Everything both systems hold that relbridge syncs, comparable before and after."""
    sn, jira = bridge.sn, bridge.jira
    tables = ("rm_release", "change_request", "incident", "rm_m2m_release_task")
    return {
        "servicenow": {t: sorted((r["sys_id"], r["sys_mod_count"]) for r in sn.list(t)) for t in tables},
        "jira versions": sorted((v["id"], v["name"], v["released"]) for v in jira.versions()),
        "jira issues": sorted((i["id"], i["fields"]["issuetype"]["name"], i["fields"]["updated"])
                              for i in jira.search("project = OPS")),
    }


def links(store, seeded: dict[str, Any]) -> dict[str, Any]:
    return {
        "release": store.find_ref("servicenow", "release", seeded["release"]["sys_id"]),
        "change": store.find_ref("servicenow", "change", seeded["change"]["sys_id"]),
        "incident": store.find_ref("servicenow", "incident", seeded["incident"]["sys_id"]),
        "version": store.find_ref("jira", "release", str(seeded["version"]["id"])),
        "issue": store.find_ref("jira", "change", str(seeded["issue"]["id"])),
        "jira incident": store.find_ref("jira", "incident", str(seeded["jira_incident"]["id"])),
    }


def quiet_daemon(bridge, daemons: list[Daemon], **sections: dict[str, Any]) -> Daemon:
    """A daemon whose pollers have finished their start-up pass, so what follows is ours."""
    daemon = start_daemon(bridge, sync={"interval_seconds": 60, **sections.pop("sync", {})}, **sections)
    daemons.append(daemon)
    store = daemon.runtime.store
    eventually(lambda: all(store.get_watermark(p.system, p.entity) for p in daemon.pollers),
               what="start-up polls")
    settled(daemon)
    return daemon


# -- ids that would change the URL ----------------------------------------------------------------


HOSTILE_JIRA = [
    pytest.param(jira_issue("jira:issue_updated", "../../myself", "Change"), id="issue-id-path"),
    pytest.param(jira_issue("jira:issue_updated", "10000?expand=x&", "Change"), id="issue-id-query"),
    pytest.param(jira_issue("jira:issue_updated", "10000#x", "Change"), id="issue-id-fragment"),
    pytest.param(jira_issue("jira:issue_deleted", "../../myself", "Incident"), id="deleted-issue-id"),
    pytest.param(jira_issue("jira:issue_updated", "10000", "Change", key="OPS-1/../../myself"),
                 id="issue-key"),
    pytest.param(jira_version("jira:version_updated", "../../serverInfo"), id="version-id-path"),
    pytest.param(jira_version("jira:version_deleted", "10000?expand=x&"), id="version-id-query"),
    pytest.param({"timestamp": 1, "webhookEvent": "issuelink_created", "issueLink": {
        "id": 1, "sourceIssueId": "10000", "destinationIssueId": "../../myself",
        "issueLinkType": {"name": "Problem/Incident"}}}, id="link-destination"),
]
HOSTILE_SN = [
    pytest.param(sn_notice("change_request", "../../sys_user"), id="sys-id-path"),
    pytest.param(sn_notice("incident", "0123456789abcdef0123456789abcdef?sysparm_query=x"), id="sys-id-query"),
    pytest.param(sn_notice("rm_release", "0123456789abcdef0123456789abcde"), id="sys-id-short"),
    pytest.param(sn_notice("rm_release", "0123456789abcdef0123456789abcdeg", "delete"), id="sys-id-not-hex"),
    pytest.param(sn_notice("rm_m2m_release_task", "0123456789abcdef0123456789abcdef",
                           task="../../sys_user"), id="link-task"),
]


def assert_no_stray_request(jira_url: str, sn_url: str) -> None:
    """No request left the API paths relbridge uses, and none carried a smuggled query."""
    for entry in requests_log(jira_url)["requests"]:
        assert entry["path"].startswith("/rest/api/2/"), entry
        assert ".." not in entry["path"] and "expand=x" not in (entry.get("query") or ""), entry
    for entry in requests_log(sn_url)["requests"]:
        assert entry["path"].startswith("/api/now/table/"), entry
        assert "sys_user" not in entry["path"] and ".." not in entry["path"], entry
        assert "sysparm_query=x" not in (entry.get("query") or ""), entry


@pytest.mark.parametrize("body", HOSTILE_JIRA)
def test_a_hostile_jira_id_is_refused_before_any_request(bridge, daemons, body: dict[str, Any]) -> None:
    daemon = quiet_daemon(bridge, daemons)
    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    response = send_jira(daemon, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_id" and response.json()["message"]
    assert daemon.inbox.depth() == 0
    settled(daemon)
    assert_no_stray_request(bridge.sims.jira_url, bridge.sims.servicenow_url)
    assert requests_log(bridge.sims.jira_url)["count"] == 0


@pytest.mark.parametrize("body", HOSTILE_SN)
def test_a_hostile_servicenow_sys_id_is_refused_before_any_request(
    bridge, daemons, body: dict[str, Any]
) -> None:
    daemon = quiet_daemon(bridge, daemons)
    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    response = send_servicenow(daemon, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_id"
    assert daemon.inbox.depth() == 0
    settled(daemon)
    assert requests_log(bridge.sims.servicenow_url)["count"] == 0


@pytest.mark.parametrize("system, entity, hostile", [
    ("jira", "change", "../../myself"),
    ("jira", "release", "10000?expand=x&"),
    ("servicenow", "change", "../../sys_user"),
    ("servicenow", "release", "0123456789abcdef0123456789abcdef?sysparm_query=x"),
])
def test_the_adapters_check_ids_on_every_path_too(bridge, system: str, entity: str, hostile: str) -> None:
    """Ids reach the adapters from elsewhere than webhooks too (events in the inbox, links
    in records): read, write and delete refuse a malformed one without a request."""
    from bridge.errors import BadInput

    adapter = bridge.runtime().adapters[system]
    url = bridge.sims.jira_url if system == "jira" else bridge.sims.servicenow_url
    clear_log(url)
    for call in (lambda: adapter.read(entity, hostile, ["summary"]),
                 lambda: adapter.write(entity, hostile, {"summary": "x"}),
                 lambda: adapter.delete(entity, hostile)):
        with pytest.raises(BadInput) as raised:
            call()
        assert raised.value.code == "invalid_id"
    assert [r for r in requests_log(url)["requests"] if hostile.split("?")[0] in r["path"]] == []
    assert all(".." not in r["path"] for r in requests_log(url)["requests"])


# -- deletion notices are hints: only a 404 deletes -------------------------------------------------


def test_false_deletion_notices_delete_nothing_even_with_propagate_deletes(bridge, daemons) -> None:
    seeded = seed_and_sync(bridge)
    daemon = quiet_daemon(bridge, daemons, sync={"propagate_deletes": True})
    before, linked = contents(bridge), links(daemon.runtime.store, seeded)
    assert all(linked.values())
    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)

    notices = [
        send_jira(daemon, jira_issue("jira:issue_deleted", str(seeded["issue"]["id"]), "Change",
                                     key=seeded["issue"]["key"])),
        send_jira(daemon, jira_issue("jira:issue_deleted", str(seeded["jira_incident"]["id"]), "Incident")),
        send_jira(daemon, jira_version("jira:version_deleted", str(seeded["version"]["id"]))),
        send_servicenow(daemon, sn_notice("change_request", seeded["change"]["sys_id"], "delete")),
        send_servicenow(daemon, sn_notice("incident", seeded["incident"]["sys_id"], "delete")),
        send_servicenow(daemon, sn_notice("rm_release", seeded["release"]["sys_id"], "delete")),
    ]
    assert [r.status_code for r in notices] == [202] * 6
    settled(daemon)

    assert writes(bridge.sims.servicenow_url) == [] and writes(bridge.sims.jira_url) == []
    assert contents(bridge) == before
    assert links(daemon.runtime.store, seeded) == linked
    assert list_dead_letters(daemon.runtime) == []


def test_a_true_deletion_notice_still_deletes_after_the_read_confirms_it(bridge, daemons) -> None:
    seeded = seed_and_sync(bridge)
    daemon = quiet_daemon(bridge, daemons, sync={"propagate_deletes": True})
    issue = seeded["issue"]
    bridge.jira.session.delete(f"{bridge.jira.api}/issue/{issue['key']}").raise_for_status()
    sn_change_of_issue = daemon.runtime.store.refs(
        "change", daemon.runtime.store.find_key("jira", "change", str(issue["id"])))["servicenow"].ext_id
    response = send_jira(daemon, jira_issue("jira:issue_deleted", str(issue["id"]), "Change", key=issue["key"]))
    assert response.status_code == 202
    settled(daemon)
    assert daemon.runtime.store.find_ref("jira", "change", str(issue["id"])) is None
    assert sn_change_of_issue not in {c["sys_id"] for c in bridge.sn.list("change_request")}


# -- the type an object really has --------------------------------------------------------------


def test_a_hint_naming_the_wrong_issue_type_creates_and_unlinks_nothing(bridge, daemons) -> None:
    seeded = seed_and_sync(bridge)
    daemon = quiet_daemon(bridge, daemons, sync={"propagate_deletes": True})
    before, linked = contents(bridge), links(daemon.runtime.store, seeded)
    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    change_id, incident_id = str(seeded["issue"]["id"]), str(seeded["jira_incident"]["id"])

    notices = [
        # A Change's id said to be an Incident, and the reverse; updates and deletions.
        send_jira(daemon, jira_issue("jira:issue_updated", change_id, "Incident")),
        send_jira(daemon, jira_issue("jira:issue_created", incident_id, "Change")),
        send_jira(daemon, jira_issue("jira:issue_deleted", change_id, "Incident")),
        send_jira(daemon, jira_issue("jira:issue_deleted", incident_id, "Change")),
        # A Problem/Incident link whose "incident" is a Change.
        send_jira(daemon, {"timestamp": 2, "webhookEvent": "issuelink_created", "issueLink": {
            "id": 9, "sourceIssueId": incident_id, "destinationIssueId": change_id,
            "issueLinkType": {"name": "Problem/Incident"}}}),
        # ServiceNow: the table is the entity; a sys_id of another table is simply not there.
        send_servicenow(daemon, sn_notice("incident", seeded["change"]["sys_id"])),
        send_servicenow(daemon, sn_notice("change_request", seeded["incident"]["sys_id"], "delete")),
        send_servicenow(daemon, sn_notice("rm_release", seeded["change"]["sys_id"], "delete")),
    ]
    assert [r.status_code for r in notices] == [202] * len(notices)
    settled(daemon)

    assert writes(bridge.sims.servicenow_url) == [] and writes(bridge.sims.jira_url) == []
    assert contents(bridge) == before
    assert links(daemon.runtime.store, seeded) == linked
    assert daemon.runtime.store.find_ref("jira", "incident", change_id) is None
    assert daemon.runtime.store.find_ref("jira", "change", incident_id) is None
    assert list_dead_letters(daemon.runtime) == []


def test_an_unsynced_issue_hinted_as_another_type_is_not_created(bridge, daemons) -> None:
    """Before any sync: a Change nobody linked yet, hinted as an Incident, must not become a
    ServiceNow incident (the poller then syncs it as the change it is)."""
    daemon = quiet_daemon(bridge, daemons)
    issue = closed(bridge.jira, bridge.jira.create_issue("Change", "Born in Jira"), CHANGE_TO_CLOSED)
    response = send_jira(daemon, jira_issue("jira:issue_updated", str(issue["id"]), "Incident"))
    assert response.status_code == 202
    settled(daemon)
    assert bridge.sn.list("incident") == []
    assert daemon.runtime.store.find_ref("jira", "incident", str(issue["id"])) is None


def test_a_linked_issue_moved_to_another_type_is_held_not_deleted(bridge, daemons) -> None:
    """A person moves a synced Change to type Task (Jira's "Move"; the simulator has no move
    screen, so its state is edited). It exists, so it is no deletion: with propagate_deletes
    nothing is deleted in ServiceNow, the link stays, and the event is a dead letter naming
    the new type, for a person to decide."""
    seeded = seed_and_sync(bridge)
    daemon = quiet_daemon(bridge, daemons, sync={"propagate_deletes": True})
    before, linked = contents(bridge)["servicenow"], links(daemon.runtime.store, seeded)
    issue_id = str(seeded["issue"]["id"])
    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    store = bridge.sims.jira.store
    with store.lock:
        store.state.issues[int(issue_id)].issuetype_id = "10001"  # Task

    for event in ("jira:issue_updated", "jira:issue_deleted"):
        response = send_jira(daemon, jira_issue(event, issue_id, "Change"))
        assert response.status_code == 202
        settled(daemon)

    assert contents(bridge)["servicenow"] == before
    assert writes(bridge.sims.servicenow_url) == []
    assert links(daemon.runtime.store, seeded) == linked
    reasons = [letter.last_error for letter in list_dead_letters(daemon.runtime)]
    assert reasons and all("'Task'" in reason and "NotThisEntity" in reason for reason in reasons)
