"""Adoption decides only what the systems' own times prove (bridge.engine.adoption).

The property: whatever the two sides hold and whatever their clocks say, adoption never
takes a side's value unless that side really changed the field last, never writes a value
relbridge copied over a person's, never moves a release backwards and never writes a close
code or a read-only fact. Differences it cannot settle are conflicts with nothing written.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.engine.adoption import HELD, FieldClock, Pair, adopt, last_writer
from bridge.mapping.loader import Mappings, SystemMapping, load_mappings

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class NoRefs:
    def to_key(self, entity: str, system_id: str) -> str | None:
        return None

    def to_id(self, entity: str, key: str) -> str | None:
        return None


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings(None, None)


def writes_as(mapping: SystemMapping, name: str, value: Any, raw: dict[str, Any]) -> bool:
    out = mapping.to_system(mapping_entity[0], {name: value}, raw, NoRefs(), fields=[name])
    return not out.payload and not out.pending


mapping_entity = ["change"]


def pair(mappings: Mappings, entity: str, jira_raw: dict[str, Any], sn_raw: dict[str, Any]) -> Pair:
    mapping_entity[0] = entity
    return Pair(entity, mappings.for_system("jira"), mappings.for_system("servicenow"), jira_raw, sn_raw, writes_as)


# A side's real history of one field: when it was last set (seconds after T0) and whether
# that was relbridge copying the other side at create time.
side = st.fixed_dictionaries({"at": st.integers(0, 100), "copy": st.booleans(),
                              "known": st.sampled_from(["exact", "upper", "none"]),
                              "slack": st.integers(0, 50)})


def honest_clock(history: dict[str, Any]) -> FieldClock:
    """What a system may truthfully report about a field set at ``history["at"]``."""
    at = T0 + timedelta(seconds=history["at"])
    if history["known"] == "exact":
        return FieldClock(at, at, history["copy"])
    if history["known"] == "upper":
        return FieldClock(None, at + timedelta(seconds=history["slack"]))
    return FieldClock(None, None)


@settings(max_examples=400, deadline=None)
@given(this=side, other=side)
def test_last_writer_is_only_ever_the_side_that_really_wrote_last(this, other) -> None:
    if this["copy"] and other["copy"]:
        return  # one side at most holds relbridge's copy of the other
    answer = last_writer(honest_clock(this), honest_clock(other))
    if answer is None:
        return
    winner, loser = (this, other) if answer == "this" else (other, this)
    if this["copy"] != other["copy"] and (this["known"] == "exact" and this["copy"] or
                                          other["known"] == "exact" and other["copy"]):
        assert not winner["copy"]  # a person's value beats relbridge's copy
    else:
        assert winner["at"] > loser["at"]


SUMMARIES = st.sampled_from(["Patch DB", "Patch db", "Upgrade kernel", ""])
JIRA_STATES = st.sampled_from(["New", "Assess", "Scheduled", "Implement", "Closed"])
SN_STATES = st.sampled_from(["-5", "-4", "-2", "-1", "3"])
SN_TO_JIRA = {"-5": "New", "-4": "Assess", "-2": "Scheduled", "-1": "Implement", "3": "Closed"}


@settings(max_examples=300, deadline=None)
@given(summary=st.tuples(SUMMARIES, SUMMARIES), state=st.tuples(JIRA_STATES, SN_STATES),
       this=side, other=side)
def test_adoption_writes_only_what_the_clocks_prove(mappings, summary, state, this, other) -> None:
    if this["copy"] and other["copy"]:
        return
    jira_raw = {"summary": summary[0], "status": state[0]}
    sn_raw = {"short_description": summary[1], "state": state[1]}
    canonical = mappings.for_system("servicenow").to_canonical("change", sn_raw, None, NoRefs()).values
    mapped = mappings.for_system("jira").to_canonical("change", jira_raw, canonical, NoRefs()).values
    result = adopt(pair(mappings, "change", jira_raw, sn_raw), mapped, canonical,
                   lambda name: (honest_clock(this), honest_clock(other)))
    truth = last_writer(honest_clock(this), honest_clock(other))
    for name in result.accepted:
        assert truth == "this" or canonical.get(name) in (None, "")
    assert not result.restore or truth == "other"
    agreeing = {n for n, v in mapped.items() if v == canonical.get(n)}
    assert not agreeing & (set(result.accepted) | result.restore | {c.field for c in result.conflicts})
    if summary[0] == summary[1]:
        assert "summary" not in result.accepted and "summary" not in result.restore
    if SN_TO_JIRA[state[1]] == state[0]:
        assert "state" not in result.accepted and "state" not in result.restore
    for conflict in result.conflicts:
        assert conflict.resolution == HELD and not conflict.source_won


def test_lossy_values_that_write_as_each_other_are_taken_without_a_write(mappings) -> None:
    """ServiceNow state 2 stands for in_progress..deployed, Jira's released flag for
    deployed/closed: the pair agrees on deployed; a Jira date and a ServiceNow date-time on
    that day agree too."""
    sn_raw = {"short_description": "R1", "state": "2", "start_date": "2026-07-03 10:00:00"}
    jira_raw = {"name": "R1", "state": "released", "startDate": "2026-07-03"}
    canonical = mappings.for_system("servicenow").to_canonical("release", sn_raw, None, NoRefs()).values
    mapped = mappings.for_system("jira").to_canonical("release", jira_raw, canonical, NoRefs()).values
    result = adopt(pair(mappings, "release", jira_raw, sn_raw), mapped, canonical,
                   lambda name: (FieldClock(None, None), FieldClock(None, None)))
    assert result.accepted == {"state": ("in_progress", "deployed")}
    assert not result.restore and not result.conflicts


@pytest.mark.parametrize("jira_state, sn_state", [("unreleased", "3"), ("unreleased", "2")])
def test_a_release_is_never_moved_backwards_even_by_a_later_writer(mappings, jira_state, sn_state) -> None:
    sn_raw = {"short_description": "R1", "state": sn_state}
    jira_raw = {"name": "R1", "state": jira_state}
    canonical = {"name": "R1", "state": "deployed" if sn_state == "2" else "closed"}
    mapped = mappings.for_system("jira").to_canonical("release", jira_raw, canonical, NoRefs()).values
    later, earlier = FieldClock(T0 + timedelta(hours=1), T0 + timedelta(hours=1)), FieldClock(T0, T0)
    result = adopt(pair(mappings, "release", jira_raw, sn_raw), mapped, canonical, lambda name: (later, earlier))
    assert "state" not in result.accepted and "state" not in result.restore
    assert [c.field for c in result.conflicts] == ["state"]


def test_a_read_only_fact_is_never_rewritten(mappings) -> None:
    """Jira's `created` (opened_at) is the time relbridge made the issue: never written to
    ServiceNow, whatever the clocks say."""
    sn_raw = {"short_description": "x", "opened_at": "2026-10-27 07:00:00"}
    jira_raw = {"summary": "x", "created": "2026-11-30T04:04:57.903+0000"}
    canonical = mappings.for_system("servicenow").to_canonical("incident", sn_raw, None, NoRefs()).values
    mapped = mappings.for_system("jira").to_canonical("incident", jira_raw, canonical, NoRefs()).values
    later = FieldClock(T0 + timedelta(days=30), T0 + timedelta(days=30))
    result = adopt(pair(mappings, "incident", jira_raw, sn_raw), mapped, canonical,
                   lambda name: (later, FieldClock(T0, T0)))
    assert "opened_at" not in result.accepted and "opened_at" not in result.restore
