"""The daemon in process against the simulators: polling, webhooks, dead letters, logs,
leases and shutdown (issue: daemon)."""

from __future__ import annotations

import io
import json
import logging
import socket
import time

import pytest
import requests

from bridge import hookimpl
from bridge.daemon.inbox import Inbox
from bridge.daemon.logs import configure_logging, log_context
from bridge.daemon.metrics import Metrics
from bridge.daemon.poll import Poller, lease_name
from bridge.errors import BadInput, ConfigError
from bridge.reports.dlq import (
    drop_dead_letter,
    list_dead_letters,
    render_dead_letters,
    retry_dead_letter,
)
from tests.integration.daemon_support import (
    add_fault,
    clear_faults,
    daemon_sections,
    eventually,
    queue_idle,
    register_webhooks,
    start_daemon,
)
from tests.integration.helpers import requests_log


def jira_changes(bridge) -> list[dict]:
    return bridge.jira.search('project = OPS AND issuetype = "Change"')


def total(metrics: Metrics, name: str) -> float:
    """A metric summed over its labels."""
    return sum(sample.value for family in metrics.registry.collect() for sample in family.samples
               if sample.name == name)


def test_polling_alone_syncs_both_ways(bridge, daemons) -> None:
    daemon = start_daemon(bridge)
    daemons.append(daemon)
    sn = bridge.sn
    release = sn.create("rm_release", short_description="Polling 1.0", state="1",
                        start_date="2026-06-01 08:00:00", end_date="2026-06-30 17:00:00")
    change = sn.create("change_request", short_description="Polled change", state="-5",
                       approval="not requested", type="normal", risk="3")
    sn.link(release, change)

    version = eventually(lambda: bridge.jira.versions(), what="Jira version")[0]
    assert version["name"] == "Polling 1.0" and version["releaseDate"] == "2026-06-30"
    issue = eventually(lambda: [i for i in jira_changes(bridge) if i["fields"]["fixVersions"]],
                       what="Jira change issue linked to the version")[0]
    assert issue["fields"]["summary"] == "Polled change"
    assert [v["id"] for v in issue["fields"]["fixVersions"]] == [version["id"]]

    # And back: a Jira edit reaches ServiceNow.
    bridge.jira.update_issue(issue["key"], summary="Polled change, edited in Jira")
    eventually(lambda: sn.get("change_request", change["sys_id"])["short_description"]
               == "Polled change, edited in Jira", what="ServiceNow change summary")
    eventually(lambda: queue_idle(daemon.inbox), what="an empty queue")
    assert daemon.metrics.registry.get_sample_value(
        "relbridge_events_received_total", {"system": "servicenow", "entity": "change", "source": "poll"}) >= 1
    assert total(daemon.metrics, "relbridge_sync_latency_seconds_count") >= 2
    assert total(daemon.metrics, "relbridge_events_processed_total") >= 2
    assert len(jira_changes(bridge)) == 1 and len(bridge.jira.versions()) == 1


def test_polling_sees_a_value_changed_back(bridge, daemons) -> None:
    """Jira versions have no update stamp (their version is a hash of their fields): a name
    changed and changed back must still be seen the second time."""
    daemon = start_daemon(bridge)
    daemons.append(daemon)
    version = bridge.jira.create_version("Alpha", releaseDate="2026-10-30")

    def sn_name() -> str | None:
        releases = bridge.sn.list("rm_release")
        return releases[0]["short_description"] if releases else None

    eventually(lambda: sn_name() == "Alpha", what="the release in ServiceNow")
    for name in ("Beta", "Alpha"):
        eventually(lambda: queue_idle(daemon.inbox))
        bridge.jira.update_version(version["id"], name=name)
        eventually(lambda n=name: sn_name() == n, what=f"ServiceNow renamed to {name}")


def test_webhooks_deliver_changes_within_seconds(bridge, daemons) -> None:
    # Polling every 60 s: after the start-up poll, only webhooks can move changes in time.
    daemon = start_daemon(bridge, sync={"interval_seconds": 60})
    daemons.append(daemon)
    register_webhooks(bridge.sims.servicenow_url, bridge.sims.jira_url, daemon.receiver.url)
    store = daemon.runtime.store
    eventually(lambda: all(store.get_watermark(p.system, p.entity) for p in daemon.pollers), what="start-up polls")

    started = time.monotonic()
    bridge.sn.create("change_request", short_description="Hooked change", state="-5",
                              approval="not requested", type="normal", risk="3")
    issue = eventually(lambda: jira_changes(bridge), timeout=10, what="Jira issue via webhook")[0]
    assert issue["fields"]["summary"] == "Hooked change"
    version = bridge.jira.create_version("Hooked 2.0", releaseDate="2026-07-31")
    release = eventually(lambda: bridge.sn.list("rm_release"), timeout=10, what="ServiceNow release via webhook")[0]
    assert release["short_description"] == "Hooked 2.0"
    assert time.monotonic() - started < 15  # the next poll is due 60 s after start-up
    received = daemon.metrics.registry.get_sample_value
    assert (received("relbridge_events_received_total",
                     {"system": "servicenow", "entity": "change", "source": "webhook"}) or 0) >= 1
    assert bridge.sims.servicenow_webhooks.delivered and bridge.sims.jira_webhooks.delivered
    assert version["id"]


class FailureRecorder:
    """A plugin that remembers ``relbridge_sync_failed`` calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, bool]] = []

    @hookimpl
    def relbridge_sync_failed(self, system: str, entity: str, id: str, error: Exception, permanent: bool) -> None:
        self.calls.append((system, entity, id, permanent))


def test_permanent_write_failure_is_a_dead_letter_and_replays(bridge, daemons) -> None:
    recorder = FailureRecorder()
    bridge.extra_plugins.append(("failure-recorder", recorder))
    daemon = start_daemon(bridge)
    daemons.append(daemon)
    change = bridge.sn.create("change_request", short_description="Will be rejected", state="-5",
                              approval="not requested", type="normal", risk="3")
    issue = eventually(lambda: jira_changes(bridge), what="first sync")[0]
    eventually(lambda: queue_idle(daemon.inbox))

    add_fault(bridge.sims.jira_url, method="PUT", path=f"/issue/({issue['id']}|{issue['key']})$",
              status=400, times=None)
    bridge.sn.update("change_request", change["sys_id"], short_description="Rejected by Jira for now")
    letters = eventually(lambda: [d for d in list_dead_letters(daemon.runtime) if d.system == "servicenow"],
                         what="a dead letter")
    assert [(d.entity, d.ext_id) for d in letters] == [("change", change["sys_id"])]
    assert ("servicenow", "change", change["sys_id"], True) in recorder.calls
    # The write is pending on the record, so an event of the Jira side (the echo of the
    # create, re-read by a poll) that tries it meets the same error: every attempt is kept.
    letters = list_dead_letters(daemon.runtime)
    assert all("PermanentError 400" in d.last_error for d in letters)
    assert "Rejected by Jira" not in bridge.jira.issue(issue["key"])["fields"]["summary"]
    table = render_dead_letters(letters)
    assert change["sys_id"] in table and "400" in table
    assert {d["id"] for d in json.loads(render_dead_letters(letters, as_json=True))} == {d.id for d in letters}

    clear_faults(bridge.sims.jira_url)

    def replayed() -> bool:
        # A poll of the Jira side may still meet the pending write and add a letter of its own.
        for letter in list_dead_letters(daemon.runtime):
            retry_dead_letter(daemon.runtime, letter.id)
        return bridge.jira.issue(issue["key"])["fields"]["summary"] == "Rejected by Jira for now"

    eventually(replayed, what="the replayed write")
    eventually(lambda: queue_idle(daemon.inbox))
    assert list_dead_letters(daemon.runtime) == []
    assert len(jira_changes(bridge)) == 1
    with pytest.raises(BadInput):
        retry_dead_letter(daemon.runtime, letters[0].id)  # no longer dead
    with pytest.raises(BadInput):
        drop_dead_letter(daemon.runtime, 999_999)


def test_drop_dead_letter(bridge) -> None:
    rt = bridge.runtime()
    inbox = Inbox.from_config(rt.store, rt.config.sync)
    inbox.enqueue("servicenow", "change", "abc", source="poll")
    event = inbox.claim("t")[0]
    inbox.dead_letter(event, "PermanentError 400: no")
    assert [d.id for d in list_dead_letters(rt)] == [event.id]
    drop_dead_letter(rt, event.id)
    assert list_dead_letters(rt) == [] and inbox.depth() == 0
    with pytest.raises(BadInput, match="no dead letter"):
        drop_dead_letter(rt, event.id)


def test_failed_listing_does_not_move_the_watermark(bridge) -> None:
    rt = bridge.runtime(**daemon_sections())
    inbox = Inbox.from_config(rt.store, rt.config.sync)
    import threading

    poller = Poller(rt.engine, inbox, Metrics(), "servicenow", "change", holder="me", interval=0.5,
                    stopping=threading.Event())
    bridge.sn.create("change_request", short_description="First", state="-5")
    assert poller.cycle() == 1
    first_mark = rt.store.get_watermark("servicenow", "change")
    assert poller.cycle() == 0  # same (id, version): not enqueued twice
    mark = rt.store.get_watermark("servicenow", "change")
    assert first_mark is not None and mark > first_mark

    bridge.sn.create("change_request", short_description="Second", state="-5")
    add_fault(bridge.sims.servicenow_url, method="GET", path="/change_request", status=503, times=1)
    with pytest.raises(Exception, match="503"):
        poller.cycle()
    assert rt.store.get_watermark("servicenow", "change") == mark
    assert inbox.depth() == 1
    assert poller.cycle() == 1  # the next poll finds it
    assert inbox.depth() == 2
    assert rt.store.get_watermark("servicenow", "change") > mark


def test_one_poller_per_stream_across_instances(bridge) -> None:
    import threading

    rt = bridge.runtime(**daemon_sections(interval=0.5))
    inbox = Inbox.from_config(rt.store, rt.config.sync)
    first = Poller(rt.engine, inbox, Metrics(), "jira", "release", holder="a", interval=0.5,
                   stopping=threading.Event())
    second = Poller(rt.engine, inbox, Metrics(), "jira", "release", holder="b", interval=0.5,
                    stopping=threading.Event())
    assert first.cycle() == 0
    assert second.cycle() is None and not second.holding
    assert rt.store.lease(lease_name("jira", "release")).holder == "a"
    first.give_up_lease()
    assert second.cycle() == 0 and second.holding
    # A holder that stops renewing loses the lease once it expires (ttl: 3 intervals).
    time.sleep(second.lease_ttl + 0.2)
    assert first.cycle() == 0 and first.holding


def test_json_logs_carry_event_context_and_no_secrets(bridge) -> None:
    # ServiceNow accepts its distinctive password (a working sync); Jira rejects its token
    # (the failure path, where a careless error message would show it).
    passwords = {"servicenow": {"password": "Sn-Pa55word-Zebra"}, "jira": {"token": "Jira-T0ken-Walrus"}}
    bridge.sn.create("change_request", short_description="Logged", state="-5")
    bridge.sims.servicenow.users["admin"] = "Sn-Pa55word-Zebra"
    rt = bridge.runtime(**passwords, log={"level": "DEBUG"})
    stream = io.StringIO()
    handler = configure_logging(rt.config, "json", stream=stream)
    try:
        logging.getLogger("bridge.test").info("plain line")
        with log_context(event_id=7, system="jira", entity="change", ext_id="10001", key="CHG1"):
            logging.getLogger("bridge.test").warning("in an event, token=%s", "Jira-T0ken-Walrus")
        try:
            rt.engine.sync_once()  # whatever the engine, adapters and HTTP libraries log at DEBUG
        except Exception as exc:
            logging.getLogger("bridge.test").exception("sync failed: %s", exc)
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) > 2
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    plain = next(line for line in lines if line["message"] == "plain line")
    assert "event_id" not in plain
    tagged = next(line for line in lines if line["message"].startswith("in an event"))
    assert (tagged["event_id"], tagged["system"], tagged["entity"], tagged["key"]) == (7, "jira", "change", "CHG1")
    assert tagged["message"] == "in an event, token=***"
    text = stream.getvalue()
    assert "Sn-Pa55word-Zebra" not in text and "Jira-T0ken-Walrus" not in text


def test_sigterm_style_stop_while_busy_finishes_in_time(bridge) -> None:
    daemon = start_daemon(bridge, sync={"workers": 2})
    for i in range(6):
        bridge.sn.create("change_request", short_description=f"Busy {i}", state="-5")
    # Every Jira write now takes 1.5 s: workers are mid-call when we stop.
    add_fault(bridge.sims.jira_url, method="POST", path="/issue$", delay_ms=1500, times=None)
    eventually(lambda: len(daemon.in_flight) > 0, what="events in flight")
    began = time.monotonic()
    clean = daemon.stop(timeout=10)
    took = time.monotonic() - began
    assert took < 10
    assert clean and len(daemon.in_flight) == 0
    inbox = daemon.inbox
    claimed = [e for e in _all_events(inbox) if e["state"] == "claimed"]
    assert claimed == []  # finished or handed back, none left half-claimed
    clear_faults(bridge.sims.jira_url)
    # A new daemon finishes the rest: every change exactly once.
    again = start_daemon(bridge)
    try:
        eventually(lambda: len(jira_changes(bridge)) == 6 and queue_idle(again.inbox), timeout=30)
        time.sleep(1.0)
        assert sorted(i["fields"]["summary"] for i in jira_changes(bridge)) == [f"Busy {i}" for i in range(6)]
    finally:
        again.stop()


def _all_events(inbox: Inbox) -> list[dict]:
    from sqlalchemy import select

    from bridge.store import schema

    with inbox.store.begin(write=False) as conn:
        return [dict(row._mapping) for row in conn.execute(select(schema.events))]


def test_text_logs_carry_event_context(bridge) -> None:
    rt = bridge.runtime()
    stream = io.StringIO()
    handler = configure_logging(rt.config, "text", stream=stream)
    try:
        with log_context(event_id=3, system="servicenow", entity="release"):
            logging.getLogger("bridge.test").warning("hello admin")
    finally:
        logging.getLogger().removeHandler(handler)
    line = stream.getvalue().strip()
    assert line.endswith("WARNING bridge.test [event_id=3 system=servicenow entity=release]: hello admin")


def test_receiver_port_in_use_is_a_config_error(bridge) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="cannot listen"):
            start_daemon(bridge, webhooks={"bind": f"127.0.0.1:{port}"})


def test_readiness_reports_store_and_systems(bridge, daemons) -> None:
    daemon = start_daemon(bridge)
    daemons.append(daemon)
    assert daemon.readiness() == {"store": None, "servicenow": None, "jira": None}
    ready = requests.get(f"{daemon.receiver.url}/readyz")
    assert ready.status_code == 200, ready.text
    add_fault(bridge.sims.jira_url, method="GET", path="/myself", status=401, times=None)
    daemon.readiness._checked.clear()  # forget the cached answers
    problems = daemon.readiness.problems()
    assert len(problems) == 1 and problems[0].startswith("jira:")
    assert daemon.readiness()["jira"] == problems[0].removeprefix("jira: ")
    # The failure is cached briefly, not asked again at once.
    log = requests_log(bridge.sims.jira_url)["requests"]
    assert len([r for r in log if r["path"].endswith("/myself") and r["status"] == 401]) == 1


def test_poller_reconciles_deletions_the_listing_cannot_show(bridge) -> None:
    import threading

    rt = bridge.runtime(**daemon_sections())
    # The interval outlasts the first cycle's own poll even on a busy machine.
    inbox = Inbox.from_config(rt.store, rt.config.sync)
    change = bridge.sn.create("change_request", short_description="Deleted while nobody listened", state="-5")
    assert not bridge.sync().errors
    poller = Poller(rt.engine, inbox, Metrics(), "servicenow", "change", holder="me", interval=0.5,
                    stopping=threading.Event(), reconcile_interval=1.0)
    bridge.sn.delete("change_request", change["sys_id"])
    assert poller.cycle() == 0 and inbox.depth() == 0  # takes the lease; reconciles one interval later
    time.sleep(1.1)
    assert poller.cycle() == 0
    assert inbox.depth() == 1
    event = inbox.claim("worker")[0]
    assert (event.system, event.entity, event.ext_id) == ("servicenow", "change", change["sys_id"])
    assert rt.engine.process(event.system, event.entity, event.ext_id) is None  # the re-read confirms
    assert rt.store.find_ref("servicenow", "change", change["sys_id"]) is None
    inbox.complete(event)
    time.sleep(1.1)
    assert poller.cycle() == 0 and inbox.depth() == 0  # nothing linked is missing any more


def test_sweeper_requeues_records_left_with_unfinished_writes(bridge) -> None:
    """A record whose writes were left half-done (a follow-up that failed, a crash between
    steps) has no event of its own: the sweeper gives it one, and the worker finishes it."""
    import threading

    from bridge.daemon.poll import Sweeper
    from bridge.engine.envelope import Envelope

    first = bridge.sn.create("change_request", short_description="Edited, never written", state="-5")
    second = bridge.sn.create("change_request", short_description="Never created", state="-5")
    assert not bridge.sync().errors
    rt = bridge.runtime(**daemon_sections())
    inbox = Inbox.from_config(rt.store, rt.config.sync)
    sweeper = Sweeper(rt.engine, inbox, Metrics(), holder="me", interval=0.5, min_age=0,
                      stopping=threading.Event())
    assert sweeper.cycle() == 0  # nothing unfinished

    # Strand both: an accepted edit still pending for Jira; a create journalled but not made.
    row = rt.store.load_record("change", first["number"])
    env = Envelope.load(row.data, row.revision)
    env.fields["summary"] = "Edited, now written"
    env.mark_pending("jira", ["summary"])
    rt.store.put_record("change", first["number"], env.dump())
    jira_id = rt.store.refs("change", second["number"])["jira"].ext_id
    bridge.jira.session.delete(f"{bridge.jira.api}/issue/{jira_id}").raise_for_status()
    rt.store.drop_ref("jira", "change", jira_id)
    row = rt.store.load_record("change", second["number"])
    env = Envelope.load(row.data, row.revision)
    env.raw.pop("jira", None)
    env.creating["jira"] = "2026-01-01T00:00:00+00:00"
    rt.store.put_record("change", second["number"], env.dump())

    assert sweeper.cycle() == 2
    events = {(e.system, e.ext_id): e for e in inbox.claim("worker", limit=5)}
    # The edit's event reads Jira first (a concurrent edit there would be a conflict); the
    # unmade create's reads the ServiceNow change.
    jira_first = rt.store.refs("change", first["number"])["jira"].ext_id
    assert set(events) == {("jira", jira_first), ("servicenow", second["sys_id"])}
    for event in events.values():
        rt.engine.process(event.system, event.entity, event.ext_id)
        inbox.complete(event)
    summaries = sorted(i["fields"]["summary"] for i in bridge.jira.search('project = OPS AND issuetype = "Change"'))
    assert summaries == ["Edited, now written", "Never created"]
    assert sweeper.cycle() == 0 and rt.store.unfinished_records() == []


def test_a_create_that_fails_for_good_is_a_dead_letter_not_retried_every_sweep(bridge, daemons) -> None:
    """Jira refuses the create for good: the event becomes a dead letter after its attempts,
    `status` lists the record as unfinished, and the sweeper does not queue it again every
    interval (the attempts stop); `dlq retry` finishes it once Jira accepts."""
    add_fault(bridge.sims.jira_url, method="POST", path=r"/issue$", status=400, times=None)
    daemon = start_daemon(bridge, sync={"max_attempts": 2})
    daemons.append(daemon)
    change = bridge.sn.create("change_request", short_description="Refused by Jira", state="-5")
    eventually(lambda: list_dead_letters(daemon.runtime), what="a dead letter")

    def creates() -> int:
        return sum(1 for r in requests_log(bridge.sims.jira_url)["requests"]
                   if r["method"] == "POST" and r["path"].endswith("/issue"))

    from bridge.reports.status import collect_status
    [unfinished] = collect_status(daemon.runtime.store)["unfinished_records"]
    assert (unfinished["entity"], unfinished["key"]) == ("change", change["number"])
    assert unfinished["pending"] or unfinished["creating"]
    tried = creates()
    time.sleep(5 * 0.5 + 3.5)  # several sweep intervals past the claim lease
    assert creates() == tried

    clear_faults(bridge.sims.jira_url)
    for letter in list_dead_letters(daemon.runtime):
        retry_dead_letter(daemon.runtime, letter.id)
    eventually(lambda: len(jira_changes(bridge)) == 1, what="the replayed create")
    eventually(lambda: not collect_status(daemon.runtime.store)["unfinished_records"], what="nothing unfinished")
