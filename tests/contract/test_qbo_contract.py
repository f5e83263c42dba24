"""QboClient and QboTokens against the QBO stand-in, built as the jobs build them (services.connect)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import pytest

from integrations import errors
from integrations.qbo import escape
from integrations.services import Services
from sandbox import Sandbox
from tests.contract.conftest import ServicesFactory
from tests.contract.helpers import calls_since, disk_state, trusted_session

pytestmark = pytest.mark.xdist_group("contract-qbo")

CEDAR = "61"  # 10004 - Cedar Tax Partners (Net 30, has an email)
PROFESSIONAL_SERVICES = "22"
SEEDED_INVOICES = {"141": "10002-202609", "142": "AICPA-1120"}


def _rid() -> str:
    return str(uuid.uuid4())


def _invoice_body(marker: str, qty: str = "7.00", price: str = "150.00", amount: str | None = None) -> dict:
    amount = amount if amount is not None else str(Decimal(qty) * Decimal(price))
    return {
        "CustomerRef": {"value": CEDAR},
        "TxnDate": "2026-10-31",
        "DocNumber": marker[:21],
        "BillEmail": {"Address": "invoices@cedartax.example"},
        "PrivateNote": f"contract-test:{marker}",
        "Line": [
            {
                "DetailType": "SalesItemLineDetail",
                "Amount": Decimal(amount),
                "Description": "Workpaper automation design",
                "SalesItemLineDetail": {
                    "ItemRef": {"value": PROFESSIONAL_SERVICES},
                    "Qty": Decimal(qty),
                    "UnitPrice": Decimal(price),
                },
            }
        ],
    }


def _invoices_marked(sandbox: Sandbox, marker: str) -> list[dict[str, Any]]:
    return [
        i
        for i in disk_state(sandbox)["invoices"]
        if i.get("PrivateNote", "").endswith(f"contract-test:{marker}")
    ]


def _query_text(call: dict[str, Any]) -> str:
    return parse_qs(call["query"]).get("query", [""])[0]


# --- reads ------------------------------------------------------------------------------------


def test_customers_include_inactive_ones_unless_told_otherwise(services: Services) -> None:
    everyone = {c["DisplayName"]: c for c in services.qbo.customers()}
    active = {c["DisplayName"] for c in services.qbo.customers(include_inactive=False)}

    assert "10010 - Harbor Street Accounting" in everyone
    assert everyone["10010 - Harbor Street Accounting"]["Active"] is False
    assert "10010 - Harbor Street Accounting" not in active
    assert "10005 - O'Brien & Søn Ltd" in active and len(everyone) == len(active) + 1


def test_escaped_apostrophe_and_non_ascii_name_finds_exactly_that_customer(services: Services) -> None:
    name = "10005 - O'Brien & Søn Ltd"
    rows = list(services.qbo.query("Customer", f"DisplayName = '{escape(name)}'"))

    assert [row["Id"] for row in rows] == ["62"]


def test_items_are_the_active_products_and_services(services: Services) -> None:
    names = {item["Name"] for item in services.qbo.items()}

    assert {"Robot Runtime", "Professional Services", "Automation Subscription"} <= names
    assert "Bot Development (legacy)" not in names
    assert "Bot Development (legacy)" in {item["Name"] for item in services.qbo.items(include_inactive=True)}


def test_query_reads_every_page_when_pages_are_small(sandbox: Sandbox, services: Services) -> None:
    services.qbo.custom_txn_numbers()  # token first, so only the query calls are counted below
    mark = len(sandbox.requests("qbo"))

    paged = list(services.qbo.query("Customer", "Active IN (true, false)", order_by="Id", page_size=3))

    queries = [_query_text(c) for c in calls_since(sandbox, "qbo", mark) if c["path"].endswith("/query")]
    assert [row["Id"] for row in paged] == sorted({c["Id"] for c in services.qbo.customers()}, key=int)
    assert len(paged) == 9
    starts = [q.split("STARTPOSITION ")[1].split()[0] for q in queries[:4]]
    assert starts == ["1", "4", "7", "10"]  # three full pages, then an empty one ends the loop
    assert all("MAXRESULTS 3" in q for q in queries[:4])


def test_invoices_between_returns_only_invoices_dated_in_the_range(services: Services) -> None:
    october = services.qbo.invoices_between(date(2026, 10, 1), date(2026, 10, 31))
    november = services.qbo.invoices_between(date(2026, 11, 1), date(2026, 11, 30))

    assert "141" in {i["Id"] for i in october} and "142" not in {i["Id"] for i in october}
    assert "142" in {i["Id"] for i in november}
    assert all("2026-10-01" <= i["TxnDate"] <= "2026-10-31" for i in october)


def test_get_invoice_reads_one_and_an_unknown_id_is_not_found(services: Services) -> None:
    invoice = services.qbo.get_invoice("141")

    assert invoice["DocNumber"] == "10002-202609" and invoice["SyncToken"] == "1"
    with pytest.raises(errors.NotFound) as caught:
        services.qbo.get_invoice("999999")
    assert caught.value.code == "610" and caught.value.request_id


def test_custom_txn_numbers_reads_the_company_preference(services: Services) -> None:
    assert services.qbo.custom_txn_numbers() is True


# --- writes -----------------------------------------------------------------------------------


def test_create_invoice_twice_with_one_requestid_creates_one_invoice(
    sandbox: Sandbox, services: Services
) -> None:
    request_id = _rid()
    first = services.qbo.create_invoice(_invoice_body("C-TWICE"), request_id)
    again = services.qbo.create_invoice(_invoice_body("C-TWICE"), request_id)

    assert again["Id"] == first["Id"]
    assert Decimal(str(first["TotalAmt"])) == Decimal("1050.00")
    assert [i["Id"] for i in _invoices_marked(sandbox, "C-TWICE")] == [first["Id"]]


def test_sparse_update_changes_only_the_given_fields(services: Services) -> None:
    created = services.qbo.create_invoice(_invoice_body("C-SPARSE"), _rid())

    updated = services.qbo.sparse_update_invoice(
        created["Id"], {"CustomerMemo": {"value": "Thank you"}}, _rid()
    )

    assert updated["SyncToken"] == "1"
    assert updated["CustomerMemo"] == {"value": "Thank you"}
    assert updated["PrivateNote"] == "contract-test:C-SPARSE" and updated["TotalAmt"] == created["TotalAmt"]


def test_sparse_update_rereads_once_when_another_writer_changed_the_invoice(
    sandbox: Sandbox, make_services: ServicesFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, theirs = make_services().qbo, make_services().qbo
    created = ours.create_invoice(_invoice_body("C-STALE"), _rid())
    real_read = ours.get_invoice
    interfered: list[dict] = []

    def read_then_someone_else_writes(invoice_id: str) -> dict:
        current = real_read(invoice_id)
        if not interfered:  # the other writer lands between our read and our write
            interfered.append(theirs.sparse_update_invoice(invoice_id, {"Memo": "edited by hand"}, _rid()))
        return current

    monkeypatch.setattr(ours, "get_invoice", read_then_someone_else_writes)
    mark = len(sandbox.requests("qbo"))

    updated = ours.sparse_update_invoice(created["Id"], {"CustomerMemo": {"value": "ours"}}, _rid())

    assert interfered[0]["SyncToken"] == "1"
    assert updated["SyncToken"] == "2"
    assert updated["Memo"] == "edited by hand" and updated["CustomerMemo"] == {"value": "ours"}
    writes = [c["status"] for c in calls_since(sandbox, "qbo", mark) if c["path"].endswith("/invoice")]
    assert writes == [200, 400, 200]  # theirs, our stale attempt (5010), our retry


def test_send_invoice_mails_it_with_the_pdf_attached(sandbox: Sandbox, services: Services) -> None:
    created = services.qbo.create_invoice(_invoice_body("C-SEND"), _rid())

    sent = services.qbo.send_invoice(created["Id"], _rid(), send_to="ap-contract@cedartax.example")

    assert sent["EmailStatus"] == "EmailSent" and sent["DeliveryInfo"]["DeliveryType"] == "Email"
    mails = [m for m in disk_state(sandbox)["mails"] if m["to"] == ["ap-contract@cedartax.example"]]
    assert len(mails) == 1
    assert mails[0]["via"] == "qbo-invoice-send" and "C-SEND" in mails[0]["subject"]
    assert [a["name"] for a in mails[0]["attachments"]] == ["Invoice_C-SEND.pdf"]


def test_invoice_pdf_is_a_pdf_with_content(services: Services) -> None:
    pdf = services.qbo.invoice_pdf("141")

    assert pdf.startswith(b"%PDF") and len(pdf) > 500


def test_line_amount_not_qty_times_price_is_a_validation_fault_and_creates_nothing(
    sandbox: Sandbox, services: Services
) -> None:
    with pytest.raises(errors.ValidationFault) as caught:
        services.qbo.create_invoice(_invoice_body("C-6070", qty="7.00", amount="1049.99"), _rid())

    assert type(caught.value) is errors.ValidationFault
    assert caught.value.code == "6070" and caught.value.status == 400 and caught.value.request_id
    assert not _invoices_marked(sandbox, "C-6070")


# --- tokens -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("rotate_every_time")
def test_expired_access_token_is_refreshed_and_the_rotated_refresh_token_saved_first(
    sandbox: Sandbox, services: Services
) -> None:
    name = services.settings.qbo_secret_name
    services.qbo.custom_txn_numbers()  # the run's first refresh
    before = services.secrets.read_json(name)
    earlier = sandbox.state()
    versions_before = {v["version_id"] for v in earlier["secrets"][name]}
    refreshes = earlier["qbo_oauth"]["refreshes"]
    sandbox.expire_tokens("qbo")
    mark = len(sandbox.requests("qbo"))

    assert services.qbo.get_invoice("141")["Id"] == "141"

    state = sandbox.state()
    after = services.secrets.read_json(name)
    assert [c["status"] for c in calls_since(sandbox, "qbo", mark)] == [401, 200]
    assert state["qbo_oauth"]["refreshes"] == refreshes + 1
    assert after["refresh_token"] != before["refresh_token"]
    assert {k: v for k, v in after.items() if not k.startswith("refresh_token")} == {
        k: v for k, v in before.items() if not k.startswith("refresh_token")
    }  # the token and its expiry dates change, nothing else
    current = [v for v in state["secrets"][name] if "AWSCURRENT" in v["stages"]]
    assert len(current) == 1 and current[0]["version_id"] not in versions_before
    assert "refresh_token" in current[0]["changed"]
    assert len(state["secrets"][name]) == len(versions_before) + 1
    old = trusted_session(sandbox).post(
        services.settings.qbo_token_url,
        data={"grant_type": "refresh_token", "refresh_token": before["refresh_token"]},
        auth=(before["client_id"], before["client_secret"]),
    )
    assert old.status_code == 400 and old.json()["error"] == "invalid_grant"
    assert services.ledger.get(f"lock#qbo-token#{before['realm_id']}") is None  # lock released


@pytest.mark.usefixtures("rotate_every_time")
def test_two_runs_refreshing_at_once_take_turns_and_both_succeed(
    sandbox: Sandbox, make_services: ServicesFactory
) -> None:
    runs = [make_services(), make_services()]  # two processes' worth of clients, one secret
    refreshes = disk_state(sandbox)["qbo_oauth"]["refreshes"]
    mark = len(sandbox.requests("qbo_auth"))

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda run: run.qbo.get_invoice("141")["Id"], runs))

    assert answers == ["141", "141"]
    assert [c["status"] for c in calls_since(sandbox, "qbo_auth", mark)] == [200, 200]  # no invalid_grant
    assert disk_state(sandbox)["qbo_oauth"]["refreshes"] == refreshes + 2
    assert make_services().qbo.custom_txn_numbers() is True  # the stored refresh token is the live one


def test_rejected_refresh_token_requires_reauthorization(
    services: Services, make_services: ServicesFactory
) -> None:
    admin = services
    name = admin.settings.qbo_secret_name
    good = admin.secrets.read_json(name)
    revoked = "AB11revokedByTheContractTest0000000000"
    admin.secrets.write_json(name, {**good, "refresh_token": revoked})
    try:
        with pytest.raises(errors.ReauthorizationRequired) as caught:
            make_services().qbo.customers()
    finally:
        admin.secrets.write_json(name, good)

    assert caught.value.code == "invalid_grant" and caught.value.status == 400
    assert revoked not in str(caught.value) and name in str(caught.value)
    assert admin.ledger.get(f"lock#qbo-token#{good['realm_id']}") is None
    assert make_services().qbo.custom_txn_numbers() is True  # the restored token still works
