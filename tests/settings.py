"""One valid configuration for tests: the environment of DESIGN §3 and Settings built from it."""

from __future__ import annotations

import dataclasses
from typing import Any

from integrations.config import Settings, load_settings

VALID_ENV = {
    "AWS_REGION": "us-west-2",
    "QBO_SECRET_NAME": "QBO/10000",
    "MSGRAPH_SECRET_NAME": "MsGraph/10000",
    "CLICKUP_SECRET_NAME": "ClickUp/10000",
    "ROBOCORP_API_SECRET_NAME": "RoboCorp/10000/ClientAPIKeys",
    "DYNAMODB_TABLE_ROBOCORP_CLIENTS": "Robocorp_Client_Org_Workspace_IDs",
    "LEDGER_TABLE": "qbo-invoice-processor-ledger",
    "BOOKKEEPER_EMAIL": "books@example.com",
    "SENDER_EMAIL": "billing@example.com",
    "MS_GRAPH_HOSTNAME": "contoso.sharepoint.com",
    "SHAREPOINT_SITE_PATH": "/sites/Finance",
}


def make_settings(**overrides: Any) -> Settings:
    """Settings from VALID_ENV with some fields replaced (base URLs, timeouts, ...)."""
    return dataclasses.replace(load_settings(VALID_ENV), **overrides)
