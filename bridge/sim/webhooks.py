"""Outbound webhook delivery for the simulators, plus the two signature schemes.

Real systems deliver webhooks after the triggering request has been answered, in order, and
retry a failed delivery a few times. `WebhookSender` does the same on one background thread,
so a slow or dead receiver never slows the simulated API down.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import requests

log = logging.getLogger(__name__)

#: Attempts per delivery and the pause before each retry (seconds).
RETRY_DELAYS = (0.0, 0.2, 0.5, 1.0)
DELIVERY_TIMEOUT = 5.0


def sign_hub(secret: str, body: bytes) -> str:
    """Jira's `X-Hub-Signature` value: `sha256=` + hex HMAC-SHA256(secret, raw body)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def sign_relbridge(secret: str, timestamp: str | int, body: bytes) -> str:
    """relbridge's ServiceNow contract: `sha256=` + hex HMAC-SHA256(secret, f"{ts}." + body).

    The timestamp is signed too, so a receiver can refuse replays of old deliveries.
    """
    message = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@dataclass
class Delivery:
    """One webhook POST and what became of it."""

    url: str
    body: bytes
    headers: dict[str, str]
    attempts: int = 0
    status: int | None = None  # last HTTP status, None if the receiver was unreachable
    ok: bool = False
    error: str = ""


@dataclass
class _Stop:
    done: threading.Event = field(default_factory=threading.Event)


class WebhookSender:
    """Delivers POSTs in order on a daemon thread with a bounded retry.

    `delivered` and `failed` hold finished deliveries for tests; `flush()` waits until
    everything queued so far has been attempted.
    """

    def __init__(self, *, retry_delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        self.retry_delays = retry_delays
        self.delivered: list[Delivery] = []
        self.failed: list[Delivery] = []
        self._queue: queue.Queue[Delivery | _Stop] = queue.Queue()
        self._session = requests.Session()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="sim-webhooks", daemon=True)
        self._thread.start()

    def send(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        """Queue one POST; returns at once."""
        if self._closed:
            log.warning("webhook sender closed; dropping delivery to %s", url)
            return
        self._queue.put(Delivery(url=url, body=body, headers=dict(headers)))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every delivery queued before this call has finished; False on timeout."""
        marker = _Stop()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (within `timeout`), then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self.flush(timeout)
        self._queue.put(_Stop())  # wakes the loop so it sees `_closed` and ends
        self._thread.join(timeout)
        self._session.close()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, _Stop):
                item.done.set()
                if self._closed and self._queue.empty():
                    return
                continue
            self._deliver(item)

    def _deliver(self, delivery: Delivery) -> None:
        for delay in self.retry_delays:
            if delay:
                time.sleep(delay)
            delivery.attempts += 1
            try:
                response = self._session.post(
                    delivery.url,
                    data=delivery.body,
                    headers=delivery.headers,
                    timeout=DELIVERY_TIMEOUT,
                )
            except requests.RequestException as exc:
                delivery.status, delivery.error = None, str(exc)
                continue
            delivery.status = response.status_code
            if response.ok:
                delivery.ok, delivery.error = True, ""
                self.delivered.append(delivery)
                return
            delivery.error = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code not in (408, 429):
                break  # the receiver refused it; repeating will not help
        log.warning("webhook to %s failed after %d attempts: %s",
                    delivery.url, delivery.attempts, delivery.error)
        self.failed.append(delivery)
