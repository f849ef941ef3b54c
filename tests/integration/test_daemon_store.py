"""Honest readiness and a failing store (issue 11, item 5): /readyz writes, store errors are
counted and make the daemon not ready, a lasting failure stops it cleanly, and SQLite files
that stop being writable end the daemon with exit 1 and a line naming the store, not SIGBUS.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import event

from bridge.daemon.metrics import Metrics
from bridge.daemon.service import Daemon
from bridge.retry import RetryPolicy
from bridge.store import Store
from tests.integration.daemon_support import (
    DaemonProcess,
    daemon_sections,
    eventually,
    free_port,
    start_daemon,
    wait_ready,
    write_config,
)


def read_only(store: Any) -> None:
    """Make SQLite refuse every write from now on (``PRAGMA query_only``), as a read-only
    store does: reads still answer, so ``SELECT 1`` would say "ready"."""
    @event.listens_for(store.engine, "connect")
    def _query_only(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only = ON")

    store.engine.dispose()


def sqlite_only(bridge) -> None:
    if not bridge.store_url.startswith("sqlite"):
        pytest.skip("the SQLite read-only switch; PostgreSQL goes through the same probe")


def store_errors(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("relbridge_store_errors_total") or 0.0


def test_readyz_is_503_with_a_reason_on_a_store_that_refuses_writes(bridge, daemons) -> None:
    sqlite_only(bridge)
    daemon = start_daemon(bridge)
    daemons.append(daemon)
    assert daemon.receiver is not None
    url = f"{daemon.receiver.url}/readyz"
    assert requests.get(url, timeout=10).status_code == 200

    read_only(daemon.runtime.store)
    time.sleep(5.1)  # the receiver reuses a readiness answer for 5 s
    response = requests.get(url, timeout=10)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "unavailable"
    assert "readonly" in body["checks"]["store"], body
    assert store_errors(daemon.metrics) >= 1
    assert daemon.store_watch is not None and daemon.store_watch.problem()


def test_a_lasting_store_failure_stops_the_daemon_with_exit_1(bridge, caplog) -> None:
    sqlite_only(bridge)
    runtime = bridge.runtime(**daemon_sections())
    daemon = Daemon(runtime, metrics=Metrics(), instance_id="store-fails", claim_lease_seconds=3,
                    retry_policy=RetryPolicy(attempts=1), store_failure_seconds=2.0)

    def break_the_store() -> None:
        eventually(lambda: daemon.receiver is not None and daemon.receiver.server.started,
                   what="the daemon's receiver")
        read_only(runtime.store)

    def give_up() -> None:  # the test's own safety net: without the fix run_forever never returns
        if not stopped.wait(30):
            os.kill(os.getpid(), signal.SIGTERM)

    stopped = threading.Event()
    threading.Thread(target=break_the_store, daemon=True).start()
    threading.Thread(target=give_up, daemon=True).start()
    started = time.monotonic()
    try:
        code = daemon.run_forever(shutdown_seconds=5)
    finally:
        stopped.set()
    assert code == 1
    assert time.monotonic() - started < 25
    assert store_errors(daemon.metrics) >= 1
    lines = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any(line.startswith(f"the store at {runtime.store.url} fails:") for line in lines), lines
    assert any(line.startswith(f"the store at {runtime.store.url} has failed for") for line in lines), lines


# -- SQLite files that stop being writable --------------------------------------------------------


def lock_file(path: Path) -> None:
    """Make ``path`` unwritable: the immutable flag as root (permissions do not stop root),
    read-only permissions otherwise."""
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot set the immutable flag here: {done.stderr.decode().strip()}")
    else:
        path.chmod(0o444)


def unlock_file(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o644)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    db = tmp_path / "relbridge.db"
    yield f"sqlite:///{db}", db
    for suffix in ("", "-wal", "-shm"):
        target = Path(f"{db}{suffix}")
        if target.exists():
            unlock_file(target)


@pytest.mark.parametrize("suffix", ["-shm", ""])
def test_sqlite_files_made_unwritable_stop_the_daemon_cleanly_not_by_sigbus(
    bridge, tmp_path: Path, sqlite_store: tuple[str, Path], suffix: str
) -> None:
    sqlite_only(bridge)
    url, db = sqlite_store
    bind = f"127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "config.toml", bridge.sims.servicenow_url, bridge.sims.jira_url or "",
                          url, bind=bind, interval=0.2)
    proc = DaemonProcess(config, tmp_path / "daemon.log", instance_id="shm")
    try:
        wait_ready(f"http://{bind}", proc)
        eventually(lambda: Path(f"{db}-shm").exists(), what="the -shm file")
        bridge.sn.create("change_request", short_description="keeps the store busy", state="-5")
        time.sleep(1.0)  # pollers, workers and the heartbeat all write now
        lock_file(Path(f"{db}{suffix}"))
        code = proc.proc.wait(30)
    finally:
        proc.ensure_stopped()
    output = proc.output()
    assert code == 1, f"exit {code} (negative: killed by that signal)\n{output[-3000:]}"
    assert "Bus error" not in output
    assert f"the store at {url} cannot be written" in output, output[-3000:]


def test_a_store_that_cannot_be_written_is_refused_at_start(
    bridge, tmp_path: Path, sqlite_store: tuple[str, Path]
) -> None:
    sqlite_only(bridge)
    url, db = sqlite_store
    with Store(url):  # creates the schema
        pass
    lock_file(db)
    config = write_config(tmp_path / "config.toml", bridge.sims.servicenow_url, bridge.sims.jira_url or "",
                          url)
    proc = DaemonProcess(config, tmp_path / "daemon.log", instance_id="refused")
    try:
        code = proc.proc.wait(30)
    finally:
        proc.ensure_stopped()
    output = proc.output()
    assert code == 2, output[-3000:]
    assert "cannot be written" in output and str(db) in output
    assert "Traceback" not in output
