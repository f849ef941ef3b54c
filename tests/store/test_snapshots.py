"""The console's saved views (``console_snapshots``, migration step 10) on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.store import MIGRATIONS, Store


def test_a_saved_view_comes_back_as_saved_and_a_newer_one_replaces_it(store: Store) -> None:
    assert store.snapshot("kpi") is None
    first = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    value = {"period": {"since": None}, "zeta": 1, "alpha": [1.5, "x", None], "by_state": {"planned": 2, "closed": 1}}
    store.save_snapshot("kpi", '[3, "2026-05-01", 7, null]', first, value)
    saved = store.snapshot("kpi")
    assert saved is not None and saved.value == value and saved.computed_at == first
    assert list(saved.value) == list(value) and list(saved.value["by_state"]) == ["planned", "closed"]  # order kept
    later = datetime(2026, 5, 1, 12, 5, tzinfo=UTC)
    store.save_snapshot("kpi", '[4, "2026-05-01", 8, null]', later, {"releases": 4})
    assert store.snapshot("kpi") == ('[4, "2026-05-01", 8, null]', later, {"releases": 4})


def test_an_older_database_gains_the_table(store_url: str) -> None:
    Store(store_url, steps=[s for s in MIGRATIONS if s.version < 10]).close()
    with Store(store_url, migrate=False) as store:
        assert store.schema_version() == 9
        assert store.migrate() == [10]
        store.save_snapshot("releases", "[]", datetime(2026, 5, 1, tzinfo=UTC), [])
        assert store.snapshot("releases") is not None
