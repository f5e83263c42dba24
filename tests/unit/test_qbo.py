"""QboClient: request shapes, paging, fault parsing, retries with the same requestid, 401 refresh.

Shape and parsing cases use ``responses``; anything that depends on urllib3 retries (429, 5xx,
timeouts) runs against the real sockets of ``local_http_server``.
"""

from __future__ import annotations

import json
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from integrations import errors
from integrations.config import Settings
from integrations.http import build_session
from integrations.qbo import QboClient, build_qbo, escape, retry_request_id
from tests.conftest import Scripted
from tests.unit.test_qbo_tokens import (
    REALM,
    SECRET_NAME,
    TOKEN_URL,
    FakeIntuit,
    FakeLedger,
    FakeSecretStore,
    assert_no_secret_in,
    make_tokens,
    qbo_secret,
)

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "qbo-samples"
BASE = "https://qbo.test"
API = f"{BASE}/v3/company/{REALM}"
STATIC_TOKEN = "access-token-static-1234"


def sample(name: str):
    path = SAMPLES / name
    return json.loads(path.read_text()) if name.endswith(".json") else path.read_text()


class StaticTokens:
    """Hands out one access token and counts invalidations (for tests not about refreshing)."""

    def __init__(self) -> None:
        self.invalidated: list[str | None] = []

    def access_token(self) -> str:
        return STATIC_TOKEN

    def invalidate(self, failed_token: str | None = None) -> None:
        self.invalidated.append(failed_token)


def make_client(base_url: str = BASE, session=None, tokens=None) -> QboClient:
    return QboClient(
        session or build_session("qbo", replay_safe_posts=True), tokens or StaticTokens(), REALM, base_url
    )


def fast_session(**kwargs):
    """Real retries, tiny waits: for the local HTTP server."""
    options = {"replay_safe_posts": True, "max_retries": 2, "backoff_factor": 0.01, "timeout": 0.3}
    return build_session("qbo", **(options | kwargs))


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def page(entity: str, ids: list[str]) -> dict:
    return {"QueryResponse": {entity: [{"Id": i} for i in ids], "startPosition": 1}, "time": "t"}


def fault(code: str, message: str = "Business Validation Error", detail: str = "details") -> dict:
    return {
        "Fault": {
            "Error": [{"Message": message, "Detail": detail, "code": code, "element": ""}],
            "type": "ValidationFault",
        },
        "time": "t",
    }


@pytest.fixture
def api():
    with responses.RequestsMock() as mock:
        yield mock


# ----------------------------------------------------------------------------------------------
# Reads and request shape
# ----------------------------------------------------------------------------------------------


def test_customers_query_includes_inactive_and_sends_minorversion_auth_and_accept(api):
    api.add(
        "GET", f"{API}/query", json=sample("customer-query-response.json"), headers={"intuit_tid": "tid-1"}
    )

    customers = make_client().customers()

    assert [c["DisplayName"] for c in customers] == ["Amy's Bird Sanctuary", "Weiskopf Consulting"]
    request = api.calls[0].request
    params = query_of(request.url)
    assert params["minorversion"] == ["75"]
    assert params["query"] == [
        "SELECT * FROM Customer WHERE Active IN (true, false) ORDERBY Id STARTPOSITION 1 MAXRESULTS 1000"
    ]
    assert request.headers["Authorization"] == f"Bearer {STATIC_TOKEN}"
    assert request.headers["Accept"] == "application/json"


def test_query_pages_until_a_short_page(api):
    for ids in (["1", "2"], ["3", "4"], ["5"]):
        api.add("GET", f"{API}/query", json=page("Item", ids))

    rows = list(make_client().query("Item", page_size=2))

    assert [r["Id"] for r in rows] == ["1", "2", "3", "4", "5"]
    statements = [query_of(c.request.url)["query"][0] for c in api.calls]
    assert [s.split(" STARTPOSITION ")[1] for s in statements] == [
        "1 MAXRESULTS 2",
        "3 MAXRESULTS 2",
        "5 MAXRESULTS 2",
    ]


def test_query_reply_without_entity_key_means_zero_rows(api):
    api.add("GET", f"{API}/query", json={"QueryResponse": {}, "time": "t"})

    assert make_client().invoices_between(date(2026, 2, 1), date(2026, 2, 28)) == []
    statement = query_of(api.calls[0].request.url)["query"][0]
    assert "WHERE TxnDate >= '2026-02-01' AND TxnDate <= '2026-02-28'" in statement


def test_query_reply_without_query_response_is_garbled(api):
    api.add("GET", f"{API}/query", json={"time": "t"}, headers={"intuit_tid": "tid-g"})

    with pytest.raises(errors.GarbledResponse, match="no QueryResponse") as caught:
        make_client().items()
    assert caught.value.request_id == "tid-g"


def test_query_that_repeats_the_same_page_stops_instead_of_looping(api):
    api.add("GET", f"{API}/query", json=page("Item", ["1", "2"]))  # the last reply repeats

    with pytest.raises(errors.GarbledResponse, match="same page"):
        list(make_client().query("Item", page_size=2))
    assert len(api.calls) == 2


def test_query_rejects_bad_entity_and_page_size():
    client = make_client()
    with pytest.raises(ValueError):
        client.query("Invoice; DROP", page_size=10)  # raised at the call, not at the first next()
    with pytest.raises(ValueError):
        client.query("Invoice", page_size=1001)


def test_escape_handles_backslash_before_apostrophe():
    assert escape("Amy's") == "Amy\\'s"
    assert escape("a\\'b") == "a\\\\\\'b"


def test_custom_txn_numbers_reads_preferences_and_defaults_to_false(api):
    api.add(
        "GET", f"{API}/preferences", json={"Preferences": {"SalesFormsPrefs": {"CustomTxnNumbers": True}}}
    )
    api.add("GET", f"{API}/preferences", json={"Preferences": {"AccountingInfoPrefs": {}}})

    client = make_client()
    assert client.custom_txn_numbers() is True
    assert client.custom_txn_numbers() is False


def test_get_invoice_returns_the_invoice_object(api):
    api.add("GET", f"{API}/invoice/130", json=sample("invoice.json"))

    assert make_client().get_invoice("130")["DocNumber"] == "1037"


# ----------------------------------------------------------------------------------------------
# Faults
# ----------------------------------------------------------------------------------------------


def test_html_on_200_is_garbled(api):
    api.add("GET", f"{API}/invoice/1", body="<html><body>Maintenance</body></html>", content_type="text/html")

    with pytest.raises(errors.GarbledResponse, match="expected JSON"):
        make_client().get_invoice("1")


def test_200_with_a_fault_body_is_an_error(api):
    api.add("GET", f"{API}/query", json=fault("4000", "Error parsing query"), headers={"intuit_tid": "tid-q"})

    with pytest.raises(errors.ValidationFault) as caught:
        make_client().items()
    assert caught.value.code == "4000" and caught.value.status == 200 and caught.value.request_id == "tid-q"
    assert "Error parsing query" in str(caught.value)


def test_query_fault_inside_query_response_is_an_error(api):
    api.add("GET", f"{API}/query", json={"QueryResponse": fault("4001", "Invalid query")})

    with pytest.raises(errors.ValidationFault, match="Invalid query"):
        make_client().items()


def test_xml_throttle_fault_is_parsed(api):
    api.add(
        "GET",
        f"{API}/query",
        status=429,
        body=sample("fault-429-throttle.xml"),
        content_type="application/xml",
        headers={"intuit_tid": "tid-429"},
    )

    with pytest.raises(errors.RateLimited) as caught:
        make_client().items()
    assert caught.value.code == "3001" and caught.value.request_id == "tid-429"
    assert "ThrottleExceeded" in caught.value.reason and "request limit was reached" in caught.value.reason


def test_lowercase_401_fault_is_parsed_after_one_refresh_and_retry(api):
    body = sample("fault-401-authentication.json")
    api.add("GET", f"{API}/invoice/5", status=401, json=body, headers={"intuit_tid": "tid-401"})
    tokens = StaticTokens()

    with pytest.raises(errors.AuthExpired) as caught:
        make_client(tokens=tokens).get_invoice("5")

    assert len(api.calls) == 2 and tokens.invalidated == [STATIC_TOKEN]
    assert caught.value.code == "3200" and caught.value.request_id == "tid-401"
    assert "Malformed bearer token" in caught.value.reason
    assert_no_secret_in(caught.value, [STATIC_TOKEN])


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "5010", errors.StaleObject),
        (400, "600", errors.DuplicateRequest),
        (400, "610", errors.NotFound),
        (400, "6070", errors.ValidationFault),
        (400, "2020", errors.ValidationFault),
        (400, "4001", errors.ValidationFault),
        (200, "6240", errors.ValidationFault),
        (403, "120", errors.PermissionDenied),
        (500, "10000", errors.ServerError),
    ],
)
def test_fault_codes_map_to_typed_errors_with_intuit_tid(api, status, code, kind):
    api.add("POST", f"{API}/invoice", status=status, json=fault(code), headers={"intuit_tid": "tid-x"})

    with pytest.raises(kind) as caught:
        make_client().create_invoice({"CustomerRef": {"value": "1"}}, "req-1")
    assert type(caught.value) is kind
    assert caught.value.code == code and caught.value.request_id == "tid-x"


@pytest.mark.parametrize(
    ("status", "body", "kind", "reason"),
    [
        (400, b"", errors.ValidationFault, "Bad Request"),
        (502, b"<html><h1>Bad gateway</h1></html>", errors.ServerError, "Bad gateway"),
        (400, b"\x00\xffgarbage", errors.ValidationFault, "garbage"),
        (400, b'{"fault": null}', errors.ValidationFault, "fault"),
    ],
)
def test_empty_and_garbage_error_bodies_still_give_a_typed_error(api, status, body, kind, reason):
    api.add("GET", f"{API}/invoice/9", status=status, body=body)

    with pytest.raises(kind) as caught:
        make_client().get_invoice("9")
    assert reason in caught.value.reason


# ----------------------------------------------------------------------------------------------
# Writes
# ----------------------------------------------------------------------------------------------


def test_create_invoice_posts_json_with_requestid_and_exact_decimals(api):
    api.add("POST", f"{API}/invoice", json=sample("invoice-create-response.json"))
    body = {
        "CustomerRef": {"value": "1"},
        "Line": [
            {
                "Amount": Decimal("1234.50"),
                "SalesItemLineDetail": {"Qty": Decimal("12.35"), "UnitPrice": Decimal("99.96")},
            }
        ],
    }

    invoice = make_client().create_invoice(body, "8f7c2a1e-uuid5-create")

    assert invoice["Id"] == "238"
    request = api.calls[0].request
    assert query_of(request.url) == {"requestid": ["8f7c2a1e-uuid5-create"], "minorversion": ["75"]}
    assert request.headers["Content-Type"] == "application/json"
    sent = json.loads(request.body)
    assert sent["Line"][0]["Amount"] == 1234.5 and sent["Line"][0]["SalesItemLineDetail"]["Qty"] == 12.35


def test_write_arguments_are_validated_before_any_call():
    client = make_client()
    with pytest.raises(ValueError, match="at most 50"):
        client.create_invoice({"CustomerRef": {"value": "1"}}, "x" * 51)
    with pytest.raises(ValueError, match="update"):
        client.create_invoice({"Id": "1"}, "req")
    with pytest.raises(ValueError, match="SyncToken"):
        client.sparse_update_invoice("1", {"SyncToken": "3"}, "req")
    with pytest.raises(TypeError, match="float"):
        client.create_invoice({"Line": [{"Amount": 127.02}]}, "req")
    with pytest.raises(ValueError, match="NaN"):
        client.create_invoice({"Line": [{"Amount": Decimal("NaN")}]}, "req")
    with pytest.raises(ValueError, match="empty"):
        client.get_invoice(" ")


def test_money_goes_on_the_wire_exactly_as_the_decimal_says(api):
    api.add("POST", f"{API}/invoice", json={"Invoice": {"Id": "9", "SyncToken": "0"}})
    line = {
        "Amount": Decimal("127.02"),
        "SalesItemLineDetail": {"Qty": Decimal("1.33"), "UnitPrice": Decimal("95.5")},
    }
    make_client().create_invoice({"Line": [line]}, "req")
    assert api.calls[0].request.body == (
        b'{"Line":[{"Amount":127.02,"SalesItemLineDetail":{"Qty":1.33,"UnitPrice":95.5}}]}'
    )


def test_sparse_update_uses_the_current_sync_token(api):
    api.add("GET", f"{API}/invoice/238", json={"Invoice": {"Id": "238", "SyncToken": "4"}})
    api.add(
        "POST",
        f"{API}/invoice",
        json={"Invoice": {"Id": "238", "SyncToken": "5", "EmailStatus": "EmailSent"}},
    )

    updated = make_client().sparse_update_invoice("238", {"EmailStatus": "EmailSent"}, "req-sparse")

    assert updated["SyncToken"] == "5"
    assert json.loads(api.calls[1].request.body) == {
        "Id": "238",
        "SyncToken": "4",
        "sparse": True,
        "EmailStatus": "EmailSent",
    }
    assert query_of(api.calls[1].request.url)["requestid"] == ["req-sparse"]


def test_stale_object_on_sparse_update_rereads_and_retries_with_a_new_request_id(api):
    api.add("GET", f"{API}/invoice/238", json={"Invoice": {"Id": "238", "SyncToken": "4"}})
    api.add("GET", f"{API}/invoice/238", json={"Invoice": {"Id": "238", "SyncToken": "6"}})
    api.add("POST", f"{API}/invoice", status=400, json=fault("5010", "Stale Object Error"))
    api.add("POST", f"{API}/invoice", json={"Invoice": {"Id": "238", "SyncToken": "7"}})

    updated = make_client().sparse_update_invoice("238", {"DueDate": "2026-04-30"}, "req-stale")

    assert updated["SyncToken"] == "7"
    posts = [c.request for c in api.calls if c.request.method == "POST"]
    assert [json.loads(p.body)["SyncToken"] for p in posts] == ["4", "6"]
    assert [query_of(p.url)["requestid"][0] for p in posts] == ["req-stale", "req-stale-r"]


def test_second_stale_object_is_raised(api):
    api.add("GET", f"{API}/invoice/238", json={"Invoice": {"Id": "238", "SyncToken": "4"}})
    api.add("POST", f"{API}/invoice", status=400, json=fault("5010", "Stale Object Error"))

    with pytest.raises(errors.StaleObject):
        make_client().sparse_update_invoice("238", {"DueDate": "2026-04-30"}, "req-stale")
    assert len([c for c in api.calls if c.request.method == "POST"]) == 2


def test_sparse_update_refuses_to_guess_a_missing_sync_token(api):
    api.add("GET", f"{API}/invoice/238", json={"Invoice": {"Id": "238"}})

    with pytest.raises(errors.GarbledResponse, match="SyncToken"):
        make_client().sparse_update_invoice("238", {"DueDate": "2026-04-30"}, "req")
    assert [c.request.method for c in api.calls] == ["GET"]


def test_retry_request_id_stays_within_50_characters():
    assert retry_request_id("abc") == "abc-r"
    long_id = "x" * 50
    derived = retry_request_id(long_id)
    assert len(derived) <= 50 and derived != long_id and derived == retry_request_id(long_id)


def test_send_invoice_posts_octet_stream_with_url_encoded_send_to(api):
    api.add("POST", f"{API}/invoice/96/send", json=sample("invoice-send-response.json"))

    invoice = make_client().send_invoice("96", "send-96-0", send_to="billing+acme@example.com")

    assert invoice["EmailStatus"] == "EmailSent"
    request = api.calls[0].request
    assert request.headers["Content-Type"] == "application/octet-stream"
    assert "sendTo=billing%2Bacme%40example.com" in request.url
    assert query_of(request.url)["sendTo"] == ["billing+acme@example.com"]
    assert query_of(request.url)["requestid"] == ["send-96-0"]


def test_invoice_pdf_returns_pdf_bytes_and_rejects_anything_else(api):
    api.add("GET", f"{API}/invoice/96/pdf", body=b"%PDF-1.4\n...", content_type="application/pdf")
    api.add("GET", f"{API}/invoice/97/pdf", body=b"<html>login</html>", content_type="text/html")
    api.add("GET", f"{API}/invoice/98/pdf", json=fault("610", "Object Not Found"))
    client = make_client()

    assert client.invoice_pdf("96").startswith(b"%PDF")
    assert api.calls[0].request.headers["Accept"] == "application/pdf"
    with pytest.raises(errors.GarbledResponse):
        client.invoice_pdf("97")
    with pytest.raises(errors.NotFound):
        client.invoice_pdf("98")


# ----------------------------------------------------------------------------------------------
# Tokens and retries end to end
# ----------------------------------------------------------------------------------------------


def test_401_mid_run_refreshes_once_saves_the_new_refresh_token_and_retries(api):
    store = FakeSecretStore({SECRET_NAME: qbo_secret()})
    intuit = FakeIntuit(store)
    api.add_callback("POST", TOKEN_URL, callback=intuit.token)
    api.add_callback(
        "GET",
        f"{API}/invoice/130",
        callback=intuit.api(lambda request: (200, {}, json.dumps(sample("invoice.json")))),
    )
    tokens = make_tokens(store, FakeLedger())
    client = make_client(tokens=tokens)

    assert client.get_invoice("130")["Id"] == "130"
    intuit.revoked.add("access-token-001")  # Intuit revokes the access token mid-run
    assert client.get_invoice("130")["Id"] == "130"

    assert store.values[SECRET_NAME]["refresh_token"] == "refresh-token-002"
    api_calls = [c.request for c in api.calls if "/invoice/" in c.request.url]
    assert [r.headers["Authorization"] for r in api_calls] == [
        "Bearer access-token-001",
        "Bearer access-token-001",
        "Bearer access-token-002",
    ]
    # every accepted API call used an access token whose refresh token was already saved
    assert intuit.api_uses == [("access-token-001", True), ("access-token-002", True)]


def test_create_retried_after_503_reuses_the_same_requestid(local_http_server):
    path = f"/v3/company/{REALM}/invoice"
    local_http_server.script(
        "POST",
        path,
        Scripted(503, "Service Unavailable", {"intuit_tid": "tid-503"}),
        Scripted(200, sample("invoice-create-response.json")),
    )

    invoice = make_client(local_http_server.url, fast_session()).create_invoice(
        {"CustomerRef": {"value": "1"}}, "req-503"
    )

    assert invoice["Id"] == "238"
    seen = local_http_server.calls("POST", path)
    assert len(seen) == 2
    assert [parse_qs(s.query)["requestid"] for s in seen] == [["req-503"], ["req-503"]]
    assert seen[0].body == seen[1].body


def test_429_with_retry_after_is_retried_then_succeeds(local_http_server):
    path = f"/v3/company/{REALM}/query"
    local_http_server.script(
        "GET",
        path,
        Scripted(
            429, sample("fault-429-throttle.xml"), {"Retry-After": "0", "Content-Type": "application/xml"}
        ),
        Scripted(200, page("Item", ["1"])),
    )

    assert make_client(local_http_server.url, fast_session()).items() == [{"Id": "1"}]
    assert len(local_http_server.calls("GET", path)) == 2


def test_429_that_never_ends_raises_rate_limited_after_the_budget(local_http_server):
    path = f"/v3/company/{REALM}/query"
    local_http_server.script(
        "GET",
        path,
        Scripted(429, sample("fault-429-throttle.xml"), {"Retry-After": "0", "intuit_tid": "tid-t"}),
    )

    with pytest.raises(errors.RateLimited) as caught:
        make_client(local_http_server.url, fast_session()).items()
    assert caught.value.code == "3001" and caught.value.request_id == "tid-t"
    assert len(local_http_server.calls("GET", path)) == 3


def test_timeout_raises_transport_error_after_retries(local_http_server):
    path = f"/v3/company/{REALM}/invoice/1"
    local_http_server.script("GET", path, Scripted(200, {"Invoice": {"Id": "1"}}, delay=0.3))

    # (requests reports read timeouts that used up the retries as a ConnectionError: same error type)
    with pytest.raises(errors.TransportError, match=r"timed out \(3 attempts\)"):
        make_client(local_http_server.url, fast_session(timeout=0.15)).get_invoice("1")
    deadline = time.monotonic() + 2  # the server thread may record the last call a moment later
    while len(local_http_server.calls("GET", path)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(local_http_server.calls("GET", path)) == 3
    time.sleep(0.2)  # let the late replies hit their closed sockets while this test still captures output


def test_validation_fault_is_not_retried(local_http_server):
    path = f"/v3/company/{REALM}/invoice"
    local_http_server.script(
        "POST", path, Scripted(400, fault("6070", "Amount calculation incorrect in the request"))
    )

    with pytest.raises(errors.ValidationFault) as caught:
        make_client(local_http_server.url, fast_session()).create_invoice(
            {"CustomerRef": {"value": "1"}}, "req-6070"
        )
    assert caught.value.code == "6070"
    assert len(local_http_server.calls("POST", path)) == 1


# ----------------------------------------------------------------------------------------------
# build_qbo
# ----------------------------------------------------------------------------------------------


def settings(**overrides) -> Settings:
    values = {
        "aws_region": "us-west-2",
        "qbo_secret_name": SECRET_NAME,
        "msgraph_secret_name": "MsGraph/10000",
        "clickup_secret_name": "ClickUp/10000",
        "robocorp_secret_name": "RoboCorp/10000/ClientAPIKeys",
        "registry_table": "Robocorp_Client_Org_Workspace_IDs",
        "ledger_table": "qbo-invoice-processor-ledger",
        "bookkeeper_email": "books@example.com",
        "sender_email": "robots@example.com",
        "ms_graph_hostname": "example.sharepoint.com",
        "sharepoint_site_path": "/sites/Finance",
        "qbo_token_url": TOKEN_URL,
    }
    return Settings(**(values | overrides))


@pytest.mark.parametrize(
    ("environment", "override", "expected"),
    [
        ("sandbox", None, "https://sandbox-quickbooks.api.intuit.com"),
        ("Production", None, "https://quickbooks.api.intuit.com"),
        ("sandbox", "http://127.0.0.1:9999", "http://127.0.0.1:9999"),
    ],
)
def test_build_qbo_picks_the_base_url_by_environment_or_override(environment, override, expected):
    store = FakeSecretStore({SECRET_NAME: qbo_secret(environment=environment)})

    client = build_qbo(settings(qbo_base_url=override), store, FakeLedger())

    assert client.base_url == expected and client.realm_id == REALM


def test_build_qbo_with_unknown_environment_is_a_config_error_naming_it():
    store = FakeSecretStore({SECRET_NAME: qbo_secret(environment="staging")})

    with pytest.raises(errors.ConfigError, match="staging"):
        build_qbo(settings(), store, FakeLedger())
