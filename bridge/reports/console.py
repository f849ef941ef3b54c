"""The read-only web console: a Starlette app the daemon mounts at ``/ui`` when ``[console]
enabled = true`` (DESIGN.md §13).

Pages: ``/ui`` releases (``?state=&since=&page=``), ``/ui/releases/{key}``, ``/ui/kpi``
(``?since=&until=``), ``/ui/conflicts``, ``/ui/held``, ``/ui/dlq``. GET only; nothing on
them writes. Server-rendered HTML with inline CSS and SVG and no JavaScript; a
Content-Security-Policy forbids scripts, so even a value that slipped past escaping could
not run. With ``[console] user/password`` every page asks for HTTP basic auth (compared in
constant time).

The release overview and the KPIs read every release (seconds at 10,000 releases): they
are cached, and when the store's :meth:`~bridge.store.Store.data_version` moves (or
``cache_seconds`` pass) a background thread rebuilds them while pages keep serving the
previous figures, which say when they were computed. So a page renders in milliseconds.
Bad input is a 400 (an unknown release a 404 with a suggestion): an HTML page for a
browser, a JSON body ``{"error", "message"}`` for anything else.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from bridge.engine.safety import held_document
from bridge.errors import BadInput, did_you_mean
from bridge.reports import pages
from bridge.reports.kpi import Rates, kpis_from_store
from bridge.reports.releases import parse_day, release_rows

if TYPE_CHECKING:
    from bridge.config import ConsoleConfig
    from bridge.runtime import Runtime

#: Scripts, plugins, frames and outside resources are all refused; inline CSS and SVG are the page.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class NotFound(BadInput):
    code = "not_found"


class _Cache:
    """Built values, refreshed in the background: a request never waits for a rebuild once
    a value exists. When the store's data version moved (or the value is older than
    ``max_age``), the request gets the value it has and one thread rebuilds it; only the
    first request for a name builds while it waits."""

    def __init__(self, max_age: float, clock: Callable[[], float]) -> None:
        self._entries: dict[Any, tuple[Any, float, Any]] = {}
        self._building: set[Any] = set()
        self._lock = threading.Lock()
        self.max_age, self.clock = max_age, clock

    def get(self, name: Any, version: Any, build: Callable[[], Any]) -> Any:
        with self._lock:
            hit = self._entries.get(name)
            fresh = hit is not None and hit[0] == version and self.clock() - hit[1] <= self.max_age
            refresh = hit is not None and not fresh and name not in self._building
            if refresh:
                self._building.add(name)
        if hit is None:
            return self._store(name, version, build())
        if refresh:
            threading.Thread(target=self._rebuild, args=(name, version, build), daemon=True).start()
        return hit[2]

    def _store(self, name: Any, version: Any, value: Any) -> Any:
        with self._lock:
            self._entries[name] = (version, self.clock(), value)
        return value

    def _rebuild(self, name: Any, version: Any, build: Callable[[], Any]) -> None:
        try:
            self._store(name, version, build())
        finally:
            with self._lock:
                self._building.discard(name)


def _authorized(request: Request, user: str, password: str) -> bool:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given_user, _, given_password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Both compared, always: how long it takes says nothing about which one was wrong.
    same_user = secrets.compare_digest(given_user.encode(), user.encode())
    same_password = secrets.compare_digest(given_password.encode(), password.encode())
    return same_user and same_password


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _problem(request: Request, status: int, code: str, message: str) -> Response:
    if _wants_html(request):
        return HTMLResponse(pages.problem_page(status, message), status, headers=SECURITY_HEADERS)
    return JSONResponse({"error": code, "message": message}, status, headers=SECURITY_HEADERS)


class Console:
    """The pages over one runtime's store; :func:`create_console` wraps it in an app."""

    def __init__(self, runtime: Runtime, config: ConsoleConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.runtime, self.config = runtime, config
        self.cache = _Cache(config.cache_seconds, clock)

    def warm_up(self) -> None:
        """Build the overview and the all-time KPIs now, so the first visitor does not wait."""
        self.cache.get(("releases", None, None), self.store.data_version(), lambda: self._rows(None, None))
        self.cache.get(("kpi", None, None), self.store.data_version(), lambda: self._kpis(None, None))

    def _rows(self, state: str | None, since: date | None) -> tuple[list[dict[str, Any]], str]:
        rows = release_rows(self.store, state=state, since=since)
        return rows, f"as of {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"

    def _kpis(self, since: date | None, until: date | None) -> tuple[dict[str, Any], str]:
        now = datetime.now(UTC)
        kpis = kpis_from_store(self.store, since=since, until=until, now=now,
                               early_life_days=self.runtime.config.verify.early_life_days,
                               rates=Rates.of_config(self.runtime.config.kpi))
        return kpis, f"computed {now:%Y-%m-%d %H:%M:%S} UTC"

    @property
    def store(self) -> Any:
        return self.runtime.store

    def releases(self, request: Request) -> str:
        state = request.query_params.get("state") or None
        since_text = request.query_params.get("since") or None
        since = parse_day(since_text, "since")
        number = _page_number(request.query_params.get("page"))
        rows, listed = self.cache.get(("releases", state, since), self.store.data_version(),
                                      lambda: self._rows(state, since))
        last = max(1, -(-len(rows) // pages.PAGE_SIZE))
        if number > last:
            raise BadInput(f"page {number} is past the last page ({last})")
        return pages.releases_page(rows, state=state, since=since_text, number=number, listed=listed)

    def release(self, request: Request) -> str:
        from bridge.reports.releases import release_names
        from bridge.reports.status import find_release, release_document

        ref = request.path_params["key"]
        key = find_release(self.store, ref)
        if key is None:
            raise NotFound(f"no release {ref!r}{did_you_mean(ref, release_names(self.store))}")
        return pages.release_page(release_document(self.runtime.engine, key))

    def kpi(self, request: Request) -> str:
        since = parse_day(request.query_params.get("since"), "since")
        until = parse_day(request.query_params.get("until"), "until")
        if since and until and since > until:
            raise BadInput(f"period start {since} is after its end {until}")

        kpis, computed = self.cache.get(("kpi", since, until), self.store.data_version(),
                                        lambda: self._kpis(since, until))
        return pages.kpi_page(kpis, computed=computed)

    def conflicts(self, request: Request) -> str:
        return pages.conflicts_page(self.store.conflicts())

    def held(self, request: Request) -> str:
        return pages.held_page([held_document(row) for row in self.store.held_writes()])

    def dlq(self, request: Request) -> str:
        from bridge.reports.dlq import list_dead_letters

        return pages.dlq_page([letter.as_dict() for letter in list_dead_letters(self.runtime)])


def _page_number(text: str | None) -> int:
    if not text:
        return 1
    if not text.isdigit() or int(text) < 1:
        raise BadInput(f"page: {text!r} is not a page number (1, 2, …)")
    return int(text)


def _endpoint(console: Console, render: Callable[[Request], str]) -> Callable[[Request], Response]:
    """A GET endpoint: basic auth first (when configured), then the page or a 4xx."""
    config = console.config

    def endpoint(request: Request) -> Response:
        if config.user is not None and config.password is not None and not _authorized(
                request, config.user, config.password.get_secret_value()):
            return Response("authentication required", 401, headers={
                **SECURITY_HEADERS, "WWW-Authenticate": 'Basic realm="relbridge console", charset="UTF-8"'})
        try:
            return HTMLResponse(render(request), headers=SECURITY_HEADERS)
        except NotFound as exc:
            return _problem(request, 404, exc.code, str(exc))
        except BadInput as exc:
            return _problem(request, 400, "bad_request", str(exc))

    return endpoint


def create_console(runtime: Runtime, config: ConsoleConfig, clock: Callable[[], float] = time.monotonic,
                   *, warm: bool = False) -> Starlette:
    """The console app (paths relative to its mount point ``/ui``); ``warm`` builds the
    overview and the KPIs on a background thread right away (the daemon does)."""
    console = Console(runtime, config, clock)
    if warm:
        threading.Thread(target=console.warm_up, name="console-warm-up", daemon=True).start()
    pages_by_path = (("/", console.releases), ("/releases/{key}", console.release), ("/kpi", console.kpi),
                     ("/conflicts", console.conflicts), ("/held", console.held), ("/dlq", console.dlq))
    return Starlette(routes=[Route(path, _endpoint(console, render), methods=["GET"])
                             for path, render in pages_by_path])
