"""What one event costs the store: the daemon's path finds an object's record from its link
(read once, then remembered), and reads the record with its links once, under its lock, for
ingest and propagation alike; a poll looks the listed objects' links up in one query, not per object."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from sqlalchemy import event

from bridge.daemon.inbox import Inbox
from bridge.daemon.metrics import Metrics
from bridge.daemon.poll import Poller
from bridge.store import Store

SUBQUERY = re.compile(r"\(\s*SELECT\b[^()]*\)", re.IGNORECASE)  # (an EXISTS test) is part of its query
SELECT_FROM = re.compile(r"^\s*SELECT\b.*?\bFROM\s+(\w+)", re.IGNORECASE | re.DOTALL)


@contextmanager
def counted(store: Store, kind: Callable[[str], str | None]) -> Iterator[Counter[str]]:
    """Counts the statements run on ``store`` meanwhile by ``kind(statement)`` (None: not counted)."""
    counts: Counter[str] = Counter()

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        name = kind(statement)
        if name:
            counts[name] += 1

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        yield counts
    finally:
        event.remove(store.engine, "before_cursor_execute", count)


def table_read(statement: str) -> str | None:
    match = SELECT_FROM.match(SUBQUERY.sub("", statement))
    return match.group(1) if match else None


def write_done(statement: str) -> str | None:
    """"UPDATE records", "DELETE record_errors", …; None for a read."""
    words = statement.split()
    if words[0] not in ("INSERT", "UPDATE", "DELETE"):
        return None
    return f"{words[0]} {words[1] if words[0] == 'UPDATE' else words[2]}"


def reads(store: Store) -> AbstractContextManager[Counter[str]]:
    """The SELECTs run on ``store`` meanwhile, by the table they read."""
    return counted(store, table_read)


def writes(store: Store) -> AbstractContextManager[Counter[str]]:
    """The statements other than SELECT run on ``store`` meanwhile: "UPDATE records", …"""
    return counted(store, write_done)


def test_one_edit_reads_its_link_and_its_record_once(bridge) -> None:
    change = bridge.sn.create("change_request", short_description="Patch the portal", state="-5")
    rt = bridge.runtime()
    rt.engine.sync_once()
    issue = bridge.jira.search('labels = "relbridge-' + change["number"] + '"')[0]
    rt.engine.process("servicenow", "change", change["sys_id"])  # warm: references resolved once
    bridge.sn.update("change_request", change["sys_id"], short_description="Patch the portal today")

    with reads(rt.store) as counted:
        rt.engine.process("servicenow", "change", change["sys_id"])

    assert bridge.jira.issue(issue["key"])["fields"]["summary"] == "Patch the portal today"
    # The edited object's link is known from the warm-up (the engine's resolver keeps the
    # links it has seen), then the record and its links in one round trip; the Jira issue
    # read before writing to it is ingested from those too. A link read under the record's
    # lock is not checked again for another owner when it is saved.
    assert counted["records"] == 1, counted
    assert counted["external_refs"] == 1, counted


def test_an_edit_saves_its_record_once_and_the_unchanged_other_side_only_its_link(bridge) -> None:
    """The Jira issue read before writing to it holds nothing new: the record is not saved
    for it (at most the issue's newer version is noted), and no error is cleared where none
    is on record. The edit's own save and the note of the write are the record's two saves.
    (The first read after a create also keeps the fields the create did not send.)"""
    change = bridge.sn.create("change_request", short_description="Patch the portal", state="-5")
    rt = bridge.runtime()
    rt.engine.sync_once()
    bridge.sn.update("change_request", change["sys_id"], short_description="Patch the portal today")
    rt.engine.process("servicenow", "change", change["sys_id"])
    bridge.sn.update("change_request", change["sys_id"], short_description="Patch the portal tonight")

    with writes(rt.store) as counted:
        rt.engine.process("servicenow", "change", change["sys_id"])

    assert counted["UPDATE records"] == 2, counted
    assert counted["DELETE record_errors"] == 0, counted
    before = rt.store.load_record("change", rt.store.find_key("servicenow", "change", change["sys_id"]))
    with writes(rt.store) as counted:  # nothing new on either side: nothing written
        rt.engine.process("servicenow", "change", change["sys_id"])
    assert sum(counted.values()) == 0, counted
    after = rt.store.load_record("change", before.key)
    assert after.revision == before.revision


def test_a_read_that_finds_nothing_new_still_clears_an_error_on_record(bridge) -> None:
    """A new version of the same content (a field relbridge does not map was edited) saves
    nothing of the record, but an error on record for the object is cleared."""
    change = bridge.sn.create("change_request", short_description="Patch the portal", state="-5")
    rt = bridge.runtime()
    rt.engine.sync_once()
    rt.store.record_error("servicenow", "change", change["sys_id"], code="invalid_value", message="was bad")
    assert [error.ext_id for error in rt.store.errors()] == [change["sys_id"]]
    bridge.sn.update("change_request", change["sys_id"], correlation_display="touched")  # not mapped

    with writes(rt.store) as counted:
        rt.engine.process("servicenow", "change", change["sys_id"])

    assert rt.store.errors() == []
    assert counted["UPDATE records"] == 0, counted


def test_a_poll_looks_up_the_listed_objects_links_in_one_query(bridge) -> None:
    for n in range(5):
        bridge.sn.create("change_request", short_description=f"Change {n}", state="-5")
    rt = bridge.runtime()
    rt.engine.sync_once()
    for row in bridge.sn.list("change_request"):
        bridge.sn.update("change_request", row["sys_id"], short_description=row["short_description"] + "!")
    inbox = Inbox(rt.store)
    poller = Poller(rt.engine, inbox, Metrics(), "servicenow", "change", holder="test", interval=60,
                    stopping=__import__("threading").Event())

    with reads(rt.store) as counted:
        assert poller.poll() == 5

    assert counted["external_refs"] == 1, counted


def test_a_poll_leaves_our_own_writes_coming_back_unread(bridge) -> None:
    """The issues relbridge just wrote show up in Jira's change listing with a new
    ``updated``; the poll recognises them as echoes from the listing and queues none,
    while an edit a person makes afterwards is queued as ever."""
    changes = [bridge.sn.create("change_request", short_description=f"Change {n}", state="-5") for n in range(3)]
    rt = bridge.runtime()
    rt.engine.sync_once()
    for change in changes:
        bridge.sn.update("change_request", change["sys_id"], short_description="Edited in ServiceNow")
        rt.engine.process("servicenow", "change", change["sys_id"])
    issues = {issue["fields"]["summary"]: issue for issue in bridge.jira.search("project = OPS")}
    assert "Edited in ServiceNow" in issues
    inbox = Inbox(rt.store)
    poller = Poller(rt.engine, inbox, Metrics(), "jira", "change", holder="test", interval=60,
                    stopping=__import__("threading").Event())

    assert [record.id for record, _ in rt.engine.changed_records("jira", "change")] == []
    assert poller.poll() == 0

    edited = issues["Edited in ServiceNow"]
    bridge.jira.update_issue(edited["key"], summary="Edited in Jira")
    assert [record.id for record, _ in rt.engine.changed_records("jira", "change")] == [edited["id"]]
    assert poller.poll() == 1


def test_a_first_sync_reads_links_per_batch_and_no_comment_links_without_comments(bridge) -> None:
    """A backfill of records without comments: the listed objects' links are looked up in
    one query per batch (not one per object), no record's comment links are read, and a
    record is not read back after the create that saved it."""
    for n in range(12):
        bridge.sn.create("change_request", short_description=f"Change {n}", state="-5")
    rt = bridge.runtime()

    with reads(rt.store) as counted:
        report = rt.engine.sync_once()

    assert report.total("created") == 24  # a record per change, an issue per record
    assert counted["comment_links"] == 0, counted
    # Per change: one read of the record before ingesting it and one, with its links,
    # before propagating it; saving a link (ingest, create) checks that no other record
    # claims the object. The listing's links: one query for the 12.
    assert counted["records"] <= 2 * 12 + 2, counted
    assert counted["external_refs"] <= 1 + 3 * 12 + 1, counted


def test_only_an_edit_the_release_state_depends_on_reads_the_release_again(bridge) -> None:
    """A release's derived state reads its changes' state, approval and close code: an edit of
    a change's text does not judge the release again (no read of it or its changes); an
    approval does, and moves it."""
    release = bridge.sn.create("rm_release", short_description="R1", state="-5")
    change = bridge.sn.create("change_request", short_description="Patch", state="-2", approval="requested")
    bridge.sn.link(release, change)
    rt = bridge.runtime()
    rt.engine.sync_once()
    key = rt.store.find_key("servicenow", "release", release["sys_id"])
    assert rt.store.get_record("release", key)["fields"]["state"] != "authorized"

    bridge.sn.update("change_request", change["sys_id"], short_description="Patch today")
    with reads(rt.store) as counted:
        rt.engine.process("servicenow", "change", change["sys_id"])
    assert counted["records"] == 1, counted  # the change itself, with its links

    bridge.sn.update("change_request", change["sys_id"], approval="approved")
    with reads(rt.store) as counted:
        rt.engine.process("servicenow", "change", change["sys_id"])
    assert counted["records"] > 1, counted
    assert rt.store.get_record("release", key)["fields"]["state"] == "authorized"
