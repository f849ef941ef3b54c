"""The console's slow views, built off the request path and served at once (DESIGN.md §13).

A *view* is a value slow to build from the store: the release overview reads every release
and its changes, the KPIs every release's history (seconds at 10,000 releases). A request
never builds one:

* One builder thread builds views, one at a time, in the order they were asked for (a
  person asking for many KPI periods queues them instead of running many builds at once).
* A request gets the last built value at once. If it was last checked more than
  ``recheck`` seconds ago, the request also queues a check: the builder reads the store's
  :meth:`~bridge.store.Store.data_version` (one query, never on a request's time) and
  rebuilds when it moved or the value is older than ``max_age``. The page says when its
  figures were computed and whether newer ones are being computed.
* A view never built: the request waits up to ``first_wait`` (a small store builds in that
  time), then gets no value, and the console answers with a page saying what is being
  computed, since when and why.
* Views marked ``keep`` (the overview and the all-time KPIs) are saved in the store (by the
  builder, :class:`~bridge.reports.builder.Kept`) with
  the data version they were built from and when; a new console starts from them, so after
  a restart pages show the last figures at once (the builder reads them first thing, off
  the daemon's start-up path), and a rebuild follows only if the data moved or they are
  too old.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.reports.builder import Kept
from bridge.timeutil import utc_now

log = logging.getLogger(__name__)

#: Views that are not kept (one per KPI period asked for) beyond this many: the least
#: recently asked for is dropped.
MAX_VIEWS = 32


@dataclass(frozen=True)
class Built:
    """A view's value, the data version it was built from and when."""

    value: Any
    version: str
    computed_at: datetime


@dataclass(frozen=True)
class Reading:
    """What a request gets: the last built value (None before the first build) and what
    the builder is doing about it."""

    built: Built | None
    refreshing: bool  # a rebuild is under way
    asked_at: datetime | None  # when the first build was asked for (while there is no value)
    failed: str | None  # why the last build failed, until one succeeds
    loading: bool = False  # the saved view is still being read (just after start-up)


@dataclass
class _View:
    job: Any  # what ``run`` builds the view from
    keep: bool
    built: Built | None = None
    checked: float = -math.inf  # monotonic time the builder last compared data versions
    used: float = 0.0
    queued: bool = False
    rebuilding: bool = False
    asked_at: datetime | None = None
    failed: str | None = None
    loaded: bool = False  # a kept view: the saved one was looked for
    done: threading.Event = field(default_factory=threading.Event)  # the queued check finished
    ready: threading.Event = field(default_factory=threading.Event)  # a value, or the check finished


def version_text(version: Any) -> str:
    """A data version as text, comparable with one saved in the store."""
    return json.dumps(list(version), default=str)


class Views:
    """Built views over one store (see the module docstring); ``run(job)`` builds one (in
    the console, :class:`~bridge.reports.builder.ViewProcess`)."""

    def __init__(self, store: Any, run: Callable[[Any], Any], *, max_age: float, first_wait: float = 0.1,
                 recheck: float = 1.0, now: Callable[[], datetime] = utc_now,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.run = store, run
        self.max_age, self.first_wait, self.recheck = max_age, first_wait, recheck
        self.now, self.clock = now, clock
        self._views: dict[str, _View] = {}
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._builder: threading.Thread | None = None
        self._closed = False

    def define(self, name: str, job: Any) -> None:
        """A view kept in the store: its builder starts from the saved one, when there is one."""
        self._views[name] = _View(job, keep=True)

    def _load(self, name: str, view: _View) -> None:
        """The saved view, read by the builder before its first build (megabytes of JSON: not
        on the daemon's start-up path, which would hold the receiver back)."""
        view.loaded = True
        try:
            saved = self.store.snapshot(name)
        except Exception as exc:  # the console still works, it only starts empty
            log.warning("console: could not read the saved %s view: %s", name, exc)
            return
        if saved is not None and view.built is None:
            view.built = Built(saved.value, saved.data_version, saved.computed_at)
            view.ready.set()

    def refresh(self, name: str) -> None:
        """Queue a check of ``name`` (a rebuild if its data moved): the start-up warm-up."""
        with self._lock:
            self._enqueue(name, self._views[name])

    def get(self, name: str, job: Any = None) -> Reading:
        """The view as built so far; ``job`` makes a view not defined before."""
        with self._lock:
            view = self._views.get(name)
            if view is None:
                assert job is not None, f"view {name!r} is not defined"
                view = self._views[name] = _View(job, keep=False)
                self._drop_unused()
            view.used = self.clock()
            if view.built is None or view.used - view.checked >= self.recheck or self._too_old(view.built):
                self._enqueue(name, view)
        if view.built is None and self.first_wait > 0:
            view.ready.wait(self.first_wait)
        return Reading(view.built, view.rebuilding, view.asked_at if view.built is None else None, view.failed,
                       loading=view.keep and not view.loaded)

    def close(self) -> None:
        """End the builder thread (a build under way finishes first, or fails quietly when
        ``run`` was stopped too)."""
        self._closed = True
        self._queue.put(None)

    def wait(self, name: str, timeout: float) -> bool:
        """Block until the check or build last queued for ``name`` finished (tests, the
        bench); False on timeout."""
        return self._views[name].done.wait(timeout)

    def _too_old(self, built: Built) -> bool:
        return (self.now() - built.computed_at).total_seconds() > self.max_age

    def _enqueue(self, name: str, view: _View) -> None:
        """Under the lock: queue ``name`` once, and start the builder if it is not running."""
        if view.queued:
            return
        view.queued = True
        view.done.clear()
        if view.built is None:
            view.ready.clear()
        if view.built is None and view.asked_at is None:
            view.asked_at = self.now()
        self._queue.put(name)
        if self._builder is None:
            self._builder = threading.Thread(target=self._work, name="console-builder", daemon=True)
            self._builder.start()

    def _drop_unused(self) -> None:
        spare = sorted((v.used, n) for n, v in self._views.items() if not v.keep and not v.queued)
        for _, name in spare[:max(0, len(spare) - MAX_VIEWS)]:
            del self._views[name]

    def _work(self) -> None:
        while (name := self._queue.get()) is not None:
            view = self._views.get(name)
            if view is None:
                continue
            try:
                self._check(name, view)
            except Exception as exc:  # shown on the page; the next request asks again
                if self._closed:
                    break
                log.warning("console: building the %s view failed: %s", name, exc, exc_info=True)
                view.failed = f"{type(exc).__name__}: {exc}"
            finally:
                with self._lock:
                    view.queued = False
                view.done.set()
                view.ready.set()

    def _check(self, name: str, view: _View) -> None:
        """Compare data versions and rebuild when the view is not true any more."""
        for other_name, other in list(self._views.items()):  # every saved view first, before any build
            if other.keep and not other.loaded:
                self._load(other_name, other)
        version = version_text(self.store.data_version())  # read first: a write during the build moves it again
        view.checked = self.clock()
        built = view.built
        if built is not None and built.version == version and not self._too_old(built):
            return
        view.rebuilding, started = True, self.now()
        try:
            view.built = Built(self.run(Kept(view.job, name, version, started) if view.keep else view.job), version,
                               started)
            view.ready.set()
        finally:
            view.rebuilding = False
        view.failed, view.asked_at = None, None
