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

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pluggy

from bridge import PROJECT_NAME
from bridge.adapter import OnCall

if TYPE_CHECKING:
    from pydantic import BaseModel

    from bridge.adapter import Adapter
    from bridge.config import Config
    from bridge.lifecycle import Veto
    from bridge.mapping.loader import Transform
    from bridge.model import ChangeRequest, Incident, Release
    from bridge.release.checks import Check
    from bridge.signatures import WebhookScheme

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


# --- set-up ----------------------------------------------------------------------------------


@hookspec
def relbridge_config_sections() -> dict[str, type[BaseModel]]:
    """Return the TOML sections this plugin owns: section name -> pydantic model.

    Called while the configuration loads, before ``relbridge_configure``. Each section is
    validated like the core's: give the model ``extra="forbid"`` (subclass
    ``bridge.config.Section``) so a mistyped key is an error with a did-you-mean, and
    ``RELBRIDGE_<SECTION>__<KEY>`` variables override the file. A section name taken by the
    core or by another plugin is an error; a section no loaded plugin declares is an error.
    The validated section is an attribute of the config: ``config.<section>``.
    """


@hookspec
def relbridge_configure(config: Config) -> None:
    """Called once per run, after all plugins are loaded and before the first adapter,
    transform or notification hook, with the validated configuration (core sections and
    every plugin's own sections, e.g. ``config.acme`` for a plugin that declared
    ``[acme]``). Keep what you need from it; raise ``bridge.errors.ConfigError`` for a
    setting that is valid on its own but unusable (the command stops with exit 2)."""


# --- contributions -----------------------------------------------------------------------


@hookspec
def relbridge_adapters(config: Config, on_call: OnCall) -> Iterable[Adapter]:
    """Return the system adapters this plugin provides (see ``bridge.adapter.Adapter``).

    Called once when the engine starts. Each adapter has a unique ``name`` (the system it
    talks to); two plugins providing the same name is an error. Adapters should call
    ``on_call(system, method, status)`` after every HTTP request (status 0: no response), which
    feeds the ``relbridge_api_calls`` metrics.
    """


@hookspec
def relbridge_transforms() -> Iterable[Transform]:
    """Return named value transforms usable in mapping files as ``transform = "<name>"``.

    Called once when mappings load. Names must be unique across plugins.
    """


@hookspec
def relbridge_webhook_schemes(config: Config) -> Iterable[WebhookScheme]:
    """Return the webhook signature schemes this plugin provides (``bridge.signatures.WebhookScheme``).

    Called once when the webhook receiver starts. Each scheme is served at
    ``POST /webhooks/<system>``: the receiver checks the size, then calls
    ``scheme.verify(secret, headers, body, now)`` on the raw bytes (raise
    ``SignatureRejected`` to refuse with a 401), then hands the JSON body to the adapter
    named ``system``. A scheme carries its secret (``None`` or empty: every delivery is
    refused). Two plugins providing a scheme for the same system is an error.
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


@hookspec
def relbridge_early_life_incident(release: Release, incident: Incident, deployed_at: datetime) -> None:
    """An incident caused by ``release`` was opened within ``[verify] early_life_days`` of
    the release's deployment at ``deployed_at`` (early-life support). Fires once per
    (release, incident), when the incident is first linked to the release; the incident is
    also flagged on the release (``release show``) and counted in the KPIs."""


# --- verification -------------------------------------------------------------------------------


@hookspec
def relbridge_verify_release(release: Release) -> list[Check]:
    """Verify that ``release`` was installed successfully; return one
    ``bridge.release.checks.Check`` per fact checked (``[]``: nothing to check).

    Called once per deployment, when the release enters ``deployed``, on a verification
    thread (never on a sync worker), after the built-in ``[[verify.checks]]``. All
    implementations together get ``[verify] plugin_timeout_seconds``; a verifier that raises
    or runs out of time counts as one failed check. A failed check marks the release as
    needing revision and, with ``[verify] on_failure = "rollback"``, rolls it back.
    """


# --- gate ---------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def relbridge_check_transition(release: Release, old: str, new: str, changes: list[ChangeRequest], source: str,
                               open_tasks: list[str]) -> Veto | None:
    """Decide whether ``release`` may move from ``old`` to ``new``; called before the move is persisted.

    firstresult: the first plugin returning a ``Veto`` stops the move; return None to allow.
    ``changes`` are the release's linked change requests as currently known. ``open_tasks``:
    when the move is a go-live (``deploying``/``deployed``), the release plan's open tasks
    of phases before "Deploy" (``"Prepare / Rehearse backout"``), else ``[]``.
    """


#: The 1:N notification hooks: each implementation is called on its own and one that raises
#: is logged, not passed on (``bridge.plugins.PluginManager``).
NOTIFICATIONS = frozenset({
    "relbridge_release_created", "relbridge_release_updated", "relbridge_release_state_changed",
    "relbridge_release_rescheduled", "relbridge_release_deployed", "relbridge_release_rolled_back",
    "relbridge_change_linked", "relbridge_incident_linked", "relbridge_conflict",
    "relbridge_sync_failed", "relbridge_early_life_incident",
})
