"""JiraAdapter against the Jira simulator, Cloud and Server flavors, over real HTTP.

Besides behaviour, these tests pin the cost of each operation: the simulator logs every
request (``GET /_sim/requests``), which is what a real instance would bill or rate-limit.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from pydantic import SecretStr
from relbridge_jira.adapter import JiraAdapter

from bridge.errors import PermanentError, TransientError
from bridge.sim import start_simulators

API = "/rest/api/2"


@pytest.fixture(scope="module", params=["cloud", "server"])
def sims(request: pytest.FixtureRequest) -> Iterator[Any]:
    with start_simulators(jira_flavor=request.param, seed="empty") as running:
        running.flavor = request.param
        yield running


class Sim:
    """The simulator's control API plus a raw client for setting things up "in Jira"."""

    def __init__(self, url: str, flavor: str) -> None:
        self.url = url
        self.flavor = flavor
        self.http = requests.Session()
        self.http.auth = ("admin", "admin")

    def reset(self) -> None:
        self.http.post(f"{self.url}/_sim/reset").raise_for_status()
        self.http.delete(f"{self.url}/_sim/faults").raise_for_status()
        self.clear()

    def clear(self) -> None:
        self.http.delete(f"{self.url}/_sim/requests").raise_for_status()

    def requests(self) -> list[tuple[str, str]]:
        """(method, path without /rest/api/2) of every API request since the last clear."""
        log = self.http.get(f"{self.url}/_sim/requests").json()["requests"]
        return [(r["method"], r["path"].removeprefix(API)) for r in log]

    def fault(self, **rule: Any) -> None:
        self.http.post(f"{self.url}/_sim/faults", json=rule).raise_for_status()

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"{self.url}{API}/{path}", **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None


@pytest.fixture
def sim(sims: Any) -> Sim:
    control = Sim(sims.jira_url, sims.flavor)
    control.reset()
    return control


def make_adapter(sim: Sim, page_size: int = 100) -> JiraAdapter:
    return JiraAdapter(sim.url, "admin", SecretStr("admin"), ["OPS"], page_size=page_size)


@pytest.fixture
def jira(sim: Sim) -> JiraAdapter:
    adapter = make_adapter(sim)
    adapter.check_auth()  # start-up calls out of the way of the per-operation counts
    sim.clear()
    return adapter


def test_start_up_costs_server_info_then_myself(sim: Sim) -> None:
    adapter = make_adapter(sim)
    assert sim.requests() == []  # constructing does no I/O
    adapter.check_auth()
    assert sim.requests() == [("GET", "/serverInfo"), ("GET", "/myself")]
    assert adapter.is_cloud is (sim.flavor == "cloud")
    assert adapter.calls == {"GET": 2}


def test_wrong_token_is_permanent_with_a_hint(sim: Sim) -> None:
    adapter = JiraAdapter(sim.url, "admin", SecretStr("wrong"), ["OPS"])
    with pytest.raises(PermanentError) as info:
        adapter.check_auth()
    assert info.value.status == 401 and "check [jira] user/token" in str(info.value)


# --- releases -----------------------------------------------------------------------------------


def test_release_round_trip_with_one_call_per_operation(sim: Sim, jira: JiraAdapter) -> None:
    created = jira.create("release", {"description": "March train", "releaseDate": "2025-03-31",
                                      "state": "unreleased"}, "R-2025.03")
    assert sim.requests() == [("POST", "/version")]
    assert created.key == "R-2025.03" and created.fields["state"] == "unreleased"
    assert created.fields["releaseDate"] == "2025-03-31"

    sim.clear()
    written = jira.write("release", created.id, {"state": "released"})
    assert sim.requests() == [("PUT", f"/version/{created.id}")]
    assert written.fields["state"] == "released" and written.version != created.version

    sim.clear()
    read = jira.read("release", created.id, [])
    assert sim.requests() == [("GET", f"/version/{created.id}")]
    assert read is not None and read.version == written.version  # same state, same hash

    sim.clear()
    found = jira.find_by_correlation("release", "R-2025.03")
    listed = list(jira.list_changed("release", None, ["name", "state"]))
    assert sim.requests() == [("GET", "/project/OPS/versions")] * 2
    assert found is not None and found.id == created.id
    assert [(r.id, r.fields["state"]) for r in listed] == [(created.id, "released")]

    jira.write("release", created.id, {"state": "archived"})
    archived = jira.read("release", created.id, [])
    assert archived is not None and archived.fields["state"] == "archived"

    jira.delete("release", created.id)
    assert jira.read("release", created.id, []) is None
    assert jira.find_by_correlation("release", "R-2025.03") is None


# --- changes ------------------------------------------------------------------------------------


def test_change_create_walks_the_workflow_and_round_trips(sim: Sim, jira: JiraAdapter) -> None:
    release = jira.create("release", {}, "R-1")
    sim.clear()
    change = jira.create("change", {"summary": "Deploy R-1", "release": release.id,
                                    "priority": "High", "status": "Authorize"}, "CHG-1")
    calls = sim.requests()
    assert calls[0] == ("POST", "/issue")
    assert calls.count(("POST", f"/issue/{change.id}/transitions")) == 2  # New → Assess → Authorize
    assert calls.count(("GET", "/project/OPS/statuses")) == 1
    assert change.fields["status"] == "Authorize" and change.fields["release"] == release.id
    assert change.fields["priority"] == "High" and change.correlation == "CHG-1"

    found = jira.find_by_correlation("change", "CHG-1")
    assert found is not None and found.id == change.id
    assert jira.find_by_correlation("change", "CHG-2") is None

    sim.clear()
    assert jira.write("change", change.id, {"summary": "Deploy R-1 (rev)"}) is None
    assert sim.requests() == [("PUT", f"/issue/{change.id}")]  # no read-back
    written = jira.read("change", change.id, ["summary"])
    assert written is not None and written.fields["summary"] == "Deploy R-1 (rev)"
    assert written.correlation == "CHG-1"

    sim.clear()
    jira.write("change", change.id, {"status": "Closed", "release": None})
    calls = sim.requests()
    # PUT, then 4 steps (Scheduled, Implement, Review, Closed) from statuses not seen yet:
    # GET+POST each; the workflow order was cached by the create
    assert calls.count(("POST", f"/issue/{change.id}/transitions")) == 4
    assert len(calls) == 1 + 4 * 2
    closed = jira.read("change", change.id, ["status", "release"])
    assert closed is not None and closed.fields["status"] == "Closed" and closed.fields["release"] is None

    # every status of the way is known now: a new change walks to Closed with POSTs only;
    # on Cloud the first step (New → Assess) rides in the create body
    sim.clear()
    again = jira.create("change", {"summary": "Deploy R-1 again", "status": "Closed"}, "CHG-3")
    steps = 5 if sim.flavor == "cloud" else 6
    assert sim.requests() == [("POST", "/issue")] + [("POST", f"/issue/{again.id}/transitions")] * steps
    reread = jira.read("change", again.id, ["status"])
    assert reread is not None and reread.fields["status"] == "Closed"

    with pytest.raises(PermanentError) as info:
        jira.write("change", change.id, {"status": "Assess"})
    assert "'Assess'" in str(info.value) and "'Closed'" in str(info.value)

    jira.delete("change", change.id)
    assert jira.read("change", change.id, ["summary"]) is None


def test_write_without_changes_sends_nothing(sim: Sim, jira: JiraAdapter) -> None:
    change = jira.create("change", {"summary": "x"}, "CHG-9")
    sim.clear()
    assert jira.write("change", change.id, {}) is None
    assert sim.requests() == []


def test_list_changed_over_several_pages(sim: Sim) -> None:
    adapter = make_adapter(sim, page_size=2)
    keys = [adapter.create("change", {"summary": f"change {n}"}, f"CHG-{n}").key for n in range(5)]
    adapter.create("incident", {"summary": "not a change"}, "INC-1")
    sim.clear()
    since = datetime.now(UTC) - timedelta(minutes=5)
    records = list(adapter.list_changed("change", since, ["summary", "status", "release"]))
    assert [r.key for r in records] == keys
    assert all(r.fields["status"] == "New" and r.updated_at.tzinfo for r in records)
    assert [r.updated_at for r in records] == sorted(r.updated_at for r in records)
    search = "/search/jql" if sim.flavor == "cloud" else "/search"
    # the user's time zone (once), then 5 issues in pages of 2
    assert sim.requests() == [("GET", "/myself")] + [("GET", search)] * 3

    future = datetime.now(UTC) + timedelta(minutes=2)
    assert list(adapter.list_changed("change", future, ["summary"])) == []


# --- incidents and the Problem/Incident link ----------------------------------------------------


def test_caused_by_link_written_and_read_both_ways(sim: Sim, jira: JiraAdapter) -> None:
    change_a = jira.create("change", {"summary": "A"}, "CHG-A")
    change_b = jira.create("change", {"summary": "B"}, "CHG-B")
    sim.clear()
    incident = jira.create("incident", {"summary": "Outage", "caused_by": change_a.id}, "INC-1")
    assert sim.requests() == [("POST", "/issue")]  # the link rides on the create
    assert incident.fields["caused_by"] == change_a.id
    created = jira.read("incident", incident.id, ["caused_by"])
    assert created is not None and created.fields["caused_by"] == change_a.id

    # Jira shows it the right way round: the change "causes" the incident
    raw_change = sim.api("GET", f"issue/{change_a.id}", params={"fields": "issuelinks"})
    [link] = raw_change["fields"]["issuelinks"]
    assert link["type"]["name"] == "Problem/Incident" and link["outwardIssue"]["id"] == incident.id

    sim.clear()
    jira.write("incident", incident.id, {"caused_by": change_b.id})
    assert [m for m, _ in sim.requests()] == ["GET", "DELETE", "POST"]
    moved = jira.read("incident", incident.id, ["caused_by"])
    assert moved is not None and moved.fields["caused_by"] == change_b.id
    assert sim.api("GET", f"issue/{change_a.id}", params={"fields": "issuelinks"})["fields"]["issuelinks"] == []

    sim.clear()
    jira.write("incident", incident.id, {"caused_by": change_b.id})  # unchanged: no link calls
    assert [m for m, _ in sim.requests()] == ["GET"]

    jira.write("incident", incident.id, {"caused_by": None})
    cleared = jira.read("incident", incident.id, ["caused_by"])
    assert cleared is not None and cleared.fields["caused_by"] is None

    # a link made by a person in Jira ("INC is caused by CHG-A") is read as caused_by
    sim.api("POST", "issueLink", json={"type": {"name": "Problem/Incident"},
                                       "inwardIssue": {"id": change_a.id},
                                       "outwardIssue": {"id": incident.id}})
    reread = jira.read("incident", incident.id, ["caused_by"])
    assert reread is not None and reread.fields["caused_by"] == change_a.id


def test_incident_walks_through_resolved_to_closed(sim: Sim, jira: JiraAdapter) -> None:
    incident = jira.create("incident", {"summary": "Outage", "status": "Closed"}, "INC-2")
    assert incident.fields["status"] == "Closed"
    reread = jira.read("incident", incident.id, ["status"])
    assert reread is not None and reread.fields["status"] == "Closed"


def test_simulator_links_at_create_are_validated_before_anything_is_created(sim: Sim, jira: JiraAdapter) -> None:
    change = jira.create("change", {"summary": "c"}, "CHG-1")
    fields = {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": "i"}
    bad = [
        {"add": {"type": {"name": "No such type"}, "inwardIssue": {"id": change.id}}},
        {"add": {"type": {"name": "Problem/Incident"}, "inwardIssue": {"id": "999999"}}},
        {"add": {"type": {"name": "Problem/Incident"}}},
        {"remove": {"type": {"name": "Problem/Incident"}, "inwardIssue": {"id": change.id}}},
    ]
    for operation in bad:
        response = sim.http.post(f"{sim.url}{API}/issue", json={"fields": fields,
                                                                "update": {"issuelinks": [operation]}})
        assert response.status_code == 400 and "issuelinks" in response.json()["errors"]
    assert sim.api("GET", f"issue/{change.id}", params={"fields": "issuelinks"})["fields"]["issuelinks"] == []
    # outwardIssue: the new issue does the outward verb ("causes") to the named one
    made = sim.api("POST", "issue", json={"fields": fields, "update": {"issuelinks": [
        {"add": {"type": {"name": "Problem/Incident"}, "outwardIssue": {"key": change.key}}}]}})
    [link] = sim.api("GET", f"issue/{change.id}", params={"fields": "issuelinks"})["fields"]["issuelinks"]
    assert link["inwardIssue"]["id"] == made["id"]


# --- faults -------------------------------------------------------------------------------------


def test_rate_limit_is_transient_with_retry_after_and_no_hidden_sleep(sim: Sim, jira: JiraAdapter) -> None:
    change = jira.create("change", {"summary": "x"}, "CHG-1")
    sim.fault(method="GET", path=f"/issue/{change.id}$", status=429, retry_after=30, times=1)
    sim.clear()
    started = time.monotonic()
    with pytest.raises(TransientError) as info:
        jira.read("change", change.id, ["summary"])
    assert time.monotonic() - started < 5  # the library would have slept ~30-60 s
    assert info.value.status == 429 and info.value.retry_after == 30
    assert sim.requests() == [("GET", f"/issue/{change.id}")]  # one attempt only
    assert jira.read("change", change.id, ["summary"]) is not None  # the fault was used up


def test_server_errors_and_dropped_connections_are_transient(sim: Sim, jira: JiraAdapter) -> None:
    sim.fault(method="GET", path="/project/OPS/versions", status=503, times=1)
    with pytest.raises(TransientError) as info:
        list(jira.list_changed("release", None, []))
    assert info.value.status == 503
    sim.fault(method="POST", path="/version$", status=0, reset=True, times=1)
    with pytest.raises(TransientError):
        jira.create("release", {}, "R-9")


def test_bad_value_is_permanent_with_jira_message(sim: Sim, jira: JiraAdapter) -> None:
    with pytest.raises(PermanentError) as info:
        jira.create("change", {"summary": "x", "release": "999999"}, "CHG-1")
    assert info.value.status == 400


# --- webhooks -----------------------------------------------------------------------------------


class Receiver:
    """A loopback endpoint that keeps every delivery (headers, parsed body)."""

    def __init__(self) -> None:
        received: list[tuple[dict[str, str], Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((dict(self.headers.items()), json.loads(raw)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_simulator_webhooks_become_hints(sims: Any, sim: Sim, jira: JiraAdapter) -> None:
    receiver = Receiver()
    try:
        events = ["jira:issue_created", "jira:issue_updated", "jira:issue_deleted", "issuelink_created",
                  "jira:version_created", "jira:version_released", "jira:version_deleted"]
        sim.http.post(f"{sim.url}/rest/webhooks/1.0/webhook",
                      json={"name": "relbridge", "url": receiver.url, "events": events}).raise_for_status()
        release = jira.create("release", {}, "R-1")
        change = jira.create("change", {"summary": "c", "release": release.id}, "CHG-1")
        incident = jira.create("incident", {"summary": "i", "caused_by": change.id}, "INC-1")
        jira.write("release", release.id, {"state": "released"})
        jira.delete("change", change.id)
        jira.delete("release", release.id)
        assert sims.jira_webhooks.flush(10)
        hints = [h for headers, body in receiver.received for h in jira.parse_webhook(headers, body)]
    finally:
        receiver.close()
    seen = {(h.entity, h.id, h.deleted) for h in hints}
    assert {("release", release.id, False), ("change", change.id, False),
            ("incident", incident.id, False), ("change", change.id, True),
            ("release", release.id, True)} <= seen
    assert all(h.delivery_id for h in hints)
    assert len({h.delivery_id for h in hints}) == len(receiver.received)


# --- metadata -----------------------------------------------------------------------------------


def test_metadata_reflects_the_simulated_instance(sim: Sim, jira: JiraAdapter) -> None:
    meta = jira.metadata()
    assert {"version", "Change", "Incident"} <= set(meta.objects)
    change = meta.objects["Change"]
    assert {"Assess", "Closed", "Canceled"} <= set(change["status"].choices)
    assert "High" in change["priority"].choices and "summary" in change
    assert "caused_by" in meta.objects["Incident"]
    assert len(sim.requests()) == 4  # field, project, statuses, priority
