"""The daemon's watch on its store: a heartbeat write, SQLite's files, and what a failing
store does to the daemon.

Why a write: a store can answer reads and refuse every write (a read-only PostgreSQL
replica after a fail-over, a full disk, a SQLite file whose permissions changed), and then
``SELECT 1`` says "ready" while every webhook gets a 503. So readiness and the watch both
*write*: they renew this instance's heartbeat row (a lease named ``heartbeat/<instance>``).

What happens when the store fails:

* every failed statement, from any part of the daemon, is counted in
  ``relbridge_store_errors_total`` (a SQLAlchemy ``handle_error`` listener) and wakes the
  watch at once;
* the first failure is logged as one line naming the store, and so is the recovery; while
  it fails the daemon is not ready (``/readyz`` 503 with the reason);
* when it keeps failing for ``give_up_after`` seconds the daemon stops cleanly and exits 1
  with a line naming the store (systemd restarts it, with a backoff).

Why SQLite's files are checked before anything touches them: in WAL mode SQLite maps the
``-shm`` file (the WAL index) into memory and every connection, readers too, writes to it
through that mapping. When the file stops being writable under a running process (made
immutable, its file system remounted read-only), the next write to the mapping is not an
error SQLite could return: the kernel kills the process with SIGBUS, and it dies without
a word. So the database, ``-wal`` and ``-shm`` files are checked for writability
(``os.access`` also sees the immutable flag and read-only mounts, for root too) at start
(with their folder), before every statement, ``BEGIN`` and ``COMMIT`` the daemon sends (a
few microseconds of system calls), and by the watch. Once one is not writable the store is
*fenced*: no statement reaches SQLite any more (each fails with ``StoreFenced``), the daemon
stops at once without waiting for the grace period, and ``bridge.daemon.service.run`` leaves
without closing its SQLite connections (closing the last one checkpoints, which writes the
``-shm`` file too). What remains is a change made in the microseconds between a check and
SQLite's write: only a rollback journal instead of WAL would close that, at the cost of
readers blocking writers. ``relbridge run`` also enables ``faulthandler``, so even then the
log shows why the process died.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.exc import IntegrityError

from bridge.daemon.metrics import Metrics
from bridge.errors import ConfigError, SyncFailure
from bridge.store import Store
from bridge.store.connect import SQLITE_BEGIN
from bridge.store.files import sqlite_files, unwritable

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0  # how often the watch writes its heartbeat and checks the files
STORE_FAILURE_SECONDS = 60.0  # a store failing this long stops the daemon


class StoreFenced(SyncFailure):
    """The store's files are not writable: no statement may reach SQLite any more."""

    code = "store_fenced"


def store_error(exc: BaseException) -> str:
    """One line for a store error: the driver's message without SQLAlchemy's SQL dump."""
    orig = getattr(exc, "orig", None)
    text = " ".join(str(orig if orig is not None else exc).split()) or type(exc).__name__
    return text[:300]


class StoreWatch:
    """Heartbeat, file checks and failure bookkeeping for one daemon (module docstring).

    ``probe()`` is the readiness check; ``run()`` is the watch thread's body; ``fatal`` is
    set (to the log line) once the daemon must stop.
    """

    def __init__(self, store: Store, metrics: Metrics, *, holder: str,
                 period: float = HEARTBEAT_SECONDS, give_up_after: float = STORE_FAILURE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.metrics, self.holder = store, metrics, holder
        self.period, self.give_up_after, self.clock = period, give_up_after, clock
        self.files = sqlite_files(store)
        self._hot_files = self.files[1:]  # the folder matters when files are made, at start
        self.lease = f"heartbeat/{holder}"
        self.fenced: str | None = None
        self.fatal: str | None = None
        self.halt = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.RLock()  # probe() writes, and each statement passes _guard
        self._failing_since: float | None = None
        self._problem: str | None = None
        # BEGIN reaches SQLite as a statement (``bridge.store.connect``), so the statement
        # guard covers it; a COMMIT does not, so it has its own (skipped for reads, which
        # run without a transaction: their commit sends nothing to SQLite).
        self._listeners: list[tuple[str, Callable[..., Any]]] = [
            ("handle_error", self._on_error), ("before_cursor_execute", self._guard),
            ("commit", self._guard_commit)]
        for name, listener in self._listeners:
            event.listen(store.engine, name, listener)

    def close(self) -> None:
        """Detach from the store's engine (the runtime may outlive the daemon). A fenced
        store keeps its guard: nothing may reach SQLite's files any more."""
        for name, listener in self._listeners:
            if self.fenced is None or name == "handle_error":
                event.remove(self.store.engine, name, listener)

    # -- checks --------------------------------------------------------------------------

    def check_start(self) -> None:
        """Refuse to start on a store that cannot be written (``ConfigError``, one line)."""
        problem = unwritable(self.files)
        if problem is None:
            try:
                self._heartbeat()
            except Exception as exc:
                problem = store_error(exc)
        if problem is not None:
            raise ConfigError(f"store.url — the store at {self.store.url} cannot be written: {problem}")

    def probe(self) -> str | None:
        """Check the files, then write the heartbeat: None when the store takes writes,
        otherwise what is wrong (also recorded: logs, not-ready, the stop decision)."""
        with self._lock:
            if self.fenced is None:
                problem = unwritable(self._hot_files)
                if problem is not None:
                    self._fence(problem)
            if self.fenced is not None:
                return self.fenced
            try:
                self._heartbeat()
                problem = None
            except Exception as exc:
                problem = store_error(exc)
            self._note(problem)
            return problem

    def problem(self) -> str | None:
        """The last known problem, without touching the store."""
        with self._lock:
            return self.fenced or self._problem

    def run(self) -> None:
        """The watch thread: probe every ``period`` seconds, or at once after an error."""
        while not self.halt.is_set():
            self.probe()
            if self.fatal is not None:
                return
            self._wake.wait(self.period)
            self._wake.clear()

    def wake(self) -> None:
        self._wake.set()

    def give_up_heartbeat(self) -> None:
        if self.fenced is None:
            try:
                self.store.release_lease(self.lease, self.holder)
            except Exception as exc:  # the store is failing: the row expires on its own
                log.debug("could not remove the heartbeat: %s", exc)

    # -- internals -----------------------------------------------------------------------

    def _heartbeat(self) -> None:
        self.store.acquire_lease(self.lease, self.holder, max(30.0, 3 * self.period))

    def _note(self, problem: str | None) -> None:
        now = self.clock()
        if problem is None:
            if self._failing_since is not None:
                log.warning("the store at %s takes writes again after %.0f s", self.store.url,
                            now - self._failing_since)
            self._failing_since, self._problem = None, None
            return
        if self._failing_since is None:
            self._failing_since = now
            log.error("the store at %s fails: %s; not ready until it recovers, stopping if it "
                      "still fails in %.0f s", self.store.url, problem, self.give_up_after)
        self._problem = problem
        if now - self._failing_since >= self.give_up_after and self.fatal is None:
            self.fatal = (f"the store at {self.store.url} has failed for {now - self._failing_since:.0f} s "
                          f"({problem}): stopping")

    def _fence(self, problem: str) -> None:
        self.metrics.store_errors.inc()
        self.fenced = problem
        self.fatal = f"the store at {self.store.url} cannot be written: {problem}: stopping"
        log.error("the store at %s cannot be written: %s; no further statement is sent to it "
                  "(SQLite would be killed by SIGBUS writing its -shm file)", self.store.url, problem)

    def _guard_commit(self, conn: Connection) -> None:
        if conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED") is not None:
            self._guard()

    def _guard(self, *args: Any) -> None:
        """Before every statement (BEGIN too) and COMMIT: refuse when the files are not writable."""
        if self.fenced is None and self._hot_files:
            problem = unwritable(self._hot_files)
            if problem is not None:
                with self._lock:
                    if self.fenced is None:
                        self._fence(problem)
        if self.fenced is not None:
            raise StoreFenced(f"the store at {self.store.url} is fenced: {self.fenced}")

    def _on_error(self, context: Any) -> None:
        if isinstance(context.original_exception, StoreFenced) or isinstance(
                context.sqlalchemy_exception, IntegrityError):
            return  # a fence is counted once, when it is set; a duplicate key is no I/O error
        self.metrics.store_errors.inc()
        self._wake.set()
