"""``make doctor`` (``invoice-processor --check``) against the sandbox (issue 14.2): the default
scenario gives no fail; each deliberately broken thing gives exactly its own named fail; it writes
nothing (no invoice, no mail, no file)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Harness, default_scenario


def _statuses(run) -> dict[str, str]:
    return {row["check"]: row["status"] for row in run.summary["table"]}


def test_the_default_scenario_passes_and_nothing_is_written(harness: Harness) -> None:
    before = harness.state()

    run = harness.run("--check")

    after = harness.state()
    statuses = _statuses(run)
    assert run.exit_code == 0, run.summary["table"]
    assert [c for c, s in statuses.items() if s == "fail"] == []
    for check in (
        "qbo token",
        "qbo items",
        "clickup role",
        "graph role Mail.Send",
        "graph site",
        "table ledger",
    ):
        assert statuses[check] == "ok"
    assert any(c.startswith("registry 1000") for c in statuses) and any(
        c.startswith("robocorp ") for c in statuses
    )
    assert after["mails"] == before["mails"] and after["invoices"] == before["invoices"]
    assert "company Brightline Automation LLC" in next(
        r["detail"] for r in run.summary["table"] if r["check"] == "qbo token"
    )
    assert "check" in run.stdout and "status" in run.stdout  # the table is printed for the person


def _broken() -> dict:
    scenario = default_scenario()
    for item in scenario["qbo"]["items"]:
        if item["Name"] == "Automation Subscription":
            item["UnitPrice"] = 0  # an unpriced item
    scenario["registry"].append(
        {"client_id": "10077", "customer_name": "10077 - Nobody Ltd", "robocorp_workspace_ids": []}
    )
    scenario["clickup"]["token_owner"] = 81500002  # a member, not an admin
    scenario["graph"]["app_roles"] = ["Mail.ReadWrite", "Sites.ReadWrite.All"]  # no Mail.Send
    return scenario


@pytest.mark.parametrize("harness", [_broken()], indirect=True)
def test_each_broken_thing_gives_exactly_its_own_named_fail(harness: Harness) -> None:
    run = harness.run("--check")

    fails = sorted(c for c, s in _statuses(run).items() if s == "fail")
    assert run.exit_code == 1
    assert fails == ["clickup role", "graph role Mail.Send", "qbo items", "registry 10077"]
