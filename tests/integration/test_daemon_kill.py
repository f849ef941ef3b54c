"""``kill -9`` of a real daemon process in the middle of a stream of changes, then a
restart: nothing lost, nothing duplicated; then SIGTERM: a clean exit 0."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from bridge.daemon.inbox import Inbox
from bridge.store import Store
from tests.integration.daemon_support import (
    DaemonProcess,
    eventually,
    free_port,
    register_webhooks,
    wait_ready,
    write_config,
)

pytestmark = pytest.mark.slow

SN_CHANGES = 24
JIRA_CHANGES = 8


def produce(bridge, done: threading.Event, errors: list[BaseException]) -> None:
    """People editing both systems: a change every ~0.1 s, ServiceNow and Jira mixed."""
    try:
        for i in range(SN_CHANGES):
            bridge.sn.create("change_request", short_description=f"SN stream {i:02d}", state="-5",
                             approval="not requested", type="normal", risk="3")
            if i % 3 == 0:
                bridge.jira.create_issue("Change", f"Jira stream {i // 3:02d}")
            time.sleep(0.1)
    except BaseException as exc:  # reported by the test
        errors.append(exc)
    finally:
        done.set()


def summaries(bridge) -> tuple[Counter[str], Counter[str]]:
    jira = Counter(i["fields"]["summary"] for i in bridge.jira.search('project = OPS AND issuetype = "Change"'))
    sn = Counter(c["short_description"] for c in bridge.sn.list("change_request"))
    return jira, sn


def test_kill_9_mid_stream_then_restart_loses_and_duplicates_nothing(bridge, store_url: str,
                                                                     tmp_path: Path) -> None:
    if not store_url.startswith("sqlite"):
        pytest.skip("shown on SQLite; two processes on PostgreSQL are test_daemon_multi's")
    sims = bridge.sims
    bind = f"127.0.0.1:{free_port()}"
    # Short API timeouts keep short the create leases a killed process leaves behind.
    config = write_config(tmp_path / "relbridge.toml", sims.servicenow_url, sims.jira_url or "", store_url,
                          bind=bind, timeout=2)
    receiver = f"http://{bind}"
    register_webhooks(sims.servicenow_url, sims.jira_url, receiver)
    # Slow writes keep workers mid-call, so the kill lands in the middle of syncing.
    for url, path in ((sims.jira_url, "/issue$"), (sims.servicenow_url, "/change_request$")):
        bridge.jira.session.post(f"{url}/_sim/faults", json={"method": "POST", "path": path, "delay_ms": 150,
                                                             "times": None}).raise_for_status()

    first = DaemonProcess(config, tmp_path / "first.log", instance_id="first")
    second = None
    try:
        wait_ready(receiver, first)
        done, errors = threading.Event(), []
        producer = threading.Thread(target=produce, args=(bridge, done, errors))
        producer.start()
        eventually(lambda: sum(summaries(bridge)[0].values()) >= 8, timeout=20, what="some changes synced")
        first.kill()
        assert sum(summaries(bridge)[0].values()) < SN_CHANGES + JIRA_CHANGES, "killed too late to matter"
        time.sleep(1.0)  # changes keep coming while no daemon runs
        second = DaemonProcess(config, tmp_path / "second.log", instance_id="second")
        wait_ready(receiver, second)
        producer.join(30)
        assert done.is_set() and not errors, errors

        expected = {f"SN stream {i:02d}" for i in range(SN_CHANGES)} | {
            f"Jira stream {i:02d}" for i in range(JIRA_CHANGES)}
        eventually(lambda: set(summaries(bridge)[0]) == expected and set(summaries(bridge)[1]) == expected,
                   timeout=40, what="every change in both systems")
        with Store(store_url, migrate=False) as store:
            eventually(lambda: Inbox(store).depth() == 0, timeout=20, what="an empty queue")
            assert Inbox(store).dead_letters() == []
        time.sleep(2.0)  # late echoes and polls must not create anything more
        jira, sn = summaries(bridge)
        assert jira == Counter(expected) and sn == Counter(expected)

        began = time.monotonic()
        assert second.terminate(timeout=15) == 0, second.output()[-3000:]
        assert time.monotonic() - began < 10
        assert '"message": "stopped"' in second.output()
    finally:
        first.ensure_stopped()
        if second is not None:
            second.ensure_stopped()


def test_sigterm_while_busy_exits_0_in_time_and_leaves_work_claimable(bridge, store_url: str,
                                                                      tmp_path: Path) -> None:
    sims = bridge.sims
    bind = f"127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "relbridge.toml", sims.servicenow_url, sims.jira_url or "", store_url,
                          bind=bind, workers=2, timeout=30)
    changes = [bridge.sn.create("change_request", short_description=f"Busy {i}", state="-5",
                                approval="not requested", type="normal", risk="3") for i in range(3)]
    daemon = DaemonProcess(config, tmp_path / "busy.log", instance_id="busy")
    again = None
    try:
        wait_ready(f"http://{bind}", daemon)
        eventually(lambda: summaries(bridge)[0] == Counter(f"Busy {i}" for i in range(3)), what="first sync")
        # Each write to Jira now hangs for 20 s: longer than a shutdown may take.
        fault = {"method": "PUT", "path": "/issue/", "delay_ms": 20_000, "times": None}
        bridge.jira.session.post(f"{sims.jira_url}/_sim/faults", json=fault).raise_for_status()
        for i, change in enumerate(changes):
            bridge.sn.update("change_request", change["sys_id"], short_description=f"Busy {i}, edited")
        with Store(store_url, migrate=False) as store:
            # Busy with the hanging writes: still claimed a second later (echoes of earlier
            # writes are claimed too, but finish at once).
            eventually(lambda: _claimed(store) >= 2 and not time.sleep(1.0) and _claimed(store) >= 2,
                       timeout=15, what="workers busy")
            began = time.monotonic()
            assert daemon.terminate(timeout=15) == 0, daemon.output()[-3000:]
            assert time.monotonic() - began < 14  # SHUTDOWN_SECONDS (9) plus the exit on a loaded machine; the hang is 20 s
            assert "unfinished" in daemon.output()  # stopped with the slow writes still running
            assert Inbox(store).depth() >= 3  # nothing lost: still queued; the claims expire
        bridge.jira.session.delete(f"{sims.jira_url}/_sim/faults").raise_for_status()

        again = DaemonProcess(config, tmp_path / "again.log", instance_id="again")
        expected = Counter(f"Busy {i}, edited" for i in range(3))
        eventually(lambda: summaries(bridge)[0] == expected, timeout=30, what="the left-over events synced")
        time.sleep(1.5)
        assert summaries(bridge)[0] == expected
        assert again.terminate() == 0
    finally:
        daemon.ensure_stopped()
        if again is not None:
            again.ensure_stopped()


def _claimed(store: Store) -> int:
    from sqlalchemy import func, select

    from bridge.store import schema

    with store.begin(write=False) as conn:
        return conn.execute(select(func.count()).select_from(schema.events)
                            .where(schema.events.c.state == "claimed")).scalar_one()
