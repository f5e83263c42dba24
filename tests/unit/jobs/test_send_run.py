"""The send job's exactly-once branches, fast: claims, crashed runs, lost replies, both delivery modes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from integrations import errors
from integrations.cli import JobOptions
from integrations.qbo import request_id_for
from send_invoices.job import SendRun
from send_invoices.results import Outcome
from tests.unit.jobs.fakes import FakeServices, ledger_rows


def waiting(
    invoice_id: str, doc: str, email: str | None = "ap@acme.example", customer: str = "10002 - Acme CPA"
):
    invoice = {
        "Id": invoice_id,
        "SyncToken": "0",
        "DocNumber": doc,
        "TxnDate": "2026-11-04",
        "CustomerRef": {"value": "58", "name": customer},
        "TotalAmt": "180.00",
        "EmailStatus": "NeedToSend",
        "PrivateNote": f"invoice-processor:{doc[:5]}:2026-10",
        "Line": [],
    }
    if email:
        invoice["BillEmail"] = {"Address": email}
    return invoice


@pytest.fixture
def send_services(services: FakeServices) -> FakeServices:
    services.qbo.invoices = [
        waiting("201", "10002-202610"),
        waiting("202", "10003-202610", "ap@birch.example", "10003 - Birch"),
    ]
    return services


def send(services: FakeServices, run_id: str = "run-1", mode: str = "qbo", **options) -> dict[str, object]:
    settings = replace(services.settings, invoice_delivery=mode)
    services.settings = settings
    run = SendRun(settings, JobOptions(**options), services, run_id)
    run.today = datetime(2026, 11, 5, tzinfo=UTC).date()
    outcome = run.execute()
    return {row["invoice"]: row for row in outcome.table} | {"exit": outcome.exit_code}


def test_qbo_mode_sends_each_waiting_invoice_once(send_services: FakeServices) -> None:
    first = send(send_services)
    again = send(send_services, run_id="run-2")

    assert first["exit"] == 0 and sorted(send_services.qbo.sent) == ["201", "202"]
    assert again["exit"] == 0 and "10002-202610" not in again  # EmailSent: no longer waiting
    assert {k: r.status for k, r in ledger_rows(send_services.ledger).items()} == {
        "send#201": "sent",
        "send#202": "sent",
    }
    assert set(send_services.archived) == {
        "2026-10/10002 - Acme CPA/Invoice-10002-202610.pdf",
        "2026-10/10003 - Birch/Invoice-10003-202610.pdf",
    }


def crashed_while_mailing(services: FakeServices, key: str, clock) -> None:
    """A run claimed the delivery, noted that it was about to mail, and died."""
    invoice_id = key.split("#")[1]
    services.ledger.claim(key, "crashed", request_id_for(key, "send"), 60, {"invoice_id": invoice_id})
    services.ledger.record(key, "crashed", "claimed", {"stage": "mailing"})
    clock.advance(61)


def test_a_crashed_qbo_send_that_went_out_is_confirmed_in_qbo_not_resent(
    send_services: FakeServices, clock
) -> None:
    key = "send#201"
    crashed_while_mailing(send_services, key, clock)
    send_services.qbo.invoices[0].update(EmailStatus="NeedToSend", DeliveryInfo={"DeliveryType": "Email"})

    result = send(send_services)

    assert send_services.qbo.sent == ["202"]
    assert result["10002-202610"]["reason"] == "already sent by an interrupted run (confirmed in QBO)"
    assert ledger_rows(send_services.ledger)[key].status == "sent"


def test_a_crashed_qbo_send_that_did_not_go_out_is_sent_now(send_services: FakeServices, clock) -> None:
    crashed_while_mailing(send_services, "send#201", clock)

    send(send_services)

    assert sorted(send_services.qbo.sent) == ["201", "202"]


def test_a_delivery_claimed_by_a_live_run_is_left_alone(send_services: FakeServices) -> None:
    key = "send#201"
    send_services.ledger.claim(
        key, "other-run", request_id_for(key, "send"), 60
    )  # alive: the clock stands still

    result = send(send_services)

    assert send_services.qbo.sent == ["202"]
    assert result["exit"] == 1 and result["10002-202610"]["outcome"] == Outcome.FAILED
    assert result["10002-202610"]["reason"].startswith("another run is still sending it")


def test_graph_mode_mails_the_pdf_and_marks_the_invoice_sent(send_services: FakeServices) -> None:
    result = send(send_services, mode="graph")

    assert result["exit"] == 0 and send_services.qbo.sent == []
    mails = sorted(send_services.graph.mails, key=lambda m: m["to"])  # several are sent at once
    assert [m["to"] for m in mails] == [["ap@acme.example"], ["ap@birch.example"]]
    assert [a.name for a in mails[0]["attachments"]] == ["Invoice-10002-202610.pdf"]
    assert {i["EmailStatus"] for i in send_services.qbo.invoices} == {"EmailSent"}


def test_a_lost_graph_reply_needs_a_person_and_is_never_resent(send_services: FakeServices) -> None:
    send_services.graph.fault = errors.TransportError("graph", "sendMail", "connection dropped")

    first = send(send_services, mode="graph")
    second = send(send_services, mode="graph", run_id="run-2")

    assert first["exit"] == 1 and first["10002-202610"]["outcome"] == Outcome.NEEDS_REVIEW
    assert second["10002-202610"]["outcome"] == Outcome.NEEDS_REVIEW
    assert [m["to"] for m in send_services.graph.mails].count(["ap@acme.example"]) == 1


def test_a_failed_mark_as_sent_is_finished_later_without_resending(send_services: FakeServices) -> None:
    send_services.qbo.faults["update"] = (
        errors.ServerError("qbo", "update invoice", "503", status=503),
        False,
    )

    first = send(send_services, mode="graph", clients=("10002",))
    assert (
        first["10002-202610"]["outcome"] == Outcome.SENT
        and "not yet marked" in first["10002-202610"]["reason"]
    )

    second = send(send_services, mode="graph", run_id="run-2", clients=("10002",))

    assert len(send_services.graph.mails) == 1
    assert second["10002-202610"]["reason"].startswith("already sent; QuickBooks marked EmailSent again")
    assert send_services.qbo.invoices[0]["EmailStatus"] == "EmailSent"


def test_without_bill_email_the_invoice_is_reported_and_the_bookkeeper_told(
    send_services: FakeServices,
) -> None:
    send_services.qbo.invoices[1].pop("BillEmail")

    result = send(send_services)

    assert result["10003-202610"]["outcome"] == Outcome.SKIPPED
    assert send_services.qbo.sent == ["201"] and len(send_services.bookkeeper_mails) == 1


def test_an_excluded_customer_alone_mails_nobody(send_services: FakeServices) -> None:
    send_services.settings = replace(send_services.settings, excluded_customers=("10002", "10003"))

    result = send(send_services)

    assert result["exit"] == 0 and send_services.qbo.sent == [] and send_services.bookkeeper_mails == []


def test_a_crash_before_the_mail_call_is_sent_by_the_next_run_even_in_graph_mode(
    send_services: FakeServices, clock
) -> None:
    """needs_review only when a mail call was attempted (issue 10, point 9)."""
    key = "send#201"
    send_services.ledger.claim(key, "crashed", request_id_for(key, "send"), 60)  # died before mailing
    clock.advance(61)

    result = send(send_services, mode="graph", clients=("10002",))

    assert result["exit"] == 0 and result["10002-202610"]["outcome"] == Outcome.SENT
    assert [m["to"] for m in send_services.graph.mails] == [["ap@acme.example"]]


def test_a_crash_after_the_graph_mail_call_needs_a_person(send_services: FakeServices, clock) -> None:
    crashed_while_mailing(send_services, "send#201", clock)

    result = send(send_services, mode="graph", clients=("10002",))

    assert result["exit"] == 1 and result["10002-202610"]["outcome"] == Outcome.NEEDS_REVIEW
    assert send_services.graph.mails == []


def test_an_edited_invoice_is_not_a_new_delivery(send_services: FakeServices) -> None:
    """The delivery is per invoice, not per SyncToken (issue 10, point 1)."""
    send_services.qbo.faults["update"] = (
        errors.ServerError("qbo", "update invoice", "503", status=503),
        False,
    )
    send(send_services, mode="graph", clients=("10002",))
    invoice = send_services.qbo.invoices[0]
    invoice.update(CustomerMemo={"value": "edited"}, SyncToken=str(int(invoice["SyncToken"]) + 1))

    send(send_services, mode="graph", run_id="run-2", clients=("10002",))

    assert len(send_services.graph.mails) == 1 and invoice["EmailStatus"] == "EmailSent"


def test_resend_is_a_persons_decision_and_mails_once_more(send_services: FakeServices) -> None:
    send(send_services, mode="graph", clients=("10002",))

    again = send(send_services, mode="graph", run_id="run-2", resend="10002-202610")

    assert again["exit"] == 0 and again["10002-202610"]["outcome"] == Outcome.SENT
    assert [m["to"] for m in send_services.graph.mails] == [["ap@acme.example"], ["ap@acme.example"]]


def test_resend_refuses_an_unknown_number_and_names_candidates(send_services: FakeServices) -> None:
    with pytest.raises(
        errors.StartupError, match=r"no invoice of this system matches \(candidates: 10002-202610"
    ):
        send(send_services, resend="10002")


def test_a_qbo_send_that_died_after_the_send_is_found_confirmed_and_archived(
    send_services: FakeServices, clock
) -> None:
    """QBO marks the invoice EmailSent as it sends it: the invoice no longer waits, so only the
    ledger remembers the unfinished delivery (issue 10: nothing silently left undone)."""
    crashed_while_mailing(send_services, "send#201", clock)
    send_services.qbo.invoices[0].update(EmailStatus="EmailSent", DeliveryInfo={"DeliveryType": "Email"})

    result = send(send_services, clients=("10002",))

    assert send_services.qbo.sent == []  # never resent
    assert result["10002-202610"]["reason"] == "already sent by an interrupted run (confirmed in QBO)"
    rows = ledger_rows(send_services.ledger)
    assert rows["send#201"].status == "sent" and rows["send#201"].attributes["archived"] is True
    assert "2026-10/10002 - Acme CPA/Invoice-10002-202610.pdf" in send_services.archived
    again = send(send_services, run_id="run-3", clients=("10002",))
    assert "10002-202610" not in again  # finished: nothing to follow up


def test_a_pdf_that_could_not_be_archived_is_archived_by_the_next_run(send_services: FakeServices) -> None:
    archive = send_services.archive

    def sharepoint_down(parts, content):
        raise errors.ServerError("graph", "upload", "503", status=503)

    send_services.archive = sharepoint_down  # type: ignore[method-assign]
    first = send(send_services, clients=("10002",))
    assert "PDF not archived" in first["10002-202610"]["reason"] or send_services.archived == {}
    send_services.archive = archive  # type: ignore[method-assign]

    send(send_services, run_id="run-2", clients=("10002",))

    assert send_services.qbo.sent == ["201"]
    assert "2026-10/10002 - Acme CPA/Invoice-10002-202610.pdf" in send_services.archived
    assert ledger_rows(send_services.ledger)["send#201"].attributes["archived"] is True


def test_a_lost_qbo_send_answer_is_checked_in_qbo_and_not_sent_again(send_services: FakeServices) -> None:
    """Issue 11 rule 4: /send is never replayed blindly; the invoice is read first."""
    send_services.qbo.faults["send"] = (errors.TransportError("qbo", "send invoice", "dropped"), True)

    result = send(send_services)

    assert result["10002-202610"]["outcome"] == Outcome.SENT
    assert send_services.qbo.sent == ["201", "202"]  # each mailed once
    assert ledger_rows(send_services.ledger)["send#201"].status == "sent"


def test_a_qbo_send_that_failed_before_mailing_is_sent_again_after_the_check(
    send_services: FakeServices,
) -> None:
    send_services.qbo.faults["send"] = (errors.ServerError("qbo", "send invoice", "503", status=503), False)

    result = send(send_services)

    assert result["10002-202610"]["outcome"] == Outcome.SENT
    assert sorted(send_services.qbo.sent) == ["201", "202"]


def test_a_refused_send_moves_the_next_run_to_a_new_requestid(send_services: FakeServices) -> None:
    """QBO replays a requestid's fault, so after a definite failure the next try needs a new id."""
    used: list[str] = []
    real = send_services.qbo.send_invoice
    send_services.qbo.send_invoice = lambda invoice_id, request_id: (
        used.append(request_id),
        real(invoice_id, request_id),
    )[1]  # type: ignore[method-assign]
    send_services.qbo.faults["send"] = (
        errors.ValidationFault("qbo", "send invoice", "invalid email", status=400, code="6000"),
        False,
    )

    first = send(send_services, clients=["10002"])
    second = send(send_services, run_id="run-2", clients=["10002"])

    assert first["10002-202610"]["outcome"] == Outcome.FAILED
    assert second["10002-202610"]["outcome"] == Outcome.SENT
    assert used == [request_id_for("send#201", "send"), request_id_for("send#201", "send", 1)]
    assert ledger_rows(send_services.ledger)["send#201"].attributes["send_attempt"] == 1


def test_a_lost_send_that_cannot_be_checked_is_left_for_the_next_run_to_check(
    send_services: FakeServices,
) -> None:
    send_services.qbo.faults["send"] = (errors.TransportError("qbo", "send invoice", "dropped"), True)
    send_services.qbo.faults["check"] = (errors.ServerError("qbo", "read invoice", "503", status=503), False)
    real_get = send_services.qbo.get_invoice

    def get_invoice(invoice_id: str) -> dict:
        send_services.qbo._fault("check", False)
        return real_get(invoice_id)

    send_services.qbo.get_invoice = get_invoice  # type: ignore[method-assign]

    first = send(send_services, clients=["10002"])
    row = ledger_rows(send_services.ledger)["send#201"]
    second = send(send_services, run_id="run-2", clients=["10002"])

    assert first["10002-202610"]["outcome"] == Outcome.FAILED
    assert (row.status, row.attributes["stage"]) == ("failed", "mailing")
    # EmailSent in QBO: the invoice no longer waits, but the ledger's unfinished delivery is checked
    # and finished (recorded sent, PDF archived); the mail went out once, and stays once
    assert second["10002-202610"]["reason"] == "already sent by an interrupted run (confirmed in QBO)"
    assert ledger_rows(send_services.ledger)["send#201"].status == "sent"
    assert send_services.qbo.sent == ["201"]
