"""Shared pieces of the benchmarks: simulators in a child process, seed data, request logs.

The simulators run in their own process (as `relbridge sim` would), so they never share the
GIL with the relbridge code being measured. The child seeds its ServiceNow store in-process
before it answers, so seeding costs no HTTP calls and is never part of a measurement.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import random
import re
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any

import requests

from bridge.sim import start_simulators
from bridge.sim.servicenow.store import ServiceNowStore

AUTH = ("admin", "admin")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CHANGES_PER_RELEASE = 5
INCIDENTS_PER_RELEASE = 2
START_TIMEOUT = 120.0
_ID = re.compile(r"\d{3,}|[0-9a-f]{32}|[A-Z][A-Z0-9]*-\d+")

# --- seed data -------------------------------------------------------------------------------

#: Release phases and their weights: what a release calendar of a year looks like.
PROFILES = (("planning", 25), ("scheduled", 25), ("deploying", 20), ("done", 30))
#: ServiceNow change_request states: new, assess, scheduled, implement, closed.
NEW, ASSESS, SCHEDULED, IMPLEMENT, CLOSED = "-5", "-4", "-2", "-1", "3"
APPROVAL = {NEW: "not requested", ASSESS: "requested", SCHEDULED: "approved",
            IMPLEMENT: "approved", CLOSED: "approved"}


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _change_states(profile: str, rng: random.Random) -> list[str]:
    if profile == "planning":
        return [rng.choice((NEW, NEW, ASSESS)) for _ in range(CHANGES_PER_RELEASE)]
    if profile == "scheduled":
        return [rng.choice((SCHEDULED, SCHEDULED, SCHEDULED, ASSESS)) for _ in range(CHANGES_PER_RELEASE)]
    if profile == "deploying":
        return [rng.choice((SCHEDULED, IMPLEMENT, IMPLEMENT, CLOSED)) for _ in range(CHANGES_PER_RELEASE)]
    return [CLOSED] * CHANGES_PER_RELEASE


def _incident_state(profile: str, rng: random.Random) -> str:
    if profile == "done":
        return rng.choice(("6", "7", "7"))  # resolved, closed
    if profile == "deploying":
        return rng.choice(("1", "2", "2", "6"))  # new, in progress, resolved
    return rng.choice(("1", "2"))


def seed_servicenow(store: ServiceNowStore, n: int, seed: int = 7) -> dict[str, int]:
    """``n`` releases with 5 changes (linked through rm_m2m_release_task) and 2 incidents
    each, caused by one of the release's changes. Deterministic for a given ``seed`` (sys_ids
    aside), dated in the past so that none of it looks like an echo of relbridge's writes."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    names, weights = zip(*PROFILES, strict=True)
    counts: Counter[str] = Counter()

    def add(table: str, created: datetime, updated: datetime, mods: int, values: dict[str, str]) -> str:
        stamps = {"sys_created_on": _stamp(created), "sys_updated_on": _stamp(updated),
                  "sys_mod_count": str(mods), "sys_created_by": "admin", "sys_updated_by": "admin"}
        counts[table] += 1
        return store.insert(table, values, "admin", sys_values=stamps)["sys_id"]

    for index in range(n):
        profile = rng.choices(names, weights)[0]
        offset = {"planning": 40, "scheduled": 15, "deploying": 0, "done": -60}[profile]
        start = now + timedelta(days=offset + rng.randint(0, 20), hours=rng.randint(0, 12))
        end = start + timedelta(days=rng.randint(1, 7))
        created = now - timedelta(days=rng.randint(30, 120), minutes=index)
        updated = created + timedelta(days=rng.randint(0, 20))
        release_state = {"planning": rng.choice(("-5", "1")), "scheduled": "2",
                         "deploying": "2", "done": "3"}[profile]
        release = add("rm_release", created, updated, rng.randint(0, 9), {
            "short_description": f"Release {index + 1:05d} ({profile})",
            "description": f"Bench release {index + 1} of {n}: a {profile} release.",
            "state": release_state, "priority": str(rng.randint(1, 4)),
            "start_date": _stamp(start), "end_date": _stamp(end),
            **({"work_start": _stamp(start), "work_end": _stamp(end)} if profile == "done" else {}),
        })
        changes: list[tuple[str, str]] = []
        for number, state in enumerate(_change_states(profile, rng)):
            change_start = start + timedelta(hours=4 * number)
            values = {
                "short_description": f"Change {number + 1} of release {index + 1:05d}",
                "description": "Deploy a service update behind a feature flag.",
                "state": state, "approval": APPROVAL[state],
                "type": rng.choice(("normal", "normal", "normal", "standard", "emergency")),
                "risk": str(rng.randint(1, 4)),
                "start_date": _stamp(change_start), "end_date": _stamp(change_start + timedelta(hours=2)),
            }
            if state == CLOSED:
                values["close_code"] = rng.choice(("successful", "successful", "successful_issues"))
            change = add("change_request", created, updated, rng.randint(0, 9), values)
            add("rm_m2m_release_task", created, created, 0, {"release": release, "task": change})
            changes.append((change, state))
        live = [c for c, s in changes if s in (IMPLEMENT, CLOSED)] or [c for c, _ in changes]
        for number in range(INCIDENTS_PER_RELEASE):
            state = _incident_state(profile, rng)
            opened = min(now - timedelta(hours=1), start + timedelta(hours=6 + number))
            values = {
                "short_description": f"Incident {number + 1} after release {index + 1:05d}",
                "description": "Error rate above the alert threshold after the deployment.",
                "state": state, "priority": str(rng.randint(1, 5)), "caused_by": rng.choice(live),
                "opened_at": _stamp(opened),
            }
            if state in ("6", "7"):
                values["resolved_at"] = _stamp(opened + timedelta(hours=rng.randint(1, 30)))
            add("incident", created, updated, rng.randint(0, 5), values)
    return dict(counts)


# --- simulators in a child process -----------------------------------------------------------


def _serve(n: int, seed: int, latency_ms: int, flavor: str, conn: Connection) -> None:
    """Child process: start both simulators, seed ServiceNow, serve until told to stop."""
    with start_simulators(seed="empty", latency_ms=latency_ms, jira_flavor=flavor) as sims:
        counts = seed_servicenow(sims.servicenow.store, n, seed)
        conn.send({"servicenow": sims.servicenow_url, "jira": sims.jira_url, "counts": counts})
        while (message := conn.recv()) != "stop":
            if message == "cpu":
                conn.send(time.process_time())


@dataclass
class SimProcess:
    """Both simulators with seeded data, served by a child process."""

    servicenow: str
    jira: str
    counts: dict[str, int]
    process: Any = field(repr=False)
    conn: Connection = field(repr=False)

    @classmethod
    def start(cls, n: int, *, seed: int = 7, latency_ms: int = 20, flavor: str = "cloud") -> SimProcess:
        context = mp.get_context("spawn")  # a clean interpreter: no state copied from here
        conn, child = context.Pipe()
        process = context.Process(target=_serve, args=(n, seed, latency_ms, flavor, child), daemon=True)
        process.start()
        if not conn.poll(START_TIMEOUT):
            process.kill()
            raise RuntimeError("the simulators did not start")
        info = conn.recv()
        if not info["jira"]:
            process.kill()
            raise RuntimeError("the Jira simulator is not available")
        return cls(info["servicenow"], info["jira"], info["counts"], process, conn)

    def cpu_seconds(self) -> float:
        """CPU time the simulators' process has used so far."""
        self.conn.send("cpu")
        return float(self.conn.recv())

    def clear_logs(self) -> None:
        for url in (self.servicenow, self.jira):
            requests.delete(f"{url}/_sim/requests", timeout=30).raise_for_status()

    def logs(self) -> dict[str, CallLog]:
        return {"servicenow": CallLog.fetch(self.servicenow), "jira": CallLog.fetch(self.jira)}

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("stop")
        self.process.join(15)
        if self.process.is_alive():
            self.process.kill()

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class CallLog:
    """One simulator's request log (``GET /_sim/requests``): exact counts by method."""

    count: int
    by_method: dict[str, int]
    requests: list[dict[str, Any]]

    @classmethod
    def fetch(cls, url: str) -> CallLog:
        response = requests.get(f"{url}/_sim/requests", timeout=60)
        response.raise_for_status()
        data = response.json()
        return cls(int(data["count"]), dict(data["by_method"]), list(data.get("requests", [])))

    @property
    def writes(self) -> int:
        return sum(v for k, v in self.by_method.items() if k in WRITE_METHODS)

    @property
    def reads(self) -> int:
        return self.count - self.writes

    def by_endpoint(self) -> Counter[str]:
        """Calls per method and path shape (ids replaced by ``{id}``), for finding waste."""
        shapes: Counter[str] = Counter()
        for entry in self.requests:
            parts = ["{id}" if _ID.fullmatch(p) else p for p in str(entry["path"]).split("/")]
            shapes[f"{entry['method']} {'/'.join(parts)}"] += 1
        return shapes


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
