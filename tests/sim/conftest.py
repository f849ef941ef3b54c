"""Fixtures that run the simulators as real HTTP servers on loopback ports."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jira
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.sim import Simulators, start_simulators
from bridge.sim.jira.app import create_jira_app
from bridge.sim.server import RunningServer, start_in_thread

SimsFactory = Callable[..., Simulators]


@pytest.fixture
def sims_factory() -> Iterator[SimsFactory]:
    """Start simulators with any `start_simulators` options; all are stopped at teardown."""
    started: list[Simulators] = []

    def factory(**options: Any) -> Simulators:
        options.setdefault("seed", "empty")
        sims = start_simulators(**options)
        started.append(sims)
        return sims

    yield factory
    for sims in reversed(started):
        sims.stop()


@pytest.fixture
def sims(sims_factory: SimsFactory) -> Simulators:
    """Both simulators, empty seed, Jira cloud flavour; fresh for each test (start-up is ~0.1 s)."""
    return sims_factory(seed="empty", jira_flavor="cloud")


@pytest.fixture
def servicenow_url(sims: Simulators) -> str:
    return sims.servicenow_url


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """A loopback HTTP endpoint that records POSTs; `statuses` scripts its first answers."""

    server: RunningServer | None = None
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"{self.server.url}/hook"

    async def endpoint(self, request: Request) -> Response:
        self.received.append(Received(dict(request.headers), await request.body()))
        self.arrived.set()
        status = self.statuses.pop(0) if self.statuses else 204
        return Response(status_code=status)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    app = Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])
    receiver.server = start_in_thread(app)
    yield receiver
    receiver.server.stop()


# --- a demo Jira of each flavor, shared by a test module, with the real client -----------


@pytest.fixture(scope="module", params=["cloud", "server"])
def flavor(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def url(flavor: str) -> Iterator[str]:
    """A demo-seeded Jira simulator of ``flavor``, for one test module."""
    sim = create_jira_app(flavor=flavor, seed="demo")
    server = start_in_thread(sim.app)
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def client(url: str) -> jira.JIRA:
    return jira.JIRA(server=url, basic_auth=("admin", "admin"), max_retries=0)
