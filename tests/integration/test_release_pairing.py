"""Releases pair up by name across systems (Jira versions carry no tag): workers pair or
create releases of different names at once, and one name one at a time."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from bridge.engine.ingest import Ingest
from bridge.engine.pipeline import SyncReport


def test_releases_of_different_names_are_created_at_once_and_each_once(bridge) -> None:
    names = [f"Release {n}" for n in range(12)]
    for name in names:
        bridge.sn.create("rm_release", short_description=name, state="1")
    rt = bridge.runtime()
    jira = rt.adapters["jira"]
    create, lock = jira.create, threading.Lock()
    busy, most = [0], [0]

    def counted(entity, payload, key):
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        try:
            time.sleep(0.05)  # long enough for workers to overlap, were they allowed to
            return create(entity, payload, key)
        finally:
            with lock:
                busy[0] -= 1

    jira.create = counted
    assert not rt.engine.sync_once().errors
    assert most[0] > 1
    assert sorted(v["name"] for v in bridge.jira.versions()) == sorted(names)


def test_a_pair_met_from_both_sides_at_once_makes_one_record(bridge, monkeypatch) -> None:
    """Two workers read a ServiceNow release and the Jira version of its name at the same
    moment, on a store that knows neither: they must link one record, not make twins."""
    pairs = [(bridge.sn.create("rm_release", short_description=f"Release {n}", state="1"),
              bridge.jira.create_version(f"Release {n}")) for n in range(3)]
    correlate = Ingest._correlate

    def slowly(self, record):  # widens the moment between matching a name and saving the link
        key = correlate(self, record)
        time.sleep(0.2)
        return key

    monkeypatch.setattr(Ingest, "_correlate", slowly)
    rt = bridge.runtime()
    fields = {system: rt.mappings.for_system(system).fields_to_read("release") for system in ("servicenow", "jira")}
    records = [rt.adapters[system].read("release", ext_id, fields[system])
               for release, version in pairs
               for system, ext_id in (("servicenow", release["sys_id"]), ("jira", version["id"]))]
    workers = [threading.Thread(target=rt.engine.ingest, args=(record, SyncReport())) for record in records]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    keys = [key for key, _ in rt.store.records("release")]
    assert len(keys) == len(pairs)
    for release, version in pairs:
        key = rt.store.find_key("servicenow", "release", release["sys_id"])
        assert key is not None and rt.store.find_key("jira", "release", version["id"]) == key


def test_a_release_renamed_before_its_locks_are_taken_is_held_under_its_new_name(bridge) -> None:
    release = bridge.sn.create("rm_release", short_description="Release 7", state="1")
    rt = bridge.runtime()
    assert not rt.engine.sync_once().errors
    key = rt.store.find_key("servicenow", "release", release["sys_id"])
    load, taken = rt.store.load_record, []
    pairing = rt.engine.locks.pairing

    def before_the_rename(entity, record_key):  # the name as read just before a rename landed
        row = load(entity, record_key)
        rt.store.load_record = load
        return replace(row, data={**row.data, "fields": {**row.data["fields"], "name": "Release 6"}})

    def recorded(name):
        taken.append(name)
        return pairing(name)

    rt.store.load_record = before_the_rename
    rt.engine.locks.pairing = recorded
    rt.engine.propagate("release", key, SyncReport())
    assert taken == ["Release 6", "Release 7"]
