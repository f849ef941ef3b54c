"""The no-damage oracle itself: silent on a clean sync, and it sees damage that both
systems agree on, records that are doubled, and values nobody can order in time."""

from __future__ import annotations

import time

from tests.integration.oracle import AMBIGUOUS_SECONDS, Damage, Oracle, settle


def test_a_clean_sync_of_the_demo_data_shows_no_damage(bridge_factory) -> None:
    bridge = bridge_factory(seed="demo")
    oracle = Oracle(bridge.sn, bridge.jira)
    oracle.adopt(settled=False)
    assert len(oracle.keys("change")) > 10 and oracle.keys("incident") and oracle.keys("release")
    assert settle(bridge) is None
    assert oracle.check() == []


def test_a_value_no_person_wrote_is_damage_even_when_both_systems_agree(bridge) -> None:
    oracle = Oracle(bridge.sn, bridge.jira)
    key = oracle.create("servicenow", "change", summary="Patch the load balancers", state="assess")
    assert settle(bridge) is None
    oracle.assert_no_damage()
    # Not recorded as a person's write: what relbridge writing back a stale value looks like.
    change = bridge.sn.list("change_request")[0]
    bridge.sn.update("change_request", change["sys_id"], short_description="Patch (stale)")
    assert settle(bridge) is None
    assert sorted(oracle.check(), key=str) == [
        Damage("change", key, "jira", "summary", "Patch (stale)", "Patch the load balancers"),
        Damage("change", key, "servicenow", "summary", "Patch (stale)", "Patch the load balancers"),
    ]


def test_a_doubled_record_and_one_nobody_created_are_damage(bridge) -> None:
    oracle = Oracle(bridge.sn, bridge.jira)
    key = oracle.create("jira", "incident", summary="Login page times out", state="new", priority=2)
    assert settle(bridge) is None
    oracle.assert_no_damage()
    bridge.sn.create("incident", short_description="Login page times out", correlation_id=key)
    bridge.jira.create_issue("Change", "Nobody asked for this")
    found = {(d.system, d.entity, d.field, d.found) for d in oracle.check()}
    assert ("servicenow", "incident", "<record>", "2 objects") in found
    assert any(system == "jira" and entity == "change" and what == "1 objects" for system, entity, _, what in found)


def test_people_edits_are_recorded_and_unorderable_ones_both_accepted(bridge) -> None:
    oracle = Oracle(bridge.sn, bridge.jira)
    key = oracle.create("servicenow", "incident", summary="Disk full", state="new", priority=3)
    assert settle(bridge) is None
    assert oracle.edit("servicenow", "incident", key, "priority", 1)
    assert not oracle.edit("servicenow", "incident", key, "priority", 1)  # no change: nothing written
    started = time.time()
    assert oracle.edit("jira", "incident", key, "priority", 2)
    assert time.time() - started >= AMBIGUOUS_SECONDS - 0.2  # waited: the order stays known
    assert oracle.expected("incident", key, "priority") == {2}
    assert not oracle.edit("jira", "incident", key, "state", "closed")  # Jira's workflow: no such transition
