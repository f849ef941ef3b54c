"""The daemon's store watch checks SQLite's files before what reaches SQLite: every statement
(BEGIN included) and the COMMIT of a write; a read's begin and commit send nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.daemon import watch
from bridge.daemon.metrics import Metrics
from bridge.daemon.watch import StoreFenced, StoreWatch
from bridge.store import Store


def test_the_guard_checks_statements_and_write_commits_and_fences_the_store(tmp_path: Path, monkeypatch):
    checks: list[int] = []
    problem: list[str | None] = [None]

    def counted(files: list[Path]) -> str | None:
        checks.append(len(files))
        return problem[0]

    store = Store(f"sqlite:///{tmp_path / 'watched.db'}")
    monkeypatch.setattr(watch, "unwritable", counted)
    guard = StoreWatch(store, Metrics(), holder="test")
    try:
        store.find_key("jira", "change", "100")
        assert len(checks) == 1  # the SELECT alone
        checks.clear()
        store.put_ref("change", "CHG1", "jira", "100")
        assert len(checks) == 4  # BEGIN IMMEDIATE, the owner check, the upsert, COMMIT
        problem[0] = "the -shm file is not writable"
        with pytest.raises(StoreFenced):
            store.find_key("jira", "change", "100")
        with pytest.raises(StoreFenced):  # fenced for good, without looking again
            store.put_ref("change", "CHG2", "jira", "101")
        assert guard.fenced == "the -shm file is not writable"
    finally:
        guard.fenced = None
        guard.close()
        store.close()
