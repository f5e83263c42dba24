"""The send-invoices job against the sandbox: each waiting invoice delivered once, archived, reported."""

from __future__ import annotations

import copy
import os
import signal
import time

import pytest

from sandbox.bench import peak_in_flight
from tests.e2e.conftest import Harness, default_scenario

pytestmark = pytest.mark.e2e

# 10004-202610 is created too but held (a planted 13 h entry, DESIGN §7 Holds): never sent until released.
CREATED_WITH_EMAIL = {"10002-202610", "10003-202610", "10005-202610", "10006-202610"}
BOOKKEEPER = "bookkeeper@brightline-automation.example"


def _customer_mails(harness: Harness) -> list[dict]:
    return [m for m in harness.state()["mails"] if m["to"] != [BOOKKEEPER]]


def _summaries(harness: Harness) -> list[dict]:
    return [m for m in harness.state()["mails"] if m["to"] == [BOOKKEEPER] and "sent" in m["subject"]]


def _status(harness: Harness) -> dict[str, str]:
    return {i["DocNumber"]: i["EmailStatus"] for i in harness.state()["invoices"]}


def test_send_after_create_delivers_each_invoice_once_archives_and_reports(harness: Harness) -> None:
    assert harness.run("--create-invoices", "--period", "2026-10").exit_code == 0

    first = harness.run("--send-invoices")

    assert first.exit_code == 0, first.logs
    sent = _customer_mails(harness)
    assert sorted(m["subject"].split()[1] for m in sent) == sorted(CREATED_WITH_EMAIL)
    assert all(m["via"] == "qbo-invoice-send" and m["attachments"][0]["name"].endswith(".pdf") for m in sent)
    status = _status(harness)
    assert {doc: status[doc] for doc in CREATED_WITH_EMAIL} == dict.fromkeys(CREATED_WITH_EMAIL, "EmailSent")
    assert status["AICPA-1120"] == "NeedToSend"  # excluded customer: left alone
    pdfs = sorted(f["path"].rsplit("/", 1)[1] for f in harness.state()["files"] if f["path"].endswith(".pdf"))
    assert pdfs == sorted(f"Invoice-{doc}.pdf" for doc in CREATED_WITH_EMAIL)
    (summary,) = _summaries(harness)
    # 1,306.65 + 630.60 + 437.25 + 871.21 (10002, 10003, 10005, 10006; 10004 is held)
    assert summary["subject"] == "[QBO invoices] sent 4 ($3,245.71)"
    assert status["10004-202610"] == "NotSet"
    assert first.rows(invoice="AICPA-1120")[0]["reason"] == "excluded customer"

    second = harness.run("--send-invoices")

    assert second.exit_code == 0, second.logs
    assert (
        len(_customer_mails(harness)) == 4 and len(_summaries(harness)) == 1
    )  # nothing sent, nothing mailed
    assert second.summary["counts"]["sent"] == 0


def test_graph_delivery_mails_the_pdf_from_the_sender_and_marks_the_invoice_sent(harness: Harness) -> None:
    assert harness.run("--create-invoices", "--period", "2026-10", "--client", "10005").exit_code == 0

    run = harness.run("--send-invoices", INVOICE_DELIVERY="graph")

    assert run.exit_code == 0, run.logs
    (mail,) = _customer_mails(harness)
    assert mail["via"].startswith("graph") and "<billing@brightline-automation.example>" in mail["from"]
    assert mail["to"] == ["regnskab@obrien-son.example"]
    assert "10005-202610" in mail["subject"] and "437.25" in mail["html"]
    (attachment,) = mail["attachments"]
    assert attachment["name"] == "Invoice-10005-202610.pdf" and attachment["size"] > 500
    invoice = next(i for i in harness.state()["invoices"] if i["DocNumber"] == "10005-202610")
    assert invoice["EmailStatus"] == "EmailSent" and invoice["SyncToken"] == "1"


def _scenario_with_invoice_for_fjord() -> dict:
    scenario = default_scenario()
    extra = copy.deepcopy(scenario["qbo"]["invoices"][1])
    extra.update(
        {"Id": "150", "DocNumber": "FJ-77", "CustomerRef": {"value": "65"}, "PrivateNote": "by hand"}
    )
    scenario["qbo"]["invoices"].append(extra)
    return scenario


@pytest.mark.parametrize("harness", [_scenario_with_invoice_for_fjord()], indirect=True)
def test_an_invoice_without_bill_email_is_reported_not_sent(harness: Harness) -> None:
    # QBO's API refuses NeedToSend without BillEmail, but an invoice edited in the QBO app can end
    # up that way: take the address off the stored invoice, as such an edit would.
    store = harness.sandbox.store
    with store.lock:
        invoices = store.get("qbo/invoices", [])
        next(i for i in invoices if i["DocNumber"] == "FJ-77").pop("BillEmail")
        store.put("qbo/invoices", invoices)

    run = harness.run("--send-invoices")

    assert run.exit_code == 0, run.logs
    assert "no BillEmail" in run.rows(invoice="FJ-77")[0]["reason"]
    assert _customer_mails(harness) == []
    (summary,) = _summaries(harness)  # worth telling the bookkeeper: somebody must add the address
    assert "FJ-77" in summary["text"] and "no BillEmail" in summary["text"]


def test_nothing_waiting_means_no_mail_at_all(harness: Harness) -> None:
    run = harness.run("--send-invoices")  # only the excluded customer's invoice is waiting

    assert run.exit_code == 0, run.logs
    assert harness.state()["mails"] == []


def test_a_pdf_that_cannot_be_fetched_fails_that_invoice_only(harness: Harness) -> None:
    assert harness.run("--create-invoices", "--period", "2026-10").exit_code == 0
    acme = next(i for i in harness.invoices() if i["DocNumber"] == "10002-202610")
    harness.sandbox.fail_next("qbo", 10, status=500, match=rf"GET .*/invoice/{acme['Id']}/pdf")

    run = harness.run("--send-invoices", INVOICE_DELIVERY="graph", HTTP_MAX_RETRIES="2")

    assert run.exit_code == 1
    failed = run.rows(outcome="failed")
    assert [row["invoice"] for row in failed] == ["10002-202610"] and "pdf" in failed[0]["reason"].lower()
    assert len(_customer_mails(harness)) == 3 and _status(harness)["10002-202610"] == "NeedToSend"
    harness.sandbox.clear_faults()

    retry = harness.run("--send-invoices", INVOICE_DELIVERY="graph")

    assert retry.exit_code == 0, retry.logs
    assert [m["to"] for m in _customer_mails(harness)].count(["ap@acmecpa.example"]) == 1


def test_graph_429_with_retry_after_still_delivers_each_mail_once(harness: Harness) -> None:
    assert harness.run("--create-invoices", "--period", "2026-10").exit_code == 0
    harness.sandbox.fail_next("graph", 3, status=429, match=r"POST .*/sendMail")

    run = harness.run("--send-invoices", INVOICE_DELIVERY="graph")

    assert run.exit_code == 0, run.logs
    recipients = sorted(m["to"][0] for m in _customer_mails(harness))
    assert len(recipients) == 4 and len(set(recipients)) == 4
    assert harness.state()["requests"]["graph"]["by_status"].get("429") == 3


def test_crash_after_the_qbo_send_then_rerun_sends_nothing_twice(harness: Harness) -> None:
    assert harness.run("--create-invoices", "--period", "2026-10").exit_code == 0
    crashed = harness.spawn("--send-invoices", crash_after=1, match=r"POST .*/invoice/\d+/send")
    crashed.communicate(timeout=60)
    assert crashed.returncode == 137
    assert 1 <= len(_customer_mails(harness)) <= 5  # other deliveries were in flight too

    rerun = harness.run("--send-invoices")

    assert rerun.exit_code == 0, rerun.logs
    recipients = [m["to"][0] for m in _customer_mails(harness)]
    assert len(recipients) == 4 and len(set(recipients)) == 4


def test_crash_between_claim_and_send_in_qbo_mode_is_checked_in_qbo_then_sent_once(harness: Harness) -> None:
    assert harness.run("--create-invoices", "--period", "2026-10", "--client", "10005").exit_code == 0
    # Die right after the claim noted "about to mail" (the send run's first UpdateItem; a 6 s lease
    # keeps the heartbeat's renewals out of the count), before the QBO /send.
    crashed = harness.spawn(
        "--send-invoices", crash_after=1, match=r"DynamoDB_20120810\.UpdateItem", CLAIM_TTL_SECONDS="6"
    )
    crashed.communicate(timeout=60)
    assert crashed.returncode == 137 and _customer_mails(harness) == []
    (row,) = [r for r in harness.state()["ledger"] if r["pk"].startswith("send#")]
    assert row["status"] == "claimed" and row["attributes"]["stage"] == "mailing"

    rerun = harness.run("--send-invoices", CLAIM_TTL_SECONDS="6")

    assert rerun.exit_code == 0, rerun.logs
    assert [m["to"] for m in _customer_mails(harness)] == [["regnskab@obrien-son.example"]]
    reads = [
        r
        for r in harness.sandbox.requests("qbo")
        if r["method"] == "GET" and r["path"].endswith("/invoice/" + row["attributes"]["invoice_id"])
    ]
    assert reads, "the QBO-mode check (read the invoice before sending again) did not run"


def test_crash_after_a_graph_mail_is_reported_for_a_person_not_resent(harness: Harness) -> None:
    assert harness.run("--create-invoices", "--period", "2026-10", "--client", "10003").exit_code == 0
    crashed = harness.spawn(
        "--send-invoices", crash_after=1, match=r"POST .*/sendMail", INVOICE_DELIVERY="graph"
    )
    crashed.communicate(timeout=60)
    assert crashed.returncode == 137 and len(_customer_mails(harness)) == 1

    rerun = harness.run("--send-invoices", INVOICE_DELIVERY="graph")

    assert rerun.exit_code == 1
    (row,) = rerun.rows(invoice="10003-202610")
    assert row["outcome"] == "needs_review" and "Sent Items" in row["reason"]
    assert len(_customer_mails(harness)) == 1  # not resent blindly
    (summary,) = _summaries(harness)
    assert "NEED ATTENTION" in summary["subject"]


def test_dry_run_lists_and_sends_nothing(harness: Harness) -> None:
    assert harness.run("--create-invoices", "--period", "2026-10").exit_code == 0
    before = harness.state()

    run = harness.run("--send-invoices", "--dry-run")

    assert run.exit_code == 0, run.logs
    after = harness.state()
    assert after["mails"] == before["mails"] and after["invoices"] == before["invoices"]
    assert after["ledger"] == before["ledger"]
    assert "10002-202610" in run.stdout and "would_send" in run.stdout


def test_a_qbo_throttle_burst_without_retry_after_is_survived_by_both_jobs(harness: Harness) -> None:
    """Issue 11: QBO throttles for a while and sends no Retry-After. Scaled: a 4 s burst against a
    1 s client window. ``FULL_QBO_BURST=1`` runs the real shape instead, a 60 s burst against the
    production window and bound (60 s, 300 s): about two and a half minutes, so by hand."""
    if os.environ.get("FULL_QBO_BURST") == "1":
        burst, scaled = 60, {"QBO_THROTTLE_WINDOW_SECONDS": "60", "QBO_THROTTLE_MAX_WAIT_SECONDS": "300"}
    else:
        burst, scaled = 4, {"QBO_THROTTLE_WINDOW_SECONDS": "1", "QBO_THROTTLE_MAX_WAIT_SECONDS": "30"}
    harness.sandbox.set_faults("qbo", throttle_seconds=burst)
    created = harness.run("--create-invoices", "--period", "2026-10", **scaled)
    harness.sandbox.set_faults("qbo", throttle_seconds=burst)
    sent = harness.run("--send-invoices", **scaled)

    assert created.exit_code == 0, created.logs
    assert sent.exit_code == 0, sent.logs
    assert created.summary["throttling"]["qbo"]["throttled"] >= 1
    assert sent.summary["throttling"]["qbo"]["waited_seconds"] >= 1
    markers = [
        i["PrivateNote"] for i in harness.state()["invoices"] if ":2026-10" in i.get("PrivateNote", "")
    ]
    assert len(markers) == len(set(markers)) == 6  # one invoice per billed client, none twice
    subjects = sorted(m["subject"].split()[1] for m in _customer_mails(harness))
    assert subjects == sorted(CREATED_WITH_EMAIL)  # each mailed exactly once


# -- several deliveries in flight (SEND_WORKERS > 1): each is claimed on its own --------------------
def _claimed_at_once(harness: Harness) -> list[dict]:
    return [r for r in harness.state()["ledger"] if r["pk"].startswith("send#")]


def _mails_per_recipient(harness: Harness) -> dict[str, int]:
    counts: dict[str, int] = {}
    for mail in _customer_mails(harness):
        counts[mail["to"][0]] = counts.get(mail["to"][0], 0) + 1
    return counts


def test_crash_with_several_qbo_sends_in_flight_then_one_rerun_mails_each_invoice_once(
    harness: Harness,
) -> None:
    assert harness.run("--create-invoices", "--period", "2026-10").exit_code == 0
    harness.sandbox.set_faults("qbo", latency_ms=400)  # slow sends: three are in flight when it dies
    crashed = harness.spawn(
        "--send-invoices", crash_after=2, match=r"POST .*/invoice/\d+/send", SEND_WORKERS="3"
    )
    crashed.communicate(timeout=90)
    assert crashed.returncode == 137
    assert len(_claimed_at_once(harness)) >= 3, "the run never had several deliveries in flight"
    mailed_before = _mails_per_recipient(harness)
    assert 2 <= sum(mailed_before.values()) < len(CREATED_WITH_EMAIL) and set(mailed_before.values()) == {1}

    harness.sandbox.clear_faults("qbo")
    rerun = harness.run("--send-invoices", SEND_WORKERS="4")

    assert rerun.exit_code == 0, rerun.logs
    mailed = _mails_per_recipient(harness)
    assert len(mailed) == len(CREATED_WITH_EMAIL) and set(mailed.values()) == {1}, (
        mailed
    )  # none twice, none lost
    assert {doc: _status(harness)[doc] for doc in CREATED_WITH_EMAIL} == dict.fromkeys(
        CREATED_WITH_EMAIL, "EmailSent"
    )
    # a claim the dead run left at "mailing" whose mail did go out stays as it is: QBO says EmailSent,
    # so no run picks the invoice up again (and if a person reset it, QBO's DeliveryInfo stops a resend)
    for row in _claimed_at_once(harness):
        assert row["status"] == "sent" or row["attributes"].get("stage") == "mailing", row


def test_crash_with_several_graph_mails_in_flight_reports_the_unknown_ones_and_sends_the_rest(
    harness: Harness,
) -> None:
    assert harness.run("--create-invoices", "--period", "2026-10").exit_code == 0
    harness.sandbox.set_faults("graph", latency_ms=400)
    crashed = harness.spawn(
        "--send-invoices",
        crash_after=1,
        match=r"POST .*/sendMail",
        INVOICE_DELIVERY="graph",
        SEND_WORKERS="4",
    )
    crashed.communicate(timeout=90)
    assert crashed.returncode == 137
    assert len(_claimed_at_once(harness)) >= 3, "the run never had several deliveries in flight"

    harness.sandbox.clear_faults("graph")
    rerun = harness.run("--send-invoices", INVOICE_DELIVERY="graph", SEND_WORKERS="4")

    mailed = _mails_per_recipient(harness)
    assert set(mailed.values()) == {1}, mailed  # never mailed twice, in flight or not
    review = {row["invoice"] for row in rerun.summary["table"] if row["outcome"] == "needs_review"}
    sent = {doc for doc, status in _status(harness).items() if status == "EmailSent"} & CREATED_WITH_EMAIL
    assert review and review | sent == CREATED_WITH_EMAIL  # nothing silently skipped: sent or named
    assert not review & sent and len(mailed) >= len(sent)
    assert rerun.exit_code == 1  # a person has to check the ones whose mail call was cut off


def test_sigterm_with_several_sends_in_flight_then_one_rerun_mails_each_invoice_once(
    harness: Harness, tmp_path
) -> None:
    assert harness.run("--create-invoices", "--period", "2026-10").exit_code == 0
    harness.sandbox.set_faults("qbo", latency_ms=1500)  # the last invoices are still waiting when stopped
    run = harness.spawn("--send-invoices", SEND_WORKERS="4", SUMMARY_PATH=str(tmp_path / "stopped.json"))
    deadline = time.monotonic() + 60
    while not _customer_mails(harness) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _customer_mails(harness), "the run never mailed its first invoice"
    run.send_signal(signal.SIGTERM)
    run.communicate(timeout=30)
    assert run.returncode == 1
    assert set(_mails_per_recipient(harness).values()) == {1}

    harness.sandbox.clear_faults("qbo")
    rerun = harness.run("--send-invoices", SEND_WORKERS="4")

    assert rerun.exit_code == 0, rerun.logs
    mailed = _mails_per_recipient(harness)
    assert len(mailed) == len(CREATED_WITH_EMAIL) and set(mailed.values()) == {1}, mailed
    assert all(_status(harness)[doc] == "EmailSent" for doc in CREATED_WITH_EMAIL)


def test_graph_mode_keeps_at_most_four_mails_in_flight_however_many_workers(harness: Harness) -> None:
    # Cedar's 13-h entry is not held here, so five customers are mailed: one more than the slots
    assert harness.run("--create-invoices", "--period", "2026-10", HOLD_MAX_HOURS="24").exit_code == 0
    harness.sandbox.set_faults("graph", latency_ms=1500)  # five slow customer mails, eight workers
    # QBO counts 10 calls a second per company across runs: the create's last calls must not share a
    # second with the send's five PDF reads (a 429 would hold two PDFs back and so two mails)
    time.sleep(1.1)
    before = len(harness.sandbox.requests("graph"))

    run = harness.run("--send-invoices", INVOICE_DELIVERY="graph", SEND_WORKERS="8")

    assert run.exit_code == 0, run.logs
    mails = [r for r in harness.sandbox.requests("graph")[before:] if r["path"].endswith("/sendMail")]
    customer = mails[:-1]  # the last one is the bookkeeper's summary
    assert len(customer) == 5 and peak_in_flight(customer, "graph") == 4  # Outlook: 4 per mailbox
    # the stand-in refuses a fifth call to the mailbox (429): the job never made one
    assert [r["status"] for r in harness.sandbox.requests("graph")[before:] if r["status"] == 429] == []
    assert set(_mails_per_recipient(harness).values()) == {1}
