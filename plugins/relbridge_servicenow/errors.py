"""Turn what ``requests`` raises under pysnow into relbridge's domain errors.

pysnow calls ``raise_for_status()`` before it parses a body, so every 4xx/5xx reaches us as
``requests.HTTPError`` with the response attached; ServiceNow explains itself in the
``{"error": {"message", "detail"}, "status": "failure"}`` envelope, which we quote.
Messages name the method and path only: no query string, no credentials.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests

from bridge.adapter import cannot_connect
from bridge.errors import PermanentError, TransientError, parse_retry_after

#: Statuses worth retrying: rate limiting, and the server or a proxy in front of it failing.
TRANSIENT_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
AUTH_STATUSES = frozenset({401, 403})
AUTH_HINT = "check [servicenow] user/password and the user's roles"


def map_request_error(exc: requests.RequestException, *, secret: str = "") -> Exception:
    """The domain error for one failed request (returned, so the caller can ``raise … from``)."""
    request = exc.request
    where = _where(request.method if request else None, request.url if request else None)
    response = exc.response
    if response is not None and response.status_code >= 400:
        return _from_response(response, where, secret)
    if isinstance(exc, requests.exceptions.SSLError):
        return PermanentError(
            f"{where}: TLS verification failed ({_redact(str(exc), secret)}); "
            "check the certificate or [servicenow] verify_tls"
        )
    if isinstance(exc, requests.Timeout):
        return TransientError(f"{where}: timed out")
    if isinstance(exc, requests.ConnectionError):
        return TransientError(f"{where}: {_redact(cannot_connect(exc, 'servicenow'), secret)}")
    return PermanentError(f"{where}: {_redact(str(exc), secret)}")


def _from_response(response: requests.Response, where: str, secret: str) -> Exception:
    status = response.status_code
    text = f"{where}: HTTP {status} {_redact(error_text(response), secret)}".rstrip()
    if status in TRANSIENT_STATUSES:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return TransientError(text, retry_after=retry_after, status=status)
    if status in AUTH_STATUSES:
        text = f"{text} — {AUTH_HINT}"
    return PermanentError(text, status=status)


def error_text(response: requests.Response) -> str:
    """``message: detail`` from ServiceNow's error envelope, else the reason phrase."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        parts = [str(error[k]) for k in ("message", "detail") if error.get(k)]
        if parts:
            return ": ".join(parts)
    return response.reason or ""


def _where(method: str | None, url: str | None) -> str:
    path = urlsplit(url).path if url else "?"
    return f"ServiceNow {method or '?'} {path}"


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text
