"""JiraAdapter against canned Jira responses: exact requests, call counts, error mapping."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from pydantic import SecretStr
from relbridge_jira.adapter import JiraAdapter

from bridge.errors import BadInput, ConfigError, PermanentError, TransientError

URL = "https://jira.example.test"
API = URL + "/rest/api/2"


def make_adapter(**kwargs: Any) -> JiraAdapter:
    options: dict[str, Any] = {"page_size": 2}
    options.update(kwargs)
    return JiraAdapter(URL, "bot", SecretStr("s3cret"), ["OPS"], **options)


def server_info(rsps: responses.RequestsMock, cloud: bool = True) -> None:
    rsps.get(f"{API}/serverInfo", json={
        "baseUrl": URL, "versionNumbers": [1001, 0, 0] if cloud else [9, 12, 0],
        "deploymentType": "Cloud" if cloud else "Server"})


def query(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def body(call: Any) -> Any:
    return json.loads(call.request.body)


def version(vid: str, name: str, **extra: Any) -> dict[str, Any]:
    raw = {"self": f"{API}/version/{vid}", "id": vid, "name": name, "description": "",
           "archived": False, "released": False, "projectId": 10000}
    raw.update(extra)
    return raw


def issue(iid: str, key: str, type_name: str = "Change", **fields: Any) -> dict[str, Any]:
    base = {"summary": f"summary of {key}", "status": {"name": "New", "id": "1"},
            "issuetype": {"name": type_name}, "labels": [], "fixVersions": [], "versions": [],
            "issuelinks": [], "updated": "2025-03-04T10:15:30.123+0100", "priority": {"name": "High"}}
    base.update(fields)
    return {"id": iid, "key": key, "self": f"{API}/issue/{iid}", "fields": base}


@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapter must never sleep (the library's retries and create_version's pause)."""
    def fail(seconds: float) -> None:
        raise AssertionError(f"slept {seconds}s")
    monkeypatch.setattr("time.sleep", fail)


# --- construction and start-up ------------------------------------------------------------------


def test_construction_does_no_io_and_validates(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    assert adapter.calls == {}
    assert "s3cret" not in repr(adapter)
    with pytest.raises(ConfigError):
        JiraAdapter(URL, "bot", SecretStr("x"), [])
    with pytest.raises(ConfigError):
        JiraAdapter(URL, "bot", SecretStr("x"), ["OPS"], issue_types={"change": "Change"})


def test_first_use_reads_server_info_once_with_basic_auth(rsps: responses.RequestsMock) -> None:
    seen: list[tuple[str, str, int]] = []
    adapter = make_adapter(on_call=lambda *call: seen.append(call))
    server_info(rsps, cloud=False)
    rsps.get(f"{API}/myself", json={"name": "bot", "timeZone": "UTC"})
    adapter.check_auth()
    adapter.check_auth()
    assert [c.request.url.split("/rest/api/2/")[1] for c in rsps.calls] == ["serverInfo", "myself", "myself"]
    assert rsps.calls[0].request.headers["Authorization"].startswith("Basic ")
    assert adapter.calls == {"GET": 3}
    assert seen == [("jira", "GET", 200)] * 3
    assert adapter.is_cloud is False


def test_plugin_hook_builds_adapter_from_config() -> None:
    import relbridge_jira

    from bridge.config import Config

    config = Config.model_validate({"jira": {"url": URL, "projects": ["OPS", "REL"], "timeout_seconds": 5},
                                    "sync": {"page_size": 250}})
    [adapter] = relbridge_jira.relbridge_adapters(config=config)
    assert isinstance(adapter, JiraAdapter)
    assert adapter.projects == ["OPS", "REL"]
    assert adapter._issues._page_size == 250
    assert adapter._conn.url == URL


# --- releases (versions) ------------------------------------------------------------------------


def test_list_releases_one_call_per_project_with_state_and_hash(rsps: responses.RequestsMock) -> None:
    adapter = JiraAdapter(URL, "bot", SecretStr("s"), ["OPS", "REL"])
    server_info(rsps)
    rsps.get(f"{API}/project/OPS/versions", json=[
        version("10001", "1.0", released=True, releaseDate="2025-03-04"),
        version("10002", "1.1", archived=True, released=True)])
    rsps.get(f"{API}/project/REL/versions", json=[version("10003", "2.0", startDate="2025-04-01")])
    records = list(adapter.list_changed("release", datetime(2025, 1, 1, tzinfo=UTC), ["name", "overdue"]))
    assert [(r.id, r.key, r.fields["state"]) for r in records] == [
        ("10001", "1.0", "released"), ("10002", "1.1", "archived"), ("10003", "2.0", "unreleased")]
    first = records[0]
    # what a person opens, not the REST resource: the issue navigator on the fix version
    assert first.url == f"{URL}/issues/?jql=fixVersion%3D10001" and first.entity == "release"
    assert first.fields["releaseDate"] == "2025-03-04" and first.fields["projectId"] == 10000
    assert first.updated_at.tzinfo is not None
    assert adapter.calls == {"GET": 3}

    # the version hash is stable across reads and changes with a mapped field
    rsps.get(f"{API}/version/10001", json=version("10001", "1.0", released=True, releaseDate="2025-03-04"))
    rsps.get(f"{API}/version/10001", json=version("10001", "1.0", released=True, releaseDate="2025-03-05"))
    again = adapter.read("release", "10001", [])
    changed = adapter.read("release", "10001", [])
    assert again is not None and again.version == first.version
    assert changed is not None and changed.version != first.version


def test_version_create_write_read_delete(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    rsps.post(f"{API}/version", status=201,
              json=version("10010", "R-2025.03", released=True, releaseDate="2025-03-04"))
    created = adapter.create("release", {"state": "released", "releaseDate": "2025-03-04",
                                         "description": "March"}, "R-2025.03")
    assert body(rsps.calls[1]) == {"name": "R-2025.03", "project": "OPS", "released": True,
                                   "archived": False, "releaseDate": "2025-03-04", "description": "March"}
    assert created.id == "10010" and created.fields["state"] == "released"

    rsps.put(f"{API}/version/10010", json=version("10010", "R-2025.03", archived=True, released=True))
    written = adapter.write("release", "10010", {"state": "archived"})
    assert body(rsps.calls[2]) == {"archived": True}
    assert written.fields["state"] == "archived"

    rsps.put(f"{API}/version/10010", json=version("10010", "R-2025.03"))
    adapter.write("release", "10010", {"state": "unreleased", "startDate": None})
    assert body(rsps.calls[3]) == {"released": False, "archived": False, "startDate": None}

    rsps.get(f"{API}/version/404", status=404, json={"errorMessages": ["Could not find version for id '404'"], "errors": {}})
    assert adapter.read("release", "404", []) is None

    rsps.delete(f"{API}/version/10010", status=204)
    rsps.delete(f"{API}/version/10011", status=404, json={"errorMessages": ["gone"], "errors": {}})
    adapter.delete("release", "10010")
    adapter.delete("release", "10011")  # already gone: fine
    assert adapter.calls == {"GET": 2, "POST": 1, "PUT": 2, "DELETE": 2}
    with pytest.raises(BadInput):
        adapter.write("release", "10010", {"state": "shipped"})


def test_version_write_without_fields_sends_nothing(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    assert adapter.write("release", "7", {}) is None
    assert adapter.calls == {}  # not even serverInfo: nothing was to be sent


def test_find_release_by_name_across_projects(rsps: responses.RequestsMock) -> None:
    adapter = JiraAdapter(URL, "bot", SecretStr("s"), ["OPS", "REL"])
    server_info(rsps)
    rsps.get(f"{API}/project/OPS/versions", json=[version("1", "1.0")])
    rsps.get(f"{API}/project/REL/versions", json=[version("2", "R-7")])
    found = adapter.find_by_correlation("release", "R-7")
    assert found is not None and found.id == "2"
    rsps.get(f"{API}/project/OPS/versions", json=[])
    rsps.get(f"{API}/project/REL/versions", json=[])
    assert adapter.find_by_correlation("release", "missing") is None


# --- listing issues -----------------------------------------------------------------------------


def test_list_changes_cloud_pages_with_next_page_token(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps, cloud=True)
    rsps.get(f"{API}/myself", json={"accountId": "x", "timeZone": "Europe/Berlin"})
    rsps.get(f"{API}/search/jql", json={"issues": [
        issue("101", "OPS-1", labels=["relbridge-CHG-1", "ops"], fixVersions=[{"id": "10001", "name": "1.0"}]),
        issue("102", "OPS-2")], "nextPageToken": "tok2"})
    rsps.get(f"{API}/search/jql", json={"issues": [issue("103", "OPS-3")]})
    since = datetime(2025, 3, 4, 9, 14, 59, tzinfo=UTC)
    records = list(adapter.list_changed("change", since, ["summary", "status", "release"]))

    assert [r.key for r in records] == ["OPS-1", "OPS-2", "OPS-3"]
    first_page, second_page = query(rsps.calls[2]), query(rsps.calls[3])
    assert first_page["jql"] == ['project in ("OPS") AND issuetype = "Change" AND updated >= '
                                 '"2025/03/04 10:14" ORDER BY updated ASC, key ASC']
    assert first_page["fields"] == ["created,fixVersions,labels,status,summary,updated"]
    assert first_page["maxResults"] == ["2"] and "nextPageToken" not in first_page
    assert second_page["nextPageToken"] == ["tok2"]
    assert adapter.calls == {"GET": 4}  # serverInfo, myself, two pages

    one = records[0]
    assert one.id == "101" and one.correlation == "CHG-1"
    assert one.updated_at == datetime(2025, 3, 4, 9, 15, 30, 123000, tzinfo=UTC)
    assert one.version == "2025-03-04T10:15:30.123+0100"
    assert one.url == f"{URL}/browse/OPS-1"
    assert one.fields["status"] == "New" and one.fields["release"] == "10001"
    assert records[1].fields["release"] is None and records[1].correlation is None

    # the user's time zone is read once per adapter
    rsps.get(f"{API}/search/jql", json={"issues": []})
    assert list(adapter.list_changed("change", since, ["summary"])) == []
    assert adapter.calls == {"GET": 5}


def test_list_incidents_server_pages_with_start_at(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps, cloud=False)
    link = {"id": "500", "type": {"name": "Problem/Incident", "inward": "is caused by", "outward": "causes"},
            "inwardIssue": {"id": "101", "key": "OPS-1"}}
    other = {"id": "501", "type": {"name": "Blocks"}, "inwardIssue": {"id": "999", "key": "OPS-9"}}
    rsps.get(f"{API}/search", json={"startAt": 0, "maxResults": 2, "total": 3, "issues": [
        issue("201", "OPS-5", "Incident", versions=[{"id": "10002"}], issuelinks=[other, link]),
        issue("202", "OPS-6", "Incident")]})
    rsps.get(f"{API}/search", json={"startAt": 2, "maxResults": 2, "total": 3, "issues": [
        issue("203", "OPS-7", "Incident")]})
    records = list(adapter.list_changed("incident", None, ["caused_by", "release", "priority"]))

    assert [r.id for r in records] == ["201", "202", "203"]
    assert [query(c)["startAt"] for c in rsps.calls[1:]] == [["0"], ["2"]]
    first = query(rsps.calls[1])
    assert first["jql"] == ['project in ("OPS") AND issuetype = "Incident" ORDER BY updated ASC, key ASC']
    assert first["fields"] == ["created,issuelinks,labels,priority,updated,versions"]
    assert adapter.calls == {"GET": 3}  # no myself call without a since
    assert records[0].fields["caused_by"] == "101" and records[0].fields["release"] == "10002"
    assert records[0].fields["priority"] == "High"
    assert records[1].fields["caused_by"] is None


def test_find_issue_by_correlation_label(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps, cloud=True)
    rsps.get(f"{API}/search/jql", json={"issues": [issue("101", "OPS-1", labels=["relbridge-CHG-7"])]})
    found = adapter.find_by_correlation("change", "CHG-7")
    assert found is not None and found.id == "101" and found.correlation == "CHG-7"
    params = query(rsps.calls[1])
    assert params["jql"] == ['project in ("OPS") AND issuetype = "Change" AND labels = "relbridge-CHG-7" '
                             'ORDER BY created ASC']
    assert params["maxResults"] == ["2"]
    rsps.get(f"{API}/search/jql", json={"issues": []})
    assert adapter.find_by_correlation("change", "CHG-8") is None
    assert adapter.calls == {"GET": 3}
    with pytest.raises(BadInput):
        adapter.find_by_correlation("change", "has space")


def worklog(wid: str, started: str, seconds: int) -> dict[str, Any]:
    return {"id": wid, "started": started, "timeSpentSeconds": seconds,
            "author": {"displayName": "Ada Lovelace", "name": "ada"}}


def test_worklogs_ride_in_the_search_and_only_a_cut_short_list_costs_a_call(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter(read_time_worked=True)
    server_info(rsps, cloud=True)
    full = {"startAt": 0, "maxResults": 20, "total": 1, "worklogs": [worklog("1", "2025-03-04T10:00:00.000+0100", 600)]}
    cut = {"startAt": 0, "maxResults": 20, "total": 21,
           "worklogs": [worklog(str(n), "2025-03-04T10:00:00.000+0000", 60) for n in range(20)]}
    rsps.get(f"{API}/search/jql", json={"issues": [issue("101", "OPS-1", worklog=full),
                                                   issue("102", "OPS-2", worklog=cut)]})
    rsps.get(f"{API}/issue/102/worklog", json={"startAt": 0, "maxResults": 1000, "total": 21, "worklogs": [
        worklog(str(n), "2025-03-04T10:00:00.000+0000", 60) for n in range(21)]})
    first, second = adapter.list_changed("change", None, ["summary"])

    assert "worklog" in query(rsps.calls[1])["fields"][0].split(",")
    assert first.worklogs is not None and len(first.worklogs) == 1
    [entry] = first.worklogs
    assert (entry.id, entry.seconds, entry.author) == ("1", 600, "Ada Lovelace")
    assert entry.started == datetime(2025, 3, 4, 9, 0, tzinfo=UTC)
    assert "worklog" not in first.fields  # kept apart from the record's fields
    assert second.worklogs is not None and len(second.worklogs) == 21
    assert adapter.calls == {"GET": 3}  # serverInfo, the search, one worklog list
    # A look-up by label asks for no worklogs: its record leaves the stored ones alone.
    rsps.get(f"{API}/search/jql", json={"issues": [issue("101", "OPS-1", labels=["relbridge-CHG-7"])]})
    found = adapter.find_by_correlation("change", "CHG-7")
    assert found is not None and found.worklogs is None


def test_without_read_time_worked_no_worklog_is_asked_for(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps, cloud=True)
    rsps.get(f"{API}/search/jql", json={"issues": [issue("101", "OPS-1")]})
    [record] = adapter.list_changed("change", None, ["summary"])
    assert "worklog" not in query(rsps.calls[1])["fields"][0] and record.worklogs is None


# --- writing issues -----------------------------------------------------------------------------

CHANGE_WORKFLOW = ["New", "Assess", "Authorize", "Scheduled", "Implement", "Review", "Canceled", "Closed"]


class FakeWorkflow:
    """Issues moving through a forward-only workflow (next step or Canceled).

    ``refuse`` holds (issue id, target status) pairs whose transition POST is answered 400
    once, as Jira does for a transition whose condition fails."""

    def __init__(self, rsps: responses.RequestsMock, *issue_ids: str, status: str = "New") -> None:
        self.status = {issue_id: status for issue_id in issue_ids}
        self.posted: list[str] = []
        self.reads: list[str] = []
        self.refuse: set[tuple[str, str]] = set()
        rsps.assert_all_requests_are_fired = False  # tests assert on `posted` instead
        for issue_id in issue_ids:
            rsps.add_callback("GET", f"{API}/issue/{issue_id}", callback=self.get)
            rsps.add_callback("POST", f"{API}/issue/{issue_id}/transitions", callback=self.post)
        rsps.get(f"{API}/project/OPS/statuses", json=[
            {"name": "Incident", "statuses": [{"name": "Open"}]},
            {"name": "Change", "statuses": [
                {"name": n, "statusCategory": {"key": "done" if n in ("Closed", "Canceled") else "new"}}
                for n in CHANGE_WORKFLOW]}])

    @staticmethod
    def transitions(status: str) -> list[dict[str, Any]]:
        if status in ("Closed", "Canceled"):
            return []
        forward = [n for n in CHANGE_WORKFLOW if n != "Canceled"]
        targets = [forward[forward.index(status) + 1], "Canceled"]
        return [{"id": str(10 * CHANGE_WORKFLOW.index(n)), "name": f"to {n}", "to": {"name": n}}
                for n in targets]

    @staticmethod
    def _id(request: Any) -> str:
        return urlsplit(request.url).path.split("/issue/")[1].split("/")[0]

    def get(self, request: Any) -> tuple[int, dict[str, str], str]:
        issue_id = self._id(request)
        self.reads.append(issue_id)
        params = parse_qs(urlsplit(request.url).query)
        raw = issue(issue_id, f"OPS-{issue_id}", status={"name": self.status[issue_id]},
                    labels=["relbridge-CHG-1"])
        if params.get("expand") == ["transitions"]:
            raw["transitions"] = self.transitions(self.status[issue_id])
        return 200, {}, json.dumps(raw)

    def create(self, issue_id: str) -> Any:
        """A ``POST issue`` answer that applies a ``transition`` of the body, as Cloud does."""
        def answer(request: Any) -> tuple[int, dict[str, str], str]:
            wanted = json.loads(request.body).get("transition")
            if wanted:
                step = next(t for t in self.transitions(self.status[issue_id]) if t["id"] == wanted["id"])
                self.status[issue_id] = step["to"]["name"]
            return 201, {}, json.dumps(created(issue_id))
        return answer

    def post(self, request: Any) -> tuple[int, dict[str, str], str]:
        issue_id = self._id(request)
        wanted = str(json.loads(request.body)["transition"]["id"])
        target = next((t["to"]["name"] for t in self.transitions(self.status[issue_id]) if t["id"] == wanted), None)
        if target is None or (issue_id, target) in self.refuse:
            self.refuse.discard((issue_id, target or ""))
            return 400, {}, json.dumps({"errorMessages": [f"Transition id '{wanted}' is not valid for this issue."],
                                        "errors": {}})
        self.posted.append(target)
        self.status[issue_id] = target
        return 204, {}, ""


def created(iid: str) -> dict[str, Any]:
    return {"id": iid, "key": f"OPS-{iid}", "self": f"{API}/issue/{iid}"}


def test_create_change_with_label_release_and_status_walk(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    rsps.post(f"{API}/issue", status=201, json=created("101"))
    flow = FakeWorkflow(rsps, "101", "102")
    record = adapter.create("change", {"summary": "Deploy", "release": "10001", "status": "Authorize",
                                       "priority": "High"}, "CHG-1")
    sent = body(rsps.calls[1])
    assert sent == {"fields": {"summary": "Deploy", "fixVersions": [{"id": "10001"}], "priority": {"name": "High"},
                               "labels": ["relbridge-CHG-1"], "project": {"key": "OPS"},
                               "issuetype": {"name": "Change"}}}
    assert flow.posted == ["Assess", "Authorize"]
    # built from the POST's answer and the payload: no read-back
    assert (record.id, record.key, record.url) == ("101", "OPS-101", f"{URL}/browse/OPS-101")
    assert record.fields["status"] == "Authorize" and record.fields["release"] == "10001"
    assert record.correlation == "CHG-1" and record.updated_at.tzinfo is not None
    # serverInfo, statuses, GET status+transitions at New and at Assess; POST issue + 2 transitions
    assert adapter.calls == {"GET": 4, "POST": 3}

    # the second create knows where issues start and the way from there: POSTs only, and
    # on Cloud the first step rides in the create body ("transition", optional on create)
    rsps.add_callback("POST", f"{API}/issue", callback=flow.create("102"))
    adapter.create("change", {"summary": "Deploy 2", "status": "Authorize"}, "CHG-2")
    assert body(rsps.calls[-2])["transition"] == {"id": "10"}
    assert flow.posted == ["Assess", "Authorize", "Authorize"]
    assert flow.reads == ["101", "101"]
    assert adapter.calls == {"GET": 4, "POST": 5}


def test_server_creates_in_the_initial_status_and_walks(rsps: responses.RequestsMock) -> None:
    """Jira Server/Data Center documents no ``transition`` on create: the adapter walks."""
    adapter = make_adapter()
    server_info(rsps, cloud=False)
    flow = FakeWorkflow(rsps, "101", "102")
    for iid in ("101", "102"):
        rsps.post(f"{API}/issue", status=201, json=created(iid))
        adapter.create("change", {"summary": "Deploy", "status": "Authorize"}, f"CHG-{iid}")
        assert "transition" not in body(next(c for c in reversed(rsps.calls)
                                             if c.request.url == f"{API}/issue"))
    assert flow.posted == ["Assess", "Authorize", "Assess", "Authorize"]


def test_a_create_transition_refused_is_sent_again_without_it(rsps: responses.RequestsMock) -> None:
    """The workflow changed since the transition was learned: Jira answers 400 (nothing is
    created), the adapter creates in the initial status, relearns and walks."""
    adapter = make_adapter()
    server_info(rsps)
    flow = FakeWorkflow(rsps, "101", "102")
    rsps.post(f"{API}/issue", status=201, json=created("101"))
    adapter.create("change", {"summary": "Deploy", "status": "Assess"}, "CHG-1")
    rsps.post(f"{API}/issue", status=400, json={
        "errorMessages": ["Transition id '10' is not valid for this issue."], "errors": {}})
    rsps.post(f"{API}/issue", status=201, json=created("102"))
    adapter.create("change", {"summary": "Deploy 2", "status": "Assess"}, "CHG-2")
    sent = [body(c) for c in rsps.calls if c.request.url == f"{API}/issue"]
    assert [s.get("transition") for s in sent] == [None, {"id": "10"}, None]
    assert flow.status["102"] == "Assess" and flow.reads.count("102") == 1


def test_create_in_initial_status_needs_no_transition(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    rsps.post(f"{API}/issue", status=201, json={"id": "101", "key": "OPS-1"})
    flow = FakeWorkflow(rsps, "101")
    record = adapter.create("change", {"summary": "x", "status": "New"}, "CHG-1")
    assert flow.posted == [] and record.fields["status"] == "New"
    assert adapter.calls == {"GET": 2, "POST": 1}  # serverInfo, statuses (once per type)


def test_create_incident_links_it_in_the_create_call(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    rsps.post(f"{API}/issue", status=201, json=created("201"))
    record = adapter.create("incident", {"summary": "Outage", "release": "10001", "caused_by": "101"}, "INC-1")
    sent = body(rsps.calls[1])
    assert sent["fields"]["versions"] == [{"id": "10001"}]
    assert sent["update"] == {"issuelinks": [{"add": {"type": {"name": "Problem/Incident"},
                                                      "inwardIssue": {"id": "101"}}}]}
    assert record.correlation == "INC-1" and record.fields["caused_by"] == "101"
    assert adapter.calls == {"GET": 1, "POST": 1}
    with pytest.raises(BadInput):
        adapter.create("change", {"caused_by": "1"}, "CHG-9")


def test_create_incident_links_separately_when_the_create_screen_refuses_links(
        rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    refused = {"errorMessages": [], "errors": {
        "issuelinks": "Field 'issuelinks' cannot be set. It is not on the appropriate screen, or unknown."}}
    rsps.post(f"{API}/issue", status=400, json=refused)
    rsps.post(f"{API}/issue", status=201, json=created("201"))
    rsps.post(f"{API}/issueLink", status=201)
    adapter.create("incident", {"summary": "Outage", "caused_by": "101"}, "INC-1")
    assert "update" in body(rsps.calls[1]) and "update" not in body(rsps.calls[2])
    assert body(rsps.calls[3]) == {"type": {"name": "Problem/Incident"}, "inwardIssue": {"id": "101"},
                                   "outwardIssue": {"id": "201"}}
    # later creates link separately straight away
    rsps.post(f"{API}/issue", status=201, json=created("202"))
    rsps.post(f"{API}/issueLink", status=201)
    adapter.create("incident", {"summary": "Outage 2", "caused_by": "101"}, "INC-2")
    assert "update" not in body(rsps.calls[4])
    assert adapter.calls == {"GET": 1, "POST": 5}


def test_create_refused_for_another_reason_is_not_retried(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    rsps.post(f"{API}/issue", status=400, json={"errorMessages": [], "errors": {
        "summary": "You must specify a summary of the issue."}})
    with pytest.raises(PermanentError) as info:
        adapter.create("incident", {"summary": "", "caused_by": "101"}, "INC-1")
    assert info.value.status == 400 and "summary" in str(info.value)
    assert adapter.calls == {"GET": 1, "POST": 1}


def test_write_puts_only_plain_fields_then_walks_status(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    rsps.put(f"{API}/issue/101", status=204)
    flow = FakeWorkflow(rsps, "101", "102", status="Assess")
    assert adapter.write("change", "101", {"summary": "New title", "release": None, "status": "Implement"}) is None
    assert body(rsps.calls[1]) == {"fields": {"summary": "New title", "fixVersions": []}}
    assert flow.posted == ["Authorize", "Scheduled", "Implement"]
    # serverInfo, statuses (Implement is not one step away), a GET per step; no read-back
    assert adapter.calls == {"GET": 5, "PUT": 1, "POST": 3}

    # another issue: one GET for its current status, then the learned transitions
    adapter.write("change", "102", {"status": "Implement"})
    assert flow.reads.count("102") == 1
    assert adapter.calls == {"GET": 6, "PUT": 1, "POST": 6}


def test_write_direct_transition_costs_two_calls_and_no_put(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    flow = FakeWorkflow(rsps, "101", status="Review")
    adapter.write("change", "101", {"status": "Closed"})
    assert flow.posted == ["Closed"]
    assert adapter.calls == {"GET": 2, "POST": 1}  # serverInfo, GET+transitions


def test_refused_cached_transition_falls_back_to_reading_the_issue(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    flow = FakeWorkflow(rsps, "101", "102")
    adapter.write("change", "101", {"status": "Authorize"})  # learns New and Assess
    flow.refuse.add(("102", "Authorize"))
    adapter.write("change", "102", {"status": "Authorize"})
    assert flow.posted == ["Assess", "Authorize", "Assess", "Authorize"]
    # 102: GET at New, cached POST to Assess, refused cached POST, GET at Assess, POST again
    assert flow.reads.count("102") == 2
    assert flow.status["102"] == "Authorize"


def test_refused_transition_just_read_is_permanent(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    flow = FakeWorkflow(rsps, "101")
    flow.refuse.add(("101", "Assess"))
    with pytest.raises(PermanentError) as info:
        adapter.write("change", "101", {"status": "Assess"})
    assert info.value.status == 400 and flow.posted == []


def test_stale_cached_transitions_are_read_again() -> None:
    from relbridge_jira.workflow import TransitionCache, walk_to_status

    class Conn:
        """Issue 7 sits in New; the cache wrongly says nothing leaves New."""
        def __init__(self) -> None:
            self.gets = 0
            self.client = self
            self.moves: list[str] = []

        def get(self, path: str, params: Any = None) -> dict[str, Any]:
            self.gets += 1
            return {"fields": {"status": {"name": "New"}},
                    "transitions": [{"id": "11", "to": {"name": "Assess"}}]}

        def transition_issue(self, issue_id: str, transition: str) -> None:
            self.moves.append(transition)

    conn = Conn()
    cache = TransitionCache()
    cache.learn("OPS/Change", "New", [])
    made = walk_to_status(conn, "7", "Assess", lambda: [], cache=cache,  # type: ignore[arg-type]
                          workflow="OPS/Change", current="New")
    assert made == 1 and conn.moves == ["11"] and conn.gets == 1
    assert cache.transitions("OPS/Change", "new") == [{"id": "11", "to": {"name": "Assess"}}]


def test_walk_prefers_open_statuses_and_may_pass_through_done_ones() -> None:
    from relbridge_jira.workflow import choose_transition, workflow_order

    change = workflow_order([{"name": n, "statusCategory": {"key": c}} for n, c in [
        ("Canceled", "done"), ("New", "new"), ("Review", "indeterminate"), ("Closed", "done")]])
    assert [s.name for s in change] == ["New", "Review", "Canceled", "Closed"]
    options = [{"id": "9", "to": {"name": "Canceled"}}, {"id": "5", "to": {"name": "Review"}}]
    assert choose_transition(options, "New", "Closed", lambda: change)["id"] == "5"
    incident = workflow_order([{"name": n, "statusCategory": {"key": c}} for n, c in [
        ("Open", "new"), ("In Progress", "indeterminate"), ("Resolved", "done"), ("Closed", "done")]])
    via_done = [{"id": "21", "to": {"name": "Resolved"}}]
    assert choose_transition(via_done, "In Progress", "Closed", lambda: incident)["id"] == "21"
    assert choose_transition(via_done, "In Progress", "Closed", lambda: incident, ["Resolved"]) is None
    assert choose_transition(via_done, "In Progress", "Unknown", lambda: incident) is None


def test_write_unreachable_status_is_permanent(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    flow = FakeWorkflow(rsps, "101", status="Closed")
    with pytest.raises(PermanentError) as info:
        adapter.write("change", "101", {"status": "Assess"})
    assert "'Assess'" in str(info.value) and "'Closed'" in str(info.value)
    assert flow.posted == []


def test_write_already_in_target_status_posts_nothing(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    flow = FakeWorkflow(rsps, "101", status="Scheduled")
    adapter.write("change", "101", {"status": "scheduled"})
    assert flow.posted == [] and adapter.calls == {"GET": 2}


def test_write_caused_by_replaces_the_link(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    old = {"id": "500", "type": {"name": "Problem/Incident"}, "inwardIssue": {"id": "101"}}
    rsps.get(f"{API}/issue/201", json=issue("201", "OPS-5", "Incident", issuelinks=[old]))
    rsps.delete(f"{API}/issueLink/500", status=204)
    rsps.post(f"{API}/issueLink", status=201)
    adapter.write("incident", "201", {"caused_by": "102"})
    assert query(rsps.calls[1])["fields"] == ["labels,issuelinks"]
    assert body(rsps.calls[3]) == {"type": {"name": "Problem/Incident"}, "inwardIssue": {"id": "102"},
                                   "outwardIssue": {"id": "201"}}
    assert adapter.calls == {"GET": 2, "DELETE": 1, "POST": 1}


def test_write_labels_keeps_the_correlation_label(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    rsps.get(f"{API}/issue/101", json=issue("101", "OPS-1", labels=["relbridge-CHG-1", "old"]))
    rsps.put(f"{API}/issue/101", status=204)
    adapter.write("change", "101", {"labels": ["new"]})
    assert body(rsps.calls[2]) == {"fields": {"labels": ["new", "relbridge-CHG-1"]}}
    assert adapter.calls == {"GET": 2, "PUT": 1}


def test_delete_issue(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    rsps.delete(f"{API}/issue/101", status=204)
    adapter.delete("change", "101")
    assert adapter.calls == {"GET": 1, "DELETE": 1}
    with pytest.raises(BadInput):
        adapter.delete("problem", "1")


# --- errors -------------------------------------------------------------------------------------


def test_429_is_transient_with_retry_after_and_no_library_retry(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    rsps.get(f"{API}/issue/101", status=429, headers={"Retry-After": "7"},
             json={"errorMessages": ["Rate limit exceeded."], "errors": {}})
    with pytest.raises(TransientError) as info:
        adapter.read("change", "101", ["summary"])
    assert info.value.status == 429 and info.value.retry_after == 7
    assert "Rate limit exceeded." in str(info.value)
    assert adapter.calls == {"GET": 2}  # one attempt, no sleep (see the no_sleep fixture)


def test_503_and_connection_errors_are_transient(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    rsps.get(f"{API}/issue/101", status=503, body="<html>maintenance</html>")
    with pytest.raises(TransientError) as info:
        adapter.read("change", "101", [])
    assert info.value.status == 503 and info.value.retry_after is None
    rsps.get(f"{API}/issue/102", body=requests.ConnectionError("refused"))
    with pytest.raises(TransientError):
        adapter.read("change", "102", [])
    rsps.get(f"{API}/issue/103", body=requests.ReadTimeout("slow"))
    with pytest.raises(TransientError):
        adapter.read("change", "103", [])


def test_start_up_connection_error_is_transient_and_retried_next_time(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    rsps.get(f"{API}/serverInfo", body=requests.ConnectionError("down"))
    with pytest.raises(TransientError):
        adapter.check_auth()
    server_info(rsps)
    rsps.get(f"{API}/myself", json={"timeZone": "UTC"})
    adapter.check_auth()


def test_400_with_errors_dict_is_permanent_with_the_field_messages(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    rsps.post(f"{API}/issue", status=400, json={
        "errorMessages": [], "errors": {"summary": "You must specify a summary of the issue."}})
    with pytest.raises(PermanentError) as info:
        adapter.create("change", {"description": "no summary"}, "CHG-1")
    assert info.value.status == 400
    assert "summary: You must specify a summary of the issue." in str(info.value)


def test_404_read_is_none_but_404_write_is_permanent(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    gone = {"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}}
    rsps.get(f"{API}/issue/999", status=404, json=gone)
    assert adapter.read("change", "999", []) is None
    rsps.put(f"{API}/issue/999", status=404, json=gone)
    with pytest.raises(PermanentError) as info:
        adapter.write("change", "999", {"summary": "x"})
    assert info.value.status == 404 and "Issue does not exist" in str(info.value)


def test_check_auth_rejected_credentials(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    rsps.get(f"{API}/myself", status=401, body="")
    with pytest.raises(PermanentError) as info:
        adapter.check_auth()
    assert info.value.status == 401 and "check [jira] user/token" in str(info.value)


def test_retry_after_as_http_date() -> None:
    from bridge.errors import parse_retry_after

    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


# --- webhooks -----------------------------------------------------------------------------------


def hook(event: str, **parts: Any) -> dict[str, Any]:
    return {"timestamp": 1735441883659, "webhookEvent": event, **parts}


@pytest.mark.parametrize(("event", "type_name", "entity", "deleted"), [
    ("jira:issue_created", "Change", "change", False),
    ("jira:issue_updated", "Incident", "incident", False),
    ("jira:issue_deleted", "Change", "change", True),
])
def test_webhook_issue_events(event: str, type_name: str, entity: str, deleted: bool) -> None:
    body = hook(event, issue={"id": "11442", "key": "OPS-6", "fields": {"issuetype": {"name": type_name}}})
    [hint] = make_adapter().parse_webhook({"X-Atlassian-Webhook-Identifier": "abc-1"}, body)
    assert (hint.system, hint.entity, hint.id, hint.deleted, hint.delivery_id) == (
        "jira", entity, "11442", deleted, "abc-1")


def test_webhook_ignores_other_types_projects_and_events() -> None:
    adapter = make_adapter()
    story = hook("jira:issue_updated", issue={"id": "1", "key": "OPS-1", "fields": {"issuetype": {"name": "Story"}}})
    elsewhere = hook("jira:issue_updated", issue={"id": "2", "key": "HR-1", "fields": {"issuetype": {"name": "Change"}}})
    comment = hook("comment_created", comment={"id": "5"})
    relates = hook("issuelink_created", issueLink={"id": 1, "sourceIssueId": 1, "destinationIssueId": 2,
                                                  "issueLinkType": {"name": "Relates"}})
    assert [adapter.parse_webhook({}, b) for b in (story, elsewhere, comment, relates)] == [[], [], [], []]


@pytest.mark.parametrize(("event", "deleted"), [
    ("jira:version_created", False), ("jira:version_released", False), ("jira:version_deleted", True)])
def test_webhook_version_events(event: str, deleted: bool) -> None:
    body = hook(event, version={"id": "10000", "name": "1.4.0", "self": f"{API}/version/10000"})
    [hint] = make_adapter().parse_webhook({}, body)
    assert (hint.entity, hint.id, hint.deleted) == ("release", "10000", deleted)
    assert hint.delivery_id and hint.delivery_id.startswith("sha256:")
    # a redelivery of the same body has the same id, another event does not
    assert make_adapter().parse_webhook({}, body)[0].delivery_id == hint.delivery_id
    assert make_adapter().parse_webhook({}, {**body, "timestamp": 1})[0].delivery_id != hint.delivery_id


@pytest.mark.parametrize("event", ["issuelink_created", "issuelink_deleted"])
def test_webhook_problem_incident_link_hints_the_incident(event: str) -> None:
    body = hook(event, issueLink={"id": 15408, "sourceIssueId": 18074, "destinationIssueId": 25877,
                                  "issueLinkType": {"id": 10003, "name": "Problem/Incident",
                                                    "outwardName": "causes", "inwardName": "is caused by"}})
    [hint] = make_adapter().parse_webhook({}, body)
    assert (hint.entity, hint.id, hint.deleted) == ("incident", "25877", False)


@pytest.mark.parametrize("body", [
    [], "text", {}, {"webhookEvent": 5},
    hook("jira:issue_updated"),
    hook("jira:issue_updated", issue={"key": "OPS-1", "fields": {"issuetype": {"name": "Change"}}}),
    hook("jira:issue_updated", issue={"id": "1", "key": "OPS-1", "fields": {}}),
    hook("jira:version_updated", version={"name": "x"}),
    hook("issuelink_created", issueLink={"sourceIssueId": 1, "issueLinkType": {"name": "Problem/Incident"}}),
    hook("issuelink_created", issueLink={"sourceIssueId": 1, "destinationIssueId": 2}),
])
def test_webhook_malformed_is_bad_input(body: Any) -> None:
    with pytest.raises(BadInput):
        make_adapter().parse_webhook({}, body)


# --- metadata -----------------------------------------------------------------------------------


def test_metadata_from_fields_project_statuses_and_priorities(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    rsps.get(f"{API}/field", json=[{"id": "summary", "name": "Summary", "schema": {"type": "string"}},
                                   {"id": "duedate", "name": "Due date", "schema": {"type": "date"}}])
    rsps.get(f"{API}/project/OPS", json={"key": "OPS", "issueTypes": [{"name": "Change"}, {"name": "Task"}]})
    rsps.get(f"{API}/project/OPS/statuses", json=[{"name": "Change", "statuses": [{"name": "New"}, {"name": "Closed"}]}])
    rsps.get(f"{API}/priority", json=[{"name": "High"}, {"name": "Low"}])
    meta = adapter.metadata()
    assert query(rsps.calls[2])["expand"] == ["issueTypes"]
    assert set(meta.objects) == {"version", "Change"}  # no Incident type in the project
    change = meta.objects["Change"]
    assert change["duedate"].type == "date" and change["status"].choices == ("New", "Closed")
    assert change["priority"].choices == ("High", "Low") and "caused_by" not in change
    assert meta.objects["version"]["state"].choices == ("unreleased", "released", "archived")
    assert adapter.calls == {"GET": 5}


def test_environment_is_read_once_when_the_client_is_built(rsps: responses.RequestsMock,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxy and CA-bundle variables apply as requests would apply them, without requests
    scanning the environment on every call."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/acme-ca.pem")
    adapter = make_adapter()
    server_info(rsps)
    session = adapter._conn.client._session
    assert session.trust_env is False
    assert session.proxies["https"] == "http://proxy.example.test:3128"
    assert session.verify == "/etc/ssl/acme-ca.pem"


def closed_port() -> int:
    """A local port nothing listens on: connecting is refused at once."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_connection_refused_reads_like_servicenow_and_names_the_setting() -> None:
    port = closed_port()
    adapter = JiraAdapter(f"http://127.0.0.1:{port}", "bot", SecretStr("s3cret"), ["OPS"])
    with pytest.raises(TransientError) as info:
        adapter.check_auth()
    assert str(info.value) == (
        f"jira: GET serverInfo: cannot connect to 127.0.0.1:{port} (Connection refused) — check [jira] url")


def test_find_by_key_reads_an_issue_by_key_and_a_version_by_name(rsps: responses.RequestsMock) -> None:
    adapter = make_adapter()
    server_info(rsps)
    rsps.get(f"{API}/issue/OPS-7", json={"id": "10007", "key": "OPS-7", "fields": {
        "summary": "Patch", "updated": "2026-01-01T00:00:00.000+0000", "issuetype": {"name": "Change"}}})
    found = adapter.find_by_key("change", "OPS-7", ["summary"])
    assert found is not None and (found.id, found.key, found.fields["summary"]) == ("10007", "OPS-7", "Patch")
    rsps.get(f"{API}/project/OPS/versions", json=[{"id": "300", "name": "Release 1.1", "projectId": 1}])
    version = adapter.find_by_key("release", "Release 1.1")
    assert version is not None and version.id == "300"
    rsps.get(f"{API}/issue/OPS-404", status=404, json={"errorMessages": ["Issue does not exist"]})
    assert adapter.find_by_key("change", "OPS-404") is None
