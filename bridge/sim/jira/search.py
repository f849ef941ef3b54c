"""Search (`/search/jql` on Cloud, `/search` on Server/DC) and webhook registration.

Cloud pages with an opaque `nextPageToken` and no `total`, and answers the removed `/search`
with 410; Server pages with `startAt`/`total` and has no `/search/jql` (see DESIGN §7).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from bridge.sim.jira.base import ApiError, bad_request, json_object
from bridge.sim.jira.jql import parse_jql
from bridge.sim.jira.render import FIELD_NAMES, View
from bridge.sim.jira.routes import (
    RouteTable,
    expand_set,
    int_param,
    no_content,
    ok,
    param,
    split_list,
    wanted_fields,
    with_transitions,
)
from bridge.sim.jira.store import WEBHOOK_PATH, JiraStore

SEARCH_REMOVED = ("The requested API has been removed. Please migrate to the /rest/api/3/search/jql "
                  "API. A full migration guideline is available at "
                  "https://developer.atlassian.com/changelog/#CHANGE-2046")
UNBOUNDED = "Unbounded JQL queries are not allowed here. Please add a search restriction to " \
            "your query."
#: Page-size caps: Cloud gives up to 5000 ids/keys per page but 100 issues with fields.
JQL_CAP_IDS, JQL_CAP_FIELDS, SERVER_CAP = 5000, 100, 1000
VALIDATE_QUERY = ("strict", "warn", "none", "true", "false")

#: Search routes, under `/rest/api/{2,3,latest}`.
SEARCH = RouteTable()
api = SEARCH.route
#: Webhook registration routes (absolute paths).
WEBHOOKS = RouteTable()
hooks = WEBHOOKS.route


# -- search -----------------------------------------------------------------------------------

def _search_args(request: Request, body: Any) -> dict[str, Any]:
    """Search parameters from the query string (GET) or the JSON body (POST)."""
    if request.method == "POST":
        args = dict(json_object(body if body is not None else {}))
        args["fields"] = split_list(args.get("fields"))
        args["expand"] = ",".join(split_list(args.get("expand")))
        return args
    query = request.query_params
    args = {k: query.get(k) for k in query}
    args["fields"] = split_list(query.getlist("fields"))
    return args


@api("/search/jql", "GET", "POST")
def search_jql(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    if view.flavor != "cloud":
        raise ApiError(404, "null for uri: " + str(request.url))
    args = _search_args(request, body)
    jql = args.get("jql") or ""
    query = parse_jql(jql)
    if not query.bounded:
        raise bad_request(None, UNBOUNDED)
    wanted_list = args["fields"] or ["id"]
    ids_only = set(wanted_list) <= {"id", "key"}
    cap = JQL_CAP_IDS if ids_only else JQL_CAP_FIELDS
    size = min(int_param(args.get("maxResults"), "maxResults", 50), cap)
    offset = _read_token(args.get("nextPageToken"), jql)
    found = store.search(query)
    page = found[offset:offset + size]
    expand = expand_set(args.get("expand"))
    if ids_only:
        issues = [_id_only(view, i, wanted_list) for i in page]
    else:
        wanted = wanted_fields(wanted_list, "*all")
        issues = [with_transitions(store, view, i, wanted, expand) for i in page]
    result: dict[str, Any] = {"issues": issues}
    if offset + size < len(found) and size:
        result["nextPageToken"] = _make_token(offset + size, jql)
    result["isLast"] = "nextPageToken" not in result
    if "names" in expand:
        result["names"] = dict(FIELD_NAMES)
    return ok(result)


def _id_only(view: View, issue: Any, wanted: list[str]) -> dict[str, Any]:
    rendered: dict[str, Any] = {"id": str(issue.id)}
    if "key" in wanted:
        rendered.update(key=issue.key, self=f"{view.rest}/issue/{issue.id}")
    return rendered


def _fingerprint(jql: str) -> str:
    return hashlib.sha1(jql.encode()).hexdigest()[:10]


def _make_token(offset: int, jql: str) -> str:
    raw = json.dumps({"o": offset, "q": _fingerprint(jql)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _read_token(token: Any, jql: str) -> int:
    if not token:
        return 0
    try:
        text = str(token)
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        offset = int(data["o"])
        same_query = data["q"] == _fingerprint(jql)
    except (ValueError, KeyError, TypeError):
        raise bad_request(None, "The provided next page token is invalid.") from None
    if not same_query or offset < 0:
        raise bad_request(None, "The provided next page token is invalid for this query.")
    return offset


@api("/search", "GET", "POST")
def search_server(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    if view.flavor == "cloud":
        raise ApiError(410, SEARCH_REMOVED)
    args = _search_args(request, body)
    validate = str(args.get("validateQuery", "strict")).lower()
    if validate not in VALIDATE_QUERY:
        raise bad_request(None, f"validateQuery must be one of {', '.join(VALIDATE_QUERY)}.")
    query = parse_jql(args.get("jql") or "")
    start = int_param(args.get("startAt"), "startAt", 0)
    size = min(int_param(args.get("maxResults"), "maxResults", 50), SERVER_CAP)
    found = store.search(query)
    wanted = wanted_fields(args["fields"], "*navigable")
    expand = expand_set(args.get("expand"))
    issues = [with_transitions(store, view, i, wanted, expand)
              for i in found[start:start + size]]
    result: dict[str, Any] = {"expand": "schema,names", "startAt": start, "maxResults": size,
                              "total": len(found), "issues": issues}
    if "names" in expand:
        result["names"] = dict(FIELD_NAMES)
    return ok(result)


@api("/search/approximate-count", "POST")
def approximate_count(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    if view.flavor != "cloud":
        raise ApiError(404, "null for uri: " + str(request.url))
    query = parse_jql(json_object(body if body is not None else {}).get("jql") or "")
    if not query.bounded:
        raise bad_request(None, UNBOUNDED)
    return ok({"count": len(store.search(query))})


# -- webhooks (`/rest/webhooks/1.0/webhook`) ----------------------------------------------------

@hooks(WEBHOOK_PATH, "GET")
def list_webhooks(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    return ok([store.render_webhook(view.base, h) for h in store.state.webhooks.values()])


@hooks(WEBHOOK_PATH, "POST")
def register_webhook(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    hook = store.register_webhook(body)
    rendered = store.render_webhook(view.base, hook)
    return ok(rendered, 201, headers={"Location": rendered["self"]})


@hooks(WEBHOOK_PATH + "/{id}", "GET")
def get_webhook(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    return ok(store.render_webhook(view.base, store.webhook_or_404(param(request, "id"))))


@hooks(WEBHOOK_PATH + "/{id}", "DELETE")
def delete_webhook(store: JiraStore, view: View, request: Request, body: Any) -> Response:
    hook = store.webhook_or_404(param(request, "id"))
    del store.state.webhooks[hook.id]
    return no_content()
