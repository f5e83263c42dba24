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
from datetime import timedelta

from loguru import logger

from integrations import errors
from integrations.aws import LedgerEntry
from integrations.claims import Claims
from integrations.cli import EXIT_OK, EXIT_PARTIAL, JobOptions, JobOutcome
from integrations.clock import clock_for
from integrations.config import Settings
from integrations.identifiers import leading_client_number
from integrations.lifecycle import run_all
from integrations.models import Attachment
from integrations.qbo import (
    FUTURE_TXN_DATE_WINDOW,
    attempt_of,
    is_definite_failure,
    request_id_for,
    request_id_of,
)
from integrations.qbo_entities import Invoice
from integrations.report import safe_path_segment
from integrations.services import Services
from send_invoices import summary
from send_invoices.results import Delivery, Outcome, Reason

MAX_QBO_SENDS = 3  # sends of one invoice in one run when QBO's answer is lost and it shows no mail
MAIL_SLOTS = 4  # Outlook: at most 4 concurrent requests per mailbox (DESIGN §7), whatever SEND_WORKERS is


def run(settings: Settings, options: JobOptions, services: Services) -> JobOutcome:
    return SendRun(settings, options, services, uuid.uuid4().hex[:12]).execute()


class SendRun:
    def __init__(self, settings: Settings, options: JobOptions, services: Services, run_id: str):
        self.settings, self.options, self.services, self.run_id = settings, options, services, run_id
        self._mail_slots = threading.BoundedSemaphore(MAIL_SLOTS)
        self.today = clock_for(settings).today()  # the one clock (DESIGN §7 Time)

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
        summary_data = {**report.as_dict(), **expiry, "throttling": self.services.throttling()}
        return JobOutcome(EXIT_PARTIAL if failed else EXIT_OK, summary_data, report.table)

    def _waiting(self) -> list[Invoice]:
        """NeedToSend invoices of the look-back window. EmailStatus is not a documented query
        filter, so recent invoices are queried by TxnDate and filtered here."""
        start = self.today - timedelta(days=self.settings.send_lookback_days)
        invoices = self.services.qbo.invoices_between(start, self.today + FUTURE_TXN_DATE_WINDOW)
        waiting = [i for i in invoices if i.email_status == "NeedToSend"]
        if not self.options.dry_run:
            waiting += self._follow_ups({i.id for i in waiting})
        if self.options.clients:
            wanted = set(self.options.clients)
            waiting = [i for i in waiting if leading_client_number(i.customer_name) in wanted]
        logger.info("{n} invoice(s) waiting to be sent", n=len(waiting))
        return sorted(waiting, key=lambda i: (i.doc_number, i.id))

    def _follow_ups(self, waiting: set[str]) -> list[Invoice]:
        """Deliveries an earlier run left unfinished whose invoice no longer waits: QBO marks an
        invoice EmailSent as it sends it, so a run that died right after ``/send`` leaves a claim
        with ``stage=mailing`` (or a sent row whose PDF was never archived) that nothing else would
        ever look at again. They are checked and finished like any delivery, never resent blindly."""
        follow: list[str] = []
        for entry in self.services.ledger.scan_prefix("send#"):
            invoice_id = str(entry.attributes.get("invoice_id") or "")
            mailing = entry.status in ("claimed", "failed") and entry.attributes.get("stage") == "mailing"
            unarchived = entry.status == "sent" and entry.attributes.get("archived") is not True
            if invoice_id and invoice_id not in waiting and (mailing or unarchived):
                follow.append(invoice_id)
        found = []
        for invoice_id in follow:
            try:
                found.append(self.services.qbo.get_invoice(invoice_id))
            except errors.NotFound:  # deleted in QBO since: nothing left to deliver or archive
                logger.warning("invoice {id} of an unfinished delivery no longer exists", id=invoice_id)
        return found

    def _to_resend(self) -> list[Invoice]:
        """The one invoice of this system named by ``--resend`` (doc number or QBO id); refuses,
        naming the candidates, when there is none or several (DESIGN §7)."""
        wanted = str(self.options.resend).strip()
        start = self.today - timedelta(days=self.settings.send_lookback_days)
        ours = [
            i
            for i in self.services.qbo.invoices_between(start, self.today + FUTURE_TXN_DATE_WINDOW)
            if i.marker is not None
        ]
        found = [i for i in ours if wanted in (i.doc_number, i.id)]
        if len(found) == 1:
            logger.info("resending invoice {doc} on request", doc=wanted)
            return found
        near = [i for i in ours if wanted.casefold() in f"{i.doc_number} {i.id}".casefold()]
        named = ", ".join(f"{i.doc_number or '-'} (Id {i.id})" for i in (found or near)[:10]) or "none"
        what = "several invoices match" if found else "no invoice of this system matches"
        raise errors.StartupError(f"--resend {wanted}: {what} (candidates: {named})")

    def _stopped(self, invoice: Invoice, started: bool) -> Delivery:
        result = self._delivery(invoice)
        reason = (
            "stopped early while sending: the next run checks and finishes it"
            if started
            else "stopped early: not started"
        )
        return result.set(Outcome.FAILED, Reason.STOPPED, reason)

    def _delivery(self, invoice: Invoice) -> Delivery:
        return Delivery(
            invoice_id=invoice.id,
            doc_number=invoice.number,
            customer=invoice.customer_name,
            amount=invoice.total,
            outcome=Outcome.SKIPPED,
            to=invoice.bill_email,
        )

    def _handle(self, invoice: Invoice) -> Delivery:
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

    def _deliver(self, invoice: Invoice, result: Delivery) -> Delivery:
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
            if not self._mail(invoice, key, entry, result, pdf):
                return result  # needs a person: the mail service may have taken it
        self.claims.record(key, "sent", {"to": result.to, "archived": False})
        result.outcome = Outcome.SENT
        if self.settings.invoice_delivery == "graph":
            try:
                self._mark_sent(invoice, key)
            except errors.ServiceError as exc:
                result.warning = (
                    f"mailed, but QuickBooks not yet marked EmailSent ({exc}); the next run retries"
                )
        self._archive(invoice, key, result, pdf)
        logger.info("sent invoice {doc} to {to}", doc=result.doc_number, to=result.to)
        return result

    def _mail(
        self, invoice: Invoice, key: str, entry: LedgerEntry | None, result: Delivery, pdf: bytes | None
    ) -> bool:
        """Mail the invoice once; False when its outcome is unknown and a person must check.

        One path for a mail whose outcome is unknown, whether this run lost the answer or an earlier
        run died: the claim says stage=mailing, and in qbo mode the invoice is read in QBO
        (``Invoice.delivered``) before any further send; QBO's /send itself is never replayed by the
        session. Graph mode has nothing to read, so a person checks (needs_review)."""
        attempt = attempt_of(entry, "send")
        request_id = request_id_of(key, "send", entry)  # a new one only after a definite failure
        for sends in range(1, MAX_QBO_SENDS + 1):
            # from here on, a crash leaves the outcome unknown
            self.claims.note(key, {"stage": "mailing"})
            try:
                self._send(invoice, key, result, pdf, request_id)
                return True
            except (errors.TransportError, errors.ServerError) as exc:
                if self.settings.invoice_delivery == "graph":
                    # The mail service may have accepted it before the connection broke: do not resend.
                    reason = f"the mail service did not confirm the send ({exc}); check Sent Items before resending"
                    self.claims.record(key, "needs_review", {"reason": reason})
                    result.set(Outcome.NEEDS_REVIEW, Reason.OUTCOME_UNKNOWN, reason)
                    return False
                try:
                    delivered = self.services.qbo.get_invoice(result.invoice_id).delivered
                except errors.ServiceError:  # cannot check: stage stays "mailing" for the next run
                    self.claims.record(key, "failed", {"reason": f"{exc}; the send could not be checked"})
                    raise
                if delivered:
                    logger.info(
                        "QBO mailed invoice {doc} despite the error ({error})",
                        doc=result.doc_number,
                        error=str(exc),
                    )
                    return True
                if sends == MAX_QBO_SENDS:
                    # stage stays "mailing": the next run reads the invoice in QBO before sending again
                    self.claims.record(key, "failed", {"reason": str(exc)})
                    raise
                logger.info(
                    "QBO did not mail invoice {doc} ({error}); sending again",
                    doc=result.doc_number,
                    error=str(exc),
                )
            except errors.ServiceError as exc:  # refused (4xx): nothing went out
                # A fault that sent nothing moves on to a new requestid (QBO would replay the fault).
                moved_on = {"send_attempt": attempt + 1} if is_definite_failure(exc) else {}
                self.claims.record(key, "failed", {"reason": str(exc), "stage": "refused", **moved_on})
                raise
        raise AssertionError("unreachable: the last send returns or raises")

    def _not_ours(self, invoice: Invoice, key: str, entry: LedgerEntry | None, result: Delivery) -> Delivery:
        """The delivery was claimed by another run: finished (sent, needs a person) or still live."""
        status = entry.status if entry else "unknown"
        if status == "sent" and entry is not None:
            result.skip(Reason.ALREADY_SENT, "already sent")
            if invoice.email_status == "NeedToSend":
                # Delivered before; QBO still says NeedToSend (the mark failed, or a person reset it).
                self._mark_sent(invoice, key)
                result.reason = f"already sent; QuickBooks marked EmailSent again (to mail it again: --resend {result.doc_number})"
            if entry.attributes.get("archived") is not True:
                self._archive(invoice, key, result, None)
            return result
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
            if current.delivered:
                self.claims.record(key, "sent", {"recovered": True, "archived": False})
                result.skip(Reason.ALREADY_SENT, "already sent by an interrupted run (confirmed in QBO)")
                self._archive(current, key, result, None)
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

    def _send(self, invoice: Invoice, key: str, result: Delivery, pdf: bytes | None, request_id: str) -> None:
        if pdf is None:
            self.services.qbo.send_invoice(result.invoice_id, request_id)
            return
        subject, html = summary.customer_mail(invoice, result)
        attachment = Attachment(f"Invoice-{safe_path_segment(result.doc_number)}.pdf", "application/pdf", pdf)
        self.services.graph.send_mail(
            self.settings.sender_email,
            [result.to],
            subject,
            html,
            attachments=[attachment],
            cc=invoice.cc,
            bcc=invoice.bcc,
        )

    def _mark_sent(self, invoice: Invoice, key: str) -> None:
        self.services.qbo.sparse_update_invoice(
            invoice.id, {"EmailStatus": "EmailSent"}, request_id_for(key, "mark-sent")
        )

    def _archive(self, invoice: Invoice, key: str, result: Delivery, pdf: bytes | None) -> None:
        """Archive the invoice PDF and note it on the delivery's ledger row; a failure is a warning
        (the mail went out) and the next run tries again."""
        problem = self._upload_pdf(invoice, result, pdf)
        if problem:
            result.warning = "; ".join(w for w in (result.warning, problem) if w)
        else:
            self.services.ledger.annotate(key, "sent", {"archived": True})

    def _upload_pdf(self, invoice: Invoice, result: Delivery, pdf: bytes | None) -> str:
        marker = invoice.marker
        period = marker.period if marker else invoice.txn_date[:7] or self.today.strftime("%Y-%m")
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
