"""The QBO stand-in's refresh-token lifetime and authorization-code grant (issue 11.6 and 14.1), as
Intuit documents them (shared/reference/qbo-api.md section 10). Each test fails if the stand-in is
made lenient again: rotating on every refresh, keeping dead values alive, never expiring."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from sandbox import Sandbox
from sandbox.qbo_oauth import OPTIONS
from tests.sandbox.helpers import QBO_CLIENT, session_for

pytestmark = pytest.mark.xdist_group("contract-qbo-token-lifetime")
DAY = 86400


@pytest.fixture
def http(sandbox: Sandbox) -> requests.Session:
    return session_for(sandbox)


@pytest.fixture(autouse=True)
def _fresh_connection(sandbox: Sandbox) -> Iterator[None]:
    sandbox.reset()
    yield
    sandbox.set_qbo_options(**OPTIONS)


def _refresh(sandbox: Sandbox, http: requests.Session, token: str, hard: bool = False) -> requests.Response:
    return http.post(
        sandbox.env["QBO_TOKEN_URL"],
        data={"grant_type": "refresh_token", "refresh_token": token},
        auth=QBO_CLIENT,
        headers={"x-include-refresh-token-hard-expires-in": "true"} if hard else {},
    )


def _age(sandbox: Sandbox, seconds: float, field: str = "refresh_token_issued_at") -> None:
    """Travel in time for the stand-in's token: move one of its timestamps into the past."""
    with sandbox.qbo.store.edit("qbo/oauth") as oauth:
        oauth[field] -= seconds


def _current(sandbox: Sandbox) -> str:
    return sandbox.qbo.store.get("qbo/oauth")["refresh_token"]


def test_the_value_stays_the_same_within_24_hours_then_rotates_and_the_old_one_dies(
    sandbox: Sandbox, http: requests.Session
) -> None:
    seeded = _current(sandbox)
    rotated = _refresh(sandbox, http, seeded).json()["refresh_token"]  # the seeded value is a day old
    _age(sandbox, 23 * 3600)
    same = _refresh(sandbox, http, rotated)
    _age(sandbox, 2 * 3600)
    newer = _refresh(sandbox, http, rotated)

    assert rotated != seeded and same.json()["refresh_token"] == rotated
    assert newer.status_code == 200 and newer.json()["refresh_token"] != rotated
    assert _refresh(sandbox, http, rotated).json()["error"] == "invalid_grant"  # no grace by default


def test_a_grace_period_keeps_the_previous_value_alive_for_that_long(
    sandbox: Sandbox, http: requests.Session
) -> None:
    sandbox.set_qbo_options(refresh_token_grace_seconds=3600)
    seeded = _current(sandbox)
    _refresh(sandbox, http, seeded)

    assert _refresh(sandbox, http, seeded).status_code == 200
    _age(sandbox, 3601, "previous_valid_until")
    assert _refresh(sandbox, http, seeded).json()["error"] == "invalid_grant"


def test_strict_mode_rotates_on_every_refresh(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.set_qbo_options(refresh_token_rotation_seconds=0)
    first = _refresh(sandbox, http, _current(sandbox)).json()["refresh_token"]
    second = _refresh(sandbox, http, first).json()["refresh_token"]

    assert second != first


def test_a_token_unused_for_100_days_expires_and_each_use_extends_it(
    sandbox: Sandbox, http: requests.Session
) -> None:
    reply = _refresh(sandbox, http, _current(sandbox)).json()
    assert 100 * DAY - 60 <= reply["x_refresh_token_expires_in"] <= 100 * DAY

    _age(sandbox, 100 * DAY, "refresh_token_expires_at")
    expired = _refresh(sandbox, http, _current(sandbox))

    assert expired.status_code == 400 and expired.json()["error"] == "invalid_grant"


def test_the_five_year_cap_is_reported_only_on_request_and_then_ends_the_token(
    sandbox: Sandbox, http: requests.Session
) -> None:
    without = _refresh(sandbox, http, _current(sandbox)).json()
    with_header = _refresh(sandbox, http, _current(sandbox), hard=True).json()

    assert "x_refresh_token_hard_expires_in" not in without
    assert 5 * 365 * DAY - 60 <= with_header["x_refresh_token_hard_expires_in"] <= 5 * 365 * DAY
    _age(sandbox, 5 * 365 * DAY, "connected_at")
    assert _refresh(sandbox, http, _current(sandbox)).json()["error"] == "invalid_grant"


def _authorize(
    sandbox: Sandbox, http: requests.Session, redirect_uri: str, **extra: str
) -> requests.Response:
    params = {
        "client_id": QBO_CLIENT[0],
        "response_type": "code",
        "scope": "com.intuit.quickbooks.accounting",
        "redirect_uri": redirect_uri,
        "state": "state-123",
        **extra,
    }
    return http.get(f"{sandbox.env['QBO_BASE_URL']}/connect/oauth2", params=params, allow_redirects=False)


def test_an_authorization_code_works_once_for_its_redirect_uri(
    sandbox: Sandbox, http: requests.Session
) -> None:
    redirect = "http://localhost:8765/callback"
    approved = _authorize(sandbox, http, redirect)
    query = parse_qs(urlsplit(approved.headers["Location"]).query)
    form = {"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": redirect}

    first = http.post(sandbox.env["QBO_TOKEN_URL"], data=form, auth=QBO_CLIENT)
    again = http.post(sandbox.env["QBO_TOKEN_URL"], data=form, auth=QBO_CLIENT)

    assert approved.status_code == 302 and query["state"] == ["state-123"]
    assert query["realmId"] == [sandbox.qbo.company["realm_id"]]
    assert first.status_code == 200 and first.json()["refresh_token"] == _current(sandbox)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_authorize_refuses_an_unregistered_redirect_uri_or_a_missing_scope(
    sandbox: Sandbox, http: requests.Session
) -> None:
    assert _authorize(sandbox, http, "http://localhost:9999/elsewhere").status_code == 400
    assert _authorize(sandbox, http, "http://localhost:8765/callback", scope="openid").status_code == 400
