"""Exactly once when reality interrupts (issue 10): each failure found by the fault campaign,
reproduced end to end, and healed by ONE immediate normal re-run (no waiting for leases: the
harness sets CLAIM_TTL_SECONDS=3, so a dead run's claims are taken over within seconds)."""

from __future__ import annotations

import json
import signal
import time
from decimal import Decimal

import pytest

from integrations.config import load_settings
from integrations.services import connect
from tests.e2e.conftest import Harness
from tests.e2e.test_create_invoices import EXPECTED_TOTALS, _totals

pytestmark = pytest.mark.e2e

BOOKKEEPER = "bookkeeper@brightline-automation.example"
OCTOBER = ("--create-invoices", "--period", "2026-10")
ACME_WORKSPACE = "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d"


def _ledger(harness: Harness, prefix: str) -> dict[str, dict]:
    return {row["pk"]: row for row in harness.state()["ledger"] if row["pk"].startswith(prefix)}


def _customer_mails(harness: Harness) -> list[dict]:
    return [m for m in harness.state()["mails"] if m["to"] != [BOOKKEEPER]]


def _edit_invoice(harness: Harness, doc_number: str, **fields: object) -> None:
    """A person edits the invoice in QuickBooks (a new SyncToken)."""
    with harness.sandbox.environ():
        qbo = connect(load_settings(harness.env())).qbo
        (invoice,) = [i for i in harness.state()["invoices"] if i.get("DocNumber") == doc_number]
        qbo.sparse_update_invoice(str(invoice["Id"]), fields, f"edit-{doc_number}-{time.time_ns()}")


# -- create ---------------------------------------------------------------------------------------


def test_crash_after_the_claim_before_the_create_is_billed_by_an_immediate_rerun(harness: Harness) -> None:
    # One worker, so the 2nd PutItem is the first client's claim (the 1st is the token lock).
    crashed = harness.spawn(*OCTOBER, crash_after=2, match=r"DynamoDB_20120810\.PutItem", CREATE_WORKERS="1")
    crashed.communicate(timeout=60)
    assert crashed.returncode == 137
    claimed = [k for k, row in _ledger(harness, "invoice#").items() if row["status"] == "claimed"]
    assert claimed == ["invoice#10002#2026-10"] and harness.invoices() == []

    rerun = harness.run(*OCTOBER)

    assert rerun.exit_code == 0, rerun.logs
    assert _totals(harness) == EXPECTED_TOTALS
    assert {row["status"] for row in _ledger(harness, "invoice#").values()} == {"created"}


def test_crash_after_the_create_before_the_archive_is_archived_by_the_rerun(harness: Harness) -> None:
    crashed = harness.spawn(*OCTOBER, crash_after=1, match=r"POST .*/invoice\?", CREATE_WORKERS="1")
    crashed.communicate(timeout=60)
    assert crashed.returncode == 137 and len(harness.invoices()) == 1
    assert not [f for f in harness.state()["files"] if f["path"].endswith(".csv")]

    rerun = harness.run(*OCTOBER)

    assert rerun.exit_code == 0, rerun.logs
    assert _totals(harness) == EXPECTED_TOTALS
    csvs = sorted(
        f["path"].rsplit("/", 1)[-1] for f in harness.state()["files"] if f["path"].endswith(".csv")
    )
    assert csvs == [f"usage-{c}-2026-10.csv" for c in sorted(EXPECTED_TOTALS)]
    assert all(row["attributes"].get("archived") is True for row in _ledger(harness, "invoice#").values())


def test_sigterm_mid_run_stops_within_20_s_with_summary_and_mail_then_a_rerun_finishes(
    harness: Harness, tmp_path
) -> None:
    harness.sandbox.set_faults("qbo", latency_ms=700)  # a slow QuickBooks: the run is mid-way when stopped
    summary_path = tmp_path / "stopped.json"
    run = harness.spawn(*OCTOBER, CREATE_WORKERS="1", SUMMARY_PATH=str(summary_path))
    deadline = time.monotonic() + 60
    while not harness.invoices() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert harness.invoices(), "the run never created its first invoice"
    run.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    run.communicate(timeout=30)
    took = time.monotonic() - stopped_at

    assert run.returncode == 1 and took < 20, took
    summary = json.loads(summary_path.read_text())
    assert summary["exit_code"] == 1
    assert any(row["reason"].startswith("stopped early") for row in summary["table"])
    (mail,) = [m for m in harness.state()["mails"] if m["to"] == [BOOKKEEPER]]
    assert "STOPPED EARLY" in mail["subject"]
    assert 1 <= len(harness.invoices()) < 6

    harness.sandbox.clear_faults("qbo")
    rerun = harness.run(*OCTOBER)

    assert rerun.exit_code == 0, rerun.logs
    assert _totals(harness) == EXPECTED_TOTALS


def test_a_lost_token_reply_is_retried_with_the_same_token_and_billing_goes_on(harness: Harness) -> None:
    harness.sandbox.fail_next("qbo", 1, status="drop-after", match=r"POST .*/tokens/bearer")

    run = harness.run(*OCTOBER)

    assert run.exit_code == 0, run.logs
    assert _totals(harness) == EXPECTED_TOTALS
    again = harness.run("--send-invoices", "--dry-run")  # the stored token still works
    assert again.exit_code == 0, again.logs


def test_one_malformed_clickup_entry_fails_only_its_client(harness: Harness) -> None:
    with harness.sandbox.store.edit("clickup/time_entries") as entries:
        entries[0]["duration"] = "1h30m"  # an Acme (10002) entry

    run = harness.run(*OCTOBER)

    assert run.exit_code == 1
    (acme,) = run.rows(client="10002")
    assert acme["outcome"] == "failed"
    assert "entry 4120000000000000101" in acme["reason"] and "'1h30m'" in acme["reason"]
    assert _totals(harness) == {c: t for c, t in EXPECTED_TOTALS.items() if c != "10002"}


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"started_at": None}, "completed but has no started_at"),
        ({"duration": -30.0}, "duration is not a non-negative number"),
    ],
)
def test_a_broken_robot_run_is_a_named_error_of_its_client(
    harness: Harness, change: dict, needle: str
) -> None:
    with harness.sandbox.store.edit("robocorp/workspaces") as workspaces:
        run_record = next(r for r in workspaces[ACME_WORKSPACE]["runs"] if r["state"] == "completed")
        run_record.update(change)

    run = harness.run(*OCTOBER)

    (acme,) = run.rows(client="10002")
    assert run.exit_code == 1 and acme["outcome"] == "failed" and needle in acme["reason"]
    assert run_record["id"] in acme["reason"]
    assert set(_totals(harness)) == set(EXPECTED_TOTALS) - {"10002"}


def test_dropped_connections_are_retried_for_safe_calls(harness: Harness) -> None:
    harness.sandbox.set_faults("qbo", drop_rate=0.3, seed=7)

    run = harness.run(*OCTOBER)

    assert run.exit_code == 0, run.logs
    assert _totals(harness) == EXPECTED_TOTALS
    assert harness.state()["requests"]["qbo"]["by_status"].get("0", 0) >= 3  # 0: dropped, no answer


# -- send -----------------------------------------------------------------------------------------


def test_graph_delivery_is_per_invoice_not_per_edit(harness: Harness) -> None:
    assert harness.run(*OCTOBER, "--client", "10003").exit_code == 0
    crashed = harness.spawn(
        "--send-invoices", crash_after=1, match=r"POST .*/sendMail", INVOICE_DELIVERY="graph"
    )
    crashed.communicate(timeout=60)
    assert crashed.returncode == 137 and len(_customer_mails(harness)) == 1
    _edit_invoice(harness, "10003-202610", CustomerMemo={"value": "Thank you!"})

    rerun = harness.run("--send-invoices", INVOICE_DELIVERY="graph")

    assert len(_customer_mails(harness)) == 1, "mailed twice after an edit"
    (row,) = rerun.rows(invoice="10003-202610")
    assert rerun.exit_code == 1 and row["outcome"] == "needs_review"


def test_a_failed_mark_as_sent_then_an_edit_never_mails_twice(harness: Harness) -> None:
    assert harness.run(*OCTOBER).exit_code == 0
    harness.sandbox.fail_next("qbo", 40, status=500, match=r"POST .*/invoice\?")  # every sparse update
    first = harness.run("--send-invoices", INVOICE_DELIVERY="graph", HTTP_MAX_RETRIES="2")
    assert len(_customer_mails(harness)) == 5
    assert all(
        "not yet marked" in row["reason"] for row in first.summary["table"] if row["outcome"] == "sent"
    )
    harness.sandbox.clear_faults("qbo")
    for doc in ("10002-202610", "10004-202610"):
        _edit_invoice(harness, doc, CustomerMemo={"value": "edited"})

    again = harness.run("--send-invoices", INVOICE_DELIVERY="graph")

    assert again.exit_code == 0, again.logs
    assert len(_customer_mails(harness)) == 5
    assert {i["EmailStatus"] for i in harness.state()["invoices"] if i.get("BillEmail")} >= {"EmailSent"}


@pytest.mark.parametrize(
    "match",
    [r"DynamoDB_20120810\.PutItem", r"GET .*/invoice/\d+/pdf", r"POST .*/oauth2/v2.0/token"],
    ids=["after-claim", "after-pdf", "after-graph-token"],
)
def test_a_graph_run_that_died_before_mailing_is_sent_by_the_next_run(harness: Harness, match: str) -> None:
    assert harness.run(*OCTOBER, "--client", "10004").exit_code == 0
    after = 2 if "PutItem" in match else 1  # PutItem 1 is the QBO token lock, 2 the delivery claim
    crashed = harness.spawn("--send-invoices", crash_after=after, match=match, INVOICE_DELIVERY="graph")
    crashed.communicate(timeout=60)
    assert crashed.returncode == 137 and _customer_mails(harness) == []

    rerun = harness.run("--send-invoices", INVOICE_DELIVERY="graph")

    assert rerun.exit_code == 0, rerun.logs
    assert [m["to"] for m in _customer_mails(harness)] == [["invoices@cedartax.example"]]


def test_resend_mails_an_invoice_again_on_purpose(harness: Harness) -> None:
    assert harness.run(*OCTOBER, "--client", "10004").exit_code == 0
    assert harness.run("--send-invoices").exit_code == 0

    resend = harness.run("--send-invoices", "--resend", "10004-202610")

    assert resend.exit_code == 0, resend.logs
    assert [m["to"] for m in _customer_mails(harness)] == [["invoices@cedartax.example"]] * 2
    refused = harness.run("--send-invoices", "--resend", "10099-202610")
    assert refused.exit_code == 2 and "no invoice of this system matches" in refused.logs


def test_amounts_are_unchanged_by_recovery(harness: Harness) -> None:
    """Guard against a recovery path that re-bills with data read again: totals stay the hand-worked ones."""
    crashed = harness.spawn(*OCTOBER, crash_after=3, match=r"POST .*/invoice\?")
    crashed.communicate(timeout=60)
    assert harness.run(*OCTOBER).exit_code == 0
    assert sum(_totals(harness).values()) == Decimal("4599.31")
