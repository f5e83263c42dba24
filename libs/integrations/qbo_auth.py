"""``make qbo-auth``: connect (or reconnect) QuickBooks Online and store the refresh token.

Intuit's authorization-code flow (shared/reference/qbo-api.md section 10): open the authorize URL
(scope ``com.intuit.quickbooks.accounting``, a random ``state``); the person approves; Intuit
redirects to the app's redirect URI with ``code``, ``state`` and ``realmId``. With a loopback
redirect URI (``http://localhost:<port>/...``) a listener on 127.0.0.1 catches it; with any other
(Intuit's OAuth Playground included) the person pastes the final URL. The code is exchanged with
Basic auth and a new version of the QBO secret is written (refresh token, ``realm_id``, both expiry
dates; its other fields kept) under the same lock as the jobs' refreshes. A different company than
the secret's is refused unless ``--new-realm``. No token is ever printed.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
import threading
import webbrowser
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from integrations import errors, http, token_expiry
from integrations.config import load_settings
from integrations.logging import register_secret
from integrations.qbo import SERVICE, refresh_lock
from integrations.services import connect

SCOPE = "com.intuit.quickbooks.accounting"
DEFAULT_REDIRECT_URI = "http://localhost:8765/callback"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")


class AuthFailed(Exception):
    """The flow cannot finish; the message says why and what to do (never a token)."""


def authorize_url(base: str, client_id: str, redirect_uri: str, state: str) -> str:
    query = {
        "client_id": client_id,
        "response_type": "code",
        "scope": SCOPE,
        "redirect_uri": redirect_uri,
        "state": state,
    }
    return f"{base}?{urlencode(query)}"


def is_loopback(redirect_uri: str) -> bool:
    parts = urlsplit(redirect_uri)
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS and parts.port is not None


def parse_redirect(url: str, state: str) -> tuple[str, str]:
    """``(code, realm_id)`` from the URL Intuit redirected to, after checking ``state``."""
    query = parse_qs(urlsplit(url.strip()).query)
    if query.get("error"):
        raise AuthFailed(f"Intuit refused the connection: {query['error'][0]}")
    if query.get("state", [""])[0] != state:
        raise AuthFailed(
            "the redirect's state does not match this attempt (a stale or forged URL); start again"
        )
    code, realm = query.get("code", [""])[0], query.get("realmId", [""])[0]
    if not code or not realm:
        raise AuthFailed("the redirect URL has no code or realmId; paste the whole URL from the address bar")
    return code, realm


def wait_for_loopback(redirect_uri: str, timeout: float, ready: Callable[[], None]) -> str:
    """Serve one request on 127.0.0.1:<port> and return the URL it asked for."""
    parts = urlsplit(redirect_uri)
    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if urlsplit(self.path).path != (parts.path or "/"):
                self.send_error(404)
                return
            received.append(f"{parts.scheme}://{parts.netloc}{self.path}")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.end_headers()
            self.wfile.write(b"QuickBooks answered. You can close this tab and go back to the terminal.\n")

        def log_message(self, *args: Any) -> None:  # the URL holds the code: never log it
            pass

    server = HTTPServer(("127.0.0.1", parts.port or 80), Handler)
    server.timeout = 0.5
    deadline = datetime.now(UTC).timestamp() + timeout
    try:
        threading.Thread(target=ready, daemon=True).start()
        while not received and datetime.now(UTC).timestamp() < deadline:
            server.handle_request()
    finally:
        server.server_close()
    if not received:
        raise AuthFailed(f"no answer reached {redirect_uri} within {timeout:.0f} s; start again")
    return received[0]


def exchange_code(settings: Any, secret: Mapping[str, Any], code: str, redirect_uri: str) -> dict[str, Any]:
    """POST the code to the token endpoint (Basic auth); the reply's tokens are registered as secrets."""
    session = http.build_session("qbo-oauth", replay_safe_posts=False, timeout=30.0, max_retries=0)
    basic = base64.b64encode(f"{secret['client_id']}:{secret['client_secret']}".encode()).decode()
    register_secret(basic, code)
    response = http.call(
        session,
        SERVICE,
        "authorization code exchange",
        "POST",
        settings.qbo_token_url,
        headers={
            "Authorization": f"Basic {basic}",
            "Accept": "application/json",
            token_expiry.HARD_EXPIRY_HEADER: "true",
        },
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
    )
    body = http.json_body(response, SERVICE, "authorization code exchange")
    if not isinstance(body, dict) or not body.get("refresh_token"):
        raise AuthFailed("the token endpoint answered without a refresh token; start again")
    register_secret(body.get("refresh_token"), body.get("access_token"))
    return body


def connect_quickbooks(
    env: Mapping[str, str],
    *,
    redirect_uri: str | None,
    new_realm: bool,
    open_browser: Callable[[str], Any],
    read_line: Callable[[str], str],
    timeout: float = 300.0,
    out: Callable[[str], None] = print,
) -> str:
    """Run the whole flow; return a one-line report. Raises AuthFailed or a ServiceError."""
    settings = load_settings(env)
    services = connect(settings)
    name = settings.qbo_secret_name
    secret = services.secrets.read_json(name)
    missing = [f for f in ("client_id", "client_secret") if not str(secret.get(f) or "").strip()]
    if missing:
        raise AuthFailed(f"secret {name} lacks {', '.join(missing)}: put the app's keys there first")
    redirect_uri = redirect_uri or str(secret.get("redirect_uri") or DEFAULT_REDIRECT_URI)
    state = secrets.token_urlsafe(24)
    url = authorize_url(settings.qbo_authorize_url, str(secret["client_id"]), redirect_uri, state)
    out("Open this address, sign in to QuickBooks and approve the connection:\n  " + url)
    if is_loopback(redirect_uri):
        redirected = wait_for_loopback(redirect_uri, timeout, lambda: open_browser(url))
    else:
        open_browser(url)
        redirected = read_line("Paste the full address your browser was sent to after approving: ")
    code, realm = parse_redirect(redirected, state)
    stored_realm = str(secret.get("realm_id") or "").strip()
    if stored_realm and stored_realm != realm and not new_realm:
        raise AuthFailed(
            f"you approved company {realm}, but secret {name} is for company {stored_realm}; nothing was "
            "changed. Approve the right company, or pass --new-realm to switch (its invoices start afresh)"
        )
    with refresh_lock(services.ledger, stored_realm or realm):
        reply = exchange_code(settings, secret, code, redirect_uri)
        issued = datetime.now(UTC)
        current = services.secrets.read_json(name)  # keep fields another writer changed meanwhile
        updated = {
            **current,
            "refresh_token": reply["refresh_token"],
            "realm_id": realm,
            **token_expiry.from_reply(reply, issued),
        }
        version = services.secrets.write_json(name, updated)
    dates = ", ".join(
        f"{k} {updated[k]}" for k in (token_expiry.EXPIRES_AT, token_expiry.HARD_EXPIRES_AT) if k in updated
    )
    return f"QuickBooks company {realm} connected; secret {name} updated (version {version}; {dates})"


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qbo-auth", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--redirect-uri",
        help=f"the app's registered redirect URI (default: the secret's redirect_uri, else {DEFAULT_REDIRECT_URI})",
    )
    parser.add_argument(
        "--new-realm", action="store_true", help="allow a different QuickBooks company than the secret's"
    )
    parser.add_argument(
        "--no-browser", action="store_true", help="only print the address, do not open a browser"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the loopback redirect"
    )
    args = parser.parse_args(argv)
    opener: Callable[[str], Any] = (lambda url: None) if args.no_browser else webbrowser.open
    try:
        print(
            connect_quickbooks(
                os.environ if env is None else env,
                redirect_uri=args.redirect_uri,
                new_realm=args.new_realm,
                open_browser=opener,
                read_line=input,
                timeout=args.timeout,
            )
        )
    except (AuthFailed, errors.InvoiceProcessorError) as exc:
        print(f"qbo-auth: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
