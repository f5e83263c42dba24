"""Late usage and holds: which months reopen, what is still unbilled, and why an invoice is held."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest

from create_invoices.billing import split_lines
from create_invoices.holds import HoldRules, held_note, hold_reasons, released_note
from create_invoices.late_usage import late_lines, look_back, reopened
from create_invoices.period import Period, PeriodRefused, check_billable
from integrations.clock import Clock
from integrations.identifiers import is_held
from tests.unit.test_billing import book, entry, run, runtime

OCTOBER, NOVEMBER = Period(2026, 10), Period(2026, 11)


def test_look_back_lists_the_closed_months_most_recent_first() -> None:
    assert look_back(Period(2027, 1), 3) == [Period(2026, 12), NOVEMBER, OCTOBER]


def test_only_months_this_system_closed_reopen() -> None:
    states = {OCTOBER: "invoiced", Period(2026, 9): "nothing", Period(2026, 8): "pending"}
    assert reopened(states) == [Period(2026, 9), OCTOBER]


def test_late_lines_bill_only_what_no_invoice_holds_as_their_own_lines() -> None:
    runs = [
        run("r1", "1800"),
        run("r2", "900", start="2026-10-20T08:00:00"),
        run("nov", "600", start="2026-11-02T08:00:00"),
    ]
    entries = {OCTOBER: [entry("e1", 60), entry("e2", 30)]}
    billed = frozenset({"r1", "e1"})

    (late,) = late_lines([OCTOBER], runs, entries, billed, book(robot="40", service="150"))

    # r2: 900 s = 0.25 h x 40 = 10.00; e2: 30 min = 0.50 h x 150 = 75.00. r1/e1 are on an invoice.
    assert [(line.description, line.amount) for line in late.priced.lines] == [
        ("Late time from October 2026: Robot runtime – Invoice bot: 1 run, 0.25 h", D("10.00")),
        ("Late time from October 2026: Professional services – Quarterly close: 0.50 h", D("75.00")),
    ]
    assert {row.usage_period for line in late.priced.lines for row in line.trace} == {"2026-10"}


def test_nothing_late_means_no_late_lines() -> None:
    assert late_lines([OCTOBER], [run("r1")], {OCTOBER: [entry("e1")]}, frozenset({"r1", "e1"}), book()) == []


def test_an_entry_over_the_maximum_or_a_total_far_over_the_median_holds_the_invoice() -> None:
    lines = split_lines(
        runtime(), [entry("long", 13 * 60)], book(service="150")
    ).lines  # 13 h x 150 = 1,950.00
    rules = HoldRules()

    reasons = hold_reasons(lines, [D("600"), D("500"), D("700"), D("10000")], rules)

    assert reasons == [
        "time entry long (Quarterly close) is 13.00 h, over the 12 h maximum",
        "total 1950.00 is over 3x the median 600.00 of the client's last 3 invoices",
    ]
    assert (
        hold_reasons(lines, [D("600"), D("500")], HoldRules(max_hours=24)) == []
    )  # fewer than 3: no median rule
    assert (
        hold_reasons(lines, [D("650"), D("650"), D("650")], HoldRules(max_hours=24)) == []
    )  # 1,950 = 3 x 650


def test_the_hold_marker_is_added_and_taken_out_of_the_note() -> None:
    note = held_note(
        "invoice-processor:10004:2026-10 (created by the invoice processor; keep this note)", ["x"]
    )
    assert is_held(note)
    released = released_note(note, "2026-11-29")
    assert not is_held(released)
    assert released.startswith("invoice-processor:10004:2026-10 (created") and released.endswith(
        "(hold released 2026-11-29)"
    )


@pytest.mark.parametrize(
    ("period", "today", "backfill", "refused"),
    [
        (OCTOBER, date(2026, 11, 1), False, None),  # ended in Los Angeles the night before
        (NOVEMBER, date(2026, 11, 30), False, "it can be billed from 2026-12-01"),
        (Period(2025, 11), date(2026, 11, 28), False, None),  # exactly 12 months back
        (Period(2025, 10), date(2026, 11, 28), False, "earliest without --backfill is 2025-11"),
        (Period(1999, 1), date(2026, 11, 28), True, None),
        (Period(2099, 1), date(2026, 11, 28), True, "it can be billed from 2099-02-01"),
    ],
)
def test_only_closed_months_within_a_year_bill_without_backfill(
    period: Period, today: date, backfill: bool, refused: str | None
) -> None:
    if refused is None:
        check_billable(period, today, "America/Los_Angeles", backfill=backfill)
    else:
        with pytest.raises(PeriodRefused, match=refused):
            check_billable(period, today, "America/Los_Angeles", backfill=backfill)


def test_a_pinned_clock_reads_the_pinned_day_in_the_business_zone_at_any_wall_time() -> None:
    from datetime import UTC, datetime

    late_evening_utc = Clock(date(2026, 11, 28), source=lambda: datetime(2027, 3, 1, 7, 59, tzinfo=UTC))
    assert late_evening_utc.today() == date(2026, 11, 28)
    assert Clock(source=lambda: datetime(2026, 12, 1, 7, 59, tzinfo=UTC)).today() == date(2026, 11, 30)
