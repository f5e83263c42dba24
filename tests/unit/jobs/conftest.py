"""Fixtures for the jobs' fast tests: a real Ledger on moto's in-process DynamoDB and fake services."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from integrations.aws import Ledger
from integrations.models import ClientRecord
from tests.settings import make_settings
from tests.unit.jobs.fakes import Clock, FakeQbo, FakeRegistry, FakeRobocorp, FakeServices, robot_run

CUSTOMERS = [
    {"Id": "58", "DisplayName": "10002 - Acme CPA", "PrimaryEmailAddr": {"Address": "ap@acme.example"}},
    {"Id": "59", "DisplayName": "10003 - Birch & Co.", "PrimaryEmailAddr": {"Address": "ap@birch.example"}},
]
ITEMS = [
    {"Id": "7", "Name": "Robot Runtime", "UnitPrice": 90, "Active": True},
    {"Id": "8", "Name": "Professional Services", "UnitPrice": 150, "Active": True},
]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> Iterator[Ledger]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        dynamodb = boto3.session.Session(region_name="us-west-2").resource("dynamodb")
        table = dynamodb.create_table(
            TableName="ledger",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield Ledger(table, clock=clock)


@pytest.fixture
def services(ledger: Ledger) -> FakeServices:
    """Two clients with October robot time: 10002 (2 h) and 10003 (1 h), both priced at 90/h."""
    return FakeServices(
        settings=make_settings(),
        ledger=ledger,
        qbo=FakeQbo(customers_=[dict(c) for c in CUSTOMERS], items_=[dict(i) for i in ITEMS]),
        registry=FakeRegistry(
            [
                ClientRecord("10002", robocorp_workspace_ids=("ws-a",)),
                ClientRecord("10003", robocorp_workspace_ids=("ws-b",)),
            ]
        ),
        robocorp=FakeRobocorp(
            {"ws-a": [robot_run("r1", "ws-a", 7200)], "ws-b": [robot_run("r2", "ws-b", 3600)]}
        ),
    )
