"""The authorization gate: only authorized releases go live.

A release may enter ``deploying`` or ``deployed`` only when it has at least one change
request and every linked change is approved and at least scheduled. Otherwise the move is
vetoed. What happens then is ``[gate] policy``: ``revert`` (the default) puts the system that
moved back (a released Jira version becomes unreleased again) and records the veto;
``warn`` lets the move stand and only records it. ``relbridge release show`` says what is
missing.
"""

from __future__ import annotations

from bridge import hookimpl
from bridge.lifecycle import Veto, check_authorization
from bridge.model import ChangeRequest, Release

__version__ = "1.0.0"


@hookimpl
def relbridge_check_transition(release: Release, new: str, changes: list[ChangeRequest]) -> Veto | None:
    # The veto carries no policy of its own: the engine applies [gate] policy.
    veto = check_authorization(new, changes)
    if veto is None:
        return None
    return Veto(reason=f"{release.key}: {veto.reason}", missing=veto.missing)
