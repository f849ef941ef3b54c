"""Adoption against the simulators: pairs that exist on both sides before relbridge's first
pass (linked by hand, or by another installation) are linked without damage (DESIGN §10)."""

from __future__ import annotations

import time

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.engine.adoption import HELD


def tagged_copy(bridge, change: dict, summary: str) -> dict:
    """A Jira issue carrying relbridge's correlation label for ``change``, as an earlier
    installation would have created it."""
    return bridge.jira.create_issue("Change", summary, labels=[f"relbridge-{change['number']}"])


def test_hand_linked_pairs_are_adopted_by_what_the_systems_prove(bridge) -> None:
    # 1. Both sides agree: nothing to write.
    agree = bridge.sn.create("change_request", short_description="Agree", state="-5")
    agree_issue = tagged_copy(bridge, agree, "Agree")
    # 2. The Jira copy was never touched since it was made; ServiceNow was edited since:
    #    ServiceNow's value wins and is written to Jira.
    edited_sn = bridge.sn.create("change_request", short_description="Old title", state="-5")
    copy_issue = tagged_copy(bridge, edited_sn, "Old title")
    bridge.sn.update("change_request", edited_sn["sys_id"], short_description="New title (ServiceNow)")
    # 3. Both edited within the margin allowed between two systems' clocks: which edit is
    #    newer cannot be proven -> a conflict, nothing written.
    unknown = bridge.sn.create("change_request", short_description="Base", state="-5")
    unknown_issue = tagged_copy(bridge, unknown, "Base")
    bridge.jira.update_issue(unknown_issue["key"], summary="Base (Jira)")
    bridge.sn.update("change_request", unknown["sys_id"], short_description="Base (ServiceNow)")
    # 4. Jira edited well after ServiceNow's last update (its changelog proves it): Jira wins.
    later = bridge.sn.create("change_request", short_description="Plan", state="-5")
    later_issue = tagged_copy(bridge, later, "Plan")
    bridge.sn.update("change_request", later["sys_id"], short_description="Plan (ServiceNow)")
    # 5. ServiceNow edited well after Jira (its sys_audit proves it): ServiceNow wins.
    sn_later = bridge.sn.create("change_request", short_description="Scope", state="-5")
    sn_later_issue = tagged_copy(bridge, sn_later, "Scope")
    bridge.jira.update_issue(sn_later_issue["key"], summary="Scope (Jira)")
    time.sleep(3.1)  # beyond the clock margin adoption allows between two systems
    bridge.jira.update_issue(later_issue["key"], summary="Plan (Jira, later)")
    bridge.sn.update("change_request", sn_later["sys_id"], short_description="Scope (ServiceNow, later)")

    report = bridge.sync()
    assert not report.errors

    def sn_summary(change: dict) -> str:
        return bridge.sn.get("change_request", change["sys_id"])["short_description"]

    def jira_summary(issue: dict) -> str:
        return bridge.jira.issue(issue["key"])["fields"]["summary"]

    assert (sn_summary(agree), jira_summary(agree_issue)) == ("Agree", "Agree")
    assert (sn_summary(edited_sn), jira_summary(copy_issue)) == ("New title (ServiceNow)",) * 2
    assert (sn_summary(unknown), jira_summary(unknown_issue)) == ("Base (ServiceNow)", "Base (Jira)")
    assert (sn_summary(later), jira_summary(later_issue)) == ("Plan (Jira, later)",) * 2
    assert (sn_summary(sn_later), jira_summary(sn_later_issue)) == ("Scope (ServiceNow, later)",) * 2
    # No duplicates: each pair was linked, not created again.
    assert len(bridge.jira.search('project = OPS AND issuetype = "Change"')) == 5
    assert len(bridge.sn.list("change_request")) == 5

    rt = bridge.runtime()
    held = [(c.key, c.field, c.resolution) for c in rt.store.conflicts()]
    assert held == [(unknown["number"], "summary", HELD)]
    # The held difference stays as it is on the next pass (no flapping, no late write).
    assert not bridge.sync().errors
    assert (sn_summary(unknown), jira_summary(unknown_issue)) == ("Base (ServiceNow)", "Base (Jira)")


def test_a_closed_release_is_never_reopened_by_adoption(bridge) -> None:
    """A version of the same name that is still unreleased never moves a closed
    ServiceNow release backwards, nor is the version released behind the team's back."""
    release = bridge.sn.create("rm_release", short_description="Release 9", state="3")
    version = bridge.jira.create_version("Release 9")
    report = bridge.sync()
    assert not report.errors
    assert bridge.sn.get("rm_release", release["sys_id"])["state"] == "3"
    [after] = [v for v in bridge.jira.versions() if v["id"] == version["id"]]
    assert after["released"] is False
    rt = bridge.runtime()
    assert [(c.key, c.field) for c in rt.store.conflicts()] == [(release["number"], "state")]


def test_a_worker_meeting_a_jira_version_first_links_the_servicenow_release_by_name(bridge) -> None:
    """A daemon on a fresh store may read a Jira version before the ServiceNow release it
    was made from (no tag: releases correlate by name): it must link, not create a twin."""
    release = bridge.sn.create("rm_release", short_description="Release 4.2", state="1")
    version = bridge.jira.create_version("Release 4.2")
    rt = bridge.runtime()
    key = rt.engine.process("jira", "release", version["id"])
    assert key is not None
    assert [r["sys_id"] for r in bridge.sn.list("rm_release")] == [release["sys_id"]]
    assert rt.store.refs("release", key)["servicenow"].ext_id == release["sys_id"]


def test_a_name_shared_by_two_servicenow_releases_links_neither(bridge) -> None:
    """Two ServiceNow releases of one name prove nothing: the version's release is created
    (and a person merges), rather than one of them guessed."""
    twins = {bridge.sn.create("rm_release", short_description="Twin", state="1")["sys_id"] for _ in range(2)}
    version = bridge.jira.create_version("Twin")
    rt = bridge.runtime()
    key = rt.engine.process("jira", "release", version["id"])
    assert key is not None
    assert rt.store.refs("release", key)["servicenow"].ext_id not in twins
    assert len(bridge.sn.list("rm_release")) == 3


# --- generated pre-existing pairs ------------------------------------------------------------


SUMMARIES = st.sampled_from(["Patch DB", "Patch db", "Rotate keys", "Upgrade kernel"])
DAYS = st.sampled_from(["2027-03-01", "2027-03-02", "2027-04-15"])
EDITS = st.lists(st.tuples(st.sampled_from(["servicenow", "jira"]), st.sampled_from(["summary", "due"]),
                           st.one_of(SUMMARIES, DAYS)), max_size=3)
PAIR = st.fixed_dictionaries({"born": st.sampled_from(["servicenow", "jira"]), "summary": SUMMARIES,
                              "due": DAYS, "hour": st.integers(0, 23), "edits": EDITS})


def _reset(bridge) -> None:
    for url in (bridge.sims.servicenow_url, bridge.sims.jira_url):
        requests.post(f"{url}/_sim/reset").raise_for_status()


def _make_pair(bridge, pair: dict) -> tuple[dict, dict]:
    """A change that exists on both sides already: born on one, copied to the other by an
    earlier installation (tagged as relbridge tags its copies), then edited by people."""
    end = f"{pair['due']} {pair['hour']:02d}:00:00"
    if pair["born"] == "servicenow":
        sn = bridge.sn.create("change_request", short_description=pair["summary"], state="-5", end_date=end)
        issue = bridge.jira.create_issue("Change", pair["summary"], duedate=pair["due"],
                                         labels=[f"relbridge-{sn['number']}"])
    else:
        issue = bridge.jira.create_issue("Change", pair["summary"], duedate=pair["due"])
        sn = bridge.sn.create("change_request", short_description=pair["summary"], state="-5", end_date=end,
                              correlation_id=issue["key"])
    for system, field, value in pair["edits"]:
        if (field == "due") != (value in ("2027-03-01", "2027-03-02", "2027-04-15")):
            continue  # a summary edit needs a summary, a due date a date
        if system == "servicenow":
            column = "short_description" if field == "summary" else "end_date"
            bridge.sn.update("change_request", sn["sys_id"], **{column: value if field == "summary" else f"{value} 12:00:00"})
        else:
            bridge.jira.update_issue(issue["key"], **{"summary" if field == "summary" else "duedate": value})
    return sn, issue


def _sides(bridge, sn: dict, issue: dict) -> dict[str, tuple[str, str]]:
    row = bridge.sn.get("change_request", sn["sys_id"])
    fields = bridge.jira.issue(issue["key"])["fields"]
    return {"summary": (row["short_description"], fields["summary"]),
            "due": (row["end_date"][:10], fields["duedate"])}


def test_generated_pairs_keep_every_value_a_person_wrote(bridge_factory, tmp_path) -> None:
    bridge = bridge_factory()
    runs = iter(range(10_000))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(pairs=st.lists(PAIR, min_size=1, max_size=3))
    def check(pairs: list[dict]) -> None:
        _reset(bridge)
        made = [_make_pair(bridge, pair) for pair in pairs]
        before = [_sides(bridge, sn, issue) for sn, issue in made]
        bridge.store_url = f"sqlite:///{tmp_path / f'fresh-{next(runs)}.db'}"
        assert not bridge.sync().errors
        for (sn, issue), old in zip(made, before, strict=True):
            new = _sides(bridge, sn, issue)
            for field, (old_sn, old_jira) in old.items():
                new_sn, new_jira = new[field]
                # Each side keeps its value, or takes the other side's (the later writer's):
                # never a third value, never a write where both already agreed.
                assert new_sn in (old_sn, old_jira) and new_jira in (old_sn, old_jira), (field, old, new)
                if old_sn == old_jira:
                    assert (new_sn, new_jira) == (old_sn, old_jira)
                assert new_sn == old_sn or new_jira == old_jira  # at most one side was written
        # Nothing was created twice.
        assert len(bridge.sn.list("change_request")) == len(made)
        assert len(bridge.jira.search('project = OPS AND issuetype = "Change"')) == len(made)

    check()


def test_generated_pairs_quick(bridge_factory, tmp_path) -> None:
    """The bounded CI variant: a few examples of the property above."""
    bridge = bridge_factory()
    pairs = [
        {"born": "servicenow", "summary": "Patch DB", "due": "2027-03-01", "hour": 9,
         "edits": [("servicenow", "summary", "Rotate keys")]},
        {"born": "jira", "summary": "Upgrade kernel", "due": "2027-03-02", "hour": 23,
         "edits": [("jira", "due", "2027-04-15"), ("servicenow", "summary", "Patch db")]},
        {"born": "servicenow", "summary": "Patch db", "due": "2027-04-15", "hour": 0, "edits": []},
    ]
    made = [_make_pair(bridge, pair) for pair in pairs]
    before = [_sides(bridge, sn, issue) for sn, issue in made]
    assert not bridge.sync().errors
    after = [_sides(bridge, sn, issue) for sn, issue in made]
    # Only ServiceNow edited the first (Jira's copy is untouched since it was made): ServiceNow wins.
    assert after[0]["summary"] == ("Rotate keys", "Rotate keys")
    # The second: Jira's due date was edited, ServiceNow's copy of it is untouched since it was
    # made: Jira's wins. Both summaries were set within the clock margin: held, none written.
    assert after[1]["due"] == ("2027-04-15", "2027-04-15")
    assert after[1]["summary"] == before[1]["summary"] == ("Patch db", "Upgrade kernel")
    assert after[2] == before[2]


def test_an_object_another_worker_linked_meanwhile_is_read_again(bridge, monkeypatch) -> None:
    """Two workers meet a pair from both sides at once: one links the Jira version to the
    ServiceNow release while the other, having looked a moment earlier, is about to make a
    record of its own for the version. Its save meets the link (RefConflict) and reads
    again, ending on the same record instead of a dead letter or a second release."""
    bridge.sn.create("rm_release", short_description="Release 5.0", state="1")
    version = bridge.jira.create_version("Release 5.0")
    rt = bridge.runtime()
    assert not rt.engine.sync_once().errors
    linked = rt.store.find_ref("jira", "release", version["id"])
    assert linked is not None

    real, calls = rt.store.find_ref, []

    def looked_too_early(system, entity, ext_id):
        calls.append(ext_id)
        return None if len(calls) == 1 else real(system, entity, ext_id)

    monkeypatch.setattr(rt.store, "find_ref", looked_too_early)
    record = rt.adapters["jira"].read("release", version["id"], rt.mappings.for_system("jira").fields_to_read("release"))
    from bridge.engine import SyncReport
    assert rt.engine.ingest(record, SyncReport()) == linked.key
    assert [key for key, _ in rt.store.records("release")] == [linked.key]
