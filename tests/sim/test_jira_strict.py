"""Jira behaviours relbridge and admins rely on, as real Jira documents them (issue 13),
driven by the real `jira` client library and checked against Atlassian's OpenAPI spec.

Vendor pages: https://developer.atlassian.com/cloud/jira/platform/rest/v2/api-group-issues/
(create issue: "transition ... optional when creating an issue"; bulk create; createmeta;
editmeta), .../api-group-issue-comments/, .../api-group-issue-worklogs/,
.../api-group-issue-priorities/, .../api-group-issue-resolutions/,
.../api-group-user-search/.
"""

from __future__ import annotations

from typing import Any

import jira
import requests

from tests.sim.jira_schemas import assert_issue, assert_schema

AUTH = ("admin", "admin")



def call(client: jira.JIRA, method: str, path: str, expect: int, api: str = "2",
         **kwargs: Any) -> Any:
    """A request through the client's own session (its auth, headers and JSON handling)."""
    response = client._session.request(method, f"{client.server_url}/rest/api/{api}/{path}",
                                       **kwargs) if expect < 400 else \
        requests.request(method, f"{client.server_url}/rest/api/{api}/{path}", auth=AUTH, **kwargs)
    assert response.status_code == expect, response.text
    return response.json() if response.content else None


def new_change(client: jira.JIRA, **extra: Any) -> Any:
    return client.create_issue(fields={"project": {"key": "OPS"}, "issuetype": {"name": "Change"},
                                       "summary": "Strict", **extra})


# -- transition on create ---------------------------------------------------------------------

def test_create_with_a_transition_lands_in_its_target_status(client: jira.JIRA) -> None:
    created = call(client, "POST", "issue", 201, json={
        "fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Change"}, "summary": "T"},
        "transition": {"id": "11"}})
    assert_schema("CreatedIssue", created)
    issue = client.issue(created["key"], expand="changelog")
    assert issue.fields.status.name == "Assess"
    items = [i for h in issue.changelog.histories for i in h.items]
    assert [(i.field, i.fromString, i.toString) for i in items] == [("status", "New", "Assess")]


def test_create_with_a_transition_the_initial_status_lacks_creates_nothing(client: jira.JIRA) -> None:
    before = client.search_issues("project = OPS", maxResults=0, fields="key") if \
        not client._is_cloud else None
    error = call(client, "POST", "issue", 400, json={
        "fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Change"},
                   "summary": "refused"}, "transition": {"id": "31"}})
    assert_schema("ErrorCollection", error)
    assert "Transition id '31' is not valid" in error["errorMessages"][0]
    if before is not None:
        assert client.search_issues("project = OPS", maxResults=0, fields="key").total == before.total


# -- comments ---------------------------------------------------------------------------------

def test_comments_round_trip_and_page(client: jira.JIRA) -> None:
    issue = new_change(client)
    first = client.add_comment(issue.key, "first *comment*")
    second = client.add_comment(issue.key, "second <b>")
    assert [c.id for c in client.comments(issue.key)] == [first.id, second.id]
    page = call(client, "GET", f"issue/{issue.key}/comment", 200,
                params={"orderBy": "-created", "maxResults": 1, "expand": "renderedBody"})
    assert_schema("PageOfComments", page)
    assert (page["total"], page["maxResults"]) == (2, 1)
    assert page["comments"][0]["id"] == second.id
    assert page["comments"][0]["renderedBody"] == "<p>second &lt;b&gt;</p>"
    assert_schema("Comment", call(client, "GET", f"issue/{issue.key}/comment/{first.id}", 200))
    assert_schema("Comment", call(client, "GET", f"issue/{issue.key}/comment/{first.id}", 200,
                                  api="3"))
    first.update(body="edited")
    assert client.comment(issue.key, first.id).body == "edited"
    second.delete()
    assert [c.body for c in client.comments(issue.key)] == ["edited"]
    call(client, "GET", f"issue/{issue.key}/comment/{second.id}", 404)
    call(client, "POST", f"issue/{issue.key}/comment", 400, json={"body": "  "})
    call(client, "GET", f"issue/{issue.key}/comment", 400, params={"orderBy": "author"})


def test_a_comment_over_jiras_limit_is_refused_as_jira_refuses_it(client: jira.JIRA) -> None:
    """32,767 characters, counted as Java counts them: an emoji is two."""
    issue = new_change(client)
    client.add_comment(issue.key, "x" * 32767)
    refused = call(client, "POST", f"issue/{issue.key}/comment", 400, json={"body": "🙂" * 16384})
    assert refused["errors"]["comment"].startswith("The entered text is too long")
    assert len(client.comments(issue.key)) == 1


def test_update_comment_on_edit_is_applied_and_malformed_ones_refused(client: jira.JIRA) -> None:
    issue = new_change(client)
    issue.update(update={"comment": [{"add": {"body": "via edit"}}]})
    comments = client.comments(issue.key)
    assert [c.body for c in comments] == ["via edit"]
    issue.update(update={"comment": [{"edit": {"id": comments[0].id, "body": "changed"}}]})
    assert client.comment(issue.key, comments[0].id).body == "changed"
    for bad in ([{"add": {}}], [{"edit": {"id": "999999", "body": "x"}}], [{"frob": {}}],
                {"add": {"body": "x"}}):
        error = call(client, "PUT", f"issue/{issue.key}", 400, json={"update": {"comment": bad}})
        assert_schema("ErrorCollection", error)
        assert "comment" in error["errors"]
    issue.update(update={"comment": [{"remove": {"id": comments[0].id}}]})
    assert client.comments(issue.key) == []


# -- fields and expand ------------------------------------------------------------------------

def test_requested_fields_are_present_null_when_empty(client: jira.JIRA) -> None:
    issue = new_change(client)
    raw = call(client, "GET", f"issue/{issue.key}", 200,
               params={"fields": "assignee,resolution,duedate,customfield_10010,comment"})
    assert raw["fields"] == {"assignee": None, "resolution": None, "duedate": None,
                             "customfield_10010": None, "comment": raw["fields"]["comment"]}
    assert raw["fields"]["comment"]["total"] == 0
    full = call(client, "GET", f"issue/{issue.key}", 200)
    assert {"reporter", "assignee", "creator", "comment"} <= set(full["fields"])
    assert full["fields"]["reporter"]["displayName"] == "Administrator"
    assert_issue(full)


def test_expand_renders_schema_editmeta_and_rendered_fields(client: jira.JIRA) -> None:
    issue = new_change(client, description="a <b>\n\nb")
    raw = call(client, "GET", f"issue/{issue.key}", 200,
               params={"expand": "editmeta,schema,changelog,renderedFields"})
    assert_issue(raw)
    assert raw["schema"]["summary"] == {"type": "string", "system": "summary"}
    assert raw["renderedFields"]["description"] == "<p>a &lt;b&gt;</p><p>b</p>"
    assert_schema("IssueUpdateMetadata", raw["editmeta"])
    assert raw["editmeta"]["fields"]["comment"]["operations"] == ["add", "edit", "remove"]
    assert "changelog" in raw


def test_assignee_by_the_flavor_s_user_reference(client: jira.JIRA, flavor: str) -> None:
    issue = new_change(client)
    ref = {"accountId": "5b10ac8d82e05b22cc7d4ef5"} if flavor == "cloud" else {"name": "alice"}
    issue.update(fields={"assignee": ref})
    assert client.issue(issue.key).fields.assignee.displayName == "Alice Change-Manager"
    wrong = {"name": "alice"} if flavor == "cloud" else {"accountId": "5b10ac8d82e05b22cc7d4ef5"}
    call(client, "PUT", f"issue/{issue.key}", 400, json={"fields": {"assignee": wrong}})


# -- metadata ---------------------------------------------------------------------------------

def test_create_meta_per_project_and_issue_type(client: jira.JIRA, flavor: str) -> None:
    types = call(client, "GET", "issue/createmeta/OPS/issuetypes", 200)
    listed = types["issueTypes"] if flavor == "cloud" else types["values"]
    assert {t["name"] for t in listed} == {"Task", "Change", "Incident", "Bug", "Sub-task"}
    change = next(t for t in listed if t["name"] == "Change")
    fields = call(client, "GET", f"issue/createmeta/OPS/issuetypes/{change['id']}", 200)
    if flavor == "cloud":
        assert_schema("PageOfCreateMetaIssueTypes", types)
        assert_schema("PageOfCreateMetaIssueTypeWithField", fields)
        entries = fields["fields"]
    else:
        entries = fields["values"]
        for entry in entries:
            assert_schema("FieldCreateMetadata", entry)
    by_id = {f["fieldId"]: f for f in entries}
    assert by_id["summary"]["required"] is True and by_id["labels"]["required"] is False
    assert {v["name"] for v in by_id["priority"]["allowedValues"]} >= {"High", "Low"}
    call(client, "GET", "issue/createmeta/OPS/issuetypes/99999", 404)
    call(client, "GET", "issue/createmeta/NOPE/issuetypes", 404)
    old = call(client, "GET", "issue/createmeta", 200 if flavor == "cloud" else 404,
               params={"projectKeys": "OPS", "expand": "projects.issuetypes.fields"})
    if flavor == "cloud":
        assert_schema("IssueCreateMetadata", old)
        assert "summary" in old["projects"][0]["issuetypes"][0]["fields"]


def test_edit_meta(client: jira.JIRA) -> None:
    issue = new_change(client)
    meta = client.editmeta(issue.key)
    assert_schema("IssueUpdateMetadata", meta)
    assert meta["fields"]["labels"]["operations"] == ["add", "set", "remove"]


# -- bulk create ------------------------------------------------------------------------------

def test_bulk_create_reports_failures_per_item(client: jira.JIRA) -> None:
    good = {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "ok"}}
    bad = {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}}}
    result = call(client, "POST", "issue/bulk", 201, json={"issueUpdates": [good, bad, good]})
    assert_schema("CreatedIssues", result)
    assert len(result["issues"]) == 2
    assert [(e["failedElementNumber"], e["status"]) for e in result["errors"]] == [(1, 400)]
    assert "summary" in result["errors"][0]["elementErrors"]["errors"]
    none = call(client, "POST", "issue/bulk", 400, json={"issueUpdates": [bad]})
    assert_schema("CreatedIssues", none)
    assert not none["issues"]
    made = client.create_issues([{"project": {"key": "OPS"}, "issuetype": {"name": "Bug"},
                                  "summary": "via client"}])
    assert made[0]["status"] == "Success" and made[0]["issue"].fields.issuetype.name == "Bug"


# -- instance resources, users, issue types ---------------------------------------------------

def test_single_priority_and_resolution(client: jira.JIRA) -> None:
    assert client.priority("2").name == "High"
    assert_schema("Priority", call(client, "GET", "priority/2", 200))
    assert client.resolution("10000").name == "Done"
    assert_schema("Resolution", call(client, "GET", "resolution/10000", 200))
    for path in ("priority/77", "resolution/77"):
        assert_schema("ErrorCollection", call(client, "GET", path, 404))


def test_user_search_by_e_mail(client: jira.JIRA, flavor: str) -> None:
    name = "query" if flavor == "cloud" else "username"
    found = call(client, "GET", "user/search", 200, params={name: "alice@example.com"})
    assert [u["displayName"] for u in found] == ["Alice Change-Manager"]
    for user in found:
        assert_schema("User", user)
    assert call(client, "GET", "user/search", 200, params={name: "nobody@example.com"}) == []
    call(client, "GET", "user/search", 400)


def test_sub_task_needs_a_parent(client: jira.JIRA) -> None:
    parent = client.create_issue(fields={"project": {"key": "OPS"}, "issuetype": {"name": "Task"},
                                         "summary": "parent"})
    sub = client.create_issue(fields={"project": {"key": "OPS"}, "issuetype": {"name": "Sub-task"},
                                      "summary": "child", "parent": {"key": parent.key}})
    assert sub.fields.parent.key == parent.key and sub.fields.issuetype.subtask is True
    error = call(client, "POST", "issue", 400, json={"fields": {
        "project": {"key": "OPS"}, "issuetype": {"name": "Sub-task"}, "summary": "orphan"}})
    assert "parent" in error["errors"]


# -- worklogs ---------------------------------------------------------------------------------

def test_worklogs(client: jira.JIRA) -> None:
    issue = new_change(client)
    logged = client.add_worklog(issue.key, timeSpent="1h 30m", comment="deploy window")
    assert logged.timeSpentSeconds == 5400 and logged.timeSpent == "1h 30m"
    page = call(client, "GET", f"issue/{issue.key}/worklog", 200)
    assert_schema("PageOfWorklogs", page)
    assert_schema("Worklog", call(client, "GET", f"issue/{issue.key}/worklog/{logged.id}", 200,
                                  api="3"))
    assert [w.id for w in client.worklogs(issue.key)] == [logged.id]
    call(client, "POST", f"issue/{issue.key}/worklog", 400, json={"timeSpent": "lots"})
    call(client, "DELETE", f"issue/{issue.key}/worklog/{logged.id}", 204)
    assert client.worklogs(issue.key) == []
