"""An in-memory ``Services`` for fast tests of the two jobs' decisions.

The ledger is the real ``Ledger`` on moto's in-process DynamoDB (its conditional writes are the
thing under test); QBO, ClickUp, Robocorp and Graph are small fakes that keep what was written,
so tests assert on invoices, mails and ledger rows, never on calls.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from integrations.aws import Ledger
from integrations.config import Settings
from integrations.lifecycle import StopSignal
from integrations.models import Attachment, ClientRecord, InvalidRecord, Member, ProcessRun, TimeEntry
from integrations.qbo_entities import Customer, Invoice, Item

_LOCK = threading.Lock()
OCTOBER_RUN = datetime(2026, 10, 7, 14, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand, so lease expiry needs no sleeping."""

    def __init__(self, now: datetime = datetime(2026, 11, 4, 17, 0, tzinfo=UTC)):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeQbo:
    """QBO as the jobs see it: customers, items, invoices, requestid replay, send, PDF."""

    customers_: list[dict] = field(default_factory=list)
    items_: list[dict] = field(default_factory=list)
    invoices: list[dict] = field(default_factory=list)
    custom_numbers: bool = True
    replies: dict[str, dict] = field(default_factory=dict)  # requestid -> the answer QBO gave
    # one-shot faults by operation ("create", "send", "update", "pdf", "read"), or by operation and
    # QBO customer id ("create:58"): raised before (or, with after=True, after) the operation
    # takes effect
    faults: dict[str, tuple[Exception, bool]] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)  # invoice ids QBO emailed
    _ids: Any = field(default_factory=lambda: itertools.count(100))

    def _fault(self, operation: str, after: bool, customer: str = "") -> None:
        with _LOCK:  # the create job bills several clients at once
            for key in (f"{operation}:{customer}", operation):
                fault = self.faults.get(key)
                if fault is not None and fault[1] is after:
                    del self.faults[key]
                    raise fault[0]

    def customers(self, include_inactive: bool = False) -> list[Customer]:
        return [Customer(c) for c in self.customers_]

    def items(self) -> list[Item]:
        return [Item(i) for i in self.items_]

    def custom_txn_numbers(self) -> bool:
        return self.custom_numbers

    def terms(self) -> dict[str, dict]:
        return {}

    def default_term_id(self) -> str:
        return ""

    def invoices_between(self, start: date, end: date) -> list[Invoice]:
        self._fault("read", False)
        return [Invoice(i) for i in self.invoices if start.isoformat() <= i["TxnDate"] <= end.isoformat()]

    def get_invoice(self, invoice_id: str) -> Invoice:
        return Invoice(next(i for i in self.invoices if i["Id"] == invoice_id))

    def create_invoice(self, body: dict, request_id: str) -> Invoice:
        if request_id in self.replies:
            return Invoice(self.replies[request_id])
        customer = body["CustomerRef"]["value"]
        self._fault("create", False, customer)
        invoice = {**body, "Id": str(next(self._ids)), "SyncToken": "0"}
        invoice["TotalAmt"] = str(sum(Decimal(str(line["Amount"])) for line in body["Line"]))
        self.invoices.append(invoice)
        self.replies[request_id] = invoice
        self._fault("create", True, customer)
        return Invoice(invoice)

    def send_invoice(self, invoice_id: str, request_id: str) -> Invoice:
        self._fault("send", False)
        invoice = next(i for i in self.invoices if i["Id"] == invoice_id)
        invoice.update(EmailStatus="EmailSent", DeliveryInfo={"DeliveryType": "Email"})
        invoice["SyncToken"] = str(int(invoice["SyncToken"]) + 1)
        self.sent.append(invoice_id)
        self._fault("send", True)
        return Invoice(invoice)

    def sparse_update_invoice(self, invoice_id: str, fields: dict, request_id: str) -> Invoice:
        self._fault("update", False)
        invoice = next(i for i in self.invoices if i["Id"] == invoice_id)
        invoice.update(fields)
        invoice["SyncToken"] = str(int(invoice["SyncToken"]) + 1)
        return Invoice(invoice)

    def invoice_pdf(self, invoice_id: str) -> bytes:
        self._fault("pdf", False)
        return b"%PDF-1.4 invoice " + invoice_id.encode()


@dataclass
class FakeGraph:
    mails: list[dict] = field(default_factory=list)
    fault: Exception | None = None  # raised after the mail was accepted (a lost reply)

    def access_token(self) -> str:
        return "graph-access-token"

    def send_mail(self, sender: str, to: Sequence[str], subject: str, html: str, **kwargs: Any) -> None:
        self.mails.append({"from": sender, "to": list(to), "subject": subject, **kwargs})
        if self.fault is not None:
            fault, self.fault = self.fault, None
            raise fault


@dataclass
class FakeClickUp:
    entries: list[TimeEntry] = field(default_factory=list)

    def members(self) -> list[Member]:
        return [Member("1", "ana")]

    def time_entries(self, start: datetime, end: datetime, assignees: Sequence[str]) -> list[TimeEntry]:
        return list(self.entries)


@dataclass
class FakeRobocorp:
    runs: dict[str, list[ProcessRun]] = field(default_factory=dict)

    def process_runs(self, workspace_id: str) -> list[ProcessRun]:
        return list(self.runs.get(workspace_id, []))


@dataclass
class FakeRegistry:
    clients: list[ClientRecord] = field(default_factory=list)
    invalid: list[InvalidRecord] = field(default_factory=list)

    def load(self) -> tuple[list[ClientRecord], list[InvalidRecord]]:
        return list(self.clients), list(self.invalid)


@dataclass
class FakeServices:
    """Duck-types ``integrations.services.Services`` for the jobs."""

    settings: Settings
    ledger: Ledger
    qbo: FakeQbo = field(default_factory=FakeQbo)
    graph: FakeGraph = field(default_factory=FakeGraph)
    clickup: FakeClickUp = field(default_factory=FakeClickUp)
    robocorp: FakeRobocorp = field(default_factory=FakeRobocorp)
    registry: FakeRegistry = field(default_factory=FakeRegistry)
    stop: StopSignal = field(default_factory=StopSignal)
    archived: dict[str, bytes] = field(default_factory=dict)
    bookkeeper_mails: list[dict] = field(default_factory=list)

    def require(self, *clients: str) -> None:
        """Every fake is always there."""

    def token_expiry_report(self, *, publish_metric: bool = True) -> dict:
        return {}

    def throttling(self) -> dict:
        return {}

    def archive(self, parts: Sequence[str], content: bytes) -> None:
        self.archived["/".join(parts)] = content

    def mail_bookkeeper(
        self, subject: str, html: str, text: str, attachments: Sequence[Attachment] = ()
    ) -> bool:
        self.bookkeeper_mails.append({"subject": subject, "text": text})
        return True


def robot_run(run_id: str, workspace: str, seconds: int, started: datetime = OCTOBER_RUN) -> ProcessRun:
    return ProcessRun(
        id=run_id,
        workspace_id=workspace,
        process_id="p1",
        process_name="Invoice bot",
        state="completed",
        started_at=started,
        ended_at=started + timedelta(seconds=seconds),
        duration_seconds=Decimal(seconds),
    )


def ledger_rows(ledger: Ledger) -> dict[str, Any]:
    return {entry.key: entry for entry in ledger.scan_prefix("")}
