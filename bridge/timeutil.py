"""Time, one copy for the whole core: the clock, UTC normalisation and time-zone names.

Naive datetimes only come from our own code paths (SQLite hands them back naive) and are
UTC by the project's convention.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Aware UTC; a naive value is taken as UTC."""
    if value.tzinfo is UTC:
        return value  # most calls: reports meet every stored time several times
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ``ValueError`` with a line an admin can act on if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin')") from None
