"""Domain errors with stable codes.

Core code raises these; the edges turn them into exit code 2 (CLI) or an HTTP 4xx
(`BadInput`), exit code 1 (`SyncFailure`), or a retry / dead letter (`TransientError`,
`PermanentError`).
"""

from __future__ import annotations


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
