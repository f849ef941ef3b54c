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

import logging
import os
import pickle
import select
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from bridge.reports.cost import Rates

if TYPE_CHECKING:
    from bridge.store import Store

log = logging.getLogger(__name__)

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
    """The KPIs of one period (``None``: open-ended), as ``relbridge kpi`` computes them, and
    their dashboard rendered (0.7 MB of HTML at 10,000 releases: rendered once per build,
    here, not on every request in the daemon)."""

    since: date | None
    until: date | None
    early_life_days: int
    rates: Rates

    def __call__(self, store: Store) -> dict[str, Any]:
        """``{"kpis": …, "sections": …}``: the figures and the dashboard already rendered."""
        from bridge.reports.dashboard import dashboard_sections
        from bridge.reports.kpi import kpis_from_store
        from bridge.timeutil import utc_now

        kpis = kpis_from_store(store, since=self.since, until=self.until, now=utc_now(),
                               early_life_days=self.early_life_days, rates=self.rates)
        return {"kpis": kpis, "sections": "\n".join(dashboard_sections(kpis))}


@dataclass(frozen=True)
class Kept:
    """A job whose view is also saved in the store with the data version it was built from
    (by the child: encoding the overview's 3 MB of JSON would hold the daemon's lock ~0.1 s)."""

    job: Any
    name: str
    version: str
    computed_at: datetime

    def __call__(self, store: Store) -> Any:
        value = self.job(store)
        try:
            store.save_snapshot(self.name, self.version, self.computed_at, value)
        except Exception as exc:  # derived data: the next restart builds it again
            log.warning("console: could not save the %s view: %s", self.name, exc)
        return value


def _send(stream: BinaryIO, value: Any) -> None:
    """One message: its length, then the pickle (both ends are relbridge, on private pipes)."""
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(8, "big") + data)
    stream.flush()


def _receive(read: Callable[[int], bytes]) -> Any:
    size = int.from_bytes(_exactly(read, 8), "big")
    return pickle.loads(_exactly(read, size))  # written by _send at the other end


def _exactly(read: Callable[[int], bytes], size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        part = read(size - got)
        if not part:
            raise EOFError("the pipe was closed")
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _serve(url: str, answers: BinaryIO) -> None:
    """The child: build each job read from stdin, answer ``(True, value)`` or ``(False, reason)``.
    stdin is read unbuffered, message by message, so ``select`` sees exactly what is pending."""
    from bridge.store import Store

    store: Store | None = None
    try:
        while select.select([0], [], [], IDLE_SECONDS)[0]:
            try:
                job = _receive(lambda size: os.read(0, size))
            except EOFError:  # the daemon closed the pipe or died
                return
            try:
                store = store or Store(url, migrate=False)
                answer = (True, job(store))
            except Exception as exc:  # the reason goes back to the page; the child serves on
                answer = (False, f"{type(exc).__name__}: {exc}")
            _send(answers, answer)
    finally:
        if store is not None:
            store.close()


def _child_main() -> None:
    """``python -m bridge.reports.builder``: the child's start. Answers go to the stdout it
    was given; anything else printed goes to stderr. The store URL comes first on stdin
    (never the command line, which ``ps`` shows)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the daemon, which closes the pipe
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _serve(_receive(lambda size: os.read(0, size)), answers)


class ViewProcess:
    """Runs jobs in the child process; one caller at a time (the console's builder thread)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._child: subprocess.Popen[bytes] | None = None
        self._closed = False

    def __call__(self, job: Any) -> Any:
        for attempt in (1, 2):  # the child may have just exited idle: start another once
            if self._closed:
                raise ViewBuildFailed("the console is closed")
            child = self._running()
            assert child.stdin is not None and child.stdout is not None
            try:
                _send(child.stdin, job)
                ok, value = _receive(child.stdout.read)
            except (EOFError, OSError) as exc:
                self.close(for_good=False)
                if attempt == 2:
                    raise ViewBuildFailed(f"the process building the console's views stopped ({exc or 'no answer'})") \
                        from None
                continue
            if not ok:
                raise ViewBuildFailed(value)
            return value
        raise AssertionError("unreachable")

    def _running(self) -> subprocess.Popen[bytes]:
        if self._child is None or self._child.poll() is not None:
            self.close(for_good=False)
            # A fresh interpreter, not multiprocessing: nothing of the daemon's (threads, open
            # connections, its main script) is copied or run again.
            self._child = subprocess.Popen([sys.executable, "-m", "bridge.reports.builder"], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE)
            assert self._child.stdin is not None
            _send(self._child.stdin, self.url)
        return self._child

    def close(self, *, for_good: bool = True) -> None:
        """Stop the child (it stops by itself when the daemon exits). A build under way is
        cut short: its figures are derived data, and the next start builds them again."""
        self._closed = self._closed or for_good
        child, self._child = self._child, None
        if child is None:
            return
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
        try:
            child.wait(0.5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)


if __name__ == "__main__":
    _child_main()
