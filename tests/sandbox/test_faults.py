"""Fault injection: service-shaped 429s with Retry-After, deterministic failures, drops, timeouts."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from integrations.http import build_session
from sandbox import Sandbox
from tests.sandbox.helpers import Qbo

# One sandbox per module (module-scoped fixture): keep the module on one xdist worker.
pytestmark = pytest.mark.xdist_group("sandbox-faults")

ACME = ("1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d", "rcws_acme_7Tm2Qx9Vb4Nk8Lp3Rs6Wd1Yh5Gf0Jc2Ze")
CLICKUP_TOKEN = "pk_81500001_Q7XM2VN9LP4RK8TB1YD6HS3GF0JC5ZWA"


@pytest.fixture(autouse=True)
def _no_faults_left(sandbox: Sandbox) -> Iterator[None]:
    yield
    sandbox.clear_faults()


def _robocorp(sandbox: Sandbox, http: requests.Session) -> requests.Response:
    url = f"{sandbox.env['ROBOCORP_BASE_URL']}/workspaces/{ACME[0]}/process-runs"
    return http.get(url, params={"limit": 1}, headers={"Authorization": f"RC-WSKEY {ACME[1]}"})


def test_qbo_throttle_is_xml_with_retry_after_and_clients_recover(
    sandbox: Sandbox, http: requests.Session
) -> None:
    qbo = Qbo(sandbox, http)
    sandbox.set_faults("qbo", rate_limit_per_sec=2, retry_after=1, send_retry_after=True)  # relaxed
    storm = [qbo.raw_query("SELECT * FROM Term") for _ in range(4)]
    refused = [r for r in storm if r.status_code == 429]

    assert refused, "the third call within a second must be throttled"
    assert refused[0].headers["Content-Type"].startswith("application/xml")
    assert "ThrottleExceeded" in refused[0].text and refused[0].headers["Retry-After"] == "1"
    assert refused[0].headers["intuit_tid"]

    sandbox.set_faults("qbo", rate_limit_per_sec=2, retry_after=1, send_retry_after=True)  # a fresh window
    session = build_session("qbo", max_retries=5, backoff_factor=0.05)
    session.trust_env = False
    session.verify = sandbox.env["REQUESTS_CA_BUNDLE"]
    answers = [
        session.get(f"{qbo.base}/query", params={"query": "SELECT * FROM Term"}, headers=qbo.headers)
        for _ in range(4)
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 200]
    assert any(call["status"] == 429 and call["fault"] for call in sandbox.requests("qbo")[-8:])


def test_qbo_throttle_comes_without_retry_after_by_default_like_the_real_one(
    sandbox: Sandbox, http: requests.Session
) -> None:
    qbo = Qbo(sandbox, http)
    sandbox.set_faults("qbo", rate_limit_per_min=1)
    qbo.raw_query("SELECT * FROM Term")
    refused = qbo.raw_query("SELECT * FROM Term")
    assert refused.status_code == 429 and "Retry-After" not in refused.headers


def test_clickup_and_graph_429s_carry_their_headers(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.set_faults("clickup", rate_limit_per_min=1)
    sandbox.fail_next("graph", 1, 429)
    url = f"{sandbox.env['CLICKUP_BASE_URL']}/team"
    first = http.get(url, headers={"Authorization": CLICKUP_TOKEN})
    second = http.get(url, headers={"Authorization": CLICKUP_TOKEN})
    graph = http.get(f"{sandbox.env['MSGRAPH_BASE_URL']}/sites/x")

    assert first.status_code == 200 and second.status_code == 429
    assert second.json() == {"err": "Rate limit reached", "ECODE": "APP_002"}
    assert int(second.headers["X-RateLimit-Reset"]) >= int(time.time())
    assert "Retry-After" not in second.headers  # real ClickUp sends only the X-RateLimit-* headers
    assert second.headers["X-RateLimit-Remaining"] == "0"
    assert (
        graph.status_code == 429
        and graph.json()["error"]["code"] == "TooManyRequests"
        and graph.headers["Retry-After"]
    )


def test_fail_next_n_calls_then_recover(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.fail_next("robocorp", 2, 503)
    statuses = [_robocorp(sandbox, http).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert sandbox.faults.describe() == {}


def test_fail_next_only_hits_matching_calls(sandbox: Sandbox, http: requests.Session) -> None:
    qbo = Qbo(sandbox, http)
    sandbox.fail_next("qbo", 1, 500, match=r"^POST .*/invoice")
    read = qbo.query("SELECT * FROM Term")
    write = qbo.post("/invoice", {"CustomerRef": {"value": "59"}, "Line": []})
    assert read.status_code == 200
    assert write.status_code == 500 and write.json()["Fault"]["type"] == "SystemFault"


def test_dropped_connection_reaches_the_client_as_a_connection_error(
    sandbox: Sandbox, http: requests.Session
) -> None:
    sandbox.fail_next("robocorp", 1, "drop")
    with pytest.raises(requests.exceptions.ConnectionError):
        _robocorp(sandbox, http)
    assert _robocorp(sandbox, http).status_code == 200
    assert sandbox.requests("robocorp")[-2]["fault"] == "drop"


def test_timeout_after_the_work_is_done(sandbox: Sandbox, http: requests.Session) -> None:
    qbo = Qbo(sandbox, http)
    sandbox.set_faults("qbo", timeout_seconds=2)
    sandbox.fail_next("qbo", 1, "timeout", match="POST")
    note = f"timeout-{uuid.uuid4()}"
    body = {
        "CustomerRef": {"value": "59"},
        "PrivateNote": note,
        "Line": [
            {
                "DetailType": "SalesItemLineDetail",
                "Amount": 45.0,
                "SalesItemLineDetail": {"ItemRef": {"value": "21"}, "Qty": 1, "UnitPrice": 45.0},
            }
        ],
    }

    with pytest.raises(requests.exceptions.ReadTimeout):
        http.post(f"{qbo.base}/invoice", json=body, headers=qbo.headers, timeout=0.5)

    assert [i for i in sandbox.state()["invoices"] if i.get("PrivateNote") == note], "the server did the work"


def test_random_faults_repeat_with_the_same_seed(sandbox: Sandbox, http: requests.Session) -> None:
    def pattern() -> list[int]:
        sandbox.set_faults("robocorp", error_rate=0.5, error_status=502, seed=7)
        return [_robocorp(sandbox, http).status_code for _ in range(8)]

    first, second = pattern(), pattern()
    assert first == second and {502, 200} == set(first)


def test_latency_is_added_and_faults_are_saved(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.set_faults("robocorp", latency_ms=150)
    started = time.monotonic()
    assert _robocorp(sandbox, http).status_code == 200
    assert time.monotonic() - started >= 0.15
    saved = json.loads((sandbox.state_dir / "faults.json").read_text())
    assert saved == {"robocorp": {"settings": {"latency_ms": 150}, "fail_next": []}}
    assert sandbox.state()["faults"] == saved


def test_unknown_services_and_settings_are_refused(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="unknown service"):
        sandbox.set_faults("stripe", latency_ms=1)
    with pytest.raises(ValueError, match="unknown fault setting"):
        sandbox.set_faults("qbo", latencyms=1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        sandbox.set_faults("qbo", error_rate=2)
