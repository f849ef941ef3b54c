"""ServiceNow's value formats: UTC ``YYYY-MM-DD HH:MM:SS`` datetimes and encoded-query text."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from bridge.errors import BadInput

SN_DATETIME = "%Y-%m-%d %H:%M:%S"


def format_datetime(value: datetime) -> str:
    """A datetime as ServiceNow stores it (UTC); a naive value is taken to be UTC already."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime(SN_DATETIME)


def parse_datetime(value: str) -> datetime:
    """``2025-03-04 10:11:12`` (UTC, as the Table API returns it) -> aware datetime."""
    return datetime.strptime(value, SN_DATETIME).replace(tzinfo=UTC)


def query_value(value: str) -> str:
    """A value safe to splice into an encoded query.

    ``^`` separates conditions and ``,`` separates ``IN`` items, so a value holding either
    would silently change the query's meaning; such values are refused instead.
    """
    if not value or "^" in value or "," in value or "\n" in value:
        raise BadInput(f"{value!r} cannot be used in a ServiceNow query")
    return value


def in_list(values: Iterable[str]) -> str:
    """The comma-separated operand of an ``IN`` condition."""
    return ",".join(query_value(v) for v in values)


#: Values per ``IN`` condition. A sys_id is about 35 URL-encoded characters, so a request
#: line stays near 5 KB: well below the 16 KB an instance's Tomcat front accepts (it answers
#: "400 Request header is too large" past it) and the 8 KB many proxies allow.
MAX_IN_VALUES = 150


def in_lists(values: Iterable[str], size: int = MAX_IN_VALUES) -> Iterator[str]:
    """``IN`` operands of at most ``size`` values each: one query per operand, so a long list
    never makes an over-long URL."""
    items = list(values)
    for start in range(0, len(items), size):
        yield in_list(items[start:start + size])


def reference_value(value: object) -> str:
    """The sys_id held by a reference field, whatever shape it came in.

    ``{"link", "value"}`` without ``sysparm_exclude_reference_link``, a plain string with it.
    """
    if isinstance(value, dict):
        value = value.get("value", "")
    return value if isinstance(value, str) else ""
