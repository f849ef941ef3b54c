"""Screenshots of every console page for the README (docs/img/console-*.png).

    python bench/screenshots.py            # needs Chromium (apt-get install chromium)

Seeds a temporary SQLite store (bench/_records.py: 300 releases over eight months, with
conflicts, a held write and dead letters), serves the daemon's receiver app with the
console on a free port, and has headless Chromium photograph each page.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _records import seed_console_extras, seed_records  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "img"
PAGES = {"releases": "/ui/", "release": "/ui/releases/RLSE0000007", "kpi": "/ui/kpi",
         "conflicts": "/ui/conflicts", "held": "/ui/held", "dlq": "/ui/dlq"}


def main() -> None:
    from bridge.config import Config, SyncConfig
    from bridge.daemon.inbox import Inbox
    from bridge.daemon.metrics import Metrics
    from bridge.daemon.receiver import create_app
    from bridge.daemon.service import ReceiverServer
    from bridge.reports.console import create_console
    from bridge.runtime import Runtime

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no Chromium found: apt-get install chromium")
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        config = Config.model_validate({"store": {"url": f"sqlite:///{folder}/s.db"}, "console": {"enabled": True}})
        runtime = Runtime(config)
        seed_records(runtime.store, 300, months=8)
        seed_console_extras(runtime.store)
        console = create_console(runtime, config.console, first_wait=120)  # pictures of figures, not of waiting
        app = create_app(inbox=Inbox.from_config(runtime.store, SyncConfig()), adapters={}, config=config.webhooks,
                         schemes={}, metrics=Metrics(), console=console)
        server = ReceiverServer(app, f"127.0.0.1:{port}")
        server.start()
        try:
            for name, path in PAGES.items():
                target = OUT / f"console-{name}.png"
                subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                "--window-size=1280,900", f"--screenshot={target}", f"{server.url}{path}"],
                               capture_output=True, timeout=90, check=True)
                print(f"wrote {target}")
        finally:
            server.stop(5)
            console.state.console.close()
            runtime.close()


if __name__ == "__main__":
    main()
