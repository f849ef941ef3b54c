"""The in-process retry policy for one event (tenacity).

A worker retries a transient failure a few times at once, with short waits, before it
hands the event back to the inbox (whose backoff spans minutes and survives restarts).
Which failures are transient is decided here, once:

* ``TransientError`` from an adapter (429, 5xx, connection problems), honouring its
  ``retry_after``;
* a ``requests`` connection error or timeout that escaped an adapter;
* ``StaleRecord`` (another worker or instance saved the same record first) and a store
  connection problem (``OperationalError``: a locked SQLite file, a dropped connection).

A ``Retry-After`` longer than ``max_wait`` is not slept on in process: the attempt stops
and the inbox schedules the event no sooner than the system asked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import requests
from sqlalchemy.exc import OperationalError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from bridge.errors import TransientError
from bridge.store.rows import StaleRecord

T = TypeVar("T")

TRANSIENT: tuple[type[BaseException], ...] = (
    TransientError,
    requests.ConnectionError,
    requests.Timeout,
    StaleRecord,
    OperationalError,
)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT)


def retry_after_of(exc: BaseException | None) -> float | None:
    """The server's ``Retry-After`` hint carried by ``exc``, in seconds, if any."""
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) and value >= 0 else None


@dataclass(frozen=True)
class RetryPolicy:
    """How one event is retried in process before it goes back to the inbox."""

    attempts: int = 3  # calls in all, the first included
    base_wait: float = 0.2  # seconds; doubles per attempt, full jitter
    max_wait: float = 5.0  # longest in-process wait, Retry-After included

    def call(self, work: Callable[[], T], *, stopping: threading.Event | None = None) -> T:
        """Run ``work``; retry transient failures; re-raise the last failure when done.

        ``stopping`` (set at shutdown) ends the retries early and cuts waits short, so a
        worker hands its event back instead of sleeping through a shutdown.
        """
        stopping = stopping or threading.Event()
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self.attempts) | _StopWhen(stopping) | _StopOnLongRetryAfter(self.max_wait),
            wait=_WaitRetryAfter(self.max_wait, wait_random_exponential(multiplier=self.base_wait,
                                                                        max=self.max_wait)),
            sleep=stopping.wait,
            reraise=True,
        )
        return retrying(work)


class _WaitRetryAfter(wait_base):
    """The server's ``Retry-After`` when it gave one (capped), else ``fallback``."""

    def __init__(self, cap: float, fallback: wait_base) -> None:
        self.cap = cap
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        hint = retry_after_of(_exception(retry_state))
        if hint is not None:
            return min(hint, self.cap)
        return self.fallback(retry_state)


class _StopOnLongRetryAfter(stop_base):
    """Give up in process when the server asks for a longer pause than we sleep for."""

    def __init__(self, cap: float) -> None:
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> bool:
        hint = retry_after_of(_exception(retry_state))
        return hint is not None and hint > self.cap


class _StopWhen(stop_base):
    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.event.is_set()


def _exception(retry_state: RetryCallState) -> BaseException | None:
    outcome = retry_state.outcome
    return outcome.exception() if outcome is not None and outcome.failed else None
