"""The ServiceNow Table API simulator, driven by the real pysnow client and by plain HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime

import pysnow
import pytest
import requests

from bridge.sim import Simulators

from .conftest import SimsFactory, WebhookReceiver

AUTH = ("admin", "admin")
CHANGES = "/api/now/table/change_request"
DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def snow(url: str, password: str = "admin") -> pysnow.Client:
    return pysnow.Client(host=url.split("//", 1)[1], user="admin", password=password,
                         use_ssl=False)


def post(url: str, table: str, **values: object) -> dict:
    response = requests.post(f"{url}/api/now/table/{table}", json=values, auth=AUTH, timeout=5)
    assert response.status_code == 201, response.text
    return response.json()["result"]


def get(url: str, path: str, **params: str) -> requests.Response:
    return requests.get(url + path, params=params, auth=AUTH, timeout=5)


def numbers(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["number"] for r in response.json()["result"]]


@pytest.fixture
def changes(servicenow_url: str) -> list[dict]:
    """Five changes with known values (CHG0030001..5) in an empty instance."""
    rows = [
        ("Deploy API gateway", "-5", "not requested", "normal", "1", "2030-01-10 08:00:00"),
        ("Patch database", "-2", "approved", "standard", "4", "2030-01-05 08:00:00"),
        ("Rotate certificates", "-1", "approved", "normal", "3", ""),
        ("Upgrade gateway firmware", "3", "approved", "emergency", "2", "2030-02-01 08:00:00"),
        ("Decommission old API", "4", "rejected", "normal", "10", "2030-01-20 08:00:00"),
    ]
    return [post(servicenow_url, "change_request", short_description=text, state=state,
                 approval=approval, type=kind, risk=risk, start_date=start)
            for text, state, approval, kind, risk, start in rows]


# -- pysnow ------------------------------------------------------------------------------


def test_pysnow_pages_with_its_own_limit_and_offset(servicenow_url: str,
                                                    changes: list[dict]) -> None:
    resource = snow(servicenow_url).resource(api_path="/table/change_request")
    seen = []
    for offset in (0, 2, 4):
        page = resource.get(query={}, limit=2, offset=offset).all()
        seen.extend(r["number"] for r in page)
    assert seen == [f"CHG003000{n}" for n in range(1, 6)]
    approved = resource.get(query={"approval": "approved"}, limit=10).all()
    assert [r["number"] for r in approved] == ["CHG0030002", "CHG0030003", "CHG0030004"]


def test_pysnow_create_update_delete_round_trip(sims: Simulators) -> None:
    resource = snow(sims.servicenow_url).resource(api_path="/table/change_request")
    created = resource.create(payload={"short_description": "Made by pysnow", "risk": 2}).one()
    assert created["number"] == "CHG0030001"
    assert (created["risk"], created["sys_mod_count"], created["state"]) == ("2", "0", "-5")

    updated = resource.update(query={"number": "CHG0030001"}, payload={"state": "-4"})
    assert (updated["state"], updated["sys_mod_count"]) == ("-4", "1")
    put = [r for r in sims.servicenow.control.requests()["requests"] if r["method"] == "PUT"]
    assert "sysparm_query=number" in put[0]["query"]  # the query rode along and was ignored

    assert resource.delete(query={"number": "CHG0030001"}) == {"status": "record deleted"}
    assert get(sims.servicenow_url, f"{CHANGES}/{created['sys_id']}").status_code == 404
    with pytest.raises(pysnow.exceptions.NoResults):
        resource.update(query={"number": "CHG0030001"}, payload={"state": "-3"})


def test_pysnow_query_builder_ordering(servicenow_url: str, changes: list[dict]) -> None:
    resource = snow(servicenow_url).resource(api_path="/table/change_request")
    descending = (pysnow.QueryBuilder().field("state").not_equals("3").AND()
                  .field("number").order_descending())
    assert str(descending) == "state!=3^ORDERBYDESCnumber"
    assert [r["number"] for r in resource.get(query=descending).all()] == [
        "CHG0030005", "CHG0030003", "CHG0030002", "CHG0030001"]
    glued = pysnow.QueryBuilder().field("risk").less_than(4).field("start_date").order_ascending()
    assert str(glued) == "risk<4ORDERBYstart_date"  # no "^": pysnow glues the order token on
    assert [r["number"] for r in resource.get(query=glued).all()] == [
        "CHG0030003", "CHG0030001", "CHG0030004"]  # empty start_date sorts first


def test_pysnow_sees_http_errors_on_bad_credentials(servicenow_url: str) -> None:
    resource = snow(servicenow_url, password="wrong").resource(api_path="/table/incident")
    with pytest.raises(requests.HTTPError) as error:
        resource.get(query={}).all()
    assert error.value.response.status_code == 401


# -- paging headers ----------------------------------------------------------------------


def _links(response: requests.Response) -> list[tuple[str, int]]:
    found = re.findall(r'<([^>]+)>;rel="(\w+)"', response.headers["Link"])
    return [(rel, int(re.search(r"sysparm_offset=(-?\d+)", u).group(1))) for u, rel in found]


def test_link_and_total_count_headers(servicenow_url: str, changes: list[dict]) -> None:
    first = get(servicenow_url, CHANGES, sysparm_limit="2", sysparm_fields="number")
    assert first.headers["X-Total-Count"] == "5"
    assert _links(first) == [("first", 0), ("prev", -2), ("next", 2), ("last", 4)]
    for url in re.findall(r"<([^>]+)>", first.headers["Link"]):
        assert url.startswith(servicenow_url + CHANGES + "?")
        assert "sysparm_fields=number" in url and "sysparm_limit=2" in url
    last = get(servicenow_url, CHANGES, sysparm_limit="2", sysparm_offset="4")
    assert numbers(last) == ["CHG0030005"]
    assert _links(last) == [("first", 0), ("prev", 2), ("last", 4)]
    next_url = re.search(r'<([^>]+)>;rel="next"', first.headers["Link"]).group(1)
    assert numbers(requests.get(next_url, auth=AUTH, timeout=5)) == ["CHG0030003", "CHG0030004"]


def test_pagination_header_and_count_can_be_switched_off(servicenow_url: str,
                                                         changes: list[dict]) -> None:
    quiet = get(servicenow_url, CHANGES, sysparm_suppress_pagination_header="true",
                sysparm_no_count="TRUE")
    assert "Link" not in quiet.headers and "X-Total-Count" not in quiet.headers
    assert len(quiet.json()["result"]) == 5


def test_offset_past_the_end_is_an_empty_page(servicenow_url: str, changes: list[dict]) -> None:
    response = get(servicenow_url, CHANGES, sysparm_offset="50")
    assert response.json() == {"result": []}
    assert response.headers["X-Total-Count"] == "5"


# -- records, fields and references ------------------------------------------------------


def test_every_value_is_a_string_and_sys_fields_are_kept(servicenow_url: str) -> None:
    created = post(servicenow_url, "change_request", short_description="x", risk=2,
                   active=False, sys_mod_count="99", sys_created_on="2000-01-01 00:00:00",
                   sys_created_by="mallory", bogus_field="dropped")
    assert all(isinstance(v, str) for v in created.values())
    assert re.fullmatch(r"[0-9a-f]{32}", created["sys_id"])
    assert DATE_TIME.fullmatch(created["sys_created_on"])
    assert created["sys_created_on"] == created["sys_updated_on"]
    assert created["sys_created_on"] >= datetime.now(UTC).strftime("%Y-%m-%d")
    assert (created["sys_mod_count"], created["sys_created_by"]) == ("0", "admin")
    assert (created["sys_class_name"], created["active"], created["risk"]) == (
        "change_request", "false", "2")
    assert created["close_code"] == "" and created["assigned_to"] == ""
    assert "bogus_field" not in created


def test_sys_mod_count_counts_real_changes_only(servicenow_url: str) -> None:
    created = post(servicenow_url, "change_request", short_description="counted")
    url = f"{servicenow_url}{CHANGES}/{created['sys_id']}"
    counts = []
    for body in ({"state": "-4"}, {"state": "-3"}, {"state": "-3"}, {"sys_mod_count": "50"}):
        response = requests.patch(url, json=body, auth=AUTH, timeout=5)
        assert response.status_code == 200
        counts.append(response.json()["result"]["sys_mod_count"])
    assert counts == ["1", "2", "2", "2"]
    put = requests.put(url, json={"risk": "1"}, auth=AUTH, timeout=5).json()["result"]
    assert (put["sys_mod_count"], put["state"], put["risk"]) == ("3", "-3", "1")  # PUT merges


def test_post_returns_201_with_location_and_honours_no_response_body(servicenow_url: str) -> None:
    response = requests.post(servicenow_url + CHANGES, json={"short_description": "a"},
                             auth=AUTH, timeout=5)
    assert response.status_code == 201
    location = response.headers["Location"]
    assert location == f"{servicenow_url}{CHANGES}/{response.json()['result']['sys_id']}"
    assert get(servicenow_url, location[len(servicenow_url):]).status_code == 200
    silent = requests.post(servicenow_url + CHANGES, json={"short_description": "b"}, auth=AUTH,
                           headers={"X-no-response-body": "true"}, timeout=5)
    assert (silent.status_code, silent.content) == (201, b"")
    assert numbers(get(servicenow_url, CHANGES)) == ["CHG0030001", "CHG0030002"]


def test_fields_parameter_ignores_invalid_names_and_supports_dot_walking(
        servicenow_url: str) -> None:
    change = post(servicenow_url, "change_request", short_description="cause")
    post(servicenow_url, "incident", short_description="effect", caused_by=change["sys_id"])
    row = get(servicenow_url, "/api/now/table/incident",
              sysparm_fields="number,no_such_field,caused_by.number,state").json()["result"][0]
    assert row == {"number": "INC0010001", "caused_by.number": "CHG0030001", "state": "1"}


def test_reference_shapes(servicenow_url: str) -> None:
    change = post(servicenow_url, "change_request", short_description="cause", state="-2")
    incident = post(servicenow_url, "incident", short_description="effect",
                    caused_by=change["number"])  # a display value is resolved to the sys_id
    link = f"{servicenow_url}{CHANGES}/{change['sys_id']}"
    assert incident["caused_by"] == {"link": link, "value": change["sys_id"]}
    assert incident["rfc"] == ""
    assert requests.get(link, auth=AUTH, timeout=5).json()["result"]["number"] == "CHG0030001"

    path = f"/api/now/table/incident/{incident['sys_id']}"
    plain = get(servicenow_url, path, sysparm_exclude_reference_link="True").json()["result"]
    assert plain["caused_by"] == change["sys_id"]
    shown = get(servicenow_url, path, sysparm_display_value="true").json()["result"]
    assert shown["caused_by"] == {"display_value": "CHG0030001", "link": link}
    assert (shown["state"], shown["rfc"]) == ("New", "")
    both = get(servicenow_url, path, sysparm_display_value="all").json()["result"]
    assert both["caused_by"] == {"display_value": "CHG0030001", "value": change["sys_id"],
                                 "link": link}
    assert both["state"] == {"display_value": "New", "value": "1"}
    assert both["rfc"] == {"display_value": "", "value": ""}


def test_input_display_value_stores_choice_values(servicenow_url: str) -> None:
    response = requests.post(servicenow_url + CHANGES, auth=AUTH, timeout=5,
                             params={"sysparm_input_display_value": "true"},
                             json={"state": "Scheduled", "risk": "High"})
    assert (response.json()["result"]["state"], response.json()["result"]["risk"]) == ("-2", "2")


# -- encoded queries ---------------------------------------------------------------------


@pytest.mark.parametrize("query, expected", [
    ("state=-2", [2]),
    ("state!=-2", [1, 3, 4, 5]),
    ("risk>3", [2, 5]),  # numerically: "10" > "3"
    ("risk>=3", [2, 3, 5]),
    ("risk<2", [1]),
    ("risk<=2", [1, 4]),
    ("stateIN-1,-2", [2, 3]),
    ("stateNOT IN-1,-2,3", [1, 5]),
    ("short_descriptionLIKEgateway", [1, 4]),
    ("short_descriptionNOT LIKEgateway", [2, 3, 5]),
    ("short_descriptionSTARTSWITHDe", [1, 5]),
    ("short_descriptionENDSWITHAPI", [5]),
    ("start_dateISEMPTY", [3]),
    ("start_dateISNOTEMPTY", [1, 2, 4, 5]),
    ("start_date>2030-01-10 08:00:00", [4, 5]),
    ("start_dateBETWEEN2030-01-05 00:00:00@2030-01-10 23:59:59", [1, 2]),
    ("start_dateBETWEENjavascript:gs.dateGenerate('2030-01-15','00:00:00')"
     "@javascript:gs.dateGenerate('2030-01-31','23:59:59')", [5]),
    ("approval=approved^type=normal", [3]),
    ("type=normal^state=-5^ORstate=4", [1, 5]),
    ("state=3^NQrisk=4^ORrisk=1", [1, 2, 4]),
    ("approval=approved^ORDERBYDESCnumber", [4, 3, 2]),
    ("ORDERBYrisk", [1, 4, 3, 2, 5]),
    ("ORDERBYtype^ORDERBYDESCnumber", [4, 5, 3, 1, 2]),
    ("no_such_field=1^state=-2", [2]),  # invalid parts are dropped, the rest applies
    ("stateWOBBLES5^approval=rejected", [5]),
    ("no_such_field=1", [1, 2, 3, 4, 5]),
    ("ORDERBYno_such_field^state=-1", [3]),
])
def test_encoded_queries(servicenow_url: str, changes: list[dict], query: str,
                         expected: list[int]) -> None:
    response = get(servicenow_url, CHANGES, sysparm_query=query, sysparm_fields="number")
    assert numbers(response) == [f"CHG003000{n}" for n in expected]


def test_plain_name_value_parameters_filter_and_accept_display_values(
        servicenow_url: str, changes: list[dict]) -> None:
    assert numbers(get(servicenow_url, CHANGES, approval="approved", type="normal")) == [
        "CHG0030003"]
    assert numbers(get(servicenow_url, CHANGES, state="Scheduled")) == ["CHG0030002"]
    assert numbers(get(servicenow_url, CHANGES, no_such_field="1")) == [
        f"CHG003000{n}" for n in range(1, 6)]


# -- errors and URL forms ----------------------------------------------------------------


def test_401_envelope(servicenow_url: str) -> None:
    for auth in (None, ("admin", "nope")):
        response = requests.get(servicenow_url + CHANGES, auth=auth, timeout=5)
        assert response.status_code == 401
        assert response.json() == {"error": {"message": "User Not Authenticated",
                                              "detail": "Required to provide Auth information"},
                                   "status": "failure"}


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_404_envelope_for_an_unknown_record(servicenow_url: str, method: str) -> None:
    response = requests.request(method, f"{servicenow_url}{CHANGES}/{'0' * 32}", json={},
                                auth=AUTH, timeout=5)
    assert response.status_code == 404
    body = response.json()
    assert (body["status"], body["error"]["message"]) == ("failure", "No Record found")


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b'"text"'])
def test_400_for_a_body_that_is_not_a_json_object(servicenow_url: str, data: bytes) -> None:
    response = requests.post(servicenow_url + CHANGES, data=data, auth=AUTH, timeout=5,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["status"] == "failure"
    assert get(servicenow_url, CHANGES).json() == {"result": []}  # nothing half-created


def test_400_for_negative_offset_and_unknown_table(servicenow_url: str) -> None:
    negative = get(servicenow_url, CHANGES, sysparm_offset="-1")
    assert negative.status_code == 400
    assert negative.json()["error"] == {"message": "offset is -1",
                                        "detail": "Negative offset is not supported"}
    unknown = get(servicenow_url, "/api/now/table/u_never_created")
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == "Invalid table u_never_created"


def test_versioned_urls_and_the_v1_empty_result(servicenow_url: str, changes: list[dict]) -> None:
    assert numbers(get(servicenow_url, "/api/now/v2/table/change_request",
                       sysparm_query="state=3")) == ["CHG0030004"]
    one = get(servicenow_url, f"/api/now/v1/table/change_request/{changes[0]['sys_id']}")
    assert one.json()["result"]["number"] == "CHG0030001"
    assert get(servicenow_url, "/api/now/v2/table/change_request",
               sysparm_query="state=0").json() == {"result": []}
    v1 = get(servicenow_url, "/api/now/v1/table/change_request", sysparm_query="state=0")
    assert v1.status_code == 404


def test_methods_the_table_api_does_not_support(servicenow_url: str,
                                                changes: list[dict]) -> None:
    on_record = requests.post(f"{servicenow_url}{CHANGES}/{changes[0]['sys_id']}", json={},
                              auth=AUTH, timeout=5)
    assert on_record.status_code == 405
    on_table = requests.delete(servicenow_url + CHANGES, auth=AUTH, timeout=5)
    assert on_table.status_code == 405
    assert on_table.json()["status"] == "failure"


# -- seeds -------------------------------------------------------------------------------


def test_empty_seed_has_schema_rows_but_no_records(servicenow_url: str) -> None:
    for table in ("rm_release", "rm_m2m_release_task", "change_request", "incident"):
        assert get(servicenow_url, f"/api/now/table/{table}").json() == {"result": []}
    caused_by = get(servicenow_url, "/api/now/table/sys_dictionary",
                    sysparm_query="name=incident^element=caused_by").json()["result"]
    assert [(r["internal_type"], r["reference"]) for r in caused_by] == [
        ("reference", "change_request")]
    states = get(servicenow_url, "/api/now/table/sys_choice",
                 sysparm_query="name=change_request^element=state^ORDERBYsequence").json()
    assert [(r["value"], r["label"]) for r in states["result"]] == [
        ("-5", "New"), ("-4", "Assess"), ("-3", "Authorize"), ("-2", "Scheduled"),
        ("-1", "Implement"), ("0", "Review"), ("3", "Closed"), ("4", "Canceled")]
    approvals = get(servicenow_url, "/api/now/table/sys_choice",
                    sysparm_query="name=change_request^element=approval").json()["result"]
    assert {r["value"] for r in approvals} == {"not requested", "requested", "approved",
                                               "rejected"}
    release_columns = get(servicenow_url, "/api/now/table/sys_dictionary",
                          sysparm_query="name=rm_release", sysparm_fields="element").json()
    assert {"start_date", "end_date", "work_start", "work_end", "correlation_id",
            "state"} <= {r["element"] for r in release_columns["result"]}


def test_demo_seed_is_a_linked_release_calendar(sims_factory: SimsFactory) -> None:
    url = sims_factory(seed="demo").servicenow_url
    releases = get(url, "/api/now/table/rm_release").json()["result"]
    assert len(releases) >= 3
    assert len({r["state"] for r in releases}) >= 3
    assert releases[0]["number"] == "RLSE0001001"
    links = get(url, "/api/now/table/rm_m2m_release_task",
                sysparm_exclude_reference_link="true").json()["result"]
    for release in releases:
        linked = [lk["task"] for lk in links if lk["release"] == release["sys_id"]]
        assert 2 <= len(linked) <= 3
        for sys_id in linked:
            assert get(url, f"{CHANGES}/{sys_id}").status_code == 200
    changes = get(url, CHANGES).json()["result"]
    assert len({c["state"] for c in changes}) >= 4
    assert len({c["approval"] for c in changes}) >= 3
    incidents = get(url, "/api/now/table/incident", sysparm_fields="caused_by.number,number")
    assert all(i["caused_by.number"].startswith("CHG") for i in incidents.json()["result"])
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert all(r["sys_updated_on"] <= now for r in releases + changes)
    assert any(r["end_date"] > now for r in releases)  # some releases lie ahead


# -- webhooks and state file -------------------------------------------------------------


def _verify(delivery: object, secret: str) -> dict:
    headers, body = delivery.headers, delivery.body  # type: ignore[attr-defined]
    timestamp = headers["x-relbridge-timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body,
                        hashlib.sha256).hexdigest()
    assert headers["x-relbridge-signature"] == f"sha256={expected}"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "ServiceNow/1.0"
    return json.loads(body)


def test_webhooks_are_delivered_signed_for_subscribed_tables(
        sims: Simulators, webhook_receiver: WebhookReceiver) -> None:
    url = sims.servicenow_url
    registered = requests.post(f"{url}/_sim/webhooks", timeout=5, json={
        "url": webhook_receiver.url, "secret": "sn-secret", "tables": ["change_request"]})
    assert registered.status_code == 201
    listed = requests.get(f"{url}/_sim/webhooks", timeout=5).json()["webhooks"]
    assert listed == [{"url": webhook_receiver.url, "tables": ["change_request"], "signed": True}]

    change = post(url, "change_request", short_description="hooked")
    post(url, "incident", short_description="not subscribed")
    record_url = f"{url}{CHANGES}/{change['sys_id']}"
    requests.patch(record_url, json={"state": "-4"}, auth=AUTH, timeout=5)
    requests.patch(record_url, json={"state": "-4"}, auth=AUTH, timeout=5)  # no change: no hook
    requests.delete(record_url, auth=AUTH, timeout=5)
    assert sims.servicenow_webhooks.flush(5)

    bodies = [_verify(d, "sn-secret") for d in webhook_receiver.received]
    assert [(b["operation"], b["sys_mod_count"]) for b in bodies] == [
        ("insert", "0"), ("update", "1"), ("delete", "1")]
    assert all(b["table"] == "change_request" and b["sys_id"] == change["sys_id"]
               and b["number"] == "CHG0030001" for b in bodies)
    assert DATE_TIME.fullmatch(bodies[1]["sys_updated_on"])

    assert requests.delete(f"{url}/_sim/webhooks", timeout=5).status_code == 200
    post(url, "change_request", short_description="after unsubscribe")
    assert sims.servicenow_webhooks.flush(5)
    assert len(webhook_receiver.received) == 3


@pytest.mark.parametrize("body", [
    {"url": "ftp://x", "secret": "s", "tables": ["incident"]},
    {"url": "http://127.0.0.1:1/x", "secret": "", "tables": ["incident"]},
    {"url": "http://127.0.0.1:1/x", "secret": "s", "tables": []},
    {"url": "http://127.0.0.1:1/x", "secret": "s", "tables": ["Bad Name"]},
])
def test_bad_webhook_registrations_are_400(servicenow_url: str, body: dict) -> None:
    response = requests.post(f"{servicenow_url}/_sim/webhooks", json=body, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]["message"]


def test_state_file_survives_a_restart(sims_factory: SimsFactory, tmp_path) -> None:
    state = tmp_path / "sim.json"
    first = sims_factory(seed="empty", state_file=state)
    created = post(first.servicenow_url, "change_request", short_description="persisted")
    requests.patch(f"{first.servicenow_url}{CHANGES}/{created['sys_id']}", json={"state": "-3"},
                   auth=AUTH, timeout=5)
    saved = tmp_path / "sim.servicenow.json"
    deadline = time.monotonic() + 3
    while not saved.exists() and time.monotonic() < deadline:  # saved soon after the writes
        time.sleep(0.05)
    assert saved.exists()
    first.stop()

    second = sims_factory(seed="demo", state_file=state)  # the file wins over the seed
    rows = get(second.servicenow_url, CHANGES).json()["result"]
    assert [(r["sys_id"], r["state"], r["sys_mod_count"]) for r in rows] == [
        (created["sys_id"], "-3", "1")]
    assert post(second.servicenow_url, "change_request")["number"] == "CHG0030002"
    assert get(second.servicenow_url, "/api/now/table/rm_release").json() == {"result": []}


def test_unreadable_state_file_and_bad_options_fail_clearly(sims_factory: SimsFactory,
                                                           tmp_path) -> None:
    (tmp_path / "bad.servicenow.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="cannot be loaded"):
        sims_factory(state_file=tmp_path / "bad.json")
    with pytest.raises(ValueError, match="seed"):
        sims_factory(seed="full")
    with pytest.raises(ValueError, match="jira_flavor"):
        sims_factory(jira_flavor="onprem")


def test_audited_tables_record_each_field_in_sys_audit(servicenow_url: str) -> None:
    """Inserts and updates of audited tables leave one sys_audit row per field set, stamped
    with the update; a write that changes nothing leaves none; other tables are not audited."""
    session = requests.Session()
    session.auth = ("admin", "admin")
    api = f"{servicenow_url}/api/now/table"
    change = session.post(f"{api}/change_request", json={"short_description": "A", "state": "-5"}).json()["result"]
    session.patch(f"{api}/change_request/{change['sys_id']}", json={"short_description": "B", "state": "-5"})
    session.patch(f"{api}/change_request/{change['sys_id']}", json={"short_description": "B"})
    session.post(f"{api}/sys_user", json={"user_name": "ada"})
    rows = session.get(f"{api}/sys_audit", params={
        "sysparm_query": f"documentkey={change['sys_id']}^ORDERBYrecord_checkpoint^ORDERBYfieldname"}).json()["result"]
    assert [(r["fieldname"], r["oldvalue"], r["newvalue"], r["record_checkpoint"]) for r in rows] == [
        ("short_description", "", "A", "0"), ("state", "", "-5", "0"), ("short_description", "A", "B", "1")]
    assert all(r["tablename"] == "change_request" and r["user"] == "admin" for r in rows)
    users = session.get(f"{api}/sys_audit", params={"sysparm_query": "tablename=sys_user"}).json()["result"]
    assert users == []
