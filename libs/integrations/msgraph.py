"""Microsoft Graph client: app-only mail (sendMail) and SharePoint file uploads.

Tokens: one ``msal.ConfidentialClientApplication`` per GraphClient, built lazily on the first
token request because msal's constructor already calls the tenant discovery endpoint; msal keeps
the token in its in-memory cache and renews it shortly before it expires. msal uses our session
as its ``http_client``, so its calls get the same timeouts and 429 handling.

Mail: a mail with a plain-text alternative goes as MIME (base64, ``Content-Type: text/plain``),
one without as a JSON message. Graph caps a request at 4 MB, so when the request would exceed
~3 MB the mail is built as a draft, its attachments added one by one (an upload session for
files of 3 MB and more, which Graph requires; a plain POST below that, which Graph also
requires) and then sent. That large path sends the HTML body only. ``sendMail`` and ``send`` are
not repeated after a 5xx or a timeout (the mail may have gone out); a 429 is retried.

SharePoint: a file below 4 MB is PUT in one request, a larger one through an upload session in
chunks that are multiples of 320 KiB. Upload URLs are pre-authenticated: chunk PUTs carry no
``Authorization`` header, and the URLs themselves are treated as secrets.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import quote, urlsplit

import msal
import requests
from loguru import logger

from integrations import errors, http
from integrations.config import required_fields
from integrations.logging import mask, register_secret
from integrations.models import Attachment

SERVICE = "msgraph"
SCOPES = ["https://graph.microsoft.com/.default"]
PUBLIC_AUTHORITY_HOST = "login.microsoftonline.com"

MAX_INLINE_REQUEST_BYTES = 3_000_000  # Graph rejects requests over 4 MB; keep a margin for headers
UPLOAD_SESSION_MIN_ATTACHMENT_BYTES = 3_000_000  # Outlook: POST below 3 MB, upload session from 3 MB
MAIL_CHUNK_BYTES = 3 * 1024 * 1024  # Outlook upload sessions: each PUT at most 4 MB
SIMPLE_UPLOAD_MAX_BYTES = 4 * 1024 * 1024  # SharePoint: simple PUT below 4 MB
DRIVE_CHUNK_UNIT = 327_680  # 320 KiB: drive upload-session chunks must be multiples of this
DRIVE_CHUNK_BYTES = 16 * DRIVE_CHUNK_UNIT  # 5 MiB
CONFLICT_BEHAVIOURS = ("fail", "replace", "rename")

AppFactory = Callable[..., Any]


def _parse_error(response: requests.Response) -> tuple[str, str | None]:
    """Graph errors: ``{"error": {"code": ..., "message": ..., "innerError": {...}}}``."""
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or "no message"), (
            str(error["code"]) if error.get("code") else None
        )
    if isinstance(error, str):  # OAuth-style errors from upload hosts
        return str(body.get("error_description") or error).splitlines()[0], error
    raise ValueError("not a Graph error body")


def _path_segment(value: str) -> str:
    return quote(value, safe="")


def _user(sender: str) -> str:
    if not sender or not sender.strip():
        raise ValueError("sender must be a mailbox (user id or user principal name)")
    return quote(sender.strip(), safe="@")


def _recipients(addresses: Sequence[str] | str) -> list[str]:
    items = [addresses] if isinstance(addresses, str) else list(addresses)
    return [a.strip() for a in items if a and a.strip()]


class GraphClient:
    """Mail and SharePoint through Microsoft Graph with an app-only (client-credentials) token.

    ``app_factory`` builds the msal app (default ``msal.ConfidentialClientApplication``; tests
    inject a fake where no https identity endpoint exists). Chunk sizes are parameters so tests
    can exercise several chunks with small files.
    """

    def __init__(
        self,
        session: requests.Session,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        base_url: str,
        authority_url: str,
        *,
        app_factory: AppFactory | None = None,
        drive_chunk_bytes: int = DRIVE_CHUNK_BYTES,
        mail_chunk_bytes: int = MAIL_CHUNK_BYTES,
    ):
        register_secret(client_secret)
        if drive_chunk_bytes <= 0 or drive_chunk_bytes % DRIVE_CHUNK_UNIT:
            raise ValueError(f"drive_chunk_bytes must be a positive multiple of {DRIVE_CHUNK_UNIT}")
        if not 0 < mail_chunk_bytes <= 4 * 1024 * 1024:
            raise ValueError("mail_chunk_bytes must be between 1 byte and 4 MB")
        self._session = session
        self.tenant_id = tenant_id
        self.client_id = client_id
        self._client_secret = client_secret
        self.base_url = base_url.rstrip("/")
        self.authority = f"{authority_url.rstrip('/')}/{tenant_id}"
        self._app_factory = app_factory or msal.ConfidentialClientApplication
        self._app: Any = None
        self._app_lock = threading.Lock()
        self.drive_chunk_bytes = drive_chunk_bytes
        self.mail_chunk_bytes = mail_chunk_bytes

    # -- tokens ------------------------------------------------------------------------------
    def _msal_app(self) -> Any:
        """The one msal app of this client, built on first use (its constructor calls discovery)."""
        with self._app_lock:
            if self._app is None:
                host = (urlsplit(self.authority).hostname or "").lower()
                kwargs: dict[str, Any] = {
                    "client_credential": self._client_secret,
                    "authority": self.authority,
                    "http_client": self._session,
                }
                if host != PUBLIC_AUTHORITY_HOST:
                    kwargs["instance_discovery"] = False
                self._app = self._guard_token_call(lambda: self._app_factory(self.client_id, **kwargs))
            return self._app

    def _guard_token_call(self, fn: Callable[[], Any]) -> Any:
        """Turn what msal raises (network errors, discovery failures) into typed, secret-free errors."""
        operation = "token"
        try:
            return fn()
        except requests.exceptions.Timeout:
            raise errors.TransportError(SERVICE, operation, "timed out") from None
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            kind = errors.ServerError if status and status >= 500 else errors.ServiceError
            raise kind(SERVICE, operation, "identity provider error", status=status) from None
        except requests.exceptions.RequestException as exc:
            raise errors.TransportError(
                SERVICE, operation, f"connection failed ({exc.__class__.__name__})"
            ) from None
        except ValueError as exc:  # msal: discovery 4xx, invalid authority, non-JSON reply
            first = (str(exc).splitlines() or [""])[0][:300]
            raise errors.ServiceError(SERVICE, operation, mask(f"msal: {first}")) from None

    def access_token(self) -> str:
        """A valid app-only token (msal answers from its cache until shortly before expiry)."""
        app = self._msal_app()
        result = self._guard_token_call(lambda: app.acquire_token_for_client(scopes=SCOPES))
        if not isinstance(result, dict):
            raise errors.GarbledResponse(SERVICE, "token", "msal returned no result")
        token = result.get("access_token")
        if not token:
            error = str(result.get("error") or "no access_token in reply")
            description = (str(result.get("error_description") or "").splitlines() or [""])[0].strip()
            reason = f"{error}: {description}" if description else error
            raise errors.ServiceError(SERVICE, "token", mask(reason), code=error)
        register_secret(token)
        return token

    def _auth(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.access_token()}"}
        headers.update(extra or {})
        return headers

    def _call(self, method: str, url: str, operation: str, **kwargs: Any) -> requests.Response:
        """One authenticated Graph API call."""
        headers = self._auth(kwargs.pop("headers", None))
        return http.call(
            self._session,
            SERVICE,
            operation,
            method,
            url,
            headers=headers,
            parse_error=_parse_error,
            request_id_header="request-id",
            **kwargs,
        )

    # -- mail --------------------------------------------------------------------------------
    def send_mail(
        self,
        sender: str,
        to: Sequence[str],
        subject: str,
        html: str,
        text: str | None = None,
        attachments: Sequence[Attachment] = (),
        cc: Sequence[str] = (),
        bcc: Sequence[str] = (),
    ) -> None:
        """Send one mail from ``sender``'s mailbox; returns once Graph accepted it (202)."""
        user = _user(sender)
        to_list, cc_list, bcc_list = _recipients(to), _recipients(cc), _recipients(bcc)
        if not to_list:
            raise ValueError("a mail needs at least one recipient in 'to'")
        attachments = list(attachments)
        url = f"{self.base_url}/users/{user}/sendMail"
        operation = f"sendMail {sender}"
        if text is not None:
            mime = _mime_message(sender, to_list, cc_list, bcc_list, subject, html, text, attachments)
            body, content_type, kind = base64.b64encode(mime), "text/plain", "mime"
        else:
            message = _json_message(subject, html, to_list, cc_list, bcc_list)
            message["attachments"] = [_file_attachment(a) for a in attachments]
            body = json.dumps({"message": message, "saveToSentItems": True}).encode()
            content_type, kind = "application/json", "json"
        if len(body) > MAX_INLINE_REQUEST_BYTES:
            self._send_large(sender, to_list, cc_list, bcc_list, subject, html, attachments)
            kind = "draft+upload"
        else:
            self._call("POST", url, operation, data=body, headers={"Content-Type": content_type})
        logger.info(
            "mail accepted by Graph",
            mode=kind,
            recipients=len(to_list) + len(cc_list) + len(bcc_list),
            attachments=len(attachments),
        )

    def _send_large(
        self,
        sender: str,
        to: list[str],
        cc: list[str],
        bcc: list[str],
        subject: str,
        html: str,
        attachments: list[Attachment],
    ) -> None:
        """Draft, then attachments one by one, then send: for mails over Graph's request size."""
        user = _user(sender)
        messages = f"{self.base_url}/users/{user}/messages"
        draft = http.json_body(
            self._call(
                "POST", messages, f"create draft {sender}", json=_json_message(subject, html, to, cc, bcc)
            ),
            SERVICE,
            f"create draft {sender}",
        )
        message_id = draft.get("id") if isinstance(draft, dict) else None
        if not isinstance(message_id, str) or not message_id:
            raise errors.GarbledResponse(SERVICE, f"create draft {sender}", "reply has no message id")
        message_url = f"{messages}/{_path_segment(message_id)}"
        try:
            for attachment in attachments:
                self._attach(message_url, sender, attachment)
        except Exception:
            self._discard_draft(message_url, sender)
            raise
        self._call("POST", f"{message_url}/send", f"send draft {sender}")

    def _attach(self, message_url: str, sender: str, attachment: Attachment) -> None:
        size = len(attachment.content)
        if size < UPLOAD_SESSION_MIN_ATTACHMENT_BYTES:
            self._call(
                "POST",
                f"{message_url}/attachments",
                f"add attachment {sender}",
                json=_file_attachment(attachment),
            )
            return
        operation = f"attachment upload session {sender}"
        upload_url = self._open_upload_session(
            f"{message_url}/attachments/createUploadSession",
            {"AttachmentItem": {"attachmentType": "file", "name": attachment.name, "size": size}},
            operation,
        )
        self._upload_chunks(
            upload_url, attachment.content, self.mail_chunk_bytes, f"upload attachment {sender}", done=(201,)
        )

    def _discard_draft(self, message_url: str, sender: str) -> None:
        try:
            self._call("DELETE", message_url, f"delete draft {sender}")
        except errors.ServiceError as exc:
            logger.warning("could not delete the unsent draft: {error}", error=str(exc))

    # -- SharePoint --------------------------------------------------------------------------
    def resolve_site(self, hostname: str, site_path: str) -> str:
        """The site id (``host,collection-guid,web-guid``) of e.g. ``contoso.sharepoint.com`` + ``/sites/Finance``."""
        host = hostname.strip().strip("/")
        if not host:
            raise ValueError("hostname is required")
        path = "/" + site_path.strip().strip("/")
        operation = f"GET site {host}:{path}"
        if path == "/":
            url = f"{self.base_url}/sites/{_path_segment(host)}"
        else:
            url = f"{self.base_url}/sites/{_path_segment(host)}:{quote(path, safe='/')}"
        site = http.json_body(self._call("GET", url, operation), SERVICE, operation)
        site_id = site.get("id") if isinstance(site, dict) else None
        if not isinstance(site_id, str) or not site_id:
            raise errors.GarbledResponse(SERVICE, operation, "reply has no site id")
        return site_id

    def upload_file(self, site_id: str, path: str, content: bytes, conflict: str = "replace") -> dict:
        """Store ``content`` at ``path`` (``folder/sub/file.csv``) in the site's default library."""
        if conflict not in CONFLICT_BEHAVIOURS:
            raise ValueError(f"conflict must be one of {', '.join(CONFLICT_BEHAVIOURS)} (got {conflict!r})")
        root = f"{self._drive_path(site_id, path)}:"
        operation = f"upload {path}"
        if len(content) < SIMPLE_UPLOAD_MAX_BYTES:
            response = self._call(
                "PUT",
                f"{root}/content?@microsoft.graph.conflictBehavior={conflict}",
                operation,
                data=content,
                headers={"Content-Type": "application/octet-stream"},
            )
            return _drive_item(response, operation)
        upload_url = self._open_upload_session(
            f"{root}/createUploadSession",
            {"item": {"@microsoft.graph.conflictBehavior": conflict}},
            operation,
        )
        try:
            response = self._upload_chunks(
                upload_url, content, self.drive_chunk_bytes, operation, done=(200, 201)
            )
        except errors.ServiceError:
            self._cancel_upload(upload_url, operation)
            raise
        return _drive_item(response, operation)

    def drive_item(self, site_id: str, path: str) -> dict | None:
        """The driveItem at ``path`` (``folder`` or ``folder/file``) in the site's default library,
        or None when Graph answers 404. A folder has a ``folder`` facet, a file a ``file`` facet."""
        operation = f"GET drive item {path}"
        try:
            response = self._call("GET", self._drive_path(site_id, path), operation)
        except errors.NotFound:
            return None
        return _drive_item(response, operation)

    def _drive_path(self, site_id: str, path: str) -> str:
        """``.../sites/{site-id}/drive/root:/{path}`` with each path segment encoded."""
        segments = path.strip("/").split("/")
        if not path.strip("/") or any(not s.strip() or s in (".", "..") for s in segments):
            raise ValueError(f"path must be folder/.../file name without empty parts (got {path!r})")
        item = "/".join(_path_segment(s) for s in segments)
        return f"{self.base_url}/sites/{quote(site_id, safe=',')}/drive/root:/{item}"

    # -- directory ---------------------------------------------------------------------------
    def user(self, user: str) -> dict | None:
        """The directory user ``user`` (id or user principal name) with ``id``, ``displayName``,
        ``mail`` and ``userPrincipalName``, or None when Graph answers 404.

        App-only, this read needs ``User.ReadBasic.All`` or ``User.Read.All``; the jobs need
        neither (``Mail.Send`` reads nothing), so only ``--check`` calls it, and only when granted."""
        operation = f"GET user {user}"
        try:
            response = self._call(
                "GET",
                f"{self.base_url}/users/{_user(user)}",
                operation,
                params={"$select": "id,displayName,mail,userPrincipalName"},
            )
        except errors.NotFound:
            return None
        found = http.json_body(response, SERVICE, operation)
        if not isinstance(found, dict) or not found.get("id"):
            raise errors.GarbledResponse(SERVICE, operation, "reply is not a user (no id)")
        return found

    def _cancel_upload(self, upload_url: str, operation: str) -> None:
        try:
            http.call(self._session, SERVICE, f"{operation} (cancel)", "DELETE", upload_url)
        except errors.ServiceError as exc:
            logger.warning("could not cancel the upload session: {error}", error=str(exc))

    # -- upload sessions (Outlook attachments and drive items) --------------------------------
    def _open_upload_session(self, url: str, body: dict, operation: str) -> str:
        """Create an upload session (mail attachment or drive item) and return its upload URL.

        The URL carries its own credential, so it is registered with the log mask at once."""
        session = http.json_body(self._call("POST", url, operation, json=body), SERVICE, operation)
        upload_url = session.get("uploadUrl") if isinstance(session, dict) else None
        if not isinstance(upload_url, str) or not upload_url:
            raise errors.GarbledResponse(SERVICE, operation, "upload session reply has no uploadUrl")
        _register_upload_url(upload_url)
        return upload_url

    def _upload_chunks(
        self, upload_url: str, content: bytes, chunk_size: int, operation: str, done: tuple[int, ...]
    ) -> requests.Response:
        """PUT ``content`` to a pre-authenticated upload URL (no Authorization header).

        Follows the server's expected ranges (``nextExpectedRanges`` or ``NextExpectedRanges``); a
        416 (a range the server already has, e.g. after a retried PUT) is resolved by asking the
        session for its status. Only a ``done`` status ends it: Outlook answers 200 to every
        intermediate fragment and 201 (with ``Location``) to the last; a drive 200/201 with the item.
        """
        total = len(content)
        offset = 0
        max_steps = 3 * (total // chunk_size + 2)
        for _ in range(max_steps):
            chunk = content[offset : offset + chunk_size]
            last = offset + len(chunk) - 1
            try:
                response = http.call(
                    self._session,
                    SERVICE,
                    operation,
                    "PUT",
                    upload_url,
                    data=chunk,
                    headers={
                        "Content-Range": f"bytes {offset}-{last}/{total}",
                        "Content-Type": "application/octet-stream",
                    },
                    parse_error=_parse_error,
                    request_id_header="request-id",
                )
            except errors.ValidationFault as exc:
                if exc.status != 416:
                    raise
                status = http.call(self._session, SERVICE, f"{operation} (status)", "GET", upload_url)
                ranges = _next_ranges(http.json_body(status, SERVICE, operation))
                if not ranges:
                    raise errors.GarbledResponse(
                        SERVICE, operation, "range rejected (416) and the session expects nothing more"
                    ) from None
                offset = _range_start(ranges, operation)
                continue
            body = _json_or_none(response)
            ranges = _next_ranges(body)
            if response.status_code in done and not ranges:
                return response
            offset = _range_start(ranges, operation) if ranges else last + 1
            if offset >= total:
                raise errors.GarbledResponse(
                    SERVICE, operation, f"server expects bytes from {offset} but the file has {total}"
                )
        raise errors.GarbledResponse(SERVICE, operation, "upload session made no progress")


def _register_upload_url(url: str) -> None:
    """Upload URLs carry their own credential (Outlook: ``authtoken=`` in the query): mask both."""
    register_secret(url, urlsplit(url).query)


def _json_or_none(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _next_ranges(body: Any) -> list[str]:
    """The expected ranges in either spelling (Outlook's examples use ``NextExpectedRanges``)."""
    ranges = None
    if isinstance(body, dict):
        ranges = next((v for k, v in body.items() if k.lower() == "nextexpectedranges"), None)
    return [r for r in ranges if isinstance(r, str) and r] if isinstance(ranges, list) else []


def _range_start(ranges: list[str], operation: str) -> int:
    """``["26-"]`` or ``["12-55", "77-"]`` -> 26 / 12: resume at the first missing byte."""
    try:
        return min(int(r.split("-", 1)[0]) for r in ranges)
    except ValueError:
        raise errors.GarbledResponse(
            SERVICE, operation, f"unreadable nextExpectedRanges {ranges!r}"
        ) from None


def _drive_item(response: requests.Response, operation: str) -> dict:
    item = http.json_body(response, SERVICE, operation)
    if not isinstance(item, dict) or not item.get("id"):
        raise errors.GarbledResponse(SERVICE, operation, "reply is not a driveItem (no id)")
    return item


def _addresses(addresses: list[str]) -> list[dict]:
    return [{"emailAddress": {"address": a}} for a in addresses]


def _json_message(subject: str, html: str, to: list[str], cc: list[str], bcc: list[str]) -> dict:
    message: dict[str, Any] = {
        "subject": subject,
        "body": {"contentType": "HTML", "content": html},
        "toRecipients": _addresses(to),
    }
    if cc:
        message["ccRecipients"] = _addresses(cc)
    if bcc:
        message["bccRecipients"] = _addresses(bcc)
    return message


def _file_attachment(attachment: Attachment) -> dict:
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": attachment.name,
        "contentType": attachment.content_type,
        "contentBytes": base64.b64encode(attachment.content).decode("ascii"),
    }


def _mime_message(
    sender: str,
    to: list[str],
    cc: list[str],
    bcc: list[str],
    subject: str,
    html: str,
    text: str,
    attachments: list[Attachment],
) -> bytes:
    """multipart/mixed(multipart/alternative(text, html), attachments...) as CRLF bytes."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if bcc:
        message["Bcc"] = ", ".join(bcc)  # Exchange reads Bcc recipients from the submitted MIME header
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    for attachment in attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        if not maintype or not subtype:
            maintype, subtype = "application", "octet-stream"
        message.add_attachment(
            attachment.content, maintype=maintype, subtype=subtype, filename=attachment.name
        )
    return message.as_bytes(policy=SMTP)


def build_graph(settings: Any, secret: Mapping[str, Any]) -> GraphClient:
    """Client from Settings and the Graph secret (``tenant_id``, ``client_id``, ``client_secret``)."""
    if isinstance(secret, Mapping):
        register_secret(secret.get("client_secret"))
    values = required_fields(
        secret, ("tenant_id", "client_id", "client_secret"), settings.msgraph_secret_name
    )
    return GraphClient(
        http.session_for(SERVICE, settings),
        values["tenant_id"],
        values["client_id"],
        values["client_secret"],
        settings.msgraph_base_url,
        settings.msgraph_authority_url,
    )


def token_roles(token: str) -> set[str]:
    """The application roles in an app-only access token's ``roles`` claim.

    Read without checking the signature: it only tells an operator (``--check``) what the tenant
    granted; Graph itself decides each call. Empty when the token is not a readable JWT."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return set()
    roles = claims.get("roles") if isinstance(claims, dict) else None
    return {role for role in roles if isinstance(role, str)} if isinstance(roles, list) else set()
