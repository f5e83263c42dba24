"""Billing that never loses billable time (issue 12): closed months only, late time carried forward
exactly once, anomalies held until released, and a usage CSV whose rows add up to the lines.

The sandbox pins "today" to 2026-11-28 (DESIGN §7 Time); tests that bill November pin it to
December with PINNED_TODAY. Amounts are worked out by hand from the default scenario below.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from create_invoices.billing import read_trace_csv
from tests.e2e.conftest import Harness

pytestmark = pytest.mark.e2e

BOOKKEEPER = "bookkeeper@brightline-automation.example"
DECEMBER = {"PINNED_TODAY": "2026-12-04"}
BIRCH_EU = "3c4d5e6f-7a8b-4c3d-8e4f-5a6b7c8d9e0f"  # Birch's workspace with an October run still running
ACME_TIMER = "4120000000000000106"  # Acme's billable timer started 2026-10-31 16:30 UTC, still running


def _ours(harness: Harness, period: str) -> list[dict]:
    return harness.invoices(period)


def _summary_mails(harness: Harness) -> list[dict]:
    return [m for m in harness.state()["mails"] if m["to"] == [BOOKKEEPER]]


def _lines(invoice: dict) -> list[tuple[str, Decimal, Decimal]]:
    return [
        (line["Description"], Decimal(str(line["SalesItemLineDetail"]["Qty"])), Decimal(str(line["Amount"])))
        for line in invoice["Line"]
        if line.get("DetailType") == "SalesItemLineDetail"
    ]


# -- 1. closed months only ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "says"),
    [
        (
            "2026-11",
            "has not ended yet in America/Los_Angeles (today is 2026-11-28): it can be billed from 2026-12-01",
        ),
        ("2099-01", "it can be billed from 2099-02-01"),
        ("1999-01", "more than 12 months back (the earliest without --backfill is 2025-11)"),
        ("٢٠٢٦-10", "--period must look like 2026-10"),  # Arabic-Indic digits are not a month
    ],
)
def test_an_open_future_far_past_or_foreign_digit_month_exits_2_and_bills_nothing(
    harness: Harness, period: str, says: str
) -> None:
    result = harness.run("--create-invoices", "--period", period)

    assert result.exit_code == 2
    assert says in result.summary.get("error", "") + result.logs
    assert [i["Id"] for i in harness.state()["invoices"]] == ["141", "142"]  # only the seeded ones
    assert not harness.state()["mails"]


def test_a_far_past_month_bills_with_backfill_only(harness: Harness) -> None:
    refused = harness.run("--create-invoices", "--period", "2025-10", "--client", "10006")
    assert refused.exit_code == 2 and "--backfill" in refused.summary["error"]

    billed = harness.run("--create-invoices", "--period", "2025-10", "--client", "10006", "--backfill")

    # October 2025: no runs and no time in the scenario, so 10006 owes only its registry fee, 500.00.
    assert billed.exit_code == 0, billed.logs
    (invoice,) = _ours(harness, "2025-10")
    assert _lines(invoice) == [("Automation subscription – October 2025", Decimal(1), Decimal("500.00"))]


def test_november_is_billable_once_the_clock_reads_december(harness: Harness) -> None:
    result = harness.run("--create-invoices", "--period", "2026-11", "--client", "10004", **DECEMBER)

    # 10004 in November: one entry of 90 min on "Workpaper automation design" = 1.50 h x 150 = 225.00
    # (its running timer of 2026-11-28 is listed, not billed).
    assert result.exit_code == 0, result.logs
    (invoice,) = _ours(harness, "2026-11")
    assert Decimal(str(invoice["TotalAmt"])) == Decimal("225.00")


# -- 2. late time carried forward ---------------------------------------------------------------------


def _stop_timer(harness: Harness, entry_id: str, minutes: int) -> None:
    """A person stops a running ClickUp timer after its month was invoiced."""
    store = harness.sandbox.store
    entries = store.get("clickup/time_entries", [])
    (entry,) = [e for e in entries if e["id"] == entry_id]
    entry["duration"] = minutes * 60_000
    entry["end"] = entry["start"] + entry["duration"]
    store.put("clickup/time_entries", entries)


def test_a_late_october_entry_is_billed_on_novembers_invoice_exactly_once(harness: Harness) -> None:
    october = harness.run("--create-invoices", "--period", "2026-10", "--client", "10002", **DECEMBER)
    assert october.exit_code == 0, october.logs
    (oct_invoice,) = _ours(harness, "2026-10")
    assert Decimal(str(oct_invoice["TotalAmt"])) == Decimal("1306.65")  # the timer was running: not on it

    _stop_timer(harness, ACME_TIMER, 90)  # stopped at 1 h 30 min, after October was invoiced

    first = harness.run("--create-invoices", "--period", "2026-11", "--client", "10002", **DECEMBER)
    second = harness.run("--create-invoices", "--period", "2026-11", "--client", "10002", **DECEMBER)

    # November for 10002 (the scenario's expected section): Invoice Intake 27 runs, 19,440 s = 5.40 h
    # x 45 = 243.00; Bank Reconciliation 4 runs, 10,800 s = 3.00 h x 45 = 135.00; Month-end close
    # support 2.00 h x 150 = 300.00 -> 678.00. Late: the stopped timer, 90 min = 1.50 h x 150 = 225.00.
    # 678.00 + 225.00 = 903.00, on one invoice, once.
    assert (first.exit_code, second.exit_code) == (0, 0), first.logs + second.logs
    (nov_invoice,) = _ours(harness, "2026-11")
    assert Decimal(str(nov_invoice["TotalAmt"])) == Decimal("903.00")
    late = [line for line in _lines(nov_invoice) if line[0].startswith("Late time")]
    assert late == [
        (
            "Late time from October 2026: Professional services – Month-end close support: 1.50 h",
            Decimal("1.50"),
            Decimal("225.00"),
        )
    ]
    assert second.rows(client="10002")[0]["reason"] == "already invoiced"
    assert Decimal(str(_ours(harness, "2026-10")[0]["TotalAmt"])) == Decimal("1306.65")  # never edited

    # the ledger and the archived CSV say which invoice billed the late entry
    usage = _archived_csv(harness, "2026-11", "10002")
    (row,) = [r for r in usage if r["source_id"] == ACME_TIMER]
    assert (row["period"], row["usage_period"], row["seconds"], row["amount"]) == (
        "2026-11",
        "2026-10",
        "5400",
        "225.00",
    )

    (mail,) = [
        m for m in _summary_mails(harness) if m["subject"].startswith("[QBO invoices] 2026-11: 1 created")
    ]
    text = mail["text"]
    assert "Late time carried forward (1)" in text and "Month-end close support" in text
    print("\n--- bookkeeper mail of the late-time test ---\n" + text)


def _end_run(harness: Harness, workspace: str, started_at: str, seconds: int) -> None:
    """A robot run that was still running when its month was invoiced ends."""
    store = harness.sandbox.store
    workspaces = store.get("robocorp/workspaces", {})
    (run,) = [r for r in workspaces[workspace]["runs"] if r["started_at"].startswith(started_at)]
    run.update(state="completed", duration=float(seconds), ended_at="2026-11-01T01:00:00.000Z")
    store.put("robocorp/workspaces", workspaces)


def test_a_run_still_running_at_billing_time_is_billed_next_month_once_ended(harness: Harness) -> None:
    october = harness.run("--create-invoices", "--period", "2026-10", "--client", "10003", **DECEMBER)
    assert october.exit_code == 0, october.logs
    assert Decimal(str(_ours(harness, "2026-10")[0]["TotalAmt"])) == Decimal(
        "630.60"
    )  # run listed, not billed

    _end_run(harness, BIRCH_EU, "2026-10-31T22:00:00", 3 * 3600)  # VAT Return Prep: 22:00 -> 01:00 UTC
    november = harness.run("--create-invoices", "--period", "2026-11", "--client", "10003", **DECEMBER)

    # November for 10003 (the scenario's expected section): Payroll Export 1.67 h x 45 = 75.15;
    # VAT Return Prep 1.00 h x 45 = 45.00; Payroll export mapping 0.50 h x 150 = 75.00 -> 195.15.
    # Late: the October run, 10,800 s = 3.00 h x 45 = 135.00 -> 330.15.
    assert november.exit_code == 0, november.logs
    (invoice,) = _ours(harness, "2026-11")
    assert Decimal(str(invoice["TotalAmt"])) == Decimal("330.15")
    assert [line for line in _lines(invoice) if line[0].startswith("Late time")] == [
        (
            "Late time from October 2026: Robot runtime – VAT Return Prep: 1 run, 3.00 h",
            Decimal("3.00"),
            Decimal("135.00"),
        )
    ]


def test_months_billed_before_the_system_never_reopen(harness: Harness) -> None:
    # The seeded September invoice 10002-202609 carries our marker but no recorded trace: Acme's
    # September runs are not carried onto November even though no trace of ours holds them.
    result = harness.run("--create-invoices", "--period", "2026-11", "--client", "10002", **DECEMBER)

    assert result.exit_code == 0, result.logs
    (invoice,) = _ours(harness, "2026-11")
    assert not [line for line in _lines(invoice) if line[0].startswith("Late time")]
    assert Decimal(str(invoice["TotalAmt"])) == Decimal("678.00")


# -- 3. held until released -----------------------------------------------------------------------


PLANTED = "4120000000000000123"  # the default scenario's 13 h Cedar entry (a timer left on overnight)


def test_a_held_invoice_is_not_sent_until_released(harness: Harness) -> None:
    created = harness.run("--create-invoices", "--period", "2026-10")

    # 10004: Workpaper automation design 7.00 h x 150 = 1,050.00; Client portal training 75 min +
    # 13 h = 14.25 h x 150 = 2,137.50 -> 3,187.50, held because one entry is over 12 h.
    assert created.exit_code == 0, created.logs
    cedar = next(i for i in _ours(harness, "2026-10") if i["DocNumber"] == "10004-202610")
    assert Decimal(str(cedar["TotalAmt"])) == Decimal("3187.50")
    assert cedar["EmailStatus"] == "NotSet" and "invoice-processor:held" in cedar["PrivateNote"].split()
    (mail,) = _summary_mails(harness)
    assert "1 HELD" in mail["subject"]
    assert mail["text"].index("Held for review (1)") < mail["text"].index("Created invoices")
    assert f"time entry {PLANTED} (Client portal training) is 13.00 h, over the 12 h maximum" in mail["text"]

    harness.run("--send-invoices")
    assert _status(harness)["10004-202610"] == "NotSet"  # skipped: never sent while held
    assert _status(harness)["10002-202610"] == "EmailSent"

    unknown = harness.run("--create-invoices", "--release", "10004-209901")
    assert unknown.exit_code == 2
    assert "held invoices: 10004-202610" in unknown.summary["error"]

    dry = harness.run("--create-invoices", "--release", "10004-202610", "--dry-run")
    assert dry.exit_code == 0 and _status(harness)["10004-202610"] == "NotSet"

    released = harness.run("--create-invoices", "--release", "10004-202610")
    assert released.exit_code == 0, released.logs
    harness.run("--send-invoices")
    assert _status(harness)["10004-202610"] == "EmailSent"
    cedar = next(i for i in harness.state()["invoices"] if i["DocNumber"] == "10004-202610")
    assert "invoice-processor:held" not in cedar["PrivateNote"].split()
    assert cedar["PrivateNote"].startswith("invoice-processor:10004:2026-10 ")


def _status(harness: Harness) -> dict[str, str]:
    return {i.get("DocNumber") or i["Id"]: i["EmailStatus"] for i in harness.state()["invoices"]}


# -- 4. a CSV an accountant can add up ----------------------------------------------------------------


def _archived_csv(harness: Harness, period: str, client: str) -> list[dict[str, str]]:
    (found,) = [f for f in harness.state()["files"] if f["path"].endswith(f"usage-{client}-{period}.csv")]
    text = Path(found["local_path"]).read_text(encoding="utf-8-sig")
    assert text.startswith("# Rounding: every run and time entry counts in whole seconds")
    return read_trace_csv(text)


def test_the_usage_csv_rows_add_up_exactly_to_every_invoice_line(harness: Harness) -> None:
    assert harness.run("--create-invoices", "--period", "2026-10").exit_code == 0

    for invoice in _ours(harness, "2026-10"):
        client = invoice["PrivateNote"].split()[0].split(":")[1]
        rows = _archived_csv(harness, "2026-10", client)
        for number, (_, _qty, amount) in enumerate(_lines(invoice), start=1):
            mine = [r for r in rows if r["line"] == str(number)]
            assert all(r["seconds"].isdigit() for r in mine), client
            assert sum(Decimal(r["amount"]) for r in mine) == amount, (client, number)
            assert sum(Decimal(r["hours"]) for r in mine) == Decimal(mine[0]["line_hours"]), (client, number)

    # By hand, 10002 Bank Reconciliation: 6 runs of 2,700 / 2,700 / 2,700 / 600 / 2,700 / 1,800 s =
    # 13,200 s = 3.67 h. 367 hundredths by seconds: 75.07 -> 75 (x4), 16.68 -> 16, 50.05 -> 50 = 366;
    # the one left goes to the largest remainder (the 600 s run): 0.75 x 4 + 0.17 + 0.50 = 3.67 h.
    bank = [r for r in _archived_csv(harness, "2026-10", "10002") if r["name"] == "Bank Reconciliation"]
    assert [(r["seconds"], r["hours"]) for r in bank] == [
        ("2700", "0.75"),
        ("2700", "0.75"),
        ("2700", "0.75"),
        ("600", "0.17"),
        ("2700", "0.75"),
        ("1800", "0.50"),
    ]
    assert sum(Decimal(r["amount"]) for r in bank) == Decimal("165.15")


# -- 5. a mail a person can act on ----------------------------------------------------------------


def test_the_mail_names_the_client_of_unfinished_runs_and_running_timers(harness: Harness) -> None:
    assert harness.run("--create-invoices", "--period", "2026-10").exit_code == 0

    (mail,) = _summary_mails(harness)
    timers = mail["text"].split("ClickUp timers still running", 1)[1].split("\n\n", 1)[0]
    assert "10002 - Acme CPA" in timers and "Tom Becker" in timers and ACME_TIMER in timers
    runs = mail["text"].split("Robot runs not finished (1)", 1)[1]
    assert "10003 - Birch & Co. Bookkeeping  VAT Return Prep" in runs
    assert BIRCH_EU not in runs  # the client's name, never its workspace UUID


# -- recovery: a crash between the QBO create and the trace/archive --------------------------------


def _crash_right_after_acmes_october_create(harness: Harness) -> None:
    """Kill the run right after QBO created Acme's October invoice (its first invoice POST), then
    stop Acme's running timer (the data changes after the crash)."""
    crashed = harness.spawn(
        "--create-invoices",
        "--period",
        "2026-10",
        "--client",
        "10002",
        crash_after=1,
        match=r"POST .*/invoice\?",
    )
    crashed.communicate(timeout=60)
    assert crashed.returncode == 137
    _stop_timer(harness, ACME_TIMER, 90)


def test_a_crash_right_after_the_create_is_healed_from_the_recorded_trace(harness: Harness) -> None:
    # The trace is still "pending" and the usage CSV not archived.
    _crash_right_after_acmes_october_create(harness)
    (invoice,) = _ours(harness, "2026-10")
    head = next(r for r in harness.state()["ledger"] if r["pk"] == "trace#10002#2026-10")
    assert head["state"] == "pending"
    assert not [f for f in harness.state()["files"] if f["path"].endswith("usage-10002-2026-10.csv")]

    rerun = harness.run("--create-invoices", "--period", "2026-10", "--client", "10002")

    assert rerun.exit_code == 0, rerun.logs
    assert len(_ours(harness, "2026-10")) == 1
    head = next(r for r in harness.state()["ledger"] if r["pk"] == "trace#10002#2026-10")
    assert (head["state"], head["invoice_id"]) == ("invoiced", invoice["Id"])
    rows = _archived_csv(harness, "2026-10", "10002")  # what the invoice billed, not today's data
    assert ACME_TIMER not in {r["source_id"] for r in rows}
    assert sum(Decimal(r["amount"]) for r in rows) == Decimal("1306.65")

    # ...and the stopped timer is October's late time, billed on November's invoice.
    november = harness.run("--create-invoices", "--period", "2026-11", "--client", "10002", **DECEMBER)
    assert november.exit_code == 0, november.logs
    assert Decimal(str(_ours(harness, "2026-11")[0]["TotalAmt"])) == Decimal("903.00")  # 678.00 + 225.00


def test_an_unfinished_earlier_month_is_named_in_the_mail_not_reopened(harness: Harness) -> None:
    # October's run died right after the create (its trace is still "pending"), and nobody re-ran
    # October before November was billed.
    _crash_right_after_acmes_october_create(harness)

    november = harness.run("--create-invoices", "--period", "2026-11", "--client", "10002", **DECEMBER)

    assert november.exit_code == 0, november.logs
    assert Decimal(str(_ours(harness, "2026-11")[0]["TotalAmt"])) == Decimal("678.00")  # nothing late yet
    (mail,) = [m for m in _summary_mails(harness) if "2026-11" in m["subject"]]
    assert "the October 2026 invoice run did not finish for this client" in mail["text"]
    assert "--period 2026-10 --client 10002" in mail["text"]
