"""``relbridge run``: pollers, workers and the webhook receiver in one process.

* **Pollers** (``bridge.daemon.poll``), one per (system, entity), list what changed every
  ``[sync] interval_seconds`` under a store lease, so with several instances on one
  PostgreSQL store each stream is polled by one of them at a time.
* **The receiver** (``bridge.daemon.receiver``) runs on uvicorn at ``[webhooks] bind`` in a
  thread; it verifies deliveries and puts their hints in the inbox.
* **Workers** (``bridge.daemon.work``), ``[sync] workers`` threads, claim events from the
  durable inbox and sync each object through ``Engine.process``.

Everything a component accepts goes through the inbox in the store, so a crash (even
``kill -9``) loses nothing: unfinished claims expire and are taken again. SIGTERM/SIGINT
stop intake (receiver, pollers), let in-flight events finish, and exit 0 within
``SHUTDOWN_SECONDS``; an event still running then is left claimable.

* **The store watch** (``bridge.daemon.watch``) writes a heartbeat row, makes the daemon
  not ready while the store fails and stops it (exit 1, a line naming the store) when the
  failure lasts, or at once when SQLite's files stop being writable.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from bridge import hookimpl
from bridge.config import CLAIM_LEASE_SECONDS
from bridge.daemon.inbox import Inbox
from bridge.daemon.logs import LogFormat, configure_logging
from bridge.daemon.metrics import Metrics
from bridge.daemon.poll import Poller, Sweeper
from bridge.daemon.watch import STORE_FAILURE_SECONDS, StoreWatch
from bridge.daemon.work import ClaimKeeper, Doorbell, InFlight, Worker
from bridge.engine import ENTITY_ORDER
from bridge.errors import ConfigError
from bridge.model import SYSTEMS
from bridge.retry import RetryPolicy

if TYPE_CHECKING:
    from bridge.reports.console import Console
    from bridge.runtime import Runtime

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 9.0  # the process is gone within 10 s of a signal
RECEIVER_START_SECONDS = 10.0


def default_instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class ReadinessChecks:
    """``/readyz``: the store takes a write (``store_probe``, the heartbeat: a store that
    answers reads but refuses writes is not ready) and both systems accept our
    credentials. System checks cost an API call, so their answers are cached (a success
    for ``ttl`` seconds, a failure for ``retry_ttl``)."""

    def __init__(self, runtime: Runtime, store_probe: Callable[[], str | None], *,
                 ttl: float = 60.0, retry_ttl: float = 5.0) -> None:
        self.runtime = runtime
        self.store_probe = store_probe
        self.ttl = ttl
        self.retry_ttl = retry_ttl
        self._lock = threading.Lock()
        self._checked: dict[str, tuple[float, str | None]] = {}

    def __call__(self) -> dict[str, str | None]:
        """``{"store": None | problem, "<system>": None | problem}`` (None: ok), as the
        receiver's ``/readyz`` expects."""
        checks: dict[str, str | None] = {"store": self.store_probe()}
        for name, adapter in sorted(self.runtime.adapters.items()):
            checks[name] = self._system(name, adapter)
        return checks

    def problems(self) -> list[str]:
        """What is not ready, one line each; [] when ready."""
        return [f"{name}: {problem}" for name, problem in self().items() if problem]

    def _system(self, name: str, adapter: Any) -> str | None:
        with self._lock:
            checked_at, problem = self._checked.get(name, (float("-inf"), None))
            age = time.monotonic() - checked_at
            if age < (self.ttl if problem is None else self.retry_ttl):
                return problem
        try:
            adapter.check_auth()
            problem = None
        except Exception as exc:
            problem = str(exc) or type(exc).__name__
        with self._lock:
            self._checked[name] = (time.monotonic(), problem)
        return problem


class _MetricsPlugin:
    """Counts conflicts through the ``relbridge_conflict`` hook, like any plugin would."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    @hookimpl
    def relbridge_conflict(self, entity: str) -> None:
        self.metrics.conflicts.labels(entity).inc()


class ReceiverServer:
    """The webhook ASGI app served by uvicorn on a background thread."""

    def __init__(self, app: Any, bind: str) -> None:
        import uvicorn

        host, _, port = bind.rpartition(":")
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(app, host=host.strip("[]"), port=int(port), log_config=None,
                                lifespan="off", access_log=False, timeout_graceful_shutdown=3)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._serve, name="receiver", daemon=True)
        self.error: BaseException | None = None

    def _serve(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # uvicorn exits with SystemExit when it cannot bind
            self.error = exc

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + RECEIVER_START_SECONDS
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"webhooks.bind — cannot listen on {self.url.removeprefix('http://')} "
                                  "(address in use or not available?)")
            time.sleep(0.02)

    def stop(self, timeout: float) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


class Daemon:
    """The running service. ``start()`` returns once everything runs; ``stop()`` winds
    down; ``run_forever()`` does both around SIGTERM/SIGINT."""

    def __init__(self, runtime: Runtime, *, metrics: Metrics, instance_id: str,
                 claim_lease_seconds: float = CLAIM_LEASE_SECONDS,
                 retry_policy: RetryPolicy | None = None,
                 store_failure_seconds: float = STORE_FAILURE_SECONDS) -> None:
        self.runtime = runtime
        self.config = runtime.config
        self.metrics = metrics
        self.instance_id = instance_id
        self.claim_lease_seconds = claim_lease_seconds
        self.retry_policy = retry_policy or RetryPolicy()
        self.stopping = threading.Event()
        self.doorbell = Doorbell()
        self.in_flight = InFlight()
        self.inbox = Inbox.from_config(runtime.store, self.config.sync)
        self.store_failure_seconds = store_failure_seconds
        self.store_watch: StoreWatch | None = None
        self.readiness = ReadinessChecks(runtime, self._store_problem)
        self.receiver: ReceiverServer | None = None
        self.console: Console | None = None  # when [console] enabled
        self.pollers: list[Poller] = []
        self._threads: dict[str, list[threading.Thread]] = {"pollers": [], "workers": []}
        self._keeper: ClaimKeeper | None = None
        self._keeper_thread: threading.Thread | None = None
        self._watch_thread: threading.Thread | None = None
        self._started = False

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError("daemon already started")
        self._started = True
        self.runtime.on_api_call = self.metrics.api_call
        engine = self.runtime.engine  # builds plugins, mappings, adapters: config errors surface here
        engine.on_veto = lambda key: self.metrics.vetoes.inc()
        # The daemon has no passes: its destructive writes are bounded per [safety] window_seconds.
        engine.brake.use_window()
        self.runtime.plugin_manager.register(_MetricsPlugin(self.metrics), name="relbridge-daemon-metrics")
        log.info("relbridge daemon %s starting: %d workers, polling every %ss", self.instance_id,
                 self.config.sync.workers, self.config.sync.interval_seconds)
        self._start_store_watch()
        self._start_workers()
        engine.verifier.resume()  # deployment verifications a crash or a stop cut short
        self.receiver = self._make_receiver()
        try:
            self.receiver.start()
        except BaseException:
            self.stop(timeout=2)
            raise
        log.info("webhook receiver listening on %s", self.receiver.url)
        self._start_pollers()

    def stop(self, timeout: float = SHUTDOWN_SECONDS) -> bool:
        """Stop intake, let in-flight events finish, give leases up. True when everything
        stopped in time; otherwise the events still running stay claimed until their
        lease expires, then another worker takes them."""
        deadline = time.monotonic() + timeout
        log.info("stopping: %d event(s) in flight", len(self.in_flight))
        self.stopping.set()
        self.doorbell.ring()
        if self.receiver is not None:
            self.receiver.stop(min(4.0, _left(deadline)))
        if self.console is not None:
            self.console.close()  # its builder process; a build under way is derived data
        for group in ("pollers", "workers"):
            for thread in self._threads[group]:
                thread.join(_left(deadline))
        if self._keeper is not None and self._keeper_thread is not None:
            self._keeper.halt.set()
            self._keeper_thread.join(_left(deadline))
        if self.store_watch is not None:
            self.store_watch.halt.set()
            self.store_watch.wake()
            if self._watch_thread is not None:
                self._watch_thread.join(_left(deadline))
            self.store_watch.give_up_heartbeat()
            self.store_watch.close()
        unfinished = len(self.in_flight)
        if unfinished:
            log.warning("stopped with %d event(s) unfinished; they are retried after their claim expires",
                        unfinished)
        else:
            log.info("stopped")
        return unfinished == 0

    def run_forever(self, *, shutdown_seconds: float = SHUTDOWN_SECONDS) -> int:
        """Run until SIGTERM or SIGINT; exit code 0 after a clean or timed-out shutdown."""
        requested = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("received %s", signal.Signals(signum).name)
            requested.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not requested.wait(0.5):
                if self.receiver is not None and not self.receiver.thread.is_alive():
                    log.error("webhook receiver stopped unexpectedly: %s", self.receiver.error)
                    self.stop(shutdown_seconds)
                    return 1
                if self.store_watch is not None and self.store_watch.fatal is not None:
                    log.error("%s", self.store_watch.fatal)
                    self.stop(shutdown_seconds)
                    return 1
            self.stop(shutdown_seconds)
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @property
    def store_fenced(self) -> bool:
        """True when the store's files must not be touched again (see ``bridge.daemon.watch``)."""
        return self.store_watch is not None and self.store_watch.fenced is not None

    # -- parts -----------------------------------------------------------------------------

    def _start_store_watch(self) -> None:
        """Refuse a store that cannot be written, then watch it (``bridge.daemon.watch``)."""
        watch = StoreWatch(self.runtime.store, self.metrics, holder=self.instance_id,
                           give_up_after=self.store_failure_seconds)
        try:
            watch.check_start()
        except BaseException:
            watch.close()
            raise
        self.store_watch = watch
        self._watch_thread = self._spawn("store-watch", watch.run)

    def _store_problem(self) -> str | None:
        if self.store_watch is None:
            return "the daemon has not started"
        return self.store_watch.probe()

    def _start_workers(self) -> None:
        self._keeper = ClaimKeeper(self.inbox, self.in_flight, claim_lease_seconds=self.claim_lease_seconds)
        self._keeper_thread = self._spawn("claim-keeper", self._keeper.run)
        for n in range(self.config.sync.workers):
            worker = Worker(f"{self.instance_id}/w{n}", self.runtime.engine, self.inbox, self.runtime.hooks,
                            self.metrics, policy=self.retry_policy, in_flight=self.in_flight,
                            stopping=self.stopping, doorbell=self.doorbell,
                            claim_lease_seconds=self.claim_lease_seconds)
            self._threads["workers"].append(self._spawn(f"worker-{n}", worker.run))

    def _start_pollers(self) -> None:
        engine = self.runtime.engine
        for entity in ENTITY_ORDER:
            for system in SYSTEMS:
                poller = Poller(engine, self.inbox, self.metrics, system, entity, holder=self.instance_id,
                                interval=self.config.sync.interval_seconds, stopping=self.stopping,
                                on_enqueued=self.doorbell.ring, policy=self.retry_policy,
                                reconcile_interval=self.config.sync.reconcile_interval_seconds)
                self.pollers.append(poller)
                self._threads["pollers"].append(self._spawn(f"poll-{system}-{entity}", poller.run))
        sweeper = Sweeper(engine, self.inbox, self.metrics, holder=self.instance_id,
                          interval=self.config.sync.interval_seconds, min_age=self.claim_lease_seconds,
                          stopping=self.stopping, on_enqueued=self.doorbell.ring, policy=self.retry_policy)
        self._threads["pollers"].append(self._spawn("sweep-unfinished", sweeper.run))

    def _make_receiver(self) -> ReceiverServer:
        from bridge.daemon.receiver import create_app

        console = None
        if self.config.console.enabled:
            from bridge.reports.console import create_console

            console = create_console(self.runtime, self.config.console)
            self.console = console.state.console
        app = create_app(inbox=_RingingInbox(self.inbox, self.doorbell.ring_one), adapters=self.runtime.adapters,
                         config=self.config.webhooks, schemes=self.runtime.hooks.webhook_schemes(self.runtime.config),
                         metrics=self.metrics, ready=self.readiness, console=console)
        return ReceiverServer(app, self.config.webhooks.bind)

    @staticmethod
    def _spawn(name: str, target: Callable[[], None]) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread


class _RingingInbox:
    """The inbox as the receiver sees it: each event it accepts also wakes an idle worker."""

    def __init__(self, inbox: Inbox, ring: Callable[[], None]) -> None:
        self._inbox = inbox
        self._ring = ring

    def enqueue(self, *args: Any, **kwargs: Any) -> bool:
        accepted = self._inbox.enqueue(*args, **kwargs)
        if accepted:
            self._ring()
        return accepted

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inbox, name)


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def run(runtime: Runtime, *, log_format: LogFormat | None = None, instance_id: str | None = None,
        metrics: Metrics | None = None, claim_lease_seconds: float | None = None) -> int:
    """``relbridge run``: configure logging (``log_format`` or ``[log] format``), run the
    daemon until SIGTERM/SIGINT, close the runtime; returns the exit code."""
    configure_logging(runtime.config, log_format or runtime.config.log.format)
    faulthandler.enable()  # a fatal signal (SIGBUS, SIGSEGV) still leaves its traceback in the log
    daemon = Daemon(runtime, metrics=metrics or Metrics(), instance_id=instance_id or default_instance_id(),
                    claim_lease_seconds=claim_lease_seconds or runtime.config.sync.claim_lease_seconds)
    try:
        code = daemon.run_forever()
    except BaseException:
        runtime.close()
        raise
    if daemon.store_fenced:
        # Closing SQLite's connections would checkpoint, writing the -shm file that can no
        # longer be written (SIGBUS). Nothing is lost by leaving now: the inbox is durable.
        logging.shutdown()
        os._exit(code or 1)
    runtime.close()
    return code
