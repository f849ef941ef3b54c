"""One deterministic test per data-damage break of issue 11 ("Why"), each the smallest
exact repro, checked with the no-damage oracle (tests/integration/oracle.py) where the
damage is a value nobody wrote. The webhook and readiness breaks are tested with the
receiver and the daemon."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from bridge.daemon.inbox import Inbox
from bridge.store import Store, schema
from tests.integration.daemon_support import (
    ROOT,
    add_fault,
    clear_faults,
    eventually,
    start_daemon,
    write_config,
)
from tests.integration.helpers import clear_log, writes
from tests.integration.oracle import Oracle, assert_settled_without_damage, settle

ONE_WORKER = {"sync": {"concurrency": 1}}


class Killed(BaseException):
    """The process died right here, as under ``kill -9``: nothing after it runs."""


def crash_after_create(runtime: Any, system: str) -> None:
    """Make ``runtime``'s next create in ``system`` reach the system, then kill the pass
    before relbridge records it (the window a ``kill -9`` can hit between the two)."""
    adapter = runtime.adapters[system]
    real = adapter.create

    def create(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise Killed(f"killed after a create in {system}")

    adapter.create = create


def other_store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'other' / 'relbridge.db'}"


# --- an interrupted create overwrites the source --------------------------------------------------


def test_interrupted_create_resumes_as_a_create_and_never_overwrites_the_source(bridge_factory) -> None:
    bridge = bridge_factory(seed="demo")
    oracle = Oracle(bridge.sn, bridge.jira)
    oracle.adopt(settled=False)
    assert {c["number"]: c["state"] for c in bridge.sn.list("change_request")}["CHG0030001"] == "3"
    add_fault(bridge.sims.jira_url, method="POST", path="/transitions$", status=503, times=1)
    with pytest.raises(Exception, match="503"):
        bridge.sync(**ONE_WORKER)  # the create's walk to "Closed" is cut: a half-made issue
    bridge.sync(**ONE_WORKER)
    states = {c["number"]: c["state"] for c in bridge.sn.list("change_request")}
    assert states["CHG0030001"] == "3", "a closed change in ServiceNow was reopened by relbridge"
    assert_settled_without_damage(oracle, settle(bridge, **ONE_WORKER))


# --- a person edits what a cut-short create made ---------------------------------------------------


def test_a_person_renaming_a_release_whose_create_reply_was_lost_keeps_the_new_name(bridge_factory) -> None:
    """relbridge creates a Jira-born release in ServiceNow; the answer is lost, so relbridge
    does not know it made it. A person renames the new ServiceNow release. Finding it again,
    relbridge finishes its create from the record -- but the name the person typed since is
    their edit: it stays, and reaches Jira."""
    bridge = bridge_factory(seed="empty")
    jira = bridge.jira
    jira.create_version("Checkout 7.1", startDate="2026-05-04", releaseDate="2026-05-29")
    oracle = Oracle(bridge.sn, jira)
    oracle.adopt(settled=False)
    add_fault(bridge.sims.servicenow_url, method="POST", path="/rm_release$", status=0, reset=True,
              after=True, times=3)
    with pytest.raises(Exception, match="rm_release: cannot connect"):
        bridge.sync(**ONE_WORKER)
    [made] = bridge.sn.list("rm_release")  # carried out, its answer never arrived
    key = oracle.keys("release")[0]
    oracle.edit("servicenow", "release", key, "name", "Checkout 7.1 (EU)")
    clear_faults(bridge.sims.servicenow_url)
    bridge.sync(**ONE_WORKER)

    assert bridge.sn.get("rm_release", made["sys_id"])["short_description"] == "Checkout 7.1 (EU)"
    assert [v["name"] for v in jira.versions()] == ["Checkout 7.1 (EU)"]
    assert_settled_without_damage(oracle, settle(bridge, **ONE_WORKER))


# --- kill -9 between a create and its release link -------------------------------------------------


@pytest.mark.slow
def test_kill_9_after_a_create_keeps_the_fix_version_of_jira_born_changes(bridge_factory, store_url: str,
                                                                          tmp_path: Path) -> None:
    bridge = bridge_factory(seed="empty")
    jira, sims = bridge.jira, bridge.sims
    version = jira.create_version("Checkout 7.1", startDate="2026-05-04", releaseDate="2026-05-29")
    for n in range(2):
        jira.create_issue("Change", f"Roll out checkout step {n}", fixVersions=[{"id": version["id"]}])
    oracle = Oracle(bridge.sn, jira)
    oracle.adopt(settled=False)
    time.sleep(1.1)  # made earlier than the sync (ServiceNow stamps to the second)
    # The link row that ties a new ServiceNow change to its release hangs, then is dropped
    # without being made: the kill lands after the change was created there, before
    # relbridge could record anything or link it.
    add_fault(sims.servicenow_url, method="POST", path="/rm_m2m_release_task$", delay_ms=6_000, status=0,
              reset=True, times=1)
    config = write_config(tmp_path / "relbridge.toml", sims.servicenow_url, sims.jira_url or "", store_url)
    env = {**os.environ, "RELBRIDGE_SYNC__CONCURRENCY": "1"}
    with (tmp_path / "sync.log").open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bridge", "sync", "--once", "--config", str(config)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        eventually(lambda: any(r["method"] == "POST" and r["path"].endswith("/change_request")
                               for r in writes(sims.servicenow_url)), timeout=30, what="a change created")
        time.sleep(0.5)  # now inside the hanging link insert
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    requests.delete(f"{sims.servicenow_url}/_sim/faults").raise_for_status()
    for _ in range(3):  # restarted: passes until nothing is left to repair
        bridge.sync()
    damage = [d for d in oracle.check() if d.field == "release"]
    assert not damage, "\n".join(map(str, damage))
    oracle.assert_no_damage()


# --- a create journal that cannot resolve ----------------------------------------------------------


@pytest.mark.slow
def test_a_create_journal_left_by_a_crash_is_not_requeued_forever(bridge, caplog) -> None:
    change = bridge.sn.create("change_request", short_description="Crash after create", state="-5",
                              approval="not requested", type="normal", risk="3")
    runtime = bridge.runtime()
    crash_after_create(runtime, "jira")
    with pytest.raises(Killed):
        runtime.engine.sync_once()
    runtime.close()
    assert len(bridge.jira.search('project = OPS AND issuetype = "Change"')) == 1  # made before the crash

    caplog.set_level(logging.INFO, logger="bridge.daemon.poll")
    daemon = start_daemon(bridge, claim_lease_seconds=1.0)
    try:
        eventually(lambda: Inbox(daemon.runtime.store).depth() == 0, timeout=20, what="an idle queue")

        def sweeps() -> int:
            return sum("queued again" in r.getMessage() for r in caplog.records)

        # The sweeper runs every 0.5 s: a record it keeps re-queuing shows in any 3 s window.
        def quiet_window() -> bool:
            before = sweeps()
            time.sleep(3.0)
            return sweeps() == before

        eventually(quiet_window, timeout=20, interval=0,
                   what=f"the sweeper to stop re-queuing {daemon.runtime.store.unfinished_records()}")
    finally:
        daemon.stop()
    issues = bridge.jira.search('project = OPS AND issuetype = "Change"')
    assert [i["fields"]["summary"] for i in issues] == [change["short_description"]]


# --- a fresh store under the daemon ----------------------------------------------------------------


@pytest.mark.slow
def test_a_fresh_store_under_the_daemon_duplicates_nothing(bridge_factory, store_url: str, tmp_path: Path) -> None:
    bridge = bridge_factory(seed="demo")
    first = bridge.store_url
    bridge.store_url = other_store(tmp_path)
    assert settle(bridge) is None  # synced once by another installation (its store is then lost)
    bridge.store_url = first
    oracle = Oracle(bridge.sn, bridge.jira)
    oracle.adopt()
    counts = oracle.counts()

    daemon = start_daemon(bridge)
    try:
        store = daemon.runtime.store
        eventually(lambda: daemon.pollers and all(p.engine.store.get_watermark(p.system, p.entity)
                                                  for p in daemon.pollers), timeout=20, what="every stream polled")
        eventually(lambda: Inbox(store).depth() == 0, timeout=40, what="an idle queue")
        time.sleep(1.0)
        eventually(lambda: Inbox(store).depth() == 0, timeout=20, what="an idle queue")
        dead = [(e.system, e.entity, e.ext_id, e.last_error) for e in Inbox(store).dead_letters()]
    finally:
        daemon.stop()
    assert oracle.counts() == counts, "duplicates made"
    assert dead == []
    oracle.assert_no_damage()


# --- equal instants in two formats ---------------------------------------------------------------


def test_equal_instants_in_two_formats_are_not_conflicts(bridge_factory, tmp_path: Path) -> None:
    bridge = bridge_factory(seed="demo")
    first = bridge.store_url
    bridge.store_url = other_store(tmp_path)
    assert settle(bridge) is None
    bridge.store_url = first
    settle(bridge)  # a fresh store meets both systems: every pair must be compared
    with Store(first, migrate=False) as store, store.begin(write=False) as conn:
        rows = conn.execute(select(schema.conflicts)).mappings().all()
    same = [(r["entity"], r["key"], r["field"], r["servicenow_value"], r["jira_value"]) for r in rows
            if _instant(r["servicenow_value"]) is not None
            and _instant(r["servicenow_value"]) == _instant(r["jira_value"])]
    assert same == []


def _instant(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


# --- last-writer-wins is per field -----------------------------------------------------------------


def test_last_writer_wins_uses_the_last_writer_of_that_field(bridge) -> None:
    oracle = Oracle(bridge.sn, bridge.jira)
    key = oracle.create("servicenow", "change", summary="Rotate signing keys", state="new")
    assert settle(bridge) is None
    oracle.assert_no_damage("after the first sync")
    # X in ServiceNow, then X in Jira, then Y in ServiceNow; more than a second apart, as
    # ServiceNow stamps updates to the second. Then one pass.
    assert oracle.edit("servicenow", "change", key, "summary", "Rotate signing keys (ServiceNow)")
    time.sleep(1.2)
    assert oracle.edit("jira", "change", key, "summary", "Rotate signing keys (Jira)")
    time.sleep(1.2)
    assert oracle.edit("servicenow", "change", key, "state", "assess")
    bridge.sync()
    oracle.assert_no_damage()


# --- adoption: a second store over already-synced systems ------------------------------------------


def test_a_fresh_store_writes_nothing_and_the_first_store_then_writes_nothing(bridge_factory,
                                                                              tmp_path: Path) -> None:
    bridge = bridge_factory(seed="demo")
    first = bridge.store_url
    assert settle(bridge) is None
    oracle = Oracle(bridge.sn, bridge.jira, derived=())  # nothing may move: not even a release state
    oracle.adopt()
    urls = (bridge.sims.servicenow_url, bridge.sims.jira_url or "")

    clear_log(*urls)
    bridge.store_url = other_store(tmp_path)
    unsettled = settle(bridge)
    written = {url: writes(url) for url in urls}
    assert_settled_without_damage(oracle, unsettled, "after a fresh store's pass")
    assert written == {url: [] for url in urls}, "a fresh store wrote to already-synced systems"

    clear_log(*urls)
    bridge.store_url = first
    unsettled = settle(bridge)
    written = {url: writes(url) for url in urls}
    assert_settled_without_damage(oracle, unsettled, "after the first store's next pass")
    assert written == {url: [] for url in urls}, "the first store wrote after the fresh store's pass"
