"""The per-field merge rules (owners, conflicts and their policies)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.engine.merge import merge

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)


def run(changed, canonical, *, pending=(), owners=None, policy="last_writer_wins", source_time=T1, field_times=None):
    return merge(source="jira", changed=changed, canonical=canonical, pending_for_source=set(pending),
                 owners=owners or {}, policy=policy, source_time=source_time, field_times=field_times or {})


def test_accepts_a_change_only_the_source_made() -> None:
    result = run({"name": "B"}, {"name": "A"})
    assert result.accepted == {"name": ("A", "B")} and not result.conflicts and not result.restore


def test_same_value_is_not_a_change() -> None:
    result = run({"name": "A"}, {"name": "A"}, pending=["name"])
    assert not result.accepted and not result.conflicts


def test_field_owned_by_the_other_system_is_restored() -> None:
    result = run({"approval": "approved"}, {"approval": "requested"}, owners={"approval": "servicenow"})
    assert not result.accepted and result.restore == {"approval"}


def test_field_owned_by_the_source_wins_even_when_pending() -> None:
    result = run({"name": "B"}, {"name": "A"}, pending=["name"], owners={"name": "jira"})
    assert result.accepted == {"name": ("A", "B")} and not result.conflicts


@pytest.mark.parametrize("source_time, field_time, source_won", [(T1, T0, True), (T0, T1, False)])
def test_concurrent_edit_is_a_conflict_settled_by_last_writer(source_time, field_time, source_won) -> None:
    result = run({"name": "jira value"}, {"name": "servicenow value"}, pending=["name"],
                 source_time=source_time, field_times={"name": field_time})
    [conflict] = result.conflicts
    assert (conflict.field, conflict.source_value, conflict.canonical_value) == ("name", "jira value", "servicenow value")
    assert conflict.source_won is source_won
    assert ("name" in result.accepted) is source_won
    assert ("name" in result.restore) is (not source_won)


@pytest.mark.parametrize("policy, source_won", [("jira_wins", True), ("servicenow_wins", False)])
def test_system_wins_policies_ignore_time(policy, source_won) -> None:
    result = run({"name": "J"}, {"name": "S"}, pending=["name"], policy=policy,
                 source_time=T0, field_times={"name": T1})
    assert result.conflicts[0].source_won is source_won
    assert result.conflicts[0].resolution == policy


def test_last_writer_of_the_field_wins_not_of_the_record() -> None:
    """The source record changed last (another field, at T1), but its edit of this field
    (its changelog says T0 - 1 min) is older than the canonical value's (T0)."""
    older = datetime(2026, 3, 1, 11, 59, tzinfo=UTC)
    result = merge(source="jira", changed={"name": "J"}, canonical={"name": "S"}, pending_for_source={"name"},
                   owners={}, policy="last_writer_wins", source_time=T1, field_times={"name": T0},
                   source_field_times={"name": older})
    assert result.conflicts[0].source_won is False
    assert result.restore == {"name"}
