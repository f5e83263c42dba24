"""The bookkeeper's summary of a send run and the short mail a customer gets in graph mode.
Pure: takes results, returns strings."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from integrations.report import Section, money, render_html, render_text, stopped_sections
from send_invoices.results import QUIET_REASONS, Delivery, Outcome


@dataclass
class Report:
    subject: str
    html: str
    text: str
    table: list[dict[str, str]]
    counts: dict[str, int]
    worth_mailing: bool

    def as_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "delivery": self.delivery}

    delivery: str = "qbo"


def build(results: Sequence[Delivery], delivery: str, *, dry_run: bool = False, stopped: str = "") -> Report:
    sent = [r for r in results if r.outcome in (Outcome.SENT, Outcome.WOULD_SEND)]
    review = [r for r in results if r.outcome is Outcome.NEEDS_REVIEW]
    failed = [r for r in results if r.outcome is Outcome.FAILED]
    skipped = [r for r in results if r.outcome is Outcome.SKIPPED]
    warnings = [f"{r.doc_number} ({r.customer}): {r.warning}" for r in results if r.warning]
    total = sum((r.amount for r in sent), Decimal("0"))
    sections = [
        *stopped_sections(stopped),
        _sent_section(sent, delivery, dry_run),
        _invoice_section(f"Needs a person to check ({len(review)})", "Why", review),
        _invoice_section(f"Failed ({len(failed)})", "Reason", failed),
        _invoice_section(f"Skipped ({len(skipped)})", "Reason", skipped),
        *([Section(f"Warnings ({len(warnings)})", lines=warnings)] if warnings else []),
    ]
    counts = {
        "sent": sum(r.outcome is Outcome.SENT for r in results),
        "would_send": sum(r.outcome is Outcome.WOULD_SEND for r in results),
        "needs_review": len(review),
        "failed": len(failed),
        "skipped": len(skipped),
    }
    heading = "Invoices sent" + (" (dry run)" if dry_run else "")
    intro = f"{len(sent)} invoice(s) totalling {money(total)}; {len(failed)} failed; {len(review)} to check."
    subject = f"[QBO invoices] sent {len(sent)} ({money(total)})"
    if failed or review:
        subject += f", {len(failed) + len(review)} NEED ATTENTION"
    if stopped:
        subject = subject.replace("[QBO invoices]", "[QBO invoices] STOPPED EARLY:", 1)
    noteworthy_skips = [r for r in skipped if r.code not in QUIET_REASONS]
    return Report(
        subject=subject,
        html=render_html(heading, intro, sections),
        text=render_text(heading, intro, sections),
        table=[_table_row(r) for r in results],
        counts=counts,
        worth_mailing=bool(sent or review or failed or noteworthy_skips or warnings or stopped)
        and not dry_run,
        delivery=delivery,
    )


def _sent_section(sent: Sequence[Delivery], delivery: str, dry_run: bool) -> Section:
    how = "by QuickBooks" if delivery == "qbo" else "by mail with the PDF attached"
    return Section(
        f"{'Would send' if dry_run else 'Sent'} ({len(sent)})",
        ("Invoice", "Customer", "To", "Amount"),
        [(r.doc_number, r.customer, r.to, money(r.amount)) for r in sent],
        numeric={"Amount"},
        note=f"Delivered {how}." if sent else "",
    )


def _invoice_section(title: str, why: str, results: Sequence[Delivery]) -> Section:
    return Section(
        title, ("Invoice", "Customer", why), [(r.doc_number, r.customer, r.reason) for r in results]
    )


def _table_row(r: Delivery) -> dict[str, str]:
    return {
        "invoice": r.doc_number,
        "customer": r.customer,
        "outcome": str(r.outcome),
        "to": r.to,
        "amount": str(r.amount),
        "reason": r.reason or r.warning,
    }


def dry_run_listing(results: Sequence[Delivery]) -> str:
    lines = [
        f"{r.doc_number:<16} {r.customer:<40} {r.to:<32} {money(r.amount):>12}  {r.outcome} {r.reason}"
        for r in results
    ]
    return "\n".join(lines or ["nothing waiting to be sent"])


def customer_mail(invoice: dict, result: Delivery) -> tuple[str, str]:
    """Subject and short HTML body of the mail that carries an invoice PDF (graph mode)."""
    due = invoice.get("DueDate") or "on receipt"
    subject = f"Invoice {result.doc_number}"
    body = (
        f"<html><body><p>Dear {html.escape(result.customer)},</p>"
        f"<p>Please find attached invoice <b>{html.escape(result.doc_number)}</b> "
        f"for <b>{html.escape(money(result.amount))}</b>, due {html.escape(str(due))}.</p>"
        "<p>Thank you for your business.</p></body></html>"
    )
    return subject, body
