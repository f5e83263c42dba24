"""Billing maths. Expected amounts are worked out by hand in each test, never by the code under test."""

from __future__ import annotations

import json
import tracemalloc
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

from create_invoices.billing import (
    InvoiceLine,
    ItemRef,
    PriceBook,
    PricingError,
    aggregate_runtime,
    allocate,
    build_draft,
    cents,
    doc_number,
    draft_to_qbo,
    hours,
    price_book_from_items,
    prices_for,
    read_trace_csv,
    split_lines,
    trace_csv,
)
from create_invoices.period import Period
from integrations import decimal_json
from integrations.models import ClientRecord, ProcessRun, TimeEntry

D = Decimal
OCTOBER = Period(2026, 10)
ROBOT = ItemRef("7", "Robot Runtime")
SERVICE = ItemRef("8", "Professional Services")
FEE = ItemRef("9", "Automation Subscription")
ITEMS = [
    {
        "Id": "7",
        "Name": "Robot Runtime",
        "FullyQualifiedName": "Robot Runtime",
        "UnitPrice": 95.5,
        "Active": True,
    },
    {"Id": "8", "Name": "Professional Services", "UnitPrice": 150, "Active": True},
    {"Id": "9", "Name": "Automation Subscription", "UnitPrice": 500, "Active": True},
    {"Id": "3", "Name": "Hours", "UnitPrice": 10, "Active": True},
]
CUSTOMER = {
    "Id": "58",
    "DisplayName": "10005 - O'Brien & Søn Ltd",
    "PrimaryEmailAddr": {"Address": "ap@obrien-son.example"},
    "Active": True,
}


def book(robot: str = "95.50", service: str = "150.00", fee: str | None = None) -> PriceBook:
    return PriceBook(D(robot), D(service), D(fee) if fee else None, ROBOT, SERVICE, FEE)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def run(
    run_id: str,
    seconds: str | None = "1800",
    *,
    start: str = "2026-10-10T08:00:00",
    process: str = "Invoice bot",
    process_id: str = "p1",
    workspace: str = "ws1",
    state: str = "completed",
    ended: bool = True,
) -> ProcessRun:
    begin = at(start)
    duration = D(seconds) if seconds is not None else None
    end = begin + timedelta(seconds=float(duration)) if ended and duration is not None else None
    return ProcessRun(run_id, workspace, process_id, process, state, begin, end, duration)


def entry(
    entry_id: str,
    minutes: int = 60,
    *,
    task_id: str | None = "t1",
    task_name: str | None = "Quarterly close",
    description: str = "",
    user: str = "Zoë Ångström",
    start: str = "2026-10-12T09:00:00",
    duration_ms: int | None = None,
) -> TimeEntry:
    ms = duration_ms if duration_ms is not None else minutes * 60_000
    begin = at(start)
    return TimeEntry(
        id=entry_id,
        user_id="u1",
        user_name=user,
        billable=True,
        start=begin,
        end=begin + timedelta(milliseconds=ms) if ms >= 0 else None,
        duration_ms=ms,
        task_id=task_id,
        task_name=task_name,
        description=description,
        space_name="Clients",
        folder_name="10005 - O'Brien & Søn Ltd",
        list_name="Accounting",
    )


def runtime(*runs: ProcessRun):
    return aggregate_runtime(list(runs), OCTOBER)


# -- numbers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (3600, "1.00"),
        (5400, "1.50"),
        (4800, "1.33"),  # 1.3333...
        (18, "0.01"),  # 0.005 rounds half up
        (17, "0.00"),
        (0, "0.00"),
        (D("1234.567"), "0.34"),  # 0.342935...
        (D("4788"), "1.33"),
        (D("5382"), "1.50"),  # 1.495 rounds half up
    ],
)
def test_hours_have_two_decimals_rounded_half_up(seconds, expected):
    assert hours(seconds) == D(expected)
    assert str(hours(seconds)) == expected


@pytest.mark.parametrize(
    ("amount", "expected"), [("127.015", "127.02"), ("0.005", "0.01"), ("2.675", "2.68"), ("0.004", "0.00")]
)
def test_cents_round_half_up(amount, expected):
    assert str(cents(D(amount))) == expected


@pytest.mark.parametrize("bad", [1.5, True])
def test_floats_never_enter_the_money_maths(bad):
    with pytest.raises(TypeError):
        hours(bad)
    with pytest.raises(TypeError):
        cents(bad)


# -- prices ----------------------------------------------------------------------------------------
def test_price_book_reads_unit_prices_exactly_and_matches_names_case_insensitively():
    prices = price_book_from_items(
        ITEMS, "robot runtime", " PROFESSIONAL SERVICES ", "automation subscription"
    )
    assert prices.robot_hour == D("95.50")  # 95.5 via str(), not the float's binary value
    assert prices.service_hour == D("150.00")
    assert prices.robot_item == ROBOT
    assert prices.service_item == SERVICE
    assert prices.fee_item == FEE
    # the subscription item's 500 is NOT a fee for everyone: only the registry sets a fee
    assert prices.monthly_fee is None


def test_a_unit_price_like_0_1_stays_exactly_one_tenth():
    items = [{"Id": "1", "Name": "R", "UnitPrice": 0.1}, {"Id": "2", "Name": "S", "UnitPrice": 12.345}]
    prices = price_book_from_items(items, "R", "S", "F")
    assert prices.robot_hour == D("0.10")
    assert prices.service_hour == D("12.345")


@pytest.mark.parametrize("missing", ["Robot Runtime", "Professional Services"])
def test_a_missing_robot_or_service_item_is_a_pricing_error_naming_it(missing):
    items = [item for item in ITEMS if item["Name"] != missing]
    with pytest.raises(PricingError, match=missing) as caught:
        price_book_from_items(items, "Robot Runtime", "Professional Services", "Automation Subscription")
    assert isinstance(caught.value, ValueError)


def test_an_inactive_item_is_not_used_and_says_so():
    items = [{**ITEMS[0], "Active": False}, *ITEMS[1:]]
    with pytest.raises(PricingError, match="inactive"):
        price_book_from_items(items, "Robot Runtime", "Professional Services", "Automation Subscription")


def test_an_active_item_wins_over_an_inactive_one_of_the_same_name():
    items = [{**ITEMS[0], "Id": "70", "Active": False, "UnitPrice": 1}, *ITEMS]
    prices = price_book_from_items(items, "Robot Runtime", "Professional Services", "Automation Subscription")
    assert prices.robot_item.id == "7"


def test_two_active_items_with_one_name_are_ambiguous_unless_named_in_full():
    sub_item = {
        "Id": "71",
        "Name": "Robot Runtime",
        "FullyQualifiedName": "Legacy:Robot Runtime",
        "UnitPrice": 60,
    }
    items = [*ITEMS, sub_item]
    prices = price_book_from_items(items, "Legacy:Robot Runtime", "Professional Services", "x")
    assert (prices.robot_item.id, prices.robot_hour) == ("71", D("60.00"))
    assert price_book_from_items(items, "robot runtime", "Professional Services", "x").robot_item.id == "7"
    twin = {"Id": "72", "Name": "Professional Services", "FullyQualifiedName": "Old:Professional Services"}
    with pytest.raises(PricingError, match="several"):
        price_book_from_items(
            [*ITEMS, twin, {**twin, "Id": "73", "FullyQualifiedName": "New:Professional Services"}],
            "Robot Runtime",
            "professional services",
            "x",
        )


def test_without_a_fee_item_clients_without_a_fee_are_fine_and_clients_with_one_fail():
    items = [item for item in ITEMS if item["Name"] != "Automation Subscription"]
    base = price_book_from_items(items, "Robot Runtime", "Professional Services", "Automation Subscription")
    assert base.fee_item is None
    assert prices_for(ClientRecord("10002"), base).monthly_fee is None
    with pytest.raises(PricingError, match="Automation Subscription") as caught:
        prices_for(ClientRecord("10003", monthly_fee=D("250.00")), base)
    assert "10003" in str(caught.value)


def test_registry_overrides_win_over_item_prices():
    base = price_book_from_items(ITEMS, "Robot Runtime", "Professional Services", "Automation Subscription")
    client = ClientRecord(
        "10002", robot_hour_rate=D("80"), service_hour_rate=D("120.5"), monthly_fee=D("250.00")
    )
    prices = prices_for(client, base)
    assert (prices.robot_hour, prices.service_hour, prices.monthly_fee) == (
        D("80.00"),
        D("120.50"),
        D("250.00"),
    )
    assert (prices.robot_item, prices.service_item, prices.fee_item) == (ROBOT, SERVICE, FEE)
    plain = prices_for(ClientRecord("10003"), base)
    assert (plain.robot_hour, plain.service_hour, plain.monthly_fee) == (D("95.50"), D("150.00"), None)


def test_a_zero_monthly_fee_in_the_registry_means_no_fee_line():
    base = price_book_from_items(ITEMS, "Robot Runtime", "Professional Services", "Automation Subscription")
    assert prices_for(ClientRecord("10002", monthly_fee=D("0")), base).monthly_fee is None


# -- robot runtime ---------------------------------------------------------------------------------
def test_runs_are_billed_to_the_month_they_started_in_utc():
    usage = runtime(
        run("last-second", "601", start="2026-10-31T23:59:59"),  # ends in November: October's
        run("november", "60", start="2026-11-01T00:00:00"),
        run("september", "60", start="2026-09-30T23:59:59"),  # ends in October: September's
        run("first", "60", start="2026-10-01T00:00:00"),
    )
    [process] = usage.processes
    assert [r.id for r in process.runs] == ["first", "last-second"]
    assert process.seconds == D("661")


def test_runs_not_ended_are_listed_as_unfinished_not_billed():
    usage = runtime(
        run("done", "3600"),
        run("in-progress", None, state="in_progress", ended=False, start="2026-10-30T10:00:00"),
        run("no-end", "100", ended=False, start="2026-10-29T10:00:00"),  # completed but no ended_at
        run("stopping", "100", state="stopping", start="2026-10-28T10:00:00"),
        run("no-duration", None, start="2026-10-27T10:00:00"),
        run("elsewhen", None, state="in_progress", ended=False, start="2026-11-02T10:00:00"),
    )
    assert [r.id for r in usage.unfinished] == ["no-duration", "stopping", "no-end", "in-progress"]
    assert [r.id for p in usage.processes for r in p.runs] == ["done"]


def test_failed_runs_used_the_robot_and_are_billed():
    usage = runtime(run("failed", "900", state="unresolved"))
    assert usage.processes[0].seconds == D("900")


def test_runs_that_never_started_belong_to_no_period():
    never = ProcessRun("new", "ws1", "p1", "Invoice bot", "new", None, None, None)
    usage = runtime(never)
    assert usage.processes == [] and usage.unfinished == []


def test_duplicate_runs_are_counted_once():
    usage = runtime(run("r1", "1800"), run("r1", "1800"), run("r2", "1800"))
    assert usage.processes[0].seconds == D("3600")
    assert usage.duplicate_count == 1


def test_runtime_is_grouped_per_workspace_and_process_and_sorted_by_name():
    usage = runtime(
        run("a", "10.5", process="Invoice bot"),
        run("b", "20.25", process="Invoice bot", start="2026-10-11T08:00:00"),
        run("c", "30", process="aged receivables", process_id="p2"),
        run("d", "40", process="Invoice bot", workspace="ws2"),
    )
    got = [(p.workspace_id, p.process_id, p.process_name, p.seconds) for p in usage.processes]
    assert got == [
        ("ws1", "p2", "aged receivables", 30),
        ("ws1", "p1", "Invoice bot", 31),  # whole seconds per run: 10.5 -> 11, 20.25 -> 20
        ("ws2", "p1", "Invoice bot", 40),
    ]


def test_a_negative_run_duration_fails_the_client_loudly():
    with pytest.raises(ValueError, match="r1"):
        runtime(run("r1", "-5"))


# -- lines -----------------------------------------------------------------------------------------
def test_robot_line_is_hours_times_rate_when_that_is_whole_cents():
    # 1800 + 1800 + 1200 s = 4800 s = 1.333 h -> 1.33 h; 1.33 x 90.00 = 119.70
    [line] = split_lines(
        runtime(run("a", "1800"), run("b", "1800"), run("c", "1200")), [], book(robot="90")
    ).lines
    assert (line.kind, line.qty, line.unit_price, line.amount, line.hours) == (
        "robot",
        D("1.33"),
        D("90.00"),
        D("119.70"),
        D("1.33"),
    )
    assert line.description == "Robot runtime – Invoice bot: 3 runs, 1.33 h"
    assert line.item == ROBOT
    assert [row.source_id for row in line.trace] == ["a", "b", "c"]


def test_a_line_that_is_not_whole_cents_becomes_qty_one_at_the_rounded_amount():
    # 1.33 h x 95.50 = 127.015 -> 127.02 (half up): Qty 1 x 127.02 so that Amount == Qty x UnitPrice
    [line] = split_lines(
        runtime(run("a", "1800"), run("b", "1800"), run("c", "1200")), [], book(robot="95.50")
    ).lines
    assert (line.qty, line.unit_price, line.amount, line.hours) == (
        D("1"),
        D("127.02"),
        D("127.02"),
        D("1.33"),
    )
    assert line.description == "Robot runtime – Invoice bot: 3 runs, 1.33 h at 95.50/h"


def test_eighteen_seconds_bill_one_cent_of_an_hour_and_seventeen_bill_nothing():
    # 18 s = 0.005 h -> 0.01 h; 0.01 x 95.50 = 0.955 -> 0.96
    [line] = split_lines(runtime(run("a", "18")), [], book()).lines
    assert (line.qty, line.unit_price, line.amount) == (D("1"), D("0.96"), D("0.96"))
    priced = split_lines(runtime(run("b", "17")), [], book())
    assert priced.lines == []
    assert [row.source_id for line in priced.dropped for row in line.trace] == ["b"]


def test_half_a_cent_on_a_line_rounds_up_not_to_even():
    # 360 s = 0.10 h; 0.10 x 0.25 = 0.025 -> 0.03 (half-even would give 0.02)
    [line] = split_lines(runtime(run("a", "360")), [], book(robot="0.25")).lines
    assert (line.qty, line.unit_price, line.amount) == (D("1"), D("0.03"), D("0.03"))
    assert line.description == "Robot runtime – Invoice bot: 1 run, 0.10 h at 0.25/h"


def test_hours_are_rounded_once_per_line_not_per_entry():
    # three entries of 10 s: each 0.00 h alone, together 30 s = 0.0083 h -> 0.01 h; x 150 = 1.50
    entries = [entry(f"e{i}", duration_ms=10_000) for i in range(3)]
    [line] = split_lines(runtime(), entries, book()).lines
    assert (line.qty, line.unit_price, line.amount) == (D("0.01"), D("150.00"), D("1.50"))


def test_one_service_line_per_task_and_entries_without_task_grouped_by_description():
    entries = [
        entry("e1", 90, user="Zoë"),
        entry("e2", 45, user="Rick O'Shea"),
        entry("e3", 30, task_id=None, task_name=None, description="Call with CFO"),
        entry("e4", 15, task_id=None, task_name=None, description=""),
        entry("e5", 30, task_id=None, task_name=None, description="  Call with CFO "),
    ]
    lines = split_lines(runtime(), entries, book()).lines
    # 135 min = 2.25 h x 150 = 337.50; 60 min = 1.00 h x 150 = 150.00; 15 min = 0.25 h x 150 = 37.50
    assert [(line.description, line.qty, line.amount) for line in lines] == [
        ("Professional services – (no task): 0.25 h", D("0.25"), D("37.50")),
        ("Professional services – Call with CFO: 1.00 h", D("1.00"), D("150.00")),
        ("Professional services – Quarterly close: 2.25 h", D("2.25"), D("337.50")),
    ]
    assert {row.user for row in lines[2].trace} == {"Zoë", "Rick O'Shea"}
    assert all(line.item == SERVICE and line.unit_price == D("150.00") for line in lines)


def test_an_entry_seen_twice_is_billed_once():
    [line] = split_lines(runtime(), [entry("e1", 60), entry("e1", 60)], book()).lines
    assert line.qty == D("1.00")


def test_running_or_non_billable_entries_cannot_be_billed():
    with pytest.raises(ValueError, match="running"):
        split_lines(runtime(), [entry("e1", duration_ms=-1)], book())
    with pytest.raises(ValueError, match="not billable"):
        split_lines(runtime(), [replace(entry("e2"), billable=False)], book())


def test_a_zero_rate_with_hours_to_bill_is_a_pricing_error():
    with pytest.raises(PricingError, match="Robot Runtime"):
        split_lines(runtime(run("a", "3600")), [], book(robot="0"))
    assert split_lines(runtime(run("a", "17")), [], book(robot="0")).lines == []  # nothing to bill at it


def test_zero_usage_without_a_fee_bills_nothing():
    assert split_lines(runtime(), [], book()).lines == []
    assert build_draft(ClientRecord("10005"), CUSTOMER, OCTOBER, [], date(2026, 11, 4), True) is None


def test_zero_usage_with_a_fee_bills_only_the_fee():
    [line] = split_lines(runtime(), [], book(fee="500.00")).lines
    assert (line.kind, line.description, line.qty, line.unit_price, line.amount, line.hours) == (
        "fee",
        "Automation subscription – October 2026",
        D("1"),
        D("500.00"),
        D("500.00"),
        D("0.00"),
    )
    assert line.item == FEE
    draft = build_draft(ClientRecord("10005"), CUSTOMER, OCTOBER, [line], date(2026, 11, 4), False)
    assert draft is not None and draft.total == D("500.00")


def test_the_fee_line_takes_the_month_from_an_explicit_period():
    [line] = split_lines(runtime(), [], book(fee="99.99"), Period(2027, 1)).lines
    assert line.description == "Automation subscription – January 2027"


def full_invoice_lines() -> list[InvoiceLine]:
    base = price_book_from_items(ITEMS, "Robot Runtime", "Professional Services", "Automation Subscription")
    client = ClientRecord("10005", robot_hour_rate=D("80.00"), monthly_fee=D("250.00"))
    usage = runtime(
        run("r1", "2700"),
        run("r2", "2700", start="2026-10-20T08:00:00"),
        run("r3", "7200", process="Aged receivables", process_id="p9", workspace="ws2"),
        run("r4", None, state="in_progress", ended=False),
    )
    entries = [
        entry("e1", 90),
        entry("e2", 45),
        entry("e3", 30, task_id=None, task_name=None, description="Call with CFO"),
        entry("e4", 15, task_id=None, task_name=None),
    ]
    return split_lines(usage, entries, prices_for(client, base)).lines


def test_a_full_invoice_with_overrides_adds_up_by_hand():
    lines = full_invoice_lines()
    # robot at the 80.00 override: 7200 s = 2.00 h -> 160.00; 5400 s = 1.50 h -> 120.00
    # services at the item's 150.00: 0.25 h -> 37.50; 0.50 h -> 75.00; 2.25 h -> 337.50; fee 250.00
    assert [(line.description, line.qty, line.unit_price, line.amount) for line in lines] == [
        ("Robot runtime – Aged receivables: 1 run, 2.00 h", D("2.00"), D("80.00"), D("160.00")),
        ("Robot runtime – Invoice bot: 2 runs, 1.50 h", D("1.50"), D("80.00"), D("120.00")),
        ("Professional services – (no task): 0.25 h", D("0.25"), D("150.00"), D("37.50")),
        ("Professional services – Call with CFO: 0.50 h", D("0.50"), D("150.00"), D("75.00")),
        ("Professional services – Quarterly close: 2.25 h", D("2.25"), D("150.00"), D("337.50")),
        ("Automation subscription – October 2026", D("1"), D("250.00"), D("250.00")),
    ]
    draft = build_draft(ClientRecord("10005"), CUSTOMER, OCTOBER, lines, date(2026, 11, 4), True)
    assert draft is not None
    assert draft.total == D("980.00")  # 160 + 120 + 37.50 + 75 + 337.50 + 250
    assert [row.line for line in draft.lines for row in line.trace] == [1, 2, 2, 3, 4, 5, 5, 6]


RATES = ["95.50", "95.5", "0.01", "99.99", "123.45", "12.345", "150", "1", "33.33", "0.07", "1000.01"]


def test_amount_equals_qty_times_unit_price_exactly_for_every_combination():
    checked = 0
    for rate_text in RATES:
        rate = D(rate_text)
        prices = book(robot=rate_text, service=rate_text)
        for seconds in range(18, 40_000, 67):
            [line] = split_lines(runtime(run("r", str(seconds))), [], prices).lines
            billed = (D(seconds) / 3600).quantize(D("0.01"), rounding=ROUND_HALF_UP)
            expected = (billed * rate).quantize(D("0.01"), rounding=ROUND_HALF_UP)
            assert line.amount == line.qty * line.unit_price, (seconds, rate)
            assert line.amount == expected, (seconds, rate)
            assert line.amount == line.amount.quantize(D("0.01")), (seconds, rate)
            assert line.hours == billed
            assert (line.qty, line.unit_price) in ((billed, rate), (D(1), expected))
            sent = json.loads(decimal_json.dumps(draft_to_qbo(_draft([line]))), parse_float=D)["Line"][0]
            detail = sent["SalesItemLineDetail"]
            assert D(str(sent["Amount"])) == D(str(detail["Qty"])) * D(str(detail["UnitPrice"]))
            checked += 1
    assert checked > 5000


def test_whole_cent_products_keep_hours_as_quantity():
    # 2.25 h x 95.50 = 214.875 (not whole cents); 2.00 h x 95.50 = 191.00 (whole cents)
    [uneven] = split_lines(runtime(run("a", "8100")), [], book(robot="95.50")).lines
    [even] = split_lines(runtime(run("b", "7200")), [], book(robot="95.50")).lines
    assert (uneven.qty, uneven.unit_price, uneven.amount) == (D("1"), D("214.88"), D("214.88"))
    assert (even.qty, even.unit_price, even.amount) == (D("2.00"), D("95.50"), D("191.00"))


# -- the draft and the QBO body ----------------------------------------------------------------------
def _draft(lines, customer=CUSTOMER, custom_numbers=True):
    return build_draft(ClientRecord("10005"), customer, OCTOBER, lines, date(2026, 11, 4), custom_numbers)


def test_doc_number():
    assert doc_number("10002", OCTOBER) == "10002-202610"
    assert len(doc_number("1234567890", Period(2026, 12))) <= 21


def test_the_draft_takes_the_customer_and_its_email():
    draft = _draft(full_invoice_lines())
    assert (draft.client_id, draft.customer_id, draft.customer_name) == (
        "10005",
        "58",
        "10005 - O'Brien & Søn Ltd",
    )
    assert draft.bill_email == "ap@obrien-son.example"
    assert draft.doc_number == "10005-202610"
    assert draft.marker == "invoice-processor:10005:2026-10"
    assert _draft(full_invoice_lines(), custom_numbers=False).doc_number is None


def test_a_customer_without_email_gives_no_bill_email():
    customer = {key: value for key, value in CUSTOMER.items() if key != "PrimaryEmailAddr"}
    draft = _draft(full_invoice_lines(), customer=customer)
    assert draft.bill_email is None
    assert "BillEmail" not in draft_to_qbo(draft)
    assert (
        _draft(full_invoice_lines(), customer={**CUSTOMER, "PrimaryEmailAddr": {"Address": " "}}).bill_email
        is None
    )


def test_qbo_body_has_every_field_the_invoice_needs():
    [fee] = split_lines(runtime(), [], book(fee="250.00")).lines
    [robot] = split_lines(runtime(run("r1", "4800")), [], book(robot="95.50")).lines
    body = draft_to_qbo(_draft([robot, fee]))
    assert body == {
        "CustomerRef": {"value": "58", "name": "10005 - O'Brien & Søn Ltd"},
        "TxnDate": "2026-11-04",
        "Line": [
            {
                "LineNum": 1,
                "DetailType": "SalesItemLineDetail",
                "Amount": D("127.02"),
                "Description": "Robot runtime – Invoice bot: 1 run, 1.33 h at 95.50/h",
                "SalesItemLineDetail": {
                    "ItemRef": {"value": "7", "name": "Robot Runtime"},
                    "Qty": D("1"),
                    "UnitPrice": D("127.02"),
                },
            },
            {
                "LineNum": 2,
                "DetailType": "SalesItemLineDetail",
                "Amount": D("250.00"),
                "Description": "Automation subscription – October 2026",
                "SalesItemLineDetail": {
                    "ItemRef": {"value": "9", "name": "Automation Subscription"},
                    "Qty": D("1"),
                    "UnitPrice": D("250.00"),
                },
            },
        ],
        "PrivateNote": "invoice-processor:10005:2026-10 (created by the invoice processor; keep this note)",
        "EmailStatus": "NeedToSend",
        "BillEmail": {"Address": "ap@obrien-son.example"},
        "DocNumber": "10005-202610",
    }
    assert "invoice-processor:10005:2026-10" in body["PrivateNote"].split()


def test_the_whole_body_round_trips_through_json():
    body = draft_to_qbo(_draft(full_invoice_lines()))
    assert json.loads(decimal_json.dumps(body), parse_float=D) == body


# -- the usage trace ---------------------------------------------------------------------------------
def _rows(text: str) -> list[dict[str, str]]:
    assert text.startswith("# Rounding: ")  # the rule is stated in the file itself
    return read_trace_csv(text)


def test_trace_csv_ties_every_line_to_its_runs_and_time_entries():
    rows = _rows(trace_csv(_draft(full_invoice_lines())))
    assert [(r["line"], r["source"], r["source_id"]) for r in rows] == [
        ("1", "robocorp", "r3"),
        ("2", "robocorp", "r1"),
        ("2", "robocorp", "r2"),
        ("3", "clickup", "e4"),
        ("4", "clickup", "e3"),
        ("5", "clickup", "e1"),
        ("5", "clickup", "e2"),
        ("6", "fee", ""),
    ]
    first = rows[0]
    assert first["location"] == "ws2"
    assert first["name"] == "Aged receivables"
    assert first["started_at"] == "2026-10-10T08:00:00Z"
    assert (first["seconds"], first["hours"], first["line_amount"], first["billed"]) == (
        "7200",
        "2.00",
        "160.00",
        "yes",
    )
    service = rows[5]
    assert service["location"] == "Clients / 10005 - O'Brien & Søn Ltd / Accounting"
    assert (service["user"], service["seconds"], service["hours"], service["line_amount"]) == (
        "Zoë Ångström",
        "5400",
        "1.50",
        "337.50",
    )
    assert all(r["customer"] == "10005 - O'Brien & Søn Ltd" and r["period"] == "2026-10" for r in rows)


def test_trace_csv_round_trips_apostrophes_commas_quotes_and_non_ascii():
    name = 'Año-end close, "phase 2" for O\'Brien & Søn – 東京'
    entries = [entry("e1", 60, task_name=name, user="José D'Ávila, Jr.")]
    rows = _rows(trace_csv(_draft(split_lines(runtime(), entries, book()).lines)))
    assert rows[0]["name"] == name
    assert rows[0]["user"] == "José D'Ávila, Jr."
    assert rows[0]["description"] == f"Professional services – {name}: 1.00 h"


def test_trace_csv_defuses_spreadsheet_formulas():
    entries = [entry("e1", 60, task_name='=HYPERLINK("http://x")', user="@admin")]
    rows = _rows(trace_csv(_draft(split_lines(runtime(), entries, book()).lines)))
    assert rows[0]["name"] == '\'=HYPERLINK("http://x")'
    assert rows[0]["user"] == "'@admin"


def test_usage_too_small_to_bill_stays_in_the_trace_marked_not_billed():
    priced = split_lines(
        runtime(run("tiny", "5"), run("big", "3600", process="Big", process_id="p2")), [], book(robot="90")
    )
    draft = build_draft(
        ClientRecord("10005"),
        CUSTOMER,
        OCTOBER,
        priced.lines,
        date(2026, 11, 4),
        False,
        dropped=priced.dropped,
    )
    rows = _rows(trace_csv(draft))
    assert [(r["source_id"], r["line"], r["billed"], r["line_amount"]) for r in rows] == [
        ("big", "1", "yes", "90.00"),
        ("tiny", "", "no", "0.00"),
    ]
    assert draft.total == D("90.00")


def test_lines_chosen_by_the_caller_are_renumbered_in_the_trace():
    lines = full_invoice_lines()
    draft = _draft([lines[4], lines[5]])
    assert [row.line for line in draft.lines for row in line.trace] == [1, 1, 2]


def test_an_ended_run_without_a_start_is_named_not_dropped():
    broken = ProcessRun("r9", "ws", "p", "Invoice bot", "completed", None, at("2026-10-02T10:00:00"), D(60))
    with pytest.raises(ValueError, match="process run r9 .*completed but has no started_at"):
        aggregate_runtime([broken], OCTOBER)
    never_started = replace(broken, state="new", ended_at=None, duration_seconds=None)
    assert aggregate_runtime([never_started], OCTOBER).processes == []


def test_allocate_splits_whole_units_by_largest_remainder_and_sums_exactly():
    assert allocate(180, [405] * 16) == [12, 12, 12, 12] + [11] * 12  # 16 x 405 s = 1.80 h
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(7, [0, 0]) == [7, 0]
    assert allocate(0, [5, 5]) == [0, 0]


def test_trace_rows_add_up_exactly_to_each_line_in_seconds_hours_and_money():
    # 16 entries of 405 s on one task (the issue's case: rows rounded alone give 16 x 0.11 = 1.76 h):
    # 6,480 s = 1.80 h x 95.50 = 171.90 (whole cents, so Qty 1.80 x 95.50); plus 3 runs of 1,000.4 s
    # -> 1,000 s each = 3,000 s = 0.83 h x 45.00 = 37.35.
    entries = [entry(f"e{i:02d}", 0, task_name="Close", start="2026-10-02T08:00:00") for i in range(16)]
    entries = [replace(e, duration_ms=405_000) for e in entries]
    runs = [run(f"r{i}", "1000.4", start=f"2026-10-0{i + 1}T08:00:00") for i in range(3)]
    draft = _draft(split_lines(runtime(*runs), entries, book(robot="45", service="95.50")).lines)
    rows = _rows(trace_csv(draft))
    assert [(line.hours, line.amount) for line in draft.lines] == [
        (D("0.83"), D("37.35")),
        (D("1.80"), D("171.90")),
    ]
    for number, line in enumerate(draft.lines, start=1):
        mine = [r for r in rows if r["line"] == str(number)]
        assert all(r["seconds"].isdigit() for r in mine)  # integer seconds, never "405.0"
        assert sum(int(r["seconds"]) for r in mine) == (3000 if number == 1 else 6480)
        assert sum(D(r["hours"]) for r in mine) == line.hours == D(mine[0]["line_hours"])
        assert sum(D(r["amount"]) for r in mine) == line.amount == D(mine[0]["line_amount"])


def test_a_run_that_ends_before_it_starts_is_named():
    broken = ProcessRun(
        "r8",
        "ws",
        "p",
        "Invoice bot",
        "completed",
        at("2026-10-02T10:00:00"),
        at("2026-10-02T09:00:00"),
        D(60),
    )
    with pytest.raises(ValueError, match="process run r8 .*ended before it started"):
        aggregate_runtime([broken], OCTOBER)


def test_runtime_folds_a_stream_so_memory_follows_the_period_not_the_history():
    """Years of runs outside the period pass through one at a time; only October's are kept."""

    def history():
        for n in range(60_000):  # ~2 years of runs every 15 minutes, none in October 2026
            yield run(f"old{n}", "900", start="2024-01-01T00:00:00")
        yield run("r1", "1800")
        yield run("r1", "1800")  # a page read twice: billed once
        yield run("r2", "1800", start="2026-10-31T23:59:00")

    tracemalloc.start()
    try:
        usage = aggregate_runtime(history(), OCTOBER)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert [(p.process_name, p.seconds, len(p.runs)) for p in usage.processes] == [
        ("Invoice bot", D("3600"), 2)
    ]
    assert usage.duplicate_count == 1
    assert peak_bytes < 1_000_000  # holding 60,000 runs would take tens of MB


def test_a_finished_result_keeps_lines_and_totals_but_not_the_records_behind_them():
    """Issue 13: a run's memory must not grow with every client's usage records."""
    from create_invoices.late_usage import LateUsage
    from create_invoices.results import ClientResult, Outcome

    runs = [run(f"r{i}", "1800", start=f"2026-10-0{i + 1}T08:00:00") for i in range(3)]
    draft = _draft(split_lines(runtime(*runs), [], book(robot="45")).lines)
    late_priced = split_lines(runtime(run("r9", "3600")), [], book(robot="45"))
    late = LateUsage(OCTOBER, runtime(run("r9", "3600")), (), late_priced)
    result = ClientResult("10002", "Acme", Outcome.CREATED, draft=draft, late=[late])

    finished = result.finished()

    assert finished.draft is not None and finished.draft.total == draft.total
    assert [(line.description, line.hours, line.amount) for line in finished.draft.lines] == [
        (line.description, line.hours, line.amount) for line in draft.lines
    ]
    assert all(line.trace == () for line in finished.draft.lines) and finished.draft.dropped == ()
    assert [line.amount for line in finished.late[0].priced.lines] == [
        line.amount for line in late_priced.lines
    ]
    assert finished.late[0].runtime.processes == [] and finished.late[0].entries == ()
    assert all(line.trace for line in draft.lines)  # the draft the invoice was made from is untouched
