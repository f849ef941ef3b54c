"""Wires configuration, plugins, mappings, adapters and the store into one object.

The CLI, the daemon and the demo all start from a ``Runtime``; each piece is built on
first use so that, say, ``relbridge mappings check --offline`` never opens the store or
talks to a system.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from bridge.adapter import OnCall
from bridge.config import Config, plugin_manager_sections, with_sections
from bridge.plugins import Hooks, PluginManager, make_plugin_manager

if TYPE_CHECKING:
    from bridge.engine import Engine
    from bridge.mapping.loader import Mappings
    from bridge.store import Store


class Runtime:
    def __init__(self, config: Config, *, extra_plugins: list[tuple[str, Any]] | None = None) -> None:
        self.config = config
        self._extra_plugins = extra_plugins or []
        # Set by the daemon to count API calls in its metrics; adapters call it after each request.
        self.on_api_call: OnCall | None = None

    @cached_property
    def plugin_manager(self) -> PluginManager:
        """The manager ``load_config`` built to find the plugins' sections, or a new one (a
        config built in code, or plugins registered in code). Either way the config then
        has every section the plugins declare."""
        pm = self.config.plugin_manager
        if pm is None or self._extra_plugins:
            pm = make_plugin_manager(
                self.config.plugins.modules, self.config.plugins.disabled, extra=self._extra_plugins
            )
            self.config = with_sections(self.config, plugin_manager_sections(pm))
        return pm

    @cached_property
    def hooks(self) -> Hooks:
        hooks = Hooks(self.plugin_manager)
        hooks.configure(self.config)
        return hooks

    @cached_property
    def mappings(self) -> Mappings:
        from bridge.mapping.loader import load_mappings

        return load_mappings(
            self.config.mappings.servicenow,
            self.config.mappings.jira,
            timezone=self.config.jira.timezone,
            transforms=self.hooks.transforms(),
        )

    @cached_property
    def adapters(self) -> dict[str, Any]:
        return self.hooks.adapters(self.config, on_call=self._api_call)

    def _api_call(self, system: str, method: str, status: int) -> None:
        if self.on_api_call is not None:
            self.on_api_call(system, method, status)

    @cached_property
    def store(self) -> Store:
        from bridge.store import Store

        store = Store(self.config.store.url)
        store.migrate()
        return store

    @cached_property
    def engine(self) -> Engine:
        from bridge.engine import Engine

        return Engine(self.store, self.mappings, self.adapters, self.hooks, self.config)

    def close(self) -> None:
        engine = self.__dict__.get("engine")
        if engine is not None:  # verifications it started finish (or time out) first
            engine.finish_release_work()
        store = self.__dict__.get("store")
        if store is not None:
            store.close()
