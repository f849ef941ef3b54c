"""The Jira REST endpoints: parameters in, `JiraStore` call, Jira's JSON out.

Each handler is a plain function `(store, view, request, body) -> Response` run under the
store lock; `jira.py` adds authentication, JSON body parsing and the error envelope, and
mounts every API route under `/rest/api/2`, `/rest/api/3` and `/rest/api/latest`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bridge.sim.jira.base import ApiError, bad_request
from bridge.sim.jira.catalog import (
    FIELDS,
    ISSUE_TYPES,
    LINK_TYPES,
    NAVIGABLE_FIELD_IDS,
    PRIORITIES,
    PROJECTS,
    RESOLUTIONS,
    STATUSES,
)
from bridge.sim.jira.render import (
    ALL_FIELD_IDS,
    FIELD_NAMES,
    View,
    field_json,
    issuetype_json,
    jira_timestamp,
    link_type_json,
    priority_json,
    project_json,
    resolution_json,
    status_json,
    transition_json,
    user_json,
)
from bridge.sim.jira.store import JiraStore

Handler = Callable[[JiraStore, View, Request, Any], Response]


class RouteTable:
    """Endpoints collected by decorator: `(path, methods, handler)` in declaration order."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, list[str], Handler]] = []

    def route(self, path: str, *methods: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.routes.append((path, list(methods), handler))
            return handler
        return register


#: Routes under `/rest/api/{2,3,latest}`.
API = RouteTable()
api = API.route

SERVER_INFO = {
    "cloud": {"version": "1001.0.0-SNAPSHOT", "versionNumbers": [1001, 0, 0],
              "deploymentType": "Cloud", "buildNumber": 100270,
              "scmInfo": "8a6b3c9b3b4e5b0d4a3a0f1c2d3e4f5a6b7c8d9e"},
    "server": {"version": "9.12.15", "versionNumbers": [9, 12, 15],
               "deploymentType": "Server", "buildNumber": 9120015,
               "scmInfo": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"},
}


def ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status, headers=headers)


def no_content() -> Response:
    return Response(status_code=204)


def param(request: Request, name: str) -> str:
    return request.path_params[name]


def int_param(value: Any, name: str, default: int, minimum: int = 0) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise bad_request(None, f"The '{name}' parameter must be a number.") from None
    if number < minimum:
        raise bad_request(None, f"The '{name}' parameter must be at least {minimum}.")
    return number


def split_list(values: Any) -> list[str]:
    """A Jira list parameter: repeated and/or comma-separated, as query or JSON list."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        raise bad_request(None, "List parameters must be strings or lists of strings.")
    return [part.strip() for value in values for part in str(value).split(",") if part.strip()]


def wanted_fields(requested: list[str], default: str) -> tuple[str, ...] | None:
    """Field ids to render (Jira's order); None means every field.

    `*all` is every field; `*navigable` leaves out the non-navigable ones (`comment`), which
    is why a search (default `*navigable`) carries no comments while an issue GET (default
    `*all`) does.
    """
    tokens = requested or [default]
    include: set[str] = set()
    exclude: set[str] = set()
    everything = False
    for token in tokens:
        if token == "*all":
            everything = True
        elif token == "*navigable":
            include |= NAVIGABLE_FIELD_IDS
        elif token.startswith("-"):
            exclude.add(token[1:])
        elif token in FIELD_NAMES:
            include.add(token)
    if everything and not exclude:
        return None
    chosen = set(ALL_FIELD_IDS) if everything else include
    return tuple(f for f in ALL_FIELD_IDS if f in chosen and f not in exclude)


def expand_set(value: Any) -> frozenset[str]:
    return frozenset(split_list(value))


# -- instance ---------------------------------------------------------------------------------

@api("/serverInfo", "GET")
def server_info(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    now = datetime.now(UTC)
    return ok({"baseUrl": view.base, "displayUrl": view.base, **SERVER_INFO[view.flavor],
               "buildDate": "2025-06-02T00:00:00.000+0000",
               "serverTime": jira_timestamp(now), "serverTitle": "Jira",
               "serverTimeZone": "Etc/UTC"})


@api("/myself", "GET")
def myself(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    return ok(user_json(view))


@api("/field", "GET")
def fields(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    return ok([field_json(f.id) for f in FIELDS])


@api("/issuetype", "GET")
def issue_types(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    return ok([issuetype_json(view, t) for t in ISSUE_TYPES.values()])


@api("/issuetype/{id}", "GET")
def issue_type(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    found = ISSUE_TYPES.get(param(request, "id"))
    if found is None:
        raise ApiError(404, f"The issue type with id '{param(request, 'id')}' does not exist.")
    return ok(issuetype_json(view, found))


@api("/issueLinkType", "GET")
def link_types(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    return ok({"issueLinkTypes": [link_type_json(view, t) for t in LINK_TYPES.values()]})


@api("/issueLinkType/{id}", "GET")
def link_type(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    found = LINK_TYPES.get(param(request, "id"))
    if found is None:
        raise ApiError(404, f"No issue link type with id '{param(request, 'id')}' found.")
    return ok(link_type_json(view, found))


@api("/status", "GET")
def statuses(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    return ok([status_json(view, s) for s in STATUSES.values()])


@api("/status/{ref}", "GET")
def status(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    found = store.catalog.statuses_named(param(request, "ref"))
    if not found:
        raise ApiError(404, f"The status with id '{param(request, 'ref')}' does not exist")
    return ok(status_json(view, found[0]))


@api("/priority", "GET")
def priorities(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    return ok([priority_json(view, p) for p in PRIORITIES])


@api("/resolution", "GET")
def resolutions(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    return ok([resolution_json(view, r) for r in RESOLUTIONS])


# -- projects ---------------------------------------------------------------------------------

@api("/project", "GET")
def projects(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    expand = expand_set(request.query_params.get("expand"))
    return ok([project_json(view, p, issue_types="issueTypes" in expand)
               for p in PROJECTS.values()])


@api("/project/search", "GET")
def project_search(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    query = request.query_params
    start = int_param(query.get("startAt"), "startAt", 0)
    size = int_param(query.get("maxResults"), "maxResults", 50, minimum=1)
    expand = expand_set(query.get("expand"))
    values = [project_json(view, p, issue_types="issueTypes" in expand)
              for p in PROJECTS.values()]
    return ok(_page(view, "project/search", values, start, size))


@api("/project/{ref}", "GET")
def project(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    found = store.project_or_404(param(request, "ref"))
    versions = [store.render_version(view, v) for v in store.project_versions(found)]
    return ok(project_json(view, found, issue_types=True, versions=versions))


@api("/project/{ref}/statuses", "GET")
def project_statuses(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    found = store.project_or_404(param(request, "ref"))
    result = []
    for type_id in found.issue_type_ids:
        issue_type = ISSUE_TYPES[type_id]
        workflow = issue_type.workflow
        ids = dict.fromkeys([workflow.initial, *(t.to for t in workflow.transitions)])
        result.append({"self": f"{view.rest}/issuetype/{type_id}", "id": type_id,
                       "name": issue_type.name, "subtask": False,
                       "statuses": [status_json(view, STATUSES[s]) for s in ids]})
    return ok(result)


@api("/project/{ref}/versions", "GET")
def project_versions(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    found = store.project_or_404(param(request, "ref"))
    expand = request.query_params.get("expand", "")
    return ok([store.render_version(view, v, expand) for v in store.project_versions(found)])


@api("/project/{ref}/version", "GET")
def project_version_page(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    found = store.project_or_404(param(request, "ref"))
    query = request.query_params
    start = int_param(query.get("startAt"), "startAt", 0)
    size = int_param(query.get("maxResults"), "maxResults", 50, minimum=1)
    versions = store.project_versions(found)
    text = query.get("query", "").lower()
    if text:
        versions = [v for v in versions if text in v.name.lower()
                    or text in (v.description or "").lower()]
    wanted = set(split_list(query.get("status")))
    if wanted - {"released", "unreleased", "archived"}:
        raise bad_request(None, "status must be released, unreleased and/or archived.")
    if wanted:
        versions = [v for v in versions if ("archived" in wanted and v.archived)
                    or ("released" in wanted and v.released and not v.archived)
                    or ("unreleased" in wanted and not v.released and not v.archived)]
    versions = _order_versions(versions, query.get("orderBy", ""))
    values = [store.render_version(view, v, query.get("expand", "")) for v in versions]
    return ok(_page(view, f"project/{found.key}/version", values, start, size))


def _order_versions(versions: list[Any], order_by: str) -> list[Any]:
    descending = order_by.startswith("-")
    key = order_by.lstrip("+-")
    keys: dict[str, Callable[[Any], Any]] = {
        "sequence": lambda v: v.sequence, "name": lambda v: v.name.lower(),
        "startDate": lambda v: (v.start_date is None, v.start_date),
        "releaseDate": lambda v: (v.release_date is None, v.release_date),
        "description": lambda v: v.description or ""}
    if not key:
        return versions
    if key not in keys:
        raise bad_request(None, f"orderBy must be one of {', '.join(keys)} (optionally with "
                                f"a leading - or +).")
    return sorted(versions, key=keys[key], reverse=descending)


def _page(view: View, path: str, values: list[Any], start: int, size: int) -> dict[str, Any]:
    chunk = values[start:start + size]
    last = start + size >= len(values)
    page: dict[str, Any] = {"self": f"{view.rest}/{path}?startAt={start}&maxResults={size}",
                            "maxResults": size, "startAt": start, "total": len(values),
                            "isLast": last, "values": chunk}
    if not last:
        page["nextPage"] = f"{view.rest}/{path}?startAt={start + size}&maxResults={size}"
    return page


# -- versions ---------------------------------------------------------------------------------

@api("/version", "POST")
def create_version(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    version = store.create_version(view, body)
    return ok(store.render_version(view, version), 201)


@api("/version/{id}", "GET")
def get_version(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    version = store.version_or_404(param(request, "id"))
    return ok(store.render_version(view, version, request.query_params.get("expand", "")))


@api("/version/{id}", "PUT")
def update_version(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    version = store.update_version(view, param(request, "id"), body)
    return ok(store.render_version(view, version))


@api("/version/{id}", "DELETE")
def delete_version(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    query = request.query_params
    store.delete_version(view, param(request, "id"), query.get("moveFixIssuesTo"),
                         query.get("moveAffectedIssuesTo"))
    return no_content()


@api("/version/{id}/move", "POST")
def move_version(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    return ok(store.render_version(view, store.move_version(view, param(request, "id"), body)))


@api("/version/{id}/relatedIssueCounts", "GET")
def related_counts(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    version = store.version_or_404(param(request, "id"))
    fixed, affected = store.related_counts(version)
    return ok({"self": f"{view.rest}/version/{version.id}", "issuesFixedCount": fixed,
               "issuesAffectedCount": affected, "issueCountWithCustomFieldsShowingVersion": 0,
               "customFieldUsage": []})


@api("/version/{id}/unresolvedIssueCount", "GET")
def unresolved_count(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    version = store.version_or_404(param(request, "id"))
    unresolved, total = store.unresolved_count(version)
    return ok({"self": f"{view.rest}/version/{version.id}", "issuesUnresolvedCount": unresolved,
               "issuesCount": total})


# -- issues -----------------------------------------------------------------------------------

@api("/issue", "POST")
def create_issue(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    issue = store.create_issue(view, body)
    return ok({"id": str(issue.id), "key": issue.key, "self": f"{view.rest}/issue/{issue.id}"},
              201)


@api("/issue/{ref}", "GET")
def get_issue(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    issue = store.issue_or_404(param(request, "ref"))
    query = request.query_params
    wanted = wanted_fields(split_list(query.getlist("fields")), "*all")
    return ok(with_transitions(store, view, issue, wanted, expand_set(query.get("expand"))))


def with_transitions(store: JiraStore, view: View, issue: Any, wanted: Any,
                      expand: frozenset[str]) -> dict[str, Any]:
    rendered = store.render_issue(view, issue, wanted, expand)
    if "transitions" in expand:
        rendered["transitions"] = [transition_json(view, t)
                                   for t in store.available_transitions(issue)]
    return rendered


@api("/issue/{ref}", "PUT")
def edit_issue(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    issue = store.edit_issue(view, param(request, "ref"), body)
    if request.query_params.get("returnIssue", "").lower() == "true":
        return ok(store.render_issue(view, issue))
    return no_content()


@api("/issue/{ref}", "DELETE")
def delete_issue(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    store.delete_issue(view, param(request, "ref"))
    return no_content()


@api("/issue/{ref}/transitions", "GET")
def transitions(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    issue = store.issue_or_404(param(request, "ref"))
    only = request.query_params.get("transitionId")
    with_fields = "transitions.fields" in expand_set(request.query_params.get("expand"))
    result = []
    for transition in store.available_transitions(issue):
        if only and transition.id != only:
            continue
        rendered = transition_json(view, transition)
        if with_fields:
            rendered["fields"] = {}
        result.append(rendered)
    return ok({"expand": "transitions", "transitions": result})


@api("/issue/{ref}/transitions", "POST")
def do_transition(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    store.transition_issue(view, param(request, "ref"), body)
    return no_content()


# -- links ------------------------------------------------------------------------------------

@api("/issueLink", "POST")
def create_link(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    link = store.create_link(view, body)
    return Response(status_code=201, headers={"Location": f"{view.rest}/issueLink/{link.id}"})


@api("/issueLink/{id}", "GET")
def get_link(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    return ok(store.render_link(view, store.link_or_404(param(request, "id"))))


@api("/issueLink/{id}", "DELETE")
def delete_link(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    store.delete_link(view, param(request, "id"))
    return no_content()
