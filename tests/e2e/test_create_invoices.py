"""The create-invoices job against the sandbox: the right invoices, exactly once, whatever happens."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from create_invoices.period import Period
from tests.e2e.conftest import Harness, default_scenario

pytestmark = pytest.mark.e2e

# October 2026 of the default scenario, computed by hand from its runs and time entries
# (hours = seconds / 3600 rounded half-up to 2 decimals; amount = qty x rate):
#   10002 Invoice Intake 31 runs, 22,320 s = 6.20 h x 45 = 279.00; Bank Reconciliation 6 runs,
#   13,200 s = 3.666.. -> 3.67 h x 45 = 165.15; Month-end close support 3.25 h x 150 = 487.50;
#   Vendor onboarding bot changes 2.50 h x 150 = 375.00  -> 1,306.65
EXPECTED_TOTALS = {
    "10002": Decimal("1306.65"),
    "10003": Decimal("630.60"),
    # Workpaper automation design 7.00 h x 150 = 1,050.00; Client portal training 75 min + the planted
    # 13 h entry = 14.25 h x 150 = 2,137.50 -> 3,187.50 (held: that entry is over 12 h)
    "10004": Decimal("3187.50"),
    "10005": Decimal("437.25"),
    "10006": Decimal("871.21"),  # 2.17 h x 38.00 + 1.75 h x 165.00 (overrides) + 500.00 monthly fee
    "10008": Decimal("116.10"),
}
EXPECTED_10002_LINES = {
    ("Robot Runtime", Decimal("6.20"), Decimal("45.00"), Decimal("279.00")),
    ("Robot Runtime", Decimal("3.67"), Decimal("45.00"), Decimal("165.15")),
    ("Professional Services", Decimal("3.25"), Decimal("150.00"), Decimal("487.50")),
    ("Professional Services", Decimal("2.50"), Decimal("150.00"), Decimal("375.00")),
}


def _client(invoice: dict) -> str:
    return invoice["PrivateNote"].split()[0].split(":")[1]


def _totals(harness: Harness) -> dict[str, Decimal]:
    return {_client(i): Decimal(str(i["TotalAmt"])) for i in harness.invoices()}


def _sales_lines(invoice: dict) -> set[tuple[str, Decimal, Decimal, Decimal]]:
    return {
        (
            line["SalesItemLineDetail"]["ItemRef"]["name"],
            Decimal(str(line["SalesItemLineDetail"]["Qty"])),
            Decimal(str(line["SalesItemLineDetail"]["UnitPrice"])),
            Decimal(str(line["Amount"])),
        )
        for line in invoice["Line"]
        if line.get("DetailType") == "SalesItemLineDetail"
    }


def test_first_run_creates_the_expected_invoices_and_second_run_creates_none(harness: Harness) -> None:
    first = harness.run("--create-invoices", "--period", "2026-10")

    assert first.exit_code == 0, first.logs
    assert _totals(harness) == EXPECTED_TOTALS
    by_client = {_client(i): i for i in harness.invoices()}
    acme = by_client["10002"]
    assert _sales_lines(acme) == EXPECTED_10002_LINES
    assert acme["EmailStatus"] == "NeedToSend" and acme["BillEmail"]["Address"] == "ap@acmecpa.example"
    assert acme["DocNumber"] == "10002-202610"
    assert "invoice-processor:10002:2026-10" in acme["PrivateNote"].split()
    assert by_client["10008"]["EmailStatus"] == "NotSet"  # no email address: QBO refuses NeedToSend
    assert by_client["10004"]["EmailStatus"] == "NotSet"  # held: the planted 13 h entry
    assert "invoice-processor:held" in by_client["10004"]["PrivateNote"].split()
    assert {r["client"]: r["outcome"] for r in first.summary["table"]} == {
        "10001": "skipped",
        "10002": "created",
        "10003": "created",
        "10004": "created",
        "10005": "created",
        "10006": "created",
        "10007": "skipped",
        "10008": "created",
    }
    assert first.rows(client="10001")[0]["reason"] == "excluded"
    assert first.rows(client="10007")[0]["reason"] == "nothing to bill"

    state = harness.state()
    (mail,) = [m for m in state["mails"] if m["to"] == ["bookkeeper@brightline-automation.example"]]
    assert mail["subject"] == "[QBO invoices] 2026-10: 6 created, $6,549.31, 1 HELD"
    assert mail["text"].index("Held for review (1)") < mail["text"].index("Created invoices (6)")
    assert "Unattributed billable ClickUp time (1)" in mail["text"] and "Prospect demo" in mail["text"]
    assert "Robot runs not finished (1)" in mail["text"] and "VAT Return Prep" in mail["text"]
    assert "send later" in mail["text"] and "<table" in mail["html"]
    assert [a["name"] for a in mail["attachments"]] == ["invoices-2026-10.csv"]
    csv_paths = sorted(f["path"] for f in state["files"] if f["path"].endswith(".csv"))
    assert len(csv_paths) == 6 and any(
        "10005 - O'Brien & Søn Ltd/usage-10005-2026-10.csv" in p for p in csv_paths
    )
    acme_csv = next(f for f in state["files"] if f["path"].endswith("usage-10002-2026-10.csv"))
    trace = open(acme_csv["local_path"], encoding="utf-8-sig").read()
    assert trace.count("robocorp") == 37 and "clickup" in trace  # 31 + 6 runs, each traceable by id
    assert {row["pk"]: row["status"] for row in state["ledger"] if row["pk"].startswith("invoice#")} == {
        f"invoice#{c}#2026-10": "created" for c in EXPECTED_TOTALS
    }

    robocorp_reads = len(harness.sandbox.requests("robocorp"))
    second = harness.run("--create-invoices", "--period", "2026-10")
    assert second.exit_code == 0, second.logs
    assert len(harness.invoices()) == len(EXPECTED_TOTALS)
    assert {r["client"] for r in second.rows(reason="already invoiced")} == set(EXPECTED_TOTALS)
    assert second.summary["counts"]["created"] == 0
    # an invoiced client is found by its marker before any of its usage is read: only the client
    # with nothing to bill (10007, no invoice) is read again
    again = {r["path"].split("/")[4] for r in harness.sandbox.requests("robocorp")[robocorp_reads:]}
    workspaces = {i["client_id"]: set(i["robocorp_workspace_ids"]) for i in default_scenario()["registry"]}
    assert again and again <= workspaces["10007"]
    # a repeat run whose clients are all invoiced reads no usage at all: no ClickUp time (only the
    # start-up check of the token's role) and no Robocorp runs
    robocorp_reads, clickup_reads = (len(harness.sandbox.requests(s)) for s in ("robocorp", "clickup"))
    third = harness.run("--create-invoices", "--period", "2026-10", "--client", "10002")
    assert third.exit_code == 0, third.logs
    assert [r["client"] for r in third.rows(reason="already invoiced")] == ["10002"]
    assert len(harness.sandbox.requests("robocorp")) == robocorp_reads
    clickup_paths = [r["path"] for r in harness.sandbox.requests("clickup")[clickup_reads:]]
    assert clickup_paths and not [path for path in clickup_paths if "time_entries" in path], clickup_paths


def test_dry_run_prints_the_invoices_and_changes_nothing(harness: Harness) -> None:
    before = harness.state()

    run = harness.run("--create-invoices", "--period", "2026-10", "--dry-run")

    assert run.exit_code == 0, run.logs
    after = harness.state()
    for part in ("invoices", "mails", "files", "ledger"):
        assert after[part] == before[part], part
    assert "Robot runtime – Invoice Intake: 31 runs, 6.20 h" in run.stdout
    assert "1306.65" in run.stdout and "Total to invoice: $6,549.31" in run.stdout
    assert "10004 - Cedar Tax Partners (10004)  [HOLD: time entry 4120000000000000123" in run.stdout
    assert run.summary["counts"]["would_create"] == 6


def test_client_option_bills_that_client_only(harness: Harness) -> None:
    run = harness.run("--create-invoices", "--period", "2026-10", "--client", "10004")

    assert run.exit_code == 0, run.logs
    assert _totals(harness) == {"10004": Decimal("3187.50")}
    assert [r["client"] for r in run.summary["table"]] == ["10004"]


def test_the_default_period_is_the_month_before_the_scheduled_time(harness: Harness) -> None:
    # A retry that starts late, on the 5th, still bills the month before the scheduled 4th.
    run = harness.run("--create-invoices", SCHEDULED_TIME="2026-11-04T17:00:00Z")

    assert run.exit_code == 0, run.logs
    assert run.summary["period"] == "2026-10"
    assert _totals(harness) == EXPECTED_TOTALS


def test_an_unsubstituted_scheduled_time_falls_back_to_now_instead_of_exit_2(harness: Harness) -> None:
    # A Scheduler quirk (the placeholder passed through literally) must not stop billing (DESIGN 7).
    run = harness.run("--create-invoices", "--dry-run", SCHEDULED_TIME="<aws.scheduler.scheduled-time>")

    assert run.exit_code == 0, run.logs
    assert run.summary["period"] == Period.previous_to(datetime.now(UTC), "America/Los_Angeles").label
    assert "SCHEDULED_TIME" in run.logs  # the warning says why the scheduled time was not used


def _scenario_with_bad_clients() -> dict:
    scenario = default_scenario()
    scenario["registry"] += [
        {
            "client_id": "10009",
            "customer_name": "10009 - Granite Ridge CPAs",
            "robocorp_workspace_ids": "not-a-list",
        },
        {"client_id": "10010", "customer_name": "10010 - Harbor Street Accounting"},  # inactive in QBO
        {"client_id": "10011", "customer_name": "10011 - Nobody In QBO"},
        {
            "client_id": "10012",
            "customer_name": "10012 - Ironwood Payroll",
            "robocorp_workspace_ids": ["ws-without-key"],
        },
        # a copy-paste slip: 10013's registry row names another client's customer
        {"client_id": "10013", "customer_name": "10002 - Acme CPA"},
    ]
    scenario["qbo"]["customers"].append(
        {
            **scenario["qbo"]["customers"][1],
            "Id": "912",
            "DisplayName": "10012 - Ironwood Payroll",
            "PrimaryEmailAddr": {"Address": "ap@ironwood.example"},
        }
    )
    return scenario


@pytest.mark.parametrize("harness", [_scenario_with_bad_clients()], indirect=True)
def test_a_bad_client_fails_alone_and_the_others_are_billed(harness: Harness) -> None:
    run = harness.run("--create-invoices", "--period", "2026-10")

    assert run.exit_code == 1
    assert _totals(harness) == EXPECTED_TOTALS
    reasons = {r["client"]: r["reason"] for r in run.rows(outcome="failed")}
    assert set(reasons) == {"10009", "10010", "10011", "10012", "10013"}
    assert "robocorp_workspace_ids must be a list" in reasons["10009"]
    assert "inactive" in reasons["10010"].lower()
    assert "10011 - Nobody In QBO" in reasons["10011"]
    assert "ws-without-key" in reasons["10012"]
    assert "is client 10002's customer" in reasons["10013"]
    (mail,) = [m for m in harness.state()["mails"] if "bookkeeper" in m["to"][0]]
    assert "5 FAILED" in mail["subject"] and "Nobody In QBO" in mail["text"]


def test_configuration_problems_exit_2_naming_each_one(harness: Harness) -> None:
    run = harness.run("--create-invoices", INVOICE_DELIVERY="fax", BOOKKEEPER_EMAIL="not-an-address")

    assert run.exit_code == 2
    assert "INVOICE_DELIVERY" in run.logs and "BOOKKEEPER_EMAIL" in run.logs
    assert harness.invoices() == [] and harness.state()["ledger"] == []


def test_rejected_refresh_token_exits_2_before_any_write(harness: Harness) -> None:
    secrets = harness.sandbox.aws_client("secretsmanager")
    value = json.loads(secrets.get_secret_value(SecretId="QBO/10000")["SecretString"])
    secrets.put_secret_value(
        SecretId="QBO/10000", SecretString=json.dumps({**value, "refresh_token": "revoked-1"})
    )

    run = harness.run("--create-invoices", "--period", "2026-10")

    assert run.exit_code == 2
    assert "reconnected" in run.logs and "revoked-1" not in run.logs
    state = harness.state()
    assert harness.invoices() == [] and [r for r in state["ledger"] if r["pk"].startswith("invoice#")] == []
    assert state["mails"] == []


@pytest.mark.parametrize("secret", ["RoboCorp/10000/ClientAPIKeys", "MsGraph/10000"])
def test_an_unreadable_secret_exits_2_before_any_invoice_is_created(harness: Harness, secret: str) -> None:
    harness.sandbox.aws_client("secretsmanager").delete_secret(
        SecretId=secret, ForceDeleteWithoutRecovery=True
    )

    run = harness.run("--create-invoices", "--period", "2026-10")

    assert run.exit_code == 2
    assert secret in run.logs and "does not exist" in run.logs
    assert harness.invoices() == []
    assert [r for r in harness.state()["ledger"] if r["pk"].startswith("invoice#")] == []


def test_crash_after_an_invoice_create_then_rerun_leaves_one_invoice_per_client(harness: Harness) -> None:
    # The process dies right after QBO created the second invoice, before the ledger heard of it.
    crashed = harness.spawn(
        "--create-invoices", "--period", "2026-10", crash_after=2, match=r"POST .*/invoice\?"
    )
    crashed.communicate(timeout=60)
    assert crashed.returncode == 137
    assert 2 <= len(harness.invoices()) < 6  # other workers' creates may have been in flight too

    rerun = harness.run("--create-invoices", "--period", "2026-10")

    assert rerun.exit_code == 0, rerun.logs
    assert _totals(harness) == EXPECTED_TOTALS
    ledger = {
        row["pk"]: row["status"] for row in harness.state()["ledger"] if row["pk"].startswith("invoice#")
    }
    assert set(ledger.values()) == {"created"} and len(ledger) == 6


def test_a_lost_create_reply_is_replayed_with_the_same_requestid(harness: Harness) -> None:
    # QBO creates the invoice but the reply never arrives (the connection stalls past the timeout).
    harness.sandbox.fail_next("qbo", 1, status="timeout", match=r"POST .*/invoice\?")

    run = harness.run("--create-invoices", "--period", "2026-10", HTTP_TIMEOUT_SECONDS="2")

    assert run.exit_code == 0, run.logs
    assert _totals(harness) == EXPECTED_TOTALS  # the retry carried the same requestid: no duplicate


def test_two_runs_at_once_create_each_invoice_once(harness: Harness, tmp_path) -> None:
    # Slow creates: the runs overlap client by client. Each run keeps to QBO's per-realm limits, but
    # two at once exceed them together and the loser waits out a throttle window while the other
    # finishes: this test is about claims, so it relaxes the limits by name.
    # One client at a time in each run, slow QBO: both runs walk the clients in the same order at the
    # same pace, so they meet on the same claims.
    harness.sandbox.set_faults(
        "qbo", latency_ms=400, rate_limit_per_sec=0, rate_limit_per_min=0, max_concurrent=0
    )
    paths = [tmp_path / f"run-{n}.json" for n in range(2)]
    runs = [
        harness.spawn("--create-invoices", "--period", "2026-10", SUMMARY_PATH=str(p), CREATE_WORKERS="1")
        for p in paths
    ]
    outputs = [run.communicate(timeout=180) for run in runs]

    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert _totals(harness) == EXPECTED_TOTALS
    tables = [json.loads(p.read_text())["table"] for p in paths]
    created = [sum(row["outcome"] == "created" for row in table) for table in tables]
    assert sum(created) == 6
    # they contended: the run that lost a client waited for the other's claim (or found its invoice)
    lost = [row for table in tables for row in table if row["reason"] == "already invoiced"]
    assert len(lost) == 6, created
    assert any("waiting for it to finish or expire" in err for _, err in outputs) or min(created) > 0


def test_rate_limits_and_server_errors_still_bill_exactly_once(harness: Harness) -> None:
    harness.sandbox.set_faults("qbo", rate_limit_per_sec=4, retry_after=1)
    harness.sandbox.fail_next("qbo", 2, status=503, match=r"POST .*/invoice\?")
    harness.sandbox.fail_next("robocorp", 2, status=502)
    harness.sandbox.fail_next("clickup", 1, status="drop")
    started = time.monotonic()

    run = harness.run("--create-invoices", "--period", "2026-10")

    assert run.exit_code == 0, run.logs
    assert _totals(harness) == EXPECTED_TOTALS
    statuses = harness.state()["requests"]["qbo"]["by_status"]
    assert statuses.get("503", 0) == 2
    assert time.monotonic() - started < 60


def test_no_secret_reaches_logs_mails_or_files(harness: Harness) -> None:
    scenario = default_scenario()
    secrets = [
        scenario["qbo"]["client_secret"],
        scenario["qbo"]["refresh_token"],
        scenario["graph"]["client_secret"],
        scenario["clickup"]["api_token"],
        *[workspace["api_key"] for workspace in scenario["robocorp"]["workspaces"]],
    ]
    run = harness.run("--create-invoices", "--period", "2026-10", LOG_LEVEL="debug")
    assert run.exit_code == 0, run.logs
    harness.sandbox.expire_tokens("qbo")
    send = harness.run("--send-invoices", LOG_LEVEL="debug")  # rotates the refresh token again
    assert send.exit_code == 0, send.logs
    assert "QBO access token refreshed" in send.logs  # the run whose output matters most is kept

    state = harness.state()
    texts = [run.logs, json.dumps(run.summary), send.logs, send.stdout, json.dumps(send.summary)]
    texts += [open(m["path"], encoding="utf-8", errors="replace").read() for m in state["mails"]]
    texts += [
        open(f["local_path"], encoding="utf-8-sig", errors="replace").read()
        for f in state["files"]
        if f["path"].endswith(".csv")
    ]
    current = json.loads(
        harness.sandbox.aws_client("secretsmanager").get_secret_value(SecretId="QBO/10000")["SecretString"]
    )
    assert all(len(secret) >= 8 for secret in secrets)  # real values to look for
    for secret in [*secrets, current["refresh_token"]]:
        assert not any(secret in text for text in texts), "a secret leaked"
