"""ServiceNowAdapter against canned Table API answers (responses): what goes on the wire."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime as http_date
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from pydantic import SecretStr
from relbridge_servicenow import ServiceNowAdapter, relbridge_adapters
from relbridge_servicenow.api import split_url

from bridge.adapter import Adapter, FieldTime, SystemRecord, WebhookHint
from bridge.config import Config
from bridge.errors import BadInput, ConfigError, PermanentError, TransientError, parse_retry_after

BASE = "https://acme.service-now.com"
API = f"{BASE}/api/now/table"
PASSWORD = "s3cr3t-pw"
M2M = f"{API}/rm_m2m_release_task"


def sid(n: int) -> str:
    return f"{n:032x}"


def row(n: int, updated: str, mod: str = "1", **fields: Any) -> dict[str, Any]:
    return {"sys_id": sid(n), "number": f"CHG{30000 + n:07d}", "sys_updated_on": updated,
            "sys_mod_count": mod, "correlation_id": "", **fields}


def params(call: Any) -> dict[str, str]:
    """The query string of a recorded call, as ServiceNow would read it."""
    query = parse_qs(urlsplit(call.request.url).query, keep_blank_values=True)
    return {key: values[0] for key, values in query.items()}


def path(call: Any) -> str:
    return urlsplit(call.request.url).path


def body(call: Any) -> Any:
    return json.loads(call.request.body)


@pytest.fixture
def adapter() -> ServiceNowAdapter:
    return ServiceNowAdapter(BASE, "integration", SecretStr(PASSWORD), page_size=2)


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def test_is_an_adapter(adapter: ServiceNowAdapter) -> None:
    assert isinstance(adapter, Adapter)
    assert adapter.name == "servicenow"
    assert adapter.entities == ("release", "change", "incident")


# -- list_changed --------------------------------------------------------------------------


def test_list_changed_pages_until_a_short_page(adapter, mocked) -> None:
    pages = [[row(1, "2025-03-01 10:00:00"), row(2, "2025-03-01 10:00:01")],
             [row(3, "2025-03-01 10:00:02"), row(4, "2025-03-01 10:00:03")],
             [row(5, "2025-03-01 10:00:04")]]
    for page in pages:
        mocked.get(f"{API}/rm_release", json={"result": page})
    since = datetime(2025, 3, 1, 11, 0, 0, 999, tzinfo=timezone(timedelta(hours=1)))

    records = list(adapter.list_changed("release", since, ["short_description", "state"]))

    assert [r.id for r in records] == [sid(n) for n in range(1, 6)]
    first = params(mocked.calls[0])
    assert first == {
        "sysparm_query": "sys_updated_on>=2025-03-01 10:00:00^ORDERBYsys_updated_on^ORDERBYsys_id",
        "sysparm_limit": "2",
        "sysparm_offset": "0",
        "sysparm_fields": "sys_id,number,sys_created_on,sys_updated_on,sys_mod_count,correlation_id,"
                          "short_description,state",
        "sysparm_display_value": "false",
        "sysparm_exclude_reference_link": "true",
        "sysparm_no_count": "true",
        "sysparm_suppress_pagination_header": "true",
    }
    # each next page is anchored on the last timestamp seen, skipping what was seen there
    assert params(mocked.calls[1])["sysparm_query"].startswith("sys_updated_on>=2025-03-01 10:00:01^")
    assert params(mocked.calls[1])["sysparm_offset"] == "1"
    assert params(mocked.calls[2])["sysparm_query"].startswith("sys_updated_on>=2025-03-01 10:00:03^")
    assert len(mocked.calls) == 3
    assert adapter.calls == {"GET": 3}


def test_list_changed_record_shape(adapter, mocked) -> None:
    mocked.get(f"{API}/change_request", json={"result": [
        row(7, "2025-03-01 10:00:00", mod="4", correlation_id="RLSE0001001", state="-2")]})

    [record] = adapter.list_changed("change", None, ["state"])

    assert record == SystemRecord(
        system="servicenow", entity="change", id=sid(7), key="CHG0030007",
        updated_at=datetime(2025, 3, 1, 10, tzinfo=UTC), version="4",
        fields=record.fields, url=f"{BASE}/change_request.do?sys_id={sid(7)}",
        correlation="RLSE0001001")
    assert record.fields["state"] == "-2"
    assert params(mocked.calls[0])["sysparm_query"] == "ORDERBYsys_updated_on^ORDERBYsys_id"


def test_list_changed_same_second_pages_move_the_offset(adapter, mocked) -> None:
    same = "2025-03-01 10:00:00"
    for page in ([row(1, same), row(2, same)], [row(3, same), row(4, same)], []):
        mocked.get(f"{API}/incident", json={"result": page})

    records = list(adapter.list_changed("incident", None, []))

    assert len(records) == 4
    assert [params(c)["sysparm_offset"] for c in mocked.calls] == ["0", "2", "4"]
    assert params(mocked.calls[2])["sysparm_query"].startswith(f"sys_updated_on>={same}^")


def test_list_changed_yields_a_record_once_per_version(adapter, mocked) -> None:
    # the second page repeats record 2 (seen at the anchor second) and ends short
    mocked.get(f"{API}/incident", json={"result": [row(1, "2025-03-01 10:00:00"),
                                                   row(2, "2025-03-01 10:00:01")]})
    mocked.get(f"{API}/incident", json={"result": [row(2, "2025-03-01 10:00:01")]})

    assert [r.id for r in adapter.list_changed("incident", None, [])] == [sid(1), sid(2)]


def test_list_changed_links_releases_with_one_query_per_page(adapter, mocked) -> None:
    mocked.get(f"{API}/change_request", json={"result": [row(1, "2025-03-01 10:00:00"),
                                                         row(2, "2025-03-01 10:00:01")]})
    mocked.get(M2M, json={"result": [
        {"sys_id": sid(90), "release": sid(100), "task": sid(1)},
        {"sys_id": sid(91), "release": sid(101), "task": sid(1)},  # newer link wins
    ]})
    mocked.get(f"{API}/change_request", json={"result": [row(3, "2025-03-01 10:00:02")]})
    mocked.get(M2M, json={"result": []})

    records = list(adapter.list_changed("change", None, ["state", "release"]))

    assert [r.fields["release"] for r in records] == [sid(101), "", ""]
    change_calls = [c for c in mocked.calls if path(c).endswith("/change_request")]
    assert "release" not in params(change_calls[0])["sysparm_fields"].split(",")
    link_calls = [c for c in mocked.calls if path(c).endswith("/rm_m2m_release_task")]
    assert len(link_calls) == 2
    assert params(link_calls[0])["sysparm_query"] == (
        f"taskIN{sid(1)},{sid(2)}^ORDERBYsys_created_on^ORDERBYsys_id")
    assert params(link_calls[0])["sysparm_fields"] == "sys_id,release,task"
    assert params(link_calls[1])["sysparm_query"].startswith(f"taskIN{sid(3)}^")


def test_list_changed_without_release_field_skips_link_queries(adapter, mocked) -> None:
    mocked.get(f"{API}/change_request", json={"result": [row(1, "2025-03-01 10:00:00")]})

    [record] = adapter.list_changed("change", None, ["state"])

    assert "release" not in record.fields
    assert len(mocked.calls) == 1


def test_incident_release_follows_caused_by_change(adapter, mocked) -> None:
    mocked.get(f"{API}/incident", json={"result": [
        row(1, "2025-03-01 10:00:00", caused_by=sid(50)),
        row(2, "2025-03-01 10:00:01", caused_by=""),
    ]})
    mocked.get(M2M, json={"result": [{"sys_id": sid(90), "release": sid(100), "task": sid(50)}]})
    mocked.get(f"{API}/incident", json={"result": []})

    records = list(adapter.list_changed("incident", None, ["release"]))

    assert [r.fields["release"] for r in records] == [sid(100), ""]
    assert "caused_by" in params(mocked.calls[0])["sysparm_fields"].split(",")
    assert params(mocked.calls[1])["sysparm_query"].startswith(f"taskIN{sid(50)}^")
    assert len(mocked.calls) == 3  # the empty last page needs no link query


def test_list_changed_unknown_entity(adapter) -> None:
    with pytest.raises(BadInput, match="does not sync 'problem'"):
        list(adapter.list_changed("problem", None, []))


# -- read / find_by_correlation -------------------------------------------------------------


def test_read_is_one_get_plus_one_link_query(adapter, mocked) -> None:
    mocked.get(f"{API}/change_request/{sid(1)}", json={"result": row(1, "2025-03-01 10:00:00")})
    mocked.get(M2M, json={"result": [{"sys_id": sid(90), "release": sid(100), "task": sid(1)}]})

    record = adapter.read("change", sid(1), ["state", "release"])

    assert record is not None and record.fields["release"] == sid(100)
    assert params(mocked.calls[0]) == {
        "sysparm_fields": "sys_id,number,sys_created_on,sys_updated_on,sys_mod_count,correlation_id,state",
        "sysparm_display_value": "false",
        "sysparm_exclude_reference_link": "true",
    }
    assert params(mocked.calls[1])["sysparm_query"].startswith(f"taskIN{sid(1)}^")


def test_read_of_a_missing_record_is_none(adapter, mocked) -> None:
    mocked.get(f"{API}/incident/{sid(1)}", status=404, json={
        "error": {"message": "No Record found", "detail": "Record doesn't exist"},
        "status": "failure"})

    assert adapter.read("incident", sid(1), ["state"]) is None


def test_read_refuses_an_id_that_is_not_a_sys_id(adapter) -> None:
    with pytest.raises(BadInput):
        adapter.read("incident", "../sys_user", [])


def test_find_by_correlation(adapter, mocked) -> None:
    mocked.get(f"{API}/rm_release", json={"result": [row(1, "2025-03-01 10:00:00",
                                                         correlation_id="OPS-V10000")]})

    record = adapter.find_by_correlation("release", "OPS-V10000")

    assert record is not None and record.correlation == "OPS-V10000"
    sent = params(mocked.calls[0])
    assert sent["sysparm_query"] == ("correlation_id=OPS-V10000^ORnumber=OPS-V10000"
                                     "^ORDERBYsys_created_on^ORDERBYsys_id")
    assert sent["sysparm_limit"] == "20"  # case variants come back too; exact ones count
    assert sent["sysparm_fields"] == ""


def test_find_by_correlation_ignores_other_case_variants(adapter, mocked) -> None:
    """The instance matches strings ignoring case; only the exactly tagged record counts."""
    mocked.get(f"{API}/rm_release", json={"result": [
        row(1, "2025-03-01 10:00:00", correlation_id="ops-v1"),
        row(2, "2025-03-01 10:00:05", correlation_id="OPS-V1")]})

    record = adapter.find_by_correlation("release", "OPS-V1")

    assert record is not None and record.id == sid(2)


def test_find_by_field_links_only_a_single_match(adapter, mocked) -> None:
    mocked.get(f"{API}/rm_release", json={"result": [row(1, "2025-03-01 10:00:00", short_description="R 1.0")]})
    mocked.get(f"{API}/rm_release", json={"result": [row(2, "2025-03-01 10:00:00", short_description="Twin"),
                                                     row(3, "2025-03-01 10:00:00", short_description="Twin")]})

    assert adapter.find_by_field("release", "short_description", "R 1.0").id == sid(1)
    assert adapter.find_by_field("release", "short_description", "Twin") is None
    assert params(mocked.calls[0])["sysparm_query"] == (
        "short_description=R 1.0^ORDERBYsys_created_on^ORDERBYsys_id")
    with pytest.raises(BadInput):
        adapter.find_by_field("release", "x^ORactive", "y")


def test_find_by_correlation_none(adapter, mocked) -> None:
    mocked.get(f"{API}/change_request", json={"result": []})

    assert adapter.find_by_correlation("change", "OPS-12") is None
    assert len(mocked.calls) == 1  # nothing found: no link query


def test_find_by_correlation_several_uses_the_oldest(adapter, mocked, caplog) -> None:
    mocked.get(f"{API}/incident", json={"result": [
        row(1, "2025-03-01 10:00:09", caused_by=sid(5), correlation_id="OPS-7"),
        row(2, "2025-03-01 10:00:00", correlation_id="OPS-7")]})
    mocked.get(M2M, json={"result": [{"sys_id": sid(90), "release": sid(100), "task": sid(5)}]})
    caplog.set_level(logging.WARNING)

    record = adapter.find_by_correlation("incident", "OPS-7")

    assert record is not None and record.id == sid(1)
    assert record.fields["release"] == sid(100)  # found records come with their links
    assert "several records tagged OPS-7" in caplog.text


def test_find_by_correlation_refuses_query_syntax(adapter) -> None:
    with pytest.raises(BadInput):
        adapter.find_by_correlation("release", "X^ORsys_id!=0")


# -- create / write / delete -----------------------------------------------------------------


def test_create_tags_and_links_from_the_post_answer(adapter, mocked) -> None:
    created = row(5, "2025-03-01 10:00:00", correlation_id="OPS-12", short_description="Deploy")
    mocked.post(f"{API}/change_request", status=201, json={"result": created})
    mocked.post(M2M, status=201, json={"result": {"sys_id": sid(90), "release": sid(100),
                                                  "task": sid(5)}})

    record = adapter.create("change", {"short_description": "Deploy", "release": sid(100)}, "OPS-12")

    assert body(mocked.calls[0]) == {"short_description": "Deploy", "correlation_id": "OPS-12",
                                     "correlation_display": "relbridge"}
    assert params(mocked.calls[0]) == {"sysparm_display_value": "false",
                                       "sysparm_exclude_reference_link": "true"}
    assert body(mocked.calls[1]) == {"release": sid(100), "task": sid(5)}
    assert record.id == sid(5) and record.fields["release"] == sid(100)
    assert adapter.calls == {"POST": 2}  # the POST answer is the record: no GET


def test_create_without_release_writes_no_link(adapter, mocked) -> None:
    mocked.post(f"{API}/rm_release", status=201, json={"result": row(5, "2025-03-01 10:00:00")})

    record = adapter.create("release", {"short_description": "R1"}, "OPS-V1")

    assert record.key == "CHG0030005"
    assert len(mocked.calls) == 1


def test_write_patches_only_the_given_fields(adapter, mocked) -> None:
    mocked.patch(f"{API}/incident/{sid(3)}",
                 json={"result": row(3, "2025-03-01 10:00:00", mod="8", state="6")})

    record = adapter.write("incident", sid(3), {"state": "6"})

    assert record is not None and record.version == "8"
    assert body(mocked.calls[0]) == {"state": "6"}
    assert mocked.calls[0].request.method == "PATCH"
    assert "sysparm_query" not in params(mocked.calls[0])
    assert adapter.calls == {"PATCH": 1}


def test_write_with_empty_payload_sends_nothing(adapter, mocked) -> None:
    assert adapter.write("change", sid(3), {}) is None
    assert len(mocked.calls) == 0


def test_write_moves_a_change_to_another_release(adapter, mocked) -> None:
    mocked.patch(f"{API}/change_request/{sid(3)}", json={"result": row(3, "2025-03-01 10:00:00")})
    mocked.get(M2M, json={"result": [{"sys_id": sid(90), "release": sid(100), "task": sid(3)}]})
    mocked.post(M2M, status=201, json={"result": {"sys_id": sid(91)}})
    mocked.delete(f"{M2M}/{sid(90)}", status=204)

    record = adapter.write("change", sid(3), {"state": "-1", "release": sid(101)})

    assert body(mocked.calls[0]) == {"state": "-1"}
    assert params(mocked.calls[1])["sysparm_query"].startswith(f"task={sid(3)}^")
    assert body(mocked.calls[2]) == {"release": sid(101), "task": sid(3)}
    assert mocked.calls[3].request.method == "DELETE"
    assert record is not None and record.fields["release"] == sid(101)


def test_write_of_an_unchanged_release_only_looks(adapter, mocked) -> None:
    mocked.get(M2M, json={"result": [{"sys_id": sid(90), "release": sid(100), "task": sid(3)}]})

    assert adapter.write("change", sid(3), {"release": sid(100)}) is None
    assert adapter.calls == {"GET": 1}


def test_write_clearing_the_release_deletes_the_links(adapter, mocked) -> None:
    mocked.get(M2M, json={"result": [{"sys_id": sid(90), "release": sid(100), "task": sid(3)},
                                     {"sys_id": sid(91), "release": sid(101), "task": sid(3)}]})
    mocked.delete(f"{M2M}/{sid(90)}", status=204)
    mocked.delete(f"{M2M}/{sid(91)}", status=204)

    adapter.write("change", sid(3), {"release": ""})

    assert adapter.calls == {"GET": 1, "DELETE": 2}


def test_delete_is_one_call_and_tolerates_gone(adapter, mocked) -> None:
    mocked.delete(f"{API}/incident/{sid(3)}", status=204)
    mocked.delete(f"{API}/incident/{sid(4)}", status=404,
                  json={"error": {"message": "No Record found"}, "status": "failure"})

    adapter.delete("incident", sid(3))
    adapter.delete("incident", sid(4))

    assert adapter.calls == {"DELETE": 2}


# -- errors ----------------------------------------------------------------------------------


def test_429_with_retry_after_is_transient(adapter, mocked) -> None:
    mocked.get(f"{API}/incident", status=429, headers={"Retry-After": "7"},
               json={"error": {"message": "Rate limit exceeded"}, "status": "failure"})

    with pytest.raises(TransientError) as caught:
        list(adapter.list_changed("incident", None, []))

    assert caught.value.retry_after == 7 and caught.value.status == 429
    assert "Rate limit exceeded" in str(caught.value)


def test_retry_after_as_http_date() -> None:
    now = datetime.fromtimestamp(1_700_000_000, UTC)
    later = now + timedelta(seconds=30)
    assert parse_retry_after(http_date(later, usegmt=True), now=now) == 30
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(None) is None


def test_503_is_transient(adapter, mocked) -> None:
    mocked.get(f"{API}/rm_release/{sid(1)}", status=503, body="<html>down</html>")

    with pytest.raises(TransientError) as caught:
        adapter.read("release", sid(1), [])

    assert caught.value.status == 503 and caught.value.retry_after is None


def test_400_is_permanent_with_the_envelope(adapter, mocked) -> None:
    mocked.patch(f"{API}/change_request/{sid(1)}", status=400, json={
        "error": {"message": "Invalid state", "detail": f"state 99 is not allowed ({PASSWORD})"},
        "status": "failure"})

    with pytest.raises(PermanentError) as caught:
        adapter.write("change", sid(1), {"state": "99"})

    text = str(caught.value)
    assert caught.value.status == 400
    assert "Invalid state: state 99 is not allowed" in text
    assert "PATCH /api/now/table/change_request" in text
    assert PASSWORD not in text


def test_connection_error_is_transient_and_counted(mocked) -> None:
    seen: list[tuple[str, str, int]] = []
    adapter = ServiceNowAdapter(BASE, "u", SecretStr(PASSWORD), on_call=lambda *a: seen.append(a))
    mocked.get(f"{API}/incident", body=requests.ConnectionError("Connection refused"))

    with pytest.raises(TransientError, match="cannot connect"):
        list(adapter.list_changed("incident", None, []))

    assert seen == [("servicenow", "GET", 0)]
    assert adapter.calls == {"GET": 1}


def test_timeout_is_transient(adapter, mocked) -> None:
    mocked.get(f"{API}/incident", body=requests.ReadTimeout("slow"))

    with pytest.raises(TransientError, match="timed out"):
        list(adapter.list_changed("incident", None, []))


def test_tls_failure_is_permanent_and_names_the_setting(adapter, mocked) -> None:
    mocked.get(f"{API}/incident", body=requests.exceptions.SSLError("certificate verify failed"))

    with pytest.raises(PermanentError, match=r"verify_tls"):
        list(adapter.list_changed("incident", None, []))


def test_a_page_that_is_not_json_is_transient(adapter, mocked) -> None:
    mocked.get(f"{API}/incident", body="<html>Your instance is hibernating</html>")

    with pytest.raises(TransientError, match="not JSON"):
        list(adapter.list_changed("incident", None, []))


def test_check_auth_names_the_settings_on_401(adapter, mocked) -> None:
    mocked.get(f"{API}/rm_release", status=401, json={
        "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
        "status": "failure"})

    with pytest.raises(PermanentError) as caught:
        adapter.check_auth()

    assert "[servicenow] user/password" in str(caught.value)
    assert caught.value.status == 401
    assert PASSWORD not in str(caught.value)
    assert params(mocked.calls[0])["sysparm_limit"] == "1"
    assert params(mocked.calls[0])["sysparm_fields"] == "sys_id"


def test_check_auth_ok(adapter, mocked) -> None:
    mocked.get(f"{API}/rm_release", json={"result": []})
    adapter.check_auth()
    assert mocked.calls[0].request.headers["Authorization"].startswith("Basic ")


# -- webhooks --------------------------------------------------------------------------------

HOOK = {"table": "change_request", "sys_id": sid(1), "number": "CHG0030001",
        "operation": "update", "sys_updated_on": "2025-03-04 10:11:12", "sys_mod_count": "5"}


def test_webhook_update_and_delete(adapter) -> None:
    assert adapter.parse_webhook({}, HOOK) == [WebhookHint(
        system="servicenow", entity="change", id=sid(1),
        delivery_id=f"change_request:{sid(1)}:5:update", deleted=False)]
    [hint] = adapter.parse_webhook({}, {**HOOK, "table": "incident", "operation": "delete"})
    assert hint.entity == "incident" and hint.deleted


def test_webhook_link_row_hints_its_change(adapter) -> None:
    link = {**HOOK, "table": "rm_m2m_release_task", "sys_id": sid(90), "operation": "insert"}
    assert adapter.parse_webhook({}, {**link, "task": sid(3)}) == [WebhookHint(
        system="servicenow", entity="change", id=sid(3),
        delivery_id=f"rm_m2m_release_task:{sid(90)}:5:insert")]
    [hint] = adapter.parse_webhook({}, {**link, "record": {"task": {"value": sid(4), "link": "x"}}})
    assert hint.id == sid(4) and not hint.deleted
    assert adapter.parse_webhook({}, link) == []  # no task in the body: the poll will see it


def test_webhook_for_another_table_is_ignored(adapter) -> None:
    assert adapter.parse_webhook({}, {**HOOK, "table": "problem"}) == []


@pytest.mark.parametrize("bad", [
    [], "x", {**HOOK, "sys_id": ""}, {**HOOK, "sys_id": "a/b"}, {**HOOK, "operation": "merge"},
    {**HOOK, "sys_mod_count": True}, {k: v for k, v in HOOK.items() if k != "table"},
    {**HOOK, "sys_mod_count": None},
])
def test_malformed_webhook_is_bad_input(adapter, bad) -> None:
    with pytest.raises(BadInput):
        adapter.parse_webhook({}, bad)


# -- metadata --------------------------------------------------------------------------------


def test_metadata_merges_inherited_fields_and_active_choices(mocked) -> None:
    adapter = ServiceNowAdapter(BASE, "u", SecretStr(PASSWORD), page_size=100,
                                objects={"incident": "incident"})
    mocked.get(f"{API}/sys_db_object", json={"result": [
        {"sys_id": sid(1), "name": "incident", "super_class": sid(2)}]})
    mocked.get(f"{API}/sys_db_object", json={"result": [
        {"sys_id": sid(2), "name": "task", "super_class": ""}]})
    mocked.get(f"{API}/sys_dictionary", json={"result": [
        {"name": "task", "element": "", "internal_type": "collection"},
        {"name": "task", "element": "short_description", "internal_type": "string"},
        {"name": "task", "element": "state", "internal_type": "integer"},
        {"name": "incident", "element": "caused_by", "internal_type": "reference"},
    ]})
    mocked.get(f"{API}/sys_choice", json={"result": [
        {"name": "task", "element": "state", "value": "1", "label": "Open", "inactive": "false"},
        {"name": "incident", "element": "state", "value": "1", "label": "New", "inactive": "false"},
        {"name": "incident", "element": "state", "value": "6", "label": "Resolved", "inactive": "false"},
        {"name": "incident", "element": "state", "value": "6", "label": "Gelöst", "inactive": "false"},
        {"name": "incident", "element": "state", "value": "9", "label": "Old", "inactive": "true"},
    ]})

    metadata = adapter.metadata()
    fields = metadata.objects["incident"]

    assert list(metadata.objects) == ["incident"]  # keyed by table, as mappings name objects
    assert set(fields) == {"short_description", "state", "caused_by"}
    assert fields["state"].type == "integer"
    assert fields["state"].choices == ("1", "6")  # the table's own choices win over task's
    assert fields["caused_by"].type == "reference"
    assert params(mocked.calls[0])["sysparm_query"] == "nameINincident^ORDERBYsys_id"
    assert params(mocked.calls[1])["sysparm_query"] == f"sys_idIN{sid(2)}^ORDERBYsys_id"
    assert params(mocked.calls[2])["sysparm_query"] == "nameINincident,task^ORDERBYsys_id"
    assert params(mocked.calls[3])["sysparm_fields"] == "name,element,value,label,inactive"
    assert len(mocked.calls) == 4


def test_metadata_without_access_to_table_inheritance(mocked, caplog) -> None:
    adapter = ServiceNowAdapter(BASE, "u", SecretStr(PASSWORD), objects={"release": "rm_release"})
    mocked.get(f"{API}/sys_db_object", status=403,
               json={"error": {"message": "User Not Authorized"}, "status": "failure"})
    mocked.get(f"{API}/sys_dictionary", json={"result": [
        {"name": "rm_release", "element": "short_description", "internal_type": "string"}]})
    mocked.get(f"{API}/sys_choice", json={"result": []})

    metadata = adapter.metadata()

    assert list(metadata.objects["rm_release"]) == ["short_description"]
    assert "table inheritance" in caplog.text and "WARNING" in caplog.text


# -- counting, configuration, plugin hook ----------------------------------------------------


def test_on_call_sees_every_request_and_may_fail_safely(mocked) -> None:
    seen: list[tuple[str, str, int]] = []

    def on_call(system: str, method: str, status: int) -> None:
        seen.append((system, method, status))
        raise RuntimeError("metrics backend down")

    adapter = ServiceNowAdapter(BASE, "u", SecretStr(PASSWORD), on_call=on_call)
    mocked.get(f"{API}/incident/{sid(1)}", status=404, json={"error": {"message": "No Record"}})
    mocked.post(f"{API}/incident", status=201, json={"result": row(1, "2025-03-01 10:00:00")})

    assert adapter.read("incident", sid(1), []) is None
    adapter.create("incident", {}, "OPS-1")

    assert seen == [("servicenow", "GET", 404), ("servicenow", "POST", 201)]
    assert adapter.calls == {"GET": 1, "POST": 1}


@pytest.mark.parametrize(("url", "expected"), [
    ("http://127.0.0.1:8081", ("127.0.0.1:8081", False)),
    ("https://acme.service-now.com/", ("acme.service-now.com", True)),
    ("https://proxy.example.com/servicenow", ("proxy.example.com/servicenow", True)),
])
def test_split_url(url, expected) -> None:
    assert split_url(url) == expected


@pytest.mark.parametrize("url", ["acme.service-now.com", "ftp://x", "https://u:p@acme.service-now.com"])
def test_bad_urls_are_config_errors(url) -> None:
    with pytest.raises(ConfigError) as caught:
        ServiceNowAdapter(url, "u", SecretStr(PASSWORD))
    assert PASSWORD not in str(caught.value) and ":p@" not in str(caught.value)


def test_plugin_hook_builds_the_adapter_from_config(mocked) -> None:
    config = Config.model_validate({
        "servicenow": {"url": BASE, "user": "svc", "password": PASSWORD, "verify_tls": False,
                       "timeout_seconds": 5},
        "sync": {"page_size": 3},
    })
    [adapter] = relbridge_adapters(config=config)
    mocked.get(f"{API}/rm_release", json={"result": []})

    adapter.check_auth()

    assert adapter.page_size == 3
    assert mocked.calls[0].request.headers["Authorization"] == requests.auth._basic_auth_str(
        "svc", PASSWORD)
    sent = mocked.calls[0].request.req_kwargs
    assert sent["verify"] is False and sent["timeout"] == 5


def test_environment_is_read_once_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxy and CA-bundle variables apply as requests would apply them, without requests
    scanning the environment on every call."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/acme-ca.pem")
    session = ServiceNowAdapter(BASE, "bot", SecretStr("pw"))._api._client.session
    assert session.trust_env is False
    assert session.proxies["https"] == "http://proxy.example.test:3128"
    assert session.verify == "/etc/ssl/acme-ca.pem"

    monkeypatch.setenv("NO_PROXY", "acme.service-now.com")
    bypassed = ServiceNowAdapter(BASE, "bot", SecretStr("pw"), verify_tls=False)._api._client.session
    assert "https" not in bypassed.proxies and bypassed.verify is False


def test_connection_refused_names_the_address_and_the_setting() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = ServiceNowAdapter(f"http://127.0.0.1:{port}", "u", SecretStr(PASSWORD))
    with pytest.raises(TransientError) as info:
        adapter.check_auth()
    assert str(info.value) == (
        f"ServiceNow GET /api/now/table/rm_release: cannot connect to 127.0.0.1:{port} "
        "(Connection refused) — check [servicenow] url")


def test_find_by_key_looks_the_number_up(adapter, mocked) -> None:
    mocked.get(f"{API}/change_request", json={"result": [{
        "sys_id": "c1", "number": "CHG0030001", "sys_updated_on": "2026-01-01 00:00:00",
        "sys_mod_count": "1", "short_description": "Patch"}]})
    found = adapter.find_by_key("change", "CHG0030001", ["short_description"])
    assert found is not None and (found.id, found.key) == ("c1", "CHG0030001")
    query = parse_qs(urlsplit(mocked.calls[0].request.url).query)
    assert query["sysparm_query"] == ["number=CHG0030001"] and query["sysparm_limit"] == ["1"]
    mocked.get(f"{API}/change_request", json={"result": []})
    assert adapter.find_by_key("change", "CHG0039999") is None


def test_field_times_reads_the_audit_history_once(adapter, mocked) -> None:
    mocked.get(f"{API}/sys_audit", json={"result": [
        {"fieldname": "short_description", "sys_created_on": "2025-03-02 10:00:00", "record_checkpoint": "3"},
        {"fieldname": "state", "sys_created_on": "2025-03-01 09:00:00", "record_checkpoint": "0"},
        {"fieldname": "short_description", "sys_created_on": "2025-03-01 08:00:00", "record_checkpoint": "0"}]})

    times = adapter.field_times("change", sid(7), ["short_description", "state", "release"])

    assert times == {"short_description": FieldTime(datetime(2025, 3, 2, 10, tzinfo=UTC), False),
                     "state": FieldTime(datetime(2025, 3, 1, 9, tzinfo=UTC), True)}
    assert len(mocked.calls) == 1
    assert params(mocked.calls[0])["sysparm_query"] == (
        f"tablename=change_request^documentkey={sid(7)}^fieldnameINshort_description,state"
        "^ORDERBYDESCsys_created_on")
    with pytest.raises(BadInput):
        adapter.field_times("change", "../sys_user", ["state"])


def test_time_worked_is_one_query_per_page_of_records(mocked) -> None:
    adapter = ServiceNowAdapter(BASE, "integration", SecretStr(PASSWORD), page_size=2, read_time_worked=True)
    mocked.get(f"{API}/change_request", json={"result": [row(1, "2025-03-01 10:00:00"), row(2, "2025-03-01 10:00:01")]})
    mocked.get(f"{API}/task_time_worked", json={"result": [
        {"sys_id": sid(91), "task": sid(1), "time_in_seconds": "5400", "time_worked": "1970-01-01 01:30:00",
         "sys_created_on": "2025-02-27 09:00:00", "user.user_name": "ada", "task.assignment_group.name": "Network"},
        {"sys_id": sid(92), "task": sid(1), "time_in_seconds": "0", "time_worked": "1970-01-01 00:20:00",
         "sys_created_on": "2025-02-28 09:00:00", "user.user_name": "bob", "task.assignment_group.name": ""},
        {"sys_id": sid(93), "task": sid(1), "time_in_seconds": "60", "sys_created_on": "not a time"}]})
    mocked.get(f"{API}/change_request", json={"result": [row(3, "2025-03-01 10:00:02")]})
    mocked.get(f"{API}/task_time_worked", json={"result": []})

    records = list(adapter.list_changed("change", None, ["short_description"]))

    asked = params(mocked.calls[1])
    assert path(mocked.calls[1]).endswith("/task_time_worked")
    assert asked["sysparm_query"] == f"taskIN{sid(1)},{sid(2)}^ORDERBYsys_created_on^ORDERBYsys_id"
    assert asked["sysparm_fields"] == ("sys_id,task,time_in_seconds,time_worked,sys_created_on,user.user_name,"
                                       "task.assignment_group.name")  # the team: same query, no extra call
    assert [(e.seconds, e.author, e.started, e.group) for e in records[0].worklogs] == [
        (5400, "ada", datetime(2025, 2, 27, 9, tzinfo=UTC), "Network"),
        (1200, "bob", datetime(2025, 2, 28, 9, tzinfo=UTC), None)]  # a task in no group
    assert records[1].worklogs == () and records[2].worklogs == ()  # none logged: the stored ones go
    assert adapter.calls == {"GET": 4}  # two pages, one time query each


def test_time_worked_is_not_read_unless_asked(adapter, mocked) -> None:
    mocked.get(f"{API}/change_request", json={"result": [row(1, "2025-03-01 10:00:00")]})
    [record] = adapter.list_changed("change", None, ["short_description"])
    assert record.worklogs is None and adapter.calls == {"GET": 1}
