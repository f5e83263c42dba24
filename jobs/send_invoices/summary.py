"""The bookkeeper's summary of a send run and the short mail a customer gets in graph mode.
Pure: takes results, returns strings."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from integrations.report import Section, money, render_html, render_text

if TYPE_CHECKING:
    from send_invoices.job import Delivery

# Reasons that are configuration, not news: they alone do not make a mail worth sending.
_QUIET_REASONS = ("excluded customer", "dry run")


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


def build(results: Sequence[Delivery], delivery: str, *, dry_run: bool = False) -> Report:
    sent = [r for r in results if r.outcome in ("sent", "would_send")]
    review = [r for r in results if r.outcome == "needs_review"]
    failed = [r for r in results if r.outcome == "failed"]
    skipped = [r for r in results if r.outcome == "skipped"]
    noteworthy_skips = [r for r in skipped if r.reason not in _QUIET_REASONS]
    total = sum((r.amount for r in sent), Decimal("0"))
    sections = [
        Section(
            f"{'Would send' if dry_run else 'Sent'} ({len(sent)})",
            ("Invoice", "Customer", "To", "Amount"),
            [(r.doc_number, r.customer, r.to, money(r.amount)) for r in sent],
            numeric={"Amount"},
            note=f"Delivered {'by QuickBooks' if delivery == 'qbo' else 'by mail with the PDF attached'}."
            if sent
            else "",
        ),
        Section(
            f"Needs a person to check ({len(review)})",
            ("Invoice", "Customer", "Why"),
            [(r.doc_number, r.customer, r.reason) for r in review],
        ),
        Section(
            f"Failed ({len(failed)})",
            ("Invoice", "Customer", "Reason"),
            [(r.doc_number, r.customer, r.reason) for r in failed],
        ),
        Section(
            f"Skipped ({len(skipped)})",
            ("Invoice", "Customer", "Reason"),
            [(r.doc_number, r.customer, r.reason) for r in skipped],
        ),
    ]
    warnings = [f"{r.doc_number} ({r.customer}): {r.warning}" for r in results if r.warning]
    if warnings:
        sections.append(Section(f"Warnings ({len(warnings)})", lines=warnings))
    counts = {
        "sent": sum(r.outcome == "sent" for r in results),
        "would_send": sum(r.outcome == "would_send" for r in results),
        "needs_review": len(review),
        "failed": len(failed),
        "skipped": len(skipped),
    }
    heading = "Invoices sent" + (" (dry run)" if dry_run else "")
    intro = f"{len(sent)} invoice(s) totalling {money(total)}; {len(failed)} failed; {len(review)} to check."
    subject = f"[QBO invoices] sent {len(sent)} ({money(total)})"
    if failed or review:
        subject += f", {len(failed) + len(review)} NEED ATTENTION"
    return Report(
        subject=subject,
        html=render_html(heading, intro, sections),
        text=render_text(heading, intro, sections),
        table=[
            {
                "invoice": r.doc_number,
                "customer": r.customer,
                "outcome": r.outcome,
                "to": r.to,
                "amount": str(r.amount),
                "reason": r.reason or r.warning,
            }
            for r in results
        ],
        counts=counts,
        worth_mailing=bool(sent or review or failed or noteworthy_skips or warnings) and not dry_run,
        delivery=delivery,
    )


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
