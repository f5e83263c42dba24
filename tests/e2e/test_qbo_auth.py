"""``make qbo-auth`` end to end against the sandbox (issue 14.1): the stand-in's authorize endpoint
approves at once, so the real flow runs: loopback listener or pasted URL, state check, code
exchange, a new secret version, and the realm guard."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from integrations.qbo_auth import AuthFailed, connect_quickbooks
from sandbox import Sandbox
from tests.e2e.conftest import default_scenario

PLAYGROUND = "https://developer.intuit.com/v2/OAuth2Playground/RedirectUrl"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def loopback() -> str:
    return f"http://localhost:{_free_port()}/callback"


@pytest.fixture
def sandbox(tmp_path: Path, loopback: str) -> Iterator[Sandbox]:
    scenario = default_scenario()
    scenario["qbo"]["redirect_uris"] = [loopback, PLAYGROUND]
    with Sandbox(tmp_path / "sandbox", scenario=scenario) as running, running.environ():
        yield running


def _secret(sandbox: Sandbox) -> dict:
    client = sandbox.aws_client("secretsmanager")
    return json.loads(client.get_secret_value(SecretId=sandbox.env["QBO_SECRET_NAME"])["SecretString"])


def _approve(sandbox: Sandbox, url: str, follow: bool = True) -> requests.Response:
    """What the person's browser does: open the authorize URL and follow Intuit's redirect."""
    return requests.get(url, verify=sandbox.env["REQUESTS_CA_BUNDLE"], allow_redirects=follow, timeout=10)


def test_loopback_flow_stores_a_working_refresh_token_and_prints_none(
    sandbox: Sandbox, loopback: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _secret(sandbox)

    report = connect_quickbooks(
        sandbox.env,
        redirect_uri=loopback,
        new_realm=False,
        open_browser=lambda url: _approve(sandbox, url),
        read_line=lambda prompt: pytest.fail("a loopback redirect needs no pasting"),
        timeout=20,
    )

    after = _secret(sandbox)
    printed = capsys.readouterr().out + report
    assert (
        after["refresh_token"]
        == sandbox.qbo.store.get("qbo/oauth")["refresh_token"]
        != before["refresh_token"]
    )
    assert after["realm_id"] == sandbox.qbo.company["realm_id"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", after["refresh_token_hard_expires_at"])
    assert {k: v for k, v in after.items() if not k.startswith("refresh_token")} == {
        k: v for k, v in before.items() if not k.startswith("refresh_token")
    }
    assert after["refresh_token"] not in printed


def test_pasted_redirect_url_works_for_any_registered_redirect_uri(sandbox: Sandbox) -> None:
    def paste(prompt: str) -> str:
        return pasted["url"]

    pasted: dict[str, str] = {}

    def browser(url: str) -> None:
        pasted["url"] = _approve(sandbox, url, follow=False).headers["Location"]

    connect_quickbooks(
        sandbox.env, redirect_uri=PLAYGROUND, new_realm=False, open_browser=browser, read_line=paste
    )

    assert _secret(sandbox)["refresh_token"] == sandbox.qbo.store.get("qbo/oauth")["refresh_token"]


def test_a_pasted_url_with_another_state_is_refused(sandbox: Sandbox) -> None:
    before = _secret(sandbox)
    location: dict[str, str] = {}

    def browser(url: str) -> None:
        location["url"] = _approve(sandbox, url, follow=False).headers["Location"]

    with pytest.raises(AuthFailed, match="state does not match"):
        connect_quickbooks(
            sandbox.env,
            redirect_uri=PLAYGROUND,
            new_realm=False,
            open_browser=browser,
            read_line=lambda prompt: re.sub(r"state=[^&]+", "state=forged", location["url"]),
        )
    assert _secret(sandbox) == before


def test_a_different_company_is_refused_unless_new_realm(sandbox: Sandbox, loopback: str) -> None:
    client = sandbox.aws_client("secretsmanager")
    name = sandbox.env["QBO_SECRET_NAME"]
    client.put_secret_value(SecretId=name, SecretString=json.dumps({**_secret(sandbox), "realm_id": "1111"}))
    before = _secret(sandbox)

    def run(new_realm: bool) -> str:
        return connect_quickbooks(
            sandbox.env,
            redirect_uri=loopback,
            new_realm=new_realm,
            open_browser=lambda url: _approve(sandbox, url),
            read_line=input,
            timeout=20,
        )

    with pytest.raises(AuthFailed, match="--new-realm"):
        run(new_realm=False)
    assert _secret(sandbox) == before
    run(new_realm=True)
    assert _secret(sandbox)["realm_id"] == sandbox.qbo.company["realm_id"]
