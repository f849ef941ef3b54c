"""The session user's time zone and date format, as the instance applies them.

Values are stored in UTC (`YYYY-MM-DD HH:MM:SS`); display values
(`sysparm_display_value=true|all`) show them in the user's time zone (`sys_user.time_zone`)
and date format (`sys_user.date_format`, a Java pattern such as `MM/dd/yyyy`), and
`gs.dateGenerate()` literals in queries and datetimes written with
`sysparm_input_display_value=true` are read in that zone (and, for the latter, that format).
An empty time zone or format means the instance default: UTC and `yyyy-MM-dd`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

STORED = "%Y-%m-%d %H:%M:%S"
_JAVA_TO_STRFTIME = (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"))


@dataclass(frozen=True)
class UserZone:
    time_zone: str = ""
    date_format: str = ""

    @classmethod
    def of(cls, user: dict[str, str] | None) -> UserZone:
        if user is None:
            return cls()
        return cls(user.get("time_zone", ""), user.get("date_format", ""))

    @property
    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.time_zone) if self.time_zone else ZoneInfo("UTC")
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo("UTC")  # an unknown zone falls back to the default, as on the instance

    def _pattern(self) -> str:
        pattern = self.date_format or "yyyy-MM-dd"
        for java, c in _JAVA_TO_STRFTIME:
            pattern = pattern.replace(java, c)
        return f"{pattern} %H:%M:%S"

    def display(self, stored: str) -> str:
        """A stored UTC datetime as the user sees it; anything unparsable shown as stored."""
        try:
            moment = datetime.strptime(stored, STORED).replace(tzinfo=UTC)
        except ValueError:
            return stored
        return moment.astimezone(self.zone).strftime(self._pattern())

    def to_utc(self, local: str) -> str | None:
        """A `YYYY-MM-DD HH:MM:SS` wall-clock time in the user's zone as the stored UTC value."""
        try:
            moment = datetime.strptime(local, STORED).replace(tzinfo=self.zone)
        except ValueError:
            return None
        return moment.astimezone(UTC).strftime(STORED)

    def from_display(self, text: str) -> str | None:
        """A datetime as the user types it (their date format and zone) as the stored UTC
        value; the internal `yyyy-MM-dd HH:mm:ss` is accepted too, still read in the user's
        zone (a display value is always local time). None when neither format fits."""
        for pattern in (self._pattern(), STORED):
            try:
                moment = datetime.strptime(text.strip(), pattern).replace(tzinfo=self.zone)
            except ValueError:
                continue
            return moment.astimezone(UTC).strftime(STORED)
        return None
