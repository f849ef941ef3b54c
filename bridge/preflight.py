"""What ``relbridge sync`` and ``relbridge run`` check before their first write (DESIGN §10).

Fail closed: each of these stops the command with one clear line, before anything is
written to either system —

* a plugin that failed to load (it may be the authorization gate: a gate that did not load
  would let every go-live through), exit 2;
* a store that does not answer, exit 1 (``StoreUnavailable``, raised when it is opened);
  a SQLite store whose files cannot be written, exit 2;
* a system that does not answer or refuses our credentials, exit 1;
* a mapping that names an object, field or choice the live system does not have, exit 2
  with the file, the dotted key and a did-you-mean. Without this a misspelt field simply
  stops syncing while ``sync`` exits 0.

The live mapping check reads each system's metadata (a few calls per mapped table). A pass
is remembered in the store (table ``mapping_checks``), one row per system keyed by a
fingerprint of the mapping file's text, the system's settings (and the plugins' own sections,
which may name what the check looks up: a survey question) and the relbridge version,
so a restart with the same mapping costs one cheap call per system (``check_auth``, which
still proves the system answers) instead of a metadata read. A changed mapping file, url
or relbridge version checks again, and so does a pass older than ``CHECK_MAX_AGE``, so a
field deleted in a live system is noticed within a day.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select

from bridge import __version__
from bridge.config import Config
from bridge.errors import ConfigError, MappingError, SyncFailure
from bridge.model import System
from bridge.plugins import PluginManager
from bridge.store import schema
from bridge.store.files import sqlite_files, unwritable
from bridge.store.statements import upsert

if TYPE_CHECKING:
    from bridge.runtime import Runtime
    from bridge.store import Store

log = logging.getLogger(__name__)

#: A remembered pass is trusted this long; then the next start reads metadata again.
CHECK_MAX_AGE = timedelta(hours=24)

T = TypeVar("T")


def check_before_writing(rt: Runtime, *, dry_run: bool = False) -> list[str]:
    """Run every start-up check for ``rt``; returns warnings (mapped choices the system has
    more of), raises ``ConfigError``/``MappingError`` (exit 2) or ``SyncFailure`` (exit 1).

    ``dry_run``: the store is left alone (a dry run leaves no trace and may come before the
    first sync, when there is no store yet), so the live check always reads metadata."""
    refuse_broken_plugins(rt.plugin_manager)
    store = None if dry_run else rt.store
    if store is not None and (problem := unwritable(sqlite_files(store))):
        raise ConfigError(f"store.url — the store at {store.url} cannot be written: {problem}")
    warnings: list[str] = []
    for system in (s.value for s in System):
        warnings += check_system(rt, store, system)
    for line in warnings:
        log.warning("%s", line)
    return warnings


def refuse_broken_plugins(pm: PluginManager) -> None:
    """Commands that write stop here when any plugin failed to load."""
    if not pm.problems:
        return
    failed = "; ".join(f"{p.name!r}: {p.error}" for p in pm.problems)
    raise ConfigError(
        f"plugin failed to load ({failed}); relbridge does not write without it — fix or "
        "install it, or name it in [plugins] disabled if it is meant to be off"
    )


def check_system(rt: Runtime, store: Store | None, system: str) -> list[str]:
    """Reachability and the live mapping check for one system; the warnings it found.
    Without a ``store`` nothing is remembered or looked up."""
    adapter = rt.adapters.get(system)
    if adapter is None:
        raise ConfigError(f"no adapter for {system}: is its plugin named in [plugins] disabled?")
    mapping = rt.mappings.for_system(system)
    stamp = fingerprint(system, rt.mappings.sources.get(system, ""), getattr(rt.config, system, None),
                        plugin_settings(rt.config))
    if store is not None and _passed(store, system, stamp, store.clock()):
        _reach(adapter.check_auth)
        return []
    live = mapping.live_check(_reach(adapter.metadata))
    if live.missing:
        raise MappingError(
            f"{system}: the mapping names what the live system does not have (nothing was "
            "written; fix the mapping or the system, then start again):\n  "
            + "\n  ".join(live.missing)
        )
    if store is not None:
        _remember(store, system, stamp, store.clock())
    return live.unmapped


def fingerprint(system: str, mapping_text: str, section: Any, plugins: str = "") -> str:
    """What a remembered pass depends on: the mapping, the system's settings (url, user,
    projects, …; secrets appear masked), the plugins' sections and the code that reads
    metadata."""
    settings = section.model_dump_json() if hasattr(section, "model_dump_json") else ""
    material = json.dumps([system, mapping_text, settings, plugins, __version__])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def plugin_settings(config: Any) -> str:
    """The sections plugins declared, as JSON (secrets masked): "" when there are none."""
    names = sorted(set(type(config).model_fields) - set(Config.model_fields))
    return json.dumps({name: getattr(config, name).model_dump(mode="json") for name in names}) if names else ""


def _reach(call: Callable[[], T]) -> T:
    """``call()``; a system that does not answer (or refuses us) stops the start, exit 1."""
    try:
        return call()
    except SyncFailure as exc:
        raise SyncFailure(f"start refused, nothing was written: {exc}") from None


def _passed(store: Store, system: str, stamp: str, now: datetime) -> bool:
    table = schema.mapping_checks
    with store.begin(write=False) as conn:
        row = conn.execute(select(table).where(table.c.system == system)).first()
    return row is not None and row.fingerprint == stamp and now - row.checked_at < CHECK_MAX_AGE


def _remember(store: Store, system: str, stamp: str, now: datetime) -> None:
    table = schema.mapping_checks
    statement = upsert(store.dialect, table).values(system=system, fingerprint=stamp, checked_at=now)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.system], set_={"fingerprint": stamp, "checked_at": now}
    )
    with store.begin() as conn:
        conn.execute(statement)

