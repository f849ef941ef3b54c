"""The ``held_writes`` table (safety brake): its migration and its operations, on SQLite
and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import inspect

from bridge.store import MIGRATIONS, Store


def test_a_version_1_store_gets_the_held_writes_table_from_its_own_step(store_url, clock):
    with Store(store_url, clock=clock, steps=MIGRATIONS[:1]) as old:
        assert "held_writes" not in inspect(old.engine).get_table_names()  # step 1 replays history
    with Store(store_url, clock=clock) as store:
        assert store.schema_version() == MIGRATIONS[-1].version
        assert "held_writes" in inspect(store.engine).get_table_names()
        assert store.held_count() == 0


def test_a_field_is_held_once_and_newer_holds_replace_older_ones(store, clock):
    first = store.hold_write("release", "RLSE1", "jira", "state", kind="rollback", old="deployed",
                             new="rolled_back", reason="safety brake: rollback", ext_id="10001", ext_key="1.0")
    again = store.hold_write("release", "RLSE1", "jira", "state", kind="release_backwards", old="deployed",
                             new="planned", reason="safety brake: release backwards", ext_id="10001")
    other = store.hold_write("release", "RLSE1", "servicenow", "state", kind="rollback", old="in_progress",
                             new="rolled_back", reason="safety brake: rollback")
    assert again == first and other != first
    rows = store.held_writes()
    assert [(r.id, r.system, r.kind, r.new) for r in rows] == [
        (first, "jira", "release_backwards", "planned"), (other, "servicenow", "rollback", "rolled_back")]
    assert rows[0].held_at == clock.now
    assert store.held_count() == 2
    assert [r.id for r in store.held_writes(ids=[other])] == [other]
    assert store.held_writes(entity="release", key="OTHER") == []


def test_holds_end_per_field_per_system_or_all_at_once(store):
    for system in ("servicenow", "jira"):
        store.hold_write("change", "CHG1", system, "close_code", kind="unsuccessful_close_code",
                         old=None, new="unsuccessful", reason="r")
    store.hold_write("change", "CHG1", "jira", "_delete", kind="delete", old="OPS-1", new=None, reason="r")
    assert store.drop_held("change", "CHG1", ["close_code"], system="jira") == 1
    assert store.drop_held("change", "CHG1", []) == 0
    assert {(r.system, r.field) for r in store.held_writes()} == {("servicenow", "close_code"), ("jira", "_delete")}
    with store.transaction() as tx:
        assert tx.drop_held("change", "CHG1") == 2
    assert store.held_count() == 0
    held = store.hold_write("change", "CHG2", "jira", "close_code", kind="k", old=None, new="x", reason="r")
    assert store.delete_held([held]) == 1
    assert store.held_writes() == []
    for system, field in (("jira", "close_code"), ("jira", "_delete"), ("servicenow", "close_code")):
        store.hold_write("change", "CHG3", system, field, kind="k", old=None, new="x", reason="r")
    assert store.drop_held("change", "CHG3", ["close_code", "_delete", "never held"]) == 3
    assert store.held_writes() == []
