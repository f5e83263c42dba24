"""The Microsoft identity + Graph stand-ins over real HTTPS: MSAL tokens, mail to .eml, SharePoint files."""

from __future__ import annotations

import base64
from email.message import EmailMessage
from pathlib import Path

import msal
import pytest
import requests

from sandbox import Sandbox

# One sandbox per module (module-scoped fixture): keep the module on one xdist worker.
pytestmark = pytest.mark.xdist_group("sandbox-graph")

TENANT = "3f6d2a8e-1b4c-4e7a-9d2f-6c8b0a1e5f47"
CLIENT_ID = "c41e8b27-6a3d-4f15-b9e2-0d7a5c3f8e61"
SECRET = "sbx~Q8m.Vn2Lp4Rk7Tb1Yd6Hs3Gf0Jc9Xw5Zq"
SENDER = "billing@brightline-automation.example"
SITE = "brightlineautomation.sharepoint.com:/sites/Finance"
UNIT = 320 * 1024


def _app(
    sandbox: Sandbox, http: requests.Session, secret: str = SECRET
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential=secret,
        authority=f"{sandbox.env['MSGRAPH_AUTHORITY_URL']}/{TENANT}",
        http_client=http,
        instance_discovery=False,
    )


@pytest.fixture
def graph(sandbox: Sandbox, http: requests.Session) -> tuple[str, dict[str, str]]:
    token = _app(sandbox, http).acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    return sandbox.env["MSGRAPH_BASE_URL"], {"Authorization": f"Bearer {token['access_token']}"}


def _mail(sandbox: Sandbox, subject: str) -> dict:
    return next(m for m in sandbox.state()["mails"] if m["subject"] == subject)


def test_msal_gets_a_token_and_a_wrong_secret_is_refused(sandbox: Sandbox, http: requests.Session) -> None:
    good = _app(sandbox, http).acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    bad = _app(sandbox, http, secret="wrong").acquire_token_for_client(
        scopes=["https://graph.microsoft.com/.default"]
    )

    assert good["token_type"] == "Bearer" and good["access_token"] and good["expires_in"] > 3000
    assert bad["error"] == "invalid_client" and 7000215 in bad["error_codes"]


def test_graph_refuses_calls_without_a_valid_token(sandbox: Sandbox, http: requests.Session) -> None:
    response = http.get(
        f"{sandbox.env['MSGRAPH_BASE_URL']}/sites/{SITE}", headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 401 and response.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert response.headers["request-id"]


def test_send_mail_json_becomes_an_eml_with_attachments(
    sandbox: Sandbox, http: requests.Session, graph: tuple
) -> None:
    base, headers = graph
    message = {
        "subject": "Invoices created for 2026-10",
        "body": {"contentType": "HTML", "content": "<p>6 invoices created</p>"},
        "toRecipients": [{"emailAddress": {"address": "bookkeeper@brightline-automation.example"}}],
        "ccRecipients": [
            {"emailAddress": {"address": "owner@brightline-automation.example", "name": "Owner"}}
        ],
        "attachments": [
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": "usage – O'Brien & Søn.csv",
                "contentType": "text/csv",
                "contentBytes": base64.b64encode(b"a,b\n1,2\n").decode(),
            }
        ],
    }
    response = http.post(
        f"{base}/users/{SENDER.upper()}/sendMail",
        json={"message": message, "saveToSentItems": False},
        headers=headers,
    )

    assert response.status_code == 202 and response.content == b""
    mail = _mail(sandbox, "Invoices created for 2026-10")
    assert mail["to"] == ["bookkeeper@brightline-automation.example"] and mail["cc"] == [
        "owner@brightline-automation.example"
    ]
    assert SENDER in mail["from"] and mail["html"].strip() == "<p>6 invoices created</p>"
    assert mail["attachments"] == [
        {"name": "usage – O'Brien & Søn.csv", "content_type": "text/csv", "size": 8}
    ]
    assert Path(mail["path"]).suffix == ".eml"


def test_send_mail_as_mime_and_broken_base64(sandbox: Sandbox, http: requests.Session, graph: tuple) -> None:
    base, headers = graph
    mime = EmailMessage()
    mime["To"] = "ap@acmecpa.example"
    mime["Subject"] = "Invoice 10002-202610"
    mime.set_content("plain text body")
    mime.add_alternative("<p>html body</p>", subtype="html")
    mime.add_attachment(
        b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="Invoice_10002-202610.pdf"
    )
    ok = http.post(
        f"{base}/users/{SENDER}/sendMail",
        data=base64.b64encode(mime.as_bytes()),
        headers={**headers, "Content-Type": "text/plain"},
    )
    broken = http.post(
        f"{base}/users/{SENDER}/sendMail",
        data=b"not base64 at all!",
        headers={**headers, "Content-Type": "text/plain"},
    )

    assert ok.status_code == 202
    mail = _mail(sandbox, "Invoice 10002-202610")
    assert mail["text"].strip() == "plain text body" and mail["html"].strip() == "<p>html body</p>"
    assert mail["attachments"][0]["name"] == "Invoice_10002-202610.pdf" and SENDER in mail["from"]
    assert (
        broken.status_code == 400 and broken.json()["error"]["code"] == "ErrorMimeContentInvalidBase64String"
    )


def test_sending_from_another_mailbox_is_denied_like_an_access_policy(
    http: requests.Session, graph: tuple
) -> None:
    base, headers = graph
    message = {
        "subject": "x",
        "body": {"contentType": "Text", "content": "x"},
        "toRecipients": [{"emailAddress": {"address": "a@b.example"}}],
    }
    response = http.post(
        f"{base}/users/ceo@brightline-automation.example/sendMail", json={"message": message}, headers=headers
    )
    assert response.status_code == 403
    assert (
        response.json()["error"]["code"] == "ErrorAccessDenied"
        and response.json()["error"]["message"] == "Access to OData is disabled."
    )


def test_large_attachment_goes_through_a_draft_and_an_upload_session(
    sandbox: Sandbox, http: requests.Session, graph: tuple
) -> None:
    base, headers = graph
    content = bytes(range(256)) * 20000  # 5,120,000 bytes
    draft = http.post(
        f"{base}/users/{SENDER}/messages",
        json={
            "subject": "Big PDF",
            "body": {"contentType": "Text", "content": "see attachment"},
            "toRecipients": [{"emailAddress": {"address": "ap@acmecpa.example"}}],
        },
        headers=headers,
    ).json()
    session = http.post(
        f"{base}/users/{SENDER}/messages/{draft['id']}/attachments/createUploadSession",
        json={
            "AttachmentItem": {
                "attachmentType": "file",
                "name": "big.pdf",
                "size": len(content),
                "contentType": "application/pdf",
            }
        },
        headers=headers,
    )
    upload_url = session.json()["uploadUrl"]
    with_auth = http.put(
        upload_url, data=content[:100], headers={**headers, "Content-Range": f"bytes 0-99/{len(content)}"}
    )
    chunk = 3 * 1024 * 1024
    answers = []
    for start in range(0, len(content), chunk):
        part = content[start : start + chunk]
        answers.append(
            http.put(
                upload_url,
                data=part,
                headers={"Content-Range": f"bytes {start}-{start + len(part) - 1}/{len(content)}"},
            )
        )
    sent = http.post(f"{base}/users/{SENDER}/messages/{draft['id']}/send", headers=headers)

    assert session.status_code == 201 and session.json()["nextExpectedRanges"] == ["0-"]
    assert with_auth.status_code == 401
    ranges = {k.lower(): v for k, v in answers[0].json().items()}["nextexpectedranges"]
    assert [a.status_code for a in answers] == [200, 201] and ranges == [f"{chunk}-"]
    assert answers[1].headers["Location"]
    assert sent.status_code == 202
    mail = _mail(sandbox, "Big PDF")
    assert mail["attachments"] == [
        {"name": "big.pdf", "content_type": "application/pdf", "size": len(content)}
    ]


def test_site_resolves_to_a_composite_id(http: requests.Session, graph: tuple) -> None:
    base, headers = graph
    site = http.get(f"{base}/sites/{SITE}", headers=headers)
    missing = http.get(f"{base}/sites/brightlineautomation.sharepoint.com:/sites/Nope", headers=headers)

    hostname, collection, web = site.json()["id"].split(",")
    assert (
        site.status_code == 200
        and hostname == "brightlineautomation.sharepoint.com"
        and len(collection) == len(web) == 36
    )
    assert missing.status_code == 404


def test_small_upload_honours_conflict_behaviour(
    sandbox: Sandbox, http: requests.Session, graph: tuple
) -> None:
    base, headers = graph
    site_id = http.get(f"{base}/sites/{SITE}", headers=headers).json()["id"]
    path = "Invoices/2026-10/10005 - O'Brien & Søn Ltd/usage-2026-10.csv"
    url = f"{base}/sites/{site_id}/drive/root:/{path}:/content"

    created = http.put(
        url, data=b"run_id,seconds\n", params={"@microsoft.graph.conflictBehavior": "fail"}, headers=headers
    )
    conflict = http.put(
        url, data=b"other", params={"@microsoft.graph.conflictBehavior": "fail"}, headers=headers
    )
    replaced = http.put(url, data=b"run_id,seconds\nr1,60\n", headers=headers)
    renamed = http.put(
        url, data=b"third", params={"@microsoft.graph.conflictBehavior": "rename"}, headers=headers
    )
    illegal = http.put(
        f"{base}/sites/{site_id}/drive/root:/Invoices/a|b.csv:/content", data=b"x", headers=headers
    )

    assert (
        created.status_code == 201
        and created.json()["name"] == "usage-2026-10.csv"
        and created.json()["size"] == 15
    )
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "nameAlreadyExists"
    assert (
        replaced.status_code == 200
        and renamed.status_code == 201
        and renamed.json()["name"] == "usage-2026-10 1.csv"
    )
    assert illegal.status_code == 400
    files = {f["path"]: f for f in sandbox.state()["files"]}
    local = files[f"brightlineautomation.sharepoint.com/sites/Finance/{path}"]["local_path"]
    assert Path(local).read_bytes() == b"run_id,seconds\nr1,60\n"


def test_upload_session_needs_320_kib_chunks_and_detects_conflicts_at_commit(
    sandbox: Sandbox, http: requests.Session, graph: tuple
) -> None:
    base, headers = graph
    site_id = http.get(f"{base}/sites/{SITE}", headers=headers).json()["id"]
    content = b"x" * (UNIT * 3 + 1000)
    path = "Invoices/2026-10/big-usage.csv"

    def session() -> str:
        response = http.post(
            f"{base}/sites/{site_id}/drive/root:/{path}:/createUploadSession",
            json={"item": {"@microsoft.graph.conflictBehavior": "fail"}},
            headers=headers,
        )
        assert response.status_code == 200
        return response.json()["uploadUrl"]

    def put(url: str, start: int, end: int) -> requests.Response:
        return http.put(
            url, data=content[start:end], headers={"Content-Range": f"bytes {start}-{end - 1}/{len(content)}"}
        )

    url = session()
    odd = put(url, 0, 1000)
    first = put(url, 0, UNIT * 2)
    out_of_order = put(url, UNIT * 3, len(content))
    second = put(url, UNIT * 2, UNIT * 3)
    last = put(url, UNIT * 3, len(content))
    url_again = session()
    put(url_again, 0, UNIT * 3)
    conflict = put(url_again, UNIT * 3, len(content))

    assert odd.status_code == 400 and "320 KiB" in odd.json()["error"]["message"]
    assert first.status_code == 202 and first.json()["nextExpectedRanges"] == [f"{UNIT * 2}-"]
    assert out_of_order.status_code == 416
    assert second.status_code == 202 and last.status_code == 201 and last.json()["size"] == len(content)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "nameAlreadyExists"
    stored = {f["path"]: f for f in sandbox.state()["files"]}[
        f"brightlineautomation.sharepoint.com/sites/Finance/{path}"
    ]
    assert stored["size"] == len(content)
