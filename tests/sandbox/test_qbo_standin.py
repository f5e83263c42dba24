"""The QBO stand-in over real HTTP: OAuth rotation, queries, invoice rules, replay, send, PDF, batch."""

from __future__ import annotations

import re
import uuid
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
import requests

from sandbox import Sandbox
from tests.sandbox.helpers import QBO_CLIENT, REALM, Qbo

# One sandbox per module (module-scoped fixture): keep the module on one xdist worker.
pytestmark = pytest.mark.xdist_group("sandbox-qbo")


def _line(amount: str, qty: str, price: str, item: str = "21", description: str = "Robot runtime") -> dict:
    return {
        "DetailType": "SalesItemLineDetail",
        "Amount": float(amount),
        "Description": description,
        "SalesItemLineDetail": {"ItemRef": {"value": item}, "Qty": float(qty), "UnitPrice": float(price)},
    }


def _invoice(customer: str = "60", **extra: object) -> dict:
    return {"CustomerRef": {"value": customer}, "Line": [_line("112.50", "2.5", "45.00")], **extra}


@pytest.mark.usefixtures("rotate_every_time")
def test_refresh_rotates_the_token_and_the_old_one_gets_invalid_grant(
    sandbox: Sandbox, http: requests.Session
) -> None:
    url = sandbox.env["QBO_TOKEN_URL"]
    old = sandbox.qbo.store.get("qbo/oauth")["refresh_token"]

    first = http.post(url, data={"grant_type": "refresh_token", "refresh_token": old}, auth=QBO_CLIENT)
    again = http.post(url, data={"grant_type": "refresh_token", "refresh_token": old}, auth=QBO_CLIENT)
    new = first.json()["refresh_token"]
    follow_up = http.post(url, data={"grant_type": "refresh_token", "refresh_token": new}, auth=QBO_CLIENT)

    assert first.status_code == 200 and first.headers["intuit_tid"]
    assert first.json()["token_type"] == "bearer" and first.json()["expires_in"] == 3600
    assert new != old and first.json()["x_refresh_token_expires_in"] > 0
    assert again.status_code == 400
    assert again.json() == {
        "error": "invalid_grant",
        "error_description": "Incorrect or invalid refresh token",
    }
    assert follow_up.status_code == 200 and follow_up.json()["refresh_token"] != new
    stored = (Path(sandbox.state_dir) / "qbo" / "oauth.json").read_text()
    assert follow_up.json()["refresh_token"] in stored  # a restarted sandbox keeps accepting it


def test_token_endpoint_checks_basic_auth(sandbox: Sandbox, http: requests.Session) -> None:
    current = sandbox.qbo.store.get("qbo/oauth")["refresh_token"]
    response = http.post(
        sandbox.env["QBO_TOKEN_URL"],
        data={"grant_type": "refresh_token", "refresh_token": current},
        auth=(QBO_CLIENT[0], "wrong-secret"),
    )
    assert response.status_code == 401 and response.json() == {"error": "invalid_client"}
    assert sandbox.qbo.store.get("qbo/oauth")["refresh_token"] == current  # nothing rotated


def test_expired_access_token_gets_401_with_lowercase_fault(sandbox: Sandbox, http: requests.Session) -> None:
    qbo = Qbo(sandbox, http)
    assert qbo.query("SELECT * FROM Term").status_code == 200

    sandbox.expire_tokens("qbo")
    response = qbo.query("SELECT * FROM Term")

    assert response.status_code == 401
    assert response.json()["fault"]["error"][0]["code"] == "3200"
    assert response.json()["fault"]["type"] == "AUTHENTICATION"
    assert "intuit_tid" in response.headers


def test_access_tokens_expire_after_the_configured_lifetime(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.set_qbo_options(access_token_ttl_seconds=0)
    try:
        qbo = Qbo(sandbox, http)
        assert qbo.query("SELECT * FROM Term").status_code == 401
    finally:
        sandbox.set_qbo_options(access_token_ttl_seconds=3600)


def test_query_pages_and_omits_the_entity_key_when_nothing_matches(qbo: Qbo) -> None:
    first = qbo.query(
        "SELECT * FROM Customer WHERE Active IN (true, false) ORDERBY Id STARTPOSITION 1 MAXRESULTS 4"
    ).json()
    second = qbo.query(
        "SELECT * FROM Customer WHERE Active IN (true, false) ORDERBY Id STARTPOSITION 5 MAXRESULTS 4"
    ).json()
    third = qbo.query(
        "SELECT * FROM Customer WHERE Active IN (true, false) ORDERBY Id STARTPOSITION 9 MAXRESULTS 4"
    ).json()
    empty = qbo.query("select * from customer where DisplayName = 'Nobody Ltd'").json()

    ids = [c["Id"] for page in (first, second, third) for c in page["QueryResponse"].get("Customer", [])]
    assert ids == ["58", "59", "60", "61", "62", "63", "64", "65", "66"]
    assert first["QueryResponse"]["startPosition"] == 1 and first["QueryResponse"]["maxResults"] == 4
    assert third["QueryResponse"]["maxResults"] == 1
    assert empty["QueryResponse"] == {} and "time" in empty


def test_query_hides_inactive_rows_unless_asked(qbo: Qbo) -> None:
    default = qbo.query("SELECT * FROM Customer").json()["QueryResponse"]["Customer"]
    everything = qbo.query("SELECT * FROM Customer WHERE Active IN (true,false)").json()["QueryResponse"][
        "Customer"
    ]
    assert "10010 - Harbor Street Accounting" not in [c["DisplayName"] for c in default]
    assert len(everything) == len(default) + 1


def test_query_values_are_case_insensitive_and_apostrophes_escaped(qbo: Qbo) -> None:
    exact = qbo.query("SELECT * FROM Customer WHERE DisplayName = '10005 - o\\'brien & SØN ltd'").json()
    like = qbo.query("SELECT * FROM Customer WHERE DisplayName LIKE '10005%'").json()
    posted = qbo.http.post(
        f"{qbo.base}/query",
        params={"minorversion": 75},
        data="SELECT * FROM Item WHERE Name IN ('robot runtime', 'Professional Services') ORDERBY Name DESC",
        headers={**qbo.headers, "Content-Type": "application/text"},
    ).json()

    assert [c["Id"] for c in exact["QueryResponse"]["Customer"]] == ["62"]
    assert [c["Id"] for c in like["QueryResponse"]["Customer"]] == ["62"]
    assert [i["Name"] for i in posted["QueryResponse"]["Item"]] == ["Robot Runtime", "Professional Services"]


def test_query_rejects_too_many_results_and_unqueryable_fields(qbo: Qbo) -> None:
    too_many = qbo.query("SELECT * FROM Invoice MAXRESULTS 1001")
    status_filter = qbo.query("SELECT * FROM Invoice WHERE EmailStatus = 'NeedToSend'")
    garbled = qbo.query("SELECT * FROM Invoice WHERE TxnDate >")

    assert too_many.status_code == 400 and too_many.json()["Fault"]["Error"][0]["code"] == "4001"
    assert (
        status_filter.status_code == 400
        and "not queryable" in status_filter.json()["Fault"]["Error"][0]["Detail"]
    )
    assert garbled.status_code == 400 and garbled.json()["Fault"]["Error"][0]["code"] == "4000"


def test_query_filters_dates_and_amounts(qbo: Qbo) -> None:
    october = qbo.query(
        "SELECT * FROM Invoice WHERE TxnDate >= '2026-10-01' AND TxnDate < '2026-11-01'"
    ).json()
    large = qbo.query(
        "SELECT * FROM Invoice WHERE TotalAmt > '500.0' AND DocNumber IN ('AICPA-1120', '10002-202609')"
    ).json()
    counted = qbo.query("SELECT COUNT(*) FROM Customer").json()

    assert [i["DocNumber"] for i in october["QueryResponse"]["Invoice"]] == ["10002-202609"]
    assert [i["DocNumber"] for i in large["QueryResponse"]["Invoice"]] == ["AICPA-1120"]
    assert counted["QueryResponse"] == {"totalCount": 8}


def test_create_computes_totals_due_date_and_keeps_doc_number(qbo: Qbo) -> None:
    body = _invoice(
        DocNumber="10003-202610",
        BillEmail={"Address": "accounts@birchco.example"},
        EmailStatus="NeedToSend",
        TxnDate="2026-11-01",
        SalesTermRef={"value": "2"},
        PrivateNote="invoice-processor:10003:2026-10",
        Line=[_line("93.60", "2.08", "45.00"), _line("424.50", "2.83", "150.00", item="22")],
    )
    response = qbo.post("/invoice", body, requestid=str(uuid.uuid4()))

    invoice = response.json()["Invoice"]
    assert response.status_code == 200 and response.headers["intuit_tid"]
    assert invoice["TotalAmt"] == 518.10 and invoice["Balance"] == 518.10
    assert invoice["DueDate"] == "2026-11-16"  # the invoice's Net 15 term
    assert invoice["DocNumber"] == "10003-202610" and invoice["SyncToken"] == "0"
    assert invoice["CustomerRef"] == {"value": "60", "name": "10003 - Birch & Co. Bookkeeping"}
    assert invoice["Line"][-1] == {
        "DetailType": "SubTotalLineDetail",
        "Amount": 518.1,
        "SubTotalLineDetail": {},
    }
    assert invoice["Line"][1]["SalesItemLineDetail"]["ItemRef"] == {
        "value": "22",
        "name": "Professional Services",
    }
    assert set(invoice["MetaData"]) == {"CreateTime", "LastUpdatedTime"}


def test_amount_must_equal_qty_times_unit_price_exactly(qbo: Qbo) -> None:
    rounded = qbo.post("/invoice", _invoice(Line=[_line("37.33", "0.83", "45.00")]))  # 0.83 x 45 = 37.35
    fine = qbo.post("/invoice", _invoice(Line=[_line("37.35", "0.83", "45.00")]))

    assert rounded.status_code == 400
    error = rounded.json()["Fault"]["Error"][0]
    assert error["code"] == "6070" and rounded.json()["Fault"]["type"] == "ValidationFault"
    assert fine.status_code == 200


def test_create_refuses_inactive_customers_and_need_to_send_without_email(qbo: Qbo) -> None:
    inactive = qbo.post("/invoice", _invoice(customer="66"))
    no_email = qbo.post("/invoice", _invoice(customer="65", EmailStatus="NeedToSend"))
    unsent = qbo.post("/invoice", _invoice(customer="65"))

    assert inactive.status_code == 400 and inactive.json()["Fault"]["Error"][0]["code"] == "610"
    assert no_email.status_code == 400 and no_email.json()["Fault"]["Error"][0]["element"] == "BillEmail"
    assert unsent.status_code == 200 and unsent.json()["Invoice"]["EmailStatus"] == "NotSet"


def test_same_requestid_returns_the_original_without_creating_again(sandbox: Sandbox, qbo: Qbo) -> None:
    request_id = str(uuid.uuid4())
    before = len(sandbox.state()["invoices"])

    first = qbo.post("/invoice", _invoice(PrivateNote="replay test"), requestid=request_id)
    second = qbo.post("/invoice", _invoice(PrivateNote="replay test"), requestid=request_id)

    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert len(sandbox.state()["invoices"]) == before + 1


def test_requestid_can_answer_with_duplicate_fault_600(sandbox: Sandbox, qbo: Qbo) -> None:
    sandbox.set_qbo_options(requestid_replay="error600")
    try:
        request_id = str(uuid.uuid4())
        assert qbo.post("/invoice", _invoice(), requestid=request_id).status_code == 200
        again = qbo.post("/invoice", _invoice(), requestid=request_id)
    finally:
        sandbox.set_qbo_options(requestid_replay="replay")
    assert again.status_code == 400 and again.json()["Fault"]["Error"][0]["code"] == "600"


def test_sparse_update_needs_the_current_sync_token(qbo: Qbo) -> None:
    invoice = qbo.post("/invoice", _invoice(PrivateNote="keep me")).json()["Invoice"]
    stale = qbo.post(
        "/invoice", {"Id": invoice["Id"], "SyncToken": "7", "sparse": True, "EmailStatus": "EmailSent"}
    )
    updated = qbo.post(
        "/invoice", {"Id": invoice["Id"], "SyncToken": "0", "sparse": True, "DueDate": "2026-12-31"}
    )
    replayed_stale = qbo.post(
        "/invoice", {"Id": invoice["Id"], "SyncToken": "0", "sparse": True, "DueDate": "2027-01-31"}
    )

    assert stale.status_code == 400 and stale.json()["Fault"]["Error"][0]["code"] == "5010"
    assert updated.status_code == 200
    assert (
        updated.json()["Invoice"]["SyncToken"] == "1" and updated.json()["Invoice"]["DueDate"] == "2026-12-31"
    )
    assert updated.json()["Invoice"]["PrivateNote"] == "keep me"
    assert replayed_stale.json()["Fault"]["Error"][0]["code"] == "5010"


def test_full_update_clears_fields_that_are_left_out(qbo: Qbo) -> None:
    invoice = qbo.post("/invoice", _invoice(PrivateNote="gone after a full update")).json()["Invoice"]
    body = {"Id": invoice["Id"], "SyncToken": "0", "CustomerRef": {"value": "60"}, "Line": invoice["Line"]}
    updated = qbo.post("/invoice", body).json()["Invoice"]
    assert "PrivateNote" not in updated and updated["SyncToken"] == "1"


def test_send_marks_email_sent_and_leaves_an_eml_with_the_pdf(sandbox: Sandbox, qbo: Qbo) -> None:
    created = qbo.post(
        "/invoice",
        _invoice(
            DocNumber="SEND-1", BillEmail={"Address": "accounts@birchco.example"}, EmailStatus="NeedToSend"
        ),
    )
    invoice = created.json()["Invoice"]
    sent = qbo.http.post(
        f"{qbo.base}/invoice/{invoice['Id']}/send",
        params={"minorversion": 75, "sendTo": "other@birchco.example", "requestid": str(uuid.uuid4())},
        headers={**qbo.headers, "Content-Type": "application/octet-stream"},
    )

    result = sent.json()["Invoice"]
    assert sent.status_code == 200
    assert result["EmailStatus"] == "EmailSent" and result["SyncToken"] == "1"
    assert result["DeliveryInfo"]["DeliveryType"] == "Email" and result["DeliveryInfo"]["DeliveryTime"]
    assert result["BillEmail"] == {"Address": "other@birchco.example"}
    mail = next(m for m in sandbox.state()["mails"] if "SEND-1" in m["subject"])
    assert mail["to"] == ["other@birchco.example"] and mail["via"] == "qbo-invoice-send"
    assert mail["attachments"] == [
        {
            "name": "Invoice_SEND-1.pdf",
            "content_type": "application/pdf",
            "size": mail["attachments"][0]["size"],
        }
    ]
    with open(mail["path"], "rb") as handle:
        message = BytesParser(policy=policy.default).parse(handle)
    pdf = next(part for part in message.iter_attachments()).get_content()
    assert pdf.startswith(b"%PDF-1.4") and b"SEND-1" in pdf


def test_send_without_any_address_is_refused(qbo: Qbo) -> None:
    invoice = qbo.post("/invoice", _invoice(customer="65")).json()["Invoice"]
    response = qbo.post(f"/invoice/{invoice['Id']}/send")
    assert response.status_code == 400 and response.json()["Fault"]["Error"][0]["element"] == "BillEmail"


def test_pdf_is_a_valid_pdf_with_number_and_total(qbo: Qbo) -> None:
    response = qbo.http.get(
        f"{qbo.base}/invoice/141/pdf", headers={**qbo.headers, "Accept": "application/pdf"}
    )
    data = response.content

    assert response.status_code == 200 and response.headers["Content-Type"] == "application/pdf"
    assert data.startswith(b"%PDF-1.4") and data.rstrip().endswith(b"%%EOF")
    assert b"10002-202609" in data and b"270.00" in data
    xref = int(re.search(rb"startxref\n(\d+)", data).group(1))
    assert data[xref:].startswith(b"xref")
    offsets = [int(m.group(1)) for m in re.finditer(rb"(\d{10}) 00000 n", data)]
    assert all(re.match(rb"\d+ 0 obj", data[o:]) for o in offsets) and len(offsets) >= 6


def test_other_realm_is_forbidden(sandbox: Sandbox, qbo: Qbo) -> None:
    response = qbo.http.get(
        qbo.base.replace(REALM, "123") + "/query", params={"query": "SELECT * FROM Term"}, headers=qbo.headers
    )
    assert response.status_code == 403


def test_preferences_and_entity_reads(qbo: Qbo) -> None:
    preferences = qbo.get("/preferences").json()["Preferences"]
    customer = qbo.get("/customer/62").json()["Customer"]
    missing = qbo.get("/invoice/99999")

    assert preferences["SalesFormsPrefs"]["CustomTxnNumbers"] is True
    assert customer["DisplayName"] == "10005 - O'Brien & Søn Ltd"
    assert missing.status_code == 400 and missing.json()["Fault"]["Error"][0]["code"] == "610"
