"""GraphClient, ClickUpClient, RobocorpClient and the AWS helpers against the sandbox, built as the
jobs build them (``services.connect``)."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from integrations import errors
from integrations.aws import ClaimNotHeld, ClientRegistry, publish_run_metric
from integrations.models import Attachment
from integrations.robocorp import MissingApiKey, build_robocorp
from integrations.services import Services
from sandbox import Sandbox
from tests.contract.conftest import SettingsFactory
from tests.contract.helpers import calls_since, disk_state

pytestmark = pytest.mark.xdist_group("contract-saas")

ACME_WORKSPACE = "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d"  # 3 runs + series of 64 and 8 = 75 runs
BIRCH_WORKSPACE = "2b3c4d5e-6f7a-4b2c-9d3e-4f5a6b7c8d9e"
CLICKUP_OWNER = "81500001"
PDF = b"%PDF-1.4\n% contract test\n" + bytes(range(256)) * 8


def _blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _mail(sandbox: Sandbox, subject: str) -> list[dict]:
    return [m for m in disk_state(sandbox)["mails"] if m["subject"] == subject]


def _stored_file(sandbox: Sandbox, path: str) -> Path:
    matches = [f for f in disk_state(sandbox)["files"] if f["path"].endswith(path)]
    assert len(matches) == 1, matches
    return Path(matches[0]["local_path"])


# --- Graph: mail ------------------------------------------------------------------------------


def test_send_mail_as_json_delivers_html_and_attachment(sandbox: Sandbox, services: Services) -> None:
    sender = services.settings.sender_email
    services.graph.send_mail(
        sender,
        ["ap@acmecpa.example"],
        "Contract JSON mail",
        "<p>Your invoice is attached.</p>",
        attachments=[Attachment("Invoice_1001.pdf", "application/pdf", PDF)],
        cc=[services.settings.bookkeeper_email],
    )

    [mail] = _mail(sandbox, "Contract JSON mail")
    assert mail["via"] == "graph-sendMail" and sender in mail["from"]
    assert mail["to"] == ["ap@acmecpa.example"] and mail["cc"] == [services.settings.bookkeeper_email]
    assert "Your invoice is attached." in mail["html"]
    assert mail["attachments"] == [
        {"name": "Invoice_1001.pdf", "content_type": "application/pdf", "size": len(PDF)}
    ]


def test_send_mail_with_text_goes_as_mime_with_both_bodies(sandbox: Sandbox, services: Services) -> None:
    services.graph.send_mail(
        services.settings.sender_email,
        ["accounts@birchco.example"],
        "Contract MIME mail",
        "<p>Hej</p>",
        text="Hej (plain)",
        attachments=[Attachment("Invoice_1002.pdf", "application/pdf", PDF)],
        bcc=["archive@brightline-automation.example"],
    )

    [mail] = _mail(sandbox, "Contract MIME mail")
    assert mail["via"] == "graph-sendMail-mime"
    assert mail["to"] == ["accounts@birchco.example"] and mail["bcc"] == [
        "archive@brightline-automation.example"
    ]
    assert mail["text"].strip() == "Hej (plain)" and "<p>Hej</p>" in mail["html"]
    assert [(a["name"], a["size"]) for a in mail["attachments"]] == [("Invoice_1002.pdf", len(PDF))]


def test_send_mail_over_three_megabytes_goes_through_a_draft_and_upload_session(
    sandbox: Sandbox, services: Services
) -> None:
    big, small = _blob(3_200_000, 1), _blob(50_000, 2)
    mark = len(sandbox.requests("graph"))

    services.graph.send_mail(
        services.settings.sender_email,
        ["finance@deltaadvisory.example"],
        "Contract large mail",
        "<p>Two files</p>",
        attachments=[
            Attachment("usage.csv", "text/csv", small),
            Attachment("Invoice_big.pdf", "application/pdf", big),
        ],
    )

    [mail] = _mail(sandbox, "Contract large mail")
    assert {(a["name"], a["size"]) for a in mail["attachments"]} == {
        ("usage.csv", len(small)),
        ("Invoice_big.pdf", len(big)),
    }
    paths = [c["path"] for c in calls_since(sandbox, "graph", mark)]
    assert not any(p.endswith("/sendMail") for p in paths)
    assert any(p.endswith("/attachments/createUploadSession") for p in paths)
    assert any(p.endswith("/send") for p in paths)


def test_send_mail_from_a_mailbox_without_access_is_permission_denied(services: Services) -> None:
    with pytest.raises(errors.PermissionDenied) as caught:
        services.graph.send_mail(
            "someone-else@brightline-automation.example", ["a@b.example"], "x", "<p>x</p>"
        )

    assert caught.value.code == "ErrorAccessDenied" and caught.value.status == 403


# --- Graph: SharePoint ------------------------------------------------------------------------


def test_resolve_site_returns_the_composite_site_id(services: Services) -> None:
    settings = services.settings
    site_id = services.graph.resolve_site(settings.ms_graph_hostname, settings.sharepoint_site_path)

    host, collection, web = site_id.split(",")
    assert host == settings.ms_graph_hostname and uuid.UUID(collection) and uuid.UUID(web)


def test_upload_small_file_stores_identical_bytes(sandbox: Sandbox, services: Services) -> None:
    settings = services.settings
    site_id = services.graph.resolve_site(settings.ms_graph_hostname, settings.sharepoint_site_path)
    content = _blob(100_000, 3)

    item = services.graph.upload_file(site_id, f"{settings.sharepoint_folder}/2026-10/small.csv", content)

    assert item["name"] == "small.csv" and item["size"] == len(content)
    assert _stored_file(sandbox, "Invoices/2026-10/small.csv").read_bytes() == content


def test_upload_large_file_uses_an_upload_session_and_stores_identical_bytes(
    sandbox: Sandbox, services: Services
) -> None:
    settings = services.settings
    site_id = services.graph.resolve_site(settings.ms_graph_hostname, settings.sharepoint_site_path)
    content = _blob(6_000_000, 4)  # over 4 MB: session; over 5 MiB: two chunks
    mark = len(sandbox.requests("graph"))

    item = services.graph.upload_file(site_id, f"{settings.sharepoint_folder}/2026-10/large.bin", content)

    assert item["size"] == len(content)
    assert _stored_file(sandbox, "Invoices/2026-10/large.bin").read_bytes() == content
    chunks = [c for c in calls_since(sandbox, "graph", mark) if c["path"].startswith("/upload/")]
    assert [c["status"] for c in chunks] == [202, 201]


def test_upload_with_conflict_fail_on_an_existing_file_is_a_typed_error(
    sandbox: Sandbox, services: Services
) -> None:
    settings = services.settings
    site_id = services.graph.resolve_site(settings.ms_graph_hostname, settings.sharepoint_site_path)
    path = f"{settings.sharepoint_folder}/2026-10/once.csv"
    services.graph.upload_file(site_id, path, b"first\n", conflict="fail")

    with pytest.raises(errors.ValidationFault) as caught:
        services.graph.upload_file(site_id, path, b"second\n", conflict="fail")

    assert caught.value.status == 409 and caught.value.code == "nameAlreadyExists"
    assert _stored_file(sandbox, "Invoices/2026-10/once.csv").read_bytes() == b"first\n"


# --- ClickUp ----------------------------------------------------------------------------------


def test_clickup_members_are_the_workspace_members(services: Services) -> None:
    members = services.clickup.members()

    assert [m.id for m in members] == ["81500001", "81500002", "81500003", "81500004"]
    assert members[0].username == "Maria Lopez" and members[0].email == "maria@brightline-automation.example"


def test_clickup_time_entries_of_every_member_come_back_for_the_month(
    sandbox: Sandbox, services: Services
) -> None:
    ids = [m.id for m in services.clickup.members()]
    mark = len(sandbox.requests("clickup"))

    entries = services.clickup.time_entries(
        datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC), ids
    )

    users = {e.user_id for e in entries}
    assert len(users) > 1 and CLICKUP_OWNER in users  # the stand-in gives only the owner's without assignee
    assert sum(e.user_id == CLICKUP_OWNER for e in entries) < len(entries)
    assert len(entries) == len({e.id for e in entries}) == 15
    assert all(
        datetime(2026, 10, 1, tzinfo=UTC) <= e.start < datetime(2026, 11, 1, tzinfo=UTC) for e in entries
    )
    assert any(e.duration_ms < 0 and e.end is None for e in entries)  # the timer left running
    assert any(e.folder_name for e in entries)  # include_location_names honoured
    windows = calls_since(sandbox, "clickup", mark)
    assert len(windows) == 5  # 31 days in windows of at most 7
    assert all(parse_qs(c["query"])["assignee"] == [",".join(ids)] for c in windows)


# --- Robocorp ---------------------------------------------------------------------------------


def test_process_runs_follow_next_across_every_page(sandbox: Sandbox, services: Services) -> None:
    mark = len(sandbox.requests("robocorp"))

    runs = list(services.robocorp.process_runs(ACME_WORKSPACE, limit=20))

    assert len(runs) == len({r.id for r in runs}) == 75
    assert {r.process_name for r in runs} == {"Invoice Intake", "Bank Reconciliation"}
    assert all(r.workspace_id == ACME_WORKSPACE for r in runs)
    assert len(calls_since(sandbox, "robocorp", mark)) == 4  # 20 + 20 + 20 + 15


def test_process_runs_without_a_key_for_the_workspace_is_missing_api_key(services: Services) -> None:
    with pytest.raises(MissingApiKey) as caught:
        services.robocorp.process_runs("00000000-0000-4000-8000-000000000000")

    assert "00000000-0000-4000-8000-000000000000" in str(caught.value)


def test_process_runs_with_a_wrong_or_foreign_key_are_typed_errors(
    services: Services, make_settings: SettingsFactory
) -> None:
    keys = services.secrets.read_json(services.settings.robocorp_secret_name)
    client = build_robocorp(
        make_settings(),
        {ACME_WORKSPACE: "rcws_wrong_0000000000000000000000000000", BIRCH_WORKSPACE: keys[ACME_WORKSPACE]},
    )

    with pytest.raises(errors.AuthExpired) as unknown:
        list(client.process_runs(ACME_WORKSPACE))
    with pytest.raises(errors.PermissionDenied) as foreign:
        list(client.process_runs(BIRCH_WORKSPACE))

    assert unknown.value.status == 401 and foreign.value.status == 403
    assert keys[ACME_WORKSPACE] not in str(foreign.value)


# --- AWS --------------------------------------------------------------------------------------


def test_secret_store_writes_a_version_and_reads_it_back(sandbox: Sandbox, services: Services) -> None:
    name = "contract/round-trip"
    sandbox.aws_client("secretsmanager").create_secret(Name=name, SecretString="{}")

    version = services.secrets.write_json(name, {"api_token": "pk_round_trip_0001", "team_id": "42"})

    assert services.secrets.read_json(name) == {"api_token": "pk_round_trip_0001", "team_id": "42"}
    current = [v for v in sandbox.state()["secrets"][name] if "AWSCURRENT" in v["stages"]]
    assert [v["version_id"] for v in current] == [version]
    with pytest.raises(errors.NotFound) as caught:
        services.secrets.read_json("contract/does-not-exist")
    assert "does not exist" in caught.value.reason


def test_registry_load_returns_valid_records_and_reports_invalid_items(
    sandbox: Sandbox, services: Services
) -> None:
    # The two invalid items DESIGN's default scenario describes (added here so the test does not
    # depend on whether the scenario file carries them).
    table = sandbox.aws_client("dynamodb")
    table.put_item(
        TableName=services.settings.registry_table,
        Item={"client_id": {"S": "10009"}, "robocorp_workspace_ids": {"S": "not-a-list"}},
    )
    table.put_item(
        TableName=services.settings.registry_table,
        Item={"client_id": {"S": "acme-legacy"}, "customer_name": {"S": "Acme (old)"}},
    )

    valid, invalid = services.registry.load()

    assert [r.client_id for r in valid] == [str(n) for n in range(10001, 10009)]
    assert {r.key for r in invalid} == {"10009", "acme-legacy"}
    birch = next(r for r in valid if r.client_id == "10003")
    assert len(birch.robocorp_workspace_ids) == 2 and birch.clickup_location_ids == ("901204410",)
    paged = ClientRegistry(services.aws.dynamodb.Table(services.settings.registry_table), page_size=3)
    assert paged.load() == (valid, invalid)  # the same through a Scan of many small pages


def test_ledger_claims_records_and_locks_are_conditional(services: Services) -> None:
    ledger = services.ledger
    key = f"invoice#contract-{uuid.uuid4().hex[:8]}#2026-10"

    acquired, entry = ledger.claim(key, "run-a", "req-a", lease_seconds=300, attributes={"total": "1.00"})
    lost, holder = ledger.claim(key, "run-b", "req-b", lease_seconds=300)
    ledger.record(key, "run-a", "failed", {"error": "boom"})
    with pytest.raises(ClaimNotHeld):
        ledger.record(key, "run-b", "created")
    retaken, retry = ledger.claim(key, "run-b", "req-b", lease_seconds=300)
    ledger.record(key, "run-b", "created", {"invoice_id": "1234"})

    assert acquired and entry is not None and entry.status == "claimed"
    assert not lost and holder is not None and holder.run_id == "run-a"
    assert retaken and retry is not None and retry.request_id == "req-a"  # the original requestid
    stored = ledger.get(key)
    assert stored is not None and stored.status == "created" and stored.run_id == "run-b"
    assert stored.attributes == {"total": "1.00", "error": "boom", "invoice_id": "1234"}
    assert [e.key for e in ledger.scan_prefix(key)] == [key]

    assert ledger.acquire_lock("contract", "owner-a", ttl_seconds=60)
    assert not ledger.acquire_lock("contract", "owner-b", ttl_seconds=60)
    ledger.release_lock("contract", "owner-a")
    assert ledger.acquire_lock("contract", "owner-b", ttl_seconds=60)
    ledger.release_lock("contract", "owner-b")


def test_ledger_claim_and_lock_with_an_expired_lease_are_taken_over(services: Services) -> None:
    ledger = services.ledger
    key = f"invoice#contract-{uuid.uuid4().hex[:8]}#2026-10"
    ledger.claim(key, "crashed-run", "req-original", lease_seconds=0.001)
    assert ledger.acquire_lock("contract-expiry", "crashed-run", ttl_seconds=0.001)
    time.sleep(0.01)

    acquired, entry = ledger.claim(key, "next-run", "req-new", lease_seconds=300)
    locked = ledger.acquire_lock("contract-expiry", "next-run", ttl_seconds=60)

    assert acquired and entry is not None and entry.run_id == "next-run"
    assert entry.request_id == "req-original" and entry.previous_status == "claimed"
    assert entry.previous_run_id == "crashed-run" and entry.attempts == 2
    assert locked
    ledger.release_lock("contract-expiry", "next-run")


def test_publish_run_metric_reaches_cloudwatch(sandbox: Sandbox, services: Services) -> None:
    settings = services.settings
    publish_run_metric(services.aws.cloudwatch, settings.metrics_namespace, "contract-job", failed=True)

    metrics = {
        m["name"]: m
        for m in sandbox.state()["metrics"]
        if m["namespace"] == settings.metrics_namespace and m["dimensions"] == "Job=contract-job"
    }
    assert set(metrics) == {"RunCompleted", "RunFailed"}
    assert metrics["RunCompleted"]["samples"] == 1
