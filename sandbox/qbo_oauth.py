"""Intuit OAuth 2.0 as the QBO stand-in plays it: the authorization-code grant (an authorize
endpoint that approves at once, so ``make qbo-auth`` runs end to end in tests) and the refresh
grant with the documented refresh-token lifetime.

Documented rules (shared/reference/qbo-api.md section 10, sources there):
- the refresh token's *value* changes about every 24 h ("every 24 hours, or the next time you refresh
  the access tokens after 24 hours"); before that a refresh returns the same value;
- when a new value is issued the previous one expires (sources conflict on a grace period: the
  strict default is none; ``refresh_token_grace_seconds`` relaxes it);
- a refresh token unused for 100 days expires (rolling: each use extends it);
- a 5-year hard cap, reported as ``x_refresh_token_hard_expires_in`` only when the request carries
  ``x-include-refresh-token-hard-expires-in: true``.
``refresh_token_rotation_seconds: 0`` with no grace is the strict "rotate every time" mode.

Pure state transitions on the ``qbo/oauth`` document; the Flask routes live in ``sandbox.qbo``.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit

ACCOUNTING_SCOPE = "com.intuit.quickbooks.accounting"
IDLE_SECONDS = 100 * 86400
HARD_SECONDS = 5 * 365 * 86400
AUTH_CODE_SECONDS = 300  # NOT FOUND in our reference notes how long Intuit keeps a code; 5 min is common
OPTIONS = {
    "refresh_token_rotation_seconds": 86400,
    "refresh_token_grace_seconds": 0,
    "refresh_token_idle_seconds": IDLE_SECONDS,
    "refresh_token_hard_seconds": HARD_SECONDS,
}
STRICT_ROTATION = {"refresh_token_rotation_seconds": 0, "refresh_token_grace_seconds": 0}
DEFAULT_REDIRECT_URIS = (
    "http://localhost:8765/callback",
    "https://developer.intuit.com/v2/OAuth2Playground/RedirectUrl",
)

Answer = tuple[int, dict[str, Any]]


def new_refresh_token() -> str:
    return "AB11" + secrets.token_urlsafe(36).replace("-", "x").replace("_", "y")


def new_access_token() -> str:
    return "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0.." + secrets.token_urlsafe(96)


def connection(
    refresh_token: str,
    now: float,
    options: dict[str, Any],
    *,
    age_hours: Any = 0,
    days_left: Any = None,
    hard_days_left: Any = None,
) -> dict:
    """The token fields of a fresh connection (a code exchange), or of a seeded one whose value was
    issued ``age_hours`` ago (scenarios default to a day: the daily job's token is that old) and
    whose 100-day and 5-year limits are ``days_left`` and ``hard_days_left`` away."""
    idle = float(days_left) * 86400 if days_left is not None else options["refresh_token_idle_seconds"]
    hard = options["refresh_token_hard_seconds"]
    connected = now - hard + float(hard_days_left) * 86400 if hard_days_left is not None else now
    return {
        "refresh_token": refresh_token,
        "refresh_token_issued_at": now - float(age_hours) * 3600,
        "refresh_token_expires_at": now + idle,
        "connected_at": connected,
        "previous_refresh_token": None,
        "previous_valid_until": 0,
    }


def _invalid_grant(description: str = "Incorrect or invalid refresh token") -> Answer:
    return 400, {"error": "invalid_grant", "error_description": description}


def _tokens(oauth: dict, now: float, options: dict, ttl: int, hard: bool) -> dict[str, Any]:
    access = new_access_token()
    oauth["access_tokens"] = {t: exp for t, exp in oauth.get("access_tokens", {}).items() if exp > now}
    oauth["access_tokens"][access] = now + ttl
    oauth["refreshes"] = oauth.get("refreshes", 0) + 1
    hard_at = oauth["connected_at"] + options["refresh_token_hard_seconds"]
    body = {
        "token_type": "bearer",
        "expires_in": ttl,
        "refresh_token": oauth["refresh_token"],
        "x_refresh_token_expires_in": int(min(oauth["refresh_token_expires_at"], hard_at) - now),
        "access_token": access,
    }
    if hard:
        body["x_refresh_token_hard_expires_in"] = int(hard_at - now)
    return body


def refresh(oauth: dict, presented: str | None, now: float, options: dict, ttl: int, hard: bool) -> Answer:
    """The refresh grant: same value within the rotation interval, a new one after it."""
    hard_at = oauth["connected_at"] + options["refresh_token_hard_seconds"]
    current = oauth["refresh_token"]
    grace = presented and presented == oauth.get("previous_refresh_token")
    if grace and now >= oauth.get("previous_valid_until", 0):
        return _invalid_grant()
    if not presented or (presented != current and not grace):
        return _invalid_grant()
    if now >= oauth["refresh_token_expires_at"] or now >= hard_at:
        return _invalid_grant("The refresh token has expired")
    if not grace and now - oauth["refresh_token_issued_at"] >= options["refresh_token_rotation_seconds"]:
        oauth["retired_refresh_tokens"] = ([*oauth.get("retired_refresh_tokens", []), current])[-20:]
        oauth["previous_refresh_token"] = current
        oauth["previous_valid_until"] = now + options["refresh_token_grace_seconds"]
        oauth["refresh_token"] = new_refresh_token()
        oauth["refresh_token_issued_at"] = now
    oauth["refresh_token_expires_at"] = min(now + options["refresh_token_idle_seconds"], hard_at)
    return 200, _tokens(oauth, now, options, ttl, hard)


def authorize(oauth: dict, args: dict[str, str], realm_id: str, now: float) -> tuple[int, str]:
    """``GET /connect/oauth2``: (302, redirect URL with code, state and realmId) or (400, reason).

    Approves at once: there is no person to click "Connect" in a test."""
    if args.get("client_id") != oauth["client_id"]:
        return 400, "invalid_client: unknown client_id"
    if args.get("response_type") != "code":
        return 400, "unsupported_response_type: response_type must be code"
    if ACCOUNTING_SCOPE not in (args.get("scope") or "").split():
        return 400, f"invalid_scope: scope must include {ACCOUNTING_SCOPE}"
    redirect_uri = args.get("redirect_uri") or ""
    if redirect_uri not in oauth.get("redirect_uris", DEFAULT_REDIRECT_URIS):
        return 400, "invalid_request: redirect_uri is not registered for this app"
    if not args.get("state"):
        return 400, "invalid_request: state is required"
    code = "AB11" + secrets.token_urlsafe(24)
    oauth.setdefault("auth_codes", {})[code] = {
        "redirect_uri": redirect_uri,
        "expires": now + AUTH_CODE_SECONDS,
    }
    query = urlencode({"code": code, "state": args["state"], "realmId": realm_id})
    separator = "&" if urlsplit(redirect_uri).query else "?"
    return 302, f"{redirect_uri}{separator}{query}"


def exchange_code(
    oauth: dict, form: dict[str, str], now: float, options: dict, ttl: int, hard: bool
) -> Answer:
    """The authorization-code grant: a code works once, within its lifetime, for its redirect URI.
    A new connection starts a new refresh token (and a new 5-year cap)."""
    grant = oauth.get("auth_codes", {}).pop(form.get("code") or "", None)
    if grant is None or grant["expires"] <= now:
        return _invalid_grant("Invalid authorization code")
    if form.get("redirect_uri") != grant["redirect_uri"]:
        return _invalid_grant("redirect_uri does not match the authorization request")
    oauth.update(connection(new_refresh_token(), now, options))
    oauth["retired_refresh_tokens"] = []
    return 200, _tokens(oauth, now, options, ttl, hard)
