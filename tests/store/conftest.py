"""Fixtures: every store test runs on SQLite and, when RELBRIDGE_TEST_PG_URL is set, on
PostgreSQL (``store_url`` from tests/conftest.py: a fresh schema per test, dropped afterwards)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bridge.store import Store


class FakeClock:
    """A settable "now" for the store, the inbox and leases."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2024, 5, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def store(store_url: str, clock: FakeClock) -> Iterator[Store]:
    opened = Store(store_url, clock=clock)
    try:
        yield opened
    finally:
        opened.close()
