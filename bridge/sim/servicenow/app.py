"""The ServiceNow Table API simulator: `/api/now/table/{table}[/{sys_id}]` over real HTTP.

Follows the documented Table API (URLs with and without `v1`/`v2`, status codes, envelopes,
`sysparm_*` parameters, `Link` / `X-Total-Count` paging) and what pysnow actually sends (e.g.
PUT with the list query still attached, booleans spelt `True`/`False`). Also serves the
`/_sim` control API and relbridge's outbound-webhook contract (DESIGN §7).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from bridge.sim.control import ASGIApp, SimControl
from bridge.sim.servicenow.query import Query, parse_query, plain_conditions
from bridge.sim.servicenow.render import Renderer, View
from bridge.sim.servicenow.schema import Table
from bridge.sim.servicenow.seed import SEEDS
from bridge.sim.servicenow.store import TABLE_NAME, Record, ServiceNowStore, StateFile
from bridge.sim.servicenow.zones import UserZone
from bridge.sim.webhooks import WebhookSender, sign_relbridge

log = logging.getLogger(__name__)

#: Default credentials (the ones in config.example.toml).
DEFAULT_USERS = {"admin": "admin"}
DEFAULT_LIMIT = 10_000
#: Longest path + query string served. Instances run on Tomcat, which refuses a request whose
#: line and headers pass its header buffer with "400 Request header is too large" and an HTML
#: page (ServiceNow KB0826932); 16 KB is the size observed on instances. Refusing here
#: keeps clients honest: a long `sys_idIN…` list must be paged, not sent in one URL.
MAX_URL_LENGTH = 16 * 1024
#: A `Link` header longer than this carries only `rel="next"` (the one clients follow), so a
#: long query is never repeated four times in one header line.
MAX_LINK_HEADER = 16 * 1024
_TOO_LONG_PAGE = (
    "<!doctype html><html lang=\"en\"><head><title>HTTP Status 400 – Bad Request</title>"
    "</head><body><h1>HTTP Status 400 – Bad Request</h1><hr class=\"line\" />"
    "<p><b>Type</b> Exception Report</p><p><b>Message</b> Request header is too large</p>"
    "<p><b>Description</b> The server cannot or will not process the request due to "
    "something that is perceived to be a client error (e.g., malformed request syntax, "
    "invalid request message framing, or deceptive request routing).</p></body></html>"
)
_API_PATH = re.compile(r"/api/now(?:/(v1|v2))?/table/([^/]+)(?:/([^/]+))?/?")

_ERRORS = {
    400: ("Bad Request", "Invalid request"),
    401: ("User Not Authenticated", "Required to provide Auth information"),
    403: ("User Not Authorized", "Failed API level ACL Validation"),
    404: ("No Record found", "Record doesn't exist or ACL restricts the record retrieval"),
    405: ("Method not Supported", "The requested method is not supported for this resource"),
    429: ("Rate limit exceeded", "Too many requests, retry after the time in Retry-After"),
    500: ("Internal Server Error", "An unexpected error occurred on the instance"),
    502: ("Bad Gateway", "The instance could not be reached"),
    503: ("Service Unavailable", "The instance is unavailable, try again later"),
    504: ("Gateway Timeout", "The instance did not answer in time"),
}


def servicenow_error_body(status: int, message: str | None = None,
                          detail: str | None = None) -> dict[str, Any]:
    """The Table API error envelope: `{"error": {"message", "detail"}, "status": "failure"}`."""
    default_message, default_detail = _ERRORS.get(status, ("Error", f"HTTP {status}"))
    return {"error": {"message": message or default_message,
                      "detail": detail if detail is not None else default_detail},
            "status": "failure"}


def _error(status: int, message: str | None = None, detail: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(servicenow_error_body(status, message, detail), status, headers=headers)


def _flag(value: str | None) -> bool:
    """Booleans as the instance reads them: any case (`true`, `True`, `TRUE`)."""
    return (value or "").strip().lower() == "true"


def _int_param(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


@dataclass(frozen=True)
class Subscription:
    """One outbound-webhook registration (`POST /_sim/webhooks`)."""

    url: str
    secret: str
    tables: frozenset[str]

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "tables": sorted(self.tables), "signed": bool(self.secret)}


class ServiceNowSim:
    """One simulated instance: its data (`store`), control API, webhooks and ASGI `app`."""

    def __init__(self, *, seed: str = "empty", control: SimControl | None = None,
                 webhooks: WebhookSender | None = None, state_file: Path | None = None,
                 users: dict[str, str] | None = None, latency_ms: int = 0) -> None:
        if seed not in SEEDS:
            raise ValueError(f"unknown seed {seed!r}; choose one of {', '.join(SEEDS)}")
        self.seed = seed
        self.users = dict(users or DEFAULT_USERS)
        self.control = control or SimControl()
        self.control.error_body = servicenow_error_body
        self.control.latency_ms = latency_ms
        self.webhooks = webhooks
        self.subscriptions: list[Subscription] = []
        self.store = ServiceNowStore()
        self.state = StateFile(state_file, self.store) if state_file else None
        if self.state is None or not self.state.load_if_present():
            SEEDS[seed](self.store)
        self.store.listeners.append(self._on_write)
        self._auth_cache: dict[str, str | None] = {}
        self.app: ASGIApp = self.control.middleware(self._build_app())

    # -- lifecycle ---------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the seed: data, numbering and webhook registrations."""
        self.subscriptions = []
        listeners, self.store.listeners = self.store.listeners, []
        self.store.clear()
        SEEDS[self.seed](self.store)
        self.store.listeners = listeners
        if self.state is not None:
            self.state.schedule()

    def save(self) -> None:
        """Write the state file now (no-op without one)."""
        if self.state is not None:
            self.state.save()

    def subscribe(self, url: str, secret: str, tables: Iterable[str]) -> Subscription:
        subscription = Subscription(url, secret, frozenset(tables))
        self.subscriptions.append(subscription)
        return subscription

    def _on_write(self, table: str, record: Record, operation: str) -> None:
        if self.state is not None:
            self.state.schedule()
        if self.webhooks is None:
            return
        for subscription in self.subscriptions:
            if table in subscription.tables:
                self._deliver(subscription, table, record, operation)

    def _deliver(self, subscription: Subscription, table: str, record: Record,
                 operation: str) -> None:
        assert self.webhooks is not None
        notice = {
            "table": table, "sys_id": record["sys_id"], "number": record.get("number", ""),
            "operation": operation, "sys_updated_on": record["sys_updated_on"],
            "sys_mod_count": record["sys_mod_count"],
        }
        if table == "rm_m2m_release_task":  # as docs/servicenow-business-rule.md sends it
            notice.update(task=record.get("task", ""), release=record.get("release", ""))
        body = json.dumps(notice).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "ServiceNow/1.0",
            "X-Relbridge-Timestamp": timestamp,
            "X-Relbridge-Signature": sign_relbridge(subscription.secret, timestamp, body),
        }
        self.webhooks.send(subscription.url, body, headers)

    # -- HTTP --------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return Starlette(routes=[
            *self.control.routes(on_reset=self.reset),
            Route("/_sim/webhooks", self._webhooks_endpoint, methods=["GET", "POST", "DELETE"]),
            Route("/api/{rest:path}", self._api, methods=methods),
        ])

    async def _webhooks_endpoint(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.subscriptions = []
            return JSONResponse({"webhooks": []})
        if request.method == "POST":
            try:
                body = json.loads(await request.body() or b"null")
            except ValueError:
                return _control_error("body is not valid JSON")
            problem = _check_subscription(body)
            if problem:
                return _control_error(problem)
            sub = self.subscribe(body["url"], body["secret"], body["tables"])
            return JSONResponse({"webhook": sub.describe(),
                                 "webhooks": [s.describe() for s in self.subscriptions]}, 201)
        return JSONResponse({"webhooks": [s.describe() for s in self.subscriptions]})

    def _user(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if header in self._auth_cache:
            return self._auth_cache[header]
        user = None
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                name, _, password = base64.b64decode(token).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                name, password = "", ""
            if name in self.users and self.users[name] == password:
                user = name
        if len(self._auth_cache) < 1000:
            self._auth_cache[header] = user
        return user

    async def _api(self, request: Request) -> Response:
        if len(request.scope.get("raw_path", b"")) + len(request.scope.get("query_string", b"")) \
                > MAX_URL_LENGTH:
            return HTMLResponse(_TOO_LONG_PAGE, 400)
        user = self._user(request)
        if user is None:
            return _error(401, headers={"WWW-Authenticate": 'Basic realm="Service-now"'})
        match = _API_PATH.fullmatch(request.url.path)
        if match is None:
            return _error(400, "Requested URI does not represent any resource", "")
        version, table_name, sys_id = match.groups()
        method = request.method
        if method == "GET":
            if sys_id:
                return self._get_one(request, table_name, sys_id)
            return self._list(request, table_name, version)
        if method == "POST":
            if sys_id:
                return _error(405, detail="POST is not supported on a single record")
            return await self._insert(request, table_name, user)
        if not sys_id:
            return _error(405, detail=f"{method} needs a record sys_id in the URL")
        if method == "DELETE":
            return self._delete(table_name, sys_id)
        return await self._update(request, table_name, sys_id, user)

    def _base_url(self, request: Request) -> str:
        return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"

    def _zone(self, request: Request) -> UserZone:
        """The session user's time zone and date format (from their `sys_user` row)."""
        name = self._user(request) or ""
        return UserZone.of(self.store.find("sys_user", "user_name", name))

    def _input_mode(self, request: Request) -> dict[str, Any]:
        """`sysparm_input_display_value=true`: written values are display values, datetimes
        in the session user's zone and format."""
        display = _flag(request.query_params.get("sysparm_input_display_value"))
        return {"input_display": display, "zone": self._zone(request) if display else None}

    def _view(self, request: Request, table: Table) -> Renderer:
        params = request.query_params
        view = View.build(self.store, table, params.get("sysparm_fields", ""),
                          params.get("sysparm_display_value", "false"),
                          _flag(params.get("sysparm_exclude_reference_link")),
                          self._base_url(request), self._zone(request))
        return Renderer(self.store, view)

    def _table(self, name: str) -> Table | None:
        return self.store.table(name)

    def _list(self, request: Request, table_name: str, version: str | None) -> Response:
        table = self._table(table_name)
        if table is None:
            return _error(400, f"Invalid table {table_name}", "")
        params = request.query_params
        offset = _int_param(params.get("sysparm_offset"), 0)
        if offset < 0:
            return _error(400, f"offset is {offset}", "Negative offset is not supported")
        limit = _int_param(params.get("sysparm_limit"), DEFAULT_LIMIT)
        if limit <= 0:
            limit = DEFAULT_LIMIT
        query = self._query(request, table)
        matched = query.sort(query.filter(self.store.records(table_name)))
        page = matched[offset:offset + limit]
        if version == "v1" and not matched:
            return _error(404)
        renderer = self._view(request, table)
        headers: dict[str, str] = {}
        count = not _flag(params.get("sysparm_no_count"))
        if count:
            headers["X-Total-Count"] = str(len(matched))
        if not _flag(params.get("sysparm_suppress_pagination_header")):
            link = _link_header(self._base_url(request) + request.url.path,
                                list(params.multi_items()), offset, limit,
                                len(matched) if count else None, len(page))
            if link:
                headers["Link"] = link
        return JSONResponse({"result": [renderer.render(r) for r in page]}, headers=headers)

    def _query(self, request: Request, table: Table) -> Query:
        text = request.query_params.get("sysparm_query", "")
        if text:
            return parse_query(text, table, self._zone(request), self.store)
        query = Query()

        def to_value(name: str, raw: str) -> str:  # name=value params accept display values
            column = table.columns[name]
            if column.choices and column.label_of(raw) == raw:
                return column.value_of_label(raw) or raw
            if column.reference and raw:
                return self.store.resolve_reference(column.reference, raw)
            return raw

        query.and_all(plain_conditions(request.query_params.multi_items(), table, to_value))
        return query

    def _get_one(self, request: Request, table_name: str, sys_id: str) -> Response:
        table = self._table(table_name)
        if table is None:
            return _error(400, f"Invalid table {table_name}", "")
        record = self.store.get(table_name, sys_id)
        if record is None:
            return _error(404)
        return JSONResponse({"result": self._view(request, table).render(record)})

    async def _insert(self, request: Request, table_name: str, user: str) -> Response:
        if self._table(table_name) is None:  # the instance never creates tables on insert
            return _error(400, f"Invalid table {table_name}", "")
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        record = self.store.insert(table_name, body, user, **self._input_mode(request))
        location = f"{self._base_url(request)}{request.url.path.rstrip('/')}/{record['sys_id']}"
        return self._write_response(request, table_name, record, 201, {"Location": location})

    async def _update(self, request: Request, table_name: str, sys_id: str,
                      user: str) -> Response:
        # PUT and PATCH both merge the given fields; the list parameters pysnow leaves on the
        # URL (sysparm_query, limit, offset) are ignored here, as by the instance.
        if self._table(table_name) is None:
            return _error(400, f"Invalid table {table_name}", "")
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        result = self.store.update(table_name, sys_id, body, user, **self._input_mode(request))
        if result is None:
            return _error(404)
        return self._write_response(request, table_name, result[0], 200, {})

    def _write_response(self, request: Request, table_name: str, record: Record, status: int,
                        headers: dict[str, str]) -> Response:
        if _flag(request.headers.get("x-no-response-body")):
            return Response(status_code=status, headers=headers)
        table = self.store.table(table_name)
        assert table is not None
        result = self._view(request, table).render(record)
        return JSONResponse({"result": result}, status, headers=headers)

    def _delete(self, table_name: str, sys_id: str) -> Response:
        if self._table(table_name) is None:
            return _error(400, f"Invalid table {table_name}", "")
        if self.store.delete(table_name, sys_id) is None:
            return _error(404)
        return Response(status_code=204)


def _link_header(url: str, params: list[tuple[str, str]], offset: int, limit: int,
                 total: int | None, page_size: int) -> str:
    """`Link` as the instance sends it: first, prev, next, last; absolute URLs.

    prev is present even on the first page, with a negative offset, as on real instances;
    next only while more records follow; last only when the total was counted.
    """
    kept = [(k, v) for k, v in params if k not in ("sysparm_offset", "sysparm_limit")]

    def at(position: int) -> str:
        query = urlencode([*kept, ("sysparm_limit", str(limit)),
                           ("sysparm_offset", str(position))])
        return f"<{url}?{query}>"

    links = [f'{at(0)};rel="first"', f'{at(offset - limit)};rel="prev"']
    more = (offset + limit < total) if total is not None else page_size == limit
    if more:
        links.append(f'{at(offset + limit)};rel="next"')
    if total is not None:
        links.append(f'{at(max(0, (total - 1) // limit * limit))};rel="last"')
    header = ",".join(links)
    if len(header) > MAX_LINK_HEADER:
        header = f'{at(offset + limit)};rel="next"' if more else ""
    return header


async def _json_object(request: Request) -> dict[str, Any] | Response:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return _error(400, "Exception while reading request",
                      "The payload is not valid JSON.")
    if not isinstance(body, dict):
        return _error(400, "Exception while reading request",
                      "The payload must be a JSON object with field values.")
    return body


def _check_subscription(body: Any) -> str:
    if not isinstance(body, dict):
        return "body must be a JSON object {url, secret, tables}"
    url, secret, tables = body.get("url"), body.get("secret"), body.get("tables")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return "url must be an http(s) URL"
    if not isinstance(secret, str) or not secret:
        return "secret must be a non-empty string"
    if (not isinstance(tables, list) or not tables
            or not all(isinstance(t, str) and TABLE_NAME.fullmatch(t) for t in tables)):
        return "tables must be a non-empty list of table names"
    return ""


def _control_error(message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "detail": "bad control request"}}, 400)


def create_servicenow_app(*, seed: str = "empty", latency_ms: int = 0,
                          control: SimControl | None = None,
                          webhooks: WebhookSender | None = None,
                          state_file: Path | None = None,
                          users: dict[str, str] | None = None) -> ServiceNowSim:
    """Build a simulated instance; serve `.app` with `bridge.sim.server.start_in_thread`."""
    return ServiceNowSim(seed=seed, control=control, webhooks=webhooks, state_file=state_file,
                         users=users, latency_ms=latency_ms)
