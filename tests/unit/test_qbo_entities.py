"""Typed views of QBO entities: typed where the product reads, whole where it does not."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from integrations.identifiers import InvoiceMarker
from integrations.qbo_entities import Customer, Invoice, Item

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "qbo-samples"


def test_an_invoice_from_intuits_sample_reads_typed_and_stays_whole():
    raw = json.loads((SAMPLES / "invoice.json").read_text(), parse_float=Decimal)
    raw = raw.get("Invoice", raw)
    invoice = Invoice(raw)
    assert invoice.id == str(raw["Id"]) and invoice.sync_token == str(raw["SyncToken"])
    assert invoice.total == Decimal(str(raw["TotalAmt"])).quantize(Decimal("0.01"))
    assert invoice.customer_id == str(raw["CustomerRef"]["value"])
    assert dict(invoice) == raw  # nothing lost


def test_invoice_fields_the_jobs_rely_on():
    invoice = Invoice(
        {
            "Id": 238,
            "DocNumber": "10002-202610",
            "CustomerRef": {"value": "58", "name": "10002 - Acme CPA"},
            "TotalAmt": 1306.65,
            "EmailStatus": "NeedToSend",
            "BillEmail": {"Address": " ap@acme.example "},
            "BillEmailCc": {"Address": "cfo@acme.example"},
            "PrivateNote": "Voided invoice-processor:10002:2026-10 (created by the invoice processor)",
        }
    )
    assert (invoice.id, invoice.number, invoice.customer_name) == ("238", "10002-202610", "10002 - Acme CPA")
    assert invoice.total == Decimal("1306.65") and invoice.bill_email == "ap@acme.example"
    assert invoice.cc == ["cfo@acme.example"] and invoice.bcc == []
    assert invoice.marker == InvoiceMarker("10002", "2026-10") and not invoice.delivered
    assert Invoice({"Id": "9", "DeliveryInfo": {"DeliveryType": "Email"}}).delivered
    assert Invoice({"Id": "9"}).number == "9" and Invoice({"Id": "9"}).marker is None


def test_customer_and_item_views():
    customer = Customer({"Id": "58", "DisplayName": "10002 - Acme CPA", "Active": "false"})
    assert customer.email == "" and not customer.active
    item = Item({"Id": "7", "Name": "Robot Runtime", "UnitPrice": "95.5"})
    assert item.unit_price == Decimal("95.5") and item.active
    assert Item({"Id": "8", "UnitPrice": "abc"}).unit_price is None
