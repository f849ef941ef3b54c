"""Helpers for the daemon tests: in-process daemons, daemon subprocesses, waiting."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import requests

from bridge.daemon.inbox import Inbox
from bridge.daemon.metrics import Metrics
from bridge.daemon.service import Daemon
from bridge.retry import RetryPolicy

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
SN_SECRET = "sn-hook-secret-7f3a"
JIRA_SECRET = "jira-hook-secret-91bc"
ENTITY_TABLES = ["rm_release", "change_request", "incident", "rm_m2m_release_task"]
JIRA_EVENTS = ["jira:issue_created", "jira:issue_updated", "jira:issue_deleted", "issuelink_created",
               "issuelink_deleted", "jira:version_created", "jira:version_updated", "jira:version_released",
               "jira:version_unreleased", "jira:version_deleted"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(check: Callable[[], T], timeout: float = 20.0, interval: float = 0.2, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check!r}; last value: {last!r}")


def daemon_sections(*, interval: float = 0.5, workers: int = 4, bind: str | None = None) -> dict[str, Any]:
    """Config sections for a quick daemon: short poll interval and backoff, test secrets."""
    return {
        "sync": {"interval_seconds": interval, "workers": workers, "overlap_seconds": 5,
                 "retry_base_seconds": 0.2, "retry_max_seconds": 2, "max_attempts": 10},
        "webhooks": {"bind": bind or f"127.0.0.1:{free_port()}", "jira_secret": JIRA_SECRET,
                     "servicenow_secret": SN_SECRET},
    }


def start_daemon(bridge: Any, *, claim_lease_seconds: float = 3.0, policy: RetryPolicy | None = None,
                 instance_id: str = "test-instance", **sections: dict[str, Any]) -> Daemon:
    """A started in-process daemon on ``bridge``'s simulators and store; stop it yourself."""
    merged = daemon_sections()
    for name, values in sections.items():
        merged.setdefault(name, {}).update(values)
    runtime = bridge.runtime(**merged)
    daemon = Daemon(runtime, metrics=Metrics(), instance_id=instance_id,
                    claim_lease_seconds=claim_lease_seconds,
                    retry_policy=policy or RetryPolicy(attempts=3, base_wait=0.05, max_wait=1.0))
    daemon.start()
    return daemon


def register_webhooks(sn_url: str, jira_url: str, receiver_url: str) -> None:
    """Point both simulators' outbound webhooks at the daemon's receiver."""
    requests.post(f"{sn_url}/_sim/webhooks", json={
        "url": f"{receiver_url}/webhooks/servicenow", "secret": SN_SECRET, "tables": ENTITY_TABLES,
    }).raise_for_status()
    requests.post(f"{jira_url}/rest/webhooks/1.0/webhook", auth=("admin", "admin"), json={
        "name": "relbridge", "url": f"{receiver_url}/webhooks/jira", "events": JIRA_EVENTS, "secret": JIRA_SECRET,
    }).raise_for_status()


def add_fault(url: str, **rule: Any) -> None:
    requests.post(f"{url}/_sim/faults", json=rule).raise_for_status()


def clear_faults(*urls: str) -> None:
    for url in urls:
        requests.delete(f"{url}/_sim/faults").raise_for_status()


def queue_idle(inbox: Inbox) -> bool:
    """Nothing waiting or in flight (dead letters aside)."""
    return inbox.depth() == 0


# --- subprocess daemons ------------------------------------------------------------------------


def write_config(path: Path, sn_url: str, jira_url: str, store_url: str, *, interval: float = 0.5,
                 workers: int = 4, bind: str | None = None, level: str = "INFO", timeout: float = 5) -> Path:
    bind = bind or f"127.0.0.1:{free_port()}"
    path.write_text(f"""
[servicenow]
url = "{sn_url}"
timeout_seconds = {timeout}
[jira]
url = "{jira_url}"
timeout_seconds = {timeout}
[store]
url = "{store_url}"
[sync]
interval_seconds = {interval}
overlap_seconds = 5
workers = {workers}
retry_base_seconds = 0.2
retry_max_seconds = 2
max_attempts = 10
[webhooks]
bind = "{bind}"
jira_secret = "{JIRA_SECRET}"
servicenow_secret = "{SN_SECRET}"
[log]
level = "{level}"
""", encoding="utf-8")
    return path


# Until `relbridge run` exists in the CLI, the subprocess calls `bridge.daemon.service.run` itself.
class DaemonProcess:
    """``relbridge run`` in a child process, its log in a file."""

    def __init__(self, config: Path, log: Path, *, instance_id: str, claim_lease_seconds: float = 3.0) -> None:
        self.log = log
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "RELBRIDGE_SYNC__CLAIM_LEASE_SECONDS": str(claim_lease_seconds)}
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bridge", "run", "--config", str(config), "--instance-id", instance_id,
                 "--log-format", "json"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def ensure_stopped(self) -> None:
        if self.alive():
            self.kill()


def wait_ready(url: str, proc: DaemonProcess, timeout: float = 20.0) -> None:
    """Until the daemon answers /healthz (or died: then fail with its log)."""
    def up() -> bool:
        assert proc.alive(), f"daemon exited with {proc.proc.returncode}:\n{proc.output()[-4000:]}"
        try:
            return requests.get(f"{url}/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False
    eventually(up, timeout, what="daemon /healthz")
