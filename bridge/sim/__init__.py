"""ServiceNow and Jira API simulators: real loopback HTTP servers for tests, demos and benches.

`start_simulators()` starts both in background threads (a context manager, for tests);
`run_simulators()` is what `relbridge sim` runs in the foreground until SIGINT/SIGTERM.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from bridge.sim.control import SimControl
from bridge.sim.server import RunningServer, start_in_thread
from bridge.sim.servicenow import ServiceNowSim, create_servicenow_app
from bridge.sim.webhooks import WebhookSender

if TYPE_CHECKING:
    from bridge.sim.jira import JiraSim

log = logging.getLogger(__name__)

# The Jira simulator is optional so the ServiceNow one works on its own. A Jira module that
# exists but fails to import is reported (log + `relbridge sim` output), never hidden.
JIRA_UNAVAILABLE = ""
try:
    from bridge.sim.jira import create_jira_app
except ImportError as exc:  # pragma: no cover - depends on which simulators are present
    create_jira_app = None
    if exc.name != "bridge.sim.jira":
        JIRA_UNAVAILABLE = f"{type(exc).__name__}: {exc}"
        log.warning("Jira simulator unavailable: %s", JIRA_UNAVAILABLE)

SEEDS = ("demo", "empty")
JIRA_FLAVORS = ("cloud", "server")

__all__ = ["SEEDS", "JIRA_FLAVORS", "Simulators", "start_simulators", "run_simulators"]


def jira_error_body(status: int) -> dict[str, Any]:
    """Jira's error envelope, used for injected faults unless the Jira app installs its own."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    return {"errorMessages": [reason], "errors": {}}


@dataclass
class Simulators:
    """Both running simulators. The `servicenow` / `jira` objects are the in-process state."""

    servicenow: ServiceNowSim
    servicenow_server: RunningServer
    servicenow_webhooks: WebhookSender
    jira: JiraSim | None = None
    jira_server: RunningServer | None = None
    jira_webhooks: WebhookSender | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def servicenow_url(self) -> str:
        return self.servicenow_server.url

    @property
    def jira_url(self) -> str | None:
        return self.jira_server.url if self.jira_server else None

    def stop(self) -> None:
        """Stop the servers, persist state files, then finish pending webhook deliveries."""
        if self._stopped:
            return
        self._stopped = True
        servers = [s for s in (self.servicenow_server, self.jira_server) if s is not None]
        for server in servers:
            server.request_stop()  # both shut down at once; each takes ~0.2 s
        for server in servers:
            server.stop()
        self.servicenow.save()
        if self.jira is not None:
            self.jira.save()
        for sender in (self.servicenow_webhooks, self.jira_webhooks):
            if sender is not None:
                sender.close()

    def __enter__(self) -> Simulators:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _state_path(state_file: str | Path | None, system: str) -> Path | None:
    """One state file per simulator, derived from the given name (`x.json` -> `x.servicenow.json`)."""
    if state_file is None:
        return None
    path = Path(state_file)
    return path.with_name(f"{path.stem}.{system}{path.suffix or '.json'}")


def start_simulators(
    *,
    servicenow_port: int = 0,
    jira_port: int = 0,
    jira_flavor: str = "cloud",
    latency_ms: int = 0,
    seed: str = "demo",
    state_file: str | Path | None = None,
    host: str = "127.0.0.1",
) -> Simulators:
    """Start the ServiceNow (and, when available, Jira) simulators; return once both serve.

    Port 0 picks a free port. `state_file` names a JSON file; each simulator keeps its own
    file next to it (`<stem>.servicenow.json`, `<stem>.jira.json`) so data survives restarts.
    """
    if seed not in SEEDS:
        raise ValueError(f"seed must be one of {', '.join(SEEDS)}, not {seed!r}")
    if jira_flavor not in JIRA_FLAVORS:
        raise ValueError(f"jira_flavor must be one of {', '.join(JIRA_FLAVORS)}")
    if latency_ms < 0:
        raise ValueError("latency_ms must not be negative")

    sn_webhooks = WebhookSender()
    try:
        servicenow = create_servicenow_app(
            seed=seed,
            latency_ms=latency_ms,
            control=SimControl(latency_ms=latency_ms),
            webhooks=sn_webhooks,
            state_file=_state_path(state_file, "servicenow"),
        )
        sn_server = start_in_thread(servicenow.app, host, servicenow_port)
    except BaseException:
        sn_webhooks.close()
        raise
    sims = Simulators(servicenow=servicenow, servicenow_server=sn_server,
                      servicenow_webhooks=sn_webhooks)
    if create_jira_app is None:
        return sims
    try:
        sims.jira_webhooks = WebhookSender()
        control = SimControl(jira_error_body, latency_ms=latency_ms)
        sims.jira = create_jira_app(
            flavor=jira_flavor,
            seed=seed,
            latency_ms=latency_ms,
            control=control,
            webhooks=sims.jira_webhooks,
            state_file=_state_path(state_file, "jira"),
        )
        app = sims.jira.app
        if getattr(app, "sim_control", None) is not control:
            app = control.middleware(app)
        sims.jira_server = start_in_thread(app, host, jira_port)
    except BaseException:
        sims.stop()
        raise
    return sims


def run_simulators(*, out: TextIO = sys.stdout, **options: Any) -> None:
    """Start both simulators, print their base URLs, serve until SIGINT/SIGTERM, stop cleanly."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with start_simulators(**options) as sims:
            print(f"ServiceNow simulator: {sims.servicenow_url}", file=out)
            if sims.jira_url:
                print(f"Jira simulator:       {sims.jira_url}", file=out)
            else:
                reason = f" ({JIRA_UNAVAILABLE})" if JIRA_UNAVAILABLE else ""
                print(f"Jira simulator:       not available{reason}", file=out)
            print("Press Ctrl+C to stop.", file=out, flush=True)
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
