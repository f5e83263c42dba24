"""Microsoft identity platform + Microsoft Graph stand-ins (mail and SharePoint files).

Identity: tenant discovery and the client-credentials token endpoint (MSAL needs https).
Graph: ``sendMail`` (JSON or base64 MIME), drafts with attachment upload sessions, SharePoint site by
path, small uploads with ``@microsoft.graph.conflictBehavior`` and chunked upload sessions (chunks in
multiples of 320 KiB). Sent mail becomes ``mail/*.eml``; uploaded files become real files under
``sharepoint/<hostname>/<site path>/<path>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, g, request

from sandbox import graph_permissions as permissions
from sandbox import mail
from sandbox.store import JsonStore, dumps, write_atomic

CHUNK_UNIT = 320 * 1024
MAX_DRIVE_CHUNK = 60 * 1024 * 1024
MAX_MAIL_CHUNK = 4 * 1024 * 1024
MAX_REQUEST = 4 * 1024 * 1024
MAX_INLINE_ATTACHMENT = 3 * 1024 * 1024
MAX_MAIL_ATTACHMENT = 150 * 1024 * 1024
ILLEGAL_NAME = re.compile(r'["*:<>?/\\|]')


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _iso(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _error_body(code: str, message: str) -> dict[str, Any]:
    inner = {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "request-id": str(uuid.uuid4())}
    inner["client-request-id"] = inner["request-id"]
    return {"error": {"code": code, "message": message, "innerError": inner}}


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    response = Response(dumps(payload), status=status, content_type="application/json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _addresses(recipients: Any, field: str) -> list[str]:
    if recipients is None:
        return []
    if not isinstance(recipients, list):
        raise GraphError(400, "ErrorInvalidRecipients", f"{field} must be a list of recipients")
    out = []
    for recipient in recipients:
        address = ((recipient or {}).get("emailAddress") or {}).get("address")
        if not isinstance(address, str) or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", address):
            raise GraphError(
                400, "ErrorInvalidRecipients", f"At least one recipient is not valid ({field}: {address!r})."
            )
        name = (recipient.get("emailAddress") or {}).get("name")
        out.append(f"{name} <{address}>" if name else address)
    return out


def _decode(data: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(data), validate=True)
    except (binascii.Error, ValueError):
        raise GraphError(400, "ErrorInvalidRequest", f"{what}: contentBytes is not valid base64") from None


class GraphStandIn:
    def __init__(self, store: JsonStore, mail_dir: Path, sharepoint_dir: Path) -> None:
        self.store = store
        self.mail_dir = mail_dir
        self.sharepoint_dir = sharepoint_dir
        self.uploads_dir = store.root / "graph" / "uploads"
        self.drafts_dir = store.root / "graph" / "drafts"

    # --- seeding and helpers --------------------------------------------------------------------

    def seed(self, config: dict[str, Any]) -> None:
        mailboxes = [config["mailbox"]] if config.get("mailbox") else []
        mailboxes += [m for m in config.get("mailboxes", []) if m not in mailboxes]
        sites = []
        for raw in config.get("sites", []):
            host, path = raw["hostname"].lower(), "/" + raw["path"].strip("/")
            for folder in raw.get("folders", []):  # folders that exist in the site's library
                (self.sharepoint_dir / host / path.strip("/") / self._item_path(folder)).mkdir(
                    parents=True, exist_ok=True
                )
            guid_a = uuid.uuid5(uuid.NAMESPACE_URL, f"https://{host}{path}#collection")
            guid_b = uuid.uuid5(uuid.NAMESPACE_URL, f"https://{host}{path}#web")
            sites.append(
                {
                    "id": f"{host},{guid_a},{guid_b}",
                    "hostname": host,
                    "path": path,
                    "name": raw.get("name", path.rsplit("/", 1)[-1]),
                    "displayName": raw.get("display_name", path.rsplit("/", 1)[-1]),
                    "app_grants": dict(raw.get("app_grants", {})),  # Sites.Selected: client_id -> role
                }
            )
        self.store.put(
            "graph/config",
            {
                "tenant_id": config["tenant_id"],
                "client_id": config["client_id"],
                "client_secret": config["client_secret"],
                "mailboxes": mailboxes,
                "app_roles": list(config.get("app_roles", permissions.DEFAULT_ROLES)),
                "mailbox_name": config.get("mailbox_name"),
                "sites": sites,
                "token_ttl_seconds": int(config.get("token_ttl_seconds", 3599)),
                "simple_upload_max_bytes": int(config.get("simple_upload_max_bytes", 4 * 1024 * 1024)),
            },
        )
        self.store.put("graph/tokens", {})
        self.store.put("graph/drafts", {})
        self.store.put("graph/uploads", {})

    @property
    def config(self) -> dict[str, Any]:
        return self.store.get("graph/config")

    def expire_access_tokens(self) -> None:
        self.store.put("graph/tokens", {})

    def _mailbox(self, user: str) -> str:
        for mailbox in self.config["mailboxes"]:
            if mailbox.lower() == user.lower():
                return mailbox
        raise GraphError(403, "ErrorAccessDenied", "Access to OData is disabled.")

    def _user_json(self, mailbox: str) -> dict[str, Any]:
        """A user as ``GET /users/{id|upn}`` returns it (user-get.md, Example 1), cut to ``$select``."""
        name = self.config.get("mailbox_name") if mailbox == self.config["mailboxes"][0] else None
        user = {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{mailbox.lower()}")),
            "displayName": name or mailbox.split("@", 1)[0],
            "mail": mailbox,
            "userPrincipalName": mailbox,
            "businessPhones": [],
            "givenName": None,
            "surname": None,
            "jobTitle": None,
            "officeLocation": None,
            "preferredLanguage": "en-US",
        }
        selected = [f for f in request.args.get("$select", "").split(",") if f]
        if selected:
            user = {k: v for k, v in user.items() if k in selected or k == "id"}
        context = f"users({','.join(selected)})" if selected else "users"
        return {"@odata.context": f"{request.host_url}v1.0/$metadata#{context}/$entity", **user}

    def _sender(self, mailbox: str) -> str:
        name = self.config.get("mailbox_name")
        return f"{name} <{mailbox}>" if name else mailbox

    # --- identity -------------------------------------------------------------------------------

    def identity_app(self) -> Flask:
        app = Flask("sandbox-identity")

        def aad_error(status: int, error: str, code: int, description: str) -> Response:
            trace = str(uuid.uuid4())
            body = {
                "error": error,
                "error_description": f"AADSTS{code}: {description}\r\nTrace ID: {trace}\r\nTimestamp: {_iso()}",
                "error_codes": [code],
                "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
                "trace_id": trace,
                "correlation_id": str(uuid.uuid4()),
            }
            return _json(status, body)

        def tenant_ok(tenant: str) -> bool:
            return tenant.lower() == self.config["tenant_id"].lower()

        @app.get("/<tenant>/v2.0/.well-known/openid-configuration")
        def discovery(tenant: str) -> Response:
            if not tenant_ok(tenant):
                return aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
            base = request.host_url.rstrip("/") + f"/{tenant}"
            return _json(
                200,
                {
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_post",
                        "private_key_jwt",
                        "client_secret_basic",
                    ],
                    "jwks_uri": f"{base}/discovery/v2.0/keys",
                    "response_modes_supported": ["query", "fragment", "form_post"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "scopes_supported": ["openid", "profile", "email", "offline_access"],
                    "issuer": f"{base}/v2.0",
                    "request_uri_parameter_supported": False,
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                    "tenant_region_scope": "WW",
                    "cloud_instance_name": "microsoftonline.com",
                    "msgraph_host": "graph.microsoft.com",
                },
            )

        @app.post("/<tenant>/oauth2/v2.0/token")
        def token(tenant: str) -> Response:
            if not tenant_ok(tenant):
                return aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
            form = request.form
            auth = request.authorization
            client_id = auth.username if auth is not None and auth.type == "basic" else form.get("client_id")
            client_secret = (
                auth.password if auth is not None and auth.type == "basic" else form.get("client_secret")
            )
            if form.get("grant_type") != "client_credentials":
                return aad_error(
                    400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
                )
            if client_id != self.config["client_id"]:
                return aad_error(
                    400,
                    "unauthorized_client",
                    700016,
                    f"Application with identifier '{client_id}' was not found in the directory.",
                )
            if client_secret != self.config["client_secret"]:
                return aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
            scope = form.get("scope", "")
            if not any(s.endswith("/.default") for s in scope.split()):
                return aad_error(
                    400,
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
                )
            ttl = self.config["token_ttl_seconds"]
            access = permissions.issue_token(self.config, time.time(), ttl)
            with self.store.edit("graph/tokens", {}) as tokens:
                now = time.time()
                for old in [t for t, exp in tokens.items() if exp <= now]:
                    del tokens[old]
                tokens[access] = now + ttl
            return _json(
                200,
                {"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl, "access_token": access},
            )

        return app

    # --- Graph ----------------------------------------------------------------------------------

    def graph_app(self) -> Flask:  # noqa: C901 - one route table
        app = Flask("sandbox-graph")

        @app.before_request
        def authenticate() -> Response | None:
            if not request.path.startswith("/v1.0/"):
                return None
            header = request.headers.get("Authorization", "")
            token = header[7:] if header.lower().startswith("bearer ") else ""
            expires = self.store.get("graph/tokens", {}).get(token)
            if not token or expires is None or expires <= time.time():
                message = (
                    "Access token has expired or is not yet valid." if token else "Access token is empty."
                )
                return _json(401, _error_body("InvalidAuthenticationToken", message))
            g.roles = permissions.roles_of(token)
            if (request.content_length or 0) > MAX_REQUEST:
                return _json(413, _error_body("RequestEntityTooLarge", "Maximum request length exceeded."))
            return None

        @app.errorhandler(permissions.Denied)
        def denied(exc: permissions.Denied) -> Response:
            return _json(403, _error_body(exc.code, exc.message))

        @app.errorhandler(GraphError)
        def graph_error(exc: GraphError) -> Response:
            return _json(exc.status, _error_body(exc.code, exc.message), exc.headers)

        @app.errorhandler(404)
        @app.errorhandler(405)
        def unknown(error: Any) -> Response:
            code = "UnknownError" if error.code == 405 else "BadRequest"
            return _json(
                400 if error.code == 404 else 405,
                _error_body(code, f"Resource not found for the segment in {request.path}."),
            )

        def body_json() -> dict[str, Any]:
            try:
                value = json.loads(request.get_data() or b"null")
            except ValueError:
                raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None
            if not isinstance(value, dict):
                raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
            return value

        # mail ----------------------------------------------------------------------------------

        @app.post("/v1.0/users/<user>/sendMail")
        def send_mail(user: str) -> Response:
            permissions.require_mail(g.roles, permissions.MAIL_SEND)
            mailbox = self._mailbox(user)
            if request.mimetype == "text/plain":
                self._send_mime(mailbox, request.get_data())
            else:
                message = body_json().get("message")
                if not isinstance(message, dict):
                    raise GraphError(400, "ErrorInvalidRequest", "The message parameter is missing.")
                attachments = [
                    self._inline_attachment(a, i) for i, a in enumerate(message.get("attachments") or [], 1)
                ]
                self._send_json(mailbox, message, attachments)
            return Response(status=202)

        @app.post("/v1.0/users/<user>/messages")
        def create_draft(user: str) -> Response:
            permissions.require_mail(g.roles, permissions.MAIL_READ_WRITE)
            mailbox = self._mailbox(user)
            message = body_json()
            inline = [
                self._inline_attachment(a, i) for i, a in enumerate(message.pop("attachments", None) or [], 1)
            ]
            draft_id = "AAMkAD" + secrets.token_urlsafe(24)
            with self.store.edit("graph/drafts", {}) as drafts:
                drafts[draft_id] = {
                    "mailbox": mailbox,
                    "message": message,
                    "attachments": [],
                    "created": _iso(),
                }
            for name, content_type, content in inline:
                self._add_draft_attachment(draft_id, name, content_type, content)
            return _json(201, {"id": draft_id, "isDraft": True, "createdDateTime": _iso(), **message})

        @app.post("/v1.0/users/<user>/messages/<draft_id>/attachments")
        def add_attachment(user: str, draft_id: str) -> Response:
            permissions.require_mail(g.roles, permissions.MAIL_READ_WRITE)
            self._draft(user, draft_id)
            name, content_type, content = self._inline_attachment(body_json(), 1)
            attachment_id = self._add_draft_attachment(draft_id, name, content_type, content)
            return _json(
                201,
                {
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "id": attachment_id,
                    "name": name,
                    "contentType": content_type,
                    "size": len(content),
                },
            )

        @app.post("/v1.0/users/<user>/messages/<draft_id>/attachments/createUploadSession")
        def attachment_session(user: str, draft_id: str) -> Response:
            permissions.require_mail(g.roles, permissions.MAIL_READ_WRITE)
            self._draft(user, draft_id)
            item = body_json().get("AttachmentItem") or {}
            if item.get("attachmentType", "file") != "file" or not item.get("name"):
                raise GraphError(
                    400, "ErrorInvalidRequest", "AttachmentItem needs attachmentType 'file' and a name."
                )
            size = item.get("size")
            if not isinstance(size, int) or not 0 < size <= MAX_MAIL_ATTACHMENT:
                raise GraphError(
                    400,
                    "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                    f"AttachmentItem.size must be 1..{MAX_MAIL_ATTACHMENT} bytes.",
                )
            session = self._new_session(
                {
                    "kind": "mail",
                    # Outlook's own examples spell it NextExpectedRanges, other tenants answer
                    # nextExpectedRanges: upload sessions take turns, so a client must read both.
                    "ranges_key": self._next_ranges_key(),
                    "draft_id": draft_id,
                    "name": item["name"],
                    "content_type": item.get("contentType") or "application/octet-stream",
                    "size": size,
                }
            )
            return _json(
                201,
                {
                    "@odata.context": f"{request.host_url}v1.0/$metadata#microsoft.graph.uploadSession",
                    "uploadUrl": session["url"],
                    "expirationDateTime": session["expires"],
                    "nextExpectedRanges": ["0-"],
                },
            )

        @app.post("/v1.0/users/<user>/messages/<draft_id>/send")
        def send_draft(user: str, draft_id: str) -> Response:
            permissions.require_mail(g.roles, permissions.MAIL_READ_WRITE, permissions.MAIL_SEND)
            draft = self._draft(user, draft_id)
            attachments = [
                (a["name"], a["content_type"], Path(a["path"]).read_bytes()) for a in draft["attachments"]
            ]
            self._send_json(draft["mailbox"], draft["message"], attachments)
            self._delete_draft(draft_id)
            return Response(status=202)

        @app.delete("/v1.0/users/<user>/messages/<draft_id>")
        def delete_draft(user: str, draft_id: str) -> Response:
            permissions.require_mail(g.roles, permissions.MAIL_READ_WRITE)
            self._draft(user, draft_id)
            self._delete_draft(draft_id)
            return Response(status=204)

        # directory -----------------------------------------------------------------------------

        @app.get("/v1.0/users/<user>")
        def get_user(user: str) -> Response:
            permissions.require_user_read(g.roles)
            mailbox = next((m for m in self.config["mailboxes"] if m.lower() == user.lower()), None)
            if mailbox is None:
                raise GraphError(
                    404,
                    "Request_ResourceNotFound",
                    f"Resource '{user}' does not exist or one of its queried reference-property "
                    "objects are not present.",
                )
            return _json(200, self._user_json(mailbox))

        # SharePoint ----------------------------------------------------------------------------

        @app.route("/v1.0/sites/<path:rest>", methods=["GET", "PUT", "POST"])
        def sites(rest: str) -> Response:
            site, remainder = self._site(rest)
            write = request.method != "GET"
            permissions.require_site(g.roles, site, self.config["client_id"], write=write)
            if remainder in ("", "/"):
                if request.method != "GET":
                    raise GraphError(405, "BadRequest", "Method not allowed on a site.")
                return _json(200, self._site_json(site))
            match = re.fullmatch(
                r"/drive/(?:root|items/root):(/.*?)(?::(/content|/createUploadSession))?:?", remainder
            )
            if match is None:
                raise GraphError(
                    400,
                    "invalidRequest",
                    f"The sandbox serves root-relative drive paths only (got {remainder!r}).",
                )
            item_path, action = self._item_path(match.group(1)), match.group(2)
            if action == "/content" and request.method == "PUT":
                return self._put_content(site, item_path)
            if action == "/content" and request.method == "GET":
                target = self._file(site, item_path)
                if not target.is_file():
                    raise GraphError(404, "itemNotFound", "The resource could not be found.")
                return Response(target.read_bytes(), status=200, content_type="application/octet-stream")
            if action == "/createUploadSession" and request.method == "POST":
                return self._drive_session(site, item_path)
            if action is None and request.method == "GET":
                target = self._file(site, item_path)
                if not target.exists():
                    raise GraphError(404, "itemNotFound", "The resource could not be found.")
                return _json(200, self._drive_item(site, item_path, target))
            raise GraphError(405, "BadRequest", f"{request.method} is not supported on {remainder}.")

        # pre-authenticated upload URLs (no Authorization header) -------------------------------

        @app.route("/upload/<session_id>", methods=["PUT", "GET", "DELETE"])
        def upload(session_id: str) -> Response:
            session = self.store.get("graph/uploads", {}).get(session_id)
            if session is None or session["expires_epoch"] < time.time():
                raise GraphError(404, "itemNotFound", "The upload session was not found or has expired.")
            if "Authorization" in request.headers:
                raise GraphError(
                    401,
                    "InvalidAuthenticationToken",
                    "Do not send an Authorization header to a pre-authenticated upload URL.",
                )
            if request.method == "DELETE":
                self._end_session(session_id)
                return Response(status=204)
            if request.method == "GET":
                return _json(
                    200,
                    {
                        "expirationDateTime": session["expires"],
                        "nextExpectedRanges": [f"{session['received']}-"],
                    },
                )
            return self._upload_chunk(session_id, session)

        return app

    # --- mail helpers ---------------------------------------------------------------------------

    def _inline_attachment(self, attachment: Any, index: int) -> tuple[str, str, bytes]:
        if (
            not isinstance(attachment, dict)
            or attachment.get("@odata.type") != "#microsoft.graph.fileAttachment"
        ):
            raise GraphError(
                400,
                "ErrorInvalidRequest",
                f"Attachment {index}: only #microsoft.graph.fileAttachment is supported.",
            )
        name = attachment.get("name")
        if not name:
            raise GraphError(400, "ErrorInvalidRequest", f"Attachment {index}: name is required.")
        content = _decode(attachment.get("contentBytes", ""), f"Attachment {name}")
        if len(content) > MAX_INLINE_ATTACHMENT:
            raise GraphError(
                413,
                "ErrorAttachmentSizeLimitExceeded",
                f"Attachment {name} is over 3 MB; use an upload session.",
            )
        return name, attachment.get("contentType") or "application/octet-stream", content

    def _send_json(
        self, mailbox: str, message: dict[str, Any], attachments: list[tuple[str, str, bytes]]
    ) -> None:
        to = _addresses(message.get("toRecipients"), "toRecipients")
        cc = _addresses(message.get("ccRecipients"), "ccRecipients")
        bcc = _addresses(message.get("bccRecipients"), "bccRecipients")
        if not (to or cc or bcc):
            raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient is required.")
        body = message.get("body") or {}
        content_type = str(body.get("contentType", "text")).lower()
        content = str(body.get("content", ""))
        built = mail.build_message(
            sender=self._sender(mailbox),
            to=to,
            cc=cc,
            bcc=bcc,
            reply_to=_addresses(message.get("replyTo"), "replyTo"),
            subject=str(message.get("subject", "")),
            html=content if content_type == "html" else None,
            text=content if content_type != "html" else None,
            attachments=attachments,
            via="graph-sendMail",
        )
        mail.write_eml(self.mail_dir, built, str(message.get("subject", "")))

    def _send_mime(self, mailbox: str, data: bytes) -> None:
        try:
            raw = base64.b64decode(b"".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            raise GraphError(
                400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
            ) from None
        message = BytesParser(policy=policy.default).parsebytes(raw)
        if not raw.strip() or not any(message.get(h) for h in ("To", "Cc", "Bcc")):
            raise GraphError(
                400, "ErrorMimeContentInvalid", "The MIME content has no recipients or is not a message."
            )
        del message["X-Sandbox-Via"]
        message["X-Sandbox-Via"] = "graph-sendMail-mime"
        if message.get("From") is None:
            message["From"] = self._sender(mailbox)
        mail.write_eml(self.mail_dir, message.as_bytes(policy=policy.SMTP), str(message.get("Subject", "")))

    def _draft(self, user: str, draft_id: str) -> dict[str, Any]:
        mailbox = self._mailbox(user)
        draft = self.store.get("graph/drafts", {}).get(draft_id)
        if draft is None or draft["mailbox"] != mailbox:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return draft

    def _add_draft_attachment(self, draft_id: str, name: str, content_type: str, content: bytes) -> str:
        attachment_id = "AAMkADatt" + secrets.token_urlsafe(12)
        path = self.drafts_dir / draft_id / attachment_id
        write_atomic(path, content)
        with self.store.edit("graph/drafts", {}) as drafts:
            drafts[draft_id]["attachments"].append(
                {"id": attachment_id, "name": name, "content_type": content_type, "path": str(path)}
            )
        return attachment_id

    def _delete_draft(self, draft_id: str) -> None:
        with self.store.edit("graph/drafts", {}) as drafts:
            drafts.pop(draft_id, None)
        shutil.rmtree(self.drafts_dir / draft_id, ignore_errors=True)

    # --- SharePoint helpers ---------------------------------------------------------------------

    def _site(self, rest: str) -> tuple[dict[str, Any], str]:
        sites = self.config["sites"]
        by_path = re.fullmatch(r"([^/:,]+):(/[^:]*?)(?::(/.*)?)?", rest)
        if by_path:
            host, path = by_path.group(1).lower(), "/" + by_path.group(2).strip("/")
            site = next(
                (s for s in sites if s["hostname"] == host and s["path"].lower() == path.lower()), None
            )
            remainder = by_path.group(3) or ""
        else:
            site_id, _, remainder = rest.partition("/")
            site = next((s for s in sites if s["id"].lower() == site_id.lower()), None)
            remainder = "/" + remainder if remainder else ""
        if site is None:
            raise GraphError(404, "itemNotFound", "Requested site could not be found")
        return site, remainder

    def _site_json(self, site: dict[str, Any]) -> dict[str, Any]:
        return {
            "@odata.context": f"{request.host_url}v1.0/$metadata#sites/$entity",
            "id": site["id"],
            "name": site["name"],
            "displayName": site["displayName"],
            "createdDateTime": "2024-01-15T09:00:00Z",
            "lastModifiedDateTime": _iso(),
            "webUrl": f"https://{site['hostname']}{site['path']}",
            "siteCollection": {"hostname": site["hostname"]},
        }

    @staticmethod
    def _item_path(raw: str) -> str:
        parts = [p for p in raw.split("/") if p != ""]
        if not parts:
            raise GraphError(400, "invalidRequest", "An item path is required.")
        for part in parts:
            if part in (".", "..") or ILLEGAL_NAME.search(part) or part != part.strip() or part.endswith("."):
                raise GraphError(
                    400,
                    "invalidRequest",
                    f"The provided name cannot contain any illegal characters: {part!r}",
                )
        return "/".join(parts)

    def _file(self, site: dict[str, Any], item_path: str) -> Path:
        return self.sharepoint_dir / site["hostname"] / site["path"].strip("/") / item_path

    def _drive_item(self, site: dict[str, Any], item_path: str, target: Path) -> dict[str, Any]:
        stat = target.stat()
        item_id = (
            "01"
            + hashlib.sha1(f"{site['id']}/{item_path}".encode(), usedforsecurity=False)
            .hexdigest()[:32]
            .upper()
        )
        parent = item_path.rpartition("/")[0]
        body = {
            "id": item_id,
            "name": item_path.rsplit("/", 1)[-1],
            "size": stat.st_size if target.is_file() else 0,
            "createdDateTime": _iso(datetime.fromtimestamp(stat.st_ctime, UTC)),
            "lastModifiedDateTime": _iso(datetime.fromtimestamp(stat.st_mtime, UTC)),
            "webUrl": f"https://{site['hostname']}{site['path']}/Shared%20Documents/{quote(item_path)}",
            "eTag": f'"{{{uuid.uuid5(uuid.NAMESPACE_URL, item_id + str(stat.st_mtime_ns))}}},1"',
            "parentReference": {
                "driveType": "documentLibrary",
                "driveId": "b!" + base64.urlsafe_b64encode(site["id"].encode()).decode().rstrip("=")[:48],
                "path": f"/drive/root:/{parent}" if parent else "/drive/root:",
                "siteId": site["id"],
            },
        }
        if target.is_file():
            body["file"] = {
                "mimeType": "application/octet-stream",
                "hashes": {"sha256Hash": hashlib.sha256(target.read_bytes()).hexdigest().upper()},
            }
        else:
            body["folder"] = {"childCount": len(list(target.iterdir()))}
        return body

    def _target(self, site: dict[str, Any], item_path: str, conflict: str) -> tuple[Path, str, bool]:
        """Where a new file goes under ``conflict`` (fail|replace|rename): (path, item path, replaced)."""
        if conflict not in ("fail", "replace", "rename"):
            raise GraphError(
                400, "invalidRequest", f"Invalid @microsoft.graph.conflictBehavior {conflict!r}."
            )
        target = self._file(site, item_path)
        if target.is_dir():
            raise GraphError(409, "nameAlreadyExists", "A folder with the same name already exists.")
        if not target.exists():
            return target, item_path, False
        if conflict == "fail":
            raise GraphError(409, "nameAlreadyExists", "The specified item name already exists.")
        if conflict == "replace":
            return target, item_path, True
        stem, dot, suffix = target.name.rpartition(".") if "." in target.name else (target.name, "", "")
        for n in range(1, 10_000):
            candidate = target.with_name(f"{stem} {n}{dot}{suffix}")
            if not candidate.exists():
                return (
                    candidate,
                    item_path.rpartition("/")[0] + ("/" if "/" in item_path else "") + candidate.name,
                    False,
                )
        raise GraphError(409, "nameAlreadyExists", "No free name left.")

    def _put_content(self, site: dict[str, Any], item_path: str) -> Response:
        data = request.get_data()
        if len(data) > self.config["simple_upload_max_bytes"]:
            raise GraphError(
                413,
                "requestEntityTooLarge",
                f"Simple upload is limited to {self.config['simple_upload_max_bytes']} bytes in the sandbox; use an upload session.",
            )
        conflict = request.args.get("@microsoft.graph.conflictBehavior", "replace")
        with self.store.lock:
            target, final_path, replaced = self._target(site, item_path, conflict)
            write_atomic(target, data)
        return _json(200 if replaced else 201, self._drive_item(site, final_path, target))

    def _drive_session(self, site: dict[str, Any], item_path: str) -> Response:
        body = json.loads(request.get_data() or b"{}") if request.get_data() else {}
        item = (body or {}).get("item") or {}
        conflict = item.get("@microsoft.graph.conflictBehavior", "fail")
        if conflict not in ("fail", "replace", "rename"):
            raise GraphError(
                400, "invalidRequest", f"Invalid @microsoft.graph.conflictBehavior {conflict!r}."
            )
        size = item.get("fileSize")
        session = self._new_session(
            {
                "kind": "drive",
                "site_id": site["id"],
                "item_path": item_path,
                "conflict": conflict,
                "size": size,
            }
        )
        return _json(
            200,
            {
                "uploadUrl": session["url"],
                "expirationDateTime": session["expires"],
                "nextExpectedRanges": ["0-"],
            },
        )

    # --- upload sessions ------------------------------------------------------------------------

    def _new_session(self, fields: dict[str, Any]) -> dict[str, Any]:
        session_id = secrets.token_urlsafe(24)
        expires = datetime.now(UTC) + timedelta(hours=1)
        session = {
            **fields,
            "url": f"{request.host_url}upload/{session_id}",
            "expires": _iso(expires),
            "expires_epoch": expires.timestamp(),
            "received": 0,
        }
        with self.store.edit("graph/uploads", {}) as uploads:
            uploads[session_id] = session
        write_atomic(self.uploads_dir / f"{session_id}.part", b"")
        return session

    def _next_ranges_key(self) -> str:
        """The spelling of the next mail upload session: they take turns, counted in the store."""
        with self.store.edit("graph/mail_upload_sessions", {"opened": 0}) as counter:
            counter["opened"] += 1
            return MAIL_RANGES_KEYS[counter["opened"] % 2]

    def _end_session(self, session_id: str) -> None:
        with self.store.edit("graph/uploads", {}) as uploads:
            uploads.pop(session_id, None)
        (self.uploads_dir / f"{session_id}.part").unlink(missing_ok=True)

    def _upload_chunk(self, session_id: str, session: dict[str, Any]) -> Response:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", request.headers.get("Content-Range", "").strip())
        if match is None:
            raise GraphError(400, "invalidRange", "Content-Range must look like 'bytes 0-327679/1000000'.")
        start, end, total = (int(g) for g in match.groups())
        data = request.get_data()
        if end < start or len(data) != end - start + 1:
            raise GraphError(
                400,
                "invalidRange",
                f"The body has {len(data)} bytes but Content-Range says {end - start + 1}.",
            )
        with self.store.lock:
            session = self.store.get("graph/uploads", {})[session_id]
            if session.get("size") is None:
                session["size"] = total
            if total != session["size"]:
                raise GraphError(
                    400,
                    "invalidRange",
                    f"The total size {total} differs from the session's {session['size']}.",
                )
            if start != session["received"]:
                raise GraphError(
                    416,
                    "invalidRange",
                    f"The uploaded fragment is out of order; next expected {session['received']}-.",
                )
            last = end + 1 == total
            if end + 1 > total:
                raise GraphError(400, "invalidRange", "The fragment ends past the total size.")
            if session["kind"] == "drive":
                if len(data) > MAX_DRIVE_CHUNK:
                    raise GraphError(413, "requestEntityTooLarge", "Fragments must be smaller than 60 MiB.")
                if not last and len(data) % CHUNK_UNIT:
                    raise GraphError(
                        400,
                        "invalidRequest",
                        f"Fragment size {len(data)} must be a multiple of 320 KiB (327,680 bytes) except for the last fragment.",
                    )
            elif len(data) > MAX_MAIL_CHUNK:
                raise GraphError(413, "RequestEntityTooLarge", "Attachment fragments are limited to 4 MB.")
            part = self.uploads_dir / f"{session_id}.part"
            with open(part, "ab") as handle:
                handle.write(data)
            session["received"] = end + 1
            with self.store.edit("graph/uploads", {}) as uploads:
                uploads[session_id] = session
            if not last:
                # Drive: 202 per fragment. Outlook: 200 per fragment, 201 (with Location) only at the end.
                status = 202 if session["kind"] == "drive" else 200
                key = session.get("ranges_key", "nextExpectedRanges")
                return _json(status, {"expirationDateTime": session["expires"], key: [f"{end + 1}-"]})
            content = part.read_bytes()
            if session["kind"] == "mail":
                attachment_id = self._add_draft_attachment(
                    session["draft_id"], session["name"], session["content_type"], content
                )
                self._end_session(session_id)
                location = f"{request.host_url}v1.0/users/me/messages/{session['draft_id']}/attachments/{attachment_id}"
                return Response(status=201, headers={"Location": location})
            site = next(s for s in self.config["sites"] if s["id"] == session["site_id"])
            try:
                target, final_path, replaced = self._target(site, session["item_path"], session["conflict"])
            except GraphError as exc:
                if exc.status == 409:
                    self._end_session(session_id)
                    raise GraphError(
                        409,
                        "nameAlreadyExists",
                        "Another file exists with the same name as the uploaded session. You can redirect the upload session to use a new filename by calling PUT with the new metadata and @microsoft.graph.sourceUrl attribute.",
                    ) from None
                raise
            write_atomic(target, content)
            self._end_session(session_id)
            return _json(200 if replaced else 201, self._drive_item(site, final_path, target))


MAIL_RANGES_KEYS = ("NextExpectedRanges", "nextExpectedRanges")


def graph_headers(service: str) -> dict[str, str]:
    request_id = str(uuid.uuid4())
    return {"request-id": request_id, "client-request-id": request_id}
