"""The ``worklogs`` table: an object's entries are replaced as a whole, idempotently, and
travel with the record's own transaction."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.adapter import WorklogEntry
from bridge.store import Store
from bridge.store.worklogs import WorklogRow


def at(day: int) -> datetime:
    return datetime(2024, 4, day, 9, tzinfo=UTC)


def test_entries_are_upserted_and_the_removed_ones_dropped(store: Store) -> None:
    first = [WorklogEntry("1", at(1), 3600, "ada", "ops"), WorklogEntry("2", at(2), 1800, "bob")]
    store.put_worklogs("jira", "change", "10001", "CHG1", first)
    store.put_worklogs("jira", "change", "10001", "CHG1", first)  # the same read again: no duplicate
    store.put_worklogs("servicenow", "change", "abc", "CHG1", [WorklogEntry("1", at(3), 60, "cy")])
    assert sorted(store.worklog_rows()) == [
        WorklogRow("change", "CHG1", at(1), 3600, "ops"), WorklogRow("change", "CHG1", at(2), 1800, None),
        WorklogRow("change", "CHG1", at(3), 60, None)]
    # Entry 2 was deleted in the system and entry 1 edited: the store follows.
    store.put_worklogs("jira", "change", "10001", "CHG1", [WorklogEntry("1", at(1), 7200, "ada", "ops")])
    assert sorted(store.worklog_rows()) == [WorklogRow("change", "CHG1", at(1), 7200, "ops"),
                                            WorklogRow("change", "CHG1", at(3), 60, None)]
    store.put_worklogs("jira", "change", "10001", "CHG1", [])
    assert store.worklog_rows() == [WorklogRow("change", "CHG1", at(3), 60, None)]


def test_a_failed_transaction_keeps_no_entry(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.put_worklogs("jira", "change", "10001", "CHG1", [WorklogEntry("1", at(1), 3600, "ada")])
        raise RuntimeError("crash before the record was saved")
    assert store.worklog_rows() == []
