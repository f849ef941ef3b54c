"""Record locks for the engine's worker threads.

One lock per canonical record (hashed into a fixed set of locks) is held from a read to the
last write of that record, so a read taken between another worker's writes is never merged
as a newer edit. Work that touches *other* records (hooks, links, derived release states)
is queued while this thread holds any record lock and runs once it holds none: locks are
never taken while holding another record's, so there are no lock-order deadlocks.

One path cannot wait: a reference the mapping needs now (a change's release that is not
linked yet) is read and ingested while the referring record is held. A lock wanted while
this thread holds another is therefore waited for at most ``NESTED_WAIT_SECONDS``; two such
waits crossing each other would otherwise wait for ever. The work then fails with
``LockBusy``, a transient error: its locks are let go and it is retried.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bridge.errors import TransientError

LOCKS = 256
#: The longest wait for a lock while this thread holds another (see the module docstring).
NESTED_WAIT_SECONDS = 30.0
#: Releases pair up by name across systems: one worker of a process at a time pairs or
#: creates a release of a given name (names hashed into this many slots).
PAIRING_SLOTS = 64


class LockBusy(TransientError):
    """A lock wanted while holding another stayed taken (see the module docstring)."""

    code = "lock_busy"


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


class PairingLocks:
    """Who may pair or create a release right now, by name (see ``RecordLocks.pairing``).

    A name's slot is held by one thread at a time; ``None`` (a name not known yet) holds
    every slot at once. A thread may take again what it holds, and a thread holding every
    slot may take any one. Waiting "every slot" requests go first, so a stream of named
    work cannot starve them."""

    def __init__(self, slots: int = PAIRING_SLOTS) -> None:
        self._slots = slots
        self._changed = threading.Condition()
        self._owners: dict[int | None, tuple[int, int]] = {}  # slot (None: all) -> (thread, depth)
        self._waiting_for_all = 0

    def slot(self, name: object) -> int | None:
        """The slot of a release name: names that compare equal share it (case and outer
        spaces aside, so a slot is never finer than any system's matching of names). No
        name: every slot."""
        text = str(name).strip().casefold() if name is not None else ""
        return zlib.crc32(text.encode()) % self._slots if text else None

    def acquire(self, slot: int | None, timeout: float | None = None) -> bool:
        """Take ``slot`` (None: every slot); False when ``timeout`` ran out first."""
        me = threading.get_ident()
        with self._changed:
            if slot is None:
                self._waiting_for_all += 1
                try:
                    free = self._changed.wait_for(
                        lambda: all(owner == me for owner, _ in self._owners.values()), timeout)
                finally:
                    self._waiting_for_all -= 1
                    self._changed.notify_all()  # named work held back for this request may go
            else:
                free = self._changed.wait_for(lambda: self._free_for(me, slot), timeout)
            if not free:
                return False
            owner, depth = self._owners.get(slot, (me, 0))
            self._owners[slot] = (me, depth + 1)
            return True

    def release(self, slot: int | None) -> None:
        with self._changed:
            owner, depth = self._owners[slot]
            if depth > 1:
                self._owners[slot] = (owner, depth - 1)
            else:
                del self._owners[slot]
                self._changed.notify_all()

    def _free_for(self, me: int, slot: int) -> bool:
        every = self._owners.get(None)
        if every is not None:
            return every[0] == me
        holder = self._owners.get(slot)
        if holder is not None:
            return holder[0] == me
        # A thread holding nothing yet lets a waiting "every slot" request go first.
        return not self._waiting_for_all or any(owner == me for owner, _ in self._owners.values())


class _Slot:
    """One pairing slot as a lock, counted like a record lock."""

    def __init__(self, pairing: PairingLocks, slot: int | None) -> None:
        self.pairing, self.slot = pairing, slot

    def acquire(self, timeout: float = -1) -> bool:  # as ``RLock.acquire``: -1 waits for ever
        return self.pairing.acquire(self.slot, None if timeout < 0 else timeout)

    def release(self) -> None:
        self.pairing.release(self.slot)


class RecordLocks:
    """The record locks, and per thread: the work waiting for them to be released and the
    follow-ups a step left (see the module docstring)."""

    def __init__(self) -> None:
        self._locks = [threading.RLock() for _ in range(LOCKS)]
        self._local = threading.local()
        self._pairing = PairingLocks()
        self.nested_wait = NESTED_WAIT_SECONDS

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
    def _counted(self, lock: threading.RLock | _Slot) -> Iterator[None]:
        local = self._state
        if not lock.acquire(timeout=self.nested_wait if local.depth else -1):
            raise LockBusy(f"waited {self.nested_wait:g} s for a lock while holding another; "
                           "retrying with none held")
        local.depth += 1
        try:
            yield
        finally:
            local.depth -= 1
            lock.release()
        while local.depth == 0 and local.after:
            local.after.pop(0)()

    @contextmanager
    def pairing(self, name: object) -> Iterator[None]:
        """Releases pair up by name across systems: while a worker pairs or creates a
        release called ``name``, no other worker of this process pairs or creates one of
        that name (``None``: of any name, for work that learns the name only later).
        Releases of other names pair in parallel. Counted like a record lock (queued work
        waits for it too); take it before any record lock, and never a second name."""
        with self._counted(_Slot(self._pairing, self._pairing.slot(name))):
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
