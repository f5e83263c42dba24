"""The create job's exactly-once branches, fast: claims, take-overs, replays and unknown outcomes.

Amounts by hand: 10002 has 2.00 h at 90.00 = 180.00; 10003 has 1.00 h at 90.00 = 90.00.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from create_invoices.job import CreateRun
from create_invoices.period import Period
from create_invoices.results import Outcome
from integrations import errors
from integrations.cli import JobOptions
from integrations.qbo import request_id_for
from tests.unit.jobs.fakes import FakeServices, ledger_rows, robot_run

OCTOBER = Period(2026, 10)
NOW = datetime(2026, 11, 4, 17, 0, tzinfo=UTC)


def create(services: FakeServices, run_id: str = "run-1", **options) -> dict[str, object]:
    outcome = CreateRun(services.settings, JobOptions(**options), services, OCTOBER, run_id, NOW).execute()
    return {row["client"]: row for row in outcome.table} | {"exit": outcome.exit_code}


def totals(services: FakeServices) -> dict[str, str]:
    return {i["CustomerRef"]["value"]: i["TotalAmt"] for i in services.qbo.invoices}


def test_a_clean_run_creates_one_invoice_per_client_and_records_it(services: FakeServices) -> None:
    result = create(services)

    assert result["exit"] == 0
    assert totals(services) == {"58": "180.00", "59": "90.00"}
    rows = ledger_rows(services.ledger)
    assert rows["invoice#10002#2026-10"].status == "created"
    [acme] = [i for i in services.qbo.invoices if i["CustomerRef"]["value"] == "58"]
    assert rows["invoice#10002#2026-10"].attributes["invoice_id"] == acme["Id"]
    assert set(services.archived) == {
        "2026-10/10002 - Acme CPA/usage-10002-2026-10.csv",
        "2026-10/10003 - Birch & Co/usage-10003-2026-10.csv",
    }
    assert len(services.bookkeeper_mails) == 1


def test_a_second_run_finds_the_marker_and_creates_nothing(services: FakeServices) -> None:
    create(services)
    again = create(services, run_id="run-2")

    assert len(services.qbo.invoices) == 2
    assert again["10002"]["outcome"] == Outcome.SKIPPED and again["10002"]["reason"] == "already invoiced"
    assert len(services.bookkeeper_mails) == 1  # the repeat run created nothing: it mails nobody


def test_an_invoice_with_our_marker_but_no_ledger_row_is_recorded_not_recreated(
    services: FakeServices,
) -> None:
    create(services)
    services.ledger._table.delete_item(Key={"pk": "invoice#10002#2026-10"})  # a crash before record()

    again = create(services, run_id="run-2")

    assert len(services.qbo.invoices) == 2
    assert again["10002"]["reason"].startswith("already invoiced")
    assert ledger_rows(services.ledger)["invoice#10002#2026-10"].status == "created"


def test_when_the_batch_read_of_invoiced_rows_fails_each_client_reads_its_own(
    services: FakeServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    create(services)
    services.ledger._table.delete_item(Key={"pk": "invoice#10002#2026-10"})  # a crash before record()

    def throttled(keys):
        raise errors.ServiceError("dynamodb", "BatchGetItem", "keys stayed unprocessed; try again later")

    monkeypatch.setattr(services.ledger, "get_many", throttled)
    again = create(services, run_id="run-2")

    assert len(services.qbo.invoices) == 2 and again["exit"] == 0
    assert all(again[c]["reason"].startswith("already invoiced") for c in ("10002", "10003"))
    assert ledger_rows(services.ledger)["invoice#10002#2026-10"].status == "created"  # healed all the same


def test_a_usage_csv_that_could_not_be_archived_is_archived_by_the_next_run(services: FakeServices) -> None:
    def sharepoint_down(parts, content):
        raise errors.ServerError("graph", "upload", "503", status=503)

    archive = services.archive
    services.archive = sharepoint_down  # type: ignore[method-assign]
    first = create(services)
    assert "usage CSV not archived" in first["10002"]["reason"] and services.archived == {}
    created_csv = ledger_rows(services.ledger)  # the detail recorded at creation
    assert created_csv["invoice#10002#2026-10"].attributes["archived"] is False

    services.archive = archive  # type: ignore[method-assign]
    services.robocorp.runs["ws-a"].append(robot_run("late", "ws-a", 3600))  # must NOT change the archive
    second = create(services, run_id="run-2")

    assert len(services.qbo.invoices) == 2
    assert "usage CSV archived now" in second["10002"]["reason"]
    csv_text = services.archived["2026-10/10002 - Acme CPA/usage-10002-2026-10.csv"].decode("utf-8-sig")
    assert "r1" in csv_text and "late" not in csv_text
    assert ledger_rows(services.ledger)["invoice#10002#2026-10"].attributes["archived"] is True
    third = create(services, run_id="run-3")
    assert third["10002"]["reason"] == "already invoiced"


def test_a_claim_held_by_another_run_is_not_created_twice(services: FakeServices) -> None:
    key = "invoice#10002#2026-10"
    services.ledger.claim(
        key, "other-run", request_id_for(key, "create"), 60
    )  # alive: the clock stands still

    result = create(services)

    assert totals(services) == {"59": "90.00"}
    assert result["exit"] == 1  # not done, so not exit 0
    assert result["10002"]["outcome"] == Outcome.FAILED
    assert result["10002"]["reason"].startswith("claimed by another run that is still working on it")


def test_a_lost_create_reply_is_replayed_by_the_same_requestid(services: FakeServices, clock) -> None:
    # QBO created the invoice but the reply was lost: outcome unknown, the client fails this run
    services.qbo.faults["create:58"] = (
        errors.TransportError("qbo", "create invoice", "read timed out"),
        True,
    )
    first = create(services)
    assert first["exit"] == 1 and first["10002"]["outcome"] == Outcome.FAILED
    row = ledger_rows(services.ledger)["invoice#10002#2026-10"]
    assert row.status == "failed" and row.attributes["outcome"] == "unknown"

    for invoice in services.qbo.invoices:  # the marker look-up cannot find it: only the replay can
        invoice["TxnDate"] = "2020-01-01"
    second = create(services, run_id="run-2")

    assert second["exit"] == 0
    assert len([i for i in services.qbo.invoices if i["CustomerRef"]["value"] == "58"]) == 1
    assert second["10002"]["outcome"] == Outcome.CREATED and second["10002"]["invoice"] == "10002-202610"
    assert ledger_rows(services.ledger)["invoice#10002#2026-10"].request_id == row.request_id


def test_a_duplicate_request_fault_is_resolved_by_the_marker(services: FakeServices) -> None:
    create(services, clients=("10002",))
    services.ledger._table.delete_item(Key={"pk": "invoice#10002#2026-10"})
    services.qbo.faults["create:58"] = (
        errors.DuplicateRequest("qbo", "create invoice", "duplicate", code="600"),
        False,
    )
    existing = services.qbo.invoices_between  # hide it from the first look-up only
    calls = iter([[], None])

    def first_blind(start, end):
        found = next(calls, None)
        return found if found is not None else existing(start, end)

    services.qbo.invoices_between = first_blind  # type: ignore[method-assign]
    result = create(services, run_id="run-2", clients=("10002",))

    assert len(services.qbo.invoices) == 1
    assert result["10002"]["outcome"] == Outcome.CREATED and result["10002"]["invoice"] == "10002-202610"


def test_a_validation_fault_fails_that_client_only(services: FakeServices) -> None:
    services.qbo.faults["create:58"] = (
        errors.ValidationFault("qbo", "create invoice", "6070 amount", code="6070"),
        False,
    )

    result = create(services)

    assert result["exit"] == 1
    assert result["10002"]["outcome"] == Outcome.FAILED and "6070" in result["10002"]["reason"]
    assert result["10003"]["outcome"] == Outcome.CREATED
    assert ledger_rows(services.ledger)["invoice#10002#2026-10"].status == "failed"


def test_selection_reports_inactive_and_excluded_clients(services: FakeServices) -> None:
    from dataclasses import replace

    from integrations.models import ClientRecord

    services.registry.clients.append(ClientRecord("10004", active=False))
    services.settings = replace(services.settings, excluded_customers=("10003",))

    result = create(services, clients=("10002", "10003", "10004"))

    assert result["10004"]["reason"] == "inactive in registry"
    assert result["10003"]["reason"] == "excluded"
    assert totals(services) == {"58": "180.00"}


def test_an_unknown_client_is_a_usage_error_before_anything_is_written(services: FakeServices) -> None:
    with pytest.raises(errors.UsageError, match="--client 10099: not in the client registry"):
        create(services, clients=("10002", "10099"))
    assert services.qbo.invoices == [] and services.bookkeeper_mails == []


def test_a_dry_run_writes_nothing(services: FakeServices) -> None:
    run = CreateRun(services.settings, JobOptions(dry_run=True), services, OCTOBER, "run-1", NOW)
    outcome = run.execute()
    assert {row["outcome"] for row in outcome.table} == {Outcome.WOULD_CREATE}
    assert services.qbo.invoices == [] and services.bookkeeper_mails == [] and services.archived == {}
    assert ledger_rows(services.ledger) == {}
