"""The webhook receiver: an ASGI app that turns signed deliveries into inbox events.

Endpoints: ``POST /webhooks/<system>`` for each webhook scheme the plugins provide,
``GET /healthz``, ``GET /readyz``, ``GET /metrics``, ``GET /openapi.json``.

A delivery is checked in this order, on the raw bytes, before anything parses it, so a
stranger cannot make us spend more than ``max_body_bytes`` of memory or run the JSON parser
and the adapter on their input:

1. size: 413 above ``max_body_bytes`` (the declared ``Content-Length`` first, then while
   the body streams in, so a chunked body is cut off at the limit too);
2. signature: the system plugin's scheme (``relbridge_webhook_schemes``) checks it; 401
   when it is missing, malformed, wrong or stale (replays), or when no secret is
   configured for that system (an unsigned delivery is never accepted);
3. content type: 415 unless ``application/json`` (UTF-8);
4. JSON: 400 for malformed JSON or a body that is not an object;
5. the adapter's ``parse_webhook``: 400 when it cannot read the body.

The handler only enqueues (one short transaction per hint, off the event loop) and answers
202; the worker re-reads every object, so the body is a hint, never the state. Repeated
deliveries are recognised by their delivery id. Every refusal is a JSON body
``{"error": <stable code>, "message": <what to fix>}``; never a traceback, never a 5xx for
bad input (503 only when the store is unreachable, so the sender retries).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from bridge.adapter import Adapter, WebhookHint
from bridge.config import WebhooksConfig
from bridge.daemon.inbox import Inbox
from bridge.daemon.metrics import CONTENT_TYPE_LATEST, Metrics
from bridge.daemon.watch import store_error
from bridge.errors import BadInput
from bridge.signatures import SignatureRejected, WebhookScheme

log = logging.getLogger(__name__)

__all__ = ["create_app", "openapi_document", "READY_CACHE_SECONDS"]

READY_CACHE_SECONDS = 5.0  # probes within this time reuse the last readiness answer
READY_LEASE = "heartbeat/receiver"  # the row the default readiness check writes

_DIGITS = re.compile(r"[0-9]{1,20}")
_UTF8 = {"utf-8", "utf8"}

ReadyCheck = Callable[[], Mapping[str, str | None]]
Clock = Callable[[], float]


class Refusal(Exception):
    """A request we do not accept, answered as ``{"error": code, "message": message}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> JSONResponse:
        # A body we stopped reading: close the connection rather than drain the rest of it.
        headers = {"Connection": "close"} if self.status == 413 else None
        return error_response(self.status, self.code, self.message, headers)


def error_response(status: int, code: str, message: str,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status, headers=headers)


# -- signatures --------------------------------------------------------------------------------


def check_signature(scheme: WebhookScheme, headers: Headers, body: bytes, now: float) -> None:
    """The plugin's check of ``body``; a missing secret refuses every delivery."""
    secret = scheme.secret.get_secret_value() if scheme.secret is not None else ""
    if not secret:
        raise Refusal(401, "secret_not_configured",
                      f"no webhook secret is configured for {scheme.system}: set "
                      f"{scheme.secret_setting}; unsigned deliveries are never accepted")
    try:
        scheme.verify(secret.encode(), headers, body, now)
    except SignatureRejected as exc:
        raise Refusal(401, exc.code, exc.message) from None


# -- reading a delivery ------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not _DIGITS.fullmatch(declared.strip()):
            raise Refusal(400, "invalid_content_length", "Content-Length must be a number")
        if int(declared) > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise Refusal(400, "incomplete_body", "the connection closed before the body ended") from None
    return b"".join(chunks)


def _too_large(limit: int) -> Refusal:
    return Refusal(413, "payload_too_large",
                   f"the body exceeds {limit} bytes ([webhooks] max_body_bytes)")


def check_content_type(headers: Headers) -> None:
    media_type, *params = (headers.get("content-type") or "").split(";")
    if media_type.strip().lower() != "application/json":
        raise Refusal(415, "unsupported_media_type", "send the body as application/json")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in _UTF8:
            raise Refusal(415, "unsupported_media_type", "send the JSON body in UTF-8")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_object(body: bytes) -> dict[str, Any]:
    """Strict JSON (no NaN/Infinity) that must be an object."""
    try:
        value = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise Refusal(400, "malformed_json", f"the body is not valid JSON: {reason}") from None
    if not isinstance(value, dict):
        raise Refusal(400, "not_an_object", "the body must be a JSON object")
    return value


def hints_of(adapter: Adapter, headers: Headers, body: dict[str, Any]) -> list[WebhookHint]:
    try:
        return adapter.parse_webhook(headers, body)
    except BadInput as exc:
        raise Refusal(400, exc.code, exc.message) from None
    except Exception:  # an adapter bug must not become a 500 the sender retries forever
        log.exception("%s adapter could not read a webhook body", adapter.name)
        raise Refusal(400, "unreadable_payload",
                      f"the {adapter.name} adapter could not read this body") from None


# -- the receiver ------------------------------------------------------------------------------


class Receiver:
    """The webhook endpoints' shared state: inbox, adapters, config, metrics, clock."""

    def __init__(self, inbox: Inbox, adapters: Mapping[str, Adapter], config: WebhooksConfig,
                 metrics: Metrics, clock: Clock) -> None:
        self.inbox, self.adapters, self.config = inbox, adapters, config
        self.metrics, self.clock = metrics, clock

    def endpoint(self, spec: WebhookScheme) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            response = await self.receive(spec, request)
            self.metrics.webhook_requests.labels(spec.path, str(response.status_code)).inc()
            return response

        handle.__name__ = f"receive_{spec.system}"
        return handle

    async def receive(self, spec: WebhookScheme, request: Request) -> Response:
        try:
            adapter = self.adapters.get(spec.system)
            if adapter is None:
                raise Refusal(404, "system_not_enabled", f"no {spec.system} adapter is enabled")
            body = await read_body(request, self.config.max_body_bytes)
            check_signature(spec, request.headers, body, self.clock())
            check_content_type(request.headers)
            hints = hints_of(adapter, request.headers, parse_object(body))
        except Refusal as refusal:
            log.warning("refused a %s webhook from %s: %s (%s)", spec.system,
                        request.client.host if request.client else "?", refusal.code,
                        refusal.status)
            return refusal.response()
        if not hints:
            self.metrics.events_ignored.labels(spec.system, "not_synced").inc()
            return JSONResponse({"accepted": 0, "ignored": True}, 202)
        try:
            fresh = await run_in_threadpool(self.enqueue, hints)
        except Exception:
            log.exception("could not store a %s webhook", spec.system)
            return error_response(503, "store_unavailable",
                                  "the event store is unavailable; deliver again later",
                                  {"Retry-After": "5"})
        return JSONResponse({"accepted": len(fresh), "duplicates": len(hints) - len(fresh)}, 202)

    def enqueue(self, hints: list[WebhookHint]) -> list[WebhookHint]:
        """Queue each hint (one short transaction each); returns those not seen before.

        Not one transaction for all: a caller's inbox may act on each accepted event (the
        daemon wakes its workers), which must not happen before the event is committed. A
        failure half-way is safe: the sender retries, and the hints already queued are
        recognised by their delivery keys.
        """
        fresh = [hint for hint in hints if self.inbox.enqueue(
            hint.system, hint.entity, hint.id, source="webhook",
            delivery_id=delivery_key(hint, hints), deleted=hint.deleted)]
        for hint in fresh:
            self.metrics.events_received.labels(hint.system, hint.entity, "webhook").inc()
        if len(fresh) < len(hints):
            self.metrics.events_ignored.labels(hints[0].system, "duplicate").inc(
                len(hints) - len(fresh))
        return fresh


def delivery_key(hint: WebhookHint, hints: list[WebhookHint]) -> str | None:
    """The id that recognises a repeated delivery of ``hint``.

    A delivery id names the whole delivery; when it yields several hints under one id,
    each gets its own key, or the second would be dropped as a repeat of the first.
    """
    if hint.delivery_id is None:
        return None
    if sum(other.delivery_id == hint.delivery_id for other in hints) == 1:
        return hint.delivery_id
    return f"{hint.delivery_id}#{hint.entity}:{hint.id}"


# -- health ------------------------------------------------------------------------------------


class CachedReadiness:
    """``ready()`` answers, reused for ``ttl`` seconds so probes do not hammer the systems.

    Called from worker threads; the lock makes concurrent probes share one check.
    """

    def __init__(self, check: ReadyCheck, clock: Clock, ttl: float = READY_CACHE_SECONDS) -> None:
        self.check, self.clock, self.ttl = check, clock, ttl
        self._lock = threading.Lock()
        self._answer: dict[str, str | None] | None = None
        self._at = 0.0

    def __call__(self) -> dict[str, str | None]:
        with self._lock:
            if self._answer is not None and self.clock() - self._at < self.ttl:
                return self._answer
            try:
                answer = dict(self.check())
            except Exception as exc:
                log.exception("readiness check failed")
                answer = {"ready": f"the readiness check failed: {type(exc).__name__}"}
            self._answer, self._at = answer, self.clock()
            return answer


def store_check(inbox: Inbox) -> ReadyCheck:
    """The default readiness check when the daemon gives none: does the store take a write
    (a heartbeat lease)? A store that answers reads but refuses writes would otherwise be
    "ready" while every delivery gets a 503."""

    def check() -> dict[str, str | None]:
        try:
            inbox.store.acquire_lease(READY_LEASE, READY_LEASE, READY_CACHE_SECONDS * 6)
        except Exception as exc:
            return {"store": f"cannot write: {store_error(exc)}"}
        return {"store": None}

    return check


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def readyz_endpoint(readiness: CachedReadiness) -> Callable[[Request], Any]:
    async def readyz(request: Request) -> Response:
        checks = await run_in_threadpool(readiness)
        ok = all(problem is None for problem in checks.values())
        body = {"status": "ok" if ok else "unavailable",
                "checks": {name: problem or "ok" for name, problem in checks.items()}}
        return JSONResponse(body, 200 if ok else 503)

    return readyz


def metrics_endpoint(inbox: Inbox, metrics: Metrics) -> Callable[[Request], Any]:
    async def metrics_text(request: Request) -> Response:
        try:
            await run_in_threadpool(metrics.refresh_from, inbox)
        except Exception:  # serve the counters anyway; the gauges keep their last values
            log.warning("could not refresh the queue gauges", exc_info=True)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return metrics_text


# -- errors the router raises ------------------------------------------------------------------


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: ("not_found", f"no endpoint at {request.url.path}; see /openapi.json"),
             405: ("method_not_allowed", f"{request.method} is not allowed on {request.url.path}")}
    code, message = codes.get(exc.status_code, ("http_error", str(exc.detail)))
    return error_response(exc.status_code, code, message, exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    return error_response(500, "internal_error", "the receiver failed; see its log")


# -- the app -----------------------------------------------------------------------------------


def create_app(
    *,
    inbox: Inbox,
    adapters: Mapping[str, Adapter],
    config: WebhooksConfig,
    schemes: Mapping[str, WebhookScheme],
    metrics: Metrics,
    ready: ReadyCheck | None = None,
    clock: Clock = time.time,
    console: ASGIApp | None = None,
) -> Starlette:
    """The receiver app: one endpoint per webhook scheme (``Hooks.webhook_schemes``).
    ``ready()`` returns ``{check: None | problem}`` (None = ok); without one, readiness only
    checks that the store takes a write. ``console`` (``bridge.reports.console``) is mounted at /ui."""
    receiver = Receiver(inbox, adapters, config, metrics, clock)
    endpoints = [schemes[system] for system in sorted(schemes)]
    readiness = CachedReadiness(ready or store_check(inbox), clock)
    document = openapi_document(endpoints)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    routes = [Route(spec.path, receiver.endpoint(spec), methods=["POST"]) for spec in endpoints]
    routes += [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz_endpoint(readiness), methods=["GET"]),
        Route("/metrics", metrics_endpoint(inbox, metrics), methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    if console is not None:
        routes.append(Mount("/ui", app=console))
    return Starlette(routes=routes,
                     exception_handlers={HTTPException: http_error, Exception: server_error})



# -- OpenAPI -----------------------------------------------------------------------------------


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}


def _header(name: str, description: str, pattern: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": True, "description": description,
            "schema": {"type": "string", "pattern": pattern}}


def _webhook(summary: str, headers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "parameters": headers,
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"type": "object", "description": "the system's webhook body"}}}},
        "responses": {
            "202": {"description": "queued (or ignored: an event relbridge does not sync)",
                    "content": {"application/json": {"schema": {"oneOf": [
                        {"$ref": "#/components/schemas/Accepted"},
                        {"$ref": "#/components/schemas/Ignored"}]}}}},
            "400": _error("malformed JSON, not an object, or not the system's webhook body"),
            "401": _error("signature missing, malformed or wrong; stale timestamp; "
                          "or no secret configured for this system"),
            "404": _error("the system's adapter is not enabled"),
            "413": _error("the body exceeds [webhooks] max_body_bytes"),
            "415": _error("the body is not application/json in UTF-8"),
            "503": _error("the event store is unavailable; deliver again later"),
        },
    }}


def _get(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": responses}}


def _json(description: str, ref: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{ref}"}}}}


_COUNT = {"type": "integer", "minimum": 0}
_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error", "message"], "properties": {
        "error": {"type": "string", "description": "stable code, e.g. invalid_signature"},
        "message": {"type": "string", "description": "what to fix"}}},
    "Accepted": {"type": "object", "required": ["accepted", "duplicates"],
                 "properties": {"accepted": _COUNT, "duplicates": _COUNT}},
    "Ignored": {"type": "object", "required": ["accepted", "ignored"],
                "properties": {"accepted": {"type": "integer", "enum": [0]},
                               "ignored": {"type": "boolean", "enum": [True]}}},
    "Health": {"type": "object", "required": ["status"],
               "properties": {"status": {"type": "string", "enum": ["ok"]}}},
    "Ready": {"type": "object", "required": ["status", "checks"], "properties": {
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
        "checks": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "\"ok\" or what is wrong, per check"}}},
}


def openapi_document(schemes: Iterable[WebhookScheme] = ()) -> dict[str, Any]:
    """The OpenAPI 3.1 description served at ``/openapi.json``: the fixed routes and one
    webhook path per scheme, with the headers the scheme requires."""
    webhooks = {scheme.path: _webhook(scheme.summary, [
        _header(header.name, header.description, header.pattern) for header in scheme.headers])
        for scheme in schemes}
    return {
        "openapi": "3.1.0",
        "info": {"title": "relbridge webhook receiver", "version": "1"},
        "paths": {
            **webhooks,
            "/healthz": _get("Liveness", {"200": _json("the process is alive", "Health")}),
            "/readyz": _get("Readiness: the store takes a write, both systems authenticated", {
                "200": _json("ready", "Ready"), "503": _json("not ready", "Ready")}),
            "/metrics": _get("Prometheus metrics", {"200": {
                "description": "Prometheus text exposition",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}),
            "/openapi.json": _get("This document", {"200": {
                "description": "OpenAPI 3.1", "content": {"application/json": {
                    "schema": {"type": "object"}}}}}),
        },
        "components": {"schemas": _SCHEMAS},
    }
