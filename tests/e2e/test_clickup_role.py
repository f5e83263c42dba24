"""Issue 11.13: a ClickUp token that is not an owner or admin may see only its own time, which
would under-bill without an error; the create job refuses to bill with it (exit 2, what to do)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Harness, default_scenario


def _token_of(member_id: int) -> dict:
    scenario = default_scenario()
    scenario["clickup"]["token_owner"] = member_id
    return scenario


@pytest.mark.parametrize("harness", [_token_of(81500002)], indirect=True)  # Tom Becker: a member
def test_a_member_token_is_refused_before_anything_is_billed(harness: Harness) -> None:
    run = harness.run("--create-invoices", "--period", "2026-10")

    assert run.exit_code == 2
    assert "refusing to bill" in run.summary["error"] and "member of workspace" in run.summary["error"]
    assert "owner or admin" in run.summary["error"]  # and says what to do
    assert harness.invoices() == [] or all(
        "invoice-processor:" not in (i.get("PrivateNote") or "") for i in harness.invoices()
    )
    assert harness.state()["mails"] == []


def _admin_token() -> dict:
    scenario = _token_of(81500002)
    scenario["clickup"]["members"][1]["role"] = 2  # Tom becomes an admin
    return scenario


@pytest.mark.parametrize("harness", [_admin_token()], indirect=True)
def test_an_admin_token_bills_everyone_s_time(harness: Harness) -> None:
    run = harness.run("--create-invoices", "--period", "2026-10", "--dry-run")

    assert run.exit_code == 0, run.logs
