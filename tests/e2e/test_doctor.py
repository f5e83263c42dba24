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
        "graph folder",
        "table ledger",
    ):
        assert statuses[check] == "ok"
    # The app holds no user-read role (the jobs need none): the mailbox check says it is skipped.
    assert statuses["graph mailbox"] == "warn"
    assert "skipped" in next(r["detail"] for r in run.summary["table"] if r["check"] == "graph mailbox")
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
    # No Mail.Send; User.ReadBasic.All lets doctor read the sender, which is misspelt.
    scenario["graph"]["app_roles"] = ["Mail.ReadWrite", "Sites.ReadWrite.All", "User.ReadBasic.All"]
    scenario["settings"]["SENDER_EMAIL"] = "bliling@brightline-automation.example"
    scenario["graph"]["sites"][0]["folders"] = []  # the archive folder does not exist
    return scenario


@pytest.mark.parametrize("harness", [_broken()], indirect=True)
def test_each_broken_thing_gives_exactly_its_own_named_fail(harness: Harness) -> None:
    run = harness.run("--check")

    fails = sorted(c for c, s in _statuses(run).items() if s == "fail")
    assert run.exit_code == 1
    assert fails == [
        "clickup role",
        "graph folder",
        "graph mailbox",
        "graph role Mail.Send",
        "qbo items",
        "registry 10077",
    ]


def _mailbox_readable() -> dict:
    scenario = default_scenario()
    scenario["graph"]["app_roles"] = [
        "Mail.Send",
        "Mail.ReadWrite",
        "Sites.ReadWrite.All",
        "User.ReadBasic.All",
    ]
    return scenario


@pytest.mark.parametrize("harness", [_mailbox_readable()], indirect=True)
def test_with_a_user_read_role_the_sender_mailbox_is_checked(harness: Harness) -> None:
    run = harness.run("--check")

    row = run.rows(check="graph mailbox")[0]
    assert run.exit_code == 0 and row["status"] == "ok"
    assert "billing@brightline-automation.example" in row["detail"]
