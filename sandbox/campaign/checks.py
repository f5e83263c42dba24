"""Counting from a sandbox's final state against a clean run of the same scenario (the reference).

Pure: every function takes ``Sandbox.state()`` dicts (and the reference) and returns plain data,
so the counting itself is tested on planted states (tests/sandbox/test_fault_campaign.py).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from integrations.identifiers import find_marker
from sandbox.campaign.counts import Outcome

HOLD = re.compile(r"\bhold\b|\bheld\b", re.IGNORECASE)


@dataclass
class Reference:
    """What a clean run of the scenario produced: the bar every faulty run is held to."""

    invoices: dict[str, str] = field(default_factory=dict)  # marker -> TotalAmt
    customers: dict[str, str] = field(default_factory=dict)  # marker -> CustomerRef value
    delivered: list[str] = field(default_factory=list)  # doc numbers mailed (send only; ids may differ)
    archives: list[str] = field(default_factory=list)  # SharePoint paths written by the clean runs
    calls: list[str] = field(default_factory=list)  # "METHOD URL" of the clean run, in order


def _live(invoice: dict[str, Any]) -> bool:
    return not str(invoice.get("PrivateNote") or "").startswith("Voided")


def marked_invoices(state: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Live invoices per marker string (``invoice-processor:<client>:<YYYY-MM>``)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for invoice in state["invoices"]:
        marker = find_marker(invoice.get("PrivateNote"))
        if marker is not None and _live(invoice):
            found.setdefault(str(marker), []).append(invoice)
    return found


def _customer(invoice: dict[str, Any]) -> str:
    return str((invoice.get("CustomerRef") or {}).get("value", ""))


def _doc(invoice: dict[str, Any]) -> str:
    return str(invoice.get("DocNumber") or invoice["Id"])


def customer_mails(state: dict[str, Any], bookkeeper: str) -> Counter[str]:
    """Customer mails per invoice id: a mail not to the bookkeeper whose subject or attachment
    names carry the invoice's doc number (the longest match wins, "1001" never matches "10010")."""
    docs = {_doc(i): str(i["Id"]) for i in state["invoices"]}
    patterns = {doc: re.compile(rf"(?<![0-9]){re.escape(doc)}(?![0-9])") for doc in docs}
    mails: Counter[str] = Counter()
    for mail in state["mails"]:
        if bookkeeper.lower() in [address.lower() for address in mail["to"]]:
            continue
        text = " ".join([mail["subject"], *[str(a.get("name") or "") for a in mail["attachments"]]])
        matches = [doc for doc, pattern in patterns.items() if pattern.search(text)]
        if matches:
            mails[docs[max(matches, key=len)]] += 1
    return mails


def reference_from(state: dict[str, Any], bookkeeper: str, calls: list[str], send: bool) -> Reference:
    """The reference of a clean run: its invoices, (send) its deliveries and its archived files."""
    invoices = {marker: str(found[0]["TotalAmt"]) for marker, found in marked_invoices(state).items()}
    delivered: list[str] = []
    if send:
        mails = customer_mails(state, bookkeeper)
        delivered = sorted(
            _doc(i)
            for i in state["invoices"]
            if i.get("EmailStatus") == "EmailSent" and mails.get(str(i["Id"]))
        )
    customers = {marker: _customer(found[0]) for marker, found in marked_invoices(state).items()}
    archives = sorted(f["path"] for f in state["files"])
    return Reference(
        invoices=invoices, customers=customers, delivered=delivered, archives=archives, calls=calls
    )


def count_invoices(state: dict[str, Any], reference: Reference, outcome: Outcome, rerun: bool = True) -> None:
    """Duplicates (any marker), and lost/wrong invoices of the reference (also unrecovered when
    the state is the one after a re-run)."""
    found = marked_invoices(state)
    for marker, invoices in sorted(found.items()):
        if len(invoices) > 1:
            ids = ", ".join(str(i["Id"]) for i in invoices)
            outcome.problem(
                "duplicates", f"{len(invoices)} invoices for {marker} (ids {ids})", len(invoices) - 1
            )
    for marker, total in sorted(reference.invoices.items()):
        invoices = found.get(marker, [])
        if not invoices:
            outcome.problem("lost", f"no invoice for {marker}")
            if rerun:
                outcome.problem("unrecovered", f"invoice {marker} missing after the re-run")
        elif all(Decimal(str(i["TotalAmt"])) != Decimal(total) for i in invoices):
            outcome.problem("lost", f"{marker} billed {invoices[0]['TotalAmt']} instead of {total}")
        elif reference.customers.get(marker) not in (None, _customer(invoices[0])):
            outcome.problem(
                "lost",
                f"{marker} billed to customer {_customer(invoices[0])}, not {reference.customers[marker]}",
            )


def _ledger_rows(state: dict[str, Any], invoice_id: str) -> list[dict[str, Any]]:
    rows = []
    for row in state["ledger"]:
        attributes = row.get("attributes") or {}
        pk = str(row.get("pk", ""))
        if str(attributes.get("invoice_id", "")) == invoice_id and pk.startswith("send"):
            rows.append(row)
        elif pk.startswith("send") and (f"#{invoice_id}#" in pk or pk.endswith(f"#{invoice_id}")):
            rows.append(row)
    return rows


def count_deliveries(
    state: dict[str, Any], reference: Reference, bookkeeper: str, outcome: Outcome, mail_attempts: int = 0
) -> None:
    """Double mails (every invoice), and each reference delivery: made once and marked EmailSent.

    ``mail_attempts``: customer-mail calls the sandbox saw fail or time out (no mail written), so
    a ``needs_review`` without a mail is a person's job only when a call was really attempted."""
    mails = customer_mails(state, bookkeeper)
    by_id = {str(i["Id"]): i for i in state["invoices"]}
    for invoice_id, count in sorted(mails.items()):
        if count > 1:
            outcome.problem(
                "double_mails", f"invoice {_doc(by_id[invoice_id])} mailed {count} times", count - 1
            )
    by_doc = {_doc(i): i for i in state["invoices"] if _live(i)}
    for doc in reference.delivered:
        invoice = by_doc.get(doc)
        if invoice is None:
            outcome.problem("unrecovered", f"invoice {doc} is gone")
            continue
        invoice_id = str(invoice["Id"])
        review = any(row.get("status") == "needs_review" for row in _ledger_rows(state, invoice_id))
        sent = invoice.get("EmailStatus") == "EmailSent"
        if invoice.get("EmailStatus") == "NotSet" and HOLD.search(str(invoice.get("PrivateNote") or "")):
            outcome.notes.append(f"{outcome.name}: invoice {doc} is held")
        elif review and (mails.get(invoice_id) or mail_attempts > 0):
            if not mails.get(invoice_id):
                mail_attempts -= 1
            outcome.counts.person += 1
            outcome.notes.append(f"{outcome.name}: invoice {doc} needs a person (a mail call was made)")
        elif review and any(
            (row.get("attributes") or {}).get("stage") == "mailing" for row in _ledger_rows(state, invoice_id)
        ):
            # the run died between noting "about to mail" and the mail call: from the ledger no run
            # can tell whether the call was made, so a person checks (DESIGN §2), never a resend
            outcome.counts.person += 1
            outcome.notes.append(
                f"{outcome.name}: invoice {doc} needs a person (died right before the mail call)"
            )
        elif review:
            outcome.problem("unrecovered", f"invoice {doc} marked needs_review though no mail call was made")
        elif not mails.get(invoice_id):
            outcome.problem(
                "unrecovered",
                f"invoice {doc} not delivered after the re-run (EmailStatus {invoice.get('EmailStatus')})",
            )
        elif not sent:
            outcome.problem("unrecovered", f"invoice {doc} mailed but not marked EmailSent after the re-run")


def count_archives(state: dict[str, Any], reference: Reference, outcome: Outcome) -> None:
    """Every file the clean run archived (usage CSVs, invoice PDFs) exists after the re-run."""
    present = {f["path"] for f in state["files"]}
    in_review = {  # a delivery a person must decide on is archived once it is decided
        str((row.get("attributes") or {}).get("doc_number") or "")
        for row in state["ledger"]
        if row.get("status") == "needs_review"
    }
    for path in reference.archives:
        if path.rsplit("/", 1)[-1] in {f"Invoice-{doc}.pdf" for doc in in_review if doc}:
            continue
        if path not in present:
            outcome.problem("unrecovered", f"not archived after the re-run: {path.rsplit('/', 2)[-2:]}")


def failed_mail_attempts(requests: list[dict[str, Any]], mails_written: int) -> int:
    """Mail calls served with a fault or an error (the mail may or may not exist)."""
    attempts = [r for r in requests if re.search(r"/sendMail$|/send$", str(r.get("path", "")))]
    return max(0, len(attempts) - mails_written)
