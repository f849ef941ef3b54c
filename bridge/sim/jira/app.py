"""The Jira REST simulator: a Starlette app speaking Jira Cloud or Server/DC (DESIGN §7).

`create_jira_app` is what `bridge.sim.start_simulators` calls. The flavor decides what
`serverInfo` says and which search API exists: Cloud serves `/search/jql` (token paging)
and answers the removed `/search` with 410; Server serves `/search` (startAt/total) and has
no `/search/jql`. Both serve `/rest/api/2` and `/rest/api/3` (`latest` = 2).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge.sim.control import ASGIApp, SimControl
from bridge.sim.jira.base import ApiError
from bridge.sim.jira.catalog import CREATED_USERS
from bridge.sim.jira.jql import JqlError
from bridge.sim.jira.render import View
from bridge.sim.jira.resources import RESOURCES
from bridge.sim.jira.routes import API, Handler
from bridge.sim.jira.search import SEARCH, WEBHOOKS
from bridge.sim.jira.seed import SEEDS, build_seed
from bridge.sim.jira.state import load_state, save_state
from bridge.sim.jira.store import JiraStore
from bridge.sim.webhooks import WebhookSender

FLAVORS = ("cloud", "server")
API_PREFIXES = {"2": "/rest/api/2", "3": "/rest/api/3", "latest": "/rest/api/latest"}
NOT_AUTHENTICATED = "You are not authenticated. Authentication required to perform this operation."
DEFAULT_CREDENTIALS = ("admin", "admin")


def jira_error_body(status: int) -> dict[str, Any]:
    """Jira's envelope for injected faults (rate limits, outages)."""
    messages = {429: "Rate limit exceeded.", 503: "Service Unavailable"}
    return {"errorMessages": [messages.get(status, f"HTTP {status}")], "errors": {}}


@dataclass
class JiraSim:
    """One simulated Jira: the ASGI app plus handles for tests and `relbridge sim`."""

    app: ASGIApp
    store: JiraStore
    flavor: str
    seed: str
    state_file: Path | None = None
    control: SimControl | None = field(default=None, repr=False)

    def reset(self) -> None:
        """Back to the seed (the state file is left alone until the next `save`)."""
        with self.store.lock:
            self.store.state = build_seed(self.seed)


    def save(self) -> None:
        """Persist the state to `state_file`, if one was given."""
        if self.state_file is not None:
            with self.store.lock:
                save_state(self.store.state, self.state_file)


def create_jira_app(*, flavor: str = "cloud", seed: str = "empty", latency_ms: int = 0,
                    control: SimControl | None = None, webhooks: WebhookSender | None = None,
                    state_file: Path | None = None,
                    credentials: tuple[str, str] = DEFAULT_CREDENTIALS) -> JiraSim:
    """Build the simulator; loads `state_file` when it exists, else starts from `seed`."""
    if flavor not in FLAVORS:
        raise ValueError(f"unknown Jira flavor {flavor!r} (choose from {', '.join(FLAVORS)})")
    if seed not in SEEDS:
        raise ValueError(f"unknown Jira seed {seed!r} (choose from {', '.join(SEEDS)})")
    state = load_state(state_file) if state_file is not None and state_file.exists() \
        else build_seed(seed)
    store = JiraStore(state, webhooks)
    control = control or SimControl()
    control.error_body = jira_error_body
    control.latency_ms = latency_ms
    sim = JiraSim(app=_noop_app, store=store, flavor=flavor, seed=seed, state_file=state_file,
                  control=control)
    routes = list(control.routes(sim.reset))
    auth = _Authenticator(*credentials)
    for version, prefix in API_PREFIXES.items():
        api = "2" if version == "latest" else version
        for path, methods, handler in RESOURCES.routes + API.routes + SEARCH.routes:
            routes.append(Route(prefix + path, _endpoint(handler, store, auth, api, flavor),
                                methods=methods))
    for path, methods, handler in WEBHOOKS.routes:
        routes.append(Route(path, _endpoint(handler, store, auth, "2", flavor), methods=methods))
    app = Starlette(routes=routes, exception_handlers={
        HTTPException: _http_error, Exception: _server_error})
    sim.app = control.middleware(app)
    return sim


async def _noop_app(scope: Any, receive: Any, send: Any) -> None:  # replaced at once
    raise RuntimeError("Jira simulator app not built")


class _Authenticator:
    """Basic auth (user + password/API token) or a Bearer personal access token."""

    def __init__(self, user: str, secret: str) -> None:
        token = base64.b64encode(f"{user}:{secret}".encode()).decode()
        self.user, self.secret = user, secret
        self.accepted = {f"Basic {token}", f"Bearer {secret}"}

    def ok(self, header: str | None) -> bool:
        if not header:
            return False
        if header in self.accepted:
            return True
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, secret = base64.b64decode(value.strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return (user, secret) == (self.user, self.secret)
        return scheme.lower() == "bearer" and value.strip() == self.secret


def _endpoint(handler: Handler, store: JiraStore, auth: _Authenticator, api: str,
              flavor: str) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        if not auth.ok(request.headers.get("authorization")):
            return JSONResponse({"errorMessages": [NOT_AUTHENTICATED], "errors": {}}, 401,
                                headers={"WWW-Authenticate": 'Basic realm="protected-area"'})
        view = View(_base_url(request), api, flavor)
        try:
            body = await _json_body(request) if request.method in ("POST", "PUT") else None
            with store.lock:
                users = CREATED_USERS.set(store.state.users)
                try:
                    return handler(store, view, request, body)
                finally:
                    CREATED_USERS.reset(users)
        except ApiError as exc:
            return JSONResponse(exc.body(), exc.status)
        except JqlError as exc:
            return JSONResponse({"errorMessages": [str(exc)], "errors": {}}, 400)

    return endpoint


def _base_url(request: Request) -> str:
    host = request.headers.get("host")
    if not host:
        server = request.scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{request.scope.get('scheme', 'http')}://{host}"


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"Unexpected character in the request body, it is not valid JSON: "
                            f"{exc}") from exc


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "null for uri: " + str(request.url) if exc.status_code == 404 else exc.detail
    return JSONResponse({"errorMessages": [message], "errors": {}}, exc.status_code)


async def _server_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"errorMessages": [f"Internal server error: {type(exc).__name__}"],
                         "errors": {}}, 500)

