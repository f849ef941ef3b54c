"""Backfill benchmark: N releases from ServiceNow into an empty Jira, against a floor.

What it does (prints figures, never fails):

1. Starts both simulators in a child process (``--latency-ms`` per request, 20 by default)
   and seeds ServiceNow in-process with N releases, 5 changes each (states new, assess,
   scheduled, implement, closed, with matching approvals; linked by rm_m2m_release_task) and
   2 incidents each (caused by one of the release's changes).
2. Runs ``relbridge sync --once`` in this process (``Runtime(config).engine.sync_once()``,
   SQLite store in a temporary folder) and measures wall time, API calls per system (the
   simulators' ``/_sim/requests`` logs) and this process's peak RSS.
3. Runs a second sync right away (it sees the echoes of the backfill's own writes), then,
   unless ``--no-idle``, waits until the echoes are older than the overlap window (and the
   minute JQL dates are floored to), syncs once to move the watermarks past them and once
   more: the idle sync, whose reads must not depend on N and whose writes must be zero.
4. Starts fresh simulators with the same data and measures the **floor**: a bare
   ``requests`` loop with the same concurrency that issues the minimal calls for the same
   work (see ``minimal_calls`` and bench/README.md for exactly what is counted).

    python bench/backfill.py --n 100
    python bench/backfill.py --n 1000 --json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from _common import AUTH, CallLog, SimProcess, peak_rss_mb

from bridge.config import Config
from bridge.runtime import Runtime
from bridge.sim.jira.catalog import CHANGE_WORKFLOW, INCIDENT_WORKFLOW, STATUSES, Workflow

SYSTEMS = ("servicenow", "jira")
JIRA_MINUTE = 60  # JQL dates have no seconds: a search from a watermark reaches back up to a minute

# --- relbridge ---------------------------------------------------------------------------------


@dataclass
class SyncRun:
    wall_s: float
    logs: dict[str, CallLog]
    summary: dict[str, int]
    adapter_calls: dict[str, dict[str, int]]

    @property
    def calls(self) -> int:
        return sum(log.count for log in self.logs.values())

    @property
    def reads(self) -> int:
        return sum(log.reads for log in self.logs.values())

    @property
    def writes(self) -> int:
        return sum(log.writes for log in self.logs.values())


def relbridge_config(sims: SimProcess, store_url: str, args: argparse.Namespace) -> Config:
    return Config.model_validate({
        "servicenow": {"url": sims.servicenow},
        "jira": {"url": sims.jira},
        "store": {"url": store_url},
        "sync": {"concurrency": args.concurrency, "page_size": args.page_size,
                 "overlap_seconds": args.overlap},
        "kpi": {"read_time_worked": args.time_worked},
    })


def run_sync(sims: SimProcess, config: Config) -> SyncRun:
    """One ``relbridge sync --once``: a fresh runtime on the shared store, as the CLI does."""
    sims.clear_logs()
    started = time.perf_counter()
    runtime = Runtime(config)
    try:
        report = runtime.engine.sync_once()
        wall = time.perf_counter() - started
        adapter_calls = {name: dict(adapter.calls) for name, adapter in runtime.adapters.items()}
    finally:
        runtime.close()
    summary = {what: report.total(what) for what in ("created", "updated", "unchanged", "conflicts", "errors")}
    return SyncRun(wall, sims.logs(), summary, adapter_calls)


# --- the floor ---------------------------------------------------------------------------------

#: The ServiceNow columns relbridge's default mapping reads, per table.
SN_COLUMNS = {
    "rm_release": "sys_id,number,sys_updated_on,sys_mod_count,short_description,description,"
                  "start_date,end_date,work_start,work_end,state",
    "change_request": "sys_id,number,sys_updated_on,sys_mod_count,short_description,description,state,"
                      "approval,type,risk,start_date,end_date,close_code",
    "incident": "sys_id,number,sys_updated_on,sys_mod_count,short_description,description,state,priority,"
                "caused_by,opened_at,resolved_at",
    "rm_m2m_release_task": "sys_id,release,task",
}
CHANGE_STATUS = {"-5": "New", "-4": "Assess", "-3": "Authorize", "-2": "Scheduled",
                 "-1": "Implement", "0": "Review", "3": "Closed", "4": "Canceled"}
INCIDENT_STATUS = {"1": "Open", "2": "In Progress", "3": "In Progress", "6": "Resolved",
                   "7": "Closed", "8": "Closed"}
PRIORITY = {"1": "Highest", "2": "High", "3": "Medium", "4": "Low", "5": "Lowest"}
#: The Jira flavor the benchmark's simulators serve (relbridge and the floor see the same one).
JIRA_FLAVOR = "cloud"


def creates_with_transition(flavor: str) -> bool:
    """Whether a create body may carry the first workflow step (`transition`): Jira Cloud's
    create-issue documents it ("optional when creating an issue"); relbridge sends it there."""
    return flavor == "cloud"


def search_path(flavor: str) -> str:
    """Cloud searches with `/search/jql` (its `/search` is gone); Server with `/search`."""
    return "search/jql" if flavor == "cloud" else "search"


def separate_transitions(path: list[str], flavor: str) -> list[str]:
    """The steps of ``path`` that need their own `POST issue/{id}/transitions`."""
    return path[1:] if creates_with_transition(flavor) else path


def transition_path(workflow: Workflow, target: str) -> list[str]:
    """Transition ids from the workflow's initial status to the status named ``target``
    (breadth first: the fewest transitions the workflow allows)."""
    queue: deque[tuple[str, list[str]]] = deque([(workflow.initial, [])])
    seen = {workflow.initial}
    while queue:
        status, path = queue.popleft()
        if STATUSES[status].name == target:
            return path
        for transition in workflow.available(status):
            if transition.to not in seen:
                seen.add(transition.to)
                queue.append((transition.to, [*path, transition.id]))
    raise ValueError(f"{target!r} is not reachable in {workflow.name}")


@dataclass
class Floor:
    """The least a client can do for the same backfill, with the same concurrency.

    Reads: each ServiceNow table (releases, changes, incidents, release-change links) in pages
    of ``page_size`` (the first page's X-Total-Count tells how many more to fetch, in
    parallel), plus one Jira versions call and one JQL search for both issue types.
    Writes: one POST per version (state as released/archived flags in the body), one POST
    per issue (fix/affects version, correlation label and, for an incident, its
    Problem/Incident link through ``update.issuelinks`` and, where the flavor allows it, the
    first workflow step as the create body's ``transition``), and one POST per remaining
    transition on the shortest path to the issue's status (transition ids are workflow
    configuration, known up front, so no GET precedes a transition).
    """

    servicenow: str
    jira: str
    concurrency: int
    page_size: int
    flavor: str = JIRA_FLAVOR
    calls: Counter[str] = field(default_factory=Counter)
    _local: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(self.concurrency) as pool:
            tables = self._read(pool)
            versions = dict(pool.map(self._create_version, tables["rm_release"]))
            release_of = {row["task"]: versions[row["release"]] for row in tables["rm_m2m_release_task"]}
            changes = dict(pool.map(lambda row: self._create_change(row, release_of.get(row["sys_id"])),
                                    tables["change_request"]))
            list(pool.map(lambda row: self._create_incident(row, changes, release_of), tables["incident"]))
        return time.perf_counter() - started

    # -- reads -----------------------------------------------------------------------------

    def _read(self, pool: ThreadPoolExecutor) -> dict[str, list[dict[str, Any]]]:
        first = {table: pool.submit(self._sn_page, table, 0) for table in SN_COLUMNS}
        jira = [pool.submit(self._get, f"{self.jira}/rest/api/2/project/OPS/versions"),
                pool.submit(self._get, f"{self.jira}/rest/api/2/{search_path(self.flavor)}",
                            {"jql": "project = OPS AND issuetype in (Change, Incident)",
                             "fields": "summary", "maxResults": self.page_size})]
        rows: dict[str, list[dict[str, Any]]] = {}
        rest = []
        for table, future in first.items():
            page, total = future.result()
            rows[table] = page
            rest += [(table, pool.submit(self._sn_page, table, offset))
                     for offset in range(self.page_size, total, self.page_size)]
        for table, future in rest:
            rows[table] += future.result()[0]
        for future in jira:
            future.result()
        return rows

    def _sn_page(self, table: str, offset: int) -> tuple[list[dict[str, Any]], int]:
        response = self._send("GET", f"{self.servicenow}/api/now/table/{table}", params={
            "sysparm_fields": SN_COLUMNS[table], "sysparm_limit": self.page_size,
            "sysparm_offset": offset, "sysparm_query": "ORDERBYsys_created_on",
            "sysparm_exclude_reference_link": "true"})
        return response.json()["result"], int(response.headers.get("X-Total-Count", 0))

    # -- writes ----------------------------------------------------------------------------

    def _create_version(self, row: dict[str, Any]) -> tuple[str, str]:
        body = {"name": row["short_description"], "description": row["description"], "project": "OPS",
                "startDate": row["start_date"][:10] or None, "releaseDate": row["end_date"][:10] or None,
                "released": row["state"] == "3", "archived": row["state"] == "7"}
        created = self._send("POST", f"{self.jira}/rest/api/2/version", json=body).json()
        return row["sys_id"], str(created["id"])

    def _create_change(self, row: dict[str, Any], version: str | None) -> tuple[str, str]:
        fields = {"project": {"key": "OPS"}, "issuetype": {"name": "Change"},
                  "summary": row["short_description"], "description": row["description"] or None, "duedate": row["end_date"][:10] or None,
                  "fixVersions": [{"id": version}] if version else [],
                  "labels": [f"relbridge-{row['number']}"]}
        path = transition_path(CHANGE_WORKFLOW, CHANGE_STATUS[row["state"]])
        issue = self._create_issue({"fields": fields}, path)
        return row["sys_id"], str(issue["id"])

    def _create_incident(self, row: dict[str, Any], changes: dict[str, str], release_of: dict[str, str]) -> None:
        cause = row["caused_by"]
        version = release_of.get(cause)
        fields = {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"},
                  "summary": row["short_description"], "description": row["description"] or None, "priority": {"name": PRIORITY[row["priority"]]},
                  "versions": [{"id": version}] if version else [],
                  "labels": [f"relbridge-{row['number']}"]}
        body: dict[str, Any] = {"fields": fields}
        if cause in changes:
            body["update"] = {"issuelinks": [{"add": {"type": {"name": "Problem/Incident"},
                                                      "inwardIssue": {"id": changes[cause]}}}]}
        self._create_issue(body, transition_path(INCIDENT_WORKFLOW, INCIDENT_STATUS[row["state"]]))

    def _create_issue(self, body: dict[str, Any], path: list[str]) -> dict[str, Any]:
        """POST the issue (with the first step of ``path`` when the flavor takes it), then
        walk the rest of the path."""
        if path and creates_with_transition(self.flavor):
            body = {**body, "transition": {"id": path[0]}}
        issue = self._send("POST", f"{self.jira}/rest/api/2/issue", json=body).json()
        self._walk(issue["id"], separate_transitions(path, self.flavor))
        return issue

    def _walk(self, issue_id: str, path: Iterable[str]) -> None:
        for transition in path:
            self._send("POST", f"{self.jira}/rest/api/2/issue/{issue_id}/transitions",
                       json={"transition": {"id": transition}})

    # -- plumbing --------------------------------------------------------------------------

    def _get(self, url: str, params: dict[str, Any] | None = None) -> Any:
        return self._send("GET", url, params=params).json()

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.auth = AUTH
        response = session.request(method, url, timeout=60, **kwargs)
        response.raise_for_status()
        with self._lock:
            self.calls[method] += 1
        return response


def minimal_calls(counts: dict[str, int], changes: list[str], incidents: list[str], page_size: int,
                  flavor: str = JIRA_FLAVOR) -> int:
    """The minimal call count for the seeded data (what ``Floor`` sends): see its docstring."""
    reads = sum(max(1, math.ceil(counts.get(t, 0) / page_size)) for t in SN_COLUMNS) + 2
    paths = ([transition_path(CHANGE_WORKFLOW, CHANGE_STATUS[s]) for s in changes]
             + [transition_path(INCIDENT_WORKFLOW, INCIDENT_STATUS[s]) for s in incidents])
    transitions = sum(len(separate_transitions(path, flavor)) for path in paths)
    creates = counts.get("rm_release", 0) + len(changes) + len(incidents)
    return reads + creates + transitions


def seeded_states(url: str) -> tuple[list[str], list[str]]:
    """States of the seeded changes and incidents (read outside any measurement)."""
    states = []
    for table in ("change_request", "incident"):
        response = requests.get(f"{url}/api/now/table/{table}", auth=AUTH, timeout=120,
                                params={"sysparm_fields": "state", "sysparm_limit": 1_000_000})
        response.raise_for_status()
        states.append([row["state"] for row in response.json()["result"]])
    return states[0], states[1]


# --- the benchmark -------------------------------------------------------------------------------


def settle(overlap: float, last_write: float, say: Callable[[str], None]) -> None:
    """Wait until writes made before ``last_write`` fall out of a sync's window."""
    wait = last_write + overlap + JIRA_MINUTE + 1 - time.time()
    if wait > 0:
        say(f"waiting {wait:.0f} s for the backfill's echoes to leave the overlap window")
        time.sleep(wait)


def run(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    result: dict[str, Any] = {"n": args.n, "latency_ms": args.latency_ms, "concurrency": args.concurrency,
                              "page_size": args.page_size, "overlap_s": args.overlap,
                              "time_worked": args.time_worked}
    with tempfile.TemporaryDirectory(prefix="relbridge-bench-") as folder:
        say(f"seeding {args.n} releases")
        with SimProcess.start(args.n, seed=args.seed, latency_ms=args.latency_ms,
                              flavor=JIRA_FLAVOR) as sims:
            records = sum(v for k, v in sims.counts.items() if k != "rm_m2m_release_task")
            changes, incidents = seeded_states(sims.servicenow)
            config = relbridge_config(sims, f"sqlite:///{folder}/relbridge.db", args)
            say("backfill sync")
            cpu = sims.cpu_seconds()
            backfill = run_sync(sims, config)
            result["sim_cpu_s"] = round(sims.cpu_seconds() - cpu, 2)
            result["peak_rss_mb"] = round(peak_rss_mb(), 1)
            last_write = time.time()
            say("echo sync (right after the backfill)")
            echo = run_sync(sims, config)
            idle = None
            if not args.no_idle:
                settle(args.overlap, last_write, say)
                run_sync(sims, config)  # moves the watermarks past the echoes
                say("idle sync")
                idle = run_sync(sims, config)
            result["peak_rss_mb_all_syncs"] = round(peak_rss_mb(), 1)
    minimal = minimal_calls(sims.counts, changes, incidents, args.page_size)
    floor_wall, floor_logs = math.nan, {s: CallLog(0, {}, []) for s in SYSTEMS}
    if not args.no_floor:
        say("floor")
        with SimProcess.start(args.n, seed=args.seed, latency_ms=args.latency_ms,
                              flavor=JIRA_FLAVOR) as sims:
            sims.clear_logs()
            floor_wall = Floor(sims.servicenow, sims.jira, args.concurrency, args.page_size,
                               JIRA_FLAVOR).run()
            floor_logs = sims.logs()
    result.update({
        "records": records,
        "api_calls": backfill.calls,
        "minimal_calls": minimal,
        "floor_calls": sum(log.count for log in floor_logs.values()),
        "calls_ratio": round(backfill.calls / minimal, 3),
        "calls_per_record": round(backfill.calls / records, 2),
        "calls_by_system": {s: backfill.logs[s].count for s in SYSTEMS},
        "calls_by_method": {s: backfill.logs[s].by_method for s in SYSTEMS},
        "floor_calls_by_method": {s: floor_logs[s].by_method for s in SYSTEMS},
        "adapter_calls": backfill.adapter_calls,
        "wall_s": round(backfill.wall_s, 2),
        "floor_wall_s": None if args.no_floor else round(floor_wall, 2),
        "wall_ratio": None if args.no_floor else round(backfill.wall_s / floor_wall, 3),
        "summary": backfill.summary,
        "echo_reads": echo.reads,
        "echo_writes": echo.writes,
        "echo_wall_s": round(echo.wall_s, 2),
        "idle_reads": idle.reads if idle else None,
        "idle_writes": idle.writes if idle else None,
        "idle_wall_s": round(idle.wall_s, 2) if idle else None,
        "idle_calls_by_method": {s: idle.logs[s].by_method for s in SYSTEMS} if idle else None,
    })
    if args.endpoints:
        result["endpoints"] = {s: dict(backfill.logs[s].by_endpoint().most_common(25)) for s in SYSTEMS}
    return result


def _num(value: float | None, form: str) -> str:
    return "skipped" if value is None else form.format(value)


def table(result: dict[str, Any]) -> str:
    rows = [
        ("releases / records", f"{result['n']} / {result['records']}", ""),
        ("API calls (relbridge)", str(result["api_calls"]),
         f"ServiceNow {result['calls_by_system']['servicenow']}, Jira {result['calls_by_system']['jira']}"),
        ("minimal calls", str(result["minimal_calls"]), f"floor sent {result['floor_calls']}"),
        ("calls ratio", f"{result['calls_ratio']:.3f}", f"{result['calls_per_record']} calls/record"),
        ("wall (relbridge)", f"{result['wall_s']:.1f} s", f"simulators used {result['sim_cpu_s']} s CPU"),
        ("wall (floor)", _num(result["floor_wall_s"], "{:.1f} s"), ""),
        ("wall ratio", _num(result["wall_ratio"], "{:.3f}"), ""),
        ("peak RSS", f"{result['peak_rss_mb']:.0f} MB", f"{result['peak_rss_mb_all_syncs']:.0f} MB after all syncs"),
        ("echo sync reads / writes", f"{result['echo_reads']} / {result['echo_writes']}",
         f"right after the backfill, {result['echo_wall_s']:.1f} s"),
        ("idle sync reads / writes",
         "skipped" if result["idle_reads"] is None else f"{result['idle_reads']} / {result['idle_writes']}",
         "after the echoes settled" + ("" if result["idle_wall_s"] is None else f", {result['idle_wall_s']:.1f} s")),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"backfill N={result['n']} (latency {result['latency_ms']} ms, concurrency "
             f"{result['concurrency']}, page size {result['page_size']}, overlap {result['overlap_s']:g} s)"]
    lines += [f"  {name:<{width}}  {value:>14}  {note}".rstrip() for name, value, note in rows]
    if "endpoints" in result:
        for system, shapes in result["endpoints"].items():
            lines.append(f"  {system} calls by endpoint:")
            lines += [f"    {count:6d}  {shape}" for shape, count in shapes.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="releases (each with 5 changes and 2 incidents)")
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=Config().sync.concurrency)
    parser.add_argument("--page-size", type=int, default=Config().sync.page_size)
    parser.add_argument("--overlap", type=float, default=10.0,
                        help="[sync] overlap_seconds; the idle sync waits it out (default 10)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated data")
    parser.add_argument("--no-idle", action="store_true", help="skip the idle sync (and its wait)")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor (e.g. when profiling)")
    parser.add_argument("--endpoints", action="store_true", help="also list relbridge's calls by endpoint")
    parser.add_argument("--time-worked", action="store_true",
                        help="[kpi] read_time_worked = true: also read the time logged against releases and changes")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    def say(message: str) -> None:
        print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)

    result = run(args, say)
    print(json.dumps(result, sort_keys=True) if args.json else table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
