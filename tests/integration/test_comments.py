"""Comments cross between ServiceNow work notes and Jira comments (issue #14), through the
real adapters and simulators: once, with origin and author, never echoed, never twice after
a crash, cut (never dropped) when too long, a refused one dead-lettered alone."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.daemon.inbox import Inbox
from bridge.store.comment_links import CommentLinkOperations
from tests.integration.daemon_support import add_fault
from tests.integration.helpers import clear_log, requests_log


def seed_change(bridge) -> dict[str, Any]:
    return bridge.sn.create("change_request", short_description="Rotate payment keys", state="-5",
                            approval="not requested", type="normal", risk="3")


def work_notes(bridge, change: dict[str, Any]) -> list[dict[str, Any]]:
    return bridge.sn.list("sys_journal_field",
                          f"element_id={change['sys_id']}^element=work_notes^ORDERBYsys_created_on")


def jira_change(bridge) -> dict[str, Any]:
    [issue] = bridge.jira.search('project = OPS AND issuetype = "Change"')
    return issue


def jira_comments(bridge, key: str) -> list[dict[str, Any]]:
    r = bridge.jira.session.get(f"{bridge.jira.api}/issue/{key}/comment")
    r.raise_for_status()
    return r.json()["comments"]


def add_jira_comment(bridge, key: str, body: str) -> dict[str, Any]:
    r = bridge.jira.session.post(f"{bridge.jira.api}/issue/{key}/comment", json={"body": body})
    r.raise_for_status()
    return r.json()


def test_a_work_note_and_a_jira_comment_each_cross_once(bridge) -> None:
    change = seed_change(bridge)
    bridge.sn.update("change_request", change["sys_id"], work_notes="Keys rotated in staging ✅")
    assert not bridge.sync().errors
    issue = jira_change(bridge)
    [copied] = jira_comments(bridge, issue["key"])
    assert copied["body"].startswith("\\[ServiceNow] System Administrator: Keys rotated in staging ✅")
    assert "(relbridge servicenow:" in copied["body"]

    add_jira_comment(bridge, issue["key"], "Prod window confirmed for Friday")
    assert not bridge.sync().errors
    notes = work_notes(bridge, change)
    assert [n["value"].split("\n")[0] for n in notes] == [
        "Keys rotated in staging ✅", "[Jira] Administrator: Prod window confirmed for Friday"]

    for _ in range(2):  # the copies come back as changes of their records: never echoed
        assert not bridge.sync().errors
    assert len(work_notes(bridge, change)) == 2
    assert len(jira_comments(bridge, issue["key"])) == 2


def test_a_crash_between_the_write_and_the_commit_duplicates_nothing(bridge, monkeypatch) -> None:
    change = seed_change(bridge)
    assert not bridge.sync().errors
    bridge.sn.update("change_request", change["sys_id"], work_notes="Note written once")
    original = CommentLinkOperations.put_comment_link

    def crash(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("state") == "sent":
            raise SystemExit("killed between the write and the commit")
        original(self, *args, **kwargs)

    monkeypatch.setattr(CommentLinkOperations, "put_comment_link", crash)
    with pytest.raises(SystemExit):
        bridge.sync()
    monkeypatch.setattr(CommentLinkOperations, "put_comment_link", original)
    issue = jira_change(bridge)
    assert len(jira_comments(bridge, issue["key"])) == 1  # written before the "crash"
    assert not bridge.sync().errors
    assert not bridge.sync().errors
    assert len(jira_comments(bridge, issue["key"])) == 1


def test_a_comment_over_the_limit_is_cut_with_a_note(bridge) -> None:
    change = seed_change(bridge)
    assert not bridge.sync().errors
    issue = jira_change(bridge)
    long_text = "é" * 33_000 + "🙂" * 10
    add_jira_comment(bridge, issue["key"], long_text[:32_000])
    assert not bridge.sync().errors
    [note] = work_notes(bridge, change)
    assert len(note["value"]) <= 4000
    assert "[cut by relbridge: " in note["value"] and note["value"].endswith(")")
    assert note["value"].startswith("[Jira] Administrator: éé")


def test_a_refused_comment_is_dead_lettered_and_the_fields_still_sync(bridge) -> None:
    change = seed_change(bridge)
    assert not bridge.sync().errors
    issue = jira_change(bridge)
    bridge.sn.update("change_request", change["sys_id"], work_notes="Refused note",
                     short_description="Rotate payment keys (v2)")
    add_fault(bridge.sims.jira_url, method="POST", path=r"/comment$", status=400, times=1)
    report = bridge.sync()
    assert any("Refused note" not in e and "-> jira" in e for e in report.errors)
    assert bridge.jira.issue(issue["key"])["fields"]["summary"] == "Rotate payment keys (v2)"
    rt = bridge.runtime()
    [dead] = Inbox.from_config(rt.store, rt.config.sync).dead_letters()
    assert dead.system == "servicenow" and "400" in (dead.last_error or "")
    assert jira_comments(bridge, issue["key"]) == []
    assert not bridge.sync().errors  # not retried until a person says so
    assert jira_comments(bridge, issue["key"]) == []


def test_journal_reads_page_and_cost_one_query_per_page(bridge) -> None:
    changes = [bridge.sn.create("change_request", short_description=f"Change {i}", state="-5",
                                approval="not requested", type="normal", risk="3") for i in range(7)]
    for change in changes:
        bridge.sn.update("change_request", change["sys_id"], work_notes=f"note for {change['number']}")
    clear_log(bridge.sims.servicenow_url)
    assert not bridge.sync(sync={"page_size": 3}).errors
    log = requests_log(bridge.sims.servicenow_url)["requests"]
    change_pages = [r for r in log if r["method"] == "GET" and r["path"].endswith("/change_request")]
    journal = [r for r in log if r["path"].endswith("/sys_journal_field")]
    assert len(journal) <= len(change_pages)
    issues = bridge.jira.search('project = OPS AND issuetype = "Change"')
    bodies = sorted(jira_comments(bridge, i["key"])[0]["body"].split("\n")[0] for i in issues)
    assert bodies == sorted(f"\\[ServiceNow] System Administrator: note for {c['number']}" for c in changes)
