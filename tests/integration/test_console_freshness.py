"""How fresh the console's figures are and what a person sees before there are any, on
SQLite and PostgreSQL: the views are built at start-up in the builder process, saved in the
store and shown at once after a restart, rebuilt when the data moves, and a page never
built answers at once that its figures are being computed."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from starlette.testclient import TestClient

from bridge.reports.console import create_console
from bridge.reports.kpi import kpis_from_store
from tests.integration.console_support import ConsoleSite, console_site, record_data
from tests.integration.daemon_support import start_daemon

HTML = {"accept": "text/html"}
BUILD_SECONDS = 120  # the builder process's start plus a small store's views, with room for a busy machine


def text_of(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def built(site: ConsoleSite, *names: str) -> None:
    for name in names or ("releases", "kpi"):
        assert site.console.views.wait(name, BUILD_SECONDS), f"the {name} view was not built in time"


class Gate:
    """Holds every build until opened, then lets the console's own builder run it."""

    def __init__(self, run: Callable[[Any], Any]) -> None:
        self.run, self.open = run, threading.Event()

    def __call__(self, job: Any) -> Any:
        assert self.open.wait(BUILD_SECONDS)
        return self.run(job)


@pytest.fixture
def site(store_url: str):
    made = console_site(store_url)
    yield made
    made.close()


def test_start_up_builds_and_saves_the_views_before_anyone_asks(store_url: str) -> None:
    site = console_site(store_url, first_wait=0)  # no request waits: only the start-up build can have run
    try:
        built(site)
        saved = site.runtime.store.snapshot("releases")
        assert saved is not None and len(saved.value) == 63
        kpis = kpis_from_store(site.runtime.store, since=None, until=None, now=datetime.now(UTC))
        assert site.runtime.store.snapshot("kpi").value["kpis"]["releases"] == kpis["releases"]
        client = site.client()
        start = time.perf_counter()
        page = text_of(client.get("/ui/", headers=HTML).text)
        assert time.perf_counter() - start < 5
        assert "Releases (63)" in page and "being computed" not in page
        assert f"as of {saved.computed_at:%Y-%m-%d %H:%M:%S} UTC" in page
        assert "being computed" not in client.get("/ui/kpi", headers=HTML).text
    finally:
        site.close()


def test_a_page_never_built_says_so_at_once_and_shows_figures_once_built(store_url: str) -> None:
    site = console_site(store_url, warm=False, first_wait=0.05)
    gate = site.console.views.run = Gate(site.console.views.run)
    try:
        client = site.client()
        client.get("/ui/", headers=HTML)  # the builder's first job: look for saved views (none), then build
        deadline = time.monotonic() + BUILD_SECONDS
        while not all(view.loaded for view in site.console.views._views.values() if view.keep):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        for path, headline, reason in (
                ("/ui/", "The release overview is being computed.", "has not computed these figures for this store"),
                ("/ui/kpi", "The KPIs are being computed.", "has not computed these figures for this store"),
                ("/ui/kpi?since=2026-01-01", "The KPIs from 2026-01-01 to today are being computed.",
                 "Nobody asked for this period since the console started")):
            start = time.perf_counter()
            response = client.get(path, headers=HTML)
            assert time.perf_counter() - start < 2, path  # the build is held: only the page's own work
            assert response.status_code == 200 and headline in text_of(response.text), path
            assert reason in response.text and "reloads itself" in response.text, path
            assert '<meta http-equiv="refresh" content="5">' in response.text and "<script" not in response.text
        assert client.get("/ui/?state=live").status_code == 400  # bad input is still refused at once
        assert client.get("/ui/conflicts", headers=HTML).status_code == 200  # pages read directly are unaffected
        gate.open.set()
        built(site, "releases", "kpi")
        assert "Releases (63)" in text_of(client.get("/ui/", headers=HTML).text)
        assert "Change failure rate" in client.get("/ui/kpi", headers=HTML).text
    finally:
        gate.open.set()
        site.close()


def test_a_failed_build_is_explained_and_tried_again(store_url: str) -> None:
    site = console_site(store_url, warm=False, first_wait=30)
    real = site.console.views.run

    def broken(job: Any) -> Any:
        raise RuntimeError("store went away")

    try:
        site.console.views.run = broken
        page = text_of(site.client().get("/ui/", headers=HTML).text)
        assert "The last attempt failed (RuntimeError: store went away)" in page
        site.console.views.run = real
        assert "Releases (63)" in text_of(site.client().get("/ui/", headers=HTML).text)
    finally:
        site.close()


def restarted(site: ConsoleSite, **options: Any) -> tuple[Any, TestClient]:
    """A new console over the same store, as after a daemon restart (the old one stopped)."""
    site.console.close()
    app = create_console(site.runtime, site.runtime.config.console, **options)
    return app.state.console, TestClient(app)


def test_saved_views_are_shown_at_once_after_a_restart_then_refreshed_when_data_moves(site) -> None:
    built(site)
    saved = site.runtime.store.snapshot("releases")
    kpis = site.runtime.store.snapshot("kpi")
    console, client = restarted(site, warm=False, first_wait=BUILD_SECONDS, recheck=0)
    try:
        gate = console.views.run = Gate(console.views.run)  # nothing may be built before the pages answer
        start = time.perf_counter()
        page = text_of(client.get("/", headers=HTML).text)  # waits only for the saved views to be read
        assert time.perf_counter() - start < BUILD_SECONDS / 2
        assert "Releases (63)" in page and f"as of {saved.computed_at:%Y-%m-%d %H:%M:%S} UTC" in page
        kpi_page = text_of(client.get("/kpi", headers=HTML).text)
        assert f"computed {kpis.computed_at:%Y-%m-%d %H:%M:%S} UTC" in kpi_page
        assert f"{kpis.value['kpis']['releases']} Releases" in kpi_page
        gate.open.set()
        assert console.views.wait("releases", BUILD_SECONDS)
        assert site.runtime.store.snapshot("releases") == saved  # same data, young figures: not rebuilt

        site.runtime.store.put_record("release", "RLSE7777777", record_data({"name": "Late addition", "state": "planned"}))
        client.get("/", headers=HTML)  # sees the old figures and asks for a check
        assert console.views.wait("releases", BUILD_SECONDS)
        page = text_of(client.get("/", headers=HTML).text)
        assert "Releases (64)" in page and "Late addition" in page
        again = site.runtime.store.snapshot("releases")
        assert again is not None and again.data_version != saved.data_version and len(again.value) == 64
    finally:
        console.close()


def test_the_builder_process_is_started_again_after_it_died(site) -> None:
    built(site)
    child = site.console.process._child
    assert child is not None
    child.kill()
    child.wait(10)
    site.runtime.store.put_record("release", "RLSE7777778", record_data({"name": "After the crash", "state": "planned"}))
    site.console.views.recheck = 0
    client = site.client()
    client.get("/ui/", headers=HTML)
    assert site.console.views.wait("releases", BUILD_SECONDS)
    assert "Releases (64)" in text_of(client.get("/ui/", headers=HTML).text)


def test_the_daemon_builds_the_views_at_start_up_and_stops_the_builder_with_it(bridge) -> None:
    daemon = start_daemon(bridge, console={"enabled": True})
    try:
        assert daemon.console is not None
        assert daemon.console.views.wait("releases", BUILD_SECONDS)  # nobody asked: the start-up build ran
        page = requests.get(f"{daemon.receiver.url}/ui/", headers=HTML, timeout=30)
        assert page.status_code == 200 and "Releases (" in text_of(page.text) and "being computed" not in page.text
        child = daemon.console.process._child
        assert child is not None and child.poll() is None
    finally:
        daemon.stop(timeout=5)
    assert child.poll() is not None  # the builder process ends with the daemon
