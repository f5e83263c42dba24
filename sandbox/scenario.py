"""Scenarios: the data a sandbox is seeded with (format documented in sandbox/README.md).

A scenario may be partial: what it leaves out comes from ``BASE`` (credentials, names, empty data),
and ``"extends": "default"`` (or a path) starts from another scenario and deep-merges this one on top
(objects merge, lists replace).
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

SCENARIO_DIR = Path(__file__).parent / "scenarios"
DEFAULT_SCENARIO = SCENARIO_DIR / "default.json"

DEFAULT_SETTINGS = {
    "AWS_REGION": "us-west-2",
    "QBO_SECRET_NAME": "QBO/10000",
    "MSGRAPH_SECRET_NAME": "MsGraph/10000",
    "CLICKUP_SECRET_NAME": "ClickUp/10000",
    "ROBOCORP_API_SECRET_NAME": "RoboCorp/10000/ClientAPIKeys",
    "DYNAMODB_TABLE_ROBOCORP_CLIENTS": "Robocorp_Client_Org_Workspace_IDs",
    "LEDGER_TABLE": "qbo-invoice-processor-ledger",
    "BOOKKEEPER_EMAIL": "bookkeeper@practice.example",
    "SENDER_EMAIL": "billing@practice.example",
    "EXCLUDED_CUSTOMERS": "",
    "MS_GRAPH_HOSTNAME": "practice.sharepoint.com",
    "SHAREPOINT_SITE_PATH": "/sites/Finance",
    "SHAREPOINT_FOLDER": "Invoices",
    "METRICS_NAMESPACE": "QboInvoiceProcessor",
    "INVOICE_DELIVERY": "qbo",
    "PINNED_TODAY": "2026-11-28",  # the scenario's "today": one clock for jobs and tests (DESIGN §7)
}

BASE: dict[str, Any] = {
    "name": "custom",
    "description": "",
    "settings": DEFAULT_SETTINGS,
    "registry": [],
    "ledger": [],
    "secrets": {},
    "qbo": {
        "realm_id": "9130357766900001",
        "environment": "production",
        "client_id": "ABsandboxQboClientId0000000000000000000000000000",
        "client_secret": "sandboxQboClientSecret00000000000000000000",
        "refresh_token": "AB11800000000sandboxInitialRefreshToken0000000000",
        "access_token_ttl_seconds": 3600,
        "company": {"CompanyName": "Sandbox Practice LLC", "Email": {"Address": "billing@practice.example"}},
        "preferences": {"CustomTxnNumbers": False},
        "next_doc_number": 1001,
        "terms": [],
        "items": [],
        "customers": [],
        "invoices": [],
    },
    "graph": {
        "tenant_id": "5f1c3e9a-2b7d-4c8e-9a61-0d4f7b2e8c13",
        "client_id": "0b8e6f2a-9d14-4c37-8e5b-71a2c9d3f460",
        "client_secret": "sandbox~GraphClientSecret.0000000000000000",
        "sites": [],
    },
    "clickup": {
        "team_id": "9012345678",
        "team_name": "Sandbox Practice",
        "api_token": "pk_81500001_SANDBOXTOKEN00000000000000000000",
        "members": [
            {"id": 81500001, "username": "Sandbox Owner", "email": "owner@practice.example", "role": 1}
        ],
        "spaces": [],
        "time_entries": [],
    },
    "robocorp": {"organization_id": "2d8f5a61-7c3e-4b90-a1d4-6e9b0c2f7a35", "workspaces": []},
}


class ScenarioError(ValueError):
    """A scenario that cannot be seeded; the message lists every problem."""


def _merge(base: Any, top: Any) -> Any:
    if isinstance(base, dict) and isinstance(top, dict):
        out = dict(base)
        for key, value in top.items():
            out[key] = _merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(top)


def _decimals(value: Any) -> Any:
    """Floats as Decimal, like a scenario read from a file (DynamoDB and money need them)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decimals(v) for v in value]
    return value


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    except FileNotFoundError:
        raise ScenarioError(f"scenario file not found: {path}") from None
    except ValueError as exc:
        raise ScenarioError(f"scenario file {path} is not valid JSON: {exc}") from None


def _resolve(raw: dict[str, Any], relative_to: Path | None, depth: int = 0) -> dict[str, Any]:
    parent = raw.get("extends")
    if not parent:
        return raw
    if depth > 5:
        raise ScenarioError("scenario 'extends' nests too deep")
    path = DEFAULT_SCENARIO if parent == "default" else Path(parent)
    if not path.is_absolute() and parent != "default":
        path = (relative_to or Path.cwd()) / path
    base = _resolve(_read(path), path.parent, depth + 1)
    return _merge(base, {k: v for k, v in raw.items() if k != "extends"})


def load(source: str | Path | dict[str, Any] | None = None) -> dict[str, Any]:
    """A complete, validated scenario from a file, a dict, or None (the default scenario)."""
    if source is None:
        source = DEFAULT_SCENARIO
    if isinstance(source, dict):
        raw, relative_to = _decimals(copy.deepcopy(source)), None
    else:
        path = Path(source)
        raw, relative_to = _read(path), path.parent
        raw.setdefault("name", path.stem)
    scenario = _merge(copy.deepcopy(BASE), _resolve(raw, relative_to))
    settings = scenario["settings"]
    graph = scenario["graph"]
    graph.setdefault("mailbox", settings["SENDER_EMAIL"])
    if not graph.get("sites"):
        graph["sites"] = [
            {"hostname": settings["MS_GRAPH_HOSTNAME"], "path": settings["SHAREPOINT_SITE_PATH"]}
        ]
    for site in graph["sites"]:  # the archive folder exists unless a scenario lists the folders
        if "folders" not in site and site["hostname"].lower() == settings["MS_GRAPH_HOSTNAME"].lower():
            site["folders"] = [settings["SHAREPOINT_FOLDER"]]
    validate(scenario)
    return scenario


def validate(scenario: dict[str, Any]) -> None:
    problems: list[str] = []
    for key in ("realm_id", "client_id", "client_secret", "refresh_token"):
        if not scenario["qbo"].get(key):
            problems.append(f"qbo.{key} is required")
    ids: dict[str, set[str]] = {}
    for entity in ("terms", "items", "customers"):
        ids[entity] = set()
        for index, row in enumerate(scenario["qbo"].get(entity, [])):
            if not isinstance(row, dict) or not row.get("Id"):
                problems.append(f"qbo.{entity}[{index}] needs an Id")
                continue
            if str(row["Id"]) in ids[entity]:
                problems.append(f"qbo.{entity}[{index}] repeats Id {row['Id']}")
            ids[entity].add(str(row["Id"]))
    for index, row in enumerate(scenario["qbo"].get("customers", [])):
        if isinstance(row, dict) and not row.get("DisplayName"):
            problems.append(f"qbo.customers[{index}] needs a DisplayName")
    for index, row in enumerate(scenario["qbo"].get("items", [])):
        if isinstance(row, dict) and not row.get("Name"):
            problems.append(f"qbo.items[{index}] needs a Name")
    for key in ("tenant_id", "client_id", "client_secret", "mailbox"):
        if not scenario["graph"].get(key):
            problems.append(f"graph.{key} is required")
    for index, site in enumerate(scenario["graph"].get("sites", [])):
        if not (
            isinstance(site, dict) and site.get("hostname") and str(site.get("path", "")).startswith("/")
        ):
            problems.append(f"graph.sites[{index}] needs a hostname and a path starting with /")
    clickup = scenario["clickup"]
    member_ids = {int(m["id"]) for m in clickup.get("members", []) if isinstance(m, dict) and "id" in m}
    if not clickup.get("api_token") or not clickup.get("team_id"):
        problems.append("clickup.api_token and clickup.team_id are required")
    if not member_ids:
        problems.append("clickup.members needs at least the token owner")
    if "token_owner" in clickup and int(clickup["token_owner"]) not in member_ids:
        problems.append("clickup.token_owner must be one of clickup.members")
    for index, entry in enumerate(clickup.get("time_entries", [])):
        if int(entry.get("user", -1)) not in member_ids:
            problems.append(f"clickup.time_entries[{index}] has unknown user {entry.get('user')!r}")
        if not entry.get("start"):
            problems.append(f"clickup.time_entries[{index}] needs a start")
        if not (entry.get("running") or "end" in entry or "duration_minutes" in entry):
            problems.append(f"clickup.time_entries[{index}] needs end, duration_minutes or running")
    keys: set[str] = set()
    for index, workspace in enumerate(scenario["robocorp"].get("workspaces", [])):
        if not workspace.get("id") or not workspace.get("api_key"):
            problems.append(f"robocorp.workspaces[{index}] needs an id and an api_key")
        elif workspace["api_key"] in keys:
            problems.append(f"robocorp.workspaces[{index}] reuses another workspace's api_key")
        keys.add(workspace.get("api_key", ""))
    for index, item in enumerate(scenario.get("registry", [])):
        if not isinstance(item, dict) or not str(item.get("client_id", "")).strip():
            problems.append(f"registry[{index}] needs a client_id (the table's key)")
    for index, item in enumerate(scenario.get("ledger", [])):
        if not isinstance(item, dict) or not item.get("pk"):
            problems.append(f"ledger[{index}] needs a pk (the table's key)")
    if problems:
        raise ScenarioError("the scenario has problems:\n  - " + "\n  - ".join(problems))


def secrets(scenario: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The four secrets, derived from the stand-ins' credentials; ``secrets`` in the scenario wins."""
    settings, qbo, graph, clickup = (
        scenario["settings"],
        scenario["qbo"],
        scenario["graph"],
        scenario["clickup"],
    )
    derived = {
        settings["QBO_SECRET_NAME"]: {
            "client_id": qbo["client_id"],
            "client_secret": qbo["client_secret"],
            "realm_id": str(qbo["realm_id"]),
            "refresh_token": qbo["refresh_token"],
            "environment": qbo.get("environment", "production"),
        },
        settings["MSGRAPH_SECRET_NAME"]: {
            "tenant_id": graph["tenant_id"],
            "client_id": graph["client_id"],
            "client_secret": graph["client_secret"],
        },
        settings["CLICKUP_SECRET_NAME"]: {
            "api_token": clickup["api_token"],
            "team_id": str(clickup["team_id"]),
        },
        settings["ROBOCORP_API_SECRET_NAME"]: {
            ws["id"]: ws["api_key"] for ws in scenario["robocorp"].get("workspaces", [])
        },
    }
    for name, value in (scenario.get("secrets") or {}).items():
        derived[name] = {**derived.get(name, {}), **value} if isinstance(value, dict) else value
    return derived
