"""Value conversions between a system's representation and the canonical one.

Each mapping field has a ``type`` naming one of the codecs below. A codec turns what an
adapter presents (``SystemRecord.fields``) into the value the canonical model expects and
back. The same name can behave per system: ServiceNow's Table API is string-valued
(``"3"``, ``"true"``, ``""`` for empty) while Jira speaks JSON (``3``, ``true``, ``null``).

Codecs are also the *normal form* used to compare values: two system values are the same
when their canonical forms are equal, so ``"2026-01-05 10:00:00"`` and the datetime it
stands for are no change, and neither are ``"3"`` and ``3``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from bridge.timeutil import as_utc

TYPES = (
    "string",
    "int",
    "decimal",
    "bool",
    "servicenow_datetime",
    "jira_date",
    "jira_datetime",
    "ref",
)

# Types a value map may be combined with: the map's keys are read with the type's codec.
VALUE_MAP_TYPES = ("string", "int", "bool")

_SN_DATETIME = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class Codec:
    """Converts one field's values; both functions raise ``ValueError`` on bad input."""

    name: str
    expected: str  # what a valid system value looks like, for error messages
    to_canonical: Callable[[Any], Any]
    to_system: Callable[[Any], Any]


def unwrap(raw: Any) -> Any:
    """A ServiceNow reference or ``display_value=all`` field ``{"value": …}`` -> its value."""
    if isinstance(raw, dict) and "value" in raw:
        return raw["value"]
    return raw


def is_empty(raw: Any) -> bool:
    return raw is None or raw == "" or raw == [] or raw == {}


def as_text(raw: Any) -> str:
    """The text form of a system value, for value-map keys (``True`` -> ``"true"``)."""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    return str(raw)


def as_datetime(value: Any) -> datetime:
    """A canonical datetime (aware, naive UTC, or ISO text from ``model_dump``) in UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise ValueError(f"{value!r} is not a datetime")
    return as_utc(value)


def codec_for(type_name: str, system: str, timezone: str = "UTC") -> Codec:
    """The codec for a mapping ``type`` as used in ``system``'s mapping file."""
    string_valued = system == "servicenow"
    empty: Any = "" if string_valued else None
    if type_name == "string":
        return Codec("string", "text", _string_in, lambda v: "" if v is None else as_text(v))
    if type_name == "ref":  # a system id; resolving it to a canonical key is the engine's job
        return Codec(
            "ref", "a system id", _string_in, lambda v: empty if is_empty(v) else as_text(v)
        )
    if type_name == "int":
        return Codec("int", "a whole number", _int_in, _int_out(string_valued))
    if type_name == "decimal":
        return Codec("decimal", "a number", _decimal_in, _decimal_out(string_valued))
    if type_name == "bool":
        return Codec("bool", "true or false", _bool_in, _bool_out(string_valued))
    if type_name == "servicenow_datetime":
        return Codec(type_name, "'YYYY-MM-DD HH:MM:SS' (UTC)", _sn_datetime_in, _sn_datetime_out)
    if type_name == "jira_date":
        zone = ZoneInfo(timezone)
        return Codec(type_name, "'yyyy-mm-dd'", _jira_date_in(zone), _jira_date_out(zone))
    if type_name == "jira_datetime":
        return Codec(
            type_name,
            "'yyyy-mm-ddTHH:MM:SS.sss+hhmm'",
            _jira_datetime_in,
            lambda v: empty if v is None else format_jira_datetime(as_datetime(v)),
        )
    raise ValueError(f"unknown type {type_name!r}")


def _string_in(raw: Any) -> str:
    return "" if raw is None else as_text(raw)


def _int_in(raw: Any) -> int | None:
    if is_empty(raw):
        return None
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not a whole number")
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    return int(str(raw).strip())


def _int_out(string_valued: bool) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value is None:
            return "" if string_valued else None
        number = _int_in(value)
        return str(number) if string_valued else number

    return convert


def _decimal_in(raw: Any) -> float | None:
    if is_empty(raw):
        return None
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not a number")
    number = float(str(raw).strip())
    if not math.isfinite(number):
        raise ValueError(f"{raw!r} is not a number")
    return number


def _decimal_out(string_valued: bool) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value is None:
            return "" if string_valued else None
        number = _decimal_in(value)
        return format(number, "g") if string_valued else number

    return convert


def _bool_in(raw: Any) -> bool | None:
    if is_empty(raw):
        return None
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"{raw!r} is not true or false")


def _bool_out(string_valued: bool) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        flag = _bool_in(value)
        if flag is None:
            return "" if string_valued else None
        return as_text(flag) if string_valued else flag

    return convert


def _sn_datetime_in(raw: Any) -> datetime | None:
    if is_empty(raw):
        return None
    if isinstance(raw, datetime):
        return as_datetime(raw)
    return datetime.strptime(str(raw).strip(), _SN_DATETIME).replace(tzinfo=UTC)


def _sn_datetime_out(value: Any) -> str:
    return "" if value is None else as_datetime(value).strftime(_SN_DATETIME)


def _jira_date_in(zone: ZoneInfo) -> Callable[[Any], datetime | None]:
    def convert(raw: Any) -> datetime | None:
        if is_empty(raw):
            return None
        day = raw if isinstance(raw, date) and not isinstance(raw, datetime) else None
        if day is None:
            text = str(raw).strip()
            if len(text) != 10:
                raise ValueError(f"{raw!r} is not a date")
            day = date.fromisoformat(text)
        # The start of that day where the Jira users live, as a UTC instant.
        return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)

    return convert


def _jira_date_out(zone: ZoneInfo) -> Callable[[Any], str | None]:
    def convert(value: Any) -> str | None:
        if value is None:
            return None
        return as_datetime(value).astimezone(zone).date().isoformat()

    return convert


def _jira_datetime_in(raw: Any) -> datetime | None:
    if is_empty(raw):
        return None
    if isinstance(raw, datetime):
        return as_datetime(raw)
    parsed = datetime.fromisoformat(str(raw).strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{raw!r} has no UTC offset")
    return parsed.astimezone(UTC)


def format_jira_datetime(value: datetime) -> str:
    """Jira's own format: ``2019-01-30T12:51:33.199+0000`` (milliseconds, ``+hhmm``)."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"
