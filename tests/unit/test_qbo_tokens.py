"""QboTokens: refresh tokens are never lost (DESIGN §2).

The fakes here behave like the real things where it matters: the fake Intuit token endpoint
accepts each refresh token exactly once (a reused one gets ``invalid_grant``, like Intuit), the
fake secret store records every write, and the fake ledger lock is a real mutual exclusion.
``tests/unit/test_qbo.py`` reuses them.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import pytest
import responses
from loguru import logger

from integrations import errors, token_expiry
from integrations.http import build_session
from integrations.logging import mask
from integrations.qbo import QboTokens, RefreshTokenNotSaved, TokenLockTimeout
from tests.conftest import Scripted

SECRET_NAME = "QBO/10000"
TOKEN_URL = "https://oauth.test/oauth2/v1/tokens/bearer"
CLIENT_ID = "client-id-abcdef"
CLIENT_SECRET = "client-secret-0123456789"
REALM = "9130350000000001"
FIRST_REFRESH = "refresh-token-000"


# ----------------------------------------------------------------------------------------------
# Fakes
# ----------------------------------------------------------------------------------------------


class FakeSecretStore:
    """In-memory SecretStore: read_json / write_json, with a record of every write."""

    def __init__(self, values: dict[str, dict] | None = None):
        self._lock = threading.Lock()
        self.values: dict[str, dict] = copy.deepcopy(values or {})
        self.writes: list[tuple[str, dict]] = []
        self.reads = 0
        self.fail_writes = 0  # how many of the next writes fail

    def read_json(self, name: str) -> dict:
        with self._lock:
            self.reads += 1
            if name not in self.values:
                raise errors.ServiceError("secretsmanager", f"GetSecretValue {name}", "secret not found")
            return copy.deepcopy(self.values[name])

    def write_json(self, name: str, value: dict) -> str:
        with self._lock:
            if self.fail_writes:
                self.fail_writes -= 1
                raise errors.ServiceError("secretsmanager", f"PutSecretValue {name}", "AccessDeniedException")
            self.values[name] = copy.deepcopy(value)
            self.writes.append((name, copy.deepcopy(value)))
            return f"version-{len(self.writes)}"

    def written_refresh_tokens(self, name: str = SECRET_NAME) -> list[str]:
        with self._lock:
            return [value["refresh_token"] for written, value in self.writes if written == name]


class FakeLedger:
    """In-memory Ledger lease lock: acquire_lock / release_lock (a real mutual exclusion)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.holders: dict[str, tuple[str, float]] = {}
        self.acquired: list[tuple[str, str]] = []
        self.released: list[tuple[str, str]] = []
        self.ttls: list[int] = []

    def acquire_lock(self, name: str, owner: str, ttl_seconds: int) -> bool:
        with self._lock:
            self.ttls.append(ttl_seconds)
            holder = self.holders.get(name)
            if holder and holder[0] != owner and holder[1] > time.monotonic():
                return False
            self.holders[name] = (owner, time.monotonic() + ttl_seconds)
            self.acquired.append((name, owner))
            return True

    def release_lock(self, name: str, owner: str) -> None:
        with self._lock:
            if self.holders.get(name, ("", 0))[0] == owner:
                del self.holders[name]
            self.released.append((name, owner))


class FakeIntuit:
    """Intuit's token endpoint and a bearer check for API callbacks.

    Each refresh token works once: after it is used, only the new one works and the old one gets
    HTTP 400 invalid_grant. ``api`` wraps an API callback: it answers 401 for unknown or revoked
    access tokens and records whether the refresh token issued together with the access token was
    already in the secret store when the token was used."""

    def __init__(self, store: FakeSecretStore, first_refresh: str = FIRST_REFRESH, delay: float = 0.0):
        self._lock = threading.Lock()
        self.store = store
        self.current_refresh = first_refresh
        self.delay = delay
        self.presented: list[str] = []  # every refresh token that reached the endpoint
        self.invalid_grants = 0
        self.issued: dict[str, str] = {}  # access token -> refresh token issued with it
        self.revoked: set[str] = set()
        self.api_uses: list[tuple[str, bool]] = []  # (access token, its refresh token was saved first)
        self.rotate = True
        self.on_token_request = None  # hook(refresh_token) run before answering
        self.counter = 0

    def all_tokens(self) -> list[str]:
        with self._lock:
            return [FIRST_REFRESH, CLIENT_SECRET, *self.issued, *self.issued.values(), *self.presented]

    def token(self, request) -> tuple[int, dict, str]:
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return 401, {"intuit_tid": "tid-token-401"}, json.dumps({"error": "invalid_client"})
        form = parse_qs(request.body if isinstance(request.body, str) else request.body.decode())
        assert form["grant_type"] == ["refresh_token"]
        assert request.headers["Accept"] == "application/json"
        presented = form["refresh_token"][0]
        if self.on_token_request:
            self.on_token_request(presented)
        with self._lock:
            self.presented.append(presented)
            if presented != self.current_refresh:
                self.invalid_grants += 1
                body = {"error": "invalid_grant", "error_description": "Incorrect or invalid refresh token"}
                return 400, {"intuit_tid": "tid-token-400"}, json.dumps(body)
            self.counter += 1
            new_refresh = f"refresh-token-{self.counter:03d}" if self.rotate else presented
            access = f"access-token-{self.counter:03d}"
            self.current_refresh = new_refresh
            self.issued[access] = new_refresh
        if self.delay:
            time.sleep(self.delay)
        reply = {
            "token_type": "bearer",
            "expires_in": 3600,
            "refresh_token": new_refresh,
            "x_refresh_token_expires_in": 8726400,
            "access_token": access,
        }
        if request.headers.get("x-include-refresh-token-hard-expires-in") == "true":  # Intuit's opt-in
            reply["x_refresh_token_hard_expires_in"] = 5 * 365 * 86400
        return 200, {"intuit_tid": "tid-token-200"}, json.dumps(reply)

    def api(self, handler):
        def callback(request):
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            with self._lock:
                known = token in self.issued and token not in self.revoked
                issued_refresh = self.issued.get(token)
            if not known:
                fault = {"fault": {"error": [{"message": "AuthenticationFailed", "code": "3200"}]}}
                return 401, {"intuit_tid": "tid-api-401"}, json.dumps(fault)
            saved = issued_refresh in self.store.written_refresh_tokens() or not self.rotate
            with self._lock:
                self.api_uses.append((token, saved))
            return handler(request)

        return callback


def qbo_secret(refresh_token: str = FIRST_REFRESH, **extra: str) -> dict:
    return {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "realm_id": REALM,
        "refresh_token": refresh_token,
        "environment": "sandbox",
        **extra,
    }


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 4, 17, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def make_tokens(store: FakeSecretStore, ledger: FakeLedger, session=None, **kwargs) -> QboTokens:
    kwargs.setdefault("lock_wait_seconds", 2.0)
    kwargs.setdefault("lock_poll_seconds", 0.005)
    return QboTokens(
        store,
        SECRET_NAME,
        ledger,
        session or build_session("qbo-oauth", max_retries=0),
        kwargs.pop("token_url", TOKEN_URL),
        **kwargs,
    )


def assert_no_secret_in(exc: BaseException, secrets: list[str]) -> None:
    text = f"{exc} {exc!r} {getattr(exc, 'reason', '')}"
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked into {text!r}"


@pytest.fixture
def store() -> FakeSecretStore:
    return FakeSecretStore({SECRET_NAME: qbo_secret()})


@pytest.fixture
def ledger() -> FakeLedger:
    return FakeLedger()


@pytest.fixture
def intuit(store: FakeSecretStore):
    fake = FakeIntuit(store)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback("POST", TOKEN_URL, callback=fake.token)
        yield fake


# ----------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------


def test_refresh_saves_rotated_token_in_whole_secret_before_returning_access_token(store, ledger, intuit):
    tokens = make_tokens(store, ledger)

    access = tokens.access_token()

    assert access == "access-token-001"
    assert intuit.presented == [FIRST_REFRESH]
    ((name, written),) = store.writes
    expiry = {k: written.pop(k) for k in ("refresh_token_expires_at", "refresh_token_hard_expires_at")}
    assert (name, written) == (SECRET_NAME, qbo_secret("refresh-token-001"))  # other fields kept
    days = {k: (datetime.fromisoformat(v) - datetime.now(UTC)).days for k, v in expiry.items()}
    assert days == {"refresh_token_expires_at": 100, "refresh_token_hard_expires_at": 1824}
    assert ledger.acquired == [(f"qbo-token#{REALM}", ledger.acquired[0][1])]
    assert ledger.released == ledger.acquired and ledger.ttls == [60]
    assert tokens.realm_id == REALM and tokens.environment == "sandbox"
    # both new tokens are masked in logs from the moment they arrived
    assert mask("a access-token-001 b refresh-token-001") == "a *** b ***"


def test_access_token_is_reused_until_five_minutes_before_expiry(store, ledger, intuit):
    clock = Clock()
    tokens = make_tokens(store, ledger, clock=clock)

    first = tokens.access_token()
    clock.now += timedelta(minutes=54, seconds=59)
    assert tokens.access_token() == first
    clock.now += timedelta(seconds=2)  # 55 min + 1 s: inside the 5-minute margin
    second = tokens.access_token()

    assert second != first
    assert intuit.presented == [FIRST_REFRESH, "refresh-token-001"]
    assert store.values[SECRET_NAME]["refresh_token"] == "refresh-token-002"


def test_invalidate_forces_a_refresh_but_ignores_an_already_replaced_token(store, ledger, intuit):
    tokens = make_tokens(store, ledger)
    first = tokens.access_token()
    tokens.invalidate(first)
    second = tokens.access_token()
    tokens.invalidate(first)  # a late 401 for the old token must not throw away the new one

    assert tokens.access_token() == second != first
    assert len(intuit.presented) == 2


def _stored_expiry(days: float, hard_days: float) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "refresh_token_expires_at": token_expiry.iso(now + timedelta(days=days)),
        "refresh_token_hard_expires_at": token_expiry.iso(now + timedelta(days=hard_days)),
    }


def test_unrotated_refresh_token_is_not_rewritten_while_its_dates_hold(ledger, intuit):
    intuit.rotate = False
    store = FakeSecretStore({SECRET_NAME: qbo_secret(**_stored_expiry(101, 5 * 365))})

    assert make_tokens(store, ledger).access_token() == "access-token-001"
    assert store.writes == []
    assert store.values[SECRET_NAME]["refresh_token"] == FIRST_REFRESH


def test_unrotated_refresh_token_gets_its_moved_expiry_date_saved(ledger, intuit):
    # The 100-day limit rolls forward with each use: the stored date must follow it, or the
    # warnings would fire for a token that is in daily use.
    intuit.rotate = False
    store = FakeSecretStore({SECRET_NAME: qbo_secret(**_stored_expiry(40, 5 * 365))})

    make_tokens(store, ledger).access_token()

    ((_, written),) = store.writes
    assert written["refresh_token"] == FIRST_REFRESH
    assert token_expiry.days_left(written, datetime.now(UTC)) == pytest.approx(101, abs=0.1)


def test_failed_secret_write_raises_and_withholds_the_access_token(store, ledger, intuit):
    store.fail_writes = 3
    tokens = make_tokens(store, ledger, sleep=lambda _: None)

    with pytest.raises(RefreshTokenNotSaved) as caught:
        tokens.access_token()

    assert isinstance(caught.value, errors.ReauthorizationRequired)  # the CLI exits 2
    assert "new refresh token" in str(caught.value) and "could not be saved" in str(caught.value)
    assert "AccessDeniedException" in str(caught.value)
    assert_no_secret_in(caught.value, intuit.all_tokens())
    assert ledger.released == ledger.acquired
    # the access token was never handed out: the next call refreshes again (and now fails: the
    # stored token was spent) instead of returning the unsaved one
    with pytest.raises(errors.ReauthorizationRequired):
        tokens.access_token()


def test_secret_write_is_retried_before_giving_up(store, ledger, intuit):
    store.fail_writes = 2

    assert make_tokens(store, ledger, sleep=lambda _: None).access_token() == "access-token-001"
    assert store.written_refresh_tokens() == ["refresh-token-001"]


def test_invalid_grant_with_unchanged_secret_requires_reauthorization(store, ledger, intuit):
    intuit.current_refresh = "refresh-token-somebody-else"
    tokens = make_tokens(store, ledger)
    reads_before = store.reads

    with pytest.raises(errors.ReauthorizationRequired) as caught:
        tokens.access_token()

    assert intuit.presented == [FIRST_REFRESH]  # not retried with the same token
    assert store.reads - reads_before == 2  # under the lock, then the one re-read
    assert caught.value.code == "invalid_grant" and caught.value.request_id == "tid-token-400"
    assert "refresh token was rejected (invalid_grant)" in str(caught.value)
    assert_no_secret_in(caught.value, [*intuit.all_tokens(), "refresh-token-somebody-else"])
    assert store.writes == [] and ledger.released == ledger.acquired


def test_invalid_grant_after_another_writer_rotated_the_secret_retries_once_with_it(store, ledger, intuit):
    tokens = make_tokens(store, ledger)

    def someone_else_refreshes_first(presented: str) -> None:
        # e.g. an operator re-authorised meanwhile: Intuit and the secret now hold a new token
        if presented == FIRST_REFRESH and intuit.current_refresh == FIRST_REFRESH:
            intuit.current_refresh = "refresh-token-operator"
            store.values[SECRET_NAME]["refresh_token"] = "refresh-token-operator"

    intuit.on_token_request = someone_else_refreshes_first

    assert tokens.access_token() == "access-token-001"
    assert intuit.presented == [FIRST_REFRESH, "refresh-token-operator"]
    assert store.values[SECRET_NAME]["refresh_token"] == "refresh-token-001"


def test_invalid_grant_twice_requires_reauthorization(store, ledger, intuit):
    tokens = make_tokens(store, ledger)

    def secret_changes_but_is_dead_too(presented: str) -> None:
        store.values[SECRET_NAME]["refresh_token"] = "refresh-token-also-dead"
        intuit.current_refresh = "refresh-token-live"

    intuit.on_token_request = secret_changes_but_is_dead_too

    with pytest.raises(errors.ReauthorizationRequired):
        tokens.access_token()
    assert intuit.presented == [FIRST_REFRESH, "refresh-token-also-dead"]


def test_invalid_client_requires_reauthorization_naming_the_error_code(ledger, intuit):
    store = FakeSecretStore({SECRET_NAME: qbo_secret(client_secret="client-secret-wrong-999")})
    intuit.store = store

    with pytest.raises(errors.ReauthorizationRequired) as caught:
        make_tokens(store, ledger).access_token()

    assert caught.value.code == "invalid_client" and caught.value.status == 401
    assert "invalid_client" in str(caught.value)
    assert_no_secret_in(caught.value, ["client-secret-wrong-999", FIRST_REFRESH])


def test_token_error_that_echoes_the_refresh_token_does_not_leak_it(store, ledger):
    body = {"error": "invalid_request", "error_description": f"token {FIRST_REFRESH} is malformed"}
    with responses.RequestsMock() as mock:
        mock.add("POST", TOKEN_URL, status=400, json=body)
        with pytest.raises(errors.ReauthorizationRequired) as caught:
            make_tokens(store, ledger).access_token()

    assert "invalid_request" in str(caught.value)
    assert_no_secret_in(caught.value, [FIRST_REFRESH, CLIENT_SECRET])


def test_garbled_token_reply_is_reported_without_echoing_the_body(store, ledger):
    body = "access_token=access-token-form-777&refresh_token=refresh-token-form-777"
    with responses.RequestsMock() as mock:
        mock.add("POST", TOKEN_URL, status=200, body=body, content_type="application/x-www-form-urlencoded")
        with pytest.raises(errors.GarbledResponse) as caught:
            make_tokens(store, ledger).access_token()
        assert len(mock.calls) == 2  # tried once more with the same token, then reported

    assert "may have been lost" in str(caught.value)
    assert_no_secret_in(caught.value, ["access-token-form-777", "refresh-token-form-777"])


def test_rotated_refresh_token_is_saved_even_when_the_reply_lacks_an_access_token(store, ledger):
    with responses.RequestsMock() as mock:
        mock.add("POST", TOKEN_URL, json={"refresh_token": "refresh-token-partial", "expires_in": 3600})
        with pytest.raises(errors.GarbledResponse, match="no access_token"):
            make_tokens(store, ledger).access_token()

    assert store.values[SECRET_NAME]["refresh_token"] == "refresh-token-partial"


def test_a_lost_token_reply_is_tried_once_more_with_the_same_token(store, ledger, local_http_server):
    """The session never replays the POST itself; the token code tries exactly once more, under
    the lock, with the same refresh token (Intuit keeps the previous value valid)."""
    reply = {
        "access_token": "access-token-second",
        "refresh_token": "refresh-token-second",
        "expires_in": 3600,
    }
    local_http_server.script("POST", "/token", Scripted(503, {"error": "unavailable"}), Scripted(200, reply))
    session = build_session("qbo-oauth", max_retries=3, backoff_factor=0.01, timeout=0.3)
    tokens = make_tokens(store, ledger, session=session, token_url=f"{local_http_server.url}/token")

    assert tokens.access_token() == "access-token-second"
    calls = local_http_server.calls("POST", "/token")
    assert len(calls) == 2 and calls[0].body == calls[1].body  # the same refresh token both times
    assert store.values[SECRET_NAME]["refresh_token"] == "refresh-token-second"


def test_a_token_reply_lost_twice_is_a_transport_error_not_a_crash(store, ledger, local_http_server):
    local_http_server.script("POST", "/token", Scripted(200, {"access_token": "x" * 10}, delay=0.45))
    session = build_session("qbo-oauth", max_retries=3, backoff_factor=0.01, timeout=0.3)
    tokens = make_tokens(store, ledger, session=session, token_url=f"{local_http_server.url}/token")

    with pytest.raises(errors.TransportError):
        tokens.access_token()
    assert len(local_http_server.calls("POST", "/token")) == 2  # once more, never a blind third time
    assert ledger.released == ledger.acquired
    assert store.values[SECRET_NAME]["refresh_token"] == FIRST_REFRESH
    time.sleep(0.2)  # let the late reply hit its closed socket while this test still captures output


def test_token_endpoint_429_is_retried_after_retry_after(store, ledger, local_http_server):

    reply = {
        "access_token": "access-token-after-429",
        "refresh_token": "refresh-token-after-429",
        "expires_in": 3600,
    }
    local_http_server.script(
        "POST", "/token", Scripted(429, {"error": "slow down"}, {"Retry-After": "0"}), Scripted(200, reply)
    )
    session = build_session("qbo-oauth", max_retries=2, backoff_factor=0.01, timeout=1)
    tokens = make_tokens(store, ledger, session=session, token_url=f"{local_http_server.url}/token")

    assert tokens.access_token() == "access-token-after-429"
    assert len(local_http_server.calls("POST", "/token")) == 2
    assert store.values[SECRET_NAME]["refresh_token"] == "refresh-token-after-429"


def test_lock_held_elsewhere_gives_up_after_the_bound_without_refreshing(store, ledger, intuit):
    ledger.acquire_lock(f"qbo-token#{REALM}", "another-process", ttl_seconds=60)
    tokens = make_tokens(store, ledger, lock_wait_seconds=0.05, lock_poll_seconds=0.01)

    started = time.monotonic()
    with pytest.raises(TokenLockTimeout, match=f"qbo-token#{REALM}"):
        tokens.access_token()

    assert time.monotonic() - started < 1
    assert intuit.presented == []
    assert ledger.holders[f"qbo-token#{REALM}"][0] == "another-process"  # not released by us


def test_concurrent_refreshes_spend_each_refresh_token_exactly_once(store, ledger):
    intuit = FakeIntuit(store, delay=0.05)  # a slow refresh, so the second one really waits
    first = make_tokens(store, ledger, owner="process-a")
    second = make_tokens(store, ledger, owner="process-b")
    start = threading.Barrier(2)
    results: dict[str, str] = {}
    failures: list[BaseException] = []

    def run(name: str, tokens: QboTokens) -> None:
        start.wait()
        try:
            results[name] = tokens.access_token()
        except BaseException as exc:
            failures.append(exc)

    with responses.RequestsMock() as mock:
        mock.add_callback("POST", TOKEN_URL, callback=intuit.token)
        threads = [threading.Thread(target=run, args=(n, t)) for n, t in (("a", first), ("b", second))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)

    assert failures == []
    assert intuit.invalid_grants == 0
    assert sorted(intuit.presented) == [FIRST_REFRESH, "refresh-token-001"]  # each used once
    assert sorted(results.values()) == ["access-token-001", "access-token-002"]
    assert store.values[SECRET_NAME]["refresh_token"] == "refresh-token-002"
    assert sorted(owner for _, owner in ledger.acquired) == ["process-a", "process-b"]


def test_secret_without_required_fields_is_a_config_error(ledger):
    store = FakeSecretStore({SECRET_NAME: {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}})

    with pytest.raises(errors.ConfigError) as caught:
        make_tokens(store, ledger)

    assert "realm_id" in str(caught.value) and "refresh_token" in str(caught.value)
    assert CLIENT_SECRET not in str(caught.value)


def test_no_token_reaches_a_log_line_even_before_masking(store, ledger, intuit):
    raw: list[str] = []
    sink = logger.add(lambda message: raw.append(str(message)), level="DEBUG", format="{message} {extra}")
    try:
        tokens = make_tokens(store, ledger, sleep=lambda _: None)
        tokens.access_token()
        tokens.invalidate()
        store.fail_writes = 3
        with pytest.raises(RefreshTokenNotSaved):
            tokens.access_token()
    finally:
        logger.remove(sink)

    text = "\n".join(raw)
    assert "could not be saved" in text  # the failure was logged ...
    for secret in intuit.all_tokens():  # ... without any token or the client secret
        assert secret not in text
