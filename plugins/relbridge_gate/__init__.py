"""The authorization gate: only authorized, ready releases go live.

A release may enter ``deploying`` or ``deployed`` only when it has at least one change
request and every linked change is approved and at least scheduled (authorization), and
every such change is *ready*: the fields ``[gate] require_change_fields`` names are filled in
and, with ``[gate] require_cab = true``, its CAB date has passed (``bridge.release.readiness``).
Otherwise the move is vetoed; the veto names each change and what it lacks. What happens
then is ``[gate] policy``: ``revert`` (the default) puts the system that moved back (a
released Jira version becomes unreleased again) and records the veto; ``warn`` lets the
move stand and only records it. ``relbridge release show`` says what is missing.

A release with a plan (``relbridge release plan``) may not go live either while a task of
a phase before "Deploy" is open; the veto names each task. ``[deployment]
block_go_live_on_open_tasks = false`` turns that rule off.
"""

from __future__ import annotations

from typing import Any

from bridge import hookimpl
from bridge.config import Config, DeploymentConfig, GateConfig
from bridge.lifecycle import Veto, check_authorization, needs_authorization
from bridge.model import ChangeRequest, Release
from bridge.release.readiness import missing_for_readiness
from bridge.timeutil import utc_now

__version__ = "1.1.0"

# The [gate] section of the run's configuration (defaults until relbridge_configure).
_settings: dict[str, Any] = {"gate": GateConfig(), "deployment": DeploymentConfig()}


@hookimpl
def relbridge_configure(config: Config) -> None:
    _settings["gate"] = config.gate
    _settings["deployment"] = config.deployment


@hookimpl
def relbridge_check_transition(release: Release, new: str, changes: list[ChangeRequest],
                               open_tasks: list[str]) -> Veto | None:
    # The veto carries no policy of its own: the engine applies [gate] policy.
    veto = check_authorization(new, changes)
    if veto is not None:
        return Veto(reason=f"{release.key}: {veto.reason}", missing=veto.missing)
    if open_tasks and _settings["deployment"].block_go_live_on_open_tasks:
        return Veto(reason=f"{release.key}: release plan tasks before Deploy are open",
                    missing=tuple(f"task {name} is open" for name in open_tasks))
    gate = _settings["gate"]
    if not needs_authorization(new) or not (gate.require_change_fields or gate.require_cab):
        return None
    missing = missing_for_readiness(changes, gate.require_change_fields, gate.require_cab, utc_now())
    if not missing:
        return None
    return Veto(reason=f"{release.key}: release is not ready to enter {new}", missing=tuple(missing))
