"""The daily send-invoices job.

Finds QBO invoices marked NeedToSend, claims each delivery in the ledger, delivers it through
QBO (`/send`) or as a Graph mail with the QBO PDF, records the outcome, archives the PDF to
SharePoint and mails the bookkeeper when there was anything to report.

A delivery is one per invoice (``send#<invoice id>``): once a customer mail for an invoice was
handed to QBO or Graph, no later run mails it again on its own, whatever edits follow. Right
before the mail call the claim notes ``stage=mailing``; a run that finds a claim with that note
(its run died, or the call's outcome was unknown) checks QBO's record (qbo mode) or asks a person
(graph mode), never resends blindly. Resending is a person's decision: ``--resend <doc number>``.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from loguru import logger

from integrations import errors
from integrations.aws import LedgerEntry
from integrations.claims import Claims
from integrations.cli import EXIT_OK, EXIT_PARTIAL, JobOptions, JobOutcome
from integrations.config import Settings
from integrations.identifiers import find_marker, leading_client_number
from integrations.lifecycle import run_all
from integrations.models import Attachment
from integrations.qbo import FUTURE_TXN_DATE_WINDOW, request_id_for
from integrations.report import safe_path_segment
from integrations.services import Services
from send_invoices import summary
from send_invoices.results import Delivery, Outcome, Reason

MAIL_SLOTS = 4  # Outlook: at most 4 concurrent requests per mailbox (DESIGN §7), whatever SEND_WORKERS is


def run(settings: Settings, options: JobOptions, services: Services) -> JobOutcome:
    return SendRun(settings, options, services, uuid.uuid4().hex[:12]).execute()


class SendRun:
    def __init__(self, settings: Settings, options: JobOptions, services: Services, run_id: str):
        self.settings, self.options, self.services, self.run_id = settings, options, services, run_id
        self._mail_slots = threading.BoundedSemaphore(MAIL_SLOTS)
        self.today = datetime.now(UTC).astimezone(ZoneInfo(settings.business_time_zone)).date()

    def execute(self) -> JobOutcome:
        self.services.require("qbo", *(() if self.options.dry_run else ("graph",)))
        try:
            waiting = self._to_resend() if self.options.resend else self._waiting()
        except errors.ReauthorizationRequired:
            raise
        except errors.ServiceError as exc:
            raise errors.StartupError(f"cannot read the invoices waiting to be sent: {exc}") from None
        stop = self.services.stop
        with Claims(self.services.ledger, self.run_id, self.settings.claim_ttl_seconds, stop) as claims:
            self.claims = claims
            results = run_all(
                waiting,
                self._handle,
                workers=self.settings.send_workers,
                stop=stop,
                grace_seconds=self.settings.stop_grace_seconds,
                unfinished=self._stopped,
                name="invoice",
            )
        report = summary.build(
            results,
            self.settings.invoice_delivery,
            dry_run=self.options.dry_run,
            stopped=stop.reason if stop.requested else "",
        )
        failed = any(r.outcome in (Outcome.FAILED, Outcome.NEEDS_REVIEW) for r in results)
        if self.options.dry_run:
            print(summary.dry_run_listing(results))
        elif report.worth_mailing:
            failed = not self.services.mail_bookkeeper(report.subject, report.html, report.text) or failed
        else:
            logger.info("nothing to send")
        expiry = self.services.token_expiry_report(publish_metric=not self.options.dry_run)
        return JobOutcome(EXIT_PARTIAL if failed else EXIT_OK, {**report.as_dict(), **expiry}, report.table)

    def _waiting(self) -> list[dict]:
        """NeedToSend invoices of the look-back window. EmailStatus is not a documented query
        filter, so recent invoices are queried by TxnDate and filtered here."""
        start = self.today - timedelta(days=self.settings.send_lookback_days)
        invoices = self.services.qbo.invoices_between(start, self.today + FUTURE_TXN_DATE_WINDOW)
        waiting = [i for i in invoices if i.get("EmailStatus") == "NeedToSend"]
        if self.options.clients:
            wanted = set(self.options.clients)
            waiting = [i for i in waiting if leading_client_number(_customer(i)) in wanted]
        logger.info("{n} invoice(s) waiting to be sent", n=len(waiting))
        return sorted(waiting, key=lambda i: (str(i.get("DocNumber") or ""), str(i["Id"])))

    def _to_resend(self) -> list[dict]:
        """The one invoice of this system named by ``--resend`` (doc number or QBO id); refuses,
        naming the candidates, when there is none or several (DESIGN §7)."""
        wanted = str(self.options.resend).strip()
        start = self.today - timedelta(days=self.settings.send_lookback_days)
        ours = [
            i
            for i in self.services.qbo.invoices_between(start, self.today + FUTURE_TXN_DATE_WINDOW)
            if find_marker(i.get("PrivateNote")) is not None
        ]
        found = [i for i in ours if wanted in (str(i.get("DocNumber") or ""), str(i["Id"]))]
        if len(found) == 1:
            logger.info("resending invoice {doc} on request", doc=wanted)
            return found
        near = [i for i in ours if wanted.casefold() in f"{i.get('DocNumber') or ''} {i['Id']}".casefold()]
        named = (
            ", ".join(f"{i.get('DocNumber') or '-'} (Id {i['Id']})" for i in (found or near)[:10]) or "none"
        )
        what = "several invoices match" if found else "no invoice of this system matches"
        raise errors.StartupError(f"--resend {wanted}: {what} (candidates: {named})")

    def _stopped(self, invoice: dict, started: bool) -> Delivery:
        result = self._delivery(invoice)
        reason = (
            "stopped early while sending: the next run checks and finishes it"
            if started
            else "stopped early: not started"
        )
        return result.set(Outcome.FAILED, Reason.STOPPED, reason)

    def _delivery(self, invoice: dict) -> Delivery:
        return Delivery(
            invoice_id=str(invoice["Id"]),
            doc_number=str(invoice.get("DocNumber") or invoice["Id"]),
            customer=_customer(invoice),
            amount=Decimal(str(invoice.get("TotalAmt", "0"))).quantize(Decimal("0.01")),
            outcome=Outcome.SKIPPED,
            to=((invoice.get("BillEmail") or {}).get("Address") or ""),
        )

    def _handle(self, invoice: dict) -> Delivery:
        result = self._delivery(invoice)
        name = result.customer
        with logger.contextualize(invoice=result.doc_number):
            if not self.options.resend and self.settings.is_excluded(leading_client_number(name) or "", name):
                return result.skip(Reason.EXCLUDED, "excluded customer")
            if not result.to:
                return result.skip(
                    Reason.NO_BILL_EMAIL, "no BillEmail: add the customer's email in QuickBooks"
                )
            if self.options.dry_run:
                return result.set(Outcome.WOULD_SEND, Reason.DRY_RUN, "dry run")
            try:
                return self._deliver(invoice, result)
            except errors.ReauthorizationRequired:
                raise
            except errors.ServiceError as exc:
                logger.error("invoice {doc} not sent: {error}", doc=result.doc_number, error=str(exc))
                return result.set(Outcome.FAILED, Reason.ERROR, str(exc))

    def _delivery_key(self, result: Delivery) -> str:
        """One delivery per invoice; a ``--resend`` is a delivery of its own, once per run."""
        if self.options.resend:
            return f"resend#{result.invoice_id}#{self.run_id}"
        return f"send#{result.invoice_id}"

    def _deliver(self, invoice: dict, result: Delivery) -> Delivery:
        key = self._delivery_key(result)
        attributes = {
            "invoice_id": result.invoice_id,
            "doc_number": result.doc_number,
            "mode": self.settings.invoice_delivery,
        }
        acquired, entry = self.claims.take(key, request_id_for(key, "send"), attributes)
        if not acquired:
            return self._not_ours(invoice, key, entry, result)
        if entry is not None and entry.attributes.get("stage") == "mailing" and not self._unsent(key, result):
            return result
        pdf: bytes | None = None
        if self.settings.invoice_delivery == "graph":
            try:
                pdf = self.services.qbo.invoice_pdf(result.invoice_id)
                self.services.graph.access_token()  # the token call, too, before "mailing" is noted
            except errors.ServiceError as exc:  # nothing was sent: the next run tries again
                self.claims.record(key, "failed", {"reason": f"not mailed: {exc}"})
                raise
        # graph mode: wait for one of Outlook's 4 mailbox slots BEFORE noting "mailing", so a crash
        # while waiting never leaves an unknown outcome for a person to check
        with self._mail_slots if pdf is not None else contextlib.nullcontext():
            self.claims.note(key, {"stage": "mailing"})  # from here on, a crash leaves the outcome unknown
            try:
                self._send(invoice, key, result, pdf)
            except (errors.TransportError, errors.ServerError) as exc:
                if self.settings.invoice_delivery == "graph":
                    # The mail service may have accepted it before the connection broke: do not resend.
                    reason = f"the mail service did not confirm the send ({exc}); check Sent Items before resending"
                    self.claims.record(key, "needs_review", {"reason": reason})
                    return result.set(Outcome.NEEDS_REVIEW, Reason.OUTCOME_UNKNOWN, reason)
                # stage stays "mailing": the next run reads the invoice in QBO before sending again
                self.claims.record(key, "failed", {"reason": str(exc)})
                raise
            except errors.ServiceError as exc:  # refused (4xx): nothing went out
                self.claims.record(key, "failed", {"reason": str(exc), "stage": "refused"})
                raise
        self.claims.record(key, "sent", {"to": result.to})
        result.outcome = Outcome.SENT
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

    def _not_ours(self, invoice: dict, key: str, entry: LedgerEntry | None, result: Delivery) -> Delivery:
        """The delivery was claimed by another run: finished (sent, needs a person) or still live."""
        status = entry.status if entry else "unknown"
        if status == "sent":
            # Delivered before; QBO still says NeedToSend (the mark failed, or a person reset it).
            self._mark_sent(invoice, key)
            return result.skip(
                Reason.ALREADY_SENT,
                f"already sent; QuickBooks marked EmailSent again (to mail it again: --resend {result.doc_number})",
            )
        if status == "needs_review":
            reason = str(entry.attributes.get("reason", "outcome unknown")) if entry else "outcome unknown"
            return result.set(Outcome.NEEDS_REVIEW, Reason.OUTCOME_UNKNOWN, reason)
        return result.set(
            Outcome.FAILED,
            Reason.CLAIMED_BY_ANOTHER_RUN,
            f"another run is still sending it ({status}); the next run checks it",
        )

    def _unsent(self, key: str, result: Delivery) -> bool:
        """An earlier attempt reached the mail call and its outcome is unknown (its run died, or
        the call failed without an answer). In qbo mode QBO's own record tells whether the mail
        went out; in graph mode nothing does, so a person must check."""
        if self.settings.invoice_delivery == "qbo":
            current = self.services.qbo.get_invoice(result.invoice_id)
            if current.get("EmailStatus") == "EmailSent" or current.get("DeliveryInfo"):
                self.claims.record(key, "sent", {"recovered": True})
                result.skip(Reason.ALREADY_SENT, "already sent by an interrupted run (confirmed in QBO)")
                return False
            return True
        reason = (
            "an earlier run stopped while sending this invoice by mail; check the Sent Items of "
            f"{self.settings.sender_email}: if it went out, mark it sent in QuickBooks; if not, run "
            f"--resend {result.doc_number}"
        )
        self.claims.record(key, "needs_review", {"reason": reason})
        result.set(Outcome.NEEDS_REVIEW, Reason.OUTCOME_UNKNOWN, reason)
        return False

    def _send(self, invoice: dict, key: str, result: Delivery, pdf: bytes | None) -> None:
        if pdf is None:
            self.services.qbo.send_invoice(result.invoice_id, request_id_for(key, "send"))
            return
        cc = [a for a in [(invoice.get("BillEmailCc") or {}).get("Address")] if a]
        bcc = [a for a in [(invoice.get("BillEmailBcc") or {}).get("Address")] if a]
        subject, html = summary.customer_mail(invoice, result)
        attachment = Attachment(f"Invoice-{safe_path_segment(result.doc_number)}.pdf", "application/pdf", pdf)
        self.services.graph.send_mail(
            self.settings.sender_email, [result.to], subject, html, attachments=[attachment], cc=cc, bcc=bcc
        )

    def _mark_sent(self, invoice: dict, key: str) -> None:
        self.services.qbo.sparse_update_invoice(
            str(invoice["Id"]), {"EmailStatus": "EmailSent"}, request_id_for(key, "mark-sent")
        )

    def _archive(self, invoice: dict, result: Delivery, pdf: bytes | None) -> str:
        marker = find_marker(invoice.get("PrivateNote"))
        period = (
            marker.period if marker else str(invoice.get("TxnDate", ""))[:7] or self.today.strftime("%Y-%m")
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
