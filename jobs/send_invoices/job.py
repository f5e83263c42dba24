"""The daily send-invoices job.

Finds QBO invoices marked NeedToSend, claims each delivery in the ledger, delivers it through
QBO (`/send`) or as a Graph mail with the QBO PDF, records the outcome, archives the PDF to
SharePoint and mails the bookkeeper when there was anything to report. A delivery whose outcome
is unknown after a crash is checked in QBO (qbo mode) or reported for a person (graph mode),
never resent blindly.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from loguru import logger

from integrations import errors
from integrations.aws import CLAIM_LEASE_SECONDS
from integrations.cli import EXIT_OK, EXIT_PARTIAL, JobOptions, JobOutcome
from integrations.config import BUSINESS_TIME_ZONE, Settings
from integrations.models import Attachment
from integrations.qbo import is_definite_failure, request_id_for
from integrations.report import safe_path_segment
from integrations.services import Services, connect
from send_invoices import summary

_MARKER = re.compile(r"invoice-processor:(\d+):(\d{4}-\d{2})")


@dataclass
class Delivery:
    invoice_id: str
    doc_number: str
    customer: str
    amount: Decimal
    outcome: str  # sent | would_send | skipped | failed | needs_review
    reason: str = ""
    to: str = ""
    warning: str = ""


def client_number(display_name: str) -> str:
    match = re.match(r"\s*(\d{3,10})\b", display_name or "")
    return match.group(1) if match else ""


def run(settings: Settings, options: JobOptions) -> JobOutcome:
    return SendRun(settings, options, connect(settings), uuid.uuid4().hex[:12]).execute()


class SendRun:
    def __init__(self, settings: Settings, options: JobOptions, services: Services, run_id: str):
        self.settings, self.options, self.services, self.run_id = settings, options, services, run_id
        self.today = datetime.now(UTC).astimezone(ZoneInfo(BUSINESS_TIME_ZONE)).date()

    def execute(self) -> JobOutcome:
        self.services.require("qbo", *(() if self.options.dry_run else ("graph",)))
        waiting = self._waiting()
        results = [self._handle(invoice) for invoice in waiting]
        report = summary.build(results, self.settings.invoice_delivery, dry_run=self.options.dry_run)
        failed = any(r.outcome in ("failed", "needs_review") for r in results)
        if self.options.dry_run:
            print(summary.dry_run_listing(results))
        elif report.worth_mailing:
            failed = not self.services.mail_bookkeeper(report.subject, report.html, report.text) or failed
        else:
            logger.info("nothing to send")
        summary_data = {**report.as_dict(), "throttling": self.services.throttling()}
        return JobOutcome(EXIT_PARTIAL if failed else EXIT_OK, summary_data, report.table)

    def _waiting(self) -> list[dict]:
        """NeedToSend invoices of the look-back window. EmailStatus is not a documented query
        filter, so recent invoices are queried by TxnDate and filtered here."""
        start = self.today - timedelta(days=self.settings.send_lookback_days)
        invoices = self.services.qbo.invoices_between(start, self.today + timedelta(days=62))
        waiting = [i for i in invoices if i.get("EmailStatus") == "NeedToSend"]
        if self.options.clients:
            wanted = set(self.options.clients)
            waiting = [i for i in waiting if client_number(_customer(i)) in wanted]
        logger.info("{n} invoice(s) waiting to be sent", n=len(waiting))
        return sorted(waiting, key=lambda i: (str(i.get("DocNumber") or ""), str(i["Id"])))

    def _handle(self, invoice: dict) -> Delivery:
        name = _customer(invoice)
        result = Delivery(
            invoice_id=str(invoice["Id"]),
            doc_number=str(invoice.get("DocNumber") or invoice["Id"]),
            customer=name,
            amount=Decimal(str(invoice.get("TotalAmt", "0"))).quantize(Decimal("0.01")),
            outcome="skipped",
            to=((invoice.get("BillEmail") or {}).get("Address") or ""),
        )
        with logger.contextualize(invoice=result.doc_number):
            if self.settings.is_excluded(client_number(name), name):
                result.reason = "excluded customer"
                return result
            if not result.to:
                result.reason = "no BillEmail: add the customer's email in QuickBooks"
                return result
            if self.options.dry_run:
                result.outcome, result.reason = "would_send", "dry run"
                return result
            try:
                return self._deliver(invoice, result)
            except errors.ReauthorizationRequired:
                raise
            except errors.ServiceError as exc:
                logger.error("invoice {doc} not sent: {error}", doc=result.doc_number, error=str(exc))
                result.outcome, result.reason = "failed", str(exc)
                return result

    def _deliver(self, invoice: dict, result: Delivery) -> Delivery:
        ledger = self.services.ledger
        key = f"send#{result.invoice_id}#{invoice.get('SyncToken', '0')}"
        acquired, entry = ledger.claim(
            key,
            self.run_id,
            request_id_for(key, "send"),
            CLAIM_LEASE_SECONDS,
            {
                "invoice_id": result.invoice_id,
                "doc_number": result.doc_number,
                "mode": self.settings.invoice_delivery,
            },
        )
        if not acquired:
            status = entry.status if entry else "unknown"
            if status == "sent":
                # Delivered, but QBO was not marked (that update failed last time): finish it now.
                self._mark_sent(invoice, key)
                result.reason = "already sent; QuickBooks status updated now"
            elif status == "needs_review":
                result.outcome = "needs_review"
                result.reason = (
                    str(entry.attributes.get("reason", "outcome unknown")) if entry else "outcome unknown"
                )
            else:
                result.reason = f"claimed by another run ({status})"
            return result
        crashed = entry is not None and entry.previous_status == "claimed"
        if crashed and not self._safe_to_resend(invoice, key, result):
            return result
        pdf: bytes | None = None
        if self.settings.invoice_delivery == "graph":
            try:
                pdf = self.services.qbo.invoice_pdf(result.invoice_id)
            except errors.ServiceError as exc:  # nothing was sent: the next run tries again
                ledger.record(key, self.run_id, "failed", {"reason": f"PDF not available: {exc}"})
                raise
        attempt = int((entry.attributes.get("send_attempt") if entry else 0) or 0)
        try:
            self._send(invoice, key, result, pdf, attempt)
        except (errors.TransportError, errors.ServerError) as exc:
            if self.settings.invoice_delivery == "graph":
                # The mail service may have accepted it before the connection broke: do not resend.
                reason = (
                    f"the mail service did not confirm the send ({exc}); check Sent Items before resending"
                )
                ledger.record(key, self.run_id, "needs_review", {"reason": reason})
                result.outcome, result.reason = "needs_review", reason
                return result
            ledger.record(key, self.run_id, "failed", {"reason": str(exc)})
            raise
        except errors.ServiceError as exc:
            # A fault that sent nothing moves on to a new requestid (QBO would replay the fault).
            moved_on = {"send_attempt": attempt + 1} if is_definite_failure(exc) else {}
            ledger.record(key, self.run_id, "failed", {"reason": str(exc), **moved_on})
            raise
        ledger.record(key, self.run_id, "sent", {"to": result.to})
        result.outcome = "sent"
        if self.settings.invoice_delivery == "graph":
            try:
                self._mark_sent(invoice, key)
            except errors.ServiceError as exc:
                result.warning = (
                    f"mailed, but QuickBooks not yet marked EmailSent ({exc}); the next run retries"
                )
        archive_problem = self._archive(invoice, result, pdf)
        result.warning = "; ".join(w for w in (result.warning, archive_problem) if w)
        logger.info("sent invoice {doc} to {to}", doc=result.doc_number, to=result.to)
        return result

    def _safe_to_resend(self, invoice: dict, key: str, result: Delivery) -> bool:
        """A previous run claimed this delivery and died. In qbo mode QBO's own record tells whether
        the mail went out; in graph mode nothing does, so a person must check."""
        if self.settings.invoice_delivery == "qbo":
            current = self.services.qbo.get_invoice(result.invoice_id)
            if current.get("EmailStatus") == "EmailSent" or current.get("DeliveryInfo"):
                self.services.ledger.record(key, self.run_id, "sent", {"recovered": True})
                result.outcome, result.reason = (
                    "skipped",
                    "already sent by an interrupted run (confirmed in QBO)",
                )
                return False
            return True
        reason = (
            "an earlier run stopped while sending this invoice by mail; check the Sent Items of "
            f"{self.settings.sender_email} and, if it went out, mark it sent in QuickBooks; otherwise "
            "delete the ledger item and the next run will send it"
        )
        self.services.ledger.record(key, self.run_id, "needs_review", {"reason": reason})
        result.outcome, result.reason = "needs_review", reason
        return False

    def _send(self, invoice: dict, key: str, result: Delivery, pdf: bytes | None, attempt: int) -> None:
        if pdf is None:
            self.services.qbo.send_invoice(result.invoice_id, request_id_for(key, "send", attempt))
            return
        cc = [a for a in [(invoice.get("BillEmailCc") or {}).get("Address")] if a]
        bcc = [a for a in [(invoice.get("BillEmailBcc") or {}).get("Address")] if a]
        subject, html = summary.customer_mail(invoice, result)
        self.services.graph.send_mail(
            self.settings.sender_email,
            [result.to],
            subject,
            html,
            attachments=[
                Attachment(f"Invoice-{safe_path_segment(result.doc_number)}.pdf", "application/pdf", pdf)
            ],
            cc=cc,
            bcc=bcc,
        )

    def _mark_sent(self, invoice: dict, key: str) -> None:
        self.services.qbo.sparse_update_invoice(
            str(invoice["Id"]), {"EmailStatus": "EmailSent"}, request_id_for(key, "mark-sent")
        )

    def _archive(self, invoice: dict, result: Delivery, pdf: bytes | None) -> str:
        match = _MARKER.search(invoice.get("PrivateNote") or "")
        period = (
            match.group(2) if match else str(invoice.get("TxnDate", ""))[:7] or self.today.strftime("%Y-%m")
        )
        parts = [
            period,
            safe_path_segment(result.customer),
            f"Invoice-{safe_path_segment(result.doc_number)}.pdf",
        ]
        try:
            content = pdf if pdf is not None else self.services.qbo.invoice_pdf(result.invoice_id)
            self.services.archive(parts, content)
            return ""
        except errors.ServiceError as exc:
            logger.warning("PDF not archived: {error}", error=str(exc))
            return f"PDF not archived to SharePoint: {exc}"


def _customer(invoice: dict) -> str:
    return str(
        (invoice.get("CustomerRef") or {}).get("name") or (invoice.get("CustomerRef") or {}).get("value", "")
    )
