"""The read-only web console: a Starlette app the daemon mounts at ``/ui`` when ``[console]
enabled = true`` (DESIGN.md §13).

Pages: ``/ui`` releases (``?state=&since=&page=``), ``/ui/releases/{key}``, ``/ui/kpi``
(``?since=&until=``), ``/ui/conflicts``, ``/ui/held``, ``/ui/dlq``. GET only; nothing on
them writes. Server-rendered HTML with inline CSS and SVG and no JavaScript; a
Content-Security-Policy forbids scripts, so even a value that slipped past escaping could
not run. With ``[console] user/password`` every page asks for HTTP basic auth (compared in
constant time).

The release overview and the KPIs read every release (seconds at 10,000 releases), so no
request builds them: :mod:`bridge.reports.freshness` builds them on one background thread,
starting when the console is created, keeps the last built ones in the store so a restart
shows them at once, and rebuilds when the store's data version moves or ``cache_seconds``
pass; each page says when its figures were computed. Before the first build ever finishes,
those pages say the figures are being computed (and reload themselves) instead of waiting.
Filtering and paging the overview work on the built rows and render only the rows shown.
Bad input is a 400 (an unknown release a 404 with a suggestion): an HTML page for a
browser, a JSON body ``{"error", "message"}`` for anything else.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from bridge.engine.safety import held_document
from bridge.errors import BadInput, did_you_mean
from bridge.reports import pages
from bridge.reports.builder import KpiJob, OverviewJob, ViewProcess
from bridge.reports.cost import Rates
from bridge.reports.freshness import Reading, Views
from bridge.reports.releases import check_state, parse_day, pick_rows, release_names
from bridge.timeutil import utc_now

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


#: The views the console keeps in the store and builds at start-up. A saved value has the
#: shape its job returned: when a job's shape changes, change its name here too, so that
#: a store saved by an older relbridge is rebuilt rather than misread.
OVERVIEW, ALL_TIME_KPIS = "releases", "kpi"


#: Why a page has no figures yet (a saved view survives restarts, so the first happens once per store).
NEVER_BUILT = "The console has not computed these figures for this store before."
NEW_PERIOD = "Nobody asked for this period since the console started."


class NotFound(BadInput):
    code = "not_found"


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

    def __init__(self, runtime: Runtime, config: ConsoleConfig, *, first_wait: float = 0.1, recheck: float = 1.0,
                 now: Callable[[], datetime] = utc_now) -> None:
        self.runtime, self.config, self.now = runtime, config, now
        self.process = ViewProcess(runtime.config.store.url)
        self.views = Views(runtime.store, self.process, max_age=config.cache_seconds, first_wait=first_wait,
                           recheck=recheck, now=now)
        self.views.define(OVERVIEW, OverviewJob())
        self.views.define(ALL_TIME_KPIS, self._kpi_job(None, None))

    def warm_up(self) -> None:
        """Queue the overview and the all-time KPIs (built, or checked when saved ones were
        loaded), so the first visitor does not wait."""
        self.views.refresh(OVERVIEW)
        self.views.refresh(ALL_TIME_KPIS)

    def close(self) -> None:
        """Stop building (the daemon's exit does it too)."""
        self.views.close()
        self.process.close()

    def _kpi_job(self, since: date | None, until: date | None) -> KpiJob:
        return KpiJob(since, until, self.runtime.config.verify.early_life_days, Rates.of_config(self.runtime.config.kpi))

    @property
    def store(self) -> Any:
        return self.runtime.store

    def releases(self, request: Request) -> str:
        state = request.query_params.get("state") or None
        since_text = request.query_params.get("since") or None
        since = parse_day(since_text, "since")
        number = _page_number(request.query_params.get("page"))
        check_state(state)
        reading = self.views.get(OVERVIEW)
        if reading.built is None:
            return pages.computing_page("Releases", "The release overview is being computed.",
                                       self._why(reading, NEVER_BUILT), here="/ui")
        rows = pick_rows(reading.built.value, state=state, since=since)
        last = max(1, -(-len(rows) // pages.PAGE_SIZE))
        if number > last:
            raise BadInput(f"page {number} is past the last page ({last})")
        return pages.releases_page(rows, state=state, since=since_text, number=number,
                                   listed=self._as_of("as of", reading))

    def release(self, request: Request) -> str:
        from bridge.reports.status import find_release, release_document

        ref = request.path_params["key"]
        rows = self.views.get(OVERVIEW).built
        # Names from the built overview: matching a name, or suggesting one, then reads no release.
        named = None if rows is None else ((r["key"], r["name"]) for r in rows.value)
        key = find_release(self.store, ref, named=named)
        if key is None:
            names = release_names(self.store) if rows is None else [
                n for r in rows.value for n in (r["key"], r["name"]) if n]
            raise NotFound(f"no release {ref!r}{did_you_mean(ref, names)}")
        return pages.release_page(release_document(self.runtime.engine, key))

    def kpi(self, request: Request) -> str:
        since = parse_day(request.query_params.get("since"), "since")
        until = parse_day(request.query_params.get("until"), "until")
        if since and until and since > until:
            raise BadInput(f"period start {since} is after its end {until}")
        if since is None and until is None:
            reading = self.views.get(ALL_TIME_KPIS)
        else:
            reading = self.views.get(f"kpi {since or ''}..{until or ''}", self._kpi_job(since, until))
        if reading.built is None:
            period = f" from {since or 'the first release'} to {until or 'today'}" if since or until else ""
            return pages.computing_page("Release KPIs", f"The KPIs{period} are being computed.",
                                        self._why(reading, NEW_PERIOD if period else NEVER_BUILT),
                                        here="/ui/kpi")
        built = reading.built.value
        return pages.kpi_page(built["kpis"], computed=self._as_of("computed", reading), sections=built["sections"])

    def _as_of(self, verb: str, reading: Reading) -> str:
        """When the figures shown were computed, and whether newer ones are on the way."""
        assert reading.built is not None
        at = reading.built.computed_at
        text = f"{verb} {at:%Y-%m-%d %H:%M:%S} UTC ({_age(self.now() - at)} ago)"
        if reading.failed:
            return f"{text}; refreshing them failed ({reading.failed})"
        return text + ("; newer figures are being computed" if reading.refreshing else "")

    def _why(self, reading: Reading, reason: str) -> str:
        if reading.failed:
            return f"The last attempt failed ({reading.failed}); it is tried again on the next visit."
        started = reading.asked_at or self.now()
        since = f"started {started:%H:%M:%S} UTC ({_age(self.now() - started)} ago)"
        if reading.loading:
            work = f"The console has just started and is reading the figures it saved before ({since})."
        else:
            work = f"{reason} Computing them ({since}) reads every release, which takes seconds when there are thousands."
        return f"{work} This page reloads itself every 5 s."

    def conflicts(self, request: Request) -> str:
        return pages.conflicts_page(self.store.conflicts())

    def held(self, request: Request) -> str:
        return pages.held_page([held_document(row) for row in self.store.held_writes()])

    def dlq(self, request: Request) -> str:
        from bridge.reports.dlq import list_dead_letters

        return pages.dlq_page([letter.as_dict() for letter in list_dead_letters(self.runtime)])


def _age(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min" if seconds < 7200 else f"{seconds // 3600} h"


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


def create_console(runtime: Runtime, config: ConsoleConfig, *, warm: bool = True, first_wait: float = 0.1,
                   recheck: float = 1.0, now: Callable[[], datetime] = utc_now) -> Starlette:
    """The console app (paths relative to its mount point ``/ui``), its :class:`Console` at
    ``app.state.console``. ``warm`` starts building the overview and the all-time KPIs
    right away; a request for a view never built waits at most ``first_wait`` seconds;
    ``recheck`` is how often a page asks whether the store's data moved."""
    console = Console(runtime, config, first_wait=first_wait, recheck=recheck, now=now)
    if warm:
        console.warm_up()
    pages_by_path = (("/", console.releases), ("/releases/{key}", console.release), ("/kpi", console.kpi),
                     ("/conflicts", console.conflicts), ("/held", console.held), ("/dlq", console.dlq))
    app = Starlette(routes=[Route(path, _endpoint(console, render), methods=["GET"])
                            for path, render in pages_by_path])
    app.state.console = console
    return app
