"""How many simple GETs per second each simulator serves (prints figures, never fails).

The simulators must never be the bottleneck of a test or a benchmark of relbridge itself.
They run in a child process (as in `relbridge sim`), and a few client threads with keep-alive
connections hammer one cheap endpoint per server for a fixed time. Besides the achieved rate
(which the Python client on the same machine also limits) the bench prints the server's own
CPU time per request and the rate one server core could sustain.

    python bench/sim.py [--seconds 3] [--threads 4] [--latency-ms 0]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import multiprocessing as mp
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from urllib.parse import urlsplit

from bridge.sim import start_simulators

SERVICENOW_PATH = "/api/now/table/change_request/{sys_id}"
JIRA_PATH = "/rest/api/2/serverInfo"
AUTH = ("admin", "admin")


@dataclass
class Result:
    name: str
    ok: int
    errors: int
    seconds: float

    server_cpu: float

    def line(self) -> str:
        rate = self.ok / self.seconds if self.seconds else 0.0
        total = self.ok + self.errors
        per_request = self.server_cpu / total * 1e6 if total else 0.0
        capacity = total / self.server_cpu if self.server_cpu else 0.0
        return (f"{self.name:<11} {rate:7.0f} GET/s achieved  ({self.ok} ok, {self.errors} errors)"
                f"  server CPU {per_request:5.0f} us/request = {capacity:6.0f} GET/s per core")


def _serve(latency_ms: int, conn: Connection) -> None:
    """Child process: run the simulators; answer each message with the CPU time used so far."""
    with start_simulators(seed="demo", latency_ms=latency_ms) as sims:
        sample = sims.servicenow.store.records("change_request")[0]
        conn.send((sims.servicenow_url, sims.jira_url, sample["sys_id"]))
        while conn.recv() != "stop":
            conn.send(time.process_time())


def _hammer(url: str, seconds: float, threads: int) -> tuple[int, int]:
    """Keep-alive GETs from ``threads`` threads. http.client, not requests: the client must
    cost less CPU than the server, or the bench measures the client."""
    parts = urlsplit(url)
    headers = {"Authorization": "Basic " + base64.b64encode(b"%s:%s" % tuple(a.encode() for a in AUTH)).decode(),
               "Accept": "application/json"}
    counts = [0, 0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        ok = errors = 0
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        while time.monotonic() < deadline:
            try:
                connection.request("GET", parts.path, headers=headers)
                response = connection.getresponse()
                response.read()
                ok, errors = (ok + 1, errors) if response.status == 200 else (ok, errors + 1)
            except (OSError, http.client.HTTPException):
                errors += 1
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        connection.close()
        with lock:
            counts[0] += ok
            counts[1] += errors

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return counts[0], counts[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--latency-ms", type=int, default=0)
    args = parser.parse_args(argv)

    conn, child_conn = mp.Pipe()
    server = mp.Process(target=_serve, args=(args.latency_ms, child_conn), daemon=True)
    server.start()

    def server_cpu() -> float:
        conn.send("cpu")
        return float(conn.recv())

    try:
        if not conn.poll(30):
            print("simulators did not start", file=sys.stderr)
            return 1
        servicenow_url, jira_url, sys_id = conn.recv()
        targets = [("servicenow", servicenow_url + SERVICENOW_PATH.format(sys_id=sys_id))]
        if jira_url:
            targets.append(("jira", jira_url + JIRA_PATH))
        print(f"{args.threads} client threads, {args.seconds:g} s each, "
              f"latency {args.latency_ms} ms, servers in one child process")
        for name, url in targets:
            _hammer(url, 0.3, args.threads)  # warm up connections
            cpu_before, started = server_cpu(), time.monotonic()
            ok, errors = _hammer(url, args.seconds, args.threads)
            elapsed, cpu = time.monotonic() - started, server_cpu() - cpu_before
            print(Result(name, ok, errors, elapsed, cpu).line())
        if not jira_url:
            print("jira        (simulator not available)")
    finally:
        conn.send("stop")
        server.join(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
