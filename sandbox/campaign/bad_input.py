"""The bad-input kinds: one malformed datum each, planted in the default scenario.

Each kind touches one client (or none: an entry nobody can be billed for). The expectation:
* ``failed``: the client fails with a reason naming the problem (a named error of its client);
* ``named``: as ``failed``, or the bad item is named in the summary/mail (e.g. listed unattributable);
* ``counted``: as ``named``, or the item is billed (the client's total moved): never dropped silently;
* ``exact``: harmless oddity: the client is billed exactly as in the clean run.
Every other client must be billed exactly as in the clean run.

ClickUp entries and Robocorp runs are planted valid through the scenario, then their served form
is overwritten after the sandbox started (the stand-ins build durations themselves).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

BAD_ENTRY_ID = "4120000000000009001"
PLANTED = "planted by make faults"  # the planted entry's description: naming it is naming the entry
BAD_RUN_ID = "c0ffee00-0000-4000-8000-00000000bad1"
ACME_WORKSPACE = "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d"
BIRCH_WORKSPACE = "2b3c4d5e-6f7a-4b2c-9d3e-4f5a6b7c8d9e"


@dataclass(frozen=True)
class BadKind:
    name: str
    client: str | None  # the client it touches (None: no client may fail)
    expect: str  # failed | named | counted | exact
    entry: dict[str, Any] | None = None  # served fields of a planted ClickUp entry of 10002
    run: dict[str, Any] | None = None  # stored fields of a planted Robocorp run of 10002
    registry: dict[str, Any] | None = None  # fields merged into the client's registry item
    edit: str | None = None  # name of a scenario edit in EDITS
    item_id: str = ""  # what "named" looks for besides a failed row
    extra: dict[str, Any] = field(default_factory=dict)


def _entry(name: str, expect: str = "failed", client: str | None = "10002", **fields: Any) -> BadKind:
    return BadKind(f"clickup {name}", client, expect, entry=fields, item_id=BAD_ENTRY_ID)


def _run(name: str, expect: str = "failed", **fields: Any) -> BadKind:
    return BadKind(f"robocorp {name}", "10002", expect, run=fields, item_id=BAD_RUN_ID)


def _registry(name: str, client: str = "10002", expect: str = "failed", **fields: Any) -> BadKind:
    return BadKind(f"registry {name}", client, expect, registry=fields)


def _edit(name: str, client: str | None, edit: str, expect: str = "failed") -> BadKind:
    return BadKind(name, client, expect, edit=edit)


KINDS: list[BadKind] = [
    _entry("duration '1h30m'", duration="1h30m"),
    _entry("duration ''", duration=""),
    _entry("duration null", duration=None),
    _entry("negative duration with an end", duration="-5400000"),
    _entry("duration 'abc'", duration="abc"),
    _entry("duration 'NaN'", duration="NaN"),
    _entry("duration '1e400'", duration="1e400"),
    _entry("duration as a number", "counted", duration=5400000),
    _entry("duration '5400000.5'", "counted", duration="5400000.5"),
    _entry("start null", start=None),
    _entry("start garbled", start="yesterday"),
    _entry("end garbled", end="soon"),
    _entry("end before start (duration rules)", "counted", end="1"),
    _entry("user null", "counted", user=None),
    _entry("billable 'yes'", "counted", billable="yes"),
    _entry("id null", "counted", id=None),
    _entry("task null", "named", client=None, task=None, task_location=None),
    _entry("task_location garbled", "named", task_location="Clients/Acme"),
    _entry("duplicate id of a billed entry", "exact", id="4120000000000000101", duration="5400000"),
    _run("started_at null", started_at=None),
    _run("started_at garbled", started_at="not-a-date"),
    _run("duration 'abc'", duration="abc"),
    _run("duration negative", duration=-600),
    _run("duration null with ended_at", "counted", duration=None),
    _run("duration as a string", "counted", duration="600"),
    _run("ended_at before started_at", ended_at="2026-10-01T00:00:00.000Z", duration=None),
    _run("state garbled", "counted", state=17),
    _run("process null", "named", process=None),
    _run("id null", "counted", id=None),
    _run("over 12 hours", "counted", duration=50_000),
    _registry("workspace ids a string", robocorp_workspace_ids="not-a-list"),
    _registry("workspace ids numbers", robocorp_workspace_ids=[123]),
    _registry("workspace without a key", robocorp_workspace_ids=[ACME_WORKSPACE, "ws-without-key"]),
    _registry("robot rate 'abc'", robot_hour_rate="abc"),
    _registry("robot rate negative", robot_hour_rate=-45),
    _registry("service rate 'NaN'", service_hour_rate="NaN"),
    _registry("monthly fee 'lots'", monthly_fee="lots"),
    _registry("active 'no'", active="no"),
    _registry("location ids a string", "10003", clickup_location_ids="901204410"),
    _registry("customer_name a number", customer_name=42),
    _registry("customer_name of another client", customer_name="10003 - Birch & Co. Bookkeeping"),
    _registry("customer_name unknown in QBO", customer_name="10002 - Nobody Inc"),
    _edit("unknown customer (registry client not in QBO)", "10011", "unknown_customer"),
    _edit("inactive QBO customer", "10010", "inactive_customer"),
    _edit("two QBO customers for one client", "10002", "twin_customer"),
    _edit("QBO customer without an email", "10004", "no_email", "exact"),
    _edit("Robocorp key of another workspace", "10003", "wrong_key"),
]


def _unknown_customer(scenario: dict[str, Any]) -> None:
    scenario["registry"].append({"client_id": "10011", "customer_name": "10011 - Nobody In QBO"})


def _inactive_customer(scenario: dict[str, Any]) -> None:
    scenario["registry"].append({"client_id": "10010", "customer_name": "10010 - Harbor Street Accounting"})


def _twin_customer(scenario: dict[str, Any]) -> None:
    """Two QBO customers start with 10002 and the registry names none: found by number, ambiguous."""
    next(i for i in scenario["registry"] if i["client_id"] == "10002").pop("customer_name", None)
    acme = next(c for c in scenario["qbo"]["customers"] if c["DisplayName"].startswith("10002"))
    scenario["qbo"]["customers"].append({**acme, "Id": "959", "DisplayName": "10002 - Acme CPA (old)"})


def _no_email(scenario: dict[str, Any]) -> None:
    cedar = next(c for c in scenario["qbo"]["customers"] if c["DisplayName"].startswith("10004"))
    cedar.pop("PrimaryEmailAddr", None)


def _wrong_key(scenario: dict[str, Any]) -> None:
    workspaces = scenario["robocorp"]["workspaces"]
    birch = next(w for w in workspaces if w["id"] == BIRCH_WORKSPACE)
    acme = next(w for w in workspaces if w["id"] == ACME_WORKSPACE)
    scenario.setdefault("secrets", {}).setdefault("RoboCorp/10000/ClientAPIKeys", {})[birch["id"]] = acme[
        "api_key"
    ]


EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "unknown_customer": _unknown_customer,
    "inactive_customer": _inactive_customer,
    "twin_customer": _twin_customer,
    "no_email": _no_email,
    "wrong_key": _wrong_key,
}


def by_name(name: str) -> BadKind:
    return next(kind for kind in KINDS if kind.name == name)


def scenario_for(kind: BadKind, default: dict[str, Any]) -> dict[str, Any]:
    """The default scenario with this kind's datum planted (valid for now where served later)."""
    scenario = copy.deepcopy(default)
    if kind.entry is not None:
        scenario["clickup"]["time_entries"].append(
            {
                "id": BAD_ENTRY_ID,
                "user": 81500002,
                "task": "86b1acme1",
                "start": "2026-10-12T15:00:00Z",
                "duration_minutes": 90,
                "billable": True,
                "description": PLANTED,
            }
        )
    if kind.run is not None:
        workspace = next(w for w in scenario["robocorp"]["workspaces"] if w["id"] == ACME_WORKSPACE)
        workspace.setdefault("runs", []).append(
            {
                "id": BAD_RUN_ID,
                "process": "Invoice Intake",
                "started_at": "2026-10-12T10:00:00Z",
                "duration": 600,
            }
        )
    if kind.registry is not None:
        item = next(i for i in scenario["registry"] if i["client_id"] == kind.client)
        item.update(kind.registry)
    if kind.edit is not None:
        EDITS[kind.edit](scenario)
    return scenario


class _Served(dict):
    """A planted entry as served; the stand-in still sorts its answer by the real ``start``
    (``e["start"]``), while JSON encoding reads the planted items."""

    def __init__(self, served: dict[str, Any], real_start: str):
        super().__init__(served)
        self._real_start = real_start

    def __getitem__(self, key: str) -> Any:
        return self._real_start if key == "start" else super().__getitem__(key)


def plant(kind: BadKind, sandbox: Any) -> None:
    """Overwrite the served form of the planted entry or run (after the sandbox started)."""
    if kind.entry is not None:
        overrides = dict(kind.entry)
        render = sandbox.clickup._render

        def rendered(entry: dict[str, Any], names: bool) -> dict[str, Any]:
            out = render(entry, names)
            return _Served({**out, **overrides}, out["start"]) if entry["id"] == BAD_ENTRY_ID else out

        sandbox.clickup._render = rendered
    if kind.run is not None:
        with sandbox.robocorp.store.edit("robocorp/workspaces") as workspaces:
            for run in workspaces[ACME_WORKSPACE]["runs"]:
                if run["id"] == BAD_RUN_ID:
                    run.update(kind.run)
