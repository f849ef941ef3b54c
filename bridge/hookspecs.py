"""Every hook relbridge calls, with when it fires, its arguments and its return.

Plugin authors implement these with ``from bridge import hookimpl``; an implementation may
take fewer arguments than the spec lists (pluggy passes only the ones it names), so specs
can grow without breaking plugins. Core code never calls ``pm.hook`` directly: it goes
through the typed facade in ``bridge.plugins.Hooks``.

Lifecycle hooks are notifications (1:N, return values ignored). They fire after the
change is committed to the state store, once per accepted change, in the daemon and in
``sync --once`` alike. A plugin that raises is logged and does not stop the sync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

from bridge import PROJECT_NAME

if TYPE_CHECKING:
    from bridge.adapter import Adapter
    from bridge.config import Config
    from bridge.lifecycle import Veto
    from bridge.mapping import Transform
    from bridge.model import ChangeRequest, Incident, Release

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


# --- set-up ----------------------------------------------------------------------------------


@hookspec
def relbridge_configure(config: Config) -> None:
    """Called once after all plugins are loaded, before any other hook, with the validated
    configuration. Plugins read their settings here (e.g. the gate reads ``[gate] policy``)."""


# --- contributions -----------------------------------------------------------------------


@hookspec
def relbridge_adapters(config: Config, on_call: Callable[[str, str, int], None]) -> Iterable[Adapter]:
    """Return the system adapters this plugin provides (see ``bridge.adapter.Adapter``).

    Called once when the engine starts. Each adapter has a unique ``name`` ("servicenow",
    "jira"); two plugins providing the same name is an error. Adapters should call
    ``on_call(system, method, status)`` after every HTTP request (status 0: no response), which
    feeds the ``relbridge_api_calls`` metrics.
    """


@hookspec
def relbridge_transforms() -> Iterable[Transform]:
    """Return named value transforms usable in mapping files as ``transform = "<name>"``.

    Called once when mappings load. Names must be unique across plugins.
    """


# --- lifecycle notifications ------------------------------------------------------------------


@hookspec
def relbridge_release_created(release: Release, source: str) -> None:
    """A release was seen for the first time (``source``: the system it came from)."""


@hookspec
def relbridge_release_updated(release: Release, changed: dict[str, tuple[Any, Any]], source: str) -> None:
    """A release's fields changed; ``changed`` maps field -> (old, new). Fires once per accepted change."""


@hookspec
def relbridge_release_state_changed(release: Release, old: str, new: str, source: str) -> None:
    """A release moved from state ``old`` to ``new`` (accepted, not vetoed). Fires exactly once per move.

    ``source`` is the system that moved it, or "relbridge" when the state was derived from the
    release's changes.
    """


@hookspec
def relbridge_release_rescheduled(release: Release, old_end: Any, new_end: Any, source: str) -> None:
    """The planned end of a release moved after its first committed value."""


@hookspec
def relbridge_release_deployed(release: Release, source: str) -> None:
    """A release entered ``deployed``."""


@hookspec
def relbridge_release_rolled_back(release: Release, source: str) -> None:
    """A release entered ``rolled_back`` (a change closed unsuccessful, or its version was unreleased)."""


@hookspec
def relbridge_change_linked(change: ChangeRequest, release: Release | None, source: str) -> None:
    """A change request was linked to ``release`` (None: unlinked)."""


@hookspec
def relbridge_incident_linked(incident: Incident, change: ChangeRequest | None, release: Release | None, source: str) -> None:
    """An incident was tied to the change (and through it the release) that caused it."""


@hookspec
def relbridge_conflict(entity: str, key: str, field: str, values: dict[str, Any], resolution: str, winner: Any) -> None:
    """Both systems changed ``field`` since the last sync; ``values`` maps system -> value,
    ``resolution`` names the policy applied and ``winner`` the value kept."""


@hookspec
def relbridge_sync_failed(system: str, entity: str, id: str, error: Exception, permanent: bool) -> None:
    """Syncing one object failed. ``permanent``: it went to the dead-letter list or was skipped
    (unmappable value); otherwise it will be retried."""


# --- gate ---------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def relbridge_check_transition(release: Release, old: str, new: str, changes: list[ChangeRequest], source: str) -> Veto | None:
    """Decide whether ``release`` may move from ``old`` to ``new``; called before the move is persisted.

    firstresult: the first plugin returning a ``Veto`` stops the move; return None to allow.
    ``changes`` are the release's linked change requests as currently known.
    """
