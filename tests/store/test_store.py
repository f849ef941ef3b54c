"""The state store on SQLite and PostgreSQL: schema, round trips, transactions, leases."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import event, inspect, select, text

from bridge.daemon.inbox import Inbox
from bridge.errors import ConfigError
from bridge.store import (
    MIGRATIONS,
    Migration,
    RefConflict,
    SchemaVersionError,
    StaleRecord,
    Store,
    StoreUnavailable,
)
from bridge.store import schema as tables

from .conftest import FakeClock

CEST = timezone(timedelta(hours=2))


# -- opening and migrating ---------------------------------------------------------------


def test_migrates_an_empty_database_and_records_the_version(store_url, clock):
    with Store(store_url, clock=clock, migrate=False) as bare:
        assert bare.schema_version() == 0
        assert bare.migrate() == [step.version for step in MIGRATIONS]
        assert bare.migrate() == []  # idempotent
        assert bare.schema_version() == MIGRATIONS[-1].version
        names = set(inspect(bare.engine).get_table_names())
        with bare.engine.connect() as conn:
            rows = conn.execute(select(tables.schema_version)).all()
    assert {"records", "external_refs", "history", "watermarks", "conflicts",
            "record_errors", "events", "deliveries", "leases", "vetoes", "mapping_checks", "held_writes"} <= names
    assert [(r.version, r.description, r.applied_at) for r in rows] == [
        (step.version, step.description, clock.now) for step in MIGRATIONS]
    assert rows[0].description == "initial schema"


def test_a_version_1_database_gets_the_mapping_check_cache(store_url, clock):
    Store(store_url, clock=clock, steps=MIGRATIONS[:1]).close()
    with Store(store_url, clock=clock) as store:
        assert store.schema_version() >= 2
        assert "mapping_checks" in inspect(store.engine).get_table_names()


def _add_note_column(conn):
    conn.execute(text("ALTER TABLE records ADD COLUMN note TEXT"))


def test_a_new_step_is_applied_and_older_code_refuses_the_newer_schema(store_url, clock):
    Store(store_url, clock=clock).close()
    known = MIGRATIONS[-1].version
    steps = (*MIGRATIONS, Migration(known + 1, "add records.note", _add_note_column))
    with Store(store_url, clock=clock, steps=steps) as newer:
        assert newer.schema_version() == known + 1
        assert "note" in {c["name"] for c in inspect(newer.engine).get_columns("records")}
        assert newer.migrate() == []
    with pytest.raises(SchemaVersionError, match=f"schema version {known + 1}.*knows only up to {known}") as info:
        Store(store_url, clock=clock)
    assert info.value.code == "schema_version"


def test_a_failing_step_leaves_the_database_at_the_previous_version(store_url, clock):
    Store(store_url, clock=clock).close()

    def half_done(conn):
        conn.execute(text("CREATE TABLE half_done (id INTEGER)"))
        raise RuntimeError("step failed")

    with pytest.raises(RuntimeError, match="step failed"):
        Store(store_url, clock=clock, steps=(*MIGRATIONS, Migration(MIGRATIONS[-1].version + 1, "broken", half_done)))
    with Store(store_url, clock=clock) as store:
        assert store.schema_version() == MIGRATIONS[-1].version
        assert "half_done" not in inspect(store.engine).get_table_names()


def test_steps_must_be_numbered_in_order(store_url, clock):
    with pytest.raises(ValueError, match="out of order"):
        Store(store_url, clock=clock, steps=(*MIGRATIONS, Migration(MIGRATIONS[-1].version, "again", _add_note_column)))


def test_a_step_numbered_below_the_database_version_still_runs_once(store_url, clock):
    """A step merged from another branch with a free lower number (4 after 5 ran) is applied
    on the next start, once."""
    last = MIGRATIONS[-1]
    shipped = (*MIGRATIONS[:-1], dataclasses.replace(last, version=last.version + 1))  # leaves a gap
    Store(store_url, clock=clock, steps=shipped).close()
    steps = tuple(sorted((*shipped, Migration(last.version, "add records.note", _add_note_column)),
                         key=lambda s: s.version))
    with Store(store_url, clock=clock, steps=steps) as store:
        assert "note" in {c["name"] for c in inspect(store.engine).get_columns("records")}
        assert store.migrate() == []


def test_processes_opening_an_empty_database_at_once_migrate_it_once(store_url, clock):
    errors: list[BaseException] = []

    def open_store():
        try:
            Store(store_url, clock=clock).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Store(store_url, clock=clock, migrate=False) as store, store.engine.connect() as conn:
        assert conn.execute(select(tables.schema_version.c.version)).scalars().all() == [
            step.version for step in MIGRATIONS]


@pytest.mark.parametrize("url, message", [
    ("mysql://admin:s3cret@db.example/relbridge", "unsupported database 'mysql'"),
    ("postgresql+psycopg2://admin:s3cret@db.example/relbridge", "unsupported database"),
    ("sqlite:///:memory:", "in-memory"),
    ("not a url", "not a database URL"),
])
def test_unsupported_urls_are_config_errors(url, message):
    with pytest.raises(ConfigError, match=message) as info:
        Store(url)
    assert "s3cret" not in str(info.value)


def test_unreachable_postgresql_names_the_url_without_its_password():
    with pytest.raises(StoreUnavailable) as info:
        Store("postgresql://admin:s3cret@127.0.0.1:1/relbridge?connect_timeout=2")
    text_ = str(info.value)
    assert "cannot open the store at postgresql://admin:***@127.0.0.1:1/relbridge" in text_
    assert "s3cret" not in text_


def test_a_file_that_is_not_a_database_is_a_config_error(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(ConfigError, match="cannot open the store at sqlite:///.*notes.db: "):
        Store(f"sqlite:///{path}")


def test_sqlite_folder_that_cannot_be_created_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="cannot create folder"):
        Store(f"sqlite:///{blocker / 'sub' / 'relbridge.db'}")


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'x.db'}") as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


# -- records ------------------------------------------------------------------------------


def test_records_round_trip_with_revisions(store, clock):
    assert store.get_record("release", "RLSE1") is None
    assert store.put_record("release", "RLSE1", {"name": "R1", "state": "planned"}) == 1
    clock.advance(5)
    assert store.put_record("release", "RLSE1", {"name": "R1", "state": "in_progress"}) == 2
    row = store.load_record("release", "RLSE1")
    assert row.data == {"name": "R1", "state": "in_progress"}
    assert (row.revision, row.updated_at) == (2, clock.now)
    assert row.updated_at.tzinfo is UTC


def test_expected_revision_detects_a_concurrent_write(store):
    assert store.put_record("change", "CHG1", {"v": 1}, expected_revision=0) == 1
    with pytest.raises(StaleRecord):
        store.put_record("change", "CHG1", {"v": "dup"}, expected_revision=0)
    assert store.put_record("change", "CHG1", {"v": 2}, expected_revision=1) == 2
    with pytest.raises(StaleRecord, match="changed since revision 1"):
        store.put_record("change", "CHG1", {"v": "lost"}, expected_revision=1)
    assert store.get_record("change", "CHG1") == {"v": 2}


def test_unfinished_records_are_every_record_with_pending_writes_or_a_create_journal(store):
    """Read in batches (more records than one batch here), each one checked."""
    from bridge.store.operations import CHUNK

    expected = set()
    with store.transaction() as tx:
        for n in range(2 * CHUNK + 7):
            data = {"fields": {"n": n}, "pending": {}, "creating": {}}
            if n % 3 == 0:
                data["pending"] = {"jira": ["summary"]}
            elif n % 7 == 0:
                data["creating"] = {"servicenow": {"at": "2026-01-01T00:00:00+00:00"}}
            tx.put_record("change", f"CHG{n:05d}", data)
            if data["pending"] or data["creating"]:
                expected.add(("change", f"CHG{n:05d}"))
    assert {(entity, key) for entity, key, _ in store.unfinished_records()} == expected


def test_records_iterates_every_record_in_pages_and_bulk_get(store):
    for n in range(7):
        store.put_record("incident", f"INC{n}", {"n": n})
    store.put_record("release", "R", {})
    assert list(store.records("incident", page_size=3)) == [(f"INC{n}", {"n": n}) for n in range(7)]
    assert store.get_records("incident", ["INC1", "INC5", "missing"]) == {
        "INC1": {"n": 1}, "INC5": {"n": 5}}


def test_delete_record_removes_its_refs(store):
    store.put_record("release", "R1", {})
    store.put_ref("release", "R1", "jira", "10000")
    assert store.delete_record("release", "R1") is True
    assert store.get_record("release", "R1") is None
    assert store.find_key("jira", "release", "10000") is None
    assert store.delete_record("release", "R1") is False


# -- external refs ------------------------------------------------------------------------


def test_refs_round_trip_with_aware_datetimes(store):
    local = datetime(2024, 3, 10, 14, 30, 15, 123456, tzinfo=CEST)
    store.put_ref("release", "RLSE1", "servicenow", "a" * 32, "RLSE0001001",
                  "http://sn/rm_release/aaa", "3", local)
    store.put_ref("release", "RLSE1", "jira", "10000", "R 1.0", None, None,
                  datetime(2024, 3, 10, 12, 0))  # naive = UTC
    refs = store.refs("release", "RLSE1")
    assert set(refs) == {"servicenow", "jira"}
    sn = refs["servicenow"]
    assert (sn.ext_id, sn.ext_key, sn.url, sn.version) == (
        "a" * 32, "RLSE0001001", "http://sn/rm_release/aaa", "3")
    assert sn.updated_at == local and sn.updated_at.tzinfo is UTC
    assert sn.updated_at.hour == 12
    assert refs["jira"].updated_at == datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
    assert store.find_key("servicenow", "release", "a" * 32) == "RLSE1"
    assert store.find_key_by_ext_key("jira", "release", "R 1.0") == "RLSE1"
    assert store.find_key("jira", "change", "10000") is None
    assert store.find_ref("servicenow", "release", "a" * 32) == sn
    assert store.find_ref("servicenow", "change", "a" * 32) is None


def test_record_and_refs_come_back_together(store):
    assert store.record_and_refs("release", "RLSE1") == (None, {})
    revision = store.put_record("release", "RLSE1", {"fields": {"name": "R"}})
    assert store.record_and_refs("release", "RLSE1")[1] == {}
    store.put_ref("release", "RLSE1", "jira", "10000", "R", version="4")
    store.put_ref("release", "RLSE2", "jira", "10001", "S")
    row, refs = store.record_and_refs("release", "RLSE1")
    assert (row.data, row.revision) == ({"fields": {"name": "R"}}, revision)
    assert set(refs) == {"jira"} and refs["jira"].ext_id == "10000" and refs["jira"].version == "4"


def test_put_ref_updates_in_place_and_refuses_a_second_owner(store):
    store.put_ref("change", "CHG1", "jira", "100", "OPS-1", version="1")
    store.put_ref("change", "CHG1", "jira", "100", "OPS-1", version="2")
    assert store.refs("change", "CHG1")["jira"].version == "2"
    with pytest.raises(RefConflict, match="already linked to CHG1"):
        store.put_ref("change", "CHG2", "jira", "100")
    assert store.find_key("jira", "change", "100") == "CHG1"
    assert store.drop_ref("jira", "change", "100") is True
    assert store.drop_ref("jira", "change", "100") is False
    assert store.refs("change", "CHG1") == {}


def test_bulk_ref_lookups_answer_for_many_ids(store):
    with store.transaction() as tx:
        for n in range(1200):
            tx.put_ref("incident", f"INC{n}", "servicenow", f"sys{n}", f"INC00{n}")
    wanted = [f"sys{n}" for n in range(0, 1200, 2)] + ["unknown"]
    found = store.refs_for_ids("servicenow", "incident", wanted)
    assert len(found) == 600 and found["sys10"].key == "INC10" and "unknown" not in found
    assert found["sys10"].ext_key == "INC0010"
    by_key = store.refs_for_keys("incident", [f"INC{n}" for n in range(1100)])
    assert len(by_key) == 1100 and by_key["INC7"]["servicenow"].ext_id == "sys7"


# -- transactions -------------------------------------------------------------------------


def test_a_failed_transaction_leaves_nothing_half_written(store):
    inbox = Inbox(store)
    with pytest.raises(RuntimeError, match="crash"), store.transaction() as tx:
        tx.put_record("release", "R1", {"name": "x"})
        tx.put_ref("release", "R1", "jira", "10000")
        tx.add_history("release", "R1", "name", None, "x", "jira")
        tx.set_watermark("jira", "release", datetime(2024, 1, 1, tzinfo=UTC))
        inbox.enqueue("jira", "release", "10000", source="poll", within=tx)
        raise RuntimeError("crash")
    assert store.get_record("release", "R1") is None
    assert store.refs("release", "R1") == {}
    assert store.history() == []
    assert store.get_watermark("jira", "release") is None
    assert inbox.depth() == 0


def test_a_transaction_commits_all_its_writes_together(store):
    with store.transaction() as tx:
        tx.put_record("release", "R1", {"name": "x"})
        tx.put_ref("release", "R1", "jira", "10000")
        assert tx.get_record("release", "R1") == {"name": "x"}  # reads its own writes
    assert store.get_record("release", "R1") == {"name": "x"}
    assert store.find_key("jira", "release", "10000") == "R1"


def test_an_error_inside_a_transaction_rolls_back_earlier_writes(store):
    store.put_ref("change", "CHG1", "jira", "100")
    with pytest.raises(RefConflict), store.transaction() as tx:
        tx.put_record("change", "CHG2", {})
        tx.put_ref("change", "CHG2", "jira", "100")
    assert store.get_record("change", "CHG2") is None


def test_a_pinned_thread_shares_one_connection_and_each_call_still_commits(store, store_url, clock):
    checkouts = []
    event.listen(store.engine.pool, "checkout", lambda *args: checkouts.append(1))
    other = Store(store_url, clock=clock, migrate=False)
    try:
        with store.pinned():
            store.put_ref("change", "CHG1", "jira", "100")
            assert other.find_key("jira", "change", "100") == "CHG1"  # committed, seen elsewhere
            assert store.find_key("jira", "change", "100") == "CHG1"
            with store.transaction() as tx:  # a call inside a transaction takes its own connection
                tx.put_record("change", "CHG1", {"n": 1})
                assert store.find_key("jira", "change", "100") == "CHG1"
            assert len(checkouts) == 2
            with pytest.raises(RefConflict):
                store.put_ref("change", "CHG2", "jira", "100")
            assert store.get_record("change", "CHG1") == {"n": 1}  # after a failure: a fresh connection
        assert store.engine.pool.checkedout() == 0
        with store.pinned(), store.pinned():  # nested: the outer pin serves
            store.find_key("jira", "change", "100")
            assert store.engine.pool.checkedout() == 1
        held = [store.engine.connect() for _ in range(store.engine.pool.size())]
        with store.pinned():  # the pool's steady size is in use: no pin, calls check out their own
            assert store.find_key("jira", "change", "100") == "CHG1"
            assert store.engine.pool.checkedout() == len(held)
        for conn in held:
            conn.close()
    finally:
        other.close()


# -- history, watermarks, echoes ----------------------------------------------------------


def test_history_filters_and_keeps_json_values(store, clock):
    t0 = clock.now
    store.add_history("release", "R1", "state", None, "planned", "servicenow", at=t0)
    store.add_history("release", "R1", "planned_end", "2024-05-01", "2024-05-08", "jira",
                      at=t0 + timedelta(hours=1))
    store.add_history("change", "C1", "approval", {"a": [1]}, {"a": [2]}, "servicenow",
                      at=t0 + timedelta(hours=2))
    assert [h.field for h in store.history()] == ["state", "planned_end", "approval"]
    assert [h.field for h in store.history(entity="release", key="R1")] == ["state", "planned_end"]
    recent = store.history(since=(t0 + timedelta(minutes=30)).astimezone(CEST))
    assert [(h.old, h.new) for h in recent] == [("2024-05-01", "2024-05-08"), ({"a": [1]}, {"a": [2]})]
    first = store.history()[0]
    assert first.old is None and first.at == t0 and first.at.tzinfo is UTC


def test_watermarks_round_trip_as_aware_utc(store):
    assert store.get_watermark("servicenow", "release") is None
    store.set_watermark("servicenow", "release", datetime(2024, 6, 1, 10, 0, 0, 5, tzinfo=CEST))
    store.set_watermark("servicenow", "release", datetime(2024, 6, 1, 11, 0, tzinfo=CEST))
    value = store.get_watermark("servicenow", "release")
    assert value == datetime(2024, 6, 1, 9, 0, tzinfo=UTC) and value.tzinfo is UTC
    assert store.get_watermark("jira", "release") is None


def test_conflicts_errors_and_vetoes_round_trip(store, clock):
    cid = store.add_conflict("release", "R1", "planned_end", "2024-05-01", "2024-05-02",
                             "last_writer_wins", "2024-05-02")
    conflict = store.conflicts(key="R1")[0]
    assert (conflict.id, conflict.servicenow_value, conflict.resolved_value) == (
        cid, "2024-05-01", "2024-05-02")
    assert store.conflicts(entity="change") == []

    store.record_error("jira", "change", "100", code="mapping", message="bad state", key="CHG1")
    clock.advance(60)
    store.record_error("jira", "change", "100", code="permanent", message="HTTP 400")
    [error] = store.errors()
    assert (error.code, error.message, error.count, error.key) == ("permanent", "HTTP 400", 2, "CHG1")
    assert error.first_at == clock.now - timedelta(seconds=60) and error.at == clock.now
    assert store.clear_error("jira", "change", "100") is True
    assert store.clear_error("jira", "change", "100") is False
    assert store.errors() == []

    vid = store.add_veto("R1", "authorized", "deploying", "change CHG1 not approved", "jira")
    [veto] = store.vetoes("R1")
    assert (veto.id, veto.old, veto.new, veto.source, veto.at) == (
        vid, "authorized", "deploying", "jira", clock.now)
    assert store.vetoes("R2") == []


def test_counts_summarise_the_store(store):
    store.put_record("release", "R1", {})
    store.put_record("change", "C1", {})
    store.put_record("change", "C2", {})
    store.record_error("jira", "change", "1", code="x", message="y")
    store.add_conflict("release", "R1", "name", "a", "b", "last_writer_wins", "b")
    inbox = Inbox(store)
    inbox.enqueue("jira", "change", "1", source="poll")
    inbox.enqueue("jira", "change", "2", source="poll")
    inbox.dead_letter(inbox.claim("w")[0], "boom")
    assert store.counts() == {
        "records": {"release": 1, "change": 2}, "errors": 1, "conflicts": 1,
        "dead_letters": 1, "pending_events": 1, "in_flight_events": 0,
    }


# -- leases -------------------------------------------------------------------------------


def test_lease_is_exclusive_renewable_and_taken_over_after_expiry(store, clock: FakeClock):
    assert store.acquire_lease("poll:servicenow", "host-a", 30)
    assert not store.acquire_lease("poll:servicenow", "host-b", 30)
    clock.advance(20)
    assert store.acquire_lease("poll:servicenow", "host-a", 30)  # renewal
    clock.advance(20)
    assert not store.acquire_lease("poll:servicenow", "host-b", 30)  # renewed: not expired
    clock.advance(11)
    assert store.acquire_lease("poll:servicenow", "host-b", 30)  # a stopped: b takes over
    assert not store.acquire_lease("poll:servicenow", "host-a", 30)
    assert store.lease("poll:servicenow").holder == "host-b"
    assert store.acquire_lease("poll:jira", "host-a", 30)  # leases are independent


def test_released_lease_is_free_at_once_and_only_its_holder_can_release(store, clock):
    assert store.acquire_lease("poll", "a", 300, now=clock.now)
    assert not store.release_lease("poll", "b")
    assert store.release_lease("poll", "a")
    assert store.lease("poll") is None
    assert store.acquire_lease("poll", "b", 300)


def test_only_one_of_many_contenders_gets_a_lease(store):
    winners: list[str] = []
    lock = threading.Lock()

    def contend(name: str):
        if store.acquire_lease("poll", name, 60):
            with lock:
                winners.append(name)

    threads = [threading.Thread(target=contend, args=(f"h{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
