"""Fixtures shared by every test folder: a store URL on SQLite and, when
RELBRIDGE_TEST_PG_URL is set, on PostgreSQL (a fresh schema per test, dropped afterwards)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.store.connect import scratch_schema

PG_URL_VARIABLE = "RELBRIDGE_TEST_PG_URL"


def pg_schema_url(base: str) -> Iterator[str]:
    """A URL whose connections use a new, empty schema; the schema is dropped afterwards."""
    with scratch_schema(base, "relbridge_test") as url:
        yield url


def pg_base_url() -> str:
    base = os.environ.get(PG_URL_VARIABLE)
    if not base:
        pytest.skip(f"PostgreSQL tests need {PG_URL_VARIABLE}=postgresql://user@host:port/db")
    return base


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file in a folder that does not exist yet, or a fresh
    PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'relbridge.db'}"
        return
    yield from pg_schema_url(pg_base_url())
