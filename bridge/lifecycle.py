"""The release lifecycle: states, transitions, authorization and the facts derived from them.

Everything here is pure (no I/O, no clock), so the engine, the gate plugin, the KPI report
and the tests all share one definition of "forward", "revised", "authorized" and
"rescheduled".

The owning systems are the truth about what happened: a state observed in ServiceNow or Jira
is *always* accepted, even when it is not a designed transition or when a poll missed the
intermediate states. :func:`classify` therefore never rejects a valid state; it only
describes the move. Refusing a move is the authorization gate's job
(``relbridge_check_transition`` returning a :class:`Veto`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final, Protocol, TypeVar

from bridge.errors import BadInput
from bridge.model import Approval, ChangeRequest, ChangeState, CloseCode, Release, ReleaseState

__all__ = [
    "FINAL", "ORDER", "SCHEDULED_OR_LATER", "TRANSITIONS", "Transition", "TransitionKind", "Veto",
    "apply_facts", "as_state", "check_authorization", "classify", "derive_state", "is_authorized",
    "is_rescheduled", "is_revision", "missing_for_authorization", "needs_authorization",
]

S = ReleaseState  # short alias for the tables below

#: Rank of each state on the forward path planned → … → closed. ``rolled_back`` and
#: ``cancelled`` are off the path and have no rank.
ORDER: Final[dict[ReleaseState, int]] = {
    S.PLANNED: 0,
    S.IN_PROGRESS: 1,
    S.AUTHORIZED: 2,
    S.DEPLOYING: 3,
    S.DEPLOYED: 4,
    S.CLOSED: 5,
}

#: States a release does not leave by design (it still may, when a system reopens it).
FINAL: Final[frozenset[ReleaseState]] = frozenset({S.CLOSED, S.CANCELLED})

#: The designed moves. Forward steps one at a time; re-planning moves (authorized →
#: in_progress when a change lost its approval, rolled_back → planned/in_progress) are
#: designed but count as revisions; a rollback is possible from deploying, deployed and
#: closed (a defect found after closure); cancellation from every non-final state except
#: deployed, which is live software and can only be closed or rolled back.
TRANSITIONS: Final[dict[ReleaseState, frozenset[ReleaseState]]] = {
    S.PLANNED: frozenset({S.IN_PROGRESS, S.CANCELLED}),
    S.IN_PROGRESS: frozenset({S.AUTHORIZED, S.PLANNED, S.CANCELLED}),
    S.AUTHORIZED: frozenset({S.DEPLOYING, S.IN_PROGRESS, S.PLANNED, S.CANCELLED}),
    S.DEPLOYING: frozenset({S.DEPLOYED, S.ROLLED_BACK, S.CANCELLED}),
    S.DEPLOYED: frozenset({S.CLOSED, S.ROLLED_BACK}),
    S.CLOSED: frozenset({S.ROLLED_BACK}),
    S.ROLLED_BACK: frozenset({S.PLANNED, S.IN_PROGRESS, S.CLOSED, S.CANCELLED}),
    S.CANCELLED: frozenset(),
}

#: The change states that count as "at least scheduled" for authorization.
SCHEDULED_OR_LATER: Final[frozenset[ChangeState]] = frozenset(
    {ChangeState.SCHEDULED, ChangeState.IMPLEMENT, ChangeState.REVIEW, ChangeState.CLOSED}
)
_FINISHED: Final[frozenset[ChangeState]] = frozenset({ChangeState.REVIEW, ChangeState.CLOSED})
_STARTED: Final[frozenset[ChangeState]] = _FINISHED | {ChangeState.IMPLEMENT}
_NEEDS_AUTHORIZATION: Final[frozenset[ReleaseState]] = frozenset({S.DEPLOYING, S.DEPLOYED})


class TransitionKind(StrEnum):
    FORWARD = "forward"
    BACKWARD = "backward"
    SAME = "same"
    ROLLBACK = "rollback"
    CANCEL = "cancel"


@dataclass(frozen=True)
class Transition:
    """What a move from ``old`` to ``new`` means.

    ``designed`` says whether the move is in :data:`TRANSITIONS`; ``missed`` lists the
    forward-path states the move jumped over (a poll that saw in_progress then deployed
    missed authorized and deploying).
    """

    old: ReleaseState
    new: ReleaseState
    kind: TransitionKind
    designed: bool
    missed: tuple[ReleaseState, ...] = ()

    @property
    def skipped(self) -> bool:
        """True when intermediate states were not observed."""
        return bool(self.missed)

    @property
    def is_revision(self) -> bool:
        return self.kind in (TransitionKind.BACKWARD, TransitionKind.ROLLBACK)


@dataclass(frozen=True)
class Veto:
    """A gate's refusal of a state change, returned by ``relbridge_check_transition``.

    ``missing`` names what would have made the move acceptable (see
    :func:`missing_for_authorization`); ``policy`` tells the engine what to do with the
    system that made the move (``revert``: put it back and record the veto; ``warn``: let it
    stand and record the veto; None: whatever ``[gate] policy`` says).
    """

    reason: str
    missing: tuple[str, ...] = ()
    policy: str | None = None

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError("a veto needs a reason")
        if self.policy not in (None, "revert", "warn"):
            raise ValueError(f"a veto policy is 'revert', 'warn' or None, not {self.policy!r}")
        object.__setattr__(self, "missing", tuple(self.missing))


def as_state(value: ReleaseState | str) -> ReleaseState:
    """Coerce a state name (hook arguments and history rows carry strings) to the enum."""
    try:
        return ReleaseState(value)
    except ValueError:
        allowed = ", ".join(s.value for s in ReleaseState)
        raise BadInput(f"{value!r} is not a release state (one of: {allowed})") from None


def _path_between(low: int, high: int) -> tuple[ReleaseState, ...]:
    """Forward-path states strictly between two ranks."""
    return tuple(s for s, rank in ORDER.items() if low < rank < high)


def classify(old: ReleaseState | str, new: ReleaseState | str) -> Transition:
    """Describe a move between two observed states; never rejects a valid state.

    Rules, first match wins: equal states are ``same``; entering cancelled is ``cancel``;
    entering rolled_back is ``rollback``; leaving cancelled (a reopened release) is
    ``backward``; leaving rolled_back is ``backward`` (the work is re-planned or redone)
    except rolled_back → closed, which is ``forward`` (the release is closed out); otherwise
    the ranks in :data:`ORDER` decide.
    """
    old_s, new_s = as_state(old), as_state(new)
    designed = new_s in TRANSITIONS[old_s]
    if old_s == new_s:
        return Transition(old_s, new_s, TransitionKind.SAME, designed=True)
    if new_s == S.CANCELLED:
        return Transition(old_s, new_s, TransitionKind.CANCEL, designed)
    if new_s == S.ROLLED_BACK:
        missed = _path_between(ORDER[old_s], ORDER[S.DEPLOYING] + 1) if old_s in ORDER else ()
        return Transition(old_s, new_s, TransitionKind.ROLLBACK, designed, missed)
    if old_s == S.ROLLED_BACK and new_s == S.CLOSED:
        return Transition(old_s, new_s, TransitionKind.FORWARD, designed)
    if old_s not in ORDER:  # leaving cancelled or rolled_back for the path again
        return Transition(old_s, new_s, TransitionKind.BACKWARD, designed)
    if ORDER[new_s] > ORDER[old_s]:
        missed = _path_between(ORDER[old_s], ORDER[new_s])
        return Transition(old_s, new_s, TransitionKind.FORWARD, designed, missed)
    return Transition(old_s, new_s, TransitionKind.BACKWARD, designed)


def is_revision(old: ReleaseState | str, new: ReleaseState | str) -> bool:
    """True when the move means the release had to be reworked: backwards or rolled back."""
    return classify(old, new).is_revision


def needs_authorization(new: ReleaseState | str) -> bool:
    """Entering deploying or deployed requires an authorized release (the gate checks)."""
    return as_state(new) in _NEEDS_AUTHORIZATION


class Authorizing(Protocol):
    """What authorization reads of a change request: a ``ChangeRequest`` has it, and so
    does the release overview's lighter stand-in (``bridge.reports.releases``)."""

    @property
    def key(self) -> str: ...
    @property
    def state(self) -> ChangeState: ...
    @property
    def approval(self) -> Approval: ...


_Change = TypeVar("_Change", bound=Authorizing)


def _active(changes: Iterable[_Change]) -> list[_Change]:
    """Linked changes that still matter: a canceled change neither blocks nor authorizes."""
    return [c for c in changes if c.state != ChangeState.CANCELED]


def missing_for_authorization(changes: Iterable[Authorizing]) -> list[str]:
    """Why the release is not authorized, one human-readable reason per gap; empty if it is.

    A release is authorized when it has at least one non-canceled change request and every
    non-canceled change is approved and at least scheduled. Canceled changes are ignored.
    """
    changes = list(changes)
    active = _active(changes)
    if not active:
        canceled = len(changes) - len(active)
        return [f"no change requests (all {canceled} canceled)" if canceled else "no change requests"]
    reasons: list[str] = []
    for change in active:
        if change.approval != Approval.APPROVED:
            reasons.append(f"{change.key} is not approved ({change.approval.value})")
        if change.state not in SCHEDULED_OR_LATER:
            reasons.append(f"{change.key} is in {change.state.value}, needs scheduled or later")
    return reasons


def is_authorized(changes: Iterable[ChangeRequest]) -> bool:
    """At least one non-canceled change, each approved and scheduled or later."""
    return not missing_for_authorization(changes)


def check_authorization(new: ReleaseState | str, changes: Iterable[ChangeRequest]) -> Veto | None:
    """The authorization guard: a Veto when ``new`` needs authorization the changes lack."""
    if not needs_authorization(new):
        return None
    missing = missing_for_authorization(changes)
    if not missing:
        return None
    return Veto(reason=f"release is not authorized to enter {as_state(new).value}", missing=tuple(missing))


def _implied_state(
    current: ReleaseState, active: list[ChangeRequest], jira_released: bool | None
) -> ReleaseState | None:
    """The state the active changes point at, by precedence (see :func:`derive_state`)."""
    unsuccessful = any(
        c.state == ChangeState.CLOSED and c.close_code == CloseCode.UNSUCCESSFUL for c in active
    )
    if unsuccessful:
        return S.ROLLED_BACK if current in (S.DEPLOYING, S.DEPLOYED) else None
    finished = all(c.state in _FINISHED for c in active)
    if finished and jira_released is not False:
        return S.DEPLOYED
    if any(c.state in _STARTED for c in active):
        return S.DEPLOYING
    if is_authorized(active):
        return S.AUTHORIZED
    return None


# What derive_state reads of a change, besides its release link: an edit of any other
# field cannot move the release, so it is not judged again (two reads saved per edit).
DERIVING_CHANGE_FIELDS = frozenset({"state", "close_code", "approval"})


def derive_state(
    release: Release, changes: list[ChangeRequest], *, jira_released: bool | None = None
) -> ReleaseState | None:
    """The state the linked changes imply for ``release``, or None when they imply nothing new.

    Canceled changes are ignored. Precedence, first match wins:

    1. a closed or cancelled release is never moved by its changes;
    2. a change closed ``unsuccessful``: ``rolled_back`` when the release is deploying or
       deployed, otherwise nothing (a failed change before the release went live is for
       people to re-plan, not for the bridge to guess);
    3. ``deployed`` — every change is in review or closed, none unsuccessful, and the Jira
       version is not known to be unreleased (``jira_released`` is True or None: no Jira side);
    4. ``deploying`` — any change is in implement, or some changes are finished and others
       not (also when all are finished but Jira still says unreleased);
    5. ``authorized`` — :func:`is_authorized`;
    6. an ``authorized`` release whose changes no longer authorize it goes back to
       ``in_progress`` (a change lost its approval, or a new unapproved one was linked).

    A result that would move the release backwards (other than rule 6) or equals its
    current state gives None: editing a change must not un-deploy a release. The result is a
    proposal; entering deploying/deployed still passes the authorization gate.
    """
    current = release.state
    if current in FINAL:
        return None
    active = _active(changes)
    implied = _implied_state(current, active, jira_released) if active else None
    if implied is None:
        if current == S.AUTHORIZED and not is_authorized(active):
            return S.IN_PROGRESS
        return None
    move = classify(current, implied)
    if move.kind in (TransitionKind.SAME, TransitionKind.BACKWARD):
        return None
    return implied


def is_rescheduled(baseline_planned_end: datetime | None, new_planned_end: datetime | None) -> bool:
    """True when the planned end differs from its first committed value (either direction).

    Clearing a committed date counts: the commitment no longer stands. With no baseline
    there was no commitment yet, so nothing was rescheduled.
    """
    return baseline_planned_end is not None and new_planned_end != baseline_planned_end


def apply_facts(release_before: Release | None, release_after: Release) -> Release:
    """``release_after`` with the lifecycle's derived fields maintained.

    ``baseline_planned_end`` is the first committed planned end and never changes once set;
    ``revision_count`` is the stored count plus one when this move is a revision. The derived
    fields are owned here, so values a mapping put on ``release_after`` are ignored once a
    stored record exists. Idempotent: applying twice with the same ``release_before`` gives
    the same record.
    """
    before = release_before
    if before is None:
        baseline = release_after.baseline_planned_end or release_after.planned_end
        count = release_after.revision_count
    else:
        baseline = before.baseline_planned_end or before.planned_end or release_after.planned_end
        count = before.revision_count + (1 if is_revision(before.state, release_after.state) else 0)
    return release_after.model_copy(update={"baseline_planned_end": baseline, "revision_count": count})
