"""Domain errors with stable codes.

Core code raises these; the edges turn them into exit code 2 (CLI) or an HTTP 4xx
(`BadInput`), exit code 1 (`SyncFailure`), or a retry / dead letter (`TransientError`,
`PermanentError`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class RelbridgeError(Exception):
    """Base class; ``code`` is stable and safe to match on in scripts and tests."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class BadInput(RelbridgeError):
    """The user gave us something we cannot use: config, mapping, arguments, request body."""

    code = "bad_input"


class ConfigError(BadInput):
    code = "config"


class MappingError(BadInput):
    code = "mapping"


class SyncFailure(RelbridgeError):
    """Something went wrong talking to a system or the store."""

    code = "sync_failure"


class TransientError(SyncFailure):
    """Worth retrying: 429, 5xx, connection errors, timeouts.

    ``retry_after`` is the server's hint in seconds, when it gave one.
    """

    code = "transient"

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class PermanentError(SyncFailure):
    """Retrying will not help until someone fixes the cause (4xx other than 429, bad value)."""

    code = "permanent"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotThisEntity(PermanentError):
    """An adapter's ``read`` found the object, but it is not of the entity asked for (a
    Jira issue of another type or project). Not a deletion: the object exists, so nothing
    may be unlinked or deleted because of it. Raised rather than answered with None, which
    means only "the system says 404"."""

    code = "not_this_entity"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    None when absent or unreadable; a date in the past gives 0.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)  # HTTP dates are GMT
        now = now if now is not None else datetime.now(UTC)
        now = now if now.tzinfo else now.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    return seconds if seconds >= 0 and seconds == seconds and seconds != float("inf") else None


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the option closest to a mistyped ``word``, or nothing."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
