"""Record locks for the engine's worker threads.

One lock per canonical record (hashed into a fixed set of locks) is held from a read to the
last write of that record, so a read taken between another worker's writes is never merged
as a newer edit. Work that touches *other* records (hooks, links, derived release states)
is queued while this thread holds any record lock and runs once it holds none: locks are
never taken while holding another record's, so there are no lock-order deadlocks.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

LOCKS = 256
#: Releases pair up by name across systems: one worker of a process at a time pairs or
#: creates one (taken before any record lock).
PAIRING = "release-pairing"


class FollowUps:
    """Records a step touched besides its own (a release whose derived state moved, a
    pulled reference) that need propagating too, in the order met, each once."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, entity: str, key: str) -> None:
        if (entity, key) not in self.items:
            self.items.append((entity, key))

    def pop_all(self) -> list[tuple[str, str]]:
        items, self.items = self.items, []
        return items


class RecordLocks:
    """The record locks, and per thread: the work waiting for them to be released and the
    follow-ups a step left (see the module docstring)."""

    def __init__(self) -> None:
        self._locks = [threading.RLock() for _ in range(LOCKS)]
        self._local = threading.local()
        self._named: dict[str, threading.RLock] = {}
        self._named_lock = threading.Lock()

    @contextmanager
    def hold(self, entity: str, key: str) -> Iterator[None]:
        local = self._state
        with self._counted(self._locks[zlib.crc32(f"{entity}:{key}".encode()) % len(self._locks)]):
            local.records += 1  # record locks held: never more than one (see the module docstring)
            try:
                yield
            finally:
                local.records -= 1

    @contextmanager
    def _counted(self, lock: threading.RLock) -> Iterator[None]:
        local = self._state
        with lock:
            local.depth += 1
            try:
                yield
            finally:
                local.depth -= 1
        while local.depth == 0 and local.after:
            local.after.pop(0)()

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """A named lock over a kind of work (e.g. pairing releases by name), counted like a
        record lock: queued work waits for it too. Take it before any record lock."""
        with self._named_lock:
            lock = self._named.setdefault(name, threading.RLock())
        with self._counted(lock):
            yield

    def after_unlock(self, action: Callable[[], None]) -> None:
        """Run ``action`` now, or once this thread holds no record lock."""
        local = self._state
        if local.depth:
            local.after.append(action)
        else:
            action()

    @property
    def follow_ups(self) -> FollowUps:
        return self._state.follow_ups

    @property
    def _state(self) -> threading.local:
        local = self._local
        if not hasattr(local, "depth"):
            local.depth, local.records, local.after, local.follow_ups = 0, 0, [], FollowUps()
        return local
