"""The Jira simulator's responses conform to Atlassian's published OpenAPI component schemas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bridge.sim.jira.app import create_jira_app
from bridge.sim.server import start_in_thread
from tests.sim.jira_schemas import assert_issue, assert_schema, schema_errors

AUTH = ("admin", "admin")


class Client:
    def __init__(self, url: str, api: str = "2") -> None:
        self.url = url
        self.api = api
        self.session = requests.Session()
        self.session.auth = AUTH

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.url}/rest/api/{self.api}/{path}",
                                        **kwargs)
        assert response.status_code == expect, response.text
        return response.json() if response.content else None


@pytest.fixture(scope="module", params=["cloud", "server"])
def jira_url(request: pytest.FixtureRequest) -> Iterator[str]:
    sim = create_jira_app(flavor=request.param, seed="demo")
    server = start_in_thread(sim.app)
    yield server.url
    server.stop()


@pytest.fixture(params=["2", "3"])
def api(jira_url: str, request: pytest.FixtureRequest) -> Client:
    return Client(jira_url, request.param)


def test_validator_rejects_wrong_shapes() -> None:
    """Guard against a validator that accepts anything."""
    assert schema_errors("Version", {"id": 10000, "projectId": "x"})
    assert schema_errors("ErrorCollection", {"errorMessages": "not a list"})
    assert schema_errors("IssueBean", {"id": "1", "unknownProperty": True})
    assert not schema_errors("Version", {"id": "1", "projectId": 1, "name": "v"})


def test_instance_resources(api: Client) -> None:
    assert_schema("ServerInformation", api.call("GET", "serverInfo"))
    assert_schema("User", api.call("GET", "myself"))
    for field in api.call("GET", "field"):
        assert_schema("FieldDetails", field)
    for issue_type in api.call("GET", "issuetype"):
        assert_schema("IssueTypeDetails", issue_type)
    assert_schema("IssueLinkTypes", api.call("GET", "issueLinkType"))
    for status in api.call("GET", "status"):
        assert_schema("StatusDetails", status)
    for priority in api.call("GET", "priority"):
        assert_schema("Priority", priority)
    for resolution in api.call("GET", "resolution"):
        assert_schema("Resolution", resolution)


def test_projects(api: Client) -> None:
    for project in api.call("GET", "project", params={"expand": "issueTypes"}):
        assert_schema("Project", project)
    project = api.call("GET", "project/OPS")
    assert_schema("Project", project)
    assert {t["name"] for t in project["issueTypes"]} >= {"Change", "Incident"}
    assert_schema("PageBeanProject", api.call("GET", "project/search"))
    for entry in api.call("GET", "project/OPS/statuses"):
        assert_schema("IssueTypeWithStatus", entry)


def test_versions(api: Client) -> None:
    versions = api.call("GET", "project/OPS/versions")
    assert versions
    for version in versions:
        assert_schema("Version", version)
    page = api.call("GET", "project/OPS/version", params={"maxResults": 2})
    assert_schema("PageBeanVersion", page)
    assert page["nextPage"].startswith(api.url)
    created = api.call("POST", "version", 201, json={
        "name": f"Contract {api.api}", "project": "OPS", "startDate": "2030-01-01",
        "releaseDate": "2030-02-01", "description": "contract check"})
    assert_schema("Version", created)
    assert_schema("Version", api.call("GET", f"version/{created['id']}",
                                      params={"expand": "issuesstatus"}))
    assert_schema("VersionIssueCounts",
                  api.call("GET", f"version/{created['id']}/relatedIssueCounts"))
    assert_schema("VersionUnresolvedIssuesCount",
                  api.call("GET", f"version/{created['id']}/unresolvedIssueCount"))
    assert_schema("Version", api.call("POST", f"version/{created['id']}/move",
                                      json={"position": "First"}))
    api.call("DELETE", f"version/{created['id']}", 204)


def test_issues_links_and_transitions(api: Client) -> None:
    created = api.call("POST", "issue", 201, json={"fields": {
        "project": {"key": "OPS"}, "issuetype": {"name": "Change"}, "summary": "Contract",
        "description": "two\nlines", "fixVersions": [{"name": "Release 1.2"}],
        "labels": ["contract"], "duedate": "2030-01-01", "customfield_10010": "low"}})
    assert_schema("CreatedIssue", created)
    transitions = api.call("GET", f"issue/{created['key']}/transitions")
    assert_schema("Transitions", transitions)
    api.call("POST", f"issue/{created['key']}/transitions", 204,
             json={"transition": {"id": transitions["transitions"][0]["id"]}})
    api.call("POST", "issueLink", 201, json={
        "type": {"name": "Problem/Incident"}, "inwardIssue": {"key": created["key"]},
        "outwardIssue": {"key": "OPS-11"}})
    issue = api.call("GET", f"issue/{created['key']}",
                     params={"expand": "changelog,names,transitions"})
    assert_issue(issue)
    assert issue["fields"]["issuelinks"]
    link = api.call("GET", f"issueLink/{issue['fields']['issuelinks'][0]['id']}")
    assert_schema("IssueLink", link)
    for key in ("OPS-10", "OPS-11", "OPS-3"):
        assert_issue(api.call("GET", f"issue/{key}"))


def test_search_results(api: Client) -> None:
    if api.call("GET", "serverInfo")["deploymentType"] == "Cloud":
        first = api.call("GET", "search/jql", params={"jql": "project = OPS",
                                                       "maxResults": 5, "fields": "*all"})
        assert_schema("SearchAndReconcileResults", first)
        assert "nextPageToken" in first
        for issue in first["issues"]:
            assert_issue(issue)
        last = api.call("POST", "search/jql", json={
            "jql": "project = OPS", "nextPageToken": first["nextPageToken"],
            "maxResults": 100, "fields": ["summary", "status"]})
        assert_schema("SearchAndReconcileResults", last)
        assert "nextPageToken" not in last and last["isLast"] is True
        ids = api.call("GET", "search/jql", params={"jql": "project = OPS"})
        assert_schema("SearchAndReconcileResults", ids)
        assert set(ids["issues"][0]) == {"id"}
        assert_schema("JQLCountResultsBean", api.call(
            "POST", "search/approximate-count", json={"jql": "project = OPS"}))
    else:
        page = api.call("GET", "search", params={"jql": "project = OPS", "maxResults": 5})
        assert_schema("SearchResults", page)
        for issue in page["issues"]:
            assert_issue(issue)


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "issue/OPS-999", None, 404),
    ("POST", "issue", {"fields": {"project": {"key": "OPS"}}}, 400),
    ("GET", "version/424242", None, 404),
    ("POST", "version", {"name": "Release 1.0", "project": "OPS"}, 400),
    ("GET", "project/NOPE", None, 404),
    ("POST", "issue/OPS-1/transitions", {"transition": {"id": "999"}}, 400),
    ("GET", "nothing/here", None, 404),
])
def test_error_bodies(api: Client, method: str, path: str, body: Any, status: int) -> None:
    error = api.call(method, path, status, json=body)
    assert_schema("ErrorCollection", error)
    assert error["errorMessages"] or error["errors"]


def test_search_error_bodies(api: Client) -> None:
    cloud = api.call("GET", "serverInfo")["deploymentType"] == "Cloud"
    path = "search/jql" if cloud else "search"
    error = api.call("GET", path, 400, params={"jql": "project = OPS OR summary = x"})
    assert_schema("ErrorCollection", error)
    removed = api.call("GET", "search", 410 if cloud else 200, params={"jql": "project = OPS"})
    assert_schema("ErrorCollection" if cloud else "SearchResults", removed)
