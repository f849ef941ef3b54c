"""Deletions: unlink and record; delete in the other system only when configured."""

from __future__ import annotations

import pytest


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
