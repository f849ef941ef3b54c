"""JQL as Jira evaluates it: AND/OR/NOT with precedence, `~` text search, ORDER BY, and the
default field set of a search, driven through the real `jira` client library.

Vendor pages:
- Keywords and precedence (NOT, AND, OR; parentheses to override):
  https://confluence.atlassian.com/jiracoreserver0818/advanced-searching-keywords-reference-1082267987.html
  and "Precedence in JQL queries" linked from it: `a OR b AND c` is `a OR (b AND c)`,
  `NOT a AND b` is `(NOT a) AND b`. (The Cloud OpenAPI's `CompoundClause` description says
  the opposite for OR/AND; Jira's parser and the JQL guide agree with NOT > AND > OR.)
- Operators (`~` CONTAINS, `!~`, "`field != value` is the same as `NOT field = value`",
  `!=` does not match empty fields):
  https://support.atlassian.com/jira-software-cloud/docs/advanced-search-reference-jql-operators/
- Text search (case-insensitive word match, `"\\"a phrase\\""` for an exact phrase, trailing
  `*`/`?` wildcards, no leading wildcard):
  https://support.atlassian.com/jira-software-cloud/docs/search-syntax-for-text-fields/
- Search `fields` default `*navigable` (comment is not navigable) vs. issue GET's `*all`:
  https://developer.atlassian.com/cloud/jira/platform/rest/v2/api-group-issue-search/
"""

from __future__ import annotations

from typing import Any

import jira
import pytest
import requests

from tests.sim.jira_schemas import assert_issue, assert_schema

AUTH = ("admin", "admin")
TAG = "jqltest"



@pytest.fixture(scope="module")
def issues(client: jira.JIRA) -> dict[int, str]:
    """Four tagged tasks; the numbers are the keys the assertions use."""
    specs: dict[int, dict[str, Any]] = {
        1: {"summary": "Deploy payment gateway", "description": "Rolling restart of the gateway",
            "priority": {"name": "High"}, "labels": [TAG, "jql-red"], "duedate": "2030-01-02"},
        2: {"summary": "Rotate certificates", "priority": {"name": "Low"},
            "labels": [TAG, "jql-blue"]},
        3: {"summary": "Payment deploy rollback", "description": "Roll back the deployment",
            "priority": {"name": "Highest"}, "labels": [TAG, "jql-red", "jql-blue"],
            "duedate": "2030-01-01"},
        4: {"summary": "Database vacuum", "description": "Weekly maintenance",
            "priority": {"name": "Medium"}, "labels": [TAG], "duedate": "2030-01-03"},
    }
    keys: dict[int, str] = {}
    for number, fields in specs.items():
        issue = client.create_issue(fields={"project": {"key": "OPS"},
                                            "issuetype": {"name": "Task"}, **fields})
        keys[number] = issue.key
    client.add_comment(keys[4], "Payment window agreed with the CAB")
    done = next(t["id"] for t in client.transitions(keys[2]) if t["name"] == "Done")
    client.transition_issue(keys[2], done)
    return keys


def found(client: jira.JIRA, issues: dict[int, str], jql: str) -> list[int]:
    """The numbers of the tagged issues `jql` finds, in the order Jira returns them."""
    number = {key: n for n, key in issues.items()}
    return [number[i.key] for i in client.search_issues(jql, maxResults=50, fields="summary")
            if i.key in number]


@pytest.mark.parametrize(("jql", "expected"), [
    # NOT > AND > OR: `red OR blue AND Low` is `red OR (blue AND Low)`, not `(red OR blue) AND Low`
    ("labels = jql-red OR labels = jql-blue AND priority = Low", {1, 2, 3}),
    ("(labels = jql-red OR labels = jql-blue) AND priority = Low", {2}),
    ("labels = jql-blue AND priority = Low OR labels = jql-red", {1, 2, 3}),
    ("NOT labels = jql-red AND labels = jql-blue", {2}),
    ("NOT (labels = jql-red AND labels = jql-blue) AND labels = jqltest", {1, 2, 4}),
    ("NOT (labels = jql-red OR labels = jql-blue) AND labels = jqltest", {4}),
    ("labels = jqltest AND NOT NOT labels = jql-red", {1, 3}),
    ("labels = jqltest AND NOT priority in (High, Highest)", {2, 4}),
    ("labels = jqltest AND NOT status = Done", {1, 3, 4}),
    ("labels = jqltest AND (priority = Low OR (labels = jql-red AND NOT priority = High))",
     {2, 3}),
    # `~`: whole words, any case, all words in any order; phrases; trailing wildcards
    ("labels = jqltest AND summary ~ payment", {1, 3}),
    ("labels = jqltest AND summary ~ PAYMENT", {1, 3}),
    ("labels = jqltest AND summary ~ pay", set()),
    ("labels = jqltest AND summary ~ 'pay*'", {1, 3}),
    ("labels = jqltest AND summary ~ 'deploy payment'", {1, 3}),
    ('labels = jqltest AND summary ~ "\\"deploy payment\\""', {1}),
    ("labels = jqltest AND description ~ 'roll*'", {1, 3}),
    ("labels = jqltest AND description is EMPTY", {2}),
    ("labels = jqltest AND comment ~ window", {4}),
    ("labels = jqltest AND text ~ payment", {1, 3, 4}),
    ("labels = jqltest AND summary !~ payment", {2, 4}),
    ("labels = jqltest AND NOT summary ~ payment", {2, 4}),
    ("labels = jqltest AND description !~ gateway", {3, 4}),
])
def test_boolean_logic_and_text_search(client: jira.JIRA, issues: dict[int, str], jql: str,
                                       expected: set[int]) -> None:
    assert set(found(client, issues, jql)) == expected, jql


@pytest.mark.parametrize(("order", "expected"), [
    ("priority DESC", [3, 1, 4, 2]),
    ("priority ASC", [2, 4, 1, 3]),
    ("summary", [4, 1, 3, 2]),
    ("summary DESC", [2, 3, 1, 4]),
    ("duedate ASC", [3, 1, 4, 2]),  # no due date: last ascending ...
    ("duedate DESC", [2, 4, 1, 3]),  # ... first descending
    ("status ASC, priority DESC", [3, 1, 4, 2]),  # To Do before Done
    ("status DESC, key ASC", [2, 1, 3, 4]),
    ("key DESC", [4, 3, 2, 1]),
    ("created ASC", [1, 2, 3, 4]),
])
def test_order_by_common_fields(client: jira.JIRA, issues: dict[int, str], order: str,
                                expected: list[int]) -> None:
    assert found(client, issues, f"labels = jqltest ORDER BY {order}") == expected, order


@pytest.mark.parametrize(("jql", "message"), [
    ("labels = jqltest OR", "Expecting a field name but got 'the end'"),
    ("labels = jqltest AND NOT", "Expecting a field name"),
    ("(labels = jqltest OR labels = x", "Expecting ')'"),
    ("labels = jqltest AND summary = x", "The operator '=' is not supported by the 'summary'"),
    ("labels ~ x", "The operator '~' is not supported by the 'labels' field."),
    ("summary ~ '*ment'", "is not allowed to start with '*'"),
    ("labels = jqltest ORDER BY assignee", "Ordering by 'assignee' is not supported"),
    ("labels = jqltest ORDER BY priority SIDEWAYS", "Expecting either 'OR' or 'AND'"),
    ("priority = Urgent", "The value 'Urgent' does not exist for the field 'priority'."),
    ("labels = jqltest OR project = NOPE", "The value 'NOPE' does not exist"),
])
def test_malformed_or_unsupported_jql_is_a_400_in_jiras_shape(client: jira.JIRA, flavor: str,
                                                                jql: str, message: str) -> None:
    path = "search/jql" if flavor == "cloud" else "search"
    response = requests.get(f"{client.server_url}/rest/api/2/{path}", auth=AUTH,
                            params={"jql": jql})
    assert response.status_code == 400, response.text
    body = response.json()
    assert_schema("ErrorCollection", body)
    assert body["errors"] == {} and len(body["errorMessages"]) == 1
    assert message in body["errorMessages"][0], body["errorMessages"][0]
    with pytest.raises(jira.JIRAError) as error:
        client.search_issues(jql)
    assert error.value.status_code == 400


def test_search_defaults_to_navigable_fields_without_comments(client: jira.JIRA, flavor: str,
                                                               issues: dict[int, str]) -> None:
    """Search's default field set is `*navigable` (no `comment`); issue GET's is `*all`."""
    key = issues[4]
    rest = f"{client.server_url}/rest/api/2"
    if flavor == "server":
        page = requests.get(f"{rest}/search", auth=AUTH,
                            params={"jql": f"key = {key}"}).json()
        assert_schema("SearchResults", page)
        listed = page["issues"][0]
    else:  # /search/jql returns ids only by default; ask for *navigable explicitly
        page = requests.get(f"{rest}/search/jql", auth=AUTH,
                            params={"jql": f"key = {key}", "fields": "*navigable"}).json()
        assert_schema("SearchAndReconcileResults", page)
        listed = page["issues"][0]
    assert "comment" not in listed["fields"]
    assert {"summary", "status", "priority", "reporter", "duedate"} <= set(listed["fields"])
    assert_issue(listed)
    everything = requests.get(f"{rest}/search{'/jql' if flavor == 'cloud' else ''}", auth=AUTH,
                              params={"jql": f"key = {key}", "fields": "*all"}).json()
    assert everything["issues"][0]["fields"]["comment"]["total"] == 1
    navigable_plus = requests.get(f"{rest}/search{'/jql' if flavor == 'cloud' else ''}",
                                  auth=AUTH, params={"jql": f"key = {key}",
                                                     "fields": "*navigable,comment"}).json()
    assert navigable_plus["issues"][0]["fields"]["comment"]["total"] == 1
    fetched = client.issue(key)
    assert len(fetched.fields.comment.comments) == 1
