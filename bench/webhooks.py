"""Webhook path figures: change-to-target latency through the daemon, and receiver throughput.

1. **Latency.** Simulators in a child process with ``--latency-ms`` (default 20), the daemon
   as operators run it (``relbridge run`` in its own process), registered as the ServiceNow
   simulator's webhook target. After a backfill and once the daemon has settled, changes are
   edited in ServiceNow at ``--rate`` per second (default 20) for ``--seconds``, each edit a
   different change (enough releases are seeded for that, unless ``--releases`` says); each edit's
   latency runs from the moment the ServiceNow PATCH returned to the moment the Jira simulator
   announced the new summary (its own webhook, caught by a small listener here). Prints p50 /
   p99 / max.
2. **Receiver throughput.** The real receiver (signature check, size and content checks,
   adapter parsing, durable enqueue) against a bare ASGI endpoint that only does the same
   durable insert, both on uvicorn on the same store type, loaded by the same client
   threads with signed ServiceNow notices for distinct records, in ``--rounds`` alternating
   rounds. Prints the median accepted/s for each and their ratio (target: receiver ≥ 0.8 ×
   bare).

    python bench/webhooks.py [--rate 20] [--seconds 15] [--latency-ms 20] [--requests 3000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from _common import SimProcess
from pydantic import SecretStr
from relbridge_servicenow import ServiceNowAdapter
from relbridge_servicenow import signature as servicenow_signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge.config import WebhooksConfig, load_config
from bridge.daemon.inbox import Inbox
from bridge.daemon.metrics import Metrics
from bridge.daemon.receiver import create_app
from bridge.runtime import Runtime
from bridge.sim.server import start_in_thread

ROOT = Path(__file__).resolve().parent.parent
AUTH = ("admin", "admin")
SN_SECRET = "bench-servicenow-secret"
JIRA_SECRET = "bench-jira-secret"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))]


# --- 1. latency -------------------------------------------------------------------------------


class JiraListener:
    """Receives the Jira simulator's own webhooks: when did each new summary land?"""

    def __init__(self) -> None:
        self.landed: dict[str, float] = {}
        self.arrived = threading.Condition()
        app = Starlette(routes=[Route("/jira", self.receive, methods=["POST"])])
        self.server = start_in_thread(app)

    async def receive(self, request: Request) -> Response:
        now = time.monotonic()
        body = json.loads(await request.body())
        for item in (body.get("changelog") or {}).get("items", []):
            if item.get("field") == "summary" and item.get("toString"):
                with self.arrived:
                    self.landed.setdefault(item["toString"], now)
                    self.arrived.notify_all()
        return Response(status_code=204)


def measure_latency(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    port = free_port()
    with SimProcess.start(args.releases, latency_ms=args.latency_ms) as sims:
        store_url = f"sqlite:///{folder / 'latency.db'}"
        config_file = folder / "config.toml"
        config_file.write_text(
            f'[servicenow]\nurl = "{sims.servicenow}"\n[jira]\nurl = "{sims.jira}"\n[store]\nurl = "{store_url}"\n'
            f'[sync]\ninterval_seconds = 30\nworkers = {args.workers}\noverlap_seconds = 5\n'
            f'[webhooks]\nbind = "127.0.0.1:{port}"\njira_secret = "{JIRA_SECRET}"\n'
            f'servicenow_secret = "{SN_SECRET}"\n[log]\nlevel = "WARNING"\n', encoding="utf-8")
        runtime = Runtime(load_config(config_file))
        runtime.engine.sync_once()  # the backfill; the latency run edits what it created
        runtime.close()
        changes = requests.get(f"{sims.servicenow}/api/now/table/change_request", auth=AUTH, timeout=60,
                               params={"sysparm_fields": "sys_id", "sysparm_limit": "100000"}).json()["result"]
        listener = JiraListener()
        requests.post(f"{sims.servicenow}/_sim/webhooks", timeout=30, json={
            "url": f"http://127.0.0.1:{port}/webhooks/servicenow", "secret": SN_SECRET,
            "tables": ["change_request"]}).raise_for_status()
        requests.post(f"{sims.jira}/rest/webhooks/1.0/webhook", auth=AUTH, timeout=30, json={
            "name": "bench", "url": f"{listener.server.url}/jira", "events": ["jira:issue_updated"]}
        ).raise_for_status()
        # The daemon runs as operators run it: its own process (`relbridge run`).
        daemon = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(config_file)],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sent: dict[str, float] = {}
        session = requests.Session()
        session.auth = AUTH
        cpu_used = None
        try:
            wait_until_settled(f"http://127.0.0.1:{port}")
            sims.clear_logs()
            cpu_before = process_cpu_seconds(daemon.pid)
            total = int(args.rate * args.seconds)
            start = time.monotonic()
            for i in range(total):
                time.sleep(max(0.0, start + i / args.rate - time.monotonic()))
                summary = f"bench edit {i} {uuid.uuid4().hex[:6]}"
                change = changes[i % len(changes)]
                session.patch(f"{sims.servicenow}/api/now/table/change_request/{change['sys_id']}",
                              json={"short_description": summary}, timeout=30).raise_for_status()
                sent[summary] = time.monotonic()
            deadline = time.monotonic() + 30
            with listener.arrived:
                while len(set(sent) & set(listener.landed)) < len(sent) and time.monotonic() < deadline:
                    listener.arrived.wait(0.5)
            cpu_after = process_cpu_seconds(daemon.pid)
            if cpu_before is not None and cpu_after is not None:
                cpu_used = cpu_after - cpu_before
            logs = sims.logs()
            bare_get_ms = bare_get_cpu_ms(session, f"{sims.servicenow}/api/now/table/change_request/"
                                                   f"{changes[0]['sys_id']}")
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(20)
            listener.server.stop()
    latencies = [(listener.landed[s] - t) * 1000 for s, t in sent.items() if s in listener.landed]
    # The bench's own edits are PATCHes in the ServiceNow log; every other call is the daemon's.
    daemon_calls = sum(log.count for log in logs.values()) - len(sent)
    endpoints = {system: dict(log.by_endpoint().most_common(12)) for system, log in logs.items()}
    cpu_ms = cpu_used * 1000 / len(sent) if cpu_used is not None and sent else None
    return {
        "events": len(sent),
        "landed": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
        "max_ms": round(max(latencies), 1) if latencies else None,
        # The daemon's CPU (receiver, worker, pollers) over the edit stream, per edit.
        "daemon_cpu_ms_per_event": round(cpu_ms, 1) if cpu_ms is not None else None,
        "api_calls_per_event": round(daemon_calls / len(sent), 2) if sent else None,
        # A yardstick measured in the same run: the daemon's CPU per edit in plain GETs' worth.
        "bare_get_cpu_ms": round(bare_get_ms, 2),
        "daemon_cpu_in_bare_gets": round(cpu_ms / bare_get_ms, 1) if cpu_ms is not None else None,
        **({"endpoints": endpoints} if args.endpoints else {}),
    }


def bare_get_cpu_ms(session: requests.Session, url: str, calls: int = 300) -> float:
    """This process's CPU for one plain ``requests`` GET of a record: the client work an
    edit cannot do without (the daemon makes about five calls per edit), and a yardstick
    that makes the daemon's figure comparable across machines."""
    session.get(url, timeout=30).raise_for_status()
    start = time.process_time()
    for _ in range(calls):
        session.get(url, timeout=30).json()
    return (time.process_time() - start) * 1000 / calls


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process so far (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_settled(base: str, timeout: float = 180) -> None:
    """Until the daemon answers and its first polls (which read back what the backfill
    wrote) have drained the inbox: the bench measures the steady state."""
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        try:
            text = requests.get(f"{base}/metrics", timeout=5).text
        except requests.RequestException:
            time.sleep(0.2)
            continue
        depth = next((float(line.split()[-1]) for line in text.splitlines()
                      if line.startswith("relbridge_queue_depth ")), 1.0)
        quiet_since = (quiet_since or time.monotonic()) if depth == 0 else None
        if quiet_since and time.monotonic() - quiet_since > 2:
            return
        time.sleep(0.2)
    raise RuntimeError("the daemon did not settle")


# --- 2. receiver throughput ----------------------------------------------------------------------


def bare_app(inbox: Inbox) -> Starlette:
    """The floor: read the body, do the same durable insert, answer 202. No checks at all."""
    from starlette.concurrency import run_in_threadpool

    async def endpoint(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        await run_in_threadpool(inbox.enqueue, "servicenow", "change", body["sys_id"], source="webhook",
                                delivery_id=f"{body['sys_id']}:{body['sys_mod_count']}:update")
        return JSONResponse({"accepted": 1}, status_code=202)

    return Starlette(routes=[Route("/webhooks/servicenow", endpoint, methods=["POST"])])


def post_load(url: str, count: int, threads: int) -> float:
    """POST ``count`` signed notices for distinct records; returns accepted per second."""
    parts = urlsplit(url)
    bodies = []
    for i in range(count):
        body = json.dumps({"table": "change_request", "sys_id": uuid.uuid4().hex, "number": f"CHG{i:07d}",
                           "operation": "update", "sys_updated_on": "2026-01-01 00:00:00",
                           "sys_mod_count": "1"}).encode()
        bodies.append(body)
    accepted = [0]
    lock = threading.Lock()
    chunks = [bodies[i::threads] for i in range(threads)]

    def worker(chunk: list[bytes]) -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        ok = 0
        for body in chunk:
            stamp = str(int(time.time()))
            signature = hmac.new(SN_SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            connection.request("POST", parts.path, body=body, headers={
                "Content-Type": "application/json", "X-Relbridge-Timestamp": stamp,
                "X-Relbridge-Signature": f"sha256={signature}"})
            response = connection.getresponse()
            response.read()
            ok += response.status == 202
        connection.close()
        with lock:
            accepted[0] += ok

    started = time.monotonic()
    pool = [threading.Thread(target=worker, args=(chunk,)) for chunk in chunks]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return accepted[0] / (time.monotonic() - started)


def measure_receiver(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Both endpoints served side by side, loaded in alternating rounds (the order flips
    each round, so drift in the machine's load hits both alike); the median round counts."""
    from bridge.store import Store

    servers, stores = {}, []
    try:
        for name in ("bare", "receiver"):
            store = Store(f"sqlite:///{folder / f'{name}.db'}")
            stores.append(store)
            inbox = Inbox(store)
            if name == "bare":
                app = bare_app(inbox)
            else:
                adapter = ServiceNowAdapter("http://127.0.0.1:9", "admin", SecretStr("admin"))  # parsing only
                config = WebhooksConfig(servicenow_secret=SecretStr(SN_SECRET), jira_secret=SecretStr(JIRA_SECRET))
                schemes = {"servicenow": servicenow_signature.scheme(config.servicenow_secret)}
                app = create_app(inbox=inbox, adapters={"servicenow": adapter}, config=config, schemes=schemes,
                                 metrics=Metrics())
            servers[name] = start_in_thread(app)
            post_load(f"{servers[name].url}/webhooks/servicenow", 200, args.threads)  # warm up
        rounds: dict[str, list[float]] = {"bare": [], "receiver": []}
        for number in range(args.rounds):
            for name in (("bare", "receiver") if number % 2 == 0 else ("receiver", "bare")):
                rounds[name].append(post_load(f"{servers[name].url}/webhooks/servicenow", args.requests, args.threads))
    finally:
        for server in servers.values():
            server.stop()
        for store in stores:
            store.close()
    receiver, bare = statistics.median(rounds["receiver"]), statistics.median(rounds["bare"])
    return {"accepted_per_s": round(receiver, 1), "bare_per_s": round(bare, 1),
            "receiver_ratio": round(receiver / bare, 3),
            "rounds": {name: [round(value, 1) for value in values] for name, values in rounds.items()}}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="edits per second (default 20)")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to edit (default 15)")
    parser.add_argument("--latency-ms", type=int, default=20, help="simulated API latency (default 20)")
    parser.add_argument("--releases", type=int, default=None,
                        help="releases seeded, 5 changes each (default: enough that every edit goes to a "
                             "distinct change, at least 20)")
    parser.add_argument("--workers", type=int, default=8)  # [sync] workers default
    parser.add_argument("--requests", type=int, default=3000, help="webhooks per receiver run (default 3000)")
    parser.add_argument("--threads", type=int, default=8, help="client threads for the receiver run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating receiver/bare rounds (median counts)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--endpoints", action="store_true",
                        help="also list the daemon's API calls by endpoint during the edit stream")
    args = parser.parse_args(argv)
    if args.releases is None:
        # Each edit must land: an edit of a change still waiting in the inbox coalesces with
        # the next one, so no change is edited twice.
        args.releases = max(20, -(-int(args.rate * args.seconds) // 5))
    with tempfile.TemporaryDirectory(prefix="relbridge-bench-") as tmp:
        folder = Path(tmp)
        figures = {**measure_latency(args, folder), **measure_receiver(args, folder),
                   "rate_per_s": args.rate, "latency_ms_setting": args.latency_ms}
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"latency  {figures['landed']}/{figures['events']} edits landed at {args.rate:g}/s with "
          f"{args.latency_ms} ms API latency: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
          f"max {figures['max_ms']} ms; daemon CPU {figures['daemon_cpu_ms_per_event']} ms and "
          f"{figures['api_calls_per_event']} API calls per edit (the CPU of "
          f"{figures['daemon_cpu_in_bare_gets']} plain requests GETs at {figures['bare_get_cpu_ms']} ms each)")
    for system, shapes in figures.get("endpoints", {}).items():
        for shape, count in shapes.items():
            print(f"  {system:10} {count:6} {shape}")
    print(f"receiver {figures['accepted_per_s']} accepted/s vs bare endpoint {figures['bare_per_s']}/s "
          f"= {figures['receiver_ratio']}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
