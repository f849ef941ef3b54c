"""The in-process retry policy for events (bridge.retry)."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from bridge.errors import PermanentError, TransientError
from bridge.retry import RetryPolicy, is_transient, retry_after_of
from bridge.store.rows import StaleRecord


class Flaky:
    """Fails with ``errors`` in turn, then returns "done"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.times: list[float] = []

    def __call__(self) -> str:
        self.calls += 1
        self.times.append(time.monotonic())
        if self.errors:
            raise self.errors.pop(0)
        return "done"


FAST = RetryPolicy(attempts=3, base_wait=0.01, max_wait=0.5)


@pytest.mark.parametrize("error", [TransientError("503", status=503), requests.ConnectionError("reset"),
                                   requests.Timeout("slow"), StaleRecord("raced")])
def test_transient_failures_are_retried(error: BaseException) -> None:
    work = Flaky(error, error)
    assert FAST.call(work) == "done"
    assert work.calls == 3


def test_attempts_are_bounded_and_the_last_error_is_raised() -> None:
    work = Flaky(*(TransientError(f"try {i}") for i in range(5)))
    with pytest.raises(TransientError, match="try 2"):
        FAST.call(work)
    assert work.calls == 3


def test_permanent_and_unknown_errors_are_not_retried() -> None:
    for error in (PermanentError("400", status=400), ValueError("bug")):
        work = Flaky(error)
        with pytest.raises(type(error)):
            FAST.call(work)
        assert work.calls == 1


def test_retry_after_is_honoured_when_short() -> None:
    work = Flaky(TransientError("429", retry_after=0.3, status=429))
    assert FAST.call(work) == "done"
    assert work.times[1] - work.times[0] >= 0.29


def test_long_retry_after_is_left_to_the_queue() -> None:
    work = Flaky(TransientError("429", retry_after=30, status=429))
    began = time.monotonic()
    with pytest.raises(TransientError) as caught:
        FAST.call(work)
    assert work.calls == 1 and time.monotonic() - began < 0.2
    assert retry_after_of(caught.value) == 30


def test_stopping_ends_retries_and_cuts_waits_short() -> None:
    stopping = threading.Event()
    slow = RetryPolicy(attempts=5, base_wait=10, max_wait=10)
    work = Flaky(*(TransientError("down") for _ in range(5)))
    threading.Timer(0.2, stopping.set).start()
    began = time.monotonic()
    with pytest.raises(TransientError):
        slow.call(work, stopping=stopping)
    assert time.monotonic() - began < 5  # far below one 10 s wait, with room for a loaded machine
    assert work.calls <= 2


def test_classification_helpers() -> None:
    assert is_transient(TransientError("x")) and not is_transient(PermanentError("x"))
    assert retry_after_of(TransientError("x", retry_after=2)) == 2.0
    assert retry_after_of(ValueError("x")) is None and retry_after_of(None) is None
