"""The billing period: one calendar month, bounded in UTC.

Robocorp and ClickUp timestamps are compared in UTC (DESIGN §1), while the *default* period is the
month before the scheduled time in the practice's zone (America/Los_Angeles): a job scheduled for
the 4th at 09:00 Pacific bills the previous month even when it runs late.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_PERIOD = re.compile(r"([0-9]{4})-([0-9]{2})")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass(frozen=True, order=True)
class Period:
    """A calendar month, e.g. ``Period(2026, 10)``; ``str(period)`` is ``"2026-10"``."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not isinstance(self.year, int) or not isinstance(self.month, int):
            raise TypeError(f"year and month must be integers (got {self.year!r}, {self.month!r})")
        if not 1 <= self.month <= 12:
            raise ValueError(f"month must be 1..12 (got {self.month})")
        if not 1 <= self.year <= 9998:  # 9999-12 would have no "next month" to end at
            raise ValueError(f"year must be 1..9998 (got {self.year})")

    def __str__(self) -> str:
        return self.label

    @classmethod
    def parse(cls, text: str) -> Period:
        """Parse ``YYYY-MM`` (as given to ``--period``); anything else is a ValueError saying so."""
        match = _PERIOD.fullmatch(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"period must look like YYYY-MM, e.g. 2026-10 (got {text!r})")
        year, month = int(match.group(1)), int(match.group(2))
        if not 1 <= month <= 12:
            raise ValueError(f"period month must be 01..12 (got {text!r})")
        if year < 1:
            raise ValueError(f"period year must be 0001 or later (got {text!r})")
        return cls(year, month)

    @classmethod
    def previous_to(cls, moment: datetime, tz: str) -> Period:
        """The calendar month before the month ``moment`` falls in, as seen in zone ``tz``."""
        _require_aware(moment, "moment")
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {tz!r}") from exc
        local = moment.astimezone(zone)
        return cls(local.year, local.month).previous()

    def previous(self) -> Period:
        return Period(self.year - 1, 12) if self.month == 1 else Period(self.year, self.month - 1)

    def next(self) -> Period:
        return Period(self.year + 1, 1) if self.month == 12 else Period(self.year, self.month + 1)

    @property
    def label(self) -> str:
        """``2026-10``: used in markers, ledger keys and folder names."""
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def compact(self) -> str:
        """``202610``: used in DocNumber (max 21 characters in QBO)."""
        return f"{self.year:04d}{self.month:02d}"

    @property
    def month_name(self) -> str:
        """``October 2026``: how the period reads on an invoice."""
        return f"{_MONTHS[self.month - 1]} {self.year}"

    @property
    def start(self) -> datetime:
        """First instant of the month, UTC (inclusive)."""
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """First instant of the next month, UTC (exclusive)."""
        following = self.next()
        return datetime(following.year, following.month, 1, tzinfo=UTC)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return self.end.date() - timedelta(days=1)

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` (aware, any zone) falls in ``[start, end)`` compared in UTC."""
        _require_aware(moment, "moment")
        return self.start <= moment.astimezone(UTC) < self.end


def _require_aware(moment: datetime, what: str) -> None:
    if not isinstance(moment, datetime):
        raise TypeError(f"{what} must be a datetime (got {type(moment).__name__})")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (got naive {moment.isoformat()})")
