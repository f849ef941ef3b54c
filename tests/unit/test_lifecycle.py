"""The release lifecycle: transitions, classification, authorization and derived facts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import BadInput
from bridge.lifecycle import (
    FINAL,
    ORDER,
    TRANSITIONS,
    Transition,
    TransitionKind,
    Veto,
    apply_facts,
    check_authorization,
    classify,
    derive_state,
    is_authorized,
    is_rescheduled,
    is_revision,
    missing_for_authorization,
    needs_authorization,
)
from bridge.model import Approval, ChangeRequest, ChangeState, CloseCode, Release, ReleaseState

S = ReleaseState
K = TransitionKind
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def change(key: str, state: str = "scheduled", approval: str = "approved", close_code: str | None = None) -> ChangeRequest:
    return ChangeRequest(
        key=key, summary=f"change {key}", state=ChangeState(state), approval=Approval(approval),
        close_code=CloseCode(close_code) if close_code else None, release="RLSE0001001",
    )


def release(state: ReleaseState = S.PLANNED, **fields: object) -> Release:
    return Release(key="RLSE0001001", name="Payments 2024.3", state=state, **fields)


# --- the transition table ----------------------------------------------------------------


def test_table_covers_every_state_and_only_states() -> None:
    assert set(TRANSITIONS) == set(ReleaseState)
    for targets in TRANSITIONS.values():
        assert targets <= set(ReleaseState)


def test_forward_path_is_designed_one_step_at_a_time() -> None:
    path = sorted(ORDER, key=ORDER.__getitem__)
    assert path == [S.PLANNED, S.IN_PROGRESS, S.AUTHORIZED, S.DEPLOYING, S.DEPLOYED, S.CLOSED]
    for a, b in zip(path, path[1:], strict=False):
        assert b in TRANSITIONS[a]
        assert classify(a, b) == Transition(a, b, K.FORWARD, designed=True)


@pytest.mark.parametrize("state", [S.PLANNED, S.IN_PROGRESS, S.AUTHORIZED, S.DEPLOYING, S.ROLLED_BACK])
def test_cancel_is_designed_from_non_final_states(state: ReleaseState) -> None:
    assert S.CANCELLED in TRANSITIONS[state]


def test_deployed_and_final_states_are_not_cancellable_by_design() -> None:
    assert S.CANCELLED not in TRANSITIONS[S.DEPLOYED]
    for state in FINAL:
        assert S.CANCELLED not in TRANSITIONS[state]
    assert TRANSITIONS[S.CANCELLED] == frozenset()


@pytest.mark.parametrize("state", [S.DEPLOYING, S.DEPLOYED, S.CLOSED])
def test_rollback_is_designed_from_deploying_deployed_closed(state: ReleaseState) -> None:
    assert S.ROLLED_BACK in TRANSITIONS[state]


@pytest.mark.parametrize("state", [S.PLANNED, S.IN_PROGRESS, S.AUTHORIZED])
def test_rollback_is_not_designed_before_deployment(state: ReleaseState) -> None:
    assert S.ROLLED_BACK not in TRANSITIONS[state]


# --- classify ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "kind", "designed", "missed"),
    [
        (S.PLANNED, S.PLANNED, K.SAME, True, ()),
        (S.IN_PROGRESS, S.DEPLOYED, K.FORWARD, False, (S.AUTHORIZED, S.DEPLOYING)),
        (S.PLANNED, S.CLOSED, K.FORWARD, False, (S.IN_PROGRESS, S.AUTHORIZED, S.DEPLOYING, S.DEPLOYED)),
        (S.AUTHORIZED, S.IN_PROGRESS, K.BACKWARD, True, ()),
        (S.DEPLOYED, S.PLANNED, K.BACKWARD, False, ()),
        (S.DEPLOYING, S.ROLLED_BACK, K.ROLLBACK, True, ()),
        (S.CLOSED, S.ROLLED_BACK, K.ROLLBACK, True, ()),
        (S.IN_PROGRESS, S.ROLLED_BACK, K.ROLLBACK, False, (S.AUTHORIZED, S.DEPLOYING)),
        (S.ROLLED_BACK, S.PLANNED, K.BACKWARD, True, ()),
        (S.ROLLED_BACK, S.IN_PROGRESS, K.BACKWARD, True, ()),
        (S.ROLLED_BACK, S.DEPLOYED, K.BACKWARD, False, ()),
        (S.ROLLED_BACK, S.CLOSED, K.FORWARD, True, ()),
        (S.AUTHORIZED, S.CANCELLED, K.CANCEL, True, ()),
        (S.DEPLOYED, S.CANCELLED, K.CANCEL, False, ()),
        (S.CANCELLED, S.PLANNED, K.BACKWARD, False, ()),
        (S.CANCELLED, S.ROLLED_BACK, K.ROLLBACK, False, ()),
    ],
)
def test_classify(old: S, new: S, kind: K, designed: bool, missed: tuple[S, ...]) -> None:
    move = classify(old, new)
    assert (move.kind, move.designed, move.missed) == (kind, designed, missed)
    assert move.skipped is bool(missed)


def test_classify_accepts_state_names_from_hooks_and_history() -> None:
    assert classify("planned", "authorized").kind is K.FORWARD
    assert classify("planned", "authorized").new is S.AUTHORIZED


def test_classify_rejects_unknown_state_with_a_clear_error() -> None:
    with pytest.raises(BadInput, match="'released' is not a release state"):
        classify("planned", "released")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (S.AUTHORIZED, S.IN_PROGRESS, True),
        (S.DEPLOYED, S.ROLLED_BACK, True),
        (S.ROLLED_BACK, S.PLANNED, True),
        (S.PLANNED, S.DEPLOYED, False),
        (S.DEPLOYING, S.CANCELLED, False),
        (S.CLOSED, S.CLOSED, False),
    ],
)
def test_is_revision(old: S, new: S, expected: bool) -> None:
    assert is_revision(old, new) is expected


def test_needs_authorization_only_for_deploying_and_deployed() -> None:
    assert {s for s in ReleaseState if needs_authorization(s)} == {S.DEPLOYING, S.DEPLOYED}
    assert needs_authorization("deployed")


# --- authorization -----------------------------------------------------------------------


def test_authorized_when_every_change_is_approved_and_scheduled_or_later() -> None:
    changes = [change("CHG1", "scheduled"), change("CHG2", "implement"), change("CHG3", "review"), change("CHG4", "closed")]
    assert is_authorized(changes)
    assert missing_for_authorization(changes) == []


def test_no_changes_is_not_authorized() -> None:
    assert not is_authorized([])
    assert missing_for_authorization([]) == ["no change requests"]


def test_only_canceled_changes_is_not_authorized() -> None:
    assert missing_for_authorization([change("CHG1", "canceled"), change("CHG2", "canceled", "rejected")]) == [
        "no change requests (all 2 canceled)"
    ]


def test_canceled_change_does_not_block() -> None:
    assert is_authorized([change("CHG1"), change("CHG2", "canceled", "rejected")])


def test_reasons_name_each_change_and_gap() -> None:
    changes = [
        change("CHG0030001"),
        change("CHG0030002", "scheduled", "requested"),
        change("CHG0030003", "assess"),
        change("CHG0030004", "new", "rejected"),
    ]
    assert missing_for_authorization(changes) == [
        "CHG0030002 is not approved (requested)",
        "CHG0030003 is in assess, needs scheduled or later",
        "CHG0030004 is not approved (rejected)",
        "CHG0030004 is in new, needs scheduled or later",
    ]
    assert not is_authorized(iter(changes))  # any iterable, consumed once


def test_check_authorization_vetoes_unauthorized_deploy() -> None:
    veto = check_authorization("deploying", [change("CHG1", "assess")])
    assert veto == Veto(
        reason="release is not authorized to enter deploying",
        missing=("CHG1 is in assess, needs scheduled or later",),
    )
    assert veto.policy is None  # the engine applies [gate] policy


def test_check_authorization_allows_authorized_or_ungated_moves() -> None:
    assert check_authorization(S.DEPLOYED, [change("CHG1")]) is None
    assert check_authorization(S.AUTHORIZED, []) is None
    assert check_authorization(S.CLOSED, []) is None


def test_veto_is_frozen_and_validated() -> None:
    veto = Veto("not authorized", missing=["a"])  # type: ignore[arg-type]
    assert veto.missing == ("a",)
    with pytest.raises(AttributeError):
        veto.reason = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="reason"):
        Veto("  ")
    with pytest.raises(ValueError, match="policy"):
        Veto("no", policy="")
    assert Veto("no", policy="warn").policy == "warn"


# --- derive_state ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "changes", "expected"),
    [
        (S.IN_PROGRESS, [change("C1"), change("C2")], S.AUTHORIZED),
        (S.PLANNED, [change("C1")], S.AUTHORIZED),
        (S.IN_PROGRESS, [change("C1"), change("C2", "assess")], None),
        (S.AUTHORIZED, [change("C1"), change("C2", "implement")], S.DEPLOYING),
        (S.AUTHORIZED, [change("C1"), change("C2", "review")], S.DEPLOYING),
        (S.DEPLOYING, [change("C1", "review"), change("C2", "closed", close_code="successful")], S.DEPLOYED),
        (S.DEPLOYING, [change("C1", "review"), change("C2", "canceled", "rejected")], S.DEPLOYED),
        (S.DEPLOYING, [change("C1", "review"), change("C2", "closed", close_code="unsuccessful")], S.ROLLED_BACK),
        (S.DEPLOYED, [change("C1", "closed", close_code="unsuccessful")], S.ROLLED_BACK),
        # an unsuccessful change before deployment does not roll back nor deploy
        (S.AUTHORIZED, [change("C1", "closed", close_code="unsuccessful")], None),
        # a change edited after deployment does not move the release backwards
        (S.DEPLOYED, [change("C1"), change("C2", "implement")], None),
        (S.DEPLOYED, [change("C1", "review")], None),
        # closed and cancelled releases are never moved by their changes
        (S.CLOSED, [change("C1", "closed", close_code="unsuccessful")], None),
        (S.CANCELLED, [change("C1")], None),
        # authorization lost: back to in_progress
        (S.AUTHORIZED, [change("C1"), change("C2", "assess", "requested")], S.IN_PROGRESS),
        (S.AUTHORIZED, [change("C1", "canceled")], S.IN_PROGRESS),
        (S.AUTHORIZED, [], S.IN_PROGRESS),
        # nothing linked, nothing implied
        (S.PLANNED, [], None),
        (S.DEPLOYING, [], None),
        # a rolled back release is re-planned by people, not by its changes
        (S.ROLLED_BACK, [change("C1", "review")], None),
    ],
)
def test_derive_state(current: S, changes: list[ChangeRequest], expected: S | None) -> None:
    assert derive_state(release(current), changes) == expected


def test_derive_state_jira_unreleased_holds_deploying() -> None:
    done = [change("C1", "review")]
    assert derive_state(release(S.AUTHORIZED), done, jira_released=False) == S.DEPLOYING
    assert derive_state(release(S.DEPLOYING), done, jira_released=False) is None
    assert derive_state(release(S.DEPLOYING), done, jira_released=True) == S.DEPLOYED
    assert derive_state(release(S.DEPLOYING), done, jira_released=None) == S.DEPLOYED


# --- baseline and revisions --------------------------------------------------------------


def test_is_rescheduled() -> None:
    later = T0 + timedelta(days=3)
    assert not is_rescheduled(None, T0)
    assert not is_rescheduled(T0, T0)
    assert is_rescheduled(T0, later)
    assert is_rescheduled(later, T0)  # pulled in is rescheduled too
    assert is_rescheduled(T0, None)  # commitment withdrawn


def test_baseline_is_set_the_first_time_planned_end_is_set() -> None:
    created = apply_facts(None, release())
    assert created.baseline_planned_end is None
    planned = apply_facts(created, release(planned_end=T0))
    assert planned.baseline_planned_end == T0
    moved = apply_facts(planned, release(planned_end=T0 + timedelta(days=7)))
    assert moved.baseline_planned_end == T0
    assert is_rescheduled(moved.baseline_planned_end, moved.planned_end)


def test_new_release_with_planned_end_gets_its_baseline() -> None:
    assert apply_facts(None, release(planned_end=T0)).baseline_planned_end == T0


def test_mapped_baseline_cannot_overwrite_the_stored_one() -> None:
    stored = apply_facts(None, release(planned_end=T0))
    incoming = release(planned_end=T0, baseline_planned_end=T0 + timedelta(days=1), revision_count=0)
    assert apply_facts(stored, incoming).baseline_planned_end == T0


def test_stored_planned_end_without_baseline_becomes_the_baseline() -> None:
    legacy = release(planned_end=T0)  # stored before baselines were maintained
    after = apply_facts(legacy, release(planned_end=T0 + timedelta(days=2)))
    assert after.baseline_planned_end == T0


def test_revision_count_counts_backward_moves_and_rollbacks() -> None:
    states = [S.PLANNED, S.IN_PROGRESS, S.AUTHORIZED, S.IN_PROGRESS, S.AUTHORIZED, S.DEPLOYING,
              S.ROLLED_BACK, S.PLANNED, S.DEPLOYED, S.CLOSED]
    current = apply_facts(None, release(states[0]))
    for state in states[1:]:
        current = apply_facts(current, release(state, planned_end=T0))
    # authorized→in_progress, deploying→rolled_back, rolled_back→planned
    assert current.revision_count == 3
    assert current.state == S.CLOSED


def test_apply_facts_is_idempotent_and_does_not_mutate() -> None:
    before = apply_facts(None, release(S.DEPLOYED, planned_end=T0))
    after = release(S.ROLLED_BACK, planned_end=T0)
    once = apply_facts(before, after)
    assert apply_facts(before, once) == once
    assert once.revision_count == 1
    assert after.revision_count == 0 and after.baseline_planned_end is None


# --- properties --------------------------------------------------------------------------

states = st.sampled_from(list(ReleaseState))
planned_ends = st.one_of(st.none(), st.integers(min_value=0, max_value=60).map(lambda d: T0 + timedelta(days=d)))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(states, planned_ends), min_size=1, max_size=25))
def test_any_observed_sequence_is_accepted(sequence: list[tuple[ReleaseState, datetime | None]]) -> None:
    first_state, first_end = sequence[0]
    current = apply_facts(None, release(first_state, planned_end=first_end))
    baseline = current.baseline_planned_end
    for state, end in sequence[1:]:
        move = classify(current.state, state)
        assert move.kind in set(TransitionKind)
        assert move.new in set(ReleaseState)
        nxt = apply_facts(current, release(state, planned_end=end))
        assert nxt.state in set(ReleaseState)
        assert nxt.revision_count in (current.revision_count, current.revision_count + 1)
        assert (nxt.revision_count > current.revision_count) is move.is_revision
        if baseline is not None:
            assert nxt.baseline_planned_end == baseline
        baseline = nxt.baseline_planned_end
        current = nxt


@given(states, states)
def test_classify_is_total_and_consistent(old: ReleaseState, new: ReleaseState) -> None:
    move = classify(old, new)
    assert (move.kind is K.SAME) is (old == new)
    if move.kind is K.FORWARD and old in ORDER:
        assert ORDER[new] > ORDER[old]
        assert len(move.missed) == ORDER[new] - ORDER[old] - 1
    if move.skipped:
        assert not move.designed


change_states = st.sampled_from(list(ChangeState))
approvals = st.sampled_from(list(Approval))
close_codes = st.one_of(st.none(), st.sampled_from(list(CloseCode)))


@settings(max_examples=300, deadline=None)
@given(states, st.lists(st.tuples(change_states, approvals, close_codes), max_size=5), st.sampled_from([None, True, False]))
def test_derive_state_never_moves_backwards_except_losing_authorization(
    current: ReleaseState, specs: list[tuple[ChangeState, Approval, CloseCode | None]], jira_released: bool | None
) -> None:
    changes = [change(f"C{i}", s.value, a.value, c.value if c else None) for i, (s, a, c) in enumerate(specs)]
    derived = derive_state(release(current), changes, jira_released=jira_released)
    if derived is None:
        return
    assert derived != current
    move = classify(current, derived)
    if move.kind is K.BACKWARD:
        assert (current, derived) == (S.AUTHORIZED, S.IN_PROGRESS)
        assert not is_authorized(changes)
