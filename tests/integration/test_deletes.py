"""Deletions: unlink and record; delete in the other system only when configured."""

from __future__ import annotations

import pytest

from bridge.engine.envelope import SyncReport
from tests.integration.helpers import clear_log, writes


@pytest.mark.parametrize("propagate", [False, True])
def test_deleted_in_servicenow(bridge, propagate: bool) -> None:
    bridge.sections["sync"] = {"propagate_deletes": propagate}
    change = bridge.sn.create("change_request", short_description="Short-lived", state="-5",
                              approval="not requested", type="normal", risk="3")
    assert not bridge.sync().errors
    assert len(bridge.jira.search('project = OPS AND issuetype = "Change"')) == 1

    bridge.sn.delete("change_request", change["sys_id"])
    rt = bridge.runtime()
    assert rt.engine.process("servicenow", "change", change["sys_id"]) is None  # read finds it gone

    remaining = bridge.jira.search('project = OPS AND issuetype = "Change"')
    assert len(remaining) == (0 if propagate else 1)
    assert "servicenow" not in rt.store.refs("change", change["number"])
    fields = [h.field for h in rt.store.history(entity="change", key=change["number"])]
    assert "_ref.servicenow" in fields
    if propagate:
        assert rt.store.get_record("change", change["number"]) is None
    else:
        # Nothing is re-created in ServiceNow by later passes either.
        assert not bridge.sync().errors
        assert bridge.sn.list("change_request") == []


def test_reconcile_finds_deletions_no_listing_shows(bridge) -> None:
    kept = bridge.sn.create("change_request", short_description="Kept", state="-5")
    gone = bridge.sn.create("change_request", short_description="Deleted quietly", state="-5")
    assert not bridge.sync().errors
    issue = next(i for i in bridge.jira.search('project = OPS AND issuetype = "Change"')
                 if i["fields"]["summary"] == "Kept")

    bridge.sn.delete("change_request", gone["sys_id"])
    bridge.jira.session.delete(f"{bridge.jira.api}/issue/{issue['key']}").raise_for_status()
    rt = bridge.runtime()
    report = rt.engine.sync_once()
    assert report.total("deleted") == 0  # a change listing never shows a deleted object
    assert rt.store.find_ref("servicenow", "change", gone["sys_id"]) is not None

    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    rt.engine.reconcile(report)
    assert report.total("deleted") == 2
    assert rt.store.find_ref("servicenow", "change", gone["sys_id"]) is None
    assert rt.store.find_ref("jira", "change", issue["id"]) is None
    assert rt.store.find_ref("servicenow", "change", kept["sys_id"]) is not None
    # Unlinked and recorded; nothing deleted or re-created in the other system.
    assert writes(bridge.sims.servicenow_url) == [] and writes(bridge.sims.jira_url) == []
    assert "_ref.jira" in [h.field for h in rt.store.history(entity="change", key=kept["number"])]
    assert not bridge.sync().errors
    assert [c["short_description"] for c in bridge.sn.list("change_request")] == ["Kept"]
    assert len(bridge.jira.search('project = OPS AND issuetype = "Change"')) == 1  # not re-created


def test_reconcile_reads_before_unlinking(bridge) -> None:
    change = bridge.sn.create("change_request", short_description="Out of the listing", state="-5")
    assert not bridge.sync().errors
    rt = bridge.runtime()
    adapter = rt.adapters["servicenow"]
    listing = adapter.list_changed
    adapter.list_changed = lambda entity, since, fields: (  # type: ignore[method-assign]
        r for r in listing(entity, since, fields) if r.id != change["sys_id"])
    assert rt.engine.vanished("servicenow", "change") == [change["sys_id"]]
    report = SyncReport()
    rt.engine.reconcile(report)
    assert report.total("deleted") == 0  # the read finds it: moved out of the listing, not deleted
    assert rt.store.find_ref("servicenow", "change", change["sys_id"]) is not None
