"""Where the console's slow views are built: a child process, not the daemon's interpreter.

Building the KPIs or the release overview over 10,000 releases is seconds of pure Python,
some of it in single calls that hold the interpreter lock for hundreds of milliseconds (one
validation of every release, JSON decoding of every record). Run on a thread of the
daemon, that stalls every page the console serves meanwhile, and the daemon's own workers
and webhook receiver with it. So :class:`ViewProcess` runs each build in one child process
(started on first use, with its own connection to the store) and the daemon only waits on
a pipe. The child exits when the daemon closes the pipe or dies, and after
``IDLE_SECONDS`` without work (the next build starts a new one).

A job (:class:`OverviewJob`, :class:`KpiJob`) is a small picklable value; calling it with a
store builds the view, a JSON value (the console keeps some in the store).
"""

from __future__ import annotations

import multiprocessing
import signal
from dataclasses import dataclass
from datetime import date
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from bridge.reports.cost import Rates

if TYPE_CHECKING:
    from bridge.store import Store

#: A child with nothing to build for this long exits (memory back to the system).
IDLE_SECONDS = 300.0


class ViewBuildFailed(RuntimeError):
    """A build failed in the child process (the message says why) or the child died."""


@dataclass(frozen=True)
class OverviewJob:
    """The release overview: every release's row (``bridge.reports.releases``)."""

    def __call__(self, store: Store) -> list[dict[str, Any]]:
        from bridge.reports.releases import release_rows

        return release_rows(store)


@dataclass(frozen=True)
class KpiJob:
    """The KPIs of one period (``None``: open-ended), as ``relbridge kpi`` computes them."""

    since: date | None
    until: date | None
    early_life_days: int
    rates: Rates

    def __call__(self, store: Store) -> dict[str, Any]:
        from bridge.reports.kpi import kpis_from_store
        from bridge.timeutil import utc_now

        return kpis_from_store(store, since=self.since, until=self.until, now=utc_now(),
                               early_life_days=self.early_life_days, rates=self.rates)


def _serve(conn: Connection, url: str) -> None:
    """The child: build each job sent, answer ``(True, value)`` or ``(False, reason)``."""
    from bridge.store import Store

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the daemon, which closes the pipe
    store: Store | None = None
    try:
        while conn.poll(IDLE_SECONDS):
            job = conn.recv()
            try:
                store = store or Store(url, migrate=False)
                conn.send((True, job(store)))
            except Exception as exc:  # the reason goes back to the page; the child serves on
                conn.send((False, f"{type(exc).__name__}: {exc}"))
    except (EOFError, OSError):  # the daemon closed the pipe or died
        pass
    finally:
        if store is not None:
            store.close()


class ViewProcess:
    """Runs jobs in the child process; one caller at a time (the console's builder thread)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._closed = False

    def __call__(self, job: Any) -> Any:
        for attempt in (1, 2):
            if self._closed:
                raise ViewBuildFailed("the console is closed")  # the child may have just exited idle: start another once
            conn = self._connection()
            try:
                conn.send(job)
                ok, value = conn.recv()
            except (EOFError, OSError) as exc:
                self.close(for_good=False)
                if attempt == 2:
                    raise ViewBuildFailed(f"the process building the console's views died ({exc or 'no answer'})") \
                        from None
                continue
            if not ok:
                raise ViewBuildFailed(value)
            return value
        raise AssertionError("unreachable")

    def _connection(self) -> Connection:
        if self._conn is None or self._process is None or not self._process.is_alive():
            self.close(for_good=False)
            # spawn, not fork: the daemon has threads and open connections a fork would copy.
            context = multiprocessing.get_context("spawn")
            self._conn, theirs = context.Pipe()
            self._process = context.Process(target=_serve, args=(theirs, self.url), name="relbridge-console-views",
                                            daemon=True)
            self._process.start()
            theirs.close()
        return self._conn

    def close(self, *, for_good: bool = True) -> None:
        """Stop the child (it stops by itself when the daemon exits). A build under way is
        cut short: its figures are derived data, and the next start builds them again."""
        self._closed = self._closed or for_good
        if self._conn is not None:
            self._conn.close()
        if self._process is not None:
            self._process.join(0.5)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5)
        self._conn = self._process = None
