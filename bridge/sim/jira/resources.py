"""Issue sub-resources and metadata: comments, worklogs, create/edit metadata, bulk create,
single priorities and resolutions, user search.

Registered ahead of `routes.API` so `/issue/createmeta` and `/issue/bulk` are not taken for
issue keys.
"""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from bridge.sim.jira.base import ApiError, bad_request, json_object
from bridge.sim.jira.catalog import ISSUE_TYPES, PRIORITIES, RESOLUTIONS, User, add_user, all_users
from bridge.sim.jira.render import (
    FIELD_SCHEMAS,
    View,
    comment_json,
    edit_meta,
    field_meta,
    issuetype_json,
    priority_json,
    resolution_json,
    user_json,
    worklog_json,
)
from bridge.sim.jira.routes import RouteTable, expand_set, int_param, no_content, ok, param
from bridge.sim.jira.store import JiraStore

RESOURCES = RouteTable()
api = RESOURCES.route

#: Fields on the create screen of every issue type (`parent` only for sub-tasks).
CREATE_FIELDS = ("summary", "issuetype", "project", "description", "priority", "labels",
                 "fixVersions", "versions", "duedate", "assignee", "reporter",
                 "customfield_10010", "customfield_10011", "customfield_10012")
BULK_LIMIT = 50


# -- comments ---------------------------------------------------------------------------------

@api("/issue/{ref}/comment", "GET")
def comments(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    issue = store.issue_or_404(param(request, "ref"))
    query = request.query_params
    start = int_param(query.get("startAt"), "startAt", 0)
    size = int_param(query.get("maxResults"), "maxResults", 5000)
    rendered = "renderedBody" in expand_set(query.get("expand"))
    ordered = store.sorted_comments(issue, query.get("orderBy", ""))
    page = [comment_json(view, issue, c, rendered) for c in ordered[start:start + size]]
    return ok({"startAt": start, "maxResults": size, "total": len(ordered), "comments": page})


@api("/issue/{ref}/comment", "POST")
def add_comment(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    issue = store.issue_or_404(param(request, "ref"))
    rendered = "renderedBody" in expand_set(request.query_params.get("expand"))
    return ok(comment_json(view, issue, store.add_comment(issue, body), rendered), 201)


@api("/issue/{ref}/comment/{id}", "GET")
def comment(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    issue = store.issue_or_404(param(request, "ref"))
    rendered = "renderedBody" in expand_set(request.query_params.get("expand"))
    return ok(comment_json(view, issue, store.comment_or_404(issue, param(request, "id")),
                           rendered))


@api("/issue/{ref}/comment/{id}", "PUT")
def update_comment(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    issue = store.issue_or_404(param(request, "ref"))
    return ok(comment_json(view, issue, store.update_comment(issue, param(request, "id"), body)))


@api("/issue/{ref}/comment/{id}", "DELETE")
def delete_comment(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    store.delete_comment(store.issue_or_404(param(request, "ref")), param(request, "id"))
    return no_content()


# -- worklogs ---------------------------------------------------------------------------------

@api("/issue/{ref}/worklog", "GET")
def worklogs(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    issue = store.issue_or_404(param(request, "ref"))
    query = request.query_params
    start = int_param(query.get("startAt"), "startAt", 0)
    size = int_param(query.get("maxResults"), "maxResults", 5000)
    page = [worklog_json(view, issue, w) for w in issue.worklogs[start:start + size]]
    return ok({"startAt": start, "maxResults": size, "total": len(issue.worklogs),
               "worklogs": page})


@api("/issue/{ref}/worklog", "POST")
def add_worklog(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    issue = store.issue_or_404(param(request, "ref"))
    return ok(worklog_json(view, issue, store.save_worklog(issue, body)), 201)


@api("/issue/{ref}/worklog/{id}", "GET")
def worklog(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    issue = store.issue_or_404(param(request, "ref"))
    return ok(worklog_json(view, issue, store.worklog_or_404(issue, param(request, "id"))))


@api("/issue/{ref}/worklog/{id}", "PUT")
def update_worklog(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    issue = store.issue_or_404(param(request, "ref"))
    return ok(worklog_json(view, issue, store.save_worklog(issue, body, param(request, "id"))))


@api("/issue/{ref}/worklog/{id}", "DELETE")
def delete_worklog(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    store.delete_worklog(store.issue_or_404(param(request, "ref")), param(request, "id"))
    return no_content()


# -- metadata ---------------------------------------------------------------------------------

def _create_fields(view: View, store: JiraStore, project: Any, issue_type: Any) -> list[dict[str, Any]]:
    names = [*CREATE_FIELDS, "parent"] if issue_type.subtask else list(CREATE_FIELDS)
    versions = [{"self": f"{view.rest}/version/{v.id}", "id": str(v.id), "name": v.name,
                 "archived": v.archived, "released": v.released}
                for v in store.project_versions(project)]
    out = []
    for field_id in names:
        meta = field_meta(view, field_id, field_id in ("summary", "issuetype", "project", "parent"),
                          project=project)
        if field_id in ("fixVersions", "versions"):
            meta["allowedValues"] = versions
        out.append({**meta, "fieldId": field_id})
    return out


def _create_meta_page(view: View, values: list[Any], start: int, size: int,
                      cloud_key: str) -> dict[str, Any]:
    """Cloud pages as `{<cloud_key>: [...], startAt, maxResults, total}`; Server/DC 9 as
    `{values: [...], startAt, maxResults, total, isLast}`."""
    chunk = values[start:start + size]
    if view.flavor == "cloud":
        return {cloud_key: chunk, "startAt": start, "maxResults": size, "total": len(values)}
    return {"values": chunk, "startAt": start, "maxResults": size, "total": len(values),
            "isLast": start + size >= len(values)}


@api("/issue/createmeta/{project}/issuetypes", "GET")
def create_meta_types(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    project = store.project_or_404(param(request, "project"))
    query = request.query_params
    start = int_param(query.get("startAt"), "startAt", 0)
    size = int_param(query.get("maxResults"), "maxResults", 50)
    types = [issuetype_json(view, ISSUE_TYPES[t]) for t in project.issue_type_ids]
    return ok(_create_meta_page(view, types, start, size, "issueTypes"))


@api("/issue/createmeta/{project}/issuetypes/{type}", "GET")
def create_meta_fields(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    project = store.project_or_404(param(request, "project"))
    issue_type = store.catalog.issue_type(param(request, "type"), project)
    if issue_type is None or param(request, "type") != issue_type.id:
        raise ApiError(404, f"Issue type with id '{param(request, 'type')}' does not exist "
                            f"in project {project.key}.")
    query = request.query_params
    start = int_param(query.get("startAt"), "startAt", 0)
    size = int_param(query.get("maxResults"), "maxResults", 50)
    fields = _create_fields(view, store, project, issue_type)
    return ok(_create_meta_page(view, fields, start, size, "fields"))


@api("/issue/createmeta", "GET")
def create_meta_old(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    """The old, project-wide form: deprecated on Cloud (still served), removed in Jira 9."""
    if view.flavor != "cloud":
        raise ApiError(404, "null for uri: /rest/api/2/issue/createmeta")
    query = request.query_params
    keys = {k.upper() for v in query.getlist("projectKeys") for k in v.split(",") if k}
    with_fields = "projects.issuetypes.fields" in expand_set(query.get("expand"))
    projects = []
    for project in store.catalog.projects.values():
        if keys and project.key not in keys:
            continue
        types = []
        for type_id in project.issue_type_ids:
            rendered = issuetype_json(view, ISSUE_TYPES[type_id])
            if with_fields:
                rendered["fields"] = {f["key"]: {k: v for k, v in f.items() if k != "fieldId"}
                                      for f in _create_fields(view, store, project,
                                                              ISSUE_TYPES[type_id])}
            types.append(rendered)
        projects.append({"self": f"{view.rest}/project/{project.id}", "id": str(project.id),
                         "key": project.key, "name": project.name, "issuetypes": types})
    return ok({"expand": "projects", "projects": projects})


@api("/issue/{ref}/editmeta", "GET")
def issue_edit_meta(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    return ok({"fields": edit_meta(view, store.issue_or_404(param(request, "ref")))})


# -- bulk create ------------------------------------------------------------------------------

@api("/issue/bulk", "POST")
def bulk_create(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    """Each item is created on its own; failures come back per item (`failedElementNumber`
    counts from 0). 201 when at least one was created, 400 when none was."""
    updates = json_object(body).get("issueUpdates")
    if not isinstance(updates, list) or not updates:
        raise bad_request(None, "Nothing to create: issueUpdates is empty.")
    if len(updates) > BULK_LIMIT:
        raise bad_request(None, f"At most {BULK_LIMIT} issues can be created at once.")
    created, errors = [], []
    for number, item in enumerate(updates):
        try:
            issue = store.create_issue(view, item)
        except ApiError as exc:
            errors.append({"status": exc.status, "elementErrors": exc.body(),
                           "failedElementNumber": number})
            continue
        created.append({"id": str(issue.id), "key": issue.key,
                        "self": f"{view.rest}/issue/{issue.id}"})
    return ok({"issues": created, "errors": errors}, 201 if created else 400)


# -- single priorities, resolutions; users ----------------------------------------------------

@api("/priority/{id}", "GET")
def priority(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    if param(request, "id") not in PRIORITIES:
        raise ApiError(404, f"The priority with id '{param(request, 'id')}' does not exist.")
    return ok(priority_json(view, param(request, "id")))


@api("/resolution/{id}", "GET")
def resolution(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    if param(request, "id") not in RESOLUTIONS:
        raise ApiError(404, f"The resolution with id '{param(request, 'id')}' does not exist.")
    return ok(resolution_json(view, param(request, "id")))


@api("/user/search", "GET")
def user_search(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    """Cloud: `query` matches the prefix of a display name (or one of its words) or of a
    visible e-mail, case-insensitive; a user who hides the e-mail is found by the full
    address only, and shown without it. Server/DC: `username` matches user name, display
    name or e-mail the same way. Without the parameter, Jira answers 400."""
    query = request.query_params
    text = query.get("query") if view.flavor == "cloud" else query.get("username")
    if not text:
        raise bad_request(None, "The query parameter 'query' is required." if view.flavor == "cloud"
                          else "The username query parameter was not provided")
    text = text.strip().lower()
    start = int_param(query.get("startAt"), "startAt", 0)
    size = int_param(query.get("maxResults"), "maxResults", 50)
    found = [u for u in all_users() if _user_matches(view, u, text)]
    return ok([user_json(view, u) for u in found[start:start + size]])


def _user_matches(view: View, user: User, text: str) -> bool:
    names = [user.display_name.lower(), *user.display_name.lower().split()]
    if view.flavor != "cloud":
        names.append(user.name.lower())
    if view.flavor != "cloud" or user.email_visible:
        names.append(user.email.lower())
    elif text == user.email.lower():
        return True
    return any(word.startswith(text) for word in names)


@api("/user", "POST")
def create_user(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    """Create a user (site admin): `emailAddress` (and on Server/DC `name`) required."""
    body = json_object(body)
    email = body.get("emailAddress")
    name = body.get("name") if view.flavor != "cloud" else None
    if not isinstance(email, str) or "@" not in email:
        raise bad_request({"emailAddress": "You must specify a valid email address."})
    if view.flavor != "cloud" and not (isinstance(name, str) and name):
        raise bad_request({"username": "You must specify a username."})
    name = name or email.split("@")[0].lower()
    if any(u.name == name or u.email.lower() == email.lower() for u in all_users()):
        raise bad_request({"username" if view.flavor != "cloud" else "emailAddress":
                           "A user with that username already exists."})
    digest = hashlib.sha1(email.lower().encode()).hexdigest()
    user = User(name, f"JIRAUSER{int(digest[:6], 16)}", f"5b10{digest[:20]}",
                str(body.get("displayName") or name), email)
    add_user(user)
    return ok(user_json(view, user), 201)


__all__ = ["RESOURCES", "FIELD_SCHEMAS"]
