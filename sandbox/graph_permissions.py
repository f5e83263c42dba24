"""Microsoft Graph application permissions as the stand-in enforces them (issue 11.11).

The client-credentials token carries the app registration's granted roles in its ``roles`` claim,
as Entra ID's app-only tokens do; each Graph call checks them (shared/reference/saas-apis.md C2-C4,
from microsoftgraph/microsoft-graph-docs-contrib ``user-sendmail.md``, ``outlook-large-attachments.md``,
``driveitem-put-content.md``, ``site-getbypath.md``, ``site-post-permissions.md``):
- ``POST /users/{id}/sendMail``: ``Mail.Send``;
- drafts, their attachments and upload sessions: ``Mail.ReadWrite`` (sending a draft: also ``Mail.Send``);
- reading a site: ``Sites.Read.All``, ``Sites.ReadWrite.All``, or ``Sites.Selected`` with a grant on it;
- writing files: ``Sites.ReadWrite.All``, ``Files.ReadWrite.All``, or ``Sites.Selected`` with a
  ``write`` grant on the site.
A refused call gets 403 in Graph's error envelope. The exact codes and messages for a missing role
are NOT FOUND in our reference notes; ``ErrorAccessDenied`` (Outlook) and ``accessDenied``
(SharePoint) are the codes Graph uses for denied access in the documented samples.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from integrations.msgraph import token_roles

MAIL_SEND = "Mail.Send"
MAIL_READ_WRITE = "Mail.ReadWrite"
SITES_READ = frozenset({"Sites.Read.All", "Sites.ReadWrite.All", "Sites.FullControl.All"})
SITES_WRITE = frozenset({"Sites.ReadWrite.All", "Files.ReadWrite.All", "Sites.FullControl.All"})
SITES_SELECTED = "Sites.Selected"
DEFAULT_ROLES = (MAIL_SEND, MAIL_READ_WRITE, "Sites.ReadWrite.All")


class Denied(Exception):
    """A call the token's roles do not allow: (code, message) for Graph's 403 envelope."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def issue_token(config: dict[str, Any], now: float, ttl: int) -> str:
    """A JWT-shaped app-only token: header.claims.signature, with ``roles`` in the claims."""
    claims = {
        "aud": "https://graph.microsoft.com",
        "tid": config["tenant_id"],
        "appid": config["client_id"],
        "roles": list(config.get("app_roles", DEFAULT_ROLES)),
        "iat": int(now),
        "exp": int(now + ttl),
    }
    return f"{_b64({'typ': 'JWT', 'alg': 'RS256'})}.{_b64(claims)}.{secrets.token_urlsafe(64)}"


def roles_of(token: str) -> set[str]:
    """The ``roles`` claim of a token this stand-in issued (empty when unreadable). Reading a JWT's
    claims is the same on both sides, so the client's reader is used; the rules are the stand-in's."""
    return token_roles(token)


def require_mail(roles: set[str], *needed: str) -> None:
    missing = [role for role in needed if role not in roles]
    if missing:
        raise Denied(
            "ErrorAccessDenied",
            f"Access is denied. Check credentials and try again. (missing application permission: {', '.join(missing)})",
        )


def require_site(roles: set[str], site: dict[str, Any], client_id: str, *, write: bool) -> None:
    allowed = SITES_WRITE if write else SITES_READ
    if roles & allowed:
        return
    grant = (site.get("app_grants") or {}).get(client_id)
    if SITES_SELECTED in roles and grant in (
        ("write", "owner", "fullcontrol") if write else ("read", "write", "owner", "fullcontrol")
    ):
        return
    need = "Sites.ReadWrite.All (or Sites.Selected with a write grant)" if write else "Sites.Read.All"
    raise Denied("accessDenied", f"Access denied. The application needs {need} on this site.")
