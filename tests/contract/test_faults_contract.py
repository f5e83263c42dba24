"""The clients under the sandbox's injected faults: 429 storms, 5xx, dropped connections, timeouts.

Retry waits are tiny: the stand-ins send Retry-After >= 1 s and FAST caps it at 0.25 s; tests that
exhaust the budget use HTTP_MAX_RETRIES=1 (urllib3's first retry has no backoff).
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest

from integrations import errors
from integrations.services import Services
from sandbox import Sandbox
from tests.contract.conftest import ServicesFactory
from tests.contract.helpers import calls_since, disk_state, wait_for

pytestmark = pytest.mark.xdist_group("contract-faults")

INVOICE_GET = r"^GET .*/invoice/141\?"
INVOICE_POST = r"^POST .*/invoice\?"
ACME_WORKSPACE = "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d"


def _rid() -> str:
    return str(uuid.uuid4())


def _invoice_body(marker: str) -> dict:
    return {
        "CustomerRef": {"value": "61"},
        "TxnDate": "2026-10-31",
        "DocNumber": marker,
        "PrivateNote": f"contract-fault:{marker}",
        "Line": [
            {
                "DetailType": "SalesItemLineDetail",
                "Amount": Decimal("300.00"),
                "SalesItemLineDetail": {
                    "ItemRef": {"value": "22"},
                    "Qty": Decimal("2"),
                    "UnitPrice": Decimal("150.00"),
                },
            }
        ],
    }


def _marked(sandbox: Sandbox, marker: str) -> list[dict]:
    return [i for i in disk_state(sandbox)["invoices"] if i.get("PrivateNote") == f"contract-fault:{marker}"]


def _pending_rules(sandbox: Sandbox, service: str) -> list[dict]:
    return disk_state(sandbox)["faults"].get(service, {}).get("fail_next", [])


@pytest.fixture
def qbo_ready(services: Services) -> Services:
    """The module's Services with a QBO access token already in hand (no refresh inside the test)."""
    services.qbo.custom_txn_numbers()
    return services


# --- QBO --------------------------------------------------------------------------------------


def test_qbo_429_storm_every_call_still_completes_and_creates_once(
    sandbox: Sandbox, qbo_ready: Services
) -> None:
    qbo = qbo_ready.qbo
    throttled_before = sandbox.state()["requests"]["qbo"]["by_status"].get("429", 0)
    mark = len(sandbox.requests("qbo"))
    sandbox.set_faults("qbo", rate_limit_per_sec=3, retry_after=1)  # QBO allows 10/s: a storm

    reads = [qbo.get_invoice("141")["Id"] for _ in range(3)]
    customers = qbo.customers()
    created = qbo.create_invoice(_invoice_body("F-STORM"), _rid())
    items = qbo.items()
    reread = qbo.get_invoice(created["Id"])

    assert reads == ["141"] * 3 and len(customers) == 9 and items
    assert reread["Id"] == created["Id"] and len(_marked(sandbox, "F-STORM")) == 1
    statuses = [c["status"] for c in calls_since(sandbox, "qbo", mark)]
    assert statuses.count(429) >= 1 and statuses.count(200) == 7
    assert sandbox.state()["requests"]["qbo"]["by_status"]["429"] > throttled_before


def test_qbo_client_paces_itself_at_intuits_limit_of_ten_calls_a_second(
    sandbox: Sandbox, qbo_ready: Services
) -> None:
    sandbox.set_faults("qbo", rate_limit_per_sec=10, send_retry_after=False)  # as real QBO: no Retry-After
    started = time.monotonic()

    reads = [qbo_ready.qbo.get_invoice("141")["Id"] for _ in range(11)]

    assert reads == ["141"] * 11
    assert time.monotonic() - started >= 0.95  # the 11th call waited for the client's own 1-second window


def test_qbo_503_on_a_read_is_retried_transparently(sandbox: Sandbox, qbo_ready: Services) -> None:
    sandbox.fail_next("qbo", 1, 503, match=INVOICE_GET)
    mark = len(sandbox.requests("qbo"))

    assert qbo_ready.qbo.get_invoice("141")["Id"] == "141"
    assert [c["status"] for c in calls_since(sandbox, "qbo", mark)] == [503, 200]


def test_qbo_persistent_5xx_is_a_server_error_after_the_bounded_retries(
    sandbox: Sandbox, make_services: ServicesFactory
) -> None:
    qbo = make_services(HTTP_MAX_RETRIES="1").qbo
    qbo.custom_txn_numbers()
    sandbox.fail_next("qbo", 3, 502, match=INVOICE_GET)

    with pytest.raises(errors.ServerError) as caught:
        qbo.get_invoice("141")

    assert caught.value.status == 502
    assert [r["remaining"] for r in _pending_rules(sandbox, "qbo")] == [1]  # 2 attempts of 3 planned


def test_qbo_429_beyond_the_bounded_wait_is_rate_limited_with_the_throttle_code(
    sandbox: Sandbox, make_services: ServicesFactory
) -> None:
    # A bare 429 is waited out for QBO's window, bounded by time (issue 11): scaled down here.
    qbo = make_services(QBO_THROTTLE_WINDOW_SECONDS="0.2", QBO_THROTTLE_MAX_WAIT_SECONDS="0.5").qbo
    qbo.custom_txn_numbers()
    sandbox.fail_next("qbo", 5, 429, match=INVOICE_GET)

    with pytest.raises(errors.RateLimited) as caught:
        qbo.get_invoice("141")

    assert caught.value.status == 429 and caught.value.code == "3001"  # parsed from the XML fault
    assert caught.value.request_id  # intuit_tid


def test_qbo_dropped_connection_is_retried(sandbox: Sandbox, qbo_ready: Services) -> None:
    sandbox.fail_next("qbo", 1, "drop", match=r"^GET .*/query\?")
    mark = len(sandbox.requests("qbo"))

    assert len(qbo_ready.qbo.customers()) == 9
    faults = [c["fault"] for c in calls_since(sandbox, "qbo", mark)]
    assert faults[0] == "drop" and faults[1:] == [None] * (len(faults) - 1)


def test_qbo_create_whose_answer_was_lost_is_replayed_and_creates_one_invoice(
    sandbox: Sandbox, qbo_ready: Services
) -> None:
    sandbox.fail_next("qbo", 1, "drop-after", match=INVOICE_POST)
    mark = len(sandbox.requests("qbo"))

    created = qbo_ready.qbo.create_invoice(_invoice_body("F-LOST"), _rid())

    assert [i["Id"] for i in _marked(sandbox, "F-LOST")] == [created["Id"]]
    posts = [c for c in calls_since(sandbox, "qbo", mark) if c["method"] == "POST"]
    assert len(posts) == 2 and posts[0]["query"] == posts[1]["query"]  # same requestid both times


def test_qbo_create_that_timed_out_after_the_work_is_replayed_and_creates_one_invoice(
    sandbox: Sandbox, make_services: ServicesFactory
) -> None:
    qbo = make_services(HTTP_TIMEOUT_SECONDS="1").qbo
    qbo.custom_txn_numbers()
    sandbox.set_faults("qbo", timeout_seconds=1.2)
    sandbox.fail_next("qbo", 1, "timeout", match=INVOICE_POST)

    created = qbo.create_invoice(_invoice_body("F-SLOW"), _rid())

    assert [i["Id"] for i in _marked(sandbox, "F-SLOW")] == [created["Id"]]


def test_qbo_read_that_keeps_timing_out_is_a_transport_error_after_the_bounded_retries(
    sandbox: Sandbox, make_services: ServicesFactory
) -> None:
    qbo = make_services(HTTP_TIMEOUT_SECONDS="1", HTTP_MAX_RETRIES="1").qbo
    qbo.custom_txn_numbers()
    sandbox.set_faults("qbo", timeout_seconds=1.2)
    sandbox.fail_next("qbo", 3, "timeout-before", match=INVOICE_GET)
    mark = len(sandbox.requests("qbo"))

    with pytest.raises(errors.TransportError) as caught:
        qbo.get_invoice("141")

    assert "timed out" in caught.value.reason
    assert [r["remaining"] for r in _pending_rules(sandbox, "qbo")] == [1]  # 2 attempts of 3 planned

    def stalled() -> list[dict]:  # the stand-in logs a stalled call when it finally drops it
        return [c for c in calls_since(sandbox, "qbo", mark) if c["fault"] == "timeout-before"]

    assert wait_for(lambda: len(stalled()) >= 2) and len(stalled()) == 2


def test_a_qbo_token_endpoint_5xx_is_tried_once_more_with_the_same_token(
    sandbox: Sandbox, make_services: ServicesFactory
) -> None:
    """The session never replays the token POST; the token code tries exactly once more (a lost
    reply may have rotated the token, and Intuit keeps the previous value for a while)."""
    services = make_services()
    name = services.settings.qbo_secret_name
    before = services.secrets.read_json(name)["refresh_token"]
    sandbox.fail_next("qbo_auth", 2, 503)
    mark = len(sandbox.requests("qbo_auth"))

    with pytest.raises(errors.ServerError):
        services.qbo.customers()

    assert [c["status"] for c in calls_since(sandbox, "qbo_auth", mark)] == [503, 503]  # once more, no more
    assert services.secrets.read_json(name)["refresh_token"] == before
    assert len(services.qbo.customers()) == 9  # the next attempt refreshes with the same token


# --- Graph, ClickUp, Robocorp -----------------------------------------------------------------


def test_graph_429_on_send_mail_is_retried_and_one_mail_is_delivered(
    sandbox: Sandbox, services: Services
) -> None:
    sandbox.fail_next("graph", 1, 429, match=r"^POST .*/sendMail")
    mark = len(sandbox.requests("graph"))

    services.graph.send_mail(
        services.settings.sender_email, ["ap@acmecpa.example"], "Fault 429 mail", "<p>x</p>"
    )

    assert len([m for m in disk_state(sandbox)["mails"] if m["subject"] == "Fault 429 mail"]) == 1
    sends = [c["status"] for c in calls_since(sandbox, "graph", mark) if c["path"].endswith("/sendMail")]
    assert sends == [429, 202]


def test_graph_503_on_send_mail_is_not_repeated(sandbox: Sandbox, services: Services) -> None:
    sandbox.fail_next("graph", 1, 503, match=r"^POST .*/sendMail")
    mark = len(sandbox.requests("graph"))

    with pytest.raises(errors.ServerError):
        services.graph.send_mail(
            services.settings.sender_email, ["ap@acmecpa.example"], "Fault 503 mail", "<p>x</p>"
        )

    sends = [c["status"] for c in calls_since(sandbox, "graph", mark) if c["path"].endswith("/sendMail")]
    assert sends == [503]
    assert not [m for m in disk_state(sandbox)["mails"] if m["subject"] == "Fault 503 mail"]


def test_graph_send_mail_whose_answer_was_lost_is_not_repeated(sandbox: Sandbox, services: Services) -> None:
    sandbox.fail_next("graph", 1, "drop-after", match=r"^POST .*/sendMail")

    with pytest.raises(errors.TransportError):
        services.graph.send_mail(
            services.settings.sender_email, ["ap@acmecpa.example"], "Fault lost mail", "<p>x</p>"
        )

    assert len([m for m in disk_state(sandbox)["mails"] if m["subject"] == "Fault lost mail"]) == 1


def test_clickup_429s_are_retried(sandbox: Sandbox, services: Services) -> None:
    clickup = services.clickup  # built first: building it checks the token's role (2 calls)
    sandbox.fail_next("clickup", 2, 429)
    mark = len(sandbox.requests("clickup"))

    assert len(clickup.members()) == 4
    assert [c["status"] for c in calls_since(sandbox, "clickup", mark)] == [429, 429, 200]


def test_robocorp_429_between_pages_is_retried_and_no_run_is_lost(
    sandbox: Sandbox, services: Services
) -> None:
    pages = services.robocorp.process_runs(ACME_WORKSPACE, limit=20)
    first = next(pages)  # page one is read
    sandbox.fail_next("robocorp", 1, 429)
    mark = len(sandbox.requests("robocorp"))

    rest = list(pages)

    assert len({first.id, *(r.id for r in rest)}) == 75
    assert [c["status"] for c in calls_since(sandbox, "robocorp", mark)] == [429, 200, 200, 200]
