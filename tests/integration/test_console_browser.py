"""The console in a real browser: headless Chromium (the distribution's package; .ci/run
installs it) loads each page from the daemon's receiver served by uvicorn, and the tests
read what it rendered — the DOM after parsing and any script run, and a screenshot.

Skipped, with the reason, when no Chromium is installed.
"""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bridge.daemon.service import ReceiverServer
from tests.integration.console_support import HOSTILE_NAMES, ConsoleSite, console_site

CHROMIUM = next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))),
                None)
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (apt-get install chromium)")]


def browse(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         "--disable-dev-shm-usage", "--window-size=1280,1000", *extra, url],
        capture_output=True, text=True, timeout=90, check=True)


class _Visible(HTMLParser):
    """The text a person sees (not inside <style>, <title> or <head>), and every element seen."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._hidden += tag in ("style", "title", "head")

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in ("style", "title", "head")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.text.append(data)


def rendered(url: str) -> _Visible:
    seen = _Visible()
    seen.feed(browse(url, "--dump-dom").stdout)
    seen.text = [re.sub(r"\s+", " ", " ".join(seen.text))]
    return seen


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ConsoleSite]]:
    site = console_site(f"sqlite:///{tmp_path_factory.mktemp('console')}/s.db")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ReceiverServer(site.app, f"127.0.0.1:{port}")
    server.start()
    try:
        yield server.url, site
    finally:
        server.stop(5)
        site.close()


@pytest.mark.parametrize(("path", "sees"), [
    ("/ui", ["Releases (63)", "Authorization / readiness", "RLSE0000001", "Planned end from"]),
    ("/ui/releases/RLSE0000001", ["Checks", "Authorization", "Changes (3)", "CHG0000001A", "History"]),
    ("/ui/kpi", ["Release KPIs", "Deployments per week", "Change failure rate", "Trends by month", "Month", "Incidents caused, by release"]),
    ("/ui/conflicts", ["Conflicts (2)", "planned_end", "Rotate <b>keys</b>", "last_writer_wins"]),
    ("/ui/held", ["Held writes (1)", "state: deployed → planned", "relbridge held release ID"]),
    ("/ui/dlq", ["Dead letters (2)", "ACL denies write of rm_release.state", "relbridge dlq retry ID"]),
])
def test_a_person_sees_each_page(served: tuple[str, ConsoleSite], path: str, sees: list[str]) -> None:
    url, _ = served
    page = rendered(url + path)
    for text in sees:
        assert text in page.text[0], (path, text)
    nav = [attrs.get("href") for tag, attrs in page.tags if tag == "a"][:5]
    assert nav == ["/ui", "/ui/kpi", "/ui/conflicts", "/ui/held", "/ui/dlq"]
    assert not [tag for tag, _ in page.tags if tag in ("script", "iframe", "link")]


def test_trend_charts_are_drawn(served: tuple[str, ConsoleSite]) -> None:
    url, _ = served
    page = rendered(url + "/ui/kpi")
    assert sum(tag == "svg" for tag, _ in page.tags) >= 6
    assert sum(tag == "polyline" for tag, _ in page.tags) >= 5  # a line per trend, months of data


def test_markup_in_a_name_is_shown_and_never_runs(served: tuple[str, ConsoleSite]) -> None:
    url, _ = served
    for key, name in HOSTILE_NAMES.items():
        page = rendered(f"{url}/ui/releases/{key}")
        assert name in page.text[0]  # the person reads the name as typed
        body = next(attrs for tag, attrs in page.tags if tag == "body")
        assert "data-pwned" not in body  # nothing it contains ran
        assert not [tag for tag, _ in page.tags if tag in ("script", "img")]
    listing = rendered(url + "/ui")
    assert all(name in listing.text[0] for name in HOSTILE_NAMES.values())


def test_a_missing_release_page_suggests_one(served: tuple[str, ConsoleSite]) -> None:
    url, _ = served
    page = rendered(url + "/ui/releases/RLSE000001")
    assert "404" in page.text[0] and "(did you mean 'RLSE00000" in page.text[0]


def test_screenshots_show_a_drawn_page(served: tuple[str, ConsoleSite], tmp_path: Path) -> None:
    url, _ = served
    shot = tmp_path / "kpi.png"
    browse(url + "/ui/kpi", f"--screenshot={shot}")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 1000) and len(data) > 20_000  # a blank page compresses to ~5 kB
