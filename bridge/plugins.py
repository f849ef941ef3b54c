"""The one place a plugin manager is built, and the typed facade core code calls hooks through.

Load order: hook specs, internal plugins, entry points (group ``relbridge``), then the
modules named in ``[plugins] modules``, then ``check_pending()`` so a misspelt hook name is
an error rather than a silently dead plugin. Plugins shipped with relbridge fail loudly if
they break; third-party plugins that fail to import are recorded in ``problems`` and skipped,
so read-only commands still work, while every command that writes to the systems refuses to
start on them (``bridge.preflight.refuse_broken_plugins``): a plugin may be the gate, and a
gate that did not load must never fail open.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from bridge import PROJECT_NAME, hookspecs
from bridge.errors import ConfigError

log = logging.getLogger(__name__)

#: Distribution whose entry points count as first-party (they must load).
FIRST_PARTY_DIST = "relbridge"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str
    source: str  # "entry point (dist)", "config module", "internal"
    hooks: tuple[str, ...]


@dataclass(frozen=True)
class LoadProblem:
    name: str
    error: str


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus what we learnt while loading (for ``relbridge plugins``)."""

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.sources: dict[str, str] = {}
        self.versions: dict[str, str] = {}
        self.problems: list[LoadProblem] = []


def make_plugin_manager(
    modules: Iterable[str] = (),
    disabled: Iterable[str] = (),
    *,
    entry_point_group: str | None = PROJECT_NAME,
    extra: Iterable[tuple[str, Any]] = (),
) -> PluginManager:
    """Build a fresh manager. ``extra`` registers (name, plugin) pairs directly (tests)."""
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    blocked = set(disabled)
    for name in blocked:
        pm.set_blocked(name)
    if entry_point_group:
        for ep in entry_points(group=entry_point_group):
            if ep.name not in blocked:
                _load_entry_point(pm, ep)
    for module_name in modules:
        if module_name not in blocked:
            _load_module(pm, module_name)
    for name, plugin in extra:
        pm.register(plugin, name=name)
        pm.sources[name] = "registered"
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigError(f"plugin {exc.plugin!r}: {exc}") from None
    return pm


def _load_entry_point(pm: PluginManager, ep: EntryPoint) -> None:
    dist = ep.dist.name if ep.dist else "?"
    first_party = dist == FIRST_PARTY_DIST
    try:
        plugin = ep.load()
        pm.register(plugin, name=ep.name)
    except Exception as exc:
        if first_party:
            raise
        log.warning("plugin %s (from %s) failed to load and is skipped: %s", ep.name, dist, exc)
        pm.problems.append(LoadProblem(ep.name, f"{type(exc).__name__}: {exc}"))
        return
    pm.sources[ep.name] = f"entry point ({dist})"
    if ep.dist:
        pm.versions[ep.name] = ep.dist.version


def _load_module(pm: PluginManager, module_name: str) -> None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(f"plugins.modules — no module named {module_name!r} (is it installed / on PYTHONPATH?)") from None
        log.warning("plugin module %s failed to import and is skipped: %s", module_name, exc)
        pm.problems.append(LoadProblem(module_name, f"{type(exc).__name__}: {exc}"))
        return
    except Exception as exc:
        log.warning("plugin module %s failed to import and is skipped: %s", module_name, exc)
        pm.problems.append(LoadProblem(module_name, f"{type(exc).__name__}: {exc}"))
        return
    if pm.is_registered(module):
        return
    pm.register(module, name=module_name)
    pm.sources[module_name] = "config module"


def describe(pm: PluginManager) -> list[PluginInfo]:
    """What ``relbridge plugins`` prints: each plugin, its version and the hooks it implements."""
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            continue
        hooks = tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or ()))
        version = pm.versions.get(name) or str(getattr(plugin, "__version__", "")) or "-"
        infos.append(PluginInfo(name, version, pm.sources.get(name, "internal"), hooks))
    return sorted(infos, key=lambda info: info.name)


class Hooks:
    """Typed facade over the hooks: the only way core code calls plugins.

    Notifications call each implementation on its own so that one plugin raising is logged
    and the others still hear about the event.
    """

    def __init__(self, pm: PluginManager) -> None:
        self.pm = pm

    def configure(self, config: Any) -> None:
        self.pm.hook.relbridge_configure(config=config)

    # contributions
    def adapters(self, config: Any, on_call: Any = None) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for batch in self.pm.hook.relbridge_adapters(config=config, on_call=on_call):
            for adapter in batch or ():
                if adapter.name in found:
                    raise ConfigError(f"two plugins provide an adapter named {adapter.name!r}")
                found[adapter.name] = adapter
        return found

    def transforms(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for batch in self.pm.hook.relbridge_transforms():
            for transform in batch or ():
                if transform.name in found:
                    raise ConfigError(f"two plugins provide a transform named {transform.name!r}")
                found[transform.name] = transform
        return found

    # gate
    def check_transition(self, release: Any, old: str, new: str, changes: list[Any], source: str) -> Any:
        return self.pm.hook.relbridge_check_transition(
            release=release, old=old, new=new, changes=changes, source=source
        )

    # notifications
    def wants(self, name: str) -> bool:
        """Whether any plugin implements ``relbridge_<name>`` (saves building its arguments)."""
        return bool(getattr(self.pm.hook, f"relbridge_{name}").get_hookimpls())

    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            try:
                impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except Exception:
                log.exception("plugin %s failed in %s", impl.plugin_name, hook_name)

    def release_created(self, release: Any, source: str) -> None:
        self._notify("relbridge_release_created", release=release, source=source)

    def release_updated(self, release: Any, changed: dict[str, tuple[Any, Any]], source: str) -> None:
        self._notify("relbridge_release_updated", release=release, changed=changed, source=source)

    def release_state_changed(self, release: Any, old: str, new: str, source: str) -> None:
        self._notify("relbridge_release_state_changed", release=release, old=old, new=new, source=source)

    def release_rescheduled(self, release: Any, old_end: Any, new_end: Any, source: str) -> None:
        self._notify("relbridge_release_rescheduled", release=release, old_end=old_end, new_end=new_end, source=source)

    def release_deployed(self, release: Any, source: str) -> None:
        self._notify("relbridge_release_deployed", release=release, source=source)

    def release_rolled_back(self, release: Any, source: str) -> None:
        self._notify("relbridge_release_rolled_back", release=release, source=source)

    def change_linked(self, change: Any, release: Any, source: str) -> None:
        self._notify("relbridge_change_linked", change=change, release=release, source=source)

    def incident_linked(self, incident: Any, change: Any, release: Any, source: str) -> None:
        self._notify("relbridge_incident_linked", incident=incident, change=change, release=release, source=source)

    def conflict(self, entity: str, key: str, field: str, values: dict[str, Any], resolution: str, winner: Any) -> None:
        self._notify("relbridge_conflict", entity=entity, key=key, field=field, values=values, resolution=resolution, winner=winner)

    def sync_failed(self, system: str, entity: str, id: str, error: Exception, permanent: bool) -> None:
        self._notify("relbridge_sync_failed", system=system, entity=entity, id=id, error=error, permanent=permanent)
