"""``--release <doc number or invoice id>``: queue one held invoice for the next daily send.

Looks only at this system's invoices (the marker in PrivateNote, DESIGN §7) and refuses, naming
the candidates, when none or several match. Releasing = ``EmailStatus NeedToSend`` (what a person
does in QBO by ticking "send later"), with the hold marker taken out of the note.
"""

from __future__ import annotations

from datetime import timedelta

from loguru import logger

from create_invoices.billing import MARKER_PREFIX
from create_invoices.holds import is_held, released_note
from integrations.cli import EXIT_OK, JobOutcome, StartupError
from integrations.clock import Clock
from integrations.qbo import request_id_for
from integrations.services import Services

SEARCH_DAYS = 400  # our invoices are dated in the month after their period: a year and a bit back


def _ours(invoice: dict) -> bool:
    return any(
        word.startswith(f"{MARKER_PREFIX}:") and word.count(":") == 2
        for word in (invoice.get("PrivateNote") or "").split()
    )


def _label(invoice: dict) -> str:
    name = (invoice.get("CustomerRef") or {}).get("name") or "?"
    return f"{invoice.get('DocNumber') or '-'} (id {invoice.get('Id')}, {name}, {invoice.get('EmailStatus')})"


def release(services: Services, wanted: str, clock: Clock, *, dry_run: bool = False) -> JobOutcome:
    """Release the held invoice whose DocNumber or Id is ``wanted``; exit 2 when it is not one.
    ``dry_run``: say what would be released, change nothing."""
    services.require("qbo")
    qbo = services.qbo
    today = clock.today()
    ours = [
        i
        for i in qbo.invoices_between(today - timedelta(days=SEARCH_DAYS), today + timedelta(days=62))
        if _ours(i)
    ]
    held = [i for i in ours if is_held(i.get("PrivateNote")) and i.get("EmailStatus") == "NotSet"]
    matches = [i for i in ours if wanted.strip() in (str(i.get("DocNumber") or ""), str(i.get("Id")))]
    if len(matches) != 1:
        found = (
            "no invoice" if not matches else f"{len(matches)} invoices ({'; '.join(map(_label, matches))})"
        )
        waiting = "; ".join(map(_label, held)) or "none"
        raise StartupError(
            f"--release {wanted}: {found} made by the invoice processor match; held invoices: {waiting}"
        )
    invoice = matches[0]
    row = {"invoice": str(invoice.get("DocNumber") or invoice["Id"]), "id": str(invoice["Id"])}
    if invoice.get("EmailStatus") != "NotSet":
        row["outcome"] = f"not held (EmailStatus {invoice.get('EmailStatus')}): nothing changed"
        return JobOutcome(EXIT_OK, {"released": 0}, [row])
    if not (invoice.get("BillEmail") or {}).get("Address"):
        raise StartupError(
            f"--release {wanted}: the invoice has no BillEmail; add the customer's email in QBO first"
        )
    if dry_run:
        row["outcome"] = "would be released (dry run)"
        return JobOutcome(EXIT_OK, {"released": 0}, [row])
    note = released_note(invoice.get("PrivateNote") or "", today.isoformat())
    qbo.sparse_update_invoice(
        str(invoice["Id"]),
        {"EmailStatus": "NeedToSend", "PrivateNote": note},
        request_id_for(f"release#{invoice['Id']}#{invoice.get('SyncToken', '')}", "release"),
    )
    logger.info("released invoice {invoice} for sending", invoice=row["invoice"])
    row["outcome"] = "released: goes out with the next daily send"
    return JobOutcome(EXIT_OK, {"released": 1}, [row])
