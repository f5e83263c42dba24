"""The one clock every job reads for business dates ("today", "last month", "closed month").

Production reads the wall clock. The sandbox and the tests pin "today" (``PINNED_TODAY``, e.g.
2026-11-28) so that "closed month" and "12 months back" give the same answers on every day the
tests run (DESIGN §7 Time). A pinned clock still moves forward with real elapsed time (it is the
wall clock shifted by a whole number of days), so durations and leases measured with it stay true.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from integrations.config import DEFAULT_BUSINESS_TIME_ZONE, Settings


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Clock:
    """``now()`` in UTC and ``today()`` in the business time zone, pinned or not."""

    pinned_today: date | None = None
    zone: str = DEFAULT_BUSINESS_TIME_ZONE
    source: Callable[[], datetime] = wall_clock

    def now(self) -> datetime:
        wall = self.source()
        if self.pinned_today is None:
            return wall
        local = wall.astimezone(ZoneInfo(self.zone))
        shifted = datetime.combine(self.pinned_today, time(local.hour, local.minute, local.second))
        # re-attach the zone for the pinned day (its UTC offset may differ from today's)
        return shifted.replace(tzinfo=ZoneInfo(self.zone), microsecond=local.microsecond).astimezone(UTC)

    def today(self) -> date:
        return self.now().astimezone(ZoneInfo(self.zone)).date()

    def days_ago(self, days: int) -> date:
        return self.today() - timedelta(days=days)


def clock_for(settings: Settings) -> Clock:
    """The run's clock: pinned when ``PINNED_TODAY`` is set (sandbox, tests), else the wall clock;
    dates in the business time zone (``BUSINESS_TIME_ZONE``)."""
    return Clock(pinned_today=settings.pinned_today, zone=settings.business_time_zone)
