"""QuickBooks Online: OAuth2 tokens that are never lost, and the API calls the two jobs need.

Why it is built this way (DESIGN §2, shared/reference/qbo-api.md):

- Intuit rotates refresh tokens, the previous one may die at once, and two refreshes with the same
  token invalidate each other. So a refresh runs under a lease lock in the ledger table (one per
  realm, across processes), re-reads the secret under the lock, and writes the rotated refresh
  token to Secrets Manager *before* the new access token is used. The token POST itself is never
  replayed on 5xx/timeouts: a replay would spend the refresh token twice.
- Every write carries QBO's ``requestid`` in the URL, so urllib3's retries of a POST (5xx,
  timeouts, 429) resend the same requestid and QBO answers with the original result instead of
  doing the work twice.
- Error bodies arrive as JSON ``Fault``, lowercase ``fault``, XML, HTML or nothing, and a 200 may
  hold a Fault; all are turned into the typed errors of ``integrations.errors``.
"""

from __future__ import annotations

import base64
import html
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import requests
from loguru import logger

from integrations import decimal_json, errors, http, token_expiry
from integrations.config import QBO_API_URLS, required_fields
from integrations.logging import mask, register_secret
from integrations.qbo_entities import Customer, Invoice, Item

if TYPE_CHECKING:
    from integrations.aws import Ledger, LedgerEntry, SecretStore
    from integrations.config import Settings

SERVICE = "qbo"
MINOR_VERSION = 75
MAX_REQUEST_ID = 50  # Intuit: requestid <= 50 chars for every operation except batch
MAX_PAGE_SIZE = 1000  # QBO's MAXRESULTS ceiling
QBO_MAX_IN_FLIGHT = 10  # Intuit: at most 10 concurrent requests per company (realm)
# How far past today an invoice's TxnDate may lie and still be found by the jobs' TxnDate range
# queries: QBO accepts future-dated invoices; ours are dated the day they are made, and a person
# may post-date one by a month or so.
FUTURE_TXN_DATE_WINDOW = timedelta(days=62)
TOKEN_LOCK_TTL_SECONDS = 60
EARLY_REFRESH = timedelta(minutes=5)
FALLBACK_EXPIRES_IN = 900  # used only when the token reply lacks a usable expires_in
SAVE_ATTEMPTS = 3
TID_HEADER = "intuit_tid"

_SECRET_FIELDS = ("client_id", "client_secret", "realm_id", "refresh_token")
_ENTITY = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_RESERVED_UPDATE_FIELDS = frozenset({"Id", "SyncToken", "sparse"})


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------
# Errors only this module raises
# --------------------------------------------------------------------------------------------


class RefreshTokenNotSaved(errors.ReauthorizationRequired):
    """Intuit issued a new refresh token but Secrets Manager would not store it.

    The new access token is deliberately not used: the stored refresh token may already be dead,
    and carrying on would hide that the next run needs a person."""


class TokenLockTimeout(errors.ServiceError):
    """Another process held the token-refresh lock longer than we were willing to wait."""


class _InvalidGrant(Exception):
    """Internal signal: the token endpoint rejected the refresh token."""

    def __init__(self, error: errors.ServiceError):
        super().__init__(error.reason)
        self.error = error


# --------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------


def token_lock_name(realm_id: str) -> str:
    return f"qbo-token#{realm_id}"


@contextmanager
def refresh_lock(
    ledger: Ledger,
    realm_id: str,
    *,
    owner: str | None = None,
    wait_seconds: float = 90.0,
    poll_seconds: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    ttl_seconds: float = TOKEN_LOCK_TTL_SECONDS,
) -> Iterator[None]:
    """The one lock under which the stored refresh token may change (a lease in the ledger table,
    per realm): the jobs' refreshes, ``make qbo-auth`` and ``make doctor`` all take it."""
    name = token_lock_name(realm_id)
    owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + wait_seconds
    announced = False
    while not ledger.acquire_lock(name, owner, ttl_seconds=ttl_seconds):
        if time.monotonic() >= deadline:
            raise TokenLockTimeout(
                SERVICE,
                "token refresh",
                f"another process held the lock {name} for more than {wait_seconds:g} s; try again later",
            )
        if not announced:
            logger.info("waiting for another process to finish refreshing the QBO token")
            announced = True
        sleep(poll_seconds)
    try:
        yield
    finally:
        try:
            ledger.release_lock(name, owner)
        except Exception as exc:  # noqa: BLE001 - must not hide the outcome; the lease expires
            logger.warning(
                "could not release the QBO token lock (it expires in {ttl} s): {error}",
                ttl=ttl_seconds,
                error=mask(str(exc)),
            )


class QboTokens:
    """Hands out a valid access token; refreshes it at most once at a time per realm.

    ``secrets``/``ledger`` are ``integrations.aws.SecretStore``/``Ledger`` (or anything with the
    same methods). ``session`` must NOT replay POSTs (``build_session(replay_safe_posts=False)``).
    The lock wait (default 90 s) outlasts the lock lease (60 s), so a crashed holder's lock is
    taken over instead of failing the run.
    """

    def __init__(
        self,
        secrets: SecretStore,
        secret_name: str,
        ledger: Ledger,
        session: requests.Session,
        token_url: str,
        clock: Callable[[], datetime] = _utcnow,
        *,
        owner: str | None = None,
        lock_wait_seconds: float = 90.0,
        lock_ttl_seconds: float = TOKEN_LOCK_TTL_SECONDS,
        lock_poll_seconds: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._secrets = secrets
        self._secret_name = secret_name
        self._ledger = ledger
        self._session = session
        self._token_url = token_url
        self._clock = clock
        self._owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock_wait_seconds = lock_wait_seconds
        self._lock_ttl_seconds = lock_ttl_seconds
        self._lock_poll_seconds = lock_poll_seconds
        self._sleep = sleep
        self._mutex = threading.Lock()  # one refresh at a time inside this process, too
        self._access_token: str | None = None
        self._refresh_after: datetime | None = None
        self._secret = self._read_secret()

    @property
    def realm_id(self) -> str:
        return str(self._secret["realm_id"]).strip()

    @property
    def environment(self) -> str:
        """``production`` or ``sandbox`` as stored in the secret (lower case; "" when absent)."""
        return str(self._secret.get("environment") or "").strip().lower()

    @property
    def expiry(self) -> dict[str, Any]:
        """The refresh token's stored expiry dates (see ``integrations.token_expiry``)."""
        return {k: self._secret.get(k) for k in (token_expiry.EXPIRES_AT, token_expiry.HARD_EXPIRES_AT)}

    @property
    def lock_name(self) -> str:
        return token_lock_name(self.realm_id)

    def access_token(self) -> str:
        """A valid access token, refreshed (and the rotated refresh token saved) when needed."""
        with self._mutex:
            if self._access_token and self._refresh_after and self._clock() < self._refresh_after:
                return self._access_token
            self._access_token = self._refresh_after = None
            return self._refresh_under_lock()

    def invalidate(self, failed_token: str | None = None) -> None:
        """Forget the access token after a 401 so the next call refreshes.

        With ``failed_token``, nothing happens when another thread already replaced that token."""
        with self._mutex:
            if failed_token is None or failed_token == self._access_token:
                self._access_token = self._refresh_after = None

    # -- internals ---------------------------------------------------------------------------

    def _read_secret(self) -> dict[str, Any]:
        secret = self._secrets.read_json(self._secret_name)
        if not isinstance(secret, dict):
            raise errors.ConfigError([f"QBO secret {self._secret_name} must hold a JSON object"])
        register_secret(secret.get("client_secret"), secret.get("refresh_token"))
        required_fields(secret, _SECRET_FIELDS, self._secret_name)
        return dict(secret)

    def _refresh_under_lock(self) -> str:
        with refresh_lock(
            self._ledger,
            self.realm_id,
            owner=self._owner,
            wait_seconds=self._lock_wait_seconds,
            poll_seconds=self._lock_poll_seconds,
            sleep=self._sleep,
            ttl_seconds=self._lock_ttl_seconds,
        ):
            secret = self._read_secret()  # another process may have rotated it meanwhile
            self._secret = secret
            try:
                return self._exchange_once_more_if_lost(secret)
            except _InvalidGrant as first:
                fresh = self._read_secret()
                if fresh["refresh_token"] == secret["refresh_token"]:
                    raise self._reauthorization(first.error) from None
                logger.info("QBO refresh token was replaced in the secret meanwhile; retrying once with it")
                self._secret = fresh
                try:
                    return self._exchange_once_more_if_lost(fresh)
                except _InvalidGrant as second:
                    raise self._reauthorization(second.error) from None

    def _exchange_once_more_if_lost(self, secret: Mapping[str, Any]) -> str:
        """A token reply lost on the way (timeout, dropped connection, 5xx, unreadable body) may
        have rotated the refresh token without our knowing the new value. Intuit keeps answering
        the previous value for a while (qbo-api.md: it changes about every 24 h and the old one
        stays valid), so the same token is tried exactly once more, still under the lock; if QBO
        then refuses it, the caller asks for re-authorisation instead of guessing."""
        try:
            return self._exchange(secret)
        except (errors.TransportError, errors.ServerError, errors.GarbledResponse) as exc:
            logger.warning(
                "QBO token reply lost ({error}); trying once more with the same refresh token", error=str(exc)
            )
            return self._exchange(secret)

    def _exchange(self, secret: Mapping[str, Any]) -> str:
        """POST the refresh token; save the rotated one; only then keep the access token."""
        started = self._clock()
        basic = base64.b64encode(f"{secret['client_id']}:{secret['client_secret']}".encode()).decode()
        register_secret(basic)
        try:
            response = http.call(
                self._session,
                SERVICE,
                "token refresh",
                "POST",
                self._token_url,
                parse_error=_parse_token_error,
                request_id_header=TID_HEADER,
                headers={
                    "Authorization": f"Basic {basic}",
                    "Accept": "application/json",
                    "Content-Type": "application/x-www-form-urlencoded",
                    token_expiry.HARD_EXPIRY_HEADER: "true",  # else Intuit leaves the 5-year date out
                },
                data={"grant_type": "refresh_token", "refresh_token": str(secret["refresh_token"])},
            )
        except errors.ServiceError as exc:
            if exc.code == "invalid_grant":
                raise _InvalidGrant(exc) from None
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429 and exc.code:
                raise errors.ReauthorizationRequired(
                    SERVICE,
                    "token refresh",
                    exc.reason,
                    status=exc.status,
                    request_id=exc.request_id,
                    code=exc.code,
                ) from None
            raise

        tid = response.headers.get(TID_HEADER)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            # No snippet of the body here: it may hold tokens we could not parse (and so not mask).
            raise errors.GarbledResponse(
                SERVICE,
                "token refresh",
                f"token endpoint answered {response.status_code} with a body that is not a JSON object "
                f"({response.headers.get('Content-Type', '?')}); a rotated refresh token may have been lost",
                status=response.status_code,
                request_id=tid,
            )
        new_refresh, access = body.get("refresh_token"), body.get("access_token")
        register_secret(new_refresh, access)  # the moment they arrive

        expiry = token_expiry.from_reply(body, started)
        if isinstance(new_refresh, str) and new_refresh.strip():
            if new_refresh != secret["refresh_token"] or token_expiry.changed(secret, expiry):
                self._save_refresh_token(secret, new_refresh, expiry)
        else:
            logger.warning("QBO token reply carried no refresh_token; keeping the stored one")
        if not isinstance(access, str) or not access.strip():
            raise errors.GarbledResponse(
                SERVICE, "token refresh", "token reply has no access_token", status=200, request_id=tid
            )
        lifetime = _seconds(body.get("expires_in"))
        early = min(EARLY_REFRESH, timedelta(seconds=lifetime / 2))
        self._access_token = access
        self._refresh_after = started + timedelta(seconds=lifetime) - early
        logger.info(
            "QBO access token refreshed",
            expires_in=lifetime,
            rotated=bool(isinstance(new_refresh, str) and new_refresh != secret["refresh_token"]),
            **({"tid": tid} if tid else {}),
        )
        return access

    def _save_refresh_token(
        self, secret: Mapping[str, Any], new_refresh: str, expiry: Mapping[str, str] | None = None
    ) -> None:
        updated = {**secret, "refresh_token": new_refresh, **(expiry or {})}
        last: Exception | None = None
        for attempt in range(1, SAVE_ATTEMPTS + 1):
            try:
                self._secrets.write_json(self._secret_name, updated)
            except Exception as exc:  # noqa: BLE001 - any failure means the token is not safe yet
                last = exc
                logger.warning(
                    "saving the rotated QBO refresh token failed (attempt {attempt}/{total}): {error}",
                    attempt=attempt,
                    total=SAVE_ATTEMPTS,
                    error=mask(str(exc)),
                )
                if attempt < SAVE_ATTEMPTS:
                    self._sleep(self._lock_poll_seconds)
                continue
            self._secret = updated
            return
        detail = mask(f"{type(last).__name__}: {last}")[:300]
        logger.error(
            "the new QBO refresh token could not be saved to {secret}; the access token is not used",
            secret=self._secret_name,
        )
        raise RefreshTokenNotSaved(
            SERVICE,
            "token refresh",
            f"Intuit issued a new refresh token but it could not be saved to secret {self._secret_name} "
            f"({detail}); the new access token was not used and the stored refresh token may no longer work",
        )

    def _reauthorization(self, error: errors.ServiceError) -> errors.ReauthorizationRequired:
        return errors.ReauthorizationRequired(
            SERVICE,
            "token refresh",
            f"the refresh token was rejected (invalid_grant) and secret {self._secret_name} holds no newer "
            f"one; reconnect the app to QuickBooks and store the new refresh token ({error.reason})",
            status=error.status,
            request_id=error.request_id,
            code="invalid_grant",
        )


def _seconds(value: Any) -> int:
    try:
        seconds = int(float(value))
    except (TypeError, ValueError):
        seconds = 0
    if seconds <= 0:
        logger.warning("QBO token reply has no usable expires_in; assuming {s} s", s=FALLBACK_EXPIRES_IN)
        return FALLBACK_EXPIRES_IN
    return seconds


def _parse_token_error(response: requests.Response) -> tuple[str, str | None]:
    """OAuth error bodies: ``{"error": "invalid_grant", "error_description": "..."}``."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"].strip():
        code = body["error"].strip()
        description = body.get("error_description")
        reason = f"token endpoint refused the refresh: {code}"
        if isinstance(description, str) and description.strip():
            reason += f" ({description.strip()})"
        return _clean(reason), code
    return parse_fault(response)


# --------------------------------------------------------------------------------------------
# Fault parsing
# --------------------------------------------------------------------------------------------

_XML_FAULT = re.compile(r"<(?:[\w.-]+:)?Fault\b([^>]*)>", re.S)
_XML_ERROR = re.compile(r"<(?:[\w.-]+:)?Error\b([^>]*)>(.*?)</(?:[\w.-]+:)?Error\s*>", re.S)
_XML_ATTR_CODE = re.compile(r"""\bcode\s*=\s*["']([^"']*)["']""")
_XML_ATTR_TYPE = re.compile(r"""\btype\s*=\s*["']([^"']*)["']""")


def _xml_text(tag: str, text: str) -> str | None:
    match = re.search(rf"<(?:[\w.-]+:)?{tag}\b[^>]*>(.*?)</(?:[\w.-]+:)?{tag}\s*>", text, re.S)
    return html.unescape(match.group(1)).strip() if match else None


def _clean(text: str, limit: int = 500) -> str:
    return mask(" ".join(str(text).split()))[:limit]


def _ci(mapping: Any, key: str) -> Any:
    """Case-insensitive key lookup (QBO sends ``Fault`` and ``fault``)."""
    if not isinstance(mapping, dict):
        return None
    if key in mapping:
        return mapping[key]
    lowered = key.lower()
    for name, value in mapping.items():
        if isinstance(name, str) and name.lower() == lowered:
            return value
    return None


def _find_fault(body: Any) -> dict | None:
    fault = _ci(body, "Fault")
    if isinstance(fault, dict):
        return fault
    nested = _ci(_ci(body, "QueryResponse"), "Fault")  # query errors arrive inside QueryResponse
    return nested if isinstance(nested, dict) else None


def _describe_fault(fault: dict) -> tuple[str, str | None]:
    items = _ci(fault, "Error")
    if isinstance(items, dict):
        items = [items]
    parts: list[str] = []
    code: str | None = None
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        item_code = _ci(item, "code")
        if code is None and item_code not in (None, ""):
            code = str(item_code).strip()
        text = ": ".join(
            str(value).strip()
            for value in (_ci(item, "Message"), _ci(item, "Detail"))
            if value not in (None, "")
        )
        element = _ci(item, "element")
        if element:
            text += f" (element {element})"
        parts.append(text or "no message")
    kind = _ci(fault, "type")
    reason = "; ".join(parts) or "fault without details"
    return _clean(f"{kind}: {reason}" if kind else reason), code


def _describe_xml_fault(text: str) -> tuple[str, str | None] | None:
    fault = _XML_FAULT.search(text)
    if not fault:
        return None
    kind_match = _XML_ATTR_TYPE.search(fault.group(1))
    parts: list[str] = []
    code: str | None = None
    for attrs, inner in _XML_ERROR.findall(text):
        code_match = _XML_ATTR_CODE.search(attrs)
        if code is None and code_match:
            code = code_match.group(1).strip() or None
        text_part = ": ".join(v for v in (_xml_text("Message", inner), _xml_text("Detail", inner)) if v)
        parts.append(text_part or "no message")
    reason = "; ".join(parts) or "fault without details"
    return _clean(f"{kind_match.group(1)}: {reason}" if kind_match else reason), code


def parse_fault(response: requests.Response) -> tuple[str, str | None]:
    """``(reason, code)`` from any QBO error body: JSON ``Fault``/``fault``, XML, or anything else."""
    text = response.text or ""
    try:
        body = response.json()
    except ValueError:
        body = None
    fault = _find_fault(body)
    if fault is not None:
        return _describe_fault(fault)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return _clean(f"{body['error']}: {body.get('error_description') or ''}".rstrip(": ")), None
    xml = _describe_xml_fault(text)
    if xml is not None:
        return xml
    snippet = _clean(re.sub(r"<[^>]+>", " ", text), 200)
    return (snippet or response.reason or "empty body"), None


def _error_class(status: int | None, code: str | None) -> type[errors.ServiceError]:
    """HTTP status first (401, 429, 5xx), then QBO's fault code."""
    if status == 401:
        return errors.AuthExpired
    if status == 429 or code == "3001":
        return errors.RateLimited
    if status is not None and status >= 500:
        return errors.ServerError
    if code == "5010":
        return errors.StaleObject
    if code == "600":
        return errors.DuplicateRequest
    if code == "610" or status == 404:
        return errors.NotFound
    if code in ("100", "3200"):
        return errors.AuthExpired
    if code == "120" or status == 403:
        return errors.PermissionDenied
    return errors.ValidationFault


def _refine(exc: errors.ServiceError) -> errors.ServiceError:
    """Re-type an error from ``http.call`` by QBO's fault code (a 400 may be 5010, 600, 610...)."""
    if exc.status is None:
        return exc
    kind = _error_class(exc.status, exc.code)
    if type(exc) is kind:
        return exc
    return kind(
        exc.service, exc.operation, exc.reason, status=exc.status, request_id=exc.request_id, code=exc.code
    )


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


def escape(value: str) -> str:
    """Escape a value for a single-quoted QBO query literal: backslash first, then apostrophe."""
    return str(value).replace("\\", "\\\\").replace("'", "\\'")


def _literal(value: str) -> str:
    return f"'{escape(value)}'"


def _check_request_id(request_id: str, limit: int = MAX_REQUEST_ID) -> str:
    if not isinstance(request_id, str) or not request_id.strip():
        raise ValueError("requestid must be a non-empty string")
    if len(request_id) > limit:
        raise ValueError(f"requestid must be at most {limit} characters (got {len(request_id)})")
    return request_id


def _path_id(value: str) -> str:
    """An entity id as one URL path segment (ids are strings; an empty one is a caller bug)."""
    text = str(value).strip()
    if not text:
        raise ValueError("an entity id must not be empty")
    return quote(text, safe="")


def request_id_for(key: str, purpose: str, attempt: int = 0) -> str:
    """The requestid of one logical write, derived from its ledger key, purpose and attempt: every
    retry and every re-run after a crash sends the same id, so QBO answers with the original result.

    QBO replays errors too: once a requestid got a definite failure (a fault that created nothing),
    the next attempt must use a new one, so the caller counts attempts in the ledger row."""
    suffix = f"#{attempt}" if attempt else ""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"qbo-invoice-processor:{key}:{purpose}{suffix}"))


def attempt_of(entry: LedgerEntry | None, purpose: str) -> int:
    """Which attempt of a ledger-claimed write this is: the row counts ``<purpose>_attempt`` up by
    one after each definite failure (``is_definite_failure``); nothing else moves it."""
    if entry is None:
        return 0
    return int(entry.attributes.get(f"{purpose}_attempt") or 0)


def request_id_of(key: str, purpose: str, entry: LedgerEntry | None) -> str:
    """The requestid of the next try of a ledger-claimed write. Attempt 0 keeps the id stored with
    the claim (a take-over of a dead run's claim repeats it, and so does a re-run after an unknown
    outcome: QBO answers with the original result); a later attempt, after a definite failure, gets
    the id derived from its number, because QBO would replay the old fault."""
    attempt = attempt_of(entry, purpose)
    if attempt == 0 and entry is not None and entry.request_id:
        return entry.request_id
    return request_id_for(key, purpose, attempt)


def is_definite_failure(error: errors.ServiceError) -> bool:
    """QBO answered and did nothing: a business or validation fault (610, 6000, 6070, ...). Retrying
    it needs a new requestid. 401, 429, 5xx, timeouts and garbled replies are unknown outcomes."""
    if isinstance(error, errors.DuplicateRequest | errors.StaleObject):
        return False
    return isinstance(error, errors.ValidationFault | errors.NotFound) and (error.status or 0) < 500


def retry_request_id(request_id: str) -> str:
    """A new, deterministic requestid for a deliberate second attempt (QBO would replay the first)."""
    derived = f"{request_id}-r"
    if len(derived) <= MAX_REQUEST_ID:
        return derived
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"qbo-requestid:{derived}"))


class _Body(dict):
    """A parsed JSON reply that remembers its ``intuit_tid`` (for errors about its content)."""

    def __init__(self, body: dict, tid: str | None):
        super().__init__(body)
        self.tid = tid


class QboClient:
    """QuickBooks Online Accounting API v3 for one company (realm).

    ``session`` should replay POSTs (``build_session(replay_safe_posts=True)``): every write here
    carries a ``requestid`` in the URL, so a replay is answered with the original result.
    ``tokens`` needs ``access_token()`` and ``invalidate(token)`` (a ``QboTokens``).
    """

    def __init__(
        self,
        session: requests.Session,
        tokens: QboTokens,
        realm_id: str,
        base_url: str,
        minorversion: int = MINOR_VERSION,
    ):
        self._session = session
        # /send is not known to be de-duplicated by requestid: it is never replayed blindly.
        self._send_session: requests.Session = getattr(session, "no_post_replay", session)
        self._tokens = tokens
        self.realm_id = str(realm_id)
        self.base_url = base_url.rstrip("/")
        self.minorversion = minorversion

    def throttling(self) -> dict[str, float]:
        """The 429s this client waited out and how long (for the run summary)."""
        return http.throttling(self._session)

    @property
    def token_expiry(self) -> dict[str, Any]:
        """The refresh token's stored expiry dates (for warnings; no call is made)."""
        return dict(getattr(self._tokens, "expiry", {}) or {})

    # -- plumbing ----------------------------------------------------------------------------

    def _url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        query = {**(params or {}), "minorversion": str(self.minorversion)}
        company = quote(self.realm_id, safe="")
        return f"{self.base_url}/v3/company/{company}/{path}?{urlencode(query, quote_via=quote)}"

    def _call(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        params: Mapping[str, str] | None = None,
        accept: str = "application/json",
        headers: Mapping[str, str] | None = None,
        read: Callable[[requests.Response, str], Any] | None = None,
        session: requests.Session | None = None,
        **kwargs: Any,
    ) -> Any:
        """One API call: one refresh and one retry on a 401; errors typed by QBO's fault code."""
        url = self._url(path, params)
        read = read or self._read_json
        for attempt in (1, 2):
            token = self._tokens.access_token()
            try:
                response = http.call(
                    session or self._session,
                    SERVICE,
                    operation,
                    method,
                    url,
                    parse_error=parse_fault,
                    request_id_header=TID_HEADER,
                    headers={"Authorization": f"Bearer {token}", "Accept": accept, **(headers or {})},
                    **kwargs,
                )
            except errors.ServiceError as exc:
                error = _refine(exc)
            else:
                try:
                    return read(response, operation)
                except errors.AuthExpired as exc:  # an authentication Fault inside a 2xx
                    error = exc
            if isinstance(error, errors.AuthExpired) and attempt == 1:
                logger.info(
                    "QBO answered 401 to {operation}; refreshing the access token once", operation=operation
                )
                self._tokens.invalidate(token)
                continue
            raise error from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _read_json(self, response: requests.Response, operation: str) -> _Body:
        tid = response.headers.get(TID_HEADER)
        try:
            body = http.json_body(response, SERVICE, operation)
        except errors.GarbledResponse as exc:
            xml = _describe_xml_fault(response.text or "")
            if xml is not None:  # a fault sent as XML despite Accept: application/json
                reason, code = xml
                raise _error_class(response.status_code, code)(
                    SERVICE, operation, reason, status=response.status_code, request_id=tid, code=code
                ) from None
            raise errors.GarbledResponse(
                SERVICE, operation, mask(exc.reason), status=response.status_code, request_id=tid
            ) from None
        if not isinstance(body, dict):
            raise errors.GarbledResponse(
                SERVICE, operation, "expected a JSON object", status=response.status_code, request_id=tid
            )
        fault = _find_fault(body)
        if fault is not None:  # a 200 that is an error
            reason, code = _describe_fault(fault)
            raise _error_class(response.status_code, code)(
                SERVICE, operation, reason, status=response.status_code, request_id=tid, code=code
            )
        return _Body(body, tid)

    def _read_pdf(self, response: requests.Response, operation: str) -> bytes:
        content = response.content or b""
        if content.startswith(b"%PDF"):
            return content
        if content.lstrip().startswith((b"{", b"<")):
            self._read_json(response, operation)  # raises the Fault it holds, or GarbledResponse
        raise errors.GarbledResponse(
            SERVICE,
            operation,
            f"expected a PDF, got {response.headers.get('Content-Type', '?')} ({len(content)} bytes)",
            status=response.status_code,
            request_id=response.headers.get(TID_HEADER),
        )

    def _invoice(self, body: _Body, key: str, operation: str) -> Invoice:
        return Invoice(self._entity(body, key, operation))

    def _entity(self, body: _Body, key: str, operation: str) -> dict:
        value = _ci(body, key)
        if not isinstance(value, dict):
            raise errors.GarbledResponse(
                SERVICE, operation, f"reply has no {key} object", status=200, request_id=body.tid
            )
        return value

    def _post_json(self, path: str, operation: str, payload: Any, params: Mapping[str, str]) -> _Body:
        return self._call(
            "POST",
            path,
            operation,
            params=params,
            headers={"Content-Type": "application/json"},
            data=decimal_json.dumps(payload).encode(),
        )

    # -- reads -------------------------------------------------------------------------------

    def query(
        self,
        entity: str,
        where: str | None = None,
        order_by: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[dict]:
        """All rows of ``SELECT * FROM entity [WHERE ..] [ORDERBY ..]``, fetched page by page.

        ``where`` is inserted as written: quote values with ``escape()``. Pages (1-based
        STARTPOSITION) are read until one comes back shorter than ``page_size``. Intuit documents no
        default order, so pages are always read in an explicit one (``Id`` unless told otherwise):
        without it a row could show up on two pages, or on none."""
        if not _ENTITY.fullmatch(entity or ""):
            raise ValueError(f"not a QBO entity name: {entity!r}")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        statement = f"SELECT * FROM {entity}"  # noqa: S608 - QBO query language; values go through escape()
        if where:
            statement += f" WHERE {where}"
        statement += f" ORDERBY {order_by or 'Id'}"
        return self._pages(entity, statement, page_size)  # arguments checked now, pages read lazily

    def _pages(self, entity: str, statement: str, page_size: int) -> Iterator[dict]:
        operation = f"query {entity}"
        start, previous_ids = 1, None
        while True:
            body = self._call(
                "GET",
                "query",
                operation,
                params={"query": f"{statement} STARTPOSITION {start} MAXRESULTS {page_size}"},
            )
            rows = self._rows(body, entity, operation)
            ids = [row.get("Id") for row in rows]
            if rows and ids == previous_ids:
                raise errors.GarbledResponse(
                    SERVICE, operation, f"the same page came back again at STARTPOSITION {start}"
                )
            yield from rows
            if len(rows) < page_size:
                return
            previous_ids = ids
            start += page_size

    def _rows(self, body: _Body, entity: str, operation: str) -> list[dict]:
        envelope = _ci(body, "QueryResponse")
        if not isinstance(envelope, dict):
            raise errors.GarbledResponse(
                SERVICE, operation, "reply has no QueryResponse", status=200, request_id=body.tid
            )
        rows = _ci(envelope, entity)
        if rows is None:  # QBO leaves the entity key out when nothing matched
            return []
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise errors.GarbledResponse(
                SERVICE, operation, f"QueryResponse.{entity} is not a list of objects", request_id=body.tid
            )
        return rows

    def customers(self, include_inactive: bool = True) -> list[Customer]:
        """Customers; inactive ones too by default (QBO hides them unless asked)."""
        return [
            Customer(row)
            for row in self.query("Customer", "Active IN (true, false)" if include_inactive else None)
        ]

    def items(self, include_inactive: bool = False) -> list[Item]:
        """Products and services (active only by default: an inactive item cannot be billed)."""
        return [
            Item(row) for row in self.query("Item", "Active IN (true, false)" if include_inactive else None)
        ]

    def invoices_between(self, start: date, end: date) -> list[Invoice]:
        """Invoices with ``start <= TxnDate <= end`` (both inclusive)."""
        if end < start:
            raise ValueError(f"end {end} is before start {start}")
        where = f"TxnDate >= {_literal(start.isoformat())} AND TxnDate <= {_literal(end.isoformat())}"
        return [Invoice(row) for row in self.query("Invoice", where)]

    def get_invoice(self, invoice_id: str) -> Invoice:
        operation = f"read invoice {invoice_id}"
        return self._invoice(
            self._call("GET", f"invoice/{_path_id(invoice_id)}", operation), "Invoice", operation
        )

    def custom_txn_numbers(self) -> bool:
        """Whether the company types its own invoice numbers (then we set DocNumber)."""
        body = self._call("GET", "preferences", "read preferences")
        preferences = self._entity(body, "Preferences", "read preferences")
        value = _ci(_ci(preferences, "SalesFormsPrefs"), "CustomTxnNumbers")
        if isinstance(value, str):
            return value.strip().lower() == "true"
        return value is True

    def terms(self) -> dict[str, dict]:
        """Payment terms by Id, inactive ones too (a customer may still point at one)."""
        return {str(t.get("Id")): t for t in self.query("Term", "Active IN (true, false)")}

    def default_term_id(self) -> str:
        """The company's default terms (Preferences.SalesFormsPrefs.DefaultTerms), or ""."""
        preferences = self._entity(
            self._call("GET", "preferences", "read preferences"), "Preferences", "read preferences"
        )
        ref = _ci(_ci(preferences, "SalesFormsPrefs"), "DefaultTerms")
        return str(_ci(ref, "value") or "").strip() if isinstance(ref, dict) else ""

    def company_name(self) -> str:
        """The connected company's name (CompanyInfo), to show which company a token reaches."""
        operation = "read company info"
        path = f"companyinfo/{_path_id(self.realm_id)}"
        info = self._entity(self._call("GET", path, operation), "CompanyInfo", operation)
        return str(info.get("CompanyName") or info.get("LegalName") or "")

    def invoice_pdf(self, invoice_id: str) -> bytes:
        return self._call(
            "GET",
            f"invoice/{_path_id(invoice_id)}/pdf",
            f"read invoice {invoice_id} PDF",
            accept="application/pdf",
            read=self._read_pdf,
        )

    # -- writes (every one carries a requestid) ----------------------------------------------

    def create_invoice(self, body: Mapping[str, Any], request_id: str) -> Invoice:
        """Create an invoice; returns the created Invoice object. A replay returns the original."""
        _check_request_id(request_id)
        if not isinstance(body, Mapping) or not body:
            raise ValueError("invoice body must be a non-empty mapping")
        if "Id" in body:
            raise ValueError("an invoice body with an Id is an update, not a create")
        reply = self._post_json("invoice", "create invoice", dict(body), {"requestid": request_id})
        return self._invoice(reply, "Invoice", "create invoice")

    def sparse_update_invoice(self, invoice_id: str, fields: Mapping[str, Any], request_id: str) -> Invoice:
        """Change only ``fields``; reads the current SyncToken first, and once more after a 5010."""
        _check_request_id(request_id)
        reserved = _RESERVED_UPDATE_FIELDS.intersection(fields)
        if reserved:
            raise ValueError(f"fields must not contain {', '.join(sorted(reserved))} (set by this call)")
        operation = f"update invoice {invoice_id}"
        for attempt_id in (request_id, retry_request_id(request_id)):
            current = self.get_invoice(invoice_id)
            if not str(current.get("SyncToken", "")).strip():
                raise errors.GarbledResponse(
                    SERVICE, operation, f"invoice {invoice_id} came back without a SyncToken"
                )
            payload = {
                "Id": str(invoice_id),
                "SyncToken": str(current.get("SyncToken", "")),
                "sparse": True,
                **fields,
            }
            try:
                return self._invoice(
                    self._post_json("invoice", operation, payload, {"requestid": attempt_id}),
                    "Invoice",
                    operation,
                )
            except errors.StaleObject:
                if attempt_id != request_id:
                    raise
                logger.info("QBO invoice {id} changed meanwhile (5010); re-reading it once", id=invoice_id)
        raise AssertionError("unreachable")  # pragma: no cover

    def send_invoice(self, invoice_id: str, request_id: str, send_to: str | None = None) -> Invoice:
        """Email the invoice through QBO (sets EmailStatus=EmailSent). ``send_to`` replaces BillEmail.

        Whether QBO de-duplicates ``/send`` by requestid is not documented, so a send is never
        replayed blindly: it goes through the session that repeats a POST only on a 429 (refused),
        never on a 5xx or a timeout. After such an unknown outcome the caller reads the invoice
        before sending again (the send job's ``stage=mailing`` check)."""
        _check_request_id(request_id)
        params = {"requestid": request_id}
        if send_to:
            params["sendTo"] = send_to
        operation = f"send invoice {invoice_id}"
        reply = self._call(
            "POST",
            f"invoice/{_path_id(invoice_id)}/send",
            operation,
            params=params,
            headers={"Content-Type": "application/octet-stream"},
            data=b"",
            session=self._send_session,
        )
        return self._invoice(reply, "Invoice", operation)


# --------------------------------------------------------------------------------------------
# Wiring
# --------------------------------------------------------------------------------------------


def build_qbo(settings: Settings, secrets: SecretStore, ledger: Ledger) -> QboClient:
    """The QBO client the jobs use: tokens from the QBO secret, base URL by its environment.

    The token session is kept short (timeout <= 30 s, <= 2 retries, Retry-After <= 10 s) so one
    refresh fits inside the 60 s token lock lease."""
    token_session = http.session_for(
        "qbo-oauth",
        settings,
        timeout=min(settings.timeout_for("qbo-oauth"), 30.0),
        max_retries=min(settings.http_max_retries, 2),
        max_retry_after=min(settings.http_max_retry_after_seconds, 10.0),
    )
    tokens = QboTokens(
        secrets,
        settings.qbo_secret_name,
        ledger,
        token_session,
        settings.qbo_token_url,
        lock_ttl_seconds=settings.token_lock_seconds,
    )
    base_url = settings.qbo_base_url
    if not base_url:
        environment = tokens.environment
        if environment not in QBO_API_URLS:
            raise errors.ConfigError(
                [
                    f"QBO secret {settings.qbo_secret_name}: environment must be one of "
                    f"{', '.join(sorted(QBO_API_URLS))} (got {environment or 'nothing'!r})"
                ]
            )
        base_url = QBO_API_URLS[environment]
    api_session = http.session_for(
        SERVICE,
        settings,
        replay_safe_posts=True,
        per_second=10,  # Intuit's published limits per company: stay under them instead of collecting 429s
        per_minute=500,
        throttle=http.ThrottlePolicy(
            settings.qbo_throttle_window_seconds, settings.qbo_throttle_max_wait_seconds
        ),
        max_in_flight=QBO_MAX_IN_FLIGHT,
        count_until_answered=True,  # QBO counts arrivals: see http.AnsweredRateLimiter
    )
    return QboClient(api_session, tokens, tokens.realm_id, base_url)
