"""Fixtures for end-to-end sync tests: both simulators, a store (SQLite, and PostgreSQL
when RELBRIDGE_TEST_PG_URL is set), and a runtime wired like the CLI wires it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bridge.daemon.service import Daemon
from bridge.runtime import Runtime
from bridge.sim import Simulators, start_simulators
from tests.integration.helpers import Jira, ServiceNow, make_config


class Bridge:
    """One test's world: simulators, a store URL, and fresh runtimes on demand."""

    def __init__(self, sims: Simulators, store_url: str) -> None:
        self.sims = sims
        self.store_url = store_url
        self.sn = ServiceNow(sims.servicenow_url)
        assert sims.jira_url is not None
        self.jira = Jira(sims.jira_url)
        self.sections: dict[str, dict[str, Any]] = {}
        self.extra_plugins: list[tuple[str, Any]] = []
        self._runtimes: list[Runtime] = []

    def config(self, **sections: dict[str, Any]):
        merged = {**self.sections, **sections}
        return make_config(self.sims.servicenow_url, self.sims.jira_url or "", self.store_url, **merged)

    def runtime(self, **sections: dict[str, Any]) -> Runtime:
        rt = Runtime(self.config(**sections), extra_plugins=self.extra_plugins)
        self._runtimes.append(rt)
        return rt

    def sync(self, **sections: dict[str, Any]):
        rt = self.runtime(**sections)
        try:
            return rt.engine.sync_once()
        finally:
            rt.close()

    def close(self) -> None:
        for rt in self._runtimes:
            rt.close()


@pytest.fixture
def bridge_factory(store_url: str) -> Iterator[Callable[..., Bridge]]:
    started: list[tuple[Simulators, Bridge]] = []

    def factory(**options: Any) -> Bridge:
        options.setdefault("seed", "empty")
        sims = start_simulators(**options)
        bridge = Bridge(sims, store_url)
        started.append((sims, bridge))
        return bridge

    yield factory
    for sims, bridge in started:
        bridge.close()
        sims.stop()


@pytest.fixture
def bridge(bridge_factory: Callable[..., Bridge]) -> Bridge:
    return bridge_factory()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons a test started (append them): stopped afterwards, whatever happened."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop(timeout=5)
