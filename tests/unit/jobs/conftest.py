"""Fixtures for the jobs' fast tests: a real Ledger on moto's in-process DynamoDB and fake services."""

from __future__ import annotations

import pytest

from integrations.aws import Ledger
from integrations.models import ClientRecord
from tests.settings import make_settings
from tests.unit.jobs.fakes import FakeQbo, FakeRegistry, FakeRobocorp, FakeServices, robot_run

CUSTOMERS = [
    {"Id": "58", "DisplayName": "10002 - Acme CPA", "PrimaryEmailAddr": {"Address": "ap@acme.example"}},
    {"Id": "59", "DisplayName": "10003 - Birch & Co.", "PrimaryEmailAddr": {"Address": "ap@birch.example"}},
]
ITEMS = [
    {"Id": "7", "Name": "Robot Runtime", "UnitPrice": 90, "Active": True},
    {"Id": "8", "Name": "Professional Services", "UnitPrice": 150, "Active": True},
]


@pytest.fixture
def services(ledger: Ledger) -> FakeServices:
    """Two clients with October robot time: 10002 (2 h) and 10003 (1 h), both priced at 90/h."""
    return FakeServices(
        settings=make_settings(claim_ttl_seconds=0.6),  # a live claim is waited for 0.9 s at most
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
