"""ServiceNowAdapter against the ServiceNow simulator: real HTTP, real pysnow, counted calls."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from pydantic import SecretStr
from relbridge_servicenow import ServiceNowAdapter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.errors import PermanentError, TransientError
from bridge.sim import Simulators, start_simulators
from bridge.sim.server import start_in_thread

AUTH = ("admin", "admin")


@pytest.fixture
def empty() -> Iterator[Simulators]:
    with start_simulators(seed="empty") as sims:
        yield sims


@pytest.fixture
def demo() -> Iterator[Simulators]:
    with start_simulators(seed="demo") as sims:
        yield sims


def make_adapter(sims: Simulators, page_size: int = 500, password: str = "admin") -> ServiceNowAdapter:
    return ServiceNowAdapter(sims.servicenow_url, "admin", SecretStr(password), page_size=page_size,
                             timeout=5)


class SimLog:
    """The simulator's own request log: what really reached the server."""

    def __init__(self, url: str) -> None:
        self.url = url

    def clear(self) -> None:
        requests.delete(f"{self.url}/_sim/requests", timeout=5).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        return requests.get(f"{self.url}/_sim/requests", timeout=5).json()["requests"]

    def methods(self) -> list[tuple[str, str]]:
        return [(r["method"], r["path"].rsplit("/table/", 1)[-1].split("/")[0]) for r in self.requests()]


def raw_all(sims: Simulators, table: str, fields: str = "sys_id") -> list[dict[str, Any]]:
    response = requests.get(f"{sims.servicenow_url}/api/now/table/{table}", auth=AUTH, timeout=5,
                            params={"sysparm_fields": fields, "sysparm_exclude_reference_link": "true"})
    response.raise_for_status()
    return response.json()["result"]


def add_fault(sims: Simulators, **rule: Any) -> None:
    requests.post(f"{sims.servicenow_url}/_sim/faults", json=rule, timeout=5).raise_for_status()


# -- reading the demo data -------------------------------------------------------------------


def test_list_changed_over_several_pages_reads_everything_once(demo: Simulators) -> None:
    adapter = make_adapter(demo, page_size=2)
    expected = {r["sys_id"] for r in raw_all(demo, "change_request")}
    log = SimLog(demo.servicenow_url)
    log.clear()

    records = list(adapter.list_changed("change", None, ["short_description", "state", "release"]))

    assert len(expected) > 4  # more than two pages
    assert sorted(r.id for r in records) == sorted(expected)
    assert [r.updated_at for r in records] == sorted(r.updated_at for r in records)
    pages = len(expected) // 2 + 1  # stops on the first short page
    links = math.ceil(len(expected) / 2)  # one link query per non-empty page
    assert log.methods().count(("GET", "change_request")) == pages
    assert log.methods().count(("GET", "rm_m2m_release_task")) == links
    assert len(log.requests()) == pages + links == sum(adapter.calls.values())
    assert all("sysparm_no_count=true" in r["query"] and "sysparm_exclude_reference_link=true"
               in r["query"] for r in log.requests())


def test_a_record_updated_while_paging_does_not_hide_another(demo: Simulators) -> None:
    """A plain growing offset would skip one record here: the update moves A to the end."""
    adapter = make_adapter(demo, page_size=2)
    expected = {r["sys_id"] for r in raw_all(demo, "change_request")}
    pages = adapter.list_changed("change", None, ["state"])
    first = [next(pages), next(pages)]
    requests.patch(f"{demo.servicenow_url}/api/now/table/change_request/{first[0].id}", auth=AUTH,
                   json={"short_description": "edited while paging"}, timeout=5).raise_for_status()

    rest = list(pages)

    assert {r.id for r in first + rest} == expected
    assert [r.id for r in rest].count(first[0].id) == 1  # seen again, in its new version


def test_change_release_matches_the_link_table(demo: Simulators) -> None:
    links = {r["task"]: r["release"] for r in raw_all(demo, "rm_m2m_release_task", "task,release")}
    adapter = make_adapter(demo, page_size=3)

    records = list(adapter.list_changed("change", None, ["release"]))

    assert any(r.fields["release"] for r in records)
    for record in records:
        assert record.fields["release"] == links.get(record.id, "")
        assert record.updated_at.tzinfo is UTC and record.version.isdigit()


def test_incident_release_is_its_changes_release(demo: Simulators) -> None:
    links = {r["task"]: r["release"] for r in raw_all(demo, "rm_m2m_release_task", "task,release")}
    adapter = make_adapter(demo)

    incidents = list(adapter.list_changed("incident", None, ["short_description", "release"]))

    assert incidents and any(i.fields["caused_by"] for i in incidents)
    for incident in incidents:
        assert incident.fields["release"] == links.get(incident.fields["caused_by"], "")


def test_list_changed_since_returns_only_newer_records(demo: Simulators) -> None:
    adapter = make_adapter(demo, page_size=2)
    everything = list(adapter.list_changed("release", None, ["short_description"]))
    cut = sorted(r.updated_at for r in everything)[len(everything) // 2]

    newer = list(adapter.list_changed("release", cut, ["short_description"]))

    assert {r.id for r in newer} == {r.id for r in everything if r.updated_at >= cut}


def test_metadata_of_the_empty_instance(empty: Simulators) -> None:
    metadata = make_adapter(empty, page_size=50).metadata()

    change = metadata.objects["change_request"]
    assert {"short_description", "state", "approval", "risk"} <= set(change)
    assert {"-5", "-2", "3", "4"} <= set(change["state"].choices)
    assert metadata.objects["incident"]["caused_by"].type == "reference"
    assert "short_description" in metadata.objects["rm_release"]


# -- round trips on an empty instance --------------------------------------------------------


def test_create_write_read_find_round_trip_with_minimal_calls(empty: Simulators) -> None:
    adapter = make_adapter(empty)
    log = SimLog(empty.servicenow_url)

    release = adapter.create("release", {"short_description": "Payments 2.0"}, "OPS-V1")
    r2 = adapter.create("release", {"short_description": "Payments 2.1"}, "OPS-V2")
    log.clear()
    change = adapter.create("change", {"short_description": "Deploy", "release": release.id}, "OPS-1")
    assert log.methods() == [("POST", "change_request"), ("POST", "rm_m2m_release_task")]
    assert change.correlation == "OPS-1" and change.key and change.key.startswith("CHG")
    assert change.fields["correlation_display"] == "relbridge"
    assert change.fields["release"] == release.id

    log.clear()
    found = adapter.find_by_correlation("change", "OPS-1")
    assert found is not None and found.id == change.id and found.fields["release"] == release.id
    assert adapter.find_by_correlation("change", "OPS-404") is None
    assert log.methods() == [("GET", "change_request"), ("GET", "rm_m2m_release_task"),
                             ("GET", "change_request")]

    log.clear()
    written = adapter.write("change", change.id, {"state": "-2", "release": r2.id})
    assert written is not None and int(written.version) > int(change.version)
    assert [m for m, _ in log.methods()] == ["PATCH", "GET", "POST", "DELETE"]
    assert links_of(empty, change.id) == [r2.id]

    log.clear()
    assert adapter.write("change", change.id, {"release": r2.id}) is None  # unchanged: one look
    assert adapter.write("change", change.id, {}) is None  # nothing at all
    assert log.methods() == [("GET", "rm_m2m_release_task")]

    log.clear()
    read = adapter.read("change", change.id, ["state", "release", "short_description"])
    assert read is not None
    assert (read.fields["state"], read.fields["release"]) == ("-2", r2.id)
    assert read.fields["short_description"] == "Deploy"
    assert read.version == written.version
    assert log.methods() == [("GET", "change_request"), ("GET", "rm_m2m_release_task")]


def test_write_changes_only_the_given_fields(empty: Simulators) -> None:
    adapter = make_adapter(empty)
    created = adapter.create("incident", {"short_description": "Login down", "state": "1"}, "OPS-9")

    adapter.write("incident", created.id, {"state": "2"})

    [patch] = [r for r in SimLog(empty.servicenow_url).requests() if r["method"] == "PATCH"]
    record = raw_all(empty, "incident", "sys_id,state,short_description")[0]
    assert (record["state"], record["short_description"]) == ("2", "Login down")
    assert patch["status"] == 200


def test_link_made_in_servicenow_is_read_and_can_be_cleared(empty: Simulators) -> None:
    adapter = make_adapter(empty)
    release = adapter.create("release", {"short_description": "R"}, "OPS-V1")
    change = adapter.create("change", {"short_description": "C"}, "OPS-1")
    requests.post(f"{empty.servicenow_url}/api/now/table/rm_m2m_release_task", auth=AUTH, timeout=5,
                  json={"release": release.id, "task": change.id}).raise_for_status()

    read = adapter.read("change", change.id, ["release"])
    assert read is not None and read.fields["release"] == release.id

    adapter.write("change", change.id, {"release": ""})
    assert links_of(empty, change.id) == []
    cleared = adapter.read("change", change.id, ["release"])
    assert cleared is not None and cleared.fields["release"] == ""


def test_records_created_in_the_same_second_page_without_loss(empty: Simulators) -> None:
    adapter = make_adapter(empty, page_size=2)
    before = datetime.now(UTC) - timedelta(seconds=1)
    ids = {adapter.create("incident", {"short_description": f"i{n}"}, f"OPS-{n}").id
           for n in range(7)}

    seen = [r.id for r in adapter.list_changed("incident", before, [])]

    assert sorted(seen) == sorted(ids)


def test_read_and_delete_of_missing_records(empty: Simulators) -> None:
    adapter = make_adapter(empty)
    created = adapter.create("release", {"short_description": "gone soon"}, "OPS-V3")

    adapter.delete("release", created.id)
    adapter.delete("release", created.id)  # already gone: fine

    assert adapter.read("release", created.id, []) is None


# -- errors through the fault API ------------------------------------------------------------


def test_rate_limit_fault_is_transient_with_retry_after(empty: Simulators) -> None:
    adapter = make_adapter(empty)
    add_fault(empty, method="GET", path="/api/now/table/incident", status=429, retry_after=3, times=1)

    with pytest.raises(TransientError) as caught:
        list(adapter.list_changed("incident", None, []))

    assert (caught.value.status, caught.value.retry_after) == (429, 3)
    assert list(adapter.list_changed("incident", None, [])) == []  # the fault ran out


def test_outage_and_dropped_connection_are_transient(empty: Simulators) -> None:
    adapter = make_adapter(empty)
    add_fault(empty, method="POST", path="/api/now/table/change_request", status=503, times=1)
    add_fault(empty, method="GET", path="/api/now/table/rm_release", status=0, reset=True, times=1)

    with pytest.raises(TransientError) as outage:
        adapter.create("change", {"short_description": "x"}, "OPS-1")
    with pytest.raises(TransientError):
        adapter.check_auth()

    assert outage.value.status == 503
    assert adapter.calls["POST"] == 1 and adapter.calls["GET"] == 1


def test_wrong_password_is_permanent_and_never_echoed(empty: Simulators) -> None:
    adapter = make_adapter(empty, password="not-the-password")

    with pytest.raises(PermanentError) as caught:
        adapter.check_auth()

    assert caught.value.status == 401
    assert "[servicenow] user/password" in str(caught.value)
    assert "not-the-password" not in str(caught.value)


def test_writing_a_missing_record_is_permanent(empty: Simulators) -> None:
    adapter = make_adapter(empty)

    with pytest.raises(PermanentError) as caught:
        adapter.write("change", "0" * 32, {"state": "-2"})

    assert caught.value.status == 404
    assert "PATCH /api/now/table/change_request" in str(caught.value)


# -- webhooks from the simulator -------------------------------------------------------------


def test_simulator_webhook_bodies_parse_into_hints(empty: Simulators) -> None:
    bodies: list[Any] = []
    arrived = threading.Event()

    async def hook(request: Request) -> Response:
        bodies.append(json.loads(await request.body()))
        arrived.set()
        return Response(status_code=204)

    receiver = start_in_thread(Starlette(routes=[Route("/hook", hook, methods=["POST"])]))
    try:
        requests.post(f"{empty.servicenow_url}/_sim/webhooks", timeout=5, json={
            "url": f"{receiver.url}/hook", "secret": "s", "tables": ["change_request"]},
        ).raise_for_status()
        adapter = make_adapter(empty)
        change = adapter.create("change", {"short_description": "hooked"}, "OPS-1")
        adapter.write("change", change.id, {"state": "-4"})
        empty.servicenow_webhooks.flush()
    finally:
        receiver.stop()

    hints = [h for body in bodies for h in adapter.parse_webhook({}, body)]
    assert [(h.entity, h.id, h.deleted) for h in hints] == [("change", change.id, False)] * 2
    assert len({h.delivery_id for h in hints}) == 2


def links_of(sims: Simulators, change_id: str) -> list[str]:
    return [r["release"] for r in raw_all(sims, "rm_m2m_release_task", "task,release")
            if r["task"] == change_id]


# -- against an instance as strict as a real one ------------------------------------------------


def test_correlation_look_up_picks_the_exact_case(empty: Simulators) -> None:
    """The instance matches `correlation_id=ABC-CASE` to `abc-case` too; the adapter must
    still pick the record tagged exactly, even when the other one is older."""
    other = requests.post(f"{empty.servicenow_url}/api/now/table/change_request", auth=AUTH,
                          json={"correlation_id": "abc-case"}, timeout=5).json()["result"]
    adapter = make_adapter(empty)
    mine = adapter.create("change", {"short_description": "Deploy"}, "ABC-CASE")

    found = adapter.find_by_correlation("change", "ABC-CASE")
    assert found is not None and found.id == mine.id != other["sys_id"]
    assert adapter.find_by_correlation("change", "Abc-Case") is None
    same_name = adapter.find_by_field("change", "short_description", "DEPLOY")
    assert same_name is None  # "Deploy" is not "DEPLOY", whatever the instance says


def test_release_look_up_of_thousands_of_changes_pages_its_in_queries(empty: Simulators) -> None:
    """3000 change ids in one `taskIN…` would be a ~100 KB URL the instance refuses; the
    adapter sends them in pages that each stay below the instance's URL limit."""
    adapter = make_adapter(empty)
    release = adapter.create("release", {"short_description": "R"}, "OPS-V1")
    changes = [adapter.create("change", {"short_description": f"c{n}", "release": release.id},
                              f"OPS-{n}") for n in range(3)]
    ids = [c.id for c in changes] + [f"{n:032x}" for n in range(3000)]
    log = SimLog(empty.servicenow_url)
    log.clear()

    found = adapter._links.releases_of(ids)

    assert found == {c.id: release.id for c in changes}
    statuses = [(r["method"], r["status"]) for r in log.requests()]
    assert statuses == [("GET", 200)] * math.ceil(len(ids) / 150)


def test_metadata_reads_table_inheritance_without_errors(empty: Simulators,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """`sys_db_object` answers the inheritance look-up (rm_release -> planned_task -> task),
    so metadata no longer logs that it cannot read it."""
    caplog.set_level("INFO", logger="relbridge_servicenow")
    metadata = make_adapter(empty, page_size=50).metadata()
    assert "short_description" in metadata.objects["rm_release"]
    assert not [r for r in caplog.records if "inheritance" in r.getMessage()]


def test_adapter_reads_raw_utc_values_whatever_the_users_time_zone(empty: Simulators) -> None:
    """The API user is in New York on the simulator (as users on real instances are rarely
    UTC); the adapter's datetimes must still be the stored UTC values."""
    adapter = make_adapter(empty)
    made = adapter.create("change", {"short_description": "d", "start_date": "2030-07-01 12:00:00"},
                          "OPS-TZ")
    read = adapter.read("change", made.id, ["start_date"])
    assert read is not None and read.fields["start_date"] == "2030-07-01 12:00:00"
    shown = requests.get(f"{empty.servicenow_url}/api/now/table/change_request/{made.id}",
                         params={"sysparm_display_value": "true", "sysparm_fields": "start_date"},
                         auth=AUTH, timeout=5).json()["result"]["start_date"]
    assert shown == "07/01/2030 08:00:00"  # what a display-value read would have got
