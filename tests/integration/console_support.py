"""A receiver app with the console mounted, over a store seeded with releases, history,
conflicts, a held write and dead letters (bench/_records.py), for the console's tests."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from bridge.config import Config, SyncConfig
from bridge.daemon.inbox import Inbox
from bridge.daemon.metrics import Metrics
from bridge.daemon.receiver import create_app
from bridge.reports.console import Console, create_console
from bridge.runtime import Runtime

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _records import record_data, seed_console_extras, seed_records  # noqa: E402

#: Names a person might type that must be shown as text, never run or parsed as markup.
HOSTILE_NAMES = {
    "RLSE8888881": "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">",
    "RLSE8888882": "<script>document.body.setAttribute('data-pwned','1')</script>",
}


@dataclass
class ConsoleSite:
    runtime: Runtime
    app: Any
    console_app: Any

    def client(self, **kwargs: Any) -> TestClient:
        return TestClient(self.app, **kwargs)

    @property
    def console(self) -> Console:
        return self.console_app.state.console  # type: ignore[no-any-return]

    def close(self) -> None:
        self.console.close()
        self.runtime.close()


def console_site(store_url: str, *, releases: int = 60, console: dict[str, Any] | None = None,
                 kpi: dict[str, Any] | None = None, **options: Any) -> ConsoleSite:
    """The daemon's receiver app (real mount at /ui) over a freshly seeded store. Its
    pages wait for their first build (the builder process starts, then a small store's views
    take well under a second): these
    tests read figures; test_console_freshness covers what a page shows before them.
    ``options`` go to ``create_console``."""
    config = Config.model_validate({"store": {"url": store_url}, "console": {"enabled": True, **(console or {})},
                                    "kpi": kpi or {}})
    runtime = Runtime(config)
    seed_records(runtime.store, releases, months=6)
    seed_console_extras(runtime.store)
    for key, name in HOSTILE_NAMES.items():
        runtime.store.put_record("release", key, record_data({"name": name, "state": "planned"}))
    console_app = create_console(runtime, config.console, **{"first_wait": 60, **options})
    app = create_app(inbox=Inbox.from_config(runtime.store, SyncConfig()), adapters={}, config=config.webhooks,
                     schemes={}, metrics=Metrics(), console=console_app)
    return ConsoleSite(runtime, app, console_app)
