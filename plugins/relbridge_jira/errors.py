"""Turn what the ``jira`` library and ``requests`` raise into relbridge's domain errors.

The core decides about retries from the error type alone: ``TransientError`` (429, 5xx,
connection problems, timeouts; with the server's ``Retry-After`` when it sent one) is
retried with back-off, ``PermanentError`` (any other 4xx, unusable responses) goes to the
dead-letter queue with the message Jira gave, so an operator can act on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from jira.exceptions import JIRAError

from bridge.adapter import cannot_connect
from bridge.errors import PermanentError, TransientError, parse_retry_after

AUTH_HINT = "check [jira] user/token"


@contextmanager
def translated_errors(action: str) -> Iterator[None]:
    """Run a block of Jira calls; re-raise failures as Transient/PermanentError.

    ``action`` names the operation for the message ("GET version 10001").
    """
    try:
        yield
    except JIRAError as exc:
        raise from_jira_error(exc, action) from exc
    except requests.ConnectionError as exc:
        if isinstance(exc, requests.exceptions.SSLError):
            raise PermanentError(f"jira: {action}: TLS verification failed ({exc}); check the "
                                 "certificate or [jira] verify_tls") from exc
        if isinstance(exc, requests.Timeout):  # ConnectTimeout
            raise TransientError(f"jira: {action}: timed out connecting — check [jira] url") from exc
        raise TransientError(f"jira: {action}: {cannot_connect(exc, 'jira')}") from exc
    except (requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise TransientError(f"jira: {action}: {type(exc).__name__}: {exc}") from exc
    except requests.RequestException as exc:  # invalid URL, too many redirects, …
        raise PermanentError(f"jira: {action}: {type(exc).__name__}: {exc}") from exc
    except ValueError as exc:  # a 2xx whose body is not JSON: a proxy or login page, not Jira
        raise PermanentError(f"jira: {action}: response is not Jira JSON ({exc})") from exc


def from_jira_error(exc: JIRAError, action: str) -> TransientError | PermanentError:
    """The domain error for one failed Jira request."""
    status = exc.status_code
    response = exc.response if isinstance(exc.response, requests.Response) else None
    detail = error_text(response) if response is not None else (exc.text or "")
    message = f"jira: {action}: HTTP {status}" if status else f"jira: {action}"
    if detail:
        message += f": {detail}"
    if status is None:
        return PermanentError(message)
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
        return TransientError(message, retry_after=retry_after, status=status)
    if status in (401, 403):
        message += f" ({AUTH_HINT}" + (" and the user's project permissions)" if status == 403 else ")")
    return PermanentError(message, status=status)


def error_text(response: requests.Response) -> str:
    """Jira's ``{"errorMessages": [...], "errors": {field: msg}}`` as one readable line."""
    denied = response.headers.get("X-Authentication-Denied-Reason")
    try:
        body: Any = response.json()
    except ValueError:
        text = response.text.strip()
        return denied or text[:300]
    parts: list[str] = []
    if isinstance(body, dict):
        messages = body.get("errorMessages") or []
        if isinstance(messages, str):
            messages = [messages]
        parts.extend(str(m) for m in messages)
        errors = body.get("errors")
        if isinstance(errors, dict):
            parts.extend(f"{name}: {msg}" for name, msg in errors.items())
        for key in ("message", "errorMessage"):
            if isinstance(body.get(key), str) and not parts:
                parts.append(body[key])
    if denied:
        parts.append(f"denied: {denied}")
    return "; ".join(parts)
