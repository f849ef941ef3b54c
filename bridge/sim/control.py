"""The `/_sim` control API shared by both simulators: fault injection and a request log.

Tests and benchmarks need to make a simulated system misbehave (rate limits, outages, slow or
dropped connections) and to count the calls a client made, so "API calls are a cost" can be
asserted. One `SimControl` belongs to one server; its `middleware` wraps the API app and its
`routes` are mounted by the API app next to the real endpoints (see DESIGN §7).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter, deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ErrorBody = Callable[[int], dict[str, Any]]

#: Paths under this prefix belong to the control API: never logged, never faulted.
CONTROL_PREFIX = "/_sim"
#: The log keeps this many recent requests; `count` and `by_method` stay exact beyond it.
LOG_LIMIT = 20_000
#: A request carrying this header is never faulted (still logged): tests acting as the people
#: editing a system keep working while the client under test meets the faults.
BYPASS_FAULTS_HEADER = "x-sim-bypass-faults"
#: Statuses whose fault responses carry `Retry-After` (what real rate limiters/outages send).
RETRY_AFTER_STATUSES = frozenset({429, 503})


def default_error_body(status: int) -> dict[str, Any]:
    """A neutral error envelope, used until the API app installs its own."""
    return {"error": {"message": _reason(status)}}


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ControlError(ValueError):
    """A control request body that cannot be understood (answered with 400)."""


@dataclass
class FaultRule:
    """One injected fault: which requests it hits, how often, and what they get instead.

    `status` 0 with `reset` drops the connection without a response; `status` None with
    `delay_ms` only slows matching requests down and lets them through. `times` None means
    the rule never runs out.

    `after` true lets the request reach the API and be carried out first, then replaces its
    answer with the fault: a lost reply (a create or write the system made, answered with a
    dropped connection or an error status, as a proxy timing out after the backend finished).
    It needs a `status` (0 with `reset` to drop the connection). The request log records the
    status the client saw (0 for a dropped connection).
    """

    path: re.Pattern[str]
    method: str = "*"
    status: int | None = None
    retry_after: int | None = None
    times: int | None = 1
    delay_ms: int = 0
    reset: bool = False
    after: bool = False
    hits: int = 0

    @classmethod
    def parse(cls, body: Any) -> FaultRule:
        """Validate a `POST /_sim/faults` body; raise ControlError with a readable reason."""
        if not isinstance(body, dict):
            raise ControlError("fault rule must be a JSON object")
        known = {"method", "path", "status", "retry_after", "times", "delay_ms", "reset", "after"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ControlError(f"unknown fault keys: {', '.join(unknown)}")
        method = body.get("method") or "*"
        if not isinstance(method, str):
            raise ControlError("method must be a string")
        pattern = body.get("path", "")
        if not isinstance(pattern, str):
            raise ControlError("path must be a regular expression string")
        try:
            path = re.compile(pattern)
        except re.error as exc:
            raise ControlError(f"path is not a valid regular expression: {exc}") from exc
        status = _optional_int(body, "status", minimum=0, maximum=599)
        delay_ms = _optional_int(body, "delay_ms", minimum=0, maximum=600_000) or 0
        reset = body.get("reset", False)
        if not isinstance(reset, bool):
            raise ControlError("reset must be true or false")
        if status is None and not delay_ms:
            raise ControlError("a fault rule needs a status or a delay_ms")
        if status == 0 and not reset:
            raise ControlError("status 0 is only valid with reset=true (drop the connection)")
        if status is not None and 0 < status < 100:
            raise ControlError("status must be 0 (with reset) or an HTTP status 100-599")
        after = body.get("after", False)
        if not isinstance(after, bool):
            raise ControlError("after must be true or false")
        if after and status is None:
            raise ControlError("after=true needs a status (0 with reset=true to drop the connection)")
        times = body.get("times", 1)
        if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
            raise ControlError("times must be a positive integer or null (unlimited)")
        return cls(
            path=path,
            method=method.upper(),
            status=status,
            retry_after=_optional_int(body, "retry_after", minimum=0, maximum=86_400),
            times=times,
            delay_ms=delay_ms,
            reset=reset,
            after=after,
        )

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and self.path.search(path) is not None

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path.pattern,
            "status": self.status,
            "retry_after": self.retry_after,
            "times": self.times,
            "delay_ms": self.delay_ms,
            "reset": self.reset,
            "after": self.after,
            "hits": self.hits,
        }


def _optional_int(body: dict[str, Any], key: str, *, minimum: int, maximum: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ControlError(f"{key} must be an integer between {minimum} and {maximum}")
    return value


@dataclass
class RequestLog:
    """Counts every API request and keeps the most recent ones for inspection."""

    entries: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=LOG_LIMIT))
    count: int = 0
    by_method: Counter[str] = field(default_factory=Counter)

    def add(self, method: str, path: str, query: str, status: int) -> None:
        self.count += 1
        self.by_method[method] += 1
        self.entries.append({"method": method, "path": path, "query": query, "status": status})

    def snapshot(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "by_method": dict(self.by_method),
            "requests": list(self.entries),
        }


class SimControl:
    """Fault rules, latency and the request log of one simulated server.

    Thread-safe: tests may read or change it in-process while the server thread serves.
    """

    def __init__(self, error_body: ErrorBody | None = None, *, latency_ms: int = 0) -> None:
        #: Builds the wrapped API's error envelope for injected fault responses.
        self.error_body: ErrorBody = error_body or default_error_body
        self.latency_ms = latency_ms
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._log = RequestLog()

    # -- in-process API (also used by the HTTP routes) ---------------------------------

    def add_fault(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear_faults(self) -> None:
        with self._lock:
            self._rules.clear()

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.describe() for rule in self._rules]

    def requests(self) -> dict[str, Any]:
        with self._lock:
            return self._log.snapshot()

    def clear_requests(self) -> None:
        with self._lock:
            self._log = RequestLog()

    def reset(self) -> None:
        """Forget faults and the request log (the API app restores its own seed)."""
        with self._lock:
            self._rules.clear()
            self._log = RequestLog()

    def take_fault(self, method: str, path: str) -> FaultRule | None:
        """The first live rule matching this request, consuming one of its `times`."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.hits += 1
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times == 0:
                            self._rules.remove(rule)
                    return rule
        return None

    def record(self, method: str, path: str, query: str, status: int) -> None:
        with self._lock:
            self._log.add(method, path, query, status)

    # -- HTTP control routes -----------------------------------------------------------

    def routes(self, on_reset: Callable[[], None]) -> list[Route]:
        """The `/_sim` control endpoints; `on_reset` restores the API's seed data."""

        async def post_faults(request: Request) -> Response:
            try:
                rule = FaultRule.parse(await _json_body(request))
            except ControlError as exc:
                return _bad_request(str(exc))
            self.add_fault(rule)
            return JSONResponse({"fault": rule.describe(), "faults": self.faults()}, 201)

        async def get_faults(request: Request) -> Response:
            return JSONResponse({"faults": self.faults()})

        async def delete_faults(request: Request) -> Response:
            self.clear_faults()
            return JSONResponse({"faults": []})

        async def post_reset(request: Request) -> Response:
            self.reset()
            on_reset()
            return JSONResponse({"reset": True})

        async def get_requests(request: Request) -> Response:
            return JSONResponse(self.requests())

        async def delete_requests(request: Request) -> Response:
            self.clear_requests()
            return JSONResponse({"count": 0})

        return [
            Route(f"{CONTROL_PREFIX}/faults", post_faults, methods=["POST"]),
            Route(f"{CONTROL_PREFIX}/faults", get_faults, methods=["GET"]),
            Route(f"{CONTROL_PREFIX}/faults", delete_faults, methods=["DELETE"]),
            Route(f"{CONTROL_PREFIX}/reset", post_reset, methods=["POST"]),
            Route(f"{CONTROL_PREFIX}/requests", get_requests, methods=["GET"]),
            Route(f"{CONTROL_PREFIX}/requests", delete_requests, methods=["DELETE"]),
        ]

    # -- ASGI middleware ---------------------------------------------------------------

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Wrap `app`: log each API request with its final status, apply latency and faults.

        A plain ASGI callable (no BaseHTTPMiddleware) so it adds almost nothing per request.
        The wrapper carries `sim_control` so nobody wraps the same app twice.
        """
        control = self

        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
                await app(scope, receive, send)
                return
            method: str = scope["method"]
            path: str = scope["path"]
            query = scope.get("query_string", b"").decode("latin-1")
            status_box = [0]

            async def logging_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status_box[0] = message["status"]
                await send(message)

            try:
                if control.latency_ms:
                    await asyncio.sleep(control.latency_ms / 1000)
                rule = None if _bypasses_faults(scope) else control.take_fault(method, path)
                if rule is not None and rule.delay_ms:
                    await asyncio.sleep(rule.delay_ms / 1000)
                if rule is not None and rule.after:
                    await app(scope, receive, _discard)  # carried out; its answer is lost
                if rule is not None and rule.status == 0:
                    await _drop_connection(send)
                    return
                if rule is not None and rule.status is not None:
                    await control._fault_response(rule)(scope, receive, logging_send)
                    return
                await app(scope, receive, logging_send)
            finally:
                control.record(method, path, query, status_box[0])

        wrapped.sim_control = control  # type: ignore[attr-defined]
        return wrapped

    def _fault_response(self, rule: FaultRule) -> Response:
        assert rule.status is not None
        headers: dict[str, str] = {}
        if rule.status in RETRY_AFTER_STATUSES or rule.retry_after is not None:
            headers["Retry-After"] = str(rule.retry_after if rule.retry_after is not None else 1)
        if rule.status in (204, 304) or rule.status < 200:
            return Response(status_code=rule.status, headers=headers)
        return JSONResponse(self.error_body(rule.status), rule.status, headers=headers)


def _bypasses_faults(scope: Scope) -> bool:
    name = BYPASS_FAULTS_HEADER.encode()
    return any(key.lower() == name for key, _ in scope.get("headers", ()))


async def _discard(message: Message) -> None:
    """A `send` that throws the API's answer away (for faults applied after the request)."""


async def _drop_connection(send: Send) -> None:
    """Close the client's connection with no response at all, as a crashed proxy would.

    ASGI has no "abort" message, so this reaches the server's transport through the bound
    `send` of uvicorn's request cycle. Under another server it degrades to an error.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionAbortedError("simulated dropped connection")
    transport.abort()
    if hasattr(cycle, "disconnected"):
        cycle.disconnected = True  # tell the server not to answer on the dead socket


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ControlError(f"body is not valid JSON: {exc}") from exc


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "detail": "bad control request"}}, 400)
