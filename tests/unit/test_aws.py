"""Secrets, client registry, ledger and run metric against moto's in-process AWS (``mock_aws``)."""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend

from integrations import errors
from integrations.aws import (
    BOTO_CONFIG,
    TRACE_CHUNK_BYTES,
    AwsClients,
    ClaimNotHeld,
    ClientRegistry,
    Ledger,
    SecretStore,
    UsageTrace,
    aws_clients,
    publish_run_metric,
)
from integrations.config import load_settings
from integrations.logging import mask
from tests.settings import VALID_ENV

REGION = "us-west-2"
ENV = {**VALID_ENV, "AWS_REGION": REGION}
T0 = datetime(2026, 11, 4, 17, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand, so lease expiry needs no sleeping."""

    def __init__(self, now: datetime = T0):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class CountingTable:
    """Wraps a Table to count Scan calls, so a test can see that pagination really happened."""

    def __init__(self, table: Any):
        self._table = table
        self.scans = 0

    def scan(self, **kwargs: Any) -> dict:
        self.scans += 1
        return self._table.scan(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and no endpoint override, so nothing can reach a real AWS account."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture(scope="module")
def boto_session() -> boto3.session.Session:
    """One session for the module: loading the service models is the slow part of making clients."""
    return boto3.session.Session(region_name=REGION)


@pytest.fixture
def aws(aws_env: None, boto_session: boto3.session.Session) -> Iterator[AwsClients]:
    with mock_aws():
        yield AwsClients(
            secrets=boto_session.client("secretsmanager", config=BOTO_CONFIG),
            dynamodb=boto_session.resource("dynamodb", config=BOTO_CONFIG),
            cloudwatch=boto_session.client("cloudwatch", config=BOTO_CONFIG),
        )


def make_table(aws: AwsClients, name: str, key: str) -> Any:
    return aws.dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture
def ledger_table(aws: AwsClients) -> Any:
    return make_table(aws, ENV["LEDGER_TABLE"], "pk")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(ledger_table: Any, clock: Clock) -> Ledger:
    return Ledger(ledger_table, clock=clock)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unreachable_client(session: boto3.session.Session, service: str) -> Any:
    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=1, read_timeout=1)
    return session.client(service, endpoint_url=f"http://127.0.0.1:{closed_port()}", config=config)


# --------------------------------------------------------------------------- clients


def test_clients_use_the_configured_region_and_a_bounded_retry_budget(aws_env: None) -> None:
    clients = aws_clients(load_settings({**ENV, "AWS_REGION": "eu-central-1"}))
    for client in (clients.secrets, clients.dynamodb.meta.client, clients.cloudwatch):
        assert client.meta.region_name == "eu-central-1"
        assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 6}  # 1 + 5 retries
        assert client.meta.config.connect_timeout == 10


def test_clients_follow_aws_endpoint_url_for_the_sandbox(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5999")
    clients = aws_clients(load_settings(ENV))
    assert clients.secrets.meta.endpoint_url == "http://127.0.0.1:5999"
    assert clients.dynamodb.meta.client.meta.endpoint_url == "http://127.0.0.1:5999"


# --------------------------------------------------------------------------- secrets


QBO_SECRET = {
    "client_id": "ABcd1234client",
    "client_secret": 'sec"ret\\with-quote',
    "realm_id": "9130350000000001",
    "refresh_token": "AB11-refresh-token-1",
    "environment": "sandbox",
}


def test_secret_round_trip_moves_awscurrent_to_the_new_version(aws: AwsClients) -> None:
    aws.secrets.create_secret(Name="QBO/10000", SecretString=json.dumps(QBO_SECRET))
    store = SecretStore(aws.secrets)
    assert store.read_json("QBO/10000") == QBO_SECRET
    first = aws.secrets.describe_secret(SecretId="QBO/10000")["VersionIdsToStages"]
    (old_version,) = [v for v, stages in first.items() if "AWSCURRENT" in stages]

    rotated = {**QBO_SECRET, "refresh_token": "AB11-refresh-token-2"}
    new_version = store.write_json("QBO/10000", rotated)

    assert new_version != old_version
    stages = aws.secrets.describe_secret(SecretId="QBO/10000")["VersionIdsToStages"]
    assert "AWSCURRENT" in stages[new_version]
    assert "AWSPREVIOUS" in stages[old_version]
    assert store.read_json("QBO/10000")["refresh_token"] == "AB11-refresh-token-2"
    previous = aws.secrets.get_secret_value(SecretId="QBO/10000", VersionStage="AWSPREVIOUS")
    assert json.loads(previous["SecretString"])["refresh_token"] == "AB11-refresh-token-1"


def test_every_value_read_or_written_is_masked_in_logs(aws: AwsClients) -> None:
    aws.secrets.create_secret(
        Name="RoboCorp/10000/ClientAPIKeys",
        SecretString=json.dumps({"ws-1": "key-one-abc", "ws-2": "key-two-xyz"}),
    )
    store = SecretStore(aws.secrets)
    assert mask("key-one-abc") == "key-one-abc"  # nothing registered before the read

    store.read_json("RoboCorp/10000/ClientAPIKeys")
    assert mask("key-one-abc") == "***"
    assert mask("key-two-xyz") == "***"
    assert mask("workspace ws-1") == "workspace ws-1"  # keys are not secret

    aws.secrets.create_secret(Name="QBO/10000", SecretString="{}")
    store.write_json("QBO/10000", {"refresh_token": "written-token-value"})
    assert mask("written-token-value") == "***"


def test_qbo_secret_credentials_are_registered_but_identifiers_stay_readable(aws: AwsClients) -> None:
    aws.secrets.create_secret(Name="QBO/10000", SecretString=json.dumps(QBO_SECRET))
    SecretStore(aws.secrets).read_json("QBO/10000")
    for key, value in QBO_SECRET.items():
        if key in ("environment", "realm_id"):
            assert mask(f"env {value}") == f"env {value}"
        else:
            assert mask(value) == "***"
    assert mask(json.dumps(QBO_SECRET["client_secret"])[1:-1]) == "***"  # its JSON-escaped form too


def test_missing_secret_is_named_with_the_aws_error_code(aws: AwsClients) -> None:
    with pytest.raises(errors.NotFound) as caught:
        SecretStore(aws.secrets).read_json("QBO/10000")
    message = str(caught.value)
    assert caught.value.service == "secretsmanager"
    assert caught.value.operation == "GetSecretValue QBO/10000"
    assert "ResourceNotFoundException" in message
    assert "'QBO/10000' does not exist" in message


def test_secret_that_is_not_json_is_named_but_its_value_never_shown(aws: AwsClients) -> None:
    value = "refresh=AB11-plain-text-token"
    aws.secrets.create_secret(Name="ClickUp/10000", SecretString=value)
    with pytest.raises(errors.ServiceError) as caught:
        SecretStore(aws.secrets).read_json("ClickUp/10000")
    message = str(caught.value)
    assert "ClickUp/10000" in message
    assert "not valid JSON" in message
    assert value not in message and "AB11-plain-text-token" not in message
    assert mask(value) == "***"


def test_secret_that_is_json_but_not_an_object_is_refused(aws: AwsClients) -> None:
    aws.secrets.create_secret(Name="ClickUp/10000", SecretString=json.dumps(["pk_123456_token"]))
    with pytest.raises(errors.ServiceError) as caught:
        SecretStore(aws.secrets).read_json("ClickUp/10000")
    assert "must be a JSON object, got a JSON list" in str(caught.value)
    assert "pk_123456_token" not in str(caught.value)


def test_access_denied_says_what_the_task_role_needs(
    aws_env: None, boto_session: boto3.session.Session
) -> None:
    client = boto_session.client("secretsmanager")
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_secret_value", service_error_code="AccessDeniedException", http_status_code=400
        )
        with pytest.raises(errors.PermissionDenied) as caught:
            SecretStore(client).read_json("MsGraph/10000")
    assert "AccessDeniedException" in str(caught.value)
    assert "secretsmanager:GetSecretValue" in str(caught.value)
    assert caught.value.code == "AccessDeniedException"


def test_unreachable_endpoint_is_a_transport_error_naming_the_secret(
    aws_env: None, boto_session: boto3.session.Session
) -> None:
    with pytest.raises(errors.TransportError) as caught:
        SecretStore(unreachable_client(boto_session, "secretsmanager")).read_json("QBO/10000")
    assert caught.value.service == "secretsmanager"
    assert caught.value.operation == "GetSecretValue QBO/10000"
    assert "EndpointConnectionError" in str(caught.value)


def test_failed_secret_write_never_shows_the_value(aws: AwsClients) -> None:
    with pytest.raises(errors.NotFound) as caught:
        SecretStore(aws.secrets).write_json("QBO/10000", {"refresh_token": "AB11-never-printed"})
    assert "PutSecretValue QBO/10000" in str(caught.value)
    assert "AB11-never-printed" not in str(caught.value)


# --------------------------------------------------------------------------- client registry


def registry_item(client_id: str, **extra: Any) -> dict:
    return {
        "client_id": client_id,
        "customer_name": f"{client_id.strip()} - Client",
        "robocorp_organization_id": "org-1",
        "robocorp_workspace_ids": [f"ws-{client_id.strip()}"],
        **extra,
    }


def test_registry_pages_through_every_item_and_keeps_decimal_rates(aws: AwsClients) -> None:
    table = make_table(aws, ENV["DYNAMODB_TABLE_ROBOCORP_CLIENTS"], "client_id")
    for number in range(10001, 10012):
        table.put_item(Item=registry_item(str(number), robot_hour_rate=Decimal("95.50")))
    counting = CountingTable(table)

    valid, invalid = ClientRegistry(counting, page_size=3).load()

    assert counting.scans >= 4  # 11 items, 3 per page
    assert [record.client_id for record in valid] == [str(n) for n in range(10001, 10012)]
    assert invalid == []
    assert valid[0].robot_hour_rate == Decimal("95.50")
    assert valid[0].robocorp_workspace_ids == ("ws-10001",)


def test_registry_reports_invalid_items_by_id_and_keeps_the_valid_ones(aws: AwsClients) -> None:
    table = make_table(aws, ENV["DYNAMODB_TABLE_ROBOCORP_CLIENTS"], "client_id")
    table.put_item(Item=registry_item("10002", monthly_fee=Decimal("250")))
    table.put_item(Item=registry_item("10003", service_hour_rate="cheap"))
    table.put_item(Item={"client_id": "10004", "robocorp_workspace_ids": "ws-not-a-list"})
    table.put_item(Item={"client_id": "acme", "customer_name": "Acme"})
    table.put_item(Item=registry_item("10005", active=False))

    valid, invalid = ClientRegistry(table, page_size=2).load()

    assert [(r.client_id, r.active) for r in valid] == [("10002", True), ("10005", False)]
    assert valid[0].monthly_fee == Decimal("250")
    reasons = {record.key: record.reason for record in invalid}
    assert set(reasons) == {"10003", "10004", "acme"}
    assert "service_hour_rate must be a number" in reasons["10003"]
    assert "robocorp_workspace_ids must be a list" in reasons["10004"]
    assert "client_id must be a client number" in reasons["acme"]


def test_registry_reports_duplicate_client_ids_and_bills_neither(aws: AwsClients) -> None:
    table = make_table(aws, ENV["DYNAMODB_TABLE_ROBOCORP_CLIENTS"], "client_id")
    table.put_item(Item=registry_item("10002", robot_hour_rate=Decimal("90")))
    table.put_item(Item=registry_item("10002 ", robot_hour_rate=Decimal("120")))  # same client, typo'd key
    table.put_item(Item=registry_item("10003"))

    valid, invalid = ClientRegistry(table).load()

    assert [record.client_id for record in valid] == ["10003"]
    assert len(invalid) == 1
    assert invalid[0].key == "10002"
    assert "duplicate client_id" in invalid[0].reason


def test_registry_pagination_beyond_one_megabyte(aws: AwsClients) -> None:
    table = make_table(aws, ENV["DYNAMODB_TABLE_ROBOCORP_CLIENTS"], "client_id")
    padding = "x" * 300_000  # four items > 1 MB: DynamoDB (and moto) must split the scan
    with table.batch_writer() as batch:
        for number in range(10001, 10006):
            batch.put_item(Item=registry_item(str(number), notes=padding))
    counting = CountingTable(table)

    valid, _ = ClientRegistry(counting).load()

    assert counting.scans >= 2
    assert len(valid) == 5


def test_registry_on_a_missing_table_is_a_dynamodb_error(aws: AwsClients) -> None:
    with pytest.raises(errors.ServiceError) as caught:
        ClientRegistry(aws.dynamodb.Table("no-such-table")).load()
    assert caught.value.service == "dynamodb"
    assert "Scan no-such-table" in str(caught.value)
    assert "ResourceNotFoundException" in str(caught.value)


# --------------------------------------------------------------------------- ledger: claims


def test_new_key_is_claimed_and_a_second_run_sees_the_holder(ledger: Ledger, clock: Clock) -> None:
    acquired, entry = ledger.claim("invoice#10002#2026-10", "run-a", "req-a", 900, {"client": "10002"})
    assert acquired
    assert entry is not None
    assert (entry.status, entry.run_id, entry.request_id) == ("claimed", "run-a", "req-a")
    assert entry.claimed_at == clock.now
    assert entry.lease_expires_at == clock.now + timedelta(seconds=900)
    assert entry.attributes == {"client": "10002"}

    acquired, holder = ledger.claim("invoice#10002#2026-10", "run-b", "req-b", 900)
    assert not acquired
    assert holder is not None and (holder.run_id, holder.request_id) == ("run-a", "req-a")
    assert ledger.get("invoice#10002#2026-10") == entry


def test_claim_repeated_by_the_same_run_is_still_its_own(ledger: Ledger) -> None:
    """What happens when botocore retries a conditional PutItem whose reply was lost."""
    ledger.claim("invoice#10002#2026-10", "run-a", "req-a", 900)
    acquired, entry = ledger.claim("invoice#10002#2026-10", "run-a", "req-a", 900)
    assert acquired
    assert entry is not None and (entry.run_id, entry.request_id, entry.attempts) == ("run-a", "req-a", 1)


def test_claim_row_carries_a_ttl_for_dynamodb_expiry(ledger: Ledger, ledger_table: Any, clock: Clock) -> None:
    ledger.claim("invoice#10002#2026-10", "run-a", "req-a", 900, retain_days=30)
    item = ledger_table.get_item(Key={"pk": "invoice#10002#2026-10"})["Item"]
    assert item["expires_at"] == int((clock.now + timedelta(days=30)).timestamp())


def test_crashed_runs_expired_claim_is_taken_over_with_its_request_id(ledger_table: Any) -> None:
    crashed = Ledger(ledger_table, clock=Clock(T0))
    crashed.claim("invoice#10002#2026-10", "run-crashed", "req-original", 600, {"step": "creating"})

    later = Clock(T0 + timedelta(seconds=601))
    acquired, entry = Ledger(ledger_table, clock=later).claim(
        "invoice#10002#2026-10", "run-retry", "req-new", 600, {"retry": True}
    )

    assert acquired
    assert entry is not None
    assert entry.run_id == "run-retry"
    assert entry.request_id == "req-original"  # the QBO requestid of the crashed attempt, so QBO de-dupes
    assert entry.status == "claimed"
    assert (entry.previous_status, entry.previous_run_id, entry.attempts) == ("claimed", "run-crashed", 2)
    assert entry.lease_expires_at == later.now + timedelta(seconds=600)
    assert entry.attributes == {"step": "creating", "retry": True}


def test_live_claim_cannot_be_taken_over(ledger_table: Any) -> None:
    Ledger(ledger_table, clock=Clock(T0)).claim("invoice#10002#2026-10", "run-a", "req-a", 600)
    almost = Ledger(ledger_table, clock=Clock(T0 + timedelta(seconds=599)))
    acquired, entry = almost.claim("invoice#10002#2026-10", "run-b", "req-b", 600)
    assert not acquired
    assert entry is not None and entry.run_id == "run-a"
    assert entry.attempts == 1


@pytest.mark.parametrize("status", ["created", "sent", "needs_review", "skipped"])
def test_finished_entry_is_never_reclaimed_even_long_after(ledger_table: Any, status: str) -> None:
    first = Ledger(ledger_table, clock=Clock(T0))
    first.claim("invoice#10002#2026-10", "run-a", "req-a", 60)
    first.record("invoice#10002#2026-10", "run-a", status)
    much_later = Ledger(ledger_table, clock=Clock(T0 + timedelta(days=30)))
    acquired, entry = much_later.claim("invoice#10002#2026-10", "run-b", "req-b", 60)
    assert not acquired
    assert entry is not None and entry.status == status


def test_failed_entry_can_be_reclaimed_at_once(ledger: Ledger) -> None:
    ledger.claim("invoice#10002#2026-10", "run-a", "req-a", 600)
    ledger.record("invoice#10002#2026-10", "run-a", "failed", {"error": "ValidationFault 6070"})

    acquired, entry = ledger.claim("invoice#10002#2026-10", "run-b", "req-b", 600)

    assert acquired
    assert entry is not None
    assert (entry.status, entry.run_id, entry.request_id) == ("claimed", "run-b", "req-a")
    assert entry.previous_status == "failed"
    assert entry.attributes == {"error": "ValidationFault 6070"}


def test_record_merges_attributes_for_the_owner(ledger: Ledger) -> None:
    ledger.claim(
        "invoice#10002#2026-10", "run-a", "req-a", 600, {"client": "10002", "total": Decimal("10.00")}
    )
    ledger.record("invoice#10002#2026-10", "run-a", "created", {"invoice_id": "145", "total": 1234.5})
    entry = ledger.get("invoice#10002#2026-10")
    assert entry is not None
    assert entry.status == "created"
    assert entry.attributes == {"client": "10002", "invoice_id": "145", "total": Decimal("1234.5")}


def test_record_by_a_run_that_lost_the_claim_is_refused(ledger_table: Any) -> None:
    Ledger(ledger_table, clock=Clock(T0)).claim("invoice#10002#2026-10", "run-slow", "req-a", 60)
    Ledger(ledger_table, clock=Clock(T0 + timedelta(seconds=61))).claim(
        "invoice#10002#2026-10", "run-new", "req-b", 60
    )
    with pytest.raises(ClaimNotHeld) as caught:
        Ledger(ledger_table).record("invoice#10002#2026-10", "run-slow", "created")
    assert "run run-slow cannot record 'created'" in str(caught.value)
    assert "held by run run-new" in str(caught.value)
    assert isinstance(caught.value, errors.ServiceError)
    entry = Ledger(ledger_table).get("invoice#10002#2026-10")
    assert entry is not None and (entry.status, entry.run_id) == ("claimed", "run-new")


def test_record_without_a_claim_is_refused(ledger: Ledger) -> None:
    with pytest.raises(ClaimNotHeld, match="no ledger entry"):
        ledger.record("invoice#10009#2026-10", "run-a", "sent")
    assert ledger.get("invoice#10009#2026-10") is None


def test_record_rejects_unknown_status(ledger: Ledger) -> None:
    ledger.claim("k", "run-a", "req-a", 60)
    with pytest.raises(ValueError, match="unknown ledger status"):
        ledger.record("k", "run-a", "cancelled")


def test_a_renewed_lease_keeps_a_claim_from_being_taken_over(ledger: Ledger, clock: Clock) -> None:
    ledger.claim("k", "run-a", "req-a", 60)
    clock.advance(50)
    assert ledger.renew("k", "run-a", 60)
    clock.advance(50)  # 100 s after the claim, 50 s after the renewal
    assert ledger.claim("k", "run-b", "req-b", 60)[0] is False
    clock.advance(11)
    acquired, entry = ledger.claim("k", "run-b", "req-b", 60)
    assert acquired and entry.request_id == "req-a"
    assert not ledger.renew("k", "run-a", 60)  # no longer ours


def test_annotate_merges_into_a_finished_row_only(ledger: Ledger) -> None:
    ledger.claim("k", "run-a", "req-a", 60, {"invoice_id": "9"})
    assert not ledger.annotate("k", "created", {"archived": True})  # still claimed
    ledger.record("k", "run-a", "created", {"archived": False})
    assert ledger.annotate("k", "created", {"archived": True})
    assert ledger.get("k").attributes == {"invoice_id": "9", "archived": True}


@pytest.fixture
def atomic_moto_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give moto the per-item atomicity real DynamoDB has.

    moto's in-process backend checks a ConditionExpression and then writes in separate Python
    steps, so two threads can both pass the check (seen in about 1 of 15 rounds). DynamoDB applies
    a conditional write atomically. Each single call is made atomic here; nothing spans two calls,
    so a read-then-write claim would still race and fail this test.
    """
    lock = threading.Lock()
    for name in ("put_item", "update_item", "delete_item", "get_item"):
        original = getattr(DynamoDBBackend, name)

        def atomic(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, atomic)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so any window between two calls is hit
    yield
    sys.setswitchinterval(interval)


def race(ledgers: list[Ledger], key: str, lease: int = 600) -> list[tuple[bool, Any]]:
    results: list[tuple[bool, Any]] = [(False, None)] * len(ledgers)
    barrier = threading.Barrier(len(ledgers))

    def claim(index: int) -> None:
        barrier.wait()
        results[index] = ledgers[index].claim(key, f"run-{index}", f"req-{index}", lease)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(ledgers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return results


def thread_ledgers(session: boto3.session.Session, count: int, clock: Clock) -> list[Ledger]:
    """One Table resource per thread (boto3 resources are not shared across threads)."""
    return [
        Ledger(session.resource("dynamodb").Table(ENV["LEDGER_TABLE"]), clock=clock) for _ in range(count)
    ]


def test_concurrent_claimers_exactly_one_acquires(
    boto_session: boto3.session.Session, ledger_table: Any, atomic_moto_writes: None
) -> None:
    ledgers = thread_ledgers(boto_session, 6, Clock())
    for round_ in range(5):
        results = race(ledgers, f"invoice#1000{round_}#2026-10")
        winners = [entry.run_id for acquired, entry in results if acquired]
        assert len(winners) == 1
        assert {entry.run_id for _, entry in results} == set(winners)  # losers see the winner


def test_concurrent_takeover_of_a_crashed_claim_has_one_winner(
    boto_session: boto3.session.Session, ledger_table: Any, atomic_moto_writes: None
) -> None:
    Ledger(ledger_table, clock=Clock(T0)).claim("send#145#3", "run-crashed", "req-original", 60)
    results = race(thread_ledgers(boto_session, 6, Clock(T0 + timedelta(minutes=5))), "send#145#3")
    winners = [entry for acquired, entry in results if acquired]
    assert len(winners) == 1
    assert winners[0].request_id == "req-original"
    assert winners[0].attempts == 2


def test_scan_prefix_pages_and_returns_only_matching_rows(ledger_table: Any, clock: Clock) -> None:
    counting = CountingTable(ledger_table)
    ledger = Ledger(counting, clock=clock, page_size=2)
    for number in range(5):
        ledger.claim(f"invoice#1000{number}#2026-10", "run-a", f"req-{number}", 60)
    ledger.claim("send#145#0", "run-a", "req-s", 60)
    ledger.acquire_lock("qbo-token#123", "run-a", 30)

    entries = ledger.scan_prefix("invoice#")

    assert [entry.key for entry in entries] == [f"invoice#1000{n}#2026-10" for n in range(5)]
    assert counting.scans >= 4  # 7 rows, 2 per page


def test_ledger_on_a_missing_table_is_a_dynamodb_error(aws: AwsClients) -> None:
    with pytest.raises(errors.ServiceError) as caught:
        Ledger(aws.dynamodb.Table("missing")).claim("k", "run", "req", 60)
    assert caught.value.service == "dynamodb"
    assert "ResourceNotFoundException" in str(caught.value)


def test_throttled_ledger_write_is_rate_limited_error(
    aws_env: None, boto_session: boto3.session.Session
) -> None:
    resource = boto_session.resource("dynamodb")
    table = resource.Table("ledger")
    with Stubber(resource.meta.client) as stub:
        stub.add_client_error(
            "put_item", service_error_code="ProvisionedThroughputExceededException", http_status_code=400
        )
        with pytest.raises(errors.RateLimited) as caught:
            Ledger(table).claim("k", "run", "req", 60)
    assert "PutItem k" in str(caught.value)
    assert "ProvisionedThroughputExceededException" in str(caught.value)


# --------------------------------------------------------------------------- ledger: locks


def test_lock_is_exclusive_until_released(ledger: Ledger) -> None:
    assert ledger.acquire_lock("qbo-token#123", "run-a", 30)
    assert not ledger.acquire_lock("qbo-token#123", "run-b", 30)
    assert ledger.acquire_lock("qbo-token#123", "run-a", 30)  # the owner may extend its lease
    ledger.release_lock("qbo-token#123", "run-a")
    assert ledger.get("lock#qbo-token#123") is None
    assert ledger.acquire_lock("qbo-token#123", "run-b", 30)


def test_expired_lock_can_be_taken_and_the_old_owner_cannot_release_it(ledger: Ledger, clock: Clock) -> None:
    assert ledger.acquire_lock("qbo-token#123", "run-a", 30)
    clock.advance(29)
    assert not ledger.acquire_lock("qbo-token#123", "run-b", 30)
    clock.advance(2)
    assert ledger.acquire_lock("qbo-token#123", "run-b", 30)

    ledger.release_lock("qbo-token#123", "run-a")  # too late: not ours any more, and no error

    entry = ledger.get("lock#qbo-token#123")
    assert entry is not None and entry.run_id == "run-b"
    assert entry.lease_expires_at == clock.now + timedelta(seconds=30)


# --------------------------------------------------------------------------- metric


def test_run_metric_reports_completed_and_failed(aws: AwsClients) -> None:
    publish_run_metric(aws.cloudwatch, "Test/Invoices", "create-invoices", failed=True)
    publish_run_metric(aws.cloudwatch, "Test/Invoices", "send-invoices", failed=False)

    def total(metric: str, job: str) -> float:
        stats = aws.cloudwatch.get_metric_statistics(
            Namespace="Test/Invoices",
            MetricName=metric,
            Dimensions=[{"Name": "Job", "Value": job}],
            StartTime=datetime.now(UTC) - timedelta(hours=1),
            EndTime=datetime.now(UTC) + timedelta(hours=1),
            Period=3600,
            Statistics=["Sum"],
        )
        return sum(point["Sum"] for point in stats["Datapoints"])

    assert total("RunCompleted", "create-invoices") == 1
    assert total("RunFailed", "create-invoices") == 1
    assert total("RunCompleted", "send-invoices") == 1
    assert total("RunFailed", "send-invoices") == 0


def test_unreachable_cloudwatch_is_a_cloudwatch_error(
    aws_env: None, boto_session: boto3.session.Session
) -> None:
    with pytest.raises(errors.TransportError) as caught:
        publish_run_metric(
            unreachable_client(boto_session, "cloudwatch"),
            "QboInvoiceProcessor",
            "create-invoices",
            failed=False,
        )
    assert caught.value.service == "cloudwatch"
    assert "PutMetricData QboInvoiceProcessor" in str(caught.value)


# --------------------------------------------------------------------------- usage traces


def test_a_large_month_trace_is_chunked_under_the_item_limit_and_reads_back_whole(
    ledger: Ledger, ledger_table: Any
) -> None:
    # 60,000 rows of random ids barely compress: several chunks, each under DynamoDB's 400 KB.
    import secrets

    rows = "".join(f"{secrets.token_hex(18)},{i},robocorp\n" for i in range(60_000))
    ledger.put_trace(UsageTrace("10002", "2026-10", "pending", rows, total="12.34"))

    chunks = [i for i in ledger_table.scan()["Items"] if i["pk"].startswith("trace#10002#2026-10#")]
    assert len(chunks) >= 3
    assert all(len(bytes(i["data"].value)) <= TRACE_CHUNK_BYTES for i in chunks)
    got = ledger.trace("10002", "2026-10")
    assert got is not None and got.usage_csv == rows and (got.state, got.total) == ("pending", "12.34")

    ledger.mark_trace("10002", "2026-10", "invoiced", "130", "10002-202610")
    marked = ledger.trace("10002", "2026-10", with_csv=False)
    assert marked is not None and (marked.state, marked.invoice_id, marked.usage_csv) == (
        "invoiced",
        "130",
        "",
    )


def test_a_nothing_to_bill_trace_never_replaces_an_invoice_trace(ledger: Ledger) -> None:
    ledger.put_trace(UsageTrace("10002", "2026-10", "invoiced", "a,b\n"))
    assert ledger.put_trace(UsageTrace("10002", "2026-10", "nothing"), only_if_new=True) is False
    kept = ledger.trace("10002", "2026-10")
    assert kept is not None and (kept.state, kept.usage_csv) == ("invoiced", "a,b\n")
    assert ledger.trace("10003", "2026-10") is None


def test_a_trace_with_a_lost_chunk_is_reported_not_read_as_empty(ledger: Ledger, ledger_table: Any) -> None:
    ledger.put_trace(UsageTrace("10002", "2026-10", "invoiced", "x" * 10))
    chunk = next(i for i in ledger_table.scan()["Items"] if i["pk"].startswith("trace#10002#2026-10#"))
    ledger_table.delete_item(Key={"pk": chunk["pk"]})
    with pytest.raises(errors.GarbledResponse, match="trace#10002#2026-10"):
        ledger.trace("10002", "2026-10")


def test_trace_heads_reads_a_year_of_months_in_one_batch_and_skips_missing_ones(ledger: Ledger) -> None:
    ledger.put_trace(UsageTrace("10002", "2026-10", "invoiced", "x", total="900.00"))
    ledger.put_trace(UsageTrace("10002", "2026-08", "nothing"))
    ledger.put_trace(UsageTrace("10003", "2026-09", "invoiced", "y"))

    heads = ledger.trace_heads("10002", [f"2026-{m:02d}" for m in range(1, 13)])

    assert {p: (h.state, h.total, h.usage_csv) for p, h in heads.items()} == {
        "2026-10": ("invoiced", "900.00", ""),
        "2026-08": ("nothing", "", ""),
    }


def test_many_rows_and_one_periods_traces_are_read_in_batches_of_100(ledger: Ledger) -> None:
    """A repeat run checks every invoiced client's row and trace: 250 clients, 3 requests each way."""
    for n in range(0, 250, 2):  # every other client has a row and a trace
        ledger.claim(f"invoice#{10000 + n}#2026-10", "run-1", f"rid-{n}", 60)
        ledger.put_trace(UsageTrace(str(10000 + n), "2026-10", "pending", "x"))
    ledger.put_trace(UsageTrace("10000", "2026-09", "invoiced", "y"))  # another period: not asked for
    keys = [f"invoice#{10000 + n}#2026-10" for n in range(250)]

    rows = ledger.get_many(keys + keys[:5])  # a key asked twice is read once
    traces = ledger.period_traces([str(10000 + n) for n in range(250)], "2026-10")

    assert sorted(rows) == sorted(keys[::2]) and {r.status for r in rows.values()} == {"claimed"}
    assert sorted(traces) == [str(10000 + n) for n in range(0, 250, 2)]
    assert {(t.period, t.state, t.usage_csv) for t in traces.values()} == {("2026-10", "pending", "")}
    assert ledger.get_many([]) == {}
