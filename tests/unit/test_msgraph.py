"""Graph client: msal tokens, the three ways to send mail, SharePoint uploads and failures.

Two ways to get a token in tests: real msal with its discovery and token endpoints mocked by
``responses`` (msal's http_client is our session, so ``responses`` sees its calls), or a fake
app injected through ``app_factory`` where real sockets are needed (``local_http_server``).
"""

from __future__ import annotations

import base64
import email
import json
from email import policy
from urllib.parse import unquote

import pytest
import requests
import responses

from integrations import errors
from integrations.config import Settings
from integrations.http import build_session
from integrations.logging import mask
from integrations.models import Attachment
from integrations.msgraph import GraphClient, build_graph
from tests.conftest import Scripted
from tests.settings import make_settings

GRAPH = "https://graph.test/v1.0"
AUTHORITY = "https://login.example.test"
TENANT = "tenant-0001"
SECRET = "client-SECRET-value~123456"
TOKEN = "eyJ0eXAi.fake-access-token.signature"
SENDER = "billing@example.com"
DISCOVERY = f"{AUTHORITY}/{TENANT}/v2.0/.well-known/openid-configuration"
TOKEN_URL = f"{AUTHORITY}/{TENANT}/oauth2/v2.0/token"
SITE = "contoso.sharepoint.com,2C712604-1370-44E7-A1F5-426573FDA80A,2D2244C3-251A-49EA-93A8-39E1C3A060FE"
UPLOAD = "https://upload.test/up/fe6987415ace7X4e1eF866337?tempauth=SIGNED"


class FakeApp:
    """Stands in for msal.ConfidentialClientApplication; records how it was built."""

    built: list[tuple[str, dict]] = []

    def __init__(self, client_id: str, **kwargs):
        FakeApp.built.append((client_id, kwargs))
        self.calls = 0

    def acquire_token_for_client(self, scopes):
        assert scopes == ["https://graph.microsoft.com/.default"]
        self.calls += 1
        return {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3599}


def graph(
    base: str = GRAPH, *, fake: bool = True, authority: str = AUTHORITY, session=None, **kw
) -> GraphClient:
    session = session or build_session("msgraph", backoff_factor=0.01, max_retry_after=0.05)
    if fake:
        kw["app_factory"] = FakeApp
    return GraphClient(session, TENANT, "app-id-1", SECRET, base, authority, **kw)


def mock_identity(rsps: responses.RequestsMock, token_reply: dict | None = None, status: int = 200) -> None:
    rsps.get(
        DISCOVERY,
        json={
            "authorization_endpoint": f"{AUTHORITY}/{TENANT}/oauth2/v2.0/authorize",
            "token_endpoint": TOKEN_URL,
            "issuer": f"{AUTHORITY}/{TENANT}/v2.0",
        },
    )
    rsps.post(
        TOKEN_URL,
        status=status,
        json=token_reply or {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3599},
    )


def calls_to(rsps: responses.RequestsMock, method: str, prefix: str) -> list:
    return [c for c in rsps.calls if c.request.method == method and c.request.url.startswith(prefix)]


# -- tokens ------------------------------------------------------------------------------------
def test_one_msal_app_is_built_on_first_use_and_its_token_reused():
    with responses.RequestsMock() as rsps:
        mock_identity(rsps)
        rsps.get(f"{GRAPH}/sites/contoso.sharepoint.com:/sites/Finance", json={"id": SITE})
        client = graph(fake=False)
        assert len(rsps.calls) == 0  # building the client talks to nobody
        assert client.resolve_site("contoso.sharepoint.com", "/sites/Finance") == SITE
        assert client.resolve_site("contoso.sharepoint.com", "/sites/Finance") == SITE
        assert len(calls_to(rsps, "GET", DISCOVERY)) == 1
        assert len(calls_to(rsps, "POST", TOKEN_URL)) == 1
        site_calls = calls_to(rsps, "GET", GRAPH)
        assert {c.request.headers["Authorization"] for c in site_calls} == {f"Bearer {TOKEN}"}
        token_form = calls_to(rsps, "POST", TOKEN_URL)[0].request.body
    assert "grant_type=client_credentials" in token_form
    assert "https%3A%2F%2Fgraph.microsoft.com%2F.default" in token_form
    assert mask(TOKEN) == "***" and mask(SECRET) == "***"


def test_msal_app_gets_the_tenant_authority_our_session_and_instance_discovery_only_for_entra():
    FakeApp.built.clear()
    session = build_session("msgraph")
    for authority in (f"{AUTHORITY}/", "https://login.microsoftonline.com"):
        client = graph(authority=authority, session=session)
        client.access_token()
        client.access_token()
    (custom_id, custom), (public_id, public) = FakeApp.built
    assert custom_id == public_id == "app-id-1"
    assert custom["authority"] == f"{AUTHORITY}/{TENANT}" and custom["instance_discovery"] is False
    assert public["authority"] == f"https://login.microsoftonline.com/{TENANT}"
    assert "instance_discovery" not in public
    assert custom["http_client"] is session and custom["client_credential"] == SECRET


def test_a_token_error_is_a_service_error_without_the_client_secret():
    error = {
        "error": "invalid_client",
        "error_description": f"AADSTS7000215: Invalid client secret provided. Got {SECRET}\r\nTrace ID: 255d1aef",
        "error_codes": [7000215],
    }
    with responses.RequestsMock() as rsps:
        mock_identity(rsps, error, status=401)
        with pytest.raises(errors.ServiceError) as caught:
            graph(fake=False).resolve_site("contoso.sharepoint.com", "/sites/Finance")
    assert caught.value.operation == "token" and caught.value.code == "invalid_client"
    assert caught.value.reason.startswith("invalid_client: AADSTS7000215: Invalid client secret provided.")
    assert SECRET not in str(caught.value) and "Trace ID" not in str(caught.value)


def test_an_unreachable_identity_provider_is_a_transport_error():
    with responses.RequestsMock() as rsps:
        rsps.get(DISCOVERY, body=requests.exceptions.ConnectionError("refused"))
        with pytest.raises(errors.TransportError) as caught:
            graph(fake=False).access_token()
    assert caught.value.operation == "token" and SECRET not in str(caught.value)


# -- mail --------------------------------------------------------------------------------------
PDF = Attachment("Invoice 10002-202610.pdf", "application/pdf", b"%PDF-1.7 fake invoice")


def test_mail_with_a_text_part_goes_as_base64_mime_with_alternative_bodies_and_attachment():
    with responses.RequestsMock() as rsps:
        rsps.post(f"{GRAPH}/users/{SENDER}/sendMail", status=202)
        graph().send_mail(
            SENDER,
            ["ap@acme.test"],
            "Invoice 10002-202610",
            "<p>Hello</p>",
            text="Hello",
            attachments=[PDF],
            cc=["cfo@acme.test"],
            bcc=["archive@example.com"],
        )
        request = rsps.calls[0].request
    assert request.headers["Content-Type"] == "text/plain"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    mime = email.message_from_bytes(base64.b64decode(request.body, validate=True), policy=policy.default)
    assert mime.get_content_type() == "multipart/mixed"
    assert (mime["From"], mime["To"], mime["Cc"], mime["Bcc"]) == (
        SENDER,
        "ap@acme.test",
        "cfo@acme.test",
        "archive@example.com",
    )
    alternative, attached = mime.get_payload()
    assert alternative.get_content_type() == "multipart/alternative"
    plain, html = alternative.get_payload()
    assert (plain.get_content_type(), plain.get_content().strip()) == ("text/plain", "Hello")
    assert (html.get_content_type(), html.get_content().strip()) == ("text/html", "<p>Hello</p>")
    assert attached.get_filename() == PDF.name and attached.get_content() == PDF.content
    assert attached.get_content_type() == "application/pdf"


def test_mail_without_a_text_part_goes_as_json_with_inline_file_attachments():
    with responses.RequestsMock() as rsps:
        rsps.post(f"{GRAPH}/users/{SENDER}/sendMail", status=202)
        graph().send_mail(
            SENDER, ["ap@acme.test", "ar@acme.test"], "Summary", "<b>3 invoices</b>", attachments=[PDF]
        )
        request = rsps.calls[0].request
    assert request.headers["Content-Type"] == "application/json"
    message = json.loads(request.body)["message"]
    assert message["body"] == {"contentType": "HTML", "content": "<b>3 invoices</b>"}
    assert [r["emailAddress"]["address"] for r in message["toRecipients"]] == ["ap@acme.test", "ar@acme.test"]
    (attachment,) = message["attachments"]
    assert attachment["@odata.type"] == "#microsoft.graph.fileAttachment"
    assert base64.b64decode(attachment["contentBytes"]) == PDF.content and attachment["name"] == PDF.name


def test_a_mail_over_3mb_is_drafted_attached_through_an_upload_session_and_sent():
    big = Attachment("usage-detail.csv", "text/csv", bytes(range(256)) * 13_672)  # 3,500,032 bytes
    outlook_upload = "https://outlook.office.test/api/v2.0/Users('x')/Messages('m1')/AttachmentSessions('s1')?authtoken=eyJSIGNED"
    messages = f"{GRAPH}/users/{SENDER}/messages"
    with responses.RequestsMock() as rsps:
        rsps.post(messages, status=201, json={"id": "m1"})
        rsps.post(f"{messages}/m1/attachments", status=201, json={"id": "a1"})
        rsps.post(
            f"{messages}/m1/attachments/createUploadSession",
            status=201,
            json={"uploadUrl": outlook_upload, "nextExpectedRanges": ["0-"]},
        )
        rsps.put(outlook_upload, status=200, json={"nextExpectedRanges": ["3145728"]})
        rsps.put(
            outlook_upload, status=201, headers={"Location": "https://outlook.office.test/attachments/a2"}
        )
        rsps.post(f"{messages}/m1/send", status=202)
        graph().send_mail(
            SENDER, ["ap@acme.test"], "Usage", "<p>Usage</p>", text="Usage", attachments=[PDF, big]
        )
        sequence = [(c.request.method, c.request.url.split("?")[0].rsplit("/", 1)[-1]) for c in rsps.calls]
        chunks = calls_to(rsps, "PUT", outlook_upload)
        draft = json.loads(rsps.calls[0].request.body)
        session_body = json.loads(
            calls_to(rsps, "POST", f"{messages}/m1/attachments/createUploadSession")[0].request.body
        )
    assert sequence == [
        ("POST", "messages"),
        ("POST", "attachments"),  # 21 bytes: a plain POST (upload sessions refuse files under 3 MB)
        ("POST", "createUploadSession"),
        ("PUT", "AttachmentSessions('s1')"),
        ("PUT", "AttachmentSessions('s1')"),
        ("POST", "send"),
    ]
    assert "attachments" not in draft and draft["body"]["contentType"] == "HTML"
    assert session_body == {
        "AttachmentItem": {"attachmentType": "file", "name": "usage-detail.csv", "size": 3_500_032}
    }
    assert [c.request.headers["Content-Range"] for c in chunks] == [
        "bytes 0-3145727/3500032",
        "bytes 3145728-3500031/3500032",
    ]
    assert all("Authorization" not in c.request.headers for c in chunks)
    assert b"".join(c.request.body for c in chunks) == big.content
    assert mask(outlook_upload) == "***"


def test_a_failed_attachment_upload_deletes_the_draft_and_sends_nothing():
    messages = f"{GRAPH}/users/{SENDER}/messages"
    big = Attachment("big.bin", "application/octet-stream", b"x" * 3_500_000)
    with responses.RequestsMock() as rsps:
        rsps.post(messages, status=201, json={"id": "m1"})
        rsps.post(
            f"{messages}/m1/attachments/createUploadSession",
            status=403,
            json={"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}},
        )
        rsps.delete(f"{messages}/m1", status=204)
        with pytest.raises(errors.PermissionDenied):
            graph().send_mail(SENDER, ["ap@acme.test"], "Usage", "<p>x</p>", attachments=[big])
        assert not calls_to(rsps, "POST", f"{messages}/m1/send")
        assert len(calls_to(rsps, "DELETE", f"{messages}/m1")) == 1


def test_a_throttled_mail_is_retried_after_retry_after_and_accepted_once(local_http_server):
    path = f"/users/{SENDER}/sendMail"
    local_http_server.script(
        "POST",
        path,
        Scripted(429, {"error": {"code": "TooManyRequests"}}, {"Retry-After": "30"}),
        Scripted(202),
    )
    graph(local_http_server.url).send_mail(SENDER, ["ap@acme.test"], "Hi", "<p>Hi</p>")
    seen = local_http_server.calls("POST", path)
    assert len(seen) == 2  # one refused (429), one accepted (202): the mail went out exactly once
    assert {r.headers.get("Authorization") for r in seen} == {f"Bearer {TOKEN}"}


def test_a_mail_is_not_repeated_after_a_server_error(local_http_server):
    path = f"/users/{SENDER}/sendMail"
    local_http_server.script(
        "POST",
        path,
        Scripted(503, {"error": {"code": "ServiceUnavailable", "message": "busy"}}),
        Scripted(202),
    )
    with pytest.raises(errors.ServerError):
        graph(local_http_server.url).send_mail(SENDER, ["ap@acme.test"], "Hi", "<p>Hi</p>")
    assert len(local_http_server.calls("POST", path)) == 1


def test_a_mail_that_times_out_is_a_transport_error_and_not_repeated(local_http_server):
    path = f"/users/{SENDER}/sendMail"
    local_http_server.script("POST", path, Scripted(202, delay=0.5))
    session = build_session("msgraph", timeout=0.1, backoff_factor=0.01)
    with pytest.raises(errors.TransportError):
        graph(local_http_server.url, session=session).send_mail(SENDER, ["ap@acme.test"], "Hi", "<p>Hi</p>")
    assert len(local_http_server.calls("POST", path)) == 1


def test_a_denied_mailbox_is_permission_denied_with_graphs_code_and_request_id():
    with responses.RequestsMock() as rsps:
        rsps.post(
            f"{GRAPH}/users/{SENDER}/sendMail",
            status=403,
            headers={"request-id": "2f038156-cf40"},
            json={"error": {"code": "ErrorAccessDenied", "message": "Access to OData is disabled."}},
        )
        with pytest.raises(errors.PermissionDenied) as caught:
            graph().send_mail(SENDER, ["ap@acme.test"], "Hi", "<p>Hi</p>")
    assert (caught.value.code, caught.value.reason, caught.value.request_id) == (
        "ErrorAccessDenied",
        "Access to OData is disabled.",
        "2f038156-cf40",
    )


# -- SharePoint --------------------------------------------------------------------------------
def test_site_is_resolved_by_host_and_path():
    with responses.RequestsMock() as rsps:
        rsps.get(f"{GRAPH}/sites/contoso.sharepoint.com:/sites/Finance", json={"id": SITE, "name": "Finance"})
        assert graph().resolve_site("contoso.sharepoint.com", "/sites/Finance") == SITE


def test_site_reply_that_is_not_json_is_garbled(local_http_server):
    local_http_server.script(
        "GET", "/sites/contoso.sharepoint.com:/sites/Finance", Scripted(200, "<html>oops</html>")
    )
    with pytest.raises(errors.GarbledResponse):
        graph(local_http_server.url).resolve_site("contoso.sharepoint.com", "/sites/Finance")


def test_site_lookup_is_retried_after_server_errors(local_http_server):
    path = "/sites/contoso.sharepoint.com:/sites/Finance"
    local_http_server.script("GET", path, Scripted(500, "boom"), Scripted(200, {"id": SITE}))
    assert graph(local_http_server.url).resolve_site("contoso.sharepoint.com", "/sites/Finance") == SITE
    assert len(local_http_server.calls("GET", path)) == 2


def test_a_small_file_is_put_at_its_quoted_path_with_the_conflict_behaviour():
    path = "Invoices/2026-10/10002 - O'Brien & Söhne #1/usage.csv"
    item = {"id": "0123456789abc", "name": "usage.csv", "size": 35, "file": {}}
    with responses.RequestsMock() as rsps:
        rsps.put(
            f"{GRAPH}/sites/{SITE}/drive/root:/Invoices/2026-10/10002%20-%20O%27Brien%20%26%20S%C3%B6hne%20%231/usage.csv:/content",
            status=201,
            json=item,
        )
        assert graph().upload_file(SITE, path, b"run_id,seconds\nr1,60\n", conflict="fail") == item
        request = rsps.calls[0].request
    assert request.url.endswith(":/content?@microsoft.graph.conflictBehavior=fail")
    assert unquote(request.url.split("root:/")[1].split(":/content")[0]) == path
    assert (
        request.headers["Authorization"] == f"Bearer {TOKEN}" and request.body == b"run_id,seconds\nr1,60\n"
    )


def test_a_large_file_is_uploaded_in_320kib_multiple_chunks_without_authorization():
    content = bytes(range(256)) * 17_579  # 4,500,224 bytes
    chunk = 4 * 327_680
    root = f"{GRAPH}/sites/{SITE}/drive/root:/Invoices/2026-10/big.pdf:"
    final = {"id": "912310013A123", "name": "big.pdf", "size": len(content), "file": {}}
    with responses.RequestsMock() as rsps:
        rsps.post(
            f"{root}/createUploadSession",
            json={"uploadUrl": UPLOAD, "expirationDateTime": "2026-11-04T09:21:55Z"},
        )
        for start in (chunk, 2 * chunk, 3 * chunk):
            rsps.put(UPLOAD, status=202, json={"nextExpectedRanges": [f"{start}-"]})
        rsps.put(UPLOAD, status=201, json=final)
        item = graph(drive_chunk_bytes=chunk).upload_file(
            SITE, "Invoices/2026-10/big.pdf", content, conflict="rename"
        )
        session_body = json.loads(rsps.calls[0].request.body)
        puts = calls_to(rsps, "PUT", UPLOAD)
    assert item == final
    assert session_body == {"item": {"@microsoft.graph.conflictBehavior": "rename"}}
    assert [p.request.headers["Content-Range"] for p in puts] == [
        "bytes 0-1310719/4500224",
        "bytes 1310720-2621439/4500224",
        "bytes 2621440-3932159/4500224",
        "bytes 3932160-4500223/4500224",
    ]
    assert all(len(p.request.body) % 327_680 == 0 for p in puts[:-1])
    assert all("Authorization" not in p.request.headers for p in puts)
    assert b"".join(p.request.body for p in puts) == content
    assert mask(UPLOAD) == "***"


def test_a_large_upload_resumes_where_the_server_says_it_is():
    content = b"a" * (5 * 1024 * 1024)
    chunk = 8 * 327_680  # 2,621,440
    root = f"{GRAPH}/sites/{SITE}/drive/root:/Invoices/big.bin:"
    with responses.RequestsMock() as rsps:
        rsps.post(f"{root}/createUploadSession", json={"uploadUrl": UPLOAD})
        rsps.put(UPLOAD, status=202, json={"nextExpectedRanges": ["327680-"]})  # kept only the first 320 KiB
        rsps.put(
            UPLOAD, status=416, json={"error": {"code": "invalidRange", "message": "range already received"}}
        )
        rsps.get(UPLOAD, json={"nextExpectedRanges": ["2949120-5242879"]})
        rsps.put(UPLOAD, status=200, json={"id": "item-1", "name": "big.bin"})
        item = graph(drive_chunk_bytes=chunk).upload_file(SITE, "Invoices/big.bin", content)
        ranges = [p.request.headers["Content-Range"] for p in calls_to(rsps, "PUT", UPLOAD)]
    assert item["id"] == "item-1"
    assert ranges == [
        "bytes 0-2621439/5242880",
        "bytes 327680-2949119/5242880",
        "bytes 2949120-5242879/5242880",
    ]


def test_a_large_upload_that_fails_cancels_its_session():
    root = f"{GRAPH}/sites/{SITE}/drive/root:/Invoices/big.bin:"
    with responses.RequestsMock() as rsps:
        rsps.post(f"{root}/createUploadSession", json={"uploadUrl": UPLOAD})
        rsps.put(
            UPLOAD,
            status=507,
            json={"error": {"code": "quotaLimitReached", "message": "Insufficient Storage"}},
        )
        rsps.delete(UPLOAD, status=204)
        with pytest.raises(errors.ServerError):
            graph().upload_file(SITE, "Invoices/big.bin", b"b" * (4 * 1024 * 1024), conflict="fail")
        assert len(calls_to(rsps, "DELETE", UPLOAD)) == 1
        assert "Authorization" not in calls_to(rsps, "DELETE", UPLOAD)[0].request.headers


@pytest.mark.parametrize(
    ("conflict", "path"), [("overwrite", "Invoices/a.csv"), ("replace", "Invoices//a.csv"), ("replace", "")]
)
def test_upload_refuses_unknown_conflict_behaviour_and_empty_path_parts(conflict, path):
    with pytest.raises(ValueError):
        graph().upload_file(SITE, path, b"x", conflict=conflict)


# -- wiring ------------------------------------------------------------------------------------
def settings() -> Settings:
    return make_settings(sender_email=SENDER, msgraph_base_url=GRAPH, msgraph_authority_url=AUTHORITY)


def test_build_graph_names_missing_fields_but_never_values():
    with pytest.raises(errors.ConfigError) as caught:
        build_graph(settings(), {"client_secret": SECRET, "client_id": ""})
    assert "tenant_id, client_id" in str(caught.value) and SECRET not in str(caught.value)
    assert mask(SECRET) == "***"


def test_build_graph_makes_no_network_call_and_uses_the_configured_urls():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        client = build_graph(
            settings(), {"tenant_id": TENANT, "client_id": "app-id-1", "client_secret": SECRET}
        )
        assert len(rsps.calls) == 0
    assert (client.base_url, client.authority) == (GRAPH, f"{AUTHORITY}/{TENANT}")
