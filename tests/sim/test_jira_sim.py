"""The Jira simulator, driven by the real `jira` library and by plain HTTP, in both flavors."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import jira
import jira.client
import pytest
import requests

from bridge.sim.control import SimControl
from bridge.sim.jira.app import JiraSim, create_jira_app
from bridge.sim.jira.jql import JqlError, parse_jql
from bridge.sim.server import RunningServer, start_in_thread
from bridge.sim.webhooks import WebhookSender

AUTH = ("admin", "admin")
FLAVORS = ["cloud", "server"]


@dataclass
class JiraHandle:
    """A running simulator plus the clients tests use on it."""

    sim: JiraSim
    server: RunningServer
    sender: WebhookSender
    control: SimControl
    http: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.http.auth = AUTH

    @property
    def url(self) -> str:
        return self.server.url

    def rest(self, path: str, api: str = "2") -> str:
        return f"{self.url}/rest/api/{api}/{path}"

    def client(self) -> jira.JIRA:
        return jira.JIRA(server=self.url, basic_auth=AUTH, max_retries=0)

    def call(self, method: str, path: str, expect: int | None = 200, api: str = "2",
             **kwargs: Any) -> Any:
        response = self.http.request(method, self.rest(path, api), **kwargs)
        if expect is not None:
            assert response.status_code == expect, response.text
        return response.json() if response.content else None

    def new_issue(self, summary: str = "Change", issuetype: str = "Change",
                  **fields: Any) -> dict[str, Any]:
        body = {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": issuetype},
                           "summary": summary, **fields}}
        return self.call("POST", "issue", 201, json=body)

    def search_total(self, jql: str) -> int:
        """Matches counted via the Server `/search` (only on server-flavor handles)."""
        return self.call("GET", "search", params={"jql": jql, "maxResults": 0})["total"]

    def search_keys(self, jql: str) -> list[str]:
        page = self.call("GET", "search", params={"jql": jql, "fields": "key",
                                                  "maxResults": 1000})
        return [issue["key"] for issue in page["issues"]]


@pytest.fixture
def start_jira() -> Iterator[Callable[..., JiraHandle]]:
    started: list[JiraHandle] = []

    def start(flavor: str = "cloud", seed: str = "empty",
              state_file: Path | None = None) -> JiraHandle:
        control = SimControl()
        sender = WebhookSender(retry_delays=(0.0,))
        sim = create_jira_app(flavor=flavor, seed=seed, latency_ms=0, control=control,
                              webhooks=sender, state_file=state_file)
        handle = JiraHandle(sim, start_in_thread(sim.app), sender, control)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.server.stop()
        handle.sender.close()


@pytest.fixture
def no_lib_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """`JIRA.create_version` sleeps 1 s after the POST; skip that wait in jira.client only."""
    monkeypatch.setattr(jira.client, "time", types.SimpleNamespace(sleep=lambda _: None,
                                                                   time=time.time))


@pytest.fixture(params=FLAVORS)
def flavor(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def demo(start_jira: Callable[..., JiraHandle], flavor: str) -> JiraHandle:
    return start_jira(flavor=flavor, seed="demo")


@pytest.fixture
def server(start_jira: Callable[..., JiraHandle]) -> JiraHandle:
    """Server flavor with the demo seed: `/search` returns `total`, handy for JQL checks."""
    return start_jira(flavor="server", seed="demo")


# -- the real jira library ----------------------------------------------------------------------

def test_client_start_up_and_projects(demo: JiraHandle, flavor: str) -> None:
    client = demo.client()
    assert client._is_cloud is (flavor == "cloud")
    assert client.server_info()["baseUrl"] == demo.url
    assert [p.key for p in client.projects()] == ["OPS"]
    project = client.project("OPS")
    assert project.id == "10000"
    assert {t.name for t in project.issueTypes} == {"Change", "Incident", "Task", "Bug", "Sub-task"}
    assert client.myself()["displayName"] == "Administrator"


def test_versions_with_the_library(demo: JiraHandle, no_lib_sleep: None) -> None:
    client = demo.client()
    version = client.create_version("Release 2.0", "OPS", description="Next",
                                    releaseDate="2031-03-04", startDate="2031-02-01")
    assert version.self == demo.rest(f"version/{version.id}")
    assert (version.name, version.releaseDate, version.released) == \
        ("Release 2.0", "2031-03-04", False)
    assert version.userReleaseDate == "4/Mar/31"
    with pytest.raises(jira.JIRAError) as duplicate:
        client.create_version("release 2.0", "OPS")
    assert duplicate.value.status_code == 400
    assert "already exists" in duplicate.value.text
    version.update(released=True, description="Shipped")
    assert version.released is True and version.description == "Shipped"
    assert client.version(version.id).released is True
    names = [v.name for v in client.project_versions("OPS")]
    assert names[-1] == "Release 2.0" and "Release 1.2" in names
    client.move_version(version.id, position="First")
    assert client.project_versions("OPS")[0].name == "Release 2.0"
    release_11 = next(v for v in client.project_versions("OPS") if v.name == "Release 1.1")
    counts = client.version_count_related_issues(release_11.id)
    assert (counts["issuesFixedCount"], counts["issuesAffectedCount"]) == (2, 1)
    version.delete()
    with pytest.raises(jira.JIRAError) as gone:
        client.version(version.id)
    assert gone.value.status_code == 404


def test_issues_with_the_library(demo: JiraHandle) -> None:
    client = demo.client()
    issue = client.create_issue(fields={
        "project": "OPS", "issuetype": {"name": "Change"}, "summary": "Rotate keys",
        "fixVersions": [{"name": "Release 1.2"}], "labels": ["security"]})
    assert issue.key == "OPS-13"
    assert issue.fields.status.name == "New"
    assert [v.name for v in issue.fields.fixVersions] == ["Release 1.2"]
    before = issue.fields.updated
    time.sleep(0.002)
    issue.update(fields={"summary": "Rotate all keys", "fixVersions": [{"name": "Release 1.3"}]})
    assert issue.fields.summary == "Rotate all keys"
    assert [v.name for v in issue.fields.fixVersions] == ["Release 1.3"]
    assert issue.fields.updated > before
    issue.update(update={"labels": [{"add": "keys"}, {"remove": "security"}]})
    assert issue.fields.labels == ["keys"]
    with pytest.raises(jira.JIRAError) as bad:
        issue.update(fields={"fixVersions": [{"name": "No such release"}]})
    assert bad.value.status_code == 400
    assert "Version name 'No such release' is not valid" in bad.value.text
    with pytest.raises(jira.JIRAError) as missing:
        client.issue("OPS-999")
    assert missing.value.status_code == 404
    assert "Issue does not exist" in missing.value.text
    with pytest.raises(jira.JIRAError) as no_summary:
        client.create_issue(fields={"project": {"key": "OPS"}, "issuetype": {"id": "10002"}})
    assert no_summary.value.status_code == 400
    assert "You must specify a summary of the issue." in no_summary.value.text
    issue.delete()
    with pytest.raises(jira.JIRAError):
        client.issue(issue.key)


def test_transitions_with_the_library(demo: JiraHandle) -> None:
    client = demo.client()
    change = client.create_issue(fields={"project": {"key": "OPS"},
                                         "issuetype": {"name": "Change"}, "summary": "Flow"})
    assert [t["name"] for t in client.transitions(change)] == ["Assess", "Canceled"]
    for step in ("Assess", "Authorize", "Scheduled", "Implement", "Review"):
        client.transition_issue(change, step)
    assert client.issue(change.key).fields.status.name == "Review"
    with pytest.raises(jira.JIRAError) as unavailable:
        client.transition_issue(change, "11")  # "Assess" is not available from Review
    assert unavailable.value.status_code == 400
    client.transition_issue(change, "Closed")
    closed = client.issue(change.key)
    assert closed.fields.status.name == "Closed"
    assert closed.fields.status.statusCategory.key == "done"
    assert closed.fields.resolution.name == "Done" and closed.fields.resolutiondate
    assert client.transitions(change) == []  # not even Canceled from a closed change

    incident = client.create_issue(fields={"project": {"key": "OPS"},
                                           "issuetype": {"name": "Incident"}, "summary": "Down"})
    client.transition_issue(incident, "In Progress")
    client.transition_issue(incident, "Resolved")
    assert {t["name"] for t in client.transitions(incident)} == {"Closed", "Reopen"}
    client.transition_issue(incident, "Reopen")
    reopened = client.issue(incident.key)
    assert reopened.fields.status.name == "In Progress" and reopened.fields.resolution is None


def test_links_with_the_library(demo: JiraHandle) -> None:
    client = demo.client()
    change = client.create_issue(fields={"project": {"key": "OPS"},
                                         "issuetype": {"name": "Change"}, "summary": "Cause"})
    incident = client.create_issue(fields={"project": {"key": "OPS"},
                                           "issuetype": {"name": "Incident"},
                                           "summary": "Effect"})
    # "is caused by" is the inward name: the library swaps the issues for us.
    client.create_issue_link("is caused by", incident.key, change.key)
    on_incident = client.issue(incident.key).fields.issuelinks
    assert len(on_incident) == 1
    assert on_incident[0].type.name == "Problem/Incident"
    assert on_incident[0].inwardIssue.key == change.key  # "Effect is caused by Cause"
    on_change = client.issue(change.key).fields.issuelinks
    assert on_change[0].outwardIssue.key == incident.key  # "Cause causes Effect"
    client.create_issue_link("Problem/Incident", change.key, incident.key)  # same link again
    assert len(client.issue(incident.key).fields.issuelinks) == 1
    link = client.issue_link(on_incident[0].id)
    assert (link.inwardIssue.key, link.outwardIssue.key) == (change.key, incident.key)
    client.delete_issue_link(on_incident[0].id)
    assert client.issue(incident.key).fields.issuelinks == []
    with pytest.raises(jira.JIRAError) as unknown:
        client.create_issue_link("Duplicates", change.key, incident.key)
    assert unknown.value.status_code == 404


def test_search_pages_through_everything(start_jira: Callable[..., JiraHandle],
                                         flavor: str) -> None:
    sim = start_jira(flavor=flavor, seed="empty")
    client = sim.client()
    version = sim.call("POST", "version", 201, json={"name": "Big", "project": "OPS"})
    for number in range(1, 131):
        sim.new_issue(f"Change {number}", fixVersions=[{"id": version["id"]}])
    sim.control.clear_requests()
    everything = client.search_issues("project = OPS ORDER BY key ASC", maxResults=0)
    assert [i.key for i in everything] == [f"OPS-{n}" for n in range(1, 131)]
    assert everything[0].fields.fixVersions[0].name == "Big"
    search_path = "/rest/api/2/search/jql" if flavor == "cloud" else "/rest/api/2/search"
    pages = [r for r in sim.control.requests()["requests"] if r["path"] == search_path]
    assert len(pages) == 2  # the library fetches issues in batches of 100

    page = client.search_issues("fixVersion = Big ORDER BY key DESC", maxResults=20)
    assert [i.key for i in page] == [f"OPS-{n}" for n in range(130, 110, -1)]
    posted = client.search_issues("fixVersion = Big ORDER BY key DESC", maxResults=20,
                                  fields="summary,fixVersions", use_post=True)
    assert [i.key for i in posted] == [i.key for i in page]
    assert posted[0].fields.summary == "Change 130" and not hasattr(posted[0].fields, "labels")
    if flavor == "cloud":
        assert page.nextPageToken
        following = client.enhanced_search_issues("fixVersion = Big ORDER BY key DESC",
                                                  nextPageToken=page.nextPageToken,
                                                  maxResults=20)
        assert following[0].key == "OPS-110"
        assert client.approximate_issue_count("project = OPS") == 130
    else:
        assert page.total == 130
        later = client.search_issues("fixVersion = Big ORDER BY key DESC", startAt=120)
        assert [i.key for i in later] == [f"OPS-{n}" for n in range(10, 0, -1)]


def test_search_errors_reach_the_library(demo: JiraHandle) -> None:
    client = demo.client()
    with pytest.raises(jira.JIRAError) as error:
        client.search_issues("project = OPS OR (labels = x")
    assert error.value.status_code == 400
    assert "Error in the JQL Query" in error.value.text
    with pytest.raises(jira.JIRAError) as unknown:
        client.search_issues("project = NOPE")
    assert "The value 'NOPE' does not exist for the field 'project'." in unknown.value.text


# -- HTTP details -------------------------------------------------------------------------------

def test_authentication(demo: JiraHandle) -> None:
    anonymous = requests.get(demo.rest("myself"))
    assert anonymous.status_code == 401
    assert anonymous.json()["errorMessages"]
    wrong = requests.get(demo.rest("myself"), auth=("admin", "nope"))
    assert wrong.status_code == 401
    token = requests.get(demo.rest("myself"), headers={"Authorization": "Bearer admin"})
    assert token.status_code == 200
    assert requests.get(demo.rest("serverInfo"), auth=AUTH).json()["deploymentType"] in (
        "Cloud", "Server")


def test_server_info_by_flavor(start_jira: Callable[..., JiraHandle]) -> None:
    cloud = start_jira(flavor="cloud").call("GET", "serverInfo")
    server = start_jira(flavor="server").call("GET", "serverInfo")
    assert (cloud["deploymentType"], server["deploymentType"]) == ("Cloud", "Server")
    assert cloud["versionNumbers"][0] == 1001 and server["versionNumbers"][0] == 9


def test_v3_speaks_atlassian_document_format(demo: JiraHandle) -> None:
    adf = {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": "First line"}]},
        {"type": "paragraph", "content": [{"type": "text", "text": "Second"}]}]}
    created = demo.new_issue("Rich", description=None)
    demo.call("PUT", f"issue/{created['key']}", 204, api="3",
              json={"fields": {"description": adf}})
    v3 = demo.call("GET", f"issue/{created['key']}", api="3", params={"fields": "description"})
    assert v3["fields"]["description"] == adf
    v2 = demo.call("GET", f"issue/{created['key']}", params={"fields": "description"})
    assert v2["fields"]["description"] == "First line\nSecond"
    demo.call("PUT", f"issue/{created['key']}", 204, api="3",
              json={"fields": {"description": "plain text is accepted too"}})
    rejected = demo.call("PUT", f"issue/{created['key']}", 400, json={"fields": {
        "description": adf}})
    assert "description" in rejected["errors"]


def test_field_selection(demo: JiraHandle) -> None:
    some = demo.call("GET", "issue/OPS-3", params={"fields": "summary,status"})
    assert set(some["fields"]) == {"summary", "status"}
    repeated = demo.call("GET", "issue/OPS-3?fields=summary&fields=labels")
    assert set(repeated["fields"]) == {"summary", "labels"}
    without = demo.call("GET", "issue/OPS-3", params={"fields": "*all,-description"})
    assert "description" not in without["fields"] and "fixVersions" in without["fields"]
    by_id = demo.call("GET", f"issue/{some['id']}", params={"fields": "summary"})
    assert by_id["key"] == "OPS-3"
    names = demo.call("GET", "issue/OPS-3", params={"expand": "names,transitions"})
    assert names["names"]["fixVersions"] == "Fix versions"
    assert names["transitions"] == []  # closed change


def test_issue_writes_are_all_or_nothing(demo: JiraHandle) -> None:
    before = demo.call("GET", "issue/OPS-5")
    error = demo.call("PUT", "issue/OPS-5", 400, json={"fields": {
        "summary": "Renamed", "fixVersions": [{"name": "Nope"}], "status": {"name": "Closed"}}})
    assert set(error["errors"]) == {"fixVersions", "status"}
    assert demo.call("GET", "issue/OPS-5") == before


def test_update_operations(demo: JiraHandle) -> None:
    created = demo.new_issue("Ops", fixVersions=[{"name": "Release 1.2"}], labels=["a"])
    key = created["key"]
    demo.call("PUT", f"issue/{key}", 204, json={"update": {
        "fixVersions": [{"add": {"name": "Release 1.3"}}, {"remove": {"name": "Release 1.2"}}],
        "versions": [{"set": [{"name": "Release 1.1"}]}],
        "labels": [{"add": "b"}, {"remove": "a"}],
        "summary": [{"set": "Ops renamed"}],
        "comment": [{"add": {"body": "noted"}}]}})
    fields = demo.call("GET", f"issue/{key}")["fields"]
    assert [v["name"] for v in fields["fixVersions"]] == ["Release 1.3"]
    assert [v["name"] for v in fields["versions"]] == ["Release 1.1"]
    assert fields["labels"] == ["b"] and fields["summary"] == "Ops renamed"
    history = demo.call("GET", f"issue/{key}", params={"expand": "changelog"})["changelog"]
    changed = {item["fieldId"] for h in history["histories"] for item in h["items"]}
    assert changed == {"fixVersions", "versions", "labels", "summary"}
    unchanged = demo.call("GET", f"issue/{key}")["fields"]["updated"]
    demo.call("PUT", f"issue/{key}", 204, json={"fields": {"summary": "Ops renamed"}})
    assert demo.call("GET", f"issue/{key}")["fields"]["updated"] == unchanged
    bad = demo.call("PUT", f"issue/{key}", 400, json={"update": {
        "labels": [{"add": "has space"}], "summary": [{"add": "x"}], "nope": [{"set": 1}]}})
    assert set(bad["errors"]) == {"labels", "summary", "nope"}


def test_create_issue_validation(demo: JiraHandle) -> None:
    missing = demo.call("POST", "issue", 400, json={"fields": {}})
    assert set(missing["errors"]) == {"project", "summary"}
    wrong_type = demo.call("POST", "issue", 400, json={"fields": {
        "project": {"key": "OPS"}, "issuetype": {"name": "Epic"}, "summary": "x"}})
    assert wrong_type["errors"] == {"issuetype": "Specify a valid issue type"}
    fields = {"project": {"id": "10000"}, "issuetype": {"id": "10003"}, "summary": "x",
              "duedate": "tomorrow", "priority": {"name": "Urgent"},
              "customfield_10011": "not a date", "resolutiondate": "2020-01-01"}
    invalid = demo.call("POST", "issue", 400, json={"fields": fields})
    assert set(invalid["errors"]) == {"duedate", "priority", "customfield_10011",
                                      "resolutiondate"}
    not_json = demo.http.post(demo.rest("issue"), data="{nope",
                              headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["errorMessages"]


def test_delete_issue_removes_its_links(demo: JiraHandle) -> None:
    incident = demo.call("GET", "issue/OPS-10")
    assert len(incident["fields"]["issuelinks"]) == 1
    link_id = incident["fields"]["issuelinks"][0]["id"]
    demo.call("DELETE", "issue/OPS-3", 204)
    demo.call("GET", "issue/OPS-3", 404)
    assert demo.call("GET", "issue/OPS-10")["fields"]["issuelinks"] == []
    demo.call("GET", f"issueLink/{link_id}", 404)


def test_link_creation_by_id_and_errors(demo: JiraHandle) -> None:
    response = demo.http.post(demo.rest("issueLink"), json={
        "type": {"id": "10000"}, "inwardIssue": {"id": "10000"}, "outwardIssue": {"key": "OPS-2"}})
    assert response.status_code == 201 and response.content == b""
    link = demo.http.get(response.headers["Location"]).json()
    assert (link["inwardIssue"]["key"], link["outwardIssue"]["key"]) == ("OPS-1", "OPS-2")
    assert link["type"]["outward"] == "blocks"
    demo.call("POST", "issueLink", 404, json={"type": {"name": "Blocks"},
                                              "inwardIssue": {"key": "OPS-404"},
                                              "outwardIssue": {"key": "OPS-2"}})
    demo.call("POST", "issueLink", 400, json={"inwardIssue": {"key": "OPS-1"},
                                              "outwardIssue": {"key": "OPS-2"}})
    history = demo.call("GET", "issue/OPS-2", params={"expand": "changelog"})["changelog"]
    assert history["histories"][0]["items"][0]["toString"] == "This issue is blocked by OPS-1"


def test_version_rules(demo: JiraHandle) -> None:
    by_id = demo.call("POST", "version", 201, json={"name": "By id", "projectId": 10000})
    assert by_id["projectId"] == 10000 and by_id["self"] == demo.rest(f"version/{by_id['id']}")
    duplicate = demo.call("POST", "version", 400, json={"name": "By id", "project": "OPS"})
    assert duplicate == {"errorMessages": [], "errors": {
        "name": "A version with this name already exists in this project."}}
    invalid = demo.call("POST", "version", 400, json={"project": "OPS", "releaseDate": "soon"})
    assert set(invalid["errors"]) == {"name", "releaseDate"}
    unknown = demo.call("POST", "version", 400, json={"name": "x", "project": "OPS", "foo": 1})
    assert 'Unrecognized field "foo"' in unknown["errorMessages"][0]
    demo.call("POST", "version", 400, json={"name": "x", "project": "NOPE"})
    reversed_dates = demo.call("PUT", f"version/{by_id['id']}", 400, json={
        "startDate": "2030-02-01", "releaseDate": "2030-01-01"})
    assert "startDate" in reversed_dates["errors"]
    renamed = demo.call("PUT", f"version/{by_id['id']}", json={"name": "Renamed",
                                                                "releaseDate": "2000-01-01"})
    assert renamed["overdue"] is True and renamed["userReleaseDate"] == "1/Jan/00"
    taken = demo.call("PUT", f"version/{by_id['id']}", 400, json={"name": "Release 1.0"})
    assert taken["errors"]["name"].startswith("A version with this name")
    demo.call("GET", "version/abc", 404)
    page = demo.call("GET", "project/OPS/version",
                     params={"status": "unreleased", "orderBy": "-name"})
    assert [v["name"] for v in page["values"]] == ["Renamed", "Release 1.3", "Release 1.2"]


def test_delete_version_moves_issues(demo: JiraHandle) -> None:
    versions = {v["name"]: v["id"] for v in demo.call("GET", "project/OPS/versions")}
    demo.call("DELETE", f"version/{versions['Release 1.2']}", 204,
              params={"moveFixIssuesTo": versions["Release 1.3"]})
    fixed = demo.call("GET", "issue/OPS-5")["fields"]["fixVersions"]
    assert [v["name"] for v in fixed] == ["Release 1.3"]
    demo.call("DELETE", f"version/{versions['Release 1.1']}", 204)
    assert demo.call("GET", "issue/OPS-10")["fields"]["versions"] == []


def test_release_moves_unfixed_issues(demo: JiraHandle) -> None:
    versions = {v["name"]: v for v in demo.call("GET", "project/OPS/versions")}
    demo.call("PUT", f"version/{versions['Release 1.2']['id']}", json={
        "released": True, "moveUnfixedIssuesTo": versions["Release 1.3"]["self"]})
    moved = demo.call("GET", "issue/OPS-5")["fields"]["fixVersions"]
    assert [v["name"] for v in moved] == ["Release 1.3"]


def test_search_endpoints_by_flavor(start_jira: Callable[..., JiraHandle]) -> None:
    cloud = start_jira(flavor="cloud", seed="demo")
    server = start_jira(flavor="server", seed="demo")
    gone = cloud.call("GET", "search", 410, params={"jql": "project = OPS"})
    assert "/rest/api/3/search/jql" in gone["errorMessages"][0]
    server.call("GET", "search/jql", 404, params={"jql": "project = OPS"})
    server.call("POST", "search/approximate-count", 404, json={"jql": "project = OPS"})
    unbounded = cloud.call("GET", "search/jql", 400, params={"jql": "ORDER BY key"})
    assert "Unbounded" in unbounded["errorMessages"][0]
    assert server.call("GET", "search", params={"jql": ""})["total"] == 12
    ids = cloud.call("GET", "search/jql", params={"jql": "project = OPS", "maxResults": 3})
    assert all(set(i) == {"id"} for i in ids["issues"]) and ids["isLast"] is False
    cloud.call("GET", "search/jql", 400, params={"jql": "project = OPS",
                                                  "nextPageToken": "garbage"})
    other = cloud.call("GET", "search/jql", 400, params={
        "jql": "project = OPS AND labels = x", "nextPageToken": ids["nextPageToken"]})
    assert "token" in other["errorMessages"][0]
    capped = cloud.call("GET", "search/jql", params={"jql": "project = OPS",
                                                     "maxResults": 10_000, "fields": "*all"})
    assert len(capped["issues"]) == 12 and capped["isLast"]
    posted = server.call("POST", "search", json={"jql": "issuetype = Incident",
                                                 "validateQuery": True, "fields": ["summary"],
                                                 "startAt": 0, "maxResults": 1})
    assert posted["total"] == 2 and list(posted["issues"][0]["fields"]) == ["summary"]
    server.call("GET", "search", 400, params={"jql": "project = OPS",
                                              "validateQuery": "sometimes"})


# -- JQL ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("jql", "expected"), [
    ("project = OPS", 12),
    ("PROJECT in (OPS, 10000)", 12),
    ("issuetype = Change", 9),
    ("issuetype IN (Incident, Task)", 3),
    ("type = 10003 and project = ops", 2),
    ('fixVersion = "Release 1.2"', 4),
    ("fixVersion = 10003", 4),
    ("fixVersion in ('Release 1.0', 'Release 1.1')", 4),
    ("fixVersion is EMPTY", 2),
    ("fixVersion is not empty AND issuetype = Change", 9),
    ("fixVersion != 'Release 1.0'", 8),
    ('affectedVersion = "Release 1.1"', 1),
    ("labels = security", 2),
    ("labels in (database, messaging)", 3),
    ("labels is EMPTY", 7),
    ("key = OPS-3", 1),
    ("key in (OPS-1, ops-2, 10002)", 3),
    ("id in (10000, 10001)", 2),
    ("issuekey != OPS-1", 11),
    ("status = Closed", 3),
    ('status in ("In Progress", Open, Scheduled)', 2),
    ("status = 10104", 1),
    ("resolution = Unresolved", 7),
    ("resolution is not EMPTY", 5),
    ("resolution = Done", 4),
    ("resolution in (\"Won't Do\")", 1),
    ("created >= -3d", 2),
    ("created < -60d", 2),
    ("updated > -1h", 0),
    ("(project = OPS AND (labels = security)) and status = Closed", 1),
])
def test_jql_subset(server: JiraHandle, jql: str, expected: int) -> None:
    assert server.search_total(jql) == expected, jql


def test_jql_dates_and_ordering(server: JiraHandle) -> None:
    start = datetime.now(UTC) - timedelta(minutes=2)
    created = server.new_issue("Fresh")
    for fmt in ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M"):
        assert server.search_keys(f'updated >= "{start.strftime(fmt)}"') == [created["key"]]
    assert server.search_keys("updated >= -5m") == [created["key"]]
    assert server.search_total(f'created >= "{date.today().isoformat()}"') >= 1
    tomorrow = (date.today() + timedelta(days=1)).strftime("%Y/%m/%d")
    assert server.search_total(f"updated < '{tomorrow}' AND updated <= -0m") == 13
    assert server.search_keys("issuetype = Incident ORDER BY key ASC") == ["OPS-10", "OPS-11"]
    assert server.search_keys("issuetype = Incident order by KEY desc") == ["OPS-11", "OPS-10"]
    by_created = server.search_keys("project = OPS ORDER BY created DESC")
    assert by_created[0] == created["key"] and by_created[-1] == "OPS-1"
    server.call("PUT", "issue/OPS-1", 204, json={"fields": {"summary": "Touched"}})
    assert server.search_keys("project = OPS ORDER BY updated DESC")[0] == "OPS-1"
    server.call("GET", "search", 400, params={"jql": "project = OPS ORDER BY assignee"})


@pytest.mark.parametrize(("jql", "message"), [
    ("project = OPS OR", "Error in the JQL Query: Expecting a field name"),
    ("NOT", "Error in the JQL Query: Expecting a field name"),
    ("(project = OPS OR labels = x", "Error in the JQL Query: Expecting ')'"),
    ("project = OPS labels = x", "Expecting either 'OR' or 'AND'"),
    ("assignee = currentUser()", "Searching by 'assignee' is not supported"),
    ("nonsense = 1", "Field 'nonsense' does not exist or you do not have permission"),
    ("fixVersion in releasedVersions()", "function 'releasedVersions()'"),
    ("summary = deploy", "The operator '=' is not supported by the 'summary' field."),
    ("labels ~ deploy", "The operator '~' is not supported by the 'labels' field."),
    ("text !~ deploy", "The operator '!~' is not supported by the 'text' field."),
    ("summary is EMPTY", "The operator 'IS' is not supported by the 'summary' field."),
    ('summary ~ "*ploy"', "is not allowed to start with '*'"),
    ('summary ~ " "', "does not support searching for an empty string"),
    ("summary ~ EMPTY", "cannot be used with EMPTY"),
    ("project = NOPE", "The value 'NOPE' does not exist for the field 'project'."),
    ("fixVersion = 'Release 9'", "The value 'Release 9' does not exist"),
    ("key = OPS-999", "An issue with key 'OPS-999' does not exist"),
    ("status = Sleeping", "The value 'Sleeping' does not exist"),
    ("updated >= yesterday", "Date value 'yesterday' for field 'updated' is invalid"),
    ("labels > a", "The operator '>' is not supported"),
    ("project = ", "Error in the JQL Query"),
    ("project OPS", "Error in the JQL Query: Expecting operator"),
    ("project = OPS AND", "Error in the JQL Query"),
    ("project in (OPS", "Error in the JQL Query"),
    ("project = OPS ORDER BY reporter", "Ordering by 'reporter' is not supported"),
    ("project = OPS ORDER BY nonsense", "Not able to sort using field 'nonsense'."),
    ("project = OPS)", "Error in the JQL Query"),
    ("updated was empty", "WAS"),
    ("project = OPS % 2", "reserved JQL character"),
])
def test_jql_errors(server: JiraHandle, jql: str, message: str) -> None:
    error = server.call("GET", "search", 400, params={"jql": jql})
    assert error["errors"] == {}
    assert message in error["errorMessages"][0], error["errorMessages"][0]


def test_jql_parser_directly() -> None:
    query = parse_jql("Project IN (OPS, \"X Y\") and labels is not EMPTY ORDER BY updated")
    assert [(c.field, c.op, c.values) for c in query.clauses] == [
        ("project", "in", ("OPS", "X Y")), ("labels", "is not", (None,))]
    assert [(k.field, k.descending) for k in query.order] == [("updated", False)]
    assert not parse_jql("order by key").bounded
    assert parse_jql('labels = "a \\"quoted\\" value"').clauses[0].values == ('a "quoted" value',)
    with pytest.raises(JqlError):
        parse_jql("labels = EMPTY AND")


# -- webhooks -----------------------------------------------------------------------------------

def _deliveries(handle: JiraHandle, receiver: Any) -> list[tuple[dict[str, str], dict]]:
    assert handle.sender.flush(5)
    return [(r.headers, json.loads(r.body)) for r in receiver.received]


def test_webhooks_are_signed_and_carry_jira_payloads(demo: JiraHandle,
                                                     webhook_receiver: Any) -> None:
    events = ["jira:issue_created", "jira:issue_updated", "jira:issue_deleted",
              "issuelink_created", "issuelink_deleted", "jira:version_created",
              "jira:version_updated", "jira:version_released", "jira:version_unreleased",
              "jira:version_deleted"]
    hook = demo.http.post(f"{demo.url}/rest/webhooks/1.0/webhook", json={
        "name": "relbridge", "url": webhook_receiver.url, "events": events,
        "secret": "s3cret"})
    assert hook.status_code == 201
    assert hook.json()["self"].startswith(f"{demo.url}/rest/webhooks/1.0/webhook/")
    assert "secret" not in hook.json()

    version = demo.call("POST", "version", 201, json={"name": "Hooked", "project": "OPS"})
    issue = demo.new_issue("Hooked change", fixVersions=[{"id": version["id"]}])
    demo.call("POST", f"issue/{issue['key']}/transitions", 204,
              json={"transition": {"id": 11}})
    demo.call("POST", "issueLink", 201, json={"type": {"name": "Problem/Incident"},
                                              "inwardIssue": {"key": issue["key"]},
                                              "outwardIssue": {"key": "OPS-11"}})
    demo.call("PUT", f"version/{version['id']}", json={"released": True})
    demo.call("PUT", f"version/{version['id']}", json={"released": False,
                                                        "description": "again"})
    demo.call("DELETE", f"issue/{issue['key']}", 204)
    demo.call("DELETE", f"version/{version['id']}", 204)
    received = _deliveries(demo, webhook_receiver)

    for delivery in webhook_receiver.received:
        expected = hmac.new(b"s3cret", delivery.body, hashlib.sha256).hexdigest()
        assert delivery.headers["x-hub-signature"] == f"sha256={expected}"
    identifiers = {headers["x-atlassian-webhook-identifier"] for headers, _ in received}
    assert len(identifiers) == len(received)
    payloads = [payload for _, payload in received]
    assert [p["webhookEvent"] for p in payloads] == [
        "jira:version_created", "jira:issue_created", "jira:issue_updated",
        "issuelink_created", "jira:version_released", "jira:version_updated",
        "jira:version_unreleased", "jira:issue_deleted", "jira:version_deleted"]
    assert all(isinstance(p["timestamp"], int) and p["timestamp"] > 1_600_000_000_000
               for p in payloads)
    created = payloads[1]
    assert created["issue"]["key"] == issue["key"]
    assert created["issue"]["fields"]["fixVersions"][0]["name"] == "Hooked"
    assert created["user"]["displayName"] == "Administrator"
    updated = payloads[2]
    assert updated["changelog"]["items"] == [{
        "field": "status", "fieldtype": "jira", "fieldId": "status", "from": "10100",
        "fromString": "New", "to": "10101", "toString": "Assess"}]
    link = payloads[3]["issueLink"]
    assert link["sourceIssueId"] == int(issue["id"])
    assert link["destinationIssueId"] == 10010 and isinstance(link["id"], int)
    assert link["issueLinkType"]["outwardName"] == "causes"
    released = payloads[4]["version"]
    assert released["released"] is True and released["id"] == version["id"]
    assert payloads[7]["issue"]["key"] == issue["key"]


def test_webhook_registry(demo: JiraHandle, webhook_receiver: Any) -> None:
    base = f"{demo.url}/rest/webhooks/1.0/webhook"
    bad = demo.http.post(base, json={"name": "", "url": "ftp://x", "events": ["jira:nope"]})
    assert bad.status_code == 400
    assert set(bad.json()["errors"]) == {"name", "url", "events"}
    plain = demo.http.post(base, json={"name": "plain", "url": webhook_receiver.url,
                                       "events": ["jira:issue_created"]}).json()
    assert [h["name"] for h in demo.http.get(base).json()] == ["plain"]
    demo.new_issue("one")
    headers, payload = _deliveries(demo, webhook_receiver)[0]
    assert "x-hub-signature" not in headers and payload["webhookEvent"] == "jira:issue_created"
    assert demo.http.delete(plain["self"]).status_code == 204
    assert demo.http.get(plain["self"]).status_code == 404
    demo.new_issue("two")
    assert len(_deliveries(demo, webhook_receiver)) == 1
    assert requests.get(base).status_code == 401


# -- seeds, persistence, wiring -----------------------------------------------------------------

def test_empty_seed_has_the_schema_only(start_jira: Callable[..., JiraHandle]) -> None:
    empty = start_jira(seed="empty")
    project = empty.call("GET", "project/OPS")
    assert {t["name"] for t in project["issueTypes"]} == {"Change", "Incident", "Task", "Bug", "Sub-task"}
    assert project["versions"] == []
    link_types = empty.call("GET", "issueLinkType")["issueLinkTypes"]
    assert {"name": "Problem/Incident", "inward": "is caused by", "outward": "causes"}.items() \
        <= next(t for t in link_types if t["name"] == "Problem/Incident").items()
    assert empty.call("GET", "search/jql", params={"jql": "project = OPS"})["issues"] == []
    assert empty.new_issue()["key"] == "OPS-1"


def test_demo_seed_is_realistic(demo: JiraHandle) -> None:
    versions = demo.call("GET", "project/OPS/versions")
    today = date.today()
    assert any(v["released"] for v in versions) and any(not v["released"] for v in versions)
    current = next(v for v in versions if v["name"] == "Release 1.2")
    assert date.fromisoformat(current["startDate"]) < today < date.fromisoformat(
        current["releaseDate"])
    incident = demo.call("GET", "issue/OPS-10")["fields"]
    assert incident["issuetype"]["name"] == "Incident"
    assert [v["name"] for v in incident["versions"]] == ["Release 1.1"]
    link = incident["issuelinks"][0]
    assert link["type"]["name"] == "Problem/Incident" and link["inwardIssue"]["key"] == "OPS-3"
    statuses = {demo.call("GET", f"issue/OPS-{n}")["fields"]["status"]["name"]
                for n in range(1, 10)}
    assert {"New", "Assess", "Authorize", "Scheduled", "Implement", "Closed",
            "Canceled"} <= statuses


def test_state_survives_a_restart(start_jira: Callable[..., JiraHandle], tmp_path: Path,
                                  webhook_receiver: Any) -> None:
    state_file = tmp_path / "jira.json"
    first = start_jira(flavor="server", seed="demo", state_file=state_file)
    version = first.call("POST", "version", 201, json={"name": "Kept", "project": "OPS"})
    issue = first.new_issue("Kept change", fixVersions=[{"name": "Kept"}])
    first.call("POST", f"issue/{issue['key']}/transitions", 204,
               json={"transition": {"id": "11"}})
    first.http.post(f"{first.url}/rest/webhooks/1.0/webhook", json={
        "name": "kept", "url": webhook_receiver.url, "events": ["jira:issue_created"]})
    before = first.call("GET", f"issue/{issue['key']}", params={"expand": "changelog"})
    first.sim.save()
    second = start_jira(flavor="server", seed="demo", state_file=state_file)
    after = second.call("GET", f"issue/{issue['key']}", params={"expand": "changelog"})
    assert json.dumps(after).replace(second.url, "") == json.dumps(before).replace(first.url, "")
    assert second.call("GET", f"version/{version['id']}")["name"] == "Kept"
    assert second.new_issue("Next")["key"] == "OPS-14"
    assert len(_deliveries(second, webhook_receiver)) == 1
    second.sim.reset()
    assert second.search_total("project = OPS") == 12
    second.call("GET", f"version/{version['id']}", 404)


def test_control_api_and_injected_faults(demo: JiraHandle) -> None:
    fault = demo.http.post(f"{demo.url}/_sim/faults", json={
        "method": "GET", "path": "/rest/api/2/issue/", "status": 503, "times": 1})
    assert fault.status_code == 201
    failed = demo.http.get(demo.rest("issue/OPS-1"))
    assert failed.status_code == 503 and failed.json()["errorMessages"]
    assert "Retry-After" in failed.headers
    assert demo.http.get(demo.rest("issue/OPS-1")).status_code == 200
    demo.call("DELETE", "issue/OPS-1", 204)
    assert demo.http.post(f"{demo.url}/_sim/reset").status_code == 200
    demo.call("GET", "issue/OPS-1")
    log = demo.http.get(f"{demo.url}/_sim/requests").json()
    assert log["count"] >= 1 and log["by_method"]["GET"] >= 1


def test_start_simulators_wires_the_jira_simulator(sims_factory: Any) -> None:
    sims = sims_factory(seed="demo", jira_flavor="server")
    client = jira.JIRA(server=sims.jira_url, basic_auth=AUTH, max_retries=0)
    assert not client._is_cloud
    assert len(client.search_issues("project = OPS", maxResults=0)) == 12
