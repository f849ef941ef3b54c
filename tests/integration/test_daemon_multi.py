"""Two daemon processes sharing one PostgreSQL store: one is killed, the other carries on
(its pollers take the leases over once they expire); nothing is synced twice."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.daemon.inbox import Inbox
from bridge.daemon.poll import lease_name
from bridge.engine import CreateInProgress, SyncReport
from bridge.retry import is_transient
from bridge.sim import Simulators, start_simulators
from bridge.store import Store
from tests.conftest import pg_base_url, pg_schema_url
from tests.integration.daemon_support import (
    DaemonProcess,
    add_fault,
    eventually,
    wait_ready,
    write_config,
)
from tests.integration.helpers import Jira, ServiceNow

STREAMS = [lease_name(system, entity) for system in ("servicenow", "jira")
           for entity in ("release", "change", "incident")]


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from pg_schema_url(pg_base_url())


@pytest.fixture
def sims() -> Iterator[Simulators]:
    with start_simulators(seed="empty") as running:
        yield running


def lease_holders(store: Store) -> dict[str, str | None]:
    now = store.clock()
    holders = {}
    for name in STREAMS:
        lease = store.lease(name)
        holders[name] = lease.holder if lease is not None and lease.expires_at > now else None
    return holders


def produce(sn: ServiceNow, jira: Jira, prefix: str, count: int) -> None:
    for i in range(count):
        sn.create("change_request", short_description=f"{prefix} SN {i:02d}", state="-5",
                  approval="not requested", type="normal", risk="3")
        if i % 2 == 0:
            jira.create_issue("Change", f"{prefix} Jira {i:02d}")
        time.sleep(0.05)


def test_two_instances_never_create_one_object_twice(bridge) -> None:
    """Two engines on one store (as two processes) propagating one new record at once: the
    second waits for the first's create instead of making a duplicate it cannot find yet."""
    sn = bridge.sn
    first, second = bridge.runtime(), bridge.runtime()
    sn.create("change_request", short_description="Warm-up", state="-5")
    first.engine.sync_once()  # both systems listed once: creates skip the correlation look-up
    change = sn.create("change_request", short_description="Raced change", state="-5")
    fields = first.mappings.for_system("servicenow").fields_to_read("change")
    key = first.engine.ingest(first.adapters["servicenow"].read("change", change["sys_id"], fields), SyncReport())
    add_fault(bridge.sims.jira_url, method="POST", path="/issue$", delay_ms=800, times=2)

    outcomes: dict[str, BaseException | None] = {}

    def propagate(name: str, rt) -> None:
        try:
            rt.engine.propagate("change", key, SyncReport())
            outcomes[name] = None
        except BaseException as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=propagate, args=(name, rt)) for name, rt in (("a", first), ("b", second))]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    for thread in threads:
        thread.join(10)
    summaries = [i["fields"]["summary"] for i in bridge.jira.search('project = OPS AND issuetype = "Change"')]
    assert summaries.count("Raced change") == 1
    waited = outcomes["b"]
    assert isinstance(waited, CreateInProgress) and is_transient(waited) and waited.retry_after >= 1
    # Retried later (as the daemon does), the second finds the object linked: nothing more.
    second.engine.propagate("change", key, SyncReport())
    summaries = [i["fields"]["summary"] for i in bridge.jira.search('project = OPS AND issuetype = "Change"')]
    assert summaries.count("Raced change") == 1


@pytest.mark.slow
@pytest.mark.postgres
def test_survivor_takes_over_when_one_instance_dies(sims: Simulators, pg_url: str, tmp_path: Path) -> None:
    sn, jira = ServiceNow(sims.servicenow_url), Jira(sims.jira_url or "")
    store = Store(pg_url)  # migrated once here, so both daemons start on a ready schema
    daemons = {}
    try:
        for name in ("alpha", "beta"):
            config = write_config(tmp_path / f"{name}.toml", sims.servicenow_url, sims.jira_url or "", pg_url,
                                  workers=3)
            bind = config.read_text().split('bind = "')[1].split('"')[0]
            daemons[name] = (DaemonProcess(config, tmp_path / f"{name}.log", instance_id=name), f"http://{bind}")
        for proc, url in daemons.values():
            wait_ready(url, proc)
        holders = eventually(lambda: (h := lease_holders(store)) and all(h.values()) and h, what="all streams polled")
        assert set(holders.values()) <= {"alpha", "beta"}

        produce(sn, jira, "before", 10)
        # Kill the instance polling ServiceNow changes, while work is flowing.
        victim = holders[lease_name("servicenow", "change")]
        survivor = "beta" if victim == "alpha" else "alpha"
        producer = threading.Thread(target=produce, args=(sn, jira, "during", 16))
        producer.start()
        time.sleep(0.4)
        daemons[victim][0].kill()
        producer.join(30)

        # The survivor takes every stream over once the dead holder's leases expire.
        eventually(lambda: set(lease_holders(store).values()) == {survivor}, timeout=15,
                   what=f"{survivor} holding every poll lease")
        expected = Counter({f"{p} SN {i:02d}" for p, n in (("before", 10), ("during", 16)) for i in range(n)}
                           | {f"{p} Jira {i:02d}" for p, n in (("before", 10), ("during", 16))
                              for i in range(0, n, 2)})

        def synced() -> bool:
            issues = Counter(i["fields"]["summary"] for i in jira.search('project = OPS AND issuetype = "Change"'))
            changes = Counter(c["short_description"] for c in sn.list("change_request"))
            return set(issues) == set(expected) and set(changes) == set(expected)

        eventually(synced, timeout=40, what="every change in both systems")
        eventually(lambda: Inbox(store).depth() == 0, timeout=20, what="an empty queue")
        time.sleep(2.0)
        issues = Counter(i["fields"]["summary"] for i in jira.search('project = OPS AND issuetype = "Change"'))
        changes = Counter(c["short_description"] for c in sn.list("change_request"))
        assert issues == expected and changes == expected  # each exactly once
        assert Inbox(store).dead_letters() == []

        for proc, _ in daemons.values():  # both instances did work
            assert '"message": "synced ' in proc.output()
        proc, _ = daemons[survivor]
        assert proc.terminate(timeout=15) == 0, proc.output()[-3000:]
        # A clean stop gives the leases up at once, for another instance to take.
        assert set(lease_holders(store).values()) == {None}
    finally:
        for proc, _ in daemons.values():
            proc.ensure_stopped()
        store.close()
