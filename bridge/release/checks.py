"""Verification checks: "verification of successful release package installation" (ITIL).

A ``Check`` is one verified fact about a deployed release. The built-in verifier runs the
``[[verify.checks]]`` HTTP checks; plugins add their own through
``relbridge_verify_release``. Everything here is bounded in time: a target that hangs
counts as failed after its timeout, and a plugin that hangs counts as failed after
``[verify] plugin_timeout_seconds``, so verification never blocks a sync worker for long.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import requests

from bridge.config import CheckConfig

T = TypeVar("T")

#: Bytes of an answer read for ``body_contains`` (a health page, not a download).
BODY_LIMIT = 1_048_576
RETRY_PAUSE_SECONDS = 1.0


@dataclass(frozen=True)
class Check:
    """The outcome of one check: its ``name``, whether it passed, and a short ``detail``
    (what was seen, or why it failed)."""

    name: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TimedOut(Exception):
    """A bounded call did not finish in time (it is left to end on its own)."""


def bounded(work: Callable[[], T], seconds: float, name: str) -> T:
    """``work()`` on a daemon thread, waited for at most ``seconds``: a hung call can
    neither block the caller nor keep the process from exiting. Raises ``TimedOut``."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimedOut(f"timed out after {seconds:g}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def run_http_check(spec: CheckConfig, pause: float = RETRY_PAUSE_SECONDS) -> Check:
    """GET ``spec.url`` until it answers as expected or the attempts run out."""
    started = time.monotonic()
    detail = ""
    for attempt in range(spec.retries + 1):
        if attempt:
            time.sleep(pause)
        # Connect and read timeouts bound each socket wait; the outer bound covers a
        # server that keeps trickling bytes.
        try:
            detail = bounded(lambda: _attempt(spec), spec.timeout_seconds + 1, f"check-{spec.name}")
        except TimedOut:
            detail = f"timed out after {spec.timeout_seconds:g}s"
        if not detail:
            return Check(spec.name, True, f"HTTP {spec.expect_status}", round(time.monotonic() - started, 3))
    tries = f" (after {spec.retries + 1} attempts)" if spec.retries else ""
    return Check(spec.name, False, detail + tries, round(time.monotonic() - started, 3))


def _attempt(spec: CheckConfig) -> str:
    """One GET; "" when it passed, else what was wrong."""
    try:
        with requests.get(spec.url, timeout=spec.timeout_seconds, stream=True,
                          allow_redirects=True) as response:
            if response.status_code != spec.expect_status:
                return f"expected HTTP {spec.expect_status}, got {response.status_code}"
            if spec.body_contains is not None:
                body = response.raw.read(BODY_LIMIT, decode_content=True).decode(
                    response.encoding or "utf-8", errors="replace")
                if spec.body_contains not in body:
                    return f"body does not contain {spec.body_contains!r}"
            return ""
    except requests.Timeout:
        return f"timed out after {spec.timeout_seconds:g}s"
    except requests.RequestException as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else 'no answer'}"
