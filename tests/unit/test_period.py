"""The billing period: parsing, UTC month bounds, and the default month in Los Angeles time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from create_invoices.period import Period

LOS_ANGELES = "America/Los_Angeles"
LA = ZoneInfo(LOS_ANGELES)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_parse_reads_year_and_month():
    assert Period.parse("2026-10") == Period(2026, 10)
    assert Period.parse(" 2027-01 ") == Period(2027, 1)


@pytest.mark.parametrize(
    "text", ["2026-13", "2026-00", "2026-1", "26-10", "2026/10", "", "2026-10-01", "October", "２０２６-10"]
)
def test_parse_rejects_anything_but_yyyy_mm_with_a_clear_message(text):
    with pytest.raises(ValueError, match=r"YYYY-MM|01\.\.12") as caught:
        Period.parse(text)
    assert repr(text) in str(caught.value)


def test_constructor_rejects_an_impossible_month():
    with pytest.raises(ValueError, match="month"):
        Period(2026, 13)


def test_labels_for_markers_doc_numbers_and_invoices():
    period = Period(2026, 10)
    assert period.label == "2026-10"
    assert str(period) == "2026-10"
    assert period.compact == "202610"
    assert period.month_name == "October 2026"
    assert Period(2027, 1).label == "2027-01"


def test_bounds_are_utc_with_exclusive_end():
    period = Period(2026, 10)
    assert period.start == datetime(2026, 10, 1, tzinfo=UTC)
    assert period.end == datetime(2026, 11, 1, tzinfo=UTC)
    assert period.start.utcoffset() == timedelta(0)
    assert Period(2026, 12).end == datetime(2027, 1, 1, tzinfo=UTC)


def test_first_and_last_day_including_leap_february():
    assert Period(2026, 10).first_day == date(2026, 10, 1)
    assert Period(2026, 10).last_day == date(2026, 10, 31)
    assert Period(2026, 2).last_day == date(2026, 2, 28)
    assert Period(2028, 2).last_day == date(2028, 2, 29)
    assert Period(2026, 12).last_day == date(2026, 12, 31)


def test_last_second_of_october_utc_is_october_and_midnight_is_november():
    october, november = Period(2026, 10), Period(2026, 11)
    assert october.contains(utc("2026-10-31T23:59:59"))
    assert october.contains(utc("2026-10-31T23:59:59.999999"))
    assert not october.contains(utc("2026-11-01T00:00:00"))
    assert november.contains(utc("2026-11-01T00:00:00"))
    assert october.contains(utc("2026-10-01T00:00:00"))
    assert not october.contains(utc("2026-09-30T23:59:59"))


def test_contains_compares_in_utc_whatever_the_zone_of_the_moment():
    # 17:00 on Oct 31 in Los Angeles (PDT, -7) is already Nov 1 in UTC
    evening = datetime(2026, 10, 31, 17, 0, tzinfo=LA)
    assert not Period(2026, 10).contains(evening)
    assert Period(2026, 11).contains(evening)
    plus_two = datetime(2026, 11, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))  # 2026-10-31T23:00Z
    assert Period(2026, 10).contains(plus_two)


def test_contains_refuses_naive_datetimes():
    with pytest.raises(ValueError, match="timezone-aware"):
        Period(2026, 10).contains(datetime(2026, 10, 15, 12, 0))


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-11-04T17:00:00", Period(2026, 10)),  # the schedule: 4th, 09:00 PST
        ("2026-11-05T17:00:00", Period(2026, 10)),  # a late retry on the 5th still bills October
        ("2026-11-01T06:30:00", Period(2026, 9)),  # Oct 31 23:30 PDT (UTC-7): still October locally
        ("2026-11-01T06:59:59", Period(2026, 9)),  # Oct 31 23:59:59 PDT
        ("2026-11-01T07:00:00", Period(2026, 10)),  # Nov 1 00:00 PDT
        ("2026-11-01T08:30:00", Period(2026, 10)),  # Nov 1 01:30 PDT (first 01:30)
        ("2026-11-01T09:30:00", Period(2026, 10)),  # Nov 1 01:30 PST (after the DST change)
        ("2026-12-01T07:59:59", Period(2026, 10)),  # Nov 30 23:59:59 PST (UTC-8)
        ("2026-12-01T08:00:00", Period(2026, 11)),  # Dec 1 00:00 PST
        ("2026-04-01T06:59:59", Period(2026, 2)),  # Mar 31 23:59:59 PDT (DST began Mar 8)
        ("2026-04-01T07:00:00", Period(2026, 3)),  # Apr 1 00:00 PDT
        ("2026-03-08T09:30:00", Period(2026, 2)),  # Mar 8 01:30 PST, just before the spring change
        ("2026-01-04T17:00:00", Period(2025, 12)),  # January bills December of the year before
        ("2026-01-01T07:59:59", Period(2025, 11)),  # Dec 31 2025 23:59:59 PST
        ("2026-01-01T08:00:00", Period(2025, 12)),  # Jan 1 2026 00:00 PST
    ],
)
def test_previous_to_is_the_month_before_in_los_angeles(moment, expected):
    assert Period.previous_to(utc(moment), LOS_ANGELES) == expected


def test_previous_to_accepts_any_aware_zone_and_other_zones():
    assert Period.previous_to(datetime(2026, 11, 4, 9, 0, tzinfo=LA), LOS_ANGELES) == Period(2026, 10)
    assert Period.previous_to(utc("2026-11-01T06:30:00"), tz="UTC") == Period(2026, 10)
    assert Period.previous_to(utc("2026-10-31T23:30:00"), tz="Europe/Berlin") == Period(2026, 10)


def test_previous_to_refuses_naive_moments_and_unknown_zones():
    with pytest.raises(ValueError, match="timezone-aware"):
        Period.previous_to(datetime(2026, 11, 4, 9, 0), LOS_ANGELES)
    with pytest.raises(ValueError, match="unknown time zone"):
        Period.previous_to(utc("2026-11-04T17:00:00"), tz="Mars/Olympus_Mons")


def test_periods_order_and_step_across_years():
    assert Period(2026, 9) < Period(2026, 10) < Period(2027, 1)
    assert Period(2027, 1).previous() == Period(2026, 12)
    assert Period(2026, 12).next() == Period(2027, 1)
    assert sorted([Period(2027, 1), Period(2026, 2), Period(2026, 11)]) == [
        Period(2026, 2),
        Period(2026, 11),
        Period(2027, 1),
    ]
