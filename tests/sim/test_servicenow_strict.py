"""The ServiceNow simulator is as strict as a real instance, proved through two independent
clients (pysnow and pysnc) and plain HTTP.

Each test cites the vendor page that documents the behaviour it checks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pysnc
import pysnow
import pytest
import requests

from bridge.sim import Simulators

AUTH = ("admin", "admin")
TABLE_API = "https://www.servicenow.com/docs/r/yokohama/api-reference/rest-apis/c_TableAPI.html"


def snow(url: str) -> pysnow.Client:
    return pysnow.Client(host=url.split("//", 1)[1], user="admin", password="admin",
                         use_ssl=False)


def snc(url: str) -> pysnc.ServiceNowClient:
    """pysnc accepts only https instance URLs; the simulator serves plain HTTP on loopback,
    so the client is built for https and pointed at the simulator's address afterwards."""
    client = pysnc.ServiceNowClient(url.replace("http://", "https://"), AUTH, auto_retry=False)
    client._ServiceNowClient__instance = url  # name-mangled attribute pysnc builds URLs from
    return client


def post(url: str, table: str, **values: object) -> requests.Response:
    return requests.post(f"{url}/api/now/table/{table}", json=values, auth=AUTH, timeout=10)


def get(url: str, table: str, **params: str) -> requests.Response:
    return requests.get(f"{url}/api/now/table/{table}", params=params, auth=AUTH, timeout=10)


# -- only tables that exist ------------------------------------------------------------------


def test_insert_into_a_table_that_does_not_exist_is_refused(servicenow_url: str) -> None:
    """Table API POST /now/table/{tableName} inserts into an *existing* table ("The Table API
    provides endpoints that allow you to perform CRUD operations on existing tables", TABLE_API);
    an unknown table answers 400 "Invalid table" in the failure envelope and creates nothing."""
    response = post(servicenow_url, "u_release_note", u_text="hello")
    assert response.status_code == 400
    assert response.json() == {"error": {"message": "Invalid table u_release_note", "detail": ""},
                               "status": "failure"}
    assert get(servicenow_url, "u_release_note").status_code == 400
    with pytest.raises(requests.exceptions.HTTPError, match="400"):
        snow(servicenow_url).resource(api_path="/table/u_release_note").create({"u_text": "x"}).one()
    names = [r["name"] for r in get(servicenow_url, "sys_db_object",
                                    sysparm_query="nameSTARTSWITHu_").json()["result"]]
    assert names == []


def test_sys_db_object_describes_table_inheritance(servicenow_url: str) -> None:
    """`sys_db_object` holds one row per table with `super_class` referencing the parent's row
    (https://www.servicenow.com/community/itsm-forum/api-to-get-display-name-of-all-tables-in-sys-dictionary/m-p/783730:
    "do a GET call on the sys_db_object table"); rm_release -> planned_task -> task."""
    client = snc(servicenow_url)
    gr = client.GlideRecord("sys_db_object")
    gr.add_query("name", "IN", "rm_release,planned_task,task,change_request,rm_task,"
                 "rm_release_phase,task_time_worked,sys_journal_field,sys_user")
    gr.query()
    rows = {r.get_value("name"): r.get_value("super_class") for r in gr}
    by_id = {}
    gr2 = client.GlideRecord("sys_db_object")
    gr2.query()
    for r in gr2:
        by_id[r.get_value("sys_id")] = r.get_value("name")
    assert by_id[rows["rm_release"]] == "planned_task"
    assert by_id[rows["planned_task"]] == "task"
    assert by_id[rows["change_request"]] == "task"
    assert by_id[rows["rm_task"]] == "planned_task"
    assert rows["task"] == "" and rows["sys_user"] == ""
    assert set(rows) >= {"rm_release_phase", "task_time_worked", "sys_journal_field"}


def test_a_parent_table_lists_its_children_records(servicenow_url: str) -> None:
    """Reading `task` returns the records of the tables extending it, each with its own
    `sys_class_name` (table-per-hierarchy, TABLE_API GET /now/table/{tableName})."""
    change = post(servicenow_url, "change_request", short_description="c").json()["result"]
    incident = post(servicenow_url, "incident", short_description="i").json()["result"]
    rows = get(servicenow_url, "task", sysparm_fields="sys_id,sys_class_name").json()["result"]
    assert {(r["sys_id"], r["sys_class_name"]) for r in rows} == {
        (change["sys_id"], "change_request"), (incident["sys_id"], "incident")}


# -- case-insensitive equality --------------------------------------------------------------------


def test_string_equality_in_encoded_queries_ignores_case(servicenow_url: str) -> None:
    """Encoded query `=` compares strings case-insensitively on a real instance (the database
    collation; https://servicenow.github.io/sdk/guides/encoded-query-guide "= equals"):
    `correlation_id=ABC-CASE` matches `abc-case`, also through `IN` and `!=`."""
    made = post(servicenow_url, "change_request", correlation_id="abc-case").json()["result"]
    resource = snow(servicenow_url).resource(api_path="/table/change_request")
    found = resource.get(query="correlation_id=ABC-CASE").all()
    assert [r["sys_id"] for r in found] == [made["sys_id"]]
    assert len(resource.get(query="correlation_idINX,Abc-Case").all()) == 1
    assert resource.get(query="correlation_id!=ABC-CASE").all() == []
    gr = snc(servicenow_url).GlideRecord("change_request")
    gr.add_query("correlation_id", "ABC-case")
    gr.query()
    assert [r.get_value("sys_id") for r in gr] == [made["sys_id"]]


# -- client sys_id kept ----------------------------------------------------------------------------


def test_a_client_supplied_sys_id_is_kept(servicenow_url: str) -> None:
    """A valid 32-hex `sys_id` in the POST body is the new record's sys_id (TABLE_API, POST
    /now/table/{tableName}: request body fields are the record's fields)."""
    wanted = "0123456789abcdef0123456789abcdef"
    created = snow(servicenow_url).resource(api_path="/table/incident").create(
        {"sys_id": wanted, "short_description": "kept"}).one()
    assert created["sys_id"] == wanted
    gr = snc(servicenow_url).GlideRecord("incident")
    assert gr.get(wanted) and gr.get_value("short_description") == "kept"
    again = post(servicenow_url, "incident", sys_id=wanted).json()["result"]
    assert again["sys_id"] != wanted  # a taken sys_id is not reused


# -- display values in the user's time zone ------------------------------------------------------


def test_display_values_use_the_session_users_time_zone_and_format(servicenow_url: str) -> None:
    """`sysparm_display_value=true|all` returns display values, which for date/time fields are
    in the session user's time zone and date format (TABLE_API, sysparm_display_value; the
    user's `sys_user.time_zone` / `date_format`); stored values stay UTC."""
    stored = "2030-07-01 12:00:00"
    made = post(servicenow_url, "change_request", start_date=stored).json()["result"]
    local = datetime(2030, 7, 1, 12, tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))
    expected = local.strftime("%m/%d/%Y %H:%M:%S")  # the admin user: New York, MM/dd/yyyy
    raw = get(servicenow_url, f"change_request/{made['sys_id']}", sysparm_fields="start_date")
    assert raw.json()["result"]["start_date"] == stored
    shown = get(servicenow_url, f"change_request/{made['sys_id']}", sysparm_fields="start_date",
                sysparm_display_value="true").json()["result"]
    assert shown["start_date"] == expected == "07/01/2030 08:00:00"
    both = get(servicenow_url, f"change_request/{made['sys_id']}", sysparm_fields="start_date",
               sysparm_display_value="all").json()["result"]
    assert both["start_date"] == {"display_value": expected, "value": stored}
    gr = snc(servicenow_url).GlideRecord("change_request")
    assert gr.get(made["sys_id"])
    assert gr.get_value("start_date") == stored
    assert gr.get_display_value("start_date") == expected


def test_the_time_zone_is_the_users_own(sims: Simulators) -> None:
    """Changing `sys_user.time_zone` changes the display (TABLE_API; the zone is per user)."""
    url = sims.servicenow_url
    admin = get(url, "sys_user", sysparm_query="user_name=admin").json()["result"][0]
    assert admin["time_zone"] == "America/New_York"
    requests.patch(f"{url}/api/now/table/sys_user/{admin['sys_id']}", auth=AUTH, timeout=10,
                   json={"time_zone": "Asia/Tokyo", "date_format": "dd.MM.yyyy"})
    made = post(url, "change_request", start_date="2030-07-01 12:00:00").json()["result"]
    shown = get(url, f"change_request/{made['sys_id']}", sysparm_fields="start_date",
                sysparm_display_value="true").json()["result"]
    assert shown["start_date"] == "01.07.2030 21:00:00"


def test_date_generate_literals_are_read_in_the_users_time_zone(servicenow_url: str) -> None:
    """`javascript:gs.dateGenerate('2030-07-01','08:00:00')` is a wall-clock time in the
    session user's zone (encoded query strings,
    https://www.servicenow.com/docs/r/washingtondc/platform-user-interface/c_EncodedQueryStrings.html):
    08:00 New York is 12:00 UTC."""
    made = post(servicenow_url, "change_request", start_date="2030-07-01 12:00:00").json()["result"]
    at = "start_date=javascript:gs.dateGenerate('2030-07-01','08:00:00')"
    assert [r["sys_id"] for r in get(servicenow_url, "change_request",
                                     sysparm_query=at).json()["result"]] == [made["sys_id"]]
    utc_read = "start_date=javascript:gs.dateGenerate('2030-07-01','12:00:00')"
    assert get(servicenow_url, "change_request", sysparm_query=utc_read).json()["result"] == []


# -- over-long URLs ------------------------------------------------------------------------


def test_an_over_long_url_is_refused_with_an_html_page(servicenow_url: str) -> None:
    """A request line past the instance's limit is refused by its Tomcat front with
    "400 Request header is too large" and an HTML page
    (https://support.servicenow.com/kb?id=kb_article_view&sysparm_article=KB0826932)."""
    ids = ",".join(f"{n:032x}" for n in range(1100))  # ~36 KB, as the example
    response = get(servicenow_url, "change_request", sysparm_query=f"sys_idIN{ids}")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "Request header is too large" in response.text
    with pytest.raises(requests.exceptions.HTTPError, match="400"):
        snow(servicenow_url).resource(api_path="/table/change_request").get(
            query=f"sys_idIN{ids}").all()


def test_link_headers_never_repeat_a_long_query(servicenow_url: str) -> None:
    """`Link` carries first/prev/next/last (TABLE_API, response headers); with a long (but
    accepted) query it keeps to `next`, so no header line passes 16 KB."""
    for n in range(3):
        post(servicenow_url, "change_request", short_description=f"c{n}")
    ids = ",".join(f"{n:032x}" for n in range(400))  # ~13 KB
    response = get(servicenow_url, "change_request", sysparm_query=f"sys_idNOT IN{ids}",
                   sysparm_limit="1")
    assert response.status_code == 200
    assert len(response.headers["Link"]) < 16 * 1024 + 200
    assert response.headers["Link"].endswith('rel="next"')
    short = get(servicenow_url, "change_request", sysparm_limit="1")
    assert short.headers["Link"].count("rel=") == 4


# -- journal fields -----------------------------------------------------------------------------


def test_journal_fields_write_sys_journal_field_rows(servicenow_url: str) -> None:
    """Journal fields store no data on the record: each entry is a row in
    `sys_journal_field` (name, element_id, element, value, sys_created_on/by); the field's
    display value shows the entries (journal field type,
    https://www.servicenow.com/docs/r/washingtondc/platform-administration/c_JournalFields.html)."""
    resource = snow(servicenow_url).resource(api_path="/table/incident")
    made = resource.create({"short_description": "x", "work_notes": "first note"}).one()
    assert made["work_notes"] == ""
    resource.update(query={"sys_id": made["sys_id"]}, payload={"work_notes": "second note",
                                                                 "comments": "to the caller"})
    rows = get(servicenow_url, "sys_journal_field",
               sysparm_query=f"element_id={made['sys_id']}^ORDERBYsys_created_on").json()["result"]
    assert [(r["name"], r["element"], r["value"], r["sys_created_by"]) for r in rows] == [
        ("incident", "work_notes", "first note", "admin"),
        ("incident", "work_notes", "second note", "admin"),
        ("incident", "comments", "to the caller", "admin"),
    ]
    assert all(r["sys_created_on"] for r in rows)
    record = get(servicenow_url, f"incident/{made['sys_id']}",
                 sysparm_fields="work_notes,sys_mod_count").json()["result"]
    assert record == {"work_notes": "", "sys_mod_count": "1"}
    shown = get(servicenow_url, f"incident/{made['sys_id']}", sysparm_fields="work_notes",
                sysparm_display_value="true").json()["result"]["work_notes"]
    assert "System Administrator (Work notes)\nsecond note" in shown
    assert shown.index("second note") < shown.index("first note")  # newest first


def test_time_worked_users_and_release_tables_exist(servicenow_url: str) -> None:
    """`task_time_worked`, `sys_user` (with `email`), `rm_release_phase`, `rm_task` can be
    written and read (TABLE_API), as on an instance with release management."""
    release = post(servicenow_url, "rm_release", short_description="R").json()["result"]
    phase = post(servicenow_url, "rm_release_phase", short_description="Build",
                 release=release["sys_id"]).json()["result"]
    task = post(servicenow_url, "rm_task", short_description="Package", release=release["sys_id"],
                phase=phase["sys_id"]).json()["result"]
    assert phase["number"].startswith("RPHS") and task["number"].startswith("RTSK")
    worked = post(servicenow_url, "task_time_worked", task=task["sys_id"],
                  time_worked="1970-01-01 01:30:00", time_in_seconds=5400)
    assert worked.status_code == 201
    user = post(servicenow_url, "sys_user", user_name="ann", email="ann@example.com").json()
    assert user["result"]["email"] == "ann@example.com"
    gr = snc(servicenow_url).GlideRecord("sys_user")
    gr.add_query("email", "ANN@example.com")
    gr.query()
    assert [r.get_value("user_name") for r in gr] == ["ann"]


def test_audit_rows_still_follow_writes(servicenow_url: str) -> None:
    """Audited tables keep writing `sys_audit` rows on insert and update."""
    made = post(servicenow_url, "change_request", short_description="a").json()["result"]
    rows = get(servicenow_url, "sys_audit",
               sysparm_query=f"documentkey={made['sys_id']}").json()["result"]
    assert [(r["fieldname"], r["newvalue"]) for r in rows] == [("short_description", "a")]


# -- schema of the newer tables, datetime input as display values ----------------------------


@pytest.mark.parametrize(("table", "column", "internal_type", "reference"), [
    ("rm_release_phase", "release", "reference", "rm_release"),
    ("rm_release_phase", "state", "integer", ""),
    ("rm_task", "phase", "reference", "rm_release_phase"),
    ("rm_task", "release", "reference", "rm_release"),
    ("rm_task", "end_date", "glide_date_time", ""),
    ("task_time_worked", "task", "reference", "task"),
    ("task_time_worked", "user", "reference", "sys_user"),
    ("task_time_worked", "time_worked", "glide_duration", ""),
    ("task_time_worked", "time_in_seconds", "integer", ""),
    ("sys_journal_field", "element_id", "GUID", ""),
    ("sys_journal_field", "element", "string", ""),
    ("sys_journal_field", "value", "string", ""),
])
def test_dictionary_describes_the_newer_tables(servicenow_url: str, table: str, column: str,
                                               internal_type: str, reference: str) -> None:
    """Every table has `sys_dictionary` rows, one per column with its `internal_type` and,
    for a reference, its target table (Data dictionary tables:
    https://www.servicenow.com/docs/r/yokohama/platform-administration/c_DataDictionaryTables.html),
    read here through pysnow as a client discovering the schema would."""
    rows = snow(servicenow_url).resource(api_path="/table/sys_dictionary").get(
        query=f"name={table}^element={column}").all()
    assert [(r["internal_type"], r["reference"]) for r in rows] == [(internal_type, reference)]
    collection = get(servicenow_url, "sys_dictionary",
                     sysparm_query=f"name={table}^internal_type=collection").json()["result"]
    assert len(collection) == 1


@pytest.mark.parametrize("table", ["rm_release_phase", "rm_task"])
def test_choices_of_the_release_planning_tables(servicenow_url: str, table: str) -> None:
    """`sys_choice` lists each choice column's values and labels in order (planned_task's
    states: Pending, Open, Work in Progress, Closed Complete/Incomplete/Skipped;
    Choice lists: https://www.servicenow.com/docs/r/yokohama/platform-administration/c_ChoiceLists.html)."""
    gr = snc(servicenow_url).GlideRecord("sys_choice")
    gr.add_query("name", table)
    gr.add_query("element", "state")
    gr.order_by("sequence")
    gr.query()
    assert [(r.get_value("value"), r.get_value("label")) for r in gr] == [
        ("-5", "Pending"), ("1", "Open"), ("2", "Work in Progress"), ("3", "Closed Complete"),
        ("4", "Closed Incomplete"), ("7", "Closed Skipped")]
    priorities = get(servicenow_url, "sys_choice",
                     sysparm_query=f"name={table}^element=priority").json()["result"]
    assert len(priorities) == 5


def test_input_display_value_reads_datetimes_in_the_users_zone_and_format(
        servicenow_url: str) -> None:
    """`sysparm_input_display_value=true`: "set field values using their display value",
    which for a date/time is the session user's format and time zone (TABLE_API). The admin
    user is America/New_York with `MM/dd/yyyy`, so 08:00 on 07/01/2030 there is 12:00 UTC."""
    client = snow(servicenow_url)
    changes = client.resource(api_path="/table/change_request")
    changes.parameters.add_custom({"sysparm_input_display_value": "true"})
    made = changes.create({"start_date": "07/01/2030 08:00:00",
                           "end_date": "2030-07-01 09:30:00",  # internal format, still local
                           "state": "Assess"}).one()
    stored = get(servicenow_url, f"change_request/{made['sys_id']}",
                 sysparm_fields="start_date,end_date,state").json()["result"]
    assert stored == {"start_date": "2030-07-01 12:00:00", "end_date": "2030-07-01 13:30:00",
                      "state": "-4"}
    response = requests.patch(
        f"{servicenow_url}/api/now/table/change_request/{made['sys_id']}", auth=AUTH,
        timeout=10, params={"sysparm_input_display_value": "true"},
        json={"start_date": "12/24/2030 18:00:00", "end_date": "not a date"})
    assert response.status_code == 200
    stored = get(servicenow_url, f"change_request/{made['sys_id']}",
                 sysparm_fields="start_date,end_date").json()["result"]
    # winter: New York is UTC-5; an unreadable value leaves the field as it was
    assert stored == {"start_date": "2030-12-24 23:00:00", "end_date": "2030-07-01 13:30:00"}
    plain = post(servicenow_url, "change_request", start_date="2030-07-01 08:00:00")
    assert plain.json()["result"]["start_date"] == "2030-07-01 08:00:00"  # without: UTC as is
