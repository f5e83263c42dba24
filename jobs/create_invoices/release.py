"""``--release <doc number or invoice id>``: queue one held invoice for the next daily send.

Looks only at this system's invoices (the marker in PrivateNote, DESIGN §7) and refuses, naming
the candidates, when none or several match. Releasing = ``EmailStatus NeedToSend`` (what a person
does in QBO by ticking "send later"), with the hold marker taken out of the note.
"""

from __future__ import annotations

from datetime import timedelta

from loguru import logger

from create_invoices.holds import released_note
from integrations import errors
from integrations.cli import EXIT_OK, JobOutcome
from integrations.clock import Clock
from integrations.identifiers import is_held
from integrations.qbo import FUTURE_TXN_DATE_WINDOW, request_id_for
from integrations.qbo_entities import Invoice
from integrations.services import Services

SEARCH_DAYS = 400  # our invoices are dated in the month after their period: a year and a bit back


def _label(invoice: Invoice) -> str:
    return f"{invoice.doc_number or '-'} (id {invoice.id}, {invoice.customer_name or '?'}, {invoice.email_status})"


def release(services: Services, wanted: str, clock: Clock, *, dry_run: bool = False) -> JobOutcome:
    """Release the held invoice whose DocNumber or Id is ``wanted``; exit 2 when it is not one.
    ``dry_run``: say what would be released, change nothing."""
    services.require("qbo")
    qbo = services.qbo
    today = clock.today()
    window = qbo.invoices_between(today - timedelta(days=SEARCH_DAYS), today + FUTURE_TXN_DATE_WINDOW)
    ours = [i for i in window if i.marker is not None]
    held = [i for i in ours if is_held(i.private_note) and i.email_status == "NotSet"]
    matches = [i for i in ours if wanted.strip() in (i.doc_number, i.id)]
    if len(matches) != 1:
        found = (
            "no invoice" if not matches else f"{len(matches)} invoices ({'; '.join(map(_label, matches))})"
        )
        waiting = "; ".join(map(_label, held)) or "none"
        raise errors.UsageError(
            f"--release {wanted}: {found} made by the invoice processor match; held invoices: {waiting}"
        )
    invoice = matches[0]
    row = {"invoice": invoice.number, "id": invoice.id}
    if invoice.email_status != "NotSet":
        row["outcome"] = f"not held (EmailStatus {invoice.email_status}): nothing changed"
        return JobOutcome(EXIT_OK, {"released": 0}, [row])
    if not invoice.bill_email:
        raise errors.UsageError(
            f"--release {wanted}: the invoice has no BillEmail; add the customer's email in QBO first"
        )
    if dry_run:
        row["outcome"] = "would be released (dry run)"
        return JobOutcome(EXIT_OK, {"released": 0}, [row])
    note = released_note(invoice.private_note, today.isoformat())
    qbo.sparse_update_invoice(
        invoice.id,
        {"EmailStatus": "NeedToSend", "PrivateNote": note},
        request_id_for(f"release#{invoice.id}#{invoice.sync_token}", "release"),
    )
    logger.info("released invoice {invoice} for sending", invoice=row["invoice"])
    row["outcome"] = "released: goes out with the next daily send"
    return JobOutcome(EXIT_OK, {"released": 1}, [row])
