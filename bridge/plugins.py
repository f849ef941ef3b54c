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

import functools
import importlib
import logging
from collections.abc import Callable, Iterable
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
    """pluggy's manager plus what we learnt while loading (for ``relbridge plugins``).

    Registering a plugin guards its notification implementations: one that raises is logged
    and the call goes on to the next plugin, so a broken plugin never stops the sync nor
    keeps the others from hearing about the event. Wrappers are left as they are.
    """

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.sources: dict[str, str] = {}
        self.versions: dict[str, str] = {}
        self.problems: list[LoadProblem] = []

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        plugin_name = super().register(plugin, name)
        if plugin_name is None:  # blocked
            return None
        for caller in self.get_hookcallers(plugin) or ():
            if caller.name not in hookspecs.NOTIFICATIONS:
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not (impl.wrapper or impl.hookwrapper):
                    impl.function = _logged(impl.function, plugin_name, caller.name)
        return plugin_name


def _logged(function: Callable[..., Any], plugin_name: str, hook_name: str) -> Callable[..., Any]:
    """``function``, with an exception logged instead of raised (see ``PluginManager``)."""

    @functools.wraps(function)
    def guarded(*args: Any) -> Any:
        try:
            return function(*args)
        except Exception:
            log.exception("plugin %s failed in %s", plugin_name, hook_name)
            return None

    return guarded


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


def collect(what: str, batches: Iterable[Any], *, key: str = "name", named: bool = True) -> dict[str, Any]:
    """One dict of the contributions a hook returned, by name; a name given twice is an error.

    ``batches`` holds one iterable per plugin (None: nothing); each item has ``key`` as its
    name, or is a ``(name, item)`` pair when ``named`` is False.
    """
    found: dict[str, Any] = {}
    for batch in batches:
        for item in batch or ():
            name, value = (getattr(item, key), item) if named else item
            if name in found:
                raise ConfigError(f"two plugins provide {what} named {name!r}")
            found[name] = value
    return found


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

    Every call goes through pluggy (``pm.hook.<name>``), so ``wrapper=True``
    implementations and pluggy's tracing see it. Contribution hooks (adapters, transforms,
    config sections, webhook schemes) are gathered by one collector: each contribution has
    a name, and two with the same name are an error.
    """

    #: Whether notifications reach plugins and the release process acts on them (verifying
    #: a deployment); off for a dry run, which must neither notify nor act.
    notifying = True

    def __init__(self, pm: PluginManager) -> None:
        self.pm = pm

    def configure(self, config: Any) -> None:
        self.pm.hook.relbridge_configure(config=config)

    # contributions
    def adapters(self, config: Any, on_call: Any = None) -> dict[str, Any]:
        return collect("an adapter", self.pm.hook.relbridge_adapters(config=config, on_call=on_call))

    def transforms(self) -> dict[str, Any]:
        return collect("a transform", self.pm.hook.relbridge_transforms())

    def config_sections(self) -> dict[str, Any]:
        return collect("a config section", (
            [(name, model) for name, model in (batch or {}).items()]
            for batch in self.pm.hook.relbridge_config_sections()), named=False)

    def webhook_schemes(self, config: Any) -> dict[str, Any]:
        return collect("a webhook scheme", self.pm.hook.relbridge_webhook_schemes(config=config),
                       key="system")

    # gate
    def check_transition(self, release: Any, old: str, new: str, changes: list[Any], source: str,
                         open_tasks: list[str] | None = None) -> Any:
        return self.pm.hook.relbridge_check_transition(
            release=release, old=old, new=new, changes=changes, source=source, open_tasks=open_tasks or []
        )

    def verify_release(self, release: Any) -> list[Any]:
        """Every plugin's checks for a deployed release, flattened (see the hookspec)."""
        return [check for batch in self.pm.hook.relbridge_verify_release(release=release) for check in batch or ()]

    # notifications
    def wants(self, name: str) -> bool:
        """Whether any plugin implements ``relbridge_<name>`` (saves building its arguments)."""
        return bool(getattr(self.pm.hook, f"relbridge_{name}").get_hookimpls())

    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        # Implementations are guarded one by one at registration; this catches a wrapper
        # that raises, which must not stop the sync either.
        try:
            getattr(self.pm.hook, hook_name)(**kwargs)
        except Exception:
            log.exception("a plugin wrapper failed in %s", hook_name)
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

    def early_life_incident(self, release: Any, incident: Any, deployed_at: Any) -> None:
        self._notify("relbridge_early_life_incident", release=release, incident=incident, deployed_at=deployed_at)

    def sync_failed(self, system: str, entity: str, id: str, error: Exception, permanent: bool) -> None:
        self._notify("relbridge_sync_failed", system=system, entity=entity, id=id, error=error, permanent=permanent)
