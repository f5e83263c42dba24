"""Issue 11.6: from 30 days before the QBO refresh token's 5-year (or 100-day) limit, every
bookkeeper mail, the run summary and a metric say to reconnect, so billing never stops unannounced."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Harness, default_scenario


def _token_near_its_hard_limit() -> dict:
    scenario = default_scenario()
    scenario["qbo"]["refresh_token_hard_days_left"] = 20
    return scenario


@pytest.mark.parametrize("harness", [_token_near_its_hard_limit()], indirect=True)
def test_both_jobs_warn_in_mail_summary_and_metric(harness: Harness) -> None:
    created = harness.run("--create-invoices", "--period", "2026-10")
    sent = harness.run("--send-invoices")

    state = harness.state()
    bookkeeper = [m for m in state["mails"] if "bookkeeper@" in str(m.get("to"))]
    assert created.exit_code in (0, 1) and sent.exit_code in (0, 1)
    assert len(bookkeeper) == 2
    for mail in bookkeeper:
        assert "reconnect QuickBooks" in mail["text"] and "make qbo-auth" in mail["text"]
    for run in (created, sent):
        block = run.summary["qbo_refresh_token"]
        assert 19 <= block["days_left"] <= 20 and block["refresh_token_hard_expires_at"].endswith("Z")
        assert len(block["warnings"]) == 1 and "5-year" in block["warnings"][0]
    assert any(m["name"] == "QboRefreshTokenDaysLeft" and m["samples"] == 2 for m in state["metrics"])


def test_a_healthy_token_gives_no_warning(harness: Harness) -> None:
    created = harness.run("--create-invoices", "--period", "2026-10")

    assert created.summary["qbo_refresh_token"]["warnings"] == []
    assert created.summary["qbo_refresh_token"]["days_left"] >= 99
    assert all("reconnect QuickBooks" not in m["text"] for m in harness.state()["mails"])
