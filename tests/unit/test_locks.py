"""Release pairing locks: one worker per release name, every name for work that learns the
name later, and no starving of the latter."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from bridge.engine.locks import LockBusy, RecordLocks


def holding(locks: RecordLocks, name: object, inside: threading.Event, leave: threading.Event) -> threading.Thread:
    def run() -> None:
        with locks.pairing(name):
            inside.set()
            leave.wait(5)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert inside.wait(5)
    return thread


def enters(locks: RecordLocks, name: object, within: float = 5.0) -> bool:
    """Whether another thread gets the pairing lock of ``name`` within ``within`` s (it
    then lets go at once). Asserting it does not, a short wait is enough."""
    got = threading.Event()

    def run() -> None:
        with locks.pairing(name):
            got.set()

    threading.Thread(target=run, daemon=True).start()
    return got.wait(within)


def test_releases_of_other_names_pair_in_parallel_and_one_name_one_at_a_time() -> None:
    locks, leave = RecordLocks(), threading.Event()
    holder = holding(locks, "Billing 9.0", threading.Event(), leave)
    assert enters(locks, "Payroll 2.1")
    assert not enters(locks, "  billing 9.0 ", within=0.3)  # names that match as a system matches them
    leave.set()
    holder.join(5)
    assert enters(locks, "Billing 9.0")


def test_no_name_holds_every_name() -> None:
    locks, leave = RecordLocks(), threading.Event()
    holder = holding(locks, None, threading.Event(), leave)
    assert not enters(locks, "Payroll 2.1", within=0.3)
    assert not enters(locks, "", within=0.3)
    leave.set()
    holder.join(5)
    locks, leave = RecordLocks(), threading.Event()
    holder = holding(locks, "Payroll 2.1", threading.Event(), leave)
    assert not enters(locks, None, within=0.3)
    leave.set()
    holder.join(5)


def test_a_holder_takes_again_what_it_holds_and_every_name_covers_one() -> None:
    locks = RecordLocks()
    done = threading.Event()

    def run() -> None:
        with locks.pairing(None), locks.pairing("Billing 9.0"), locks.pairing("billing 9.0"):
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(2)
    assert done.is_set()
    assert enters(locks, None)  # all let go


def test_work_waiting_for_every_name_is_not_starved_by_named_work() -> None:
    locks, leave = RecordLocks(), threading.Event()
    holder = holding(locks, "Billing 9.0", threading.Event(), leave)
    order: list[str] = []

    def take(name: str | None) -> threading.Thread:
        def run() -> None:
            with locks.pairing(name):
                order.append(name or "every")

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    waiters = [take(None)]
    deadline = time.monotonic() + 5
    while not locks._pairing._waiting_for_all and time.monotonic() < deadline:
        time.sleep(0.01)  # until it waits for the holder
    waiters.append(take("Payroll 2.1"))  # free, but queues behind the first
    time.sleep(0.2)
    assert order == []
    leave.set()
    for thread in [holder, *waiters]:
        thread.join(5)
    assert order == ["every", "Payroll 2.1"]



def crossing(locks: RecordLocks, first: Callable[[], Any], second: Callable[[], Any]) -> list[str]:
    """Two threads: one takes ``first`` then ``second``, the other ``second`` then ``first``."""
    both_hold, outcome = threading.Barrier(2), []

    def run(one: Callable[[], Any], two: Callable[[], Any]) -> None:
        try:
            with one():
                both_hold.wait(5)
                with two():
                    outcome.append("done")
        except LockBusy:
            outcome.append("retry")

    threads = [threading.Thread(target=run, args=pair, daemon=True) for pair in ((first, second), (second, first))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    return sorted(outcome)


@pytest.mark.parametrize("second", ["record", "pairing"])
def test_crossing_waits_for_a_second_lock_end_and_one_side_retries_with_none_held(second: str) -> None:
    """A reference pulled in while a record is held (a change's release not linked yet)
    takes a second lock. Two such waits crossing end after ``nested_wait``: the side that
    gave up raises ``LockBusy`` (retried) with no lock left held, and the other goes on."""
    locks = RecordLocks()
    locks.nested_wait = 0.3
    other = (lambda: locks.hold("change", "CHG2")) if second == "record" else (lambda: locks.pairing("Release 1"))
    outcome = crossing(locks, lambda: locks.hold("change", "CHG1"), other)
    assert outcome in (["done", "retry"], ["retry", "retry"])
    assert enters(locks, None)
    with locks.hold("change", "CHG1"), locks.hold("change", "CHG2"):
        pass  # both free again
