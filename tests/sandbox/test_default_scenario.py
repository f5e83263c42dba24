"""The default scenario is consistent and its ``expected`` bills are right: recomputed here from the
raw data with an independent reading of the billing rules (DESIGN §1)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

from sandbox import DEFAULT_SCENARIO
from sandbox.scenario import load, secrets

RAW = json.loads(DEFAULT_SCENARIO.read_text(encoding="utf-8"))
CENT = Decimal("0.01")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _runs(workspace: dict) -> list[dict]:
    runs = list(workspace.get("runs", []))
    for series in workspace.get("series", []):
        first = _time(series["first_started_at"])
        for n in range(series["count"]):
            runs.append(
                {
                    "process": series["process"],
                    "duration": series["duration"],
                    "started_at": (first + n * timedelta(hours=series["every_hours"])).isoformat(),
                }
            )
    return runs


def _valid_registry() -> dict[str, dict]:
    return {
        item["client_id"]: item
        for item in RAW["registry"]
        if re.fullmatch(r"\d{3,10}", item["client_id"])
        and isinstance(item.get("robocorp_workspace_ids", []), list)
    }


def _bill(period: str) -> dict[str, dict]:
    start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
    end = (start + timedelta(days=32)).replace(day=1)
    prices = {item["Name"]: Decimal(str(item["UnitPrice"])) for item in RAW["qbo"]["items"]}
    excluded = {value.strip() for value in RAW["settings"]["EXCLUDED_CUSTOMERS"].split(",")}
    workspaces = {ws["id"]: ws for ws in RAW["robocorp"]["workspaces"]}
    locations: dict[str, dict] = {}
    for space in RAW["clickup"]["spaces"]:
        for folder in [*space.get("folders", []), {"id": None, "name": "", "lists": space.get("lists", [])}]:
            for list_ in folder["lists"]:
                for task in list_["tasks"]:
                    locations[task["id"]] = {
                        "ids": {str(space["id"]), str(folder["id"]), str(list_["id"])},
                        "names": [space["name"], folder["name"], list_["name"]],
                        "task": task["name"],
                    }
    registry = _valid_registry()

    def owner(task_id: str) -> str | None:
        where = locations[task_id]
        for client, item in registry.items():
            if where["ids"] & set(item.get("clickup_location_ids", [])):
                return client
        for client in registry:
            if any(name.startswith(client) for name in where["names"]):
                return client
        return None

    time_by_client: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for entry in RAW["clickup"]["time_entries"]:
        begins = _time(entry["start"])
        if entry.get("running") or not entry.get("billable", True) or not start <= begins < end:
            continue
        minutes = entry.get("duration_minutes") or (_time(entry["end"]) - begins).total_seconds() / 60
        client = owner(entry["task"])
        if client is not None:
            time_by_client[client][locations[entry["task"]]["task"]] += int(minutes)

    bills = {}
    for client, item in registry.items():
        if client in excluded or item.get("customer_name") in excluded:
            continue
        robot_rate = Decimal(str(item.get("robot_hour_rate", prices["Robot Runtime"])))
        service_rate = Decimal(str(item.get("service_hour_rate", prices["Professional Services"])))
        lines = []
        seconds: dict[str, float] = defaultdict(float)
        for workspace_id in item.get("robocorp_workspace_ids", []):
            for run in _runs(workspaces[workspace_id]):
                if (
                    run.get("state") in ("in_progress", "new", "stopping")
                    or not start <= _time(run["started_at"]) < end
                ):
                    continue
                seconds[run["process"]] += (
                    run.get("duration") or (_time(run["ended_at"]) - _time(run["started_at"])).total_seconds()
                )
        for process, total in seconds.items():
            qty = (Decimal(str(total)) / 3600).quantize(CENT, ROUND_HALF_UP)
            lines.append(("Robot Runtime", process, qty, robot_rate, qty * robot_rate))
        for task, minutes in time_by_client[client].items():
            qty = (Decimal(minutes) / 60).quantize(CENT, ROUND_HALF_UP)
            lines.append(("Professional Services", task, qty, service_rate, qty * service_rate))
        if item.get("monthly_fee") is not None and lines:
            fee = Decimal(str(item["monthly_fee"]))
            lines.append(("Automation Subscription", "monthly fee", Decimal(1), fee, fee))
        if lines:
            bills[client] = {"lines": lines, "total": sum(line[4] for line in lines)}
    return bills


@pytest.mark.parametrize("period", ["2026-10", "2026-11"])
def test_expected_invoices_match_the_data(period: str) -> None:
    expected = RAW["expected"][period]
    computed = _bill(period)

    assert sorted(computed) == sorted(expected["invoices"])
    for client, bill in computed.items():
        wanted = expected["invoices"][client]
        got = [
            (i, s, Decimal(q), Decimal(p), Decimal(a))
            for i, s, q, p, a in (
                (line["item"], line["source"], line["qty"], line["unit_price"], line["amount"])
                for line in wanted["lines"]
            )
        ]
        assert sorted(got) == sorted(bill["lines"]), client
        assert Decimal(wanted["total"]) == bill["total"], client
        assert all(line[2] * line[3] == line[4] for line in bill["lines"])  # QBO's rule 6070
    assert Decimal(expected["total"]) == sum(bill["total"] for bill in computed.values())


def test_default_scenario_is_consistent() -> None:
    scenario = load(DEFAULT_SCENARIO)
    robocorp_keys = secrets(scenario)["RoboCorp/10000/ClientAPIKeys"]
    customers = {c["DisplayName"] for c in scenario["qbo"]["customers"] if c.get("Active", True)}
    registry = _valid_registry()

    assert scenario["settings"]["EXCLUDED_CUSTOMERS"] == "10001 - AICPA"
    assert {item["client_id"] for item in RAW["registry"]} == set(registry)  # every item is valid
    for client, item in registry.items():
        assert item.get("customer_name", "") in customers or any(
            name.startswith(client) for name in customers
        ), client
        assert set(item.get("robocorp_workspace_ids", [])) <= set(robocorp_keys), client
    assert [c for c in scenario["qbo"]["customers"] if "PrimaryEmailAddr" not in c] == [
        c for c in scenario["qbo"]["customers"] if c["Id"] == "65"
    ]
    assert (
        "'" in scenario["qbo"]["customers"][4]["DisplayName"]
        and "ø" in scenario["qbo"]["customers"][4]["DisplayName"]
    )
