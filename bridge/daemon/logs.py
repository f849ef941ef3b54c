"""Logging for the daemon: text or one JSON object per line, with the event in context.

A worker sets the event it handles (id, system, entity, ext_id, key) with
``log_context(...)``; every record logged on that thread meanwhile carries those fields,
whichever module logs it. Known secret values (passwords, tokens, webhook secrets, the
store password) are masked in the final line, tracebacks included, as a second line of
defence behind ``SecretStr``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bridge.config import Config

LogFormat = Literal["text", "json"]
MASK = "***"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context_text)s: %(message)s"

_context: ContextVar[dict[str, Any]] = ContextVar("relbridge_log_context", default={})  # noqa: B039 - never mutated


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every record logged in this context (nested contexts merge)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def update_log_context(**fields: Any) -> None:
    """Add fields learnt half-way (the canonical key once known) to the current context."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


class ContextFilter(logging.Filter):
    """Copies the current log context onto each record (``record.context``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = dict(_context.get())
        record.context = context
        record.context_text = " [" + " ".join(f"{k}={v}" for k, v in context.items()) + "]" if context else ""
        return True


class _Redacting(logging.Formatter):
    def __init__(self, secrets: Iterable[str], fmt: str | None = None) -> None:
        super().__init__(fmt)
        # Longest first, so a secret containing another is masked whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


class TextFormatter(_Redacting):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(secrets, TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "context_text"):
            ContextFilter().filter(record)
        return self.redact(super().format(record))


class JsonFormatter(_Redacting):
    """One JSON object per line: time, level, logger, message, context fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = getattr(record, "context", None)
        if context is None:
            context = dict(_context.get())
        document.update({k: v for k, v in context.items() if k not in document})
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(document, default=str))


def secrets_of(config: Config) -> list[str]:
    """Every secret value in ``config``, to be masked wherever it might appear."""
    values = [config.servicenow.password.get_secret_value(), config.jira.token.get_secret_value()]
    for secret in (config.webhooks.jira_secret, config.webhooks.servicenow_secret):
        if secret is not None:
            values.append(secret.get_secret_value())
    try:
        password = make_url(config.store.url).password
    except ArgumentError:
        password = None
    if password:
        values.append(str(password))
    # Very short values ("a") would mask ordinary words, and a password equal to a user name
    # (the simulators' admin/admin) would mask that name everywhere: neither hides anything.
    users = {config.servicenow.user, config.jira.user}
    return [v for v in values if len(v) >= 4 and v not in users]


def configure_logging(config: Config, log_format: LogFormat, *, stream: Any = None) -> logging.Handler:
    """Route all logging through one handler in ``log_format`` at ``[log] level``.

    Returns the handler (tests remove it again). Replaces handlers already on the root
    logger so every line has the same shape.
    """
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    secrets = secrets_of(config)
    handler.setFormatter(JsonFormatter(secrets) if log_format == "json" else TextFormatter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.log.level)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
