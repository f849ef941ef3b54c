"""The console over HTTP (the daemon's receiver app, /ui mounted), on SQLite and PostgreSQL:
pages, basic auth, headers, bad input, escaping, and that it is off unless enabled."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

import pytest

from bridge.config import Config, SyncConfig
from bridge.daemon.inbox import Inbox
from bridge.daemon.metrics import Metrics
from bridge.daemon.receiver import create_app
from bridge.reports.kpi import Rates, kpis_from_store
from tests.integration.console_support import HOSTILE_NAMES, console_site

HTML = {"accept": "text/html"}
PAGES = ("/ui/", "/ui/kpi", "/ui/conflicts", "/ui/held", "/ui/dlq", "/ui/releases/RLSE0000001")


def text_of(page: str) -> str:
    """What a person reads: the text between tags, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


@pytest.fixture
def site(store_url: str):
    made = console_site(store_url)
    yield made
    made.close()


def test_every_page_renders_with_its_content_and_no_script(site) -> None:
    client = site.client()
    seen = {path: client.get(path, headers=HTML) for path in PAGES}
    for path, response in seen.items():
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"].startswith("text/html")
        assert "script-src" not in response.headers["content-security-policy"]  # default-src 'none' applies
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert "<script" not in response.text and "http://" not in response.text.replace("http://testserver", "")
    assert "Releases (63)" in text_of(seen["/ui/"].text)  # 60 seeded + the markup-named ones
    assert "Deployments per week" in seen["/ui/kpi"].text and "<svg" in seen["/ui/kpi"].text
    assert "last_writer_wins" in seen["/ui/conflicts"].text
    assert "Rotate &lt;b&gt;keys&lt;/b&gt;" in seen["/ui/conflicts"].text
    assert "moves a deployed release back" not in seen["/ui/held"].text  # the reason is not a column
    assert "state: deployed → planned" in text_of(seen["/ui/held"].text)
    assert "ACL denies write of rm_release.state" in seen["/ui/dlq"].text
    detail = text_of(seen["/ui/releases/RLSE0000001"].text)
    assert "Changes (3)" in detail and "History" in detail and "Authorization" in detail


def test_kpi_page_shows_the_same_figures_as_the_command(site) -> None:
    page = text_of(site.client().get("/ui/kpi", headers=HTML).text)
    kpis = kpis_from_store(site.runtime.store, since=None, until=None, now=datetime.now(UTC))
    assert f"{kpis['change_failure_rate_pct']} % Change failure rate" in page
    assert f"{kpis['releases']} Releases" in page


def test_kpi_page_shows_effort_and_cost_at_the_configured_rates(store_url: str) -> None:
    site = console_site(store_url, releases=20, kpi={"hourly_rate": 100, "group_rates": {"ops": 150}})
    try:
        page = text_of(site.client().get("/ui/kpi", headers=HTML).text)
        kpis = kpis_from_store(site.runtime.store, since=None, until=None, now=datetime.now(UTC),
                               rates=Rates(100.0, {"ops": 150.0}))
        assert kpis["direct_cost_total"] and f"{kpis['direct_cost_total']} Direct cost" in page
        assert "Effort by release state (hours logged)" in page
        state, hours = next(iter(kpis["effort_hours_by_state"].items()))
        assert f"{state} {hours} {kpis['direct_cost_by_state'][state]}" in page
    finally:
        site.close()


def test_names_are_shown_not_run(site) -> None:
    client = site.client()
    listing = client.get("/ui/", headers=HTML).text
    for key, name in HOSTILE_NAMES.items():
        assert name not in listing
        page = client.get(f"/ui/releases/{key}", headers=HTML).text
        assert name not in page and "<img" not in page and "<script" not in page
        assert name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;") \
            .replace("'", "&#x27;") in page


def test_bad_input_is_a_4xx_html_for_people_json_for_scripts(site) -> None:
    client = site.client()
    missing = client.get("/ui/releases/RLSE000001", headers=HTML)
    assert missing.status_code == 404 and "did you mean" in missing.text
    assert client.get("/ui/releases/RLSE000001").json()["error"] == "not_found"
    for path, message in (("/ui/?since=2024-13-01", "since: '2024-13-01' is not a date"),
                          ("/ui/?page=0", "is not a page number"), ("/ui/?page=99", "past the last page"),
                          ("/ui/?state=live", "unknown release state 'live'"),
                          ("/ui/kpi?since=2024-05-01&until=2024-04-01", "is after its end")):
        response = client.get(path)
        assert response.status_code == 400, path
        assert response.json()["error"] == "bad_request" and message in response.json()["message"], path
    assert client.post("/ui/").status_code == 405  # read-only


def test_filter_and_pages(site) -> None:
    client = site.client()
    closed = text_of(client.get("/ui/?state=closed", headers=HTML).text)
    assert " closed " in closed and " deploying " not in closed.split("Filter", 1)[1]
    assert "Page 1 of 1" not in closed


def test_basic_auth_when_configured(store_url: str) -> None:
    site = console_site(store_url, releases=3, console={"user": "ops", "password": "s3cret"})
    try:
        client = site.client()
        refused = client.get("/ui/kpi")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
        good = base64.b64encode(b"ops:s3cret").decode()
        bad = base64.b64encode(b"ops:wrong").decode()
        assert client.get("/ui/kpi", headers={"authorization": f"Basic {good}"}).status_code == 200
        assert client.get("/ui/kpi", headers={"authorization": f"Basic {bad}"}).status_code == 401
        assert client.get("/ui/kpi", headers={"authorization": "Basic !!!"}).status_code == 401
        assert client.get("/healthz").status_code == 200  # the rest of the receiver is not behind it
    finally:
        site.close()


def test_console_is_off_unless_enabled(tmp_path) -> None:
    config = Config.model_validate({"store": {"url": f"sqlite:///{tmp_path}/s.db"}})
    assert config.console.enabled is False
    from bridge.runtime import Runtime

    runtime = Runtime(config)
    try:
        app = create_app(inbox=Inbox.from_config(runtime.store, SyncConfig()), adapters={}, config=config.webhooks,
                         schemes={}, metrics=Metrics())
        from starlette.testclient import TestClient

        assert TestClient(app).get("/ui/").status_code == 404
    finally:
        runtime.close()
