"""Fault storms: 429 with Retry-After, 500/503, dropped connections, slow responses and
creates that time out. Every change must land exactly once."""

from __future__ import annotations

import time
from collections import Counter

import requests

from bridge.reports.dlq import list_dead_letters
from tests.integration.daemon_support import eventually, queue_idle, register_webhooks, start_daemon

STORM = [
    {"status": 429, "retry_after": 1, "times": 2},
    {"status": 500, "times": 2},
    {"status": 0, "reset": True, "times": 2},
    {"status": 503, "times": 2},
    {"delay_ms": 400, "times": 2},
]


def storm(url: str, api_path: str, rounds: int = 3) -> None:
    for _ in range(rounds):
        for rule in STORM:
            requests.post(f"{url}/_sim/faults", json={"path": api_path, **rule}).raise_for_status()


def faults_left(url: str) -> list[dict]:
    return requests.get(f"{url}/_sim/faults").json()["faults"]


def seed(bridge) -> None:
    sn = bridge.sn
    for r in range(2):
        release = sn.create("rm_release", short_description=f"Storm SN {r}", state="1",
                            start_date="2026-08-01 08:00:00", end_date="2026-08-28 17:00:00")
        changes = [sn.create("change_request", short_description=f"SN change {r}.{c}", state="-5",
                             approval="not requested", type="normal", risk="3") for c in range(3)]
        for change in changes:
            sn.link(release, change)
        sn.create("incident", short_description=f"SN incident {r}", state="1", priority="3",
                  caused_by=changes[0]["sys_id"])
    jira = bridge.jira
    version = jira.create_version("Storm Jira 1", releaseDate="2026-09-30")
    issues = [jira.create_issue("Change", f"Jira change {c}", fixVersions=[{"id": version["id"]}]) for c in range(4)]
    incident = jira.create_issue("Incident", "Jira incident", versions=[{"id": version["id"]}])
    jira.link("Problem/Incident", issues[0]["key"], incident["key"])


def counts(bridge) -> dict[str, int]:
    jira, sn = bridge.jira, bridge.sn
    return {
        "sn releases": len(sn.list("rm_release")),
        "sn changes": len(sn.list("change_request")),
        "sn incidents": len(sn.list("incident")),
        "sn links": len(sn.list("rm_m2m_release_task")),
        "jira versions": len(jira.versions()),
        "jira changes": len(jira.search('project = OPS AND issuetype = "Change"')),
        "jira incidents": len(jira.search('project = OPS AND issuetype = "Incident"')),
    }


EXPECTED = {"sn releases": 3, "sn changes": 10, "sn incidents": 3, "sn links": 10,
            "jira versions": 3, "jira changes": 10, "jira incidents": 3}


def assert_no_duplicates(bridge) -> None:
    names = Counter(v["name"] for v in bridge.jira.versions())
    summaries = Counter(i["fields"]["summary"] for i in bridge.jira.search("project = OPS"))
    sn_names = Counter(r["short_description"] for t in ("rm_release", "change_request", "incident")
                       for r in bridge.sn.list(t))
    for counter in (names, summaries, sn_names):
        assert [k for k, n in counter.items() if n > 1] == []


def test_storm_on_both_systems_lands_everything_once(bridge) -> None:
    seed(bridge)
    sims = bridge.sims
    storm(sims.servicenow_url, "^/api/now/table/")
    storm(sims.jira_url, "^/rest/api/")
    # Creates slower than the client's timeout: the worker gives up on them and retries.
    for url, path in ((sims.servicenow_url, "^/api/now/table/change_request$"), (sims.jira_url, "/issue$")):
        requests.post(f"{url}/_sim/faults", json={"method": "POST", "path": path, "delay_ms": 1500,
                                                  "times": 2}).raise_for_status()

    daemon = start_daemon(bridge, servicenow={"timeout_seconds": 1}, jira={"timeout_seconds": 1})
    try:
        register_webhooks(sims.servicenow_url, sims.jira_url, daemon.receiver.url)
        eventually(lambda: not faults_left(sims.servicenow_url) and not faults_left(sims.jira_url),
                   timeout=40, what="the storm to blow over")
        eventually(lambda: counts(bridge) == EXPECTED and queue_idle(daemon.inbox), timeout=40,
                   what=f"everything synced: {EXPECTED}")
        time.sleep(2)  # late echoes and polls must not add anything
        assert counts(bridge) == EXPECTED
        assert_no_duplicates(bridge)
        assert list_dead_letters(daemon.runtime) == []
        failed = {s.labels["kind"] for f in daemon.metrics.registry.collect() for s in f.samples
                  if s.name == "relbridge_events_failed_total" and s.value}
        assert failed <= {"transient"}
    finally:
        daemon.stop()


def test_long_retry_after_goes_back_to_the_queue(bridge) -> None:
    """A Retry-After longer than the in-process wait is honoured by the inbox's backoff."""
    change = bridge.sn.create("change_request", short_description="Patient change", state="-5",
                              approval="not requested", type="normal", risk="3")
    requests.post(f"{bridge.sims.jira_url}/_sim/faults",
                  json={"method": "POST", "path": "/issue$", "status": 429, "retry_after": 3, "times": 1}
                  ).raise_for_status()
    daemon = start_daemon(bridge)
    try:
        letters_or_events = eventually(lambda: _event_with_error(daemon, change["sys_id"]), timeout=10,
                                       what="the event handed back to the queue")
        assert "429" in letters_or_events
        began = time.monotonic()
        eventually(lambda: bridge.jira.search('project = OPS AND issuetype = "Change"'), timeout=15)
        assert time.monotonic() - began >= 1.5  # not before the system's Retry-After
        eventually(lambda: queue_idle(daemon.inbox))
        assert len(bridge.jira.search('project = OPS AND issuetype = "Change"')) == 1
    finally:
        daemon.stop()


def _event_with_error(daemon, ext_id: str) -> str | None:
    from sqlalchemy import select

    from bridge.store import schema

    e = schema.events
    with daemon.inbox.store.begin(write=False) as conn:
        row = conn.execute(select(e.c.last_error).where(e.c.ext_id == ext_id, e.c.state == "pending",
                                                        e.c.attempts > 0)).first()
    return row.last_error if row else None
