"""Billing maths: usage and prices in, invoice lines and a QBO invoice body out. No I/O.

Money is ``Decimal`` end to end; a float is refused wherever money or time enters. Hours are
rounded to 2 decimals and money to the cent, both ROUND_HALF_UP. QBO rejects a line whose
``Amount`` is not ``Qty × UnitPrice`` (error 6070), so every line keeps that identity EXACTLY:

* normally ``Qty`` = hours (2 dp), ``UnitPrice`` = the hourly rate, ``Amount`` = their product;
* when that product is not a whole number of cents (1.33 h × 95.50 = 127.015), the line is
  stated as ``Qty`` 1 × ``UnitPrice`` = ``cents(hours × rate)`` (127.02) and the hours and the
  rate are written into the description instead.

Durations are billed in whole seconds: each run's and each time entry's duration is rounded to
the second (ROUND_HALF_UP) before anything is summed, so the usage CSV (integer seconds) adds up to
exactly the seconds behind every line.

Prices: the QBO items' ``UnitPrice`` are the base hourly rates; a client's registry overrides win.
The monthly fee comes from the registry ONLY: the subscription item's price is not a default for
every client (that would bill a fee to clients who never agreed to one); the item is needed just
to put the fee on the invoice, so a client with a fee but no usable fee item fails with a
``PricingError`` naming the item. A rate of 0 is refused when there is something to bill at it:
work billed at nothing is almost always a missing price (give a discount with a credit memo).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from create_invoices.period import Period
from integrations.identifiers import invoice_marker
from integrations.models import ClientRecord, ProcessRun, TimeEntry, first_of_each_id

CENT = Decimal("0.01")
SECONDS_PER_HOUR = Decimal(3600)
UNFINISHED_STATES = frozenset({"new", "in_progress", "stopping"})
ENDED_STATES = frozenset({"completed", "unresolved"})
MAX_DESCRIPTION = 4000  # QBO line Description limit
ZERO = Decimal("0.00")


class PricingError(ValueError):
    """A price needed for an invoice is missing or unusable (names the QBO item or the client)."""


# -- numbers ---------------------------------------------------------------------------------------
def _exact(value: Decimal | int, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"{what} must be a Decimal or an int, never {type(value).__name__}")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"{what} must be a finite number (got {value})")
    return number


def hours(seconds: Decimal | int) -> Decimal:
    """Seconds to hours, 2 decimals, ROUND_HALF_UP (18 s = 0.01 h; 17.99 s = 0.00 h)."""
    return (_exact(seconds, "seconds") / SECONDS_PER_HOUR).quantize(CENT, rounding=ROUND_HALF_UP)


def whole_seconds(seconds: Decimal | int) -> int:
    """A duration in whole seconds, ROUND_HALF_UP (405.5 s -> 406): the unit every line is billed in."""
    return int(_exact(seconds, "seconds").quantize(Decimal(1), rounding=ROUND_HALF_UP))


def cents(amount: Decimal | int) -> Decimal:
    """Round money to the cent, ROUND_HALF_UP (127.015 -> 127.02)."""
    return _exact(amount, "amount").quantize(CENT, rounding=ROUND_HALF_UP)


def _money_text(value: Decimal) -> str:
    """95.5 -> "95.50"; a price with finer precision (12.345) is shown as it is."""
    return f"{value:.2f}" if value == value.quantize(CENT) else str(value)


def _normal_price(value: Decimal) -> Decimal:
    """Show whole-cent prices with exactly 2 decimals (same value, tidier JSON and CSV)."""
    return value.quantize(CENT) if value == value.quantize(CENT) else value


# -- prices ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemRef:
    """A QBO Item as an invoice line references it."""

    id: str
    name: str


@dataclass(frozen=True)
class PriceBook:
    """The prices of one client (or, from ``price_book_from_items``, the practice's defaults)."""

    robot_hour: Decimal
    service_hour: Decimal
    monthly_fee: Decimal | None  # None: no fee line (base price book: always None, see module doc)
    robot_item: ItemRef
    service_item: ItemRef
    fee_item: ItemRef | None  # None: no usable subscription item (see fee_note)
    fee_note: str = ""  # why fee_item is None, for the error of a client who has a fee


def price_book_from_items(
    items: Sequence[dict], robot_name: str, service_name: str, fee_name: str
) -> PriceBook:
    """Base prices from the QBO Items (matched by name, case-insensitive, active only).

    A missing, inactive or ambiguous robot or service item raises ``PricingError``: nothing can be
    billed without them. The fee item is optional here; see ``prices_for``."""
    robot = _find_item(items, robot_name, "robot runtime")
    service = _find_item(items, service_name, "professional services")
    try:
        fee: dict | None = _find_item(items, fee_name, "monthly subscription")
        fee_note = ""
    except PricingError as exc:
        fee, fee_note = None, str(exc)
    return PriceBook(
        robot_hour=_unit_price(robot),
        service_hour=_unit_price(service),
        monthly_fee=None,
        robot_item=_item_ref(robot),
        service_item=_item_ref(service),
        fee_item=_item_ref(fee) if fee is not None else None,
        fee_note=fee_note,
    )


def prices_for(client: ClientRecord, base: PriceBook) -> PriceBook:
    """The client's prices: registry overrides win over the QBO item prices.

    ``monthly_fee`` is the registry's (0 or absent: no fee line). A client with a fee while the
    subscription item is unusable raises ``PricingError`` (that client only)."""
    fee = client.monthly_fee if client.monthly_fee is not None and client.monthly_fee > 0 else None
    if fee is not None and base.fee_item is None:
        raise PricingError(
            f"client {client.client_id} has a monthly_fee of {_money_text(fee)} but the subscription "
            f"item cannot be used: {base.fee_note or 'no subscription item'}"
        )
    return replace(
        base,
        robot_hour=_normal_price(
            client.robot_hour_rate if client.robot_hour_rate is not None else base.robot_hour
        ),
        service_hour=_normal_price(
            client.service_hour_rate if client.service_hour_rate is not None else base.service_hour
        ),
        monthly_fee=_normal_price(fee) if fee is not None else None,
    )


def _is_active(item: dict) -> bool:
    return item.get("Active", True) not in (False, "false", "False")


def _find_item(items: Sequence[dict], name: str, purpose: str) -> dict:
    wanted = name.strip().casefold()
    if not wanted:
        raise PricingError(f"no QBO item name configured for the {purpose} price")

    def same(value: Any) -> bool:
        return isinstance(value, str) and value.strip().casefold() == wanted

    active = [item for item in items if _is_active(item)]
    for candidates in (
        [item for item in active if same(item.get("FullyQualifiedName"))],  # "Parent:Child" given
        [item for item in active if same(item.get("Name"))],
    ):
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            ids = ", ".join(str(item.get("Id")) for item in candidates)
            raise PricingError(
                f"several active QBO items are named {name!r} (Ids {ids}); configure the {purpose} "
                "item by its full name (Parent:Child)"
            )
    if any(same(item.get("Name")) or same(item.get("FullyQualifiedName")) for item in items):
        raise PricingError(f"the QBO item {name!r} ({purpose} price) is inactive")
    raise PricingError(f"no QBO item named {name!r} ({purpose} price)")


def _item_ref(item: dict) -> ItemRef:
    if item.get("Id") in (None, ""):
        raise PricingError(f"the QBO item {item.get('Name')!r} has no Id")
    return ItemRef(id=str(item["Id"]), name=str(item.get("Name") or ""))


def _unit_price(item: dict) -> Decimal:
    """The item's UnitPrice as an exact Decimal (via str(): 95.5 stays 95.5); absent means 0."""
    value = item.get("UnitPrice")
    if value is None:
        return ZERO
    if isinstance(value, bool):
        raise PricingError(f"the QBO item {item.get('Name')!r} has an invalid UnitPrice {value!r}")
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise PricingError(f"the QBO item {item.get('Name')!r} has an invalid UnitPrice {value!r}") from None
    if not price.is_finite() or price < 0:
        raise PricingError(f"the QBO item {item.get('Name')!r} has an invalid UnitPrice {value!r}")
    return _normal_price(price)


# -- robot runtime ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessUsage:
    """The finished runs of one process in the period."""

    workspace_id: str
    process_id: str
    process_name: str
    runs: tuple[ProcessRun, ...]

    @property
    def seconds(self) -> int:
        return sum(whole_seconds(run.duration_seconds or 0) for run in self.runs)

    @property
    def hours(self) -> Decimal:
        return hours(self.seconds)


@dataclass(frozen=True)
class RuntimeUsage:
    """Robot runtime of one client in one period."""

    processes: list[ProcessUsage]  # sorted by process name
    unfinished: list[ProcessRun]  # started in the period, not ended: not billed, listed
    period: Period | None = None  # set by aggregate_runtime; names the month on the fee line
    duplicate_count: int = 0


def aggregate_runtime(runs: Iterable[ProcessRun], period: Period) -> RuntimeUsage:
    """Finished runs that STARTED in the period (UTC), grouped per (workspace, process).

    A run that started on Oct 31 and ended on Nov 1 is October's. A run without ``ended_at`` or
    ``duration``, or in state new/in_progress/stopping, is unfinished: listed, not billed (it
    would otherwise be billed short). Failed runs (``unresolved``) used the robot and are billed.
    Runs that never started (no ``started_at``, state new) belong to no period; an ENDED run
    without ``started_at`` is an error naming the run (its month cannot be told, and dropping it
    would lose billable time). Duplicate ids count once.

    ``runs`` is consumed as a stream (the Robocorp client yields page by page): a run outside the
    period is looked at and dropped at once, so memory grows with the period's runs, never with a
    workspace's history."""
    groups: dict[tuple[str, str], list[ProcessRun]] = {}
    unfinished: list[ProcessRun] = []
    seen: set[str] = set()  # ids of the period's runs only: a duplicate outside it bills nothing
    duplicates = 0
    for run in runs:
        if run.started_at is None and run.state in ENDED_STATES:
            raise ValueError(
                f"process run {run.id} ({run.process_name}, workspace {run.workspace_id}) is {run.state} "
                "but has no started_at: its month cannot be told; check the run in Control Room"
            )
        if run.started_at is None or not period.contains(run.started_at):
            continue
        if run.id in seen:
            duplicates += 1
            continue
        seen.add(run.id)
        if run.ended_at is not None and run.ended_at < run.started_at:
            raise ValueError(
                f"process run {run.id} ({run.process_name}) ended before it started "
                f"({run.ended_at.isoformat()} < {run.started_at.isoformat()}); check the run in Control Room"
            )
        if run.ended_at is None or run.duration_seconds is None or run.state in UNFINISHED_STATES:
            unfinished.append(run)
            continue
        duration = run.duration_seconds
        if (
            isinstance(duration, bool)
            or not isinstance(duration, Decimal | int)
            or not Decimal(duration).is_finite()
        ):
            raise ValueError(f"process run {run.id} has an invalid duration {duration!r}")
        if run.duration_seconds < 0:
            raise ValueError(f"process run {run.id} has a negative duration {run.duration_seconds}")
        groups.setdefault((run.workspace_id, run.process_id), []).append(run)

    def by_start(run: ProcessRun) -> tuple:
        return (run.started_at, run.id)

    processes = []
    for (workspace_id, process_id), found in groups.items():
        ordered = tuple(sorted(found, key=by_start))
        # a renamed process is billed under its latest name
        processes.append(ProcessUsage(workspace_id, process_id, ordered[-1].process_name, ordered))
    processes.sort(key=lambda p: (p.process_name.casefold(), p.process_name, p.workspace_id, p.process_id))
    return RuntimeUsage(
        processes=processes,
        unfinished=sorted(unfinished, key=by_start),
        period=period,
        duplicate_count=duplicates,
    )


# -- invoice lines ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TraceRow:
    """One source record behind an invoice line (a run, a time entry, or the fee)."""

    line: int  # invoice line number (1-based); 0 for a line that was not billed
    source: str  # robocorp | clickup | fee
    source_id: str  # run id, time-entry id; "" for the fee
    workspace_or_location: str  # Robocorp workspace id; ClickUp "space / folder / list"
    name: str  # process name; task name (or the entry's description)
    started_at: str  # ISO 8601 UTC ("2026-10-31T23:59:59Z"), "" for the fee
    seconds: int  # whole seconds (the billing unit)
    hours: Decimal
    user: str  # ClickUp user name; "" otherwise
    usage_period: str = (
        ""  # the month the usage belongs to ("2026-10"); differs from the invoice's for late usage
    )


@dataclass(frozen=True)
class InvoiceLine:
    """One SalesItemLine; ``amount == qty * unit_price`` holds exactly."""

    kind: str  # robot | service | fee
    description: str
    item: ItemRef
    qty: Decimal
    unit_price: Decimal
    amount: Decimal
    hours: Decimal  # billed hours (0.00 for the fee)
    trace: tuple[TraceRow, ...]


@dataclass(frozen=True)
class PricedLines:
    """``lines`` go on the invoice; ``dropped`` rounded to 0.00 h (kept for the usage trace)."""

    lines: list[InvoiceLine]
    dropped: list[InvoiceLine]


@dataclass
class _Usage:
    kind: str
    title: str  # "Robot runtime – Invoice bot"
    detail: str  # "3 runs, " for robots
    item: ItemRef
    rate: Decimal
    seconds: int
    rows: list[TraceRow] = field(default_factory=list)


def split_lines(
    runtime: RuntimeUsage, entries: Sequence[TimeEntry], prices: PriceBook, period: Period | None = None
) -> PricedLines:
    """The invoice lines of one client: robot processes, ClickUp tasks, then the monthly fee.

    Lines that round to 0.00 h are not billed; they come back in ``dropped``, for the trace.
    ``period`` (for the fee line's month) defaults to ``runtime.period``."""
    priced = usage_lines(runtime, entries, prices)
    lines, dropped = list(priced.lines), list(priced.dropped)
    if prices.monthly_fee is not None and prices.monthly_fee > 0:
        month = period or runtime.period
        if month is None:
            raise ValueError("the period is needed to describe the monthly fee")
        if prices.fee_item is None:
            raise PricingError(
                f"a monthly fee is set but the subscription item is unusable: {prices.fee_note}"
            )
        lines.append(_fee_line(prices.monthly_fee, prices.fee_item, month, len(lines) + 1))
    return PricedLines(lines=lines, dropped=dropped)


def usage_lines(
    runtime: RuntimeUsage, entries: Sequence[TimeEntry], prices: PriceBook, *, title_prefix: str = ""
) -> PricedLines:
    """The robot and ClickUp lines of some usage, without the fee. ``title_prefix`` names late
    usage ("Late time from October 2026: "); its rows carry the month the usage belongs to."""
    usage_period = runtime.period.label if runtime.period else ""
    usages = [_robot_usage(process, prices) for process in runtime.processes]
    usages += _service_usages(entries, prices)
    lines: list[InvoiceLine] = []
    dropped: list[InvoiceLine] = []
    for usage in usages:
        usage.title = title_prefix + usage.title
        usage.rows = [replace(row, usage_period=usage_period) for row in usage.rows]
        billed_hours = hours(usage.seconds)
        if billed_hours == 0:
            dropped.append(_line(usage, billed_hours, 0))
            continue
        if usage.rate <= 0:
            raise PricingError(
                f"the {usage.kind} hourly rate is {_money_text(usage.rate)} ({usage.item.name!r} has no "
                f"UnitPrice in QBO and the registry has no override) while {billed_hours} h are to be billed"
            )
        lines.append(_line(usage, billed_hours, len(lines) + 1))
    return PricedLines(lines=lines, dropped=dropped)


def _robot_usage(process: ProcessUsage, prices: PriceBook) -> _Usage:
    count = len(process.runs)
    usage = _Usage(
        kind="robot",
        title=f"Robot runtime – {process.process_name}",
        detail=f"{count} run{'' if count == 1 else 's'}, ",
        item=prices.robot_item,
        rate=prices.robot_hour,
        seconds=process.seconds,
    )
    for run in process.runs:
        seconds = whole_seconds(run.duration_seconds or 0)
        usage.rows.append(
            TraceRow(
                line=0,
                source="robocorp",
                source_id=run.id,
                workspace_or_location=run.workspace_id,
                name=run.process_name,
                started_at=_iso_utc(run.started_at),
                seconds=seconds,
                hours=hours(seconds),
                user="",
            )
        )
    return usage


def _service_usages(entries: Sequence[TimeEntry], prices: PriceBook) -> list[_Usage]:
    """One usage per ClickUp task; entries without a task grouped by their description."""
    groups: dict[tuple[str, str], list[TimeEntry]] = {}
    for entry in first_of_each_id(entries)[0]:  # never bill one entry twice
        if entry.running or not entry.billable or entry.problem or entry.duration_ms < 0:
            state = "running" if entry.running else "not billable" if not entry.billable else "malformed"
            raise ValueError(
                f"time entry {entry.id} is {state}: only Attribution.by_client entries can be billed"
            )
        key = ("task", entry.task_id) if entry.task_id else ("free", entry.description.strip())
        groups.setdefault(key, []).append(entry)

    usages = []
    for (kind, key), found in groups.items():
        found.sort(key=lambda e: (e.start, e.id))
        if kind == "task":
            named = [e.task_name for e in found if e.task_name and e.task_name.strip()]
            title = named[-1].strip() if named else f"task {key}"  # latest name of a renamed task
        else:
            title = key or "(no task)"
        usage = _Usage(
            kind="service",
            title=f"Professional services – {title}",
            detail="",
            item=prices.service_item,
            rate=prices.service_hour,
            seconds=0,
        )
        for entry in found:
            seconds = whole_seconds(Decimal(entry.duration_ms) / 1000)
            usage.seconds += seconds
            usage.rows.append(
                TraceRow(
                    line=0,
                    source="clickup",
                    source_id=entry.id,
                    workspace_or_location=_location(entry),
                    name=entry.task_name or entry.description.strip() or "(no task)",
                    started_at=_iso_utc(entry.start),
                    seconds=seconds,
                    hours=hours(seconds),
                    user=entry.user_name,
                )
            )
        usages.append(usage)
    usages.sort(key=lambda u: (u.title.casefold(), u.title, u.rows[0].source_id))
    return usages


def _line(usage: _Usage, billed_hours: Decimal, number: int) -> InvoiceLine:
    rate = _normal_price(usage.rate)
    exact = billed_hours * rate
    if exact == cents(exact):
        qty, unit_price, amount = billed_hours, rate, cents(exact)
        description = f"{usage.title}: {usage.detail}{billed_hours} h"
    else:  # not a whole number of cents: Qty 1 so that Amount == Qty × UnitPrice still holds
        amount = cents(exact)
        qty, unit_price = Decimal(1), amount
        description = f"{usage.title}: {usage.detail}{billed_hours} h at {_money_text(rate)}/h"
    return InvoiceLine(
        kind=usage.kind,
        description=_clip(description),
        item=usage.item,
        qty=qty,
        unit_price=unit_price,
        amount=amount,
        hours=billed_hours,
        trace=tuple(replace(row, line=number) for row in usage.rows),
    )


def _fee_line(fee: Decimal, item: ItemRef, period: Period, number: int) -> InvoiceLine:
    description = f"Automation subscription – {period.month_name}"
    amount = cents(fee)  # registry fees have at most 2 decimals already
    return InvoiceLine(
        kind="fee",
        description=description,
        item=item,
        qty=Decimal(1),
        unit_price=amount,
        amount=amount,
        hours=ZERO,
        trace=(
            TraceRow(
                line=number,
                source="fee",
                source_id="",
                workspace_or_location="",
                name=description,
                started_at="",
                seconds=0,
                hours=ZERO,
                user="",
                usage_period=period.label,
            ),
        ),
    )


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


def _iso_utc(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _location(entry: TimeEntry) -> str:
    parts = [
        name or ident or ""
        for name, ident in (
            (entry.space_name, entry.space_id),
            (entry.folder_name, entry.folder_id),
            (entry.list_name, entry.list_id),
        )
    ]
    return " / ".join(part for part in parts if part)


# -- the invoice -----------------------------------------------------------------------------------


def doc_number(client_id: str, period: Period) -> str:
    """``10002-202610`` (at most 17 of QBO's 21 characters for a 10-digit client number)."""
    return f"{client_id}-{period.compact}"


@dataclass(frozen=True)
class InvoiceDraft:
    """One client's invoice for one period, ready to be sent to QBO."""

    client_id: str
    customer_id: str
    customer_name: str
    period: Period
    lines: list[InvoiceLine]
    bill_email: str | None
    doc_number: str | None
    txn_date: date
    dropped: tuple[InvoiceLine, ...] = ()  # usage that rounded to 0.00 h: in the trace, not billed

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)

    @property
    def marker(self) -> str:
        return invoice_marker(self.client_id, self.period.label)

    def without_trace(self) -> InvoiceDraft:
        """The same invoice without the run and entry records behind its lines (the usage CSV and
        the ledger trace keep them): what a run's summary holds once the client is done."""
        return replace(self, lines=[replace(line, trace=()) for line in self.lines], dropped=())


def build_draft(
    client: ClientRecord,
    customer: dict,
    period: Period,
    lines: Sequence[InvoiceLine],
    txn_date: date,
    custom_txn_numbers: bool,
    *,
    dropped: Sequence[InvoiceLine] = (),
) -> InvoiceDraft | None:
    """The invoice of ``client``, or None when there is nothing to bill.

    ``bill_email`` is the customer's PrimaryEmailAddr (None when it has none: the caller reports
    it). ``DocNumber`` is set only when the company uses custom transaction numbers; otherwise
    QBO numbers the invoice itself. Lines are renumbered 1..n in the order given."""
    if not lines:
        return None
    if customer.get("Id") in (None, ""):
        raise ValueError(f"client {client.client_id}: the QBO customer has no Id")
    email = (customer.get("PrimaryEmailAddr") or {}).get("Address")
    email = email.strip() if isinstance(email, str) and email.strip() else None
    numbered = [_renumber(line, number) for number, line in enumerate(lines, start=1)]
    return InvoiceDraft(
        client_id=client.client_id,
        customer_id=str(customer["Id"]),
        customer_name=str(customer.get("DisplayName") or client.customer_name or client.client_id),
        period=period,
        lines=numbered,
        bill_email=email,
        doc_number=doc_number(client.client_id, period) if custom_txn_numbers else None,
        txn_date=txn_date,
        dropped=tuple(_renumber(line, 0) for line in dropped),
    )


def _renumber(line: InvoiceLine, number: int) -> InvoiceLine:
    if all(row.line == number for row in line.trace):
        return line
    return replace(line, trace=tuple(replace(row, line=number) for row in line.trace))


def draft_to_qbo(draft: InvoiceDraft) -> dict[str, Any]:
    """The QBO Invoice create body. Money and quantities stay ``Decimal``: the QBO client writes
    them exactly (``integrations.decimal_json``)."""
    body: dict[str, Any] = {
        "CustomerRef": {"value": draft.customer_id, "name": draft.customer_name},
        "TxnDate": draft.txn_date.isoformat(),
        "Line": [
            {
                "LineNum": number,
                "DetailType": "SalesItemLineDetail",
                "Amount": line.amount,
                "Description": line.description,
                "SalesItemLineDetail": {
                    "ItemRef": {"value": line.item.id, "name": line.item.name},
                    "Qty": line.qty,
                    "UnitPrice": line.unit_price,
                },
            }
            for number, line in enumerate(draft.lines, start=1)
        ],
        # the marker is a whitespace-separated word: integrations.identifiers.find_marker finds it
        "PrivateNote": f"{draft.marker} (created by the invoice processor; keep this note)",
        "EmailStatus": "NeedToSend",
    }
    if draft.bill_email:
        body["BillEmail"] = {"Address": draft.bill_email}
    if draft.doc_number:
        body["DocNumber"] = draft.doc_number
    return body


# -- the usage trace -------------------------------------------------------------------------------
TRACE_COLUMNS = (
    "client_id",
    "customer",
    "period",
    "usage_period",
    "line",
    "billed",
    "kind",
    "description",
    "line_qty",
    "line_unit_price",
    "line_amount",
    "line_hours",
    "source",
    "source_id",
    "location",
    "name",
    "started_at",
    "seconds",
    "hours",
    "amount",
    "user",
)
ROUNDING_RULE = (
    "# Rounding: every run and time entry counts in whole seconds (half up). A line's hours are its "
    "seconds / 3600 rounded half up to 0.01 h and its amount is hours x rate rounded half up to the cent. "
    "Each line's hours and amount are split over its rows in proportion to their seconds (largest "
    "remainder, 0.01 h and 0.01 at a time), so the rows' seconds, hours and amount add up exactly to the line."
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` units over ``weights`` proportionally, in whole units, summing to ``total``
    exactly (largest remainder; ties go to the earlier row). All-zero weights: all to the first."""
    if not weights:
        return []
    whole = sum(weights)
    if whole <= 0:
        return [total] + [0] * (len(weights) - 1)
    shares = [total * weight // whole for weight in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for index in order[: total - sum(shares)]:
        shares[index] += 1
    return shares


def _split(line: InvoiceLine) -> list[tuple[TraceRow, Decimal, Decimal]]:
    """Each trace row of ``line`` with its share of the line's hours and amount."""
    weights = [row.seconds for row in line.trace]
    hour_shares = allocate(int(line.hours / CENT), weights)
    amount_shares = allocate(int(line.amount / CENT), weights)
    return [
        (row, Decimal(h) * CENT, Decimal(a) * CENT)
        for row, h, a in zip(line.trace, hour_shares, amount_shares, strict=True)
    ]


def trace_csv(draft: InvoiceDraft) -> str:
    """The usage behind every line: the rounding rule, then one CSV row per run / time entry / fee.

    ``seconds`` are whole; ``hours`` and ``amount`` are each row's share of its line, so the rows of
    a line add up exactly to it. Lines that rounded to 0.00 h follow with ``billed`` = no. Text
    cells that a spreadsheet would run as a formula (=, +, -, @) get a leading apostrophe. Encode
    as UTF-8 (with BOM, "utf-8-sig", if it is meant to be opened in Excel)."""
    out = io.StringIO()
    out.write(ROUNDING_RULE + "\r\n")
    writer = csv.writer(out)
    writer.writerow(TRACE_COLUMNS)
    billed = [(number, line, "yes") for number, line in enumerate(draft.lines, start=1)]
    dropped = [(0, line, "no") for line in draft.dropped]
    for number, line, flag in billed + dropped:
        for row, row_hours, row_amount in _split(line):
            writer.writerow(
                [
                    draft.client_id,
                    _cell(draft.customer_name),
                    draft.period.label,
                    row.usage_period or draft.period.label,
                    number or "",
                    flag,
                    line.kind,
                    _cell(line.description),
                    line.qty,
                    line.unit_price,
                    line.amount,
                    line.hours,
                    row.source,
                    _cell(row.source_id),
                    _cell(row.workspace_or_location),
                    _cell(row.name),
                    row.started_at,
                    row.seconds,
                    row_hours,
                    row_amount,
                    _cell(row.user),
                ]
            )
    return out.getvalue()


def read_trace_csv(text: str) -> list[dict[str, str]]:
    """The rows of a ``trace_csv`` (the rounding-rule line skipped), for the ledger and for tests."""
    lines = text.lstrip("\ufeff").splitlines(keepends=True)
    body = [line for line in lines if not line.startswith("#")]
    return list(csv.DictReader(io.StringIO("".join(body))))


def billed_source_ids(text: str) -> frozenset[str]:
    """Run and time-entry ids a ``trace_csv`` billed (rows of billed lines; never the fee)."""
    return frozenset(
        row["source_id"]
        for row in read_trace_csv(text)
        if row["billed"] == "yes" and row["source"] in ("robocorp", "clickup")
    )


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text
