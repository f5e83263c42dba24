"""Issue 11: each documented rule the stand-ins enforce by default, and the clients that survive it.

Every test fails if its stand-in is made lenient again (or the client stops coping). Sources are
in sandbox/README.md, "Strict by default".
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests

from integrations import errors, msgraph
from integrations.models import Attachment
from integrations.qbo import request_id_for
from integrations.services import Services
from sandbox import Sandbox
from tests.contract.conftest import ServicesFactory
from tests.contract.helpers import disk_state, trusted_session
from tests.contract.test_qbo_contract import CEDAR, _invoice_body
from tests.sandbox.helpers import REALM

pytestmark = pytest.mark.xdist_group("contract-strict")

CLICKUP_TOKEN = "pk_81500001_Q7XM2VN9LP4RK8TB1YD6HS3GF0JC5ZWA"


def _raw_qbo(sandbox: Sandbox, services: Services) -> tuple[requests.Session, str, dict[str, str]]:
    """Plain HTTP to the stand-in with the access token the client holds (the secret stays current)."""
    http = trusted_session(sandbox)
    base = f"{sandbox.env['QBO_BASE_URL']}/v3/company/{REALM}"
    token = services.qbo._tokens.access_token()  # noqa: SLF001 - a raw caller needs a valid token
    return http, base, {"Authorization": f"Bearer {token}", "Accept": "application/json"}


# --- 1 and 2: QBO limits on by default, 429 without Retry-After -------------------------------


def test_qbo_limits_are_on_by_default_and_a_429_has_no_retry_after(
    sandbox: Sandbox, services: Services
) -> None:
    http, base, headers = _raw_qbo(sandbox, services)
    sandbox.set_faults("qbo", latency_ms=400)  # the limits stay on: only latency is named

    def query(_: int) -> requests.Response:
        return http.get(f"{base}/query", params={"query": "SELECT * FROM Term"}, headers=headers)

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(query, range(12)))

    refused = [a for a in answers if a.status_code == 429]
    assert refused, "12 concurrent calls: more than QBO's 10 per realm"
    assert all("Retry-After" not in a.headers and "ThrottleExceeded" in a.text for a in refused)
    config = sandbox.faults.config("qbo")
    assert (config.rate_limit_per_sec, config.rate_limit_per_min, config.max_concurrent) == (10, 500, 10)


def test_qbo_client_waits_out_a_bare_429_burst_and_counts_the_wait(
    sandbox: Sandbox, make_services: ServicesFactory
) -> None:
    services = make_services(QBO_THROTTLE_WINDOW_SECONDS="1", QBO_THROTTLE_MAX_WAIT_SECONDS="10")
    services.qbo.customers()  # token first, so only the API is throttled
    sandbox.set_faults("qbo", throttle_seconds=2.5)  # every call gets 429 (no Retry-After) for 2.5 s
    started = time.monotonic()

    terms = services.qbo.terms()

    assert terms and time.monotonic() - started >= 2.0
    assert services.throttling()["qbo"]["throttled"] >= 2
    assert services.throttling()["qbo"]["waited_seconds"] >= 2.0


def test_qbo_client_gives_up_after_its_bounded_wait(sandbox: Sandbox, make_services: ServicesFactory) -> None:
    services = make_services(QBO_THROTTLE_WINDOW_SECONDS="0.5", QBO_THROTTLE_MAX_WAIT_SECONDS="1")
    services.qbo.customers()
    sandbox.set_faults("qbo", throttle_seconds=30)

    with pytest.raises(errors.RateLimited):
        services.qbo.terms()


# --- 3: a requestid replays faults too; a new attempt gets a new one ------------------------------


def test_a_requestid_replays_a_validation_fault_but_not_a_5xx(
    sandbox: Sandbox, make_services: ServicesFactory
) -> None:
    qbo = make_services().qbo
    key = f"invoice#contract#{uuid.uuid4().hex[:8]}"
    bad = _invoice_body("C-6070", amount="1.00")

    with pytest.raises(errors.ValidationFault) as first:
        qbo.create_invoice(bad, request_id_for(key, "create"))
    with pytest.raises(errors.ValidationFault) as replayed:  # fixed data, same id: QBO replays the fault
        qbo.create_invoice(_invoice_body("C-6070"), request_id_for(key, "create"))
    created = qbo.create_invoice(_invoice_body("C-6070"), request_id_for(key, "create", 1))

    assert first.value.code == replayed.value.code == "6070"
    assert Decimal(str(created["TotalAmt"])) == Decimal("1050.00")

    sandbox.fail_next("qbo", 1, 503, match=r"^POST .*/invoice\?")
    again = qbo.create_invoice(_invoice_body("C-5XX"), request_id_for(key, "create", 2))  # 503 not stored
    assert again["Id"]


# --- 4: /send is never replayed blindly --------------------------------------------------------


def test_a_send_whose_answer_is_lost_is_not_replayed(
    sandbox: Sandbox, make_services: ServicesFactory
) -> None:
    """The client never repeats /send on a lost answer; the send job then reads the invoice
    (its stage=mailing check, tests/unit/jobs/test_send_run.py) before any other send."""
    qbo = make_services().qbo
    invoice = qbo.create_invoice(_invoice_body("C-SEND"), str(uuid.uuid4()))
    mails_before = len(disk_state(sandbox)["mails"])
    sandbox.fail_next("qbo", 1, "drop-after", match=r"^POST .*/send")  # mailed, then the line drops

    with pytest.raises(errors.TransportError):
        qbo.send_invoice(invoice["Id"], str(uuid.uuid4()))

    assert len(disk_state(sandbox)["mails"]) == mails_before + 1
    assert sum(1 for c in sandbox.requests("qbo") if c["path"].endswith(f"/{invoice['Id']}/send")) == 1
    assert qbo.get_invoice(invoice["Id"])["EmailStatus"] == "EmailSent"  # what the job reads


# --- 5: per-service timeouts -------------------------------------------------------------------


def test_the_qbo_session_waits_longer_than_qbos_own_120_s(make_settings) -> None:  # noqa: ANN001
    settings = make_settings(HTTP_TIMEOUT_SECONDS="")
    assert settings.timeout_for("qbo") > 120 and settings.timeout_for("clickup") == 60


# --- 7: what python-quickbooks sends is accepted --------------------------------------------------


def test_python_quickbooks_shapes_are_accepted(sandbox: Sandbox, services: Services) -> None:
    http, base, headers = _raw_qbo(sandbox, services)
    items = http.get(f"{base}/query", params={"query": "SELECT *, Sku FROM Item"}, headers=headers)
    body = _invoice_body("C-PYQB")
    body.update(TxnDate="", DueDate="")
    body["Line"].append(
        {
            "DetailType": "SalesItemLineDetail",
            "Amount": 0,
            "SalesItemLineDetail": {"ItemRef": {"value": "22"}, "Qty": 0, "UnitPrice": 150},
        }
    )
    created = http.post(
        f"{base}/invoice",
        params={"requestid": str(uuid.uuid4())},
        data=__import__("json").dumps(body, default=str),
        headers={**headers, "Content-Type": "application/json"},
    )

    assert items.status_code == 200 and items.json()["QueryResponse"]["Item"]
    assert created.status_code == 200, created.text
    assert created.json()["Invoice"]["TxnDate"]


# --- 8: no ORDERBY, no order --------------------------------------------------------------------


def test_unordered_queries_come_back_in_varying_order(sandbox: Sandbox, services: Services) -> None:
    http, base, headers = _raw_qbo(sandbox, services)

    def ids(text: str) -> tuple[str, ...]:
        time.sleep(0.12)  # QBO's 10/s
        rows = http.get(f"{base}/query", params={"query": text}, headers=headers).json()["QueryResponse"]
        return tuple(row["Id"] for row in rows["Customer"])

    unordered = {ids("SELECT * FROM Customer") for _ in range(6)}
    ordered = {ids("SELECT * FROM Customer ORDERBY Id") for _ in range(3)}
    assert len(unordered) > 1 and len(ordered) == 1


# --- 9: due dates only from the invoice's own terms -----------------------------------------------


def test_the_stand_in_never_borrows_the_customers_terms(make_services: ServicesFactory) -> None:
    qbo = make_services().qbo
    body = _invoice_body("C-DUE")  # Cedar has Net 30, the invoice names no terms
    created = qbo.create_invoice(body, str(uuid.uuid4()))
    with_terms = qbo.create_invoice({**body, "SalesTermRef": {"value": "3"}}, str(uuid.uuid4()))

    assert created["DueDate"] == created["TxnDate"] == "2026-10-31"
    assert with_terms["DueDate"] == "2026-11-30"
    assert qbo.default_term_id() == "3" and qbo.terms()["3"]["DueDays"] == 30
    assert CEDAR


# --- 10: Outlook upload sessions ------------------------------------------------------------------


def test_a_large_mail_upload_sends_every_chunk_in_either_spelling(
    sandbox: Sandbox, make_services: ServicesFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = make_services().graph
    spellings: set[str] = set()
    read_ranges = msgraph._next_ranges

    def spy(body: object) -> list[str]:
        spellings.update(
            k for k in (body if isinstance(body, dict) else {}) if k.lower() == "nextexpectedranges"
        )
        return read_ranges(body)

    monkeypatch.setattr(msgraph, "_next_ranges", spy)
    sender = sandbox.env["SENDER_EMAIL"]
    sizes = (3_500_000, 3_600_000)  # two upload sessions: the stand-in alternates the spelling
    for size in sizes:
        content = bytes(range(256)) * (size // 256)
        graph.send_mail(
            sender,
            ["ap@example.com"],
            f"Large {size}",
            "<p>x</p>",
            attachments=[Attachment("big.bin", "application/octet-stream", content)],
        )

    mails = [m for m in disk_state(sandbox)["mails"] if m["subject"].startswith("Large ")]
    got = sorted(a["size"] for m in mails for a in m["attachments"])
    assert got == sorted(size // 256 * 256 for size in sizes)
    assert spellings == {"nextExpectedRanges", "NextExpectedRanges"}  # the stand-in used both


# --- 13: Outlook takes 4 calls at once per mailbox; SharePoint is not counted --------------------


def test_graph_answers_a_fifth_concurrent_mailbox_call_with_429_but_not_sharepoint_calls(
    sandbox: Sandbox, make_services: ServicesFactory
) -> None:
    graph = make_services().graph
    http = trusted_session(sandbox)
    headers = {"Authorization": f"Bearer {graph.access_token()}"}
    base = sandbox.env["MSGRAPH_BASE_URL"]
    sandbox.set_faults("graph", latency_ms=400)  # the limit stays on: only latency is named

    def get(path: str) -> requests.Response:
        return http.get(f"{base}{path}", headers=headers)

    with ThreadPoolExecutor(max_workers=6) as pool:
        mailbox = list(pool.map(get, [f"/users/{sandbox.env['SENDER_EMAIL']}"] * 6))
        site = f"/sites/{sandbox.env['MS_GRAPH_HOSTNAME']}:{sandbox.env['SHAREPOINT_SITE_PATH']}"
        sharepoint = list(pool.map(get, [site] * 6))

    refused = [a for a in mailbox if a.status_code == 429]
    assert refused and all(a.headers.get("Retry-After") for a in refused), [a.status_code for a in mailbox]
    # the other four were served (403 here: reading a user needs a role this app lacks)
    assert sum(a.status_code != 429 for a in mailbox) == 4, [a.status_code for a in mailbox]
    assert [a.status_code for a in sharepoint] == [200] * 6


# --- 12: ClickUp 429 carries only X-RateLimit-*; the client sleeps until the reset ----------------


def test_clickup_429_has_only_rate_limit_headers_and_the_client_waits_for_the_reset(
    sandbox: Sandbox, make_services: ServicesFactory
) -> None:
    sandbox.set_faults("clickup", rate_limit_per_min=1, window_seconds=2)
    services = make_services(HTTP_MAX_RETRY_AFTER_SECONDS="5")
    http = trusted_session(sandbox)
    services.clickup.members()
    raw = http.get(f"{sandbox.env['CLICKUP_BASE_URL']}/team", headers={"Authorization": CLICKUP_TOKEN})
    assert raw.status_code == 429 and "Retry-After" not in raw.headers
    assert int(raw.headers["X-RateLimit-Reset"]) >= int(datetime.now(UTC).timestamp())

    members = services.clickup.members()

    assert members and services.throttling()["clickup"]["throttled"] >= 1
