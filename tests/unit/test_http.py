"""Retries, Retry-After, timeouts and typed errors of the shared HTTP session, on real sockets.

`responses` mocks bypass urllib3's retry machinery, so these run against the scripted local
server from conftest (127.0.0.1, a free port per test) with tiny backoff values.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from integrations import errors
from integrations.http import AnsweredRateLimiter, RateLimiter, build_session, call, json_body
from tests.conftest import LocalServer, Scripted


def session(**overrides: float | int | bool):
    options: dict = {"max_retries": 3, "backoff_factor": 0.001, "backoff_max": 0.01, "timeout": 2.0}
    options.update(overrides)
    return build_session("qbo", **options)


def test_get_is_retried_after_a_503(local_http_server: LocalServer) -> None:
    local_http_server.script("GET", "/v3/query", Scripted(503, "busy"), Scripted(200, {"QueryResponse": {}}))

    response = call(session(), "qbo", "query Invoice", "GET", f"{local_http_server.url}/v3/query")

    assert response.json() == {"QueryResponse": {}}
    assert len(local_http_server.calls("GET", "/v3/query")) == 2


def test_post_is_not_retried_on_503_because_it_may_have_been_done(local_http_server: LocalServer) -> None:
    local_http_server.script("POST", "/v3/invoice", Scripted(503, "busy"), Scripted(200, {"Invoice": {}}))

    with pytest.raises(errors.ServerError) as caught:
        call(session(), "qbo", "create invoice", "POST", f"{local_http_server.url}/v3/invoice", json={"a": 1})

    assert caught.value.status == 503
    assert len(local_http_server.calls("POST", "/v3/invoice")) == 1


def test_post_is_retried_with_the_same_body_when_replay_safe(local_http_server: LocalServer) -> None:
    local_http_server.script(
        "POST", "/v3/invoice", Scripted(503, "busy"), Scripted(200, {"Invoice": {"Id": "1"}})
    )

    response = call(
        session(replay_safe_posts=True),
        "qbo",
        "create invoice",
        "POST",
        f"{local_http_server.url}/v3/invoice?requestid=abc",
        json={"Line": [1]},
    )

    assert response.json() == {"Invoice": {"Id": "1"}}
    seen = local_http_server.calls("POST", "/v3/invoice")
    assert len(seen) == 2
    assert seen[0].body == seen[1].body == b'{"Line": [1]}'
    assert seen[0].query == seen[1].query == "requestid=abc"


def test_429_with_retry_after_is_retried_even_for_post(local_http_server: LocalServer) -> None:
    local_http_server.script(
        "POST", "/v3/invoice", Scripted(429, "slow down", {"Retry-After": "0"}), Scripted(200, {"ok": True})
    )

    response = call(
        session(), "qbo", "create invoice", "POST", f"{local_http_server.url}/v3/invoice", json={}
    )

    assert response.status_code == 200
    assert len(local_http_server.calls("POST", "/v3/invoice")) == 2


def test_retry_after_is_honoured_but_capped(local_http_server: LocalServer) -> None:
    local_http_server.script("GET", "/slow", Scripted(429, "", {"Retry-After": "30"}), Scripted(200, "ok"))

    started = time.monotonic()
    call(session(max_retry_after=0.3), "qbo", "query", "GET", f"{local_http_server.url}/slow")
    elapsed = time.monotonic() - started

    assert 0.3 <= elapsed < 3.0  # waited the cap, far more than the 1 ms backoff, far less than 30 s
    assert len(local_http_server.calls("GET", "/slow")) == 2


def test_exhausted_429_budget_raises_rate_limited(local_http_server: LocalServer) -> None:
    local_http_server.script("GET", "/busy", Scripted(429, "too many", {"Retry-After": "0"}))
    with pytest.raises(errors.RateLimited) as caught:
        call(session(max_retries=2), "qbo", "query", "GET", f"{local_http_server.url}/busy")
    assert caught.value.status == 429
    assert len(local_http_server.calls("GET", "/busy")) == 3


def test_timeout_is_a_transport_error_naming_service_and_operation(local_http_server: LocalServer) -> None:
    local_http_server.script("GET", "/hang", Scripted(200, "late", delay=0.6))

    with pytest.raises(errors.TransportError) as caught:
        call(
            session(timeout=0.1, max_retries=1),
            "qbo",
            "query Invoice",
            "GET",
            f"{local_http_server.url}/hang",
        )

    message = str(caught.value)
    assert message.startswith("qbo query Invoice failed:")
    assert "timed out" in message
    assert isinstance(caught.value, errors.TransportError)
    assert len(local_http_server.calls("GET", "/hang")) == 2


def test_post_timeout_is_not_repeated(local_http_server: LocalServer) -> None:
    local_http_server.script("POST", "/token", Scripted(200, "late", delay=0.6))

    with pytest.raises(errors.TransportError, match="timed out"):
        call(
            session(timeout=0.1), "qbo", "refresh token", "POST", f"{local_http_server.url}/token", data="x=1"
        )

    assert len(local_http_server.calls("POST", "/token")) == 1


def test_dropped_connection_is_retried_then_reported(local_http_server: LocalServer) -> None:
    local_http_server.script("GET", "/drop", Scripted(drop=True))

    with pytest.raises(errors.TransportError) as caught:
        call(session(max_retries=2), "clickup", "time entries", "GET", f"{local_http_server.url}/drop")

    assert caught.value.service == "clickup"
    assert "connection" in str(caught.value)
    assert len(local_http_server.calls("GET", "/drop")) == 3


def test_dropped_connection_then_success_recovers(local_http_server: LocalServer) -> None:
    local_http_server.script("GET", "/flaky", Scripted(drop=True), Scripted(200, {"ok": 1}))
    response = call(session(), "clickup", "time entries", "GET", f"{local_http_server.url}/flaky")
    assert response.json() == {"ok": 1}


@pytest.mark.parametrize("retries", [0, 1, 4])
def test_retry_budget_is_bounded(local_http_server: LocalServer, retries: int) -> None:
    local_http_server.script("GET", "/down", Scripted(503, "down"))

    with pytest.raises(errors.ServerError):
        call(session(max_retries=retries), "robocorp", "process runs", "GET", f"{local_http_server.url}/down")

    assert len(local_http_server.calls("GET", "/down")) == retries + 1


@pytest.mark.parametrize("status", [400, 422])
@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
def test_client_errors_are_never_retried(local_http_server: LocalServer, status: int, method: str) -> None:
    local_http_server.script(method, "/bad", Scripted(status, "invalid"), Scripted(200, "ok"))

    with pytest.raises(errors.ValidationFault) as caught:
        call(session(replay_safe_posts=True), "qbo", "write", method, f"{local_http_server.url}/bad")

    assert caught.value.status == status
    assert len(local_http_server.calls(method, "/bad")) == 1


def test_error_names_service_operation_status_and_request_id(local_http_server: LocalServer) -> None:
    local_http_server.script(
        "POST",
        "/v3/company/1/invoice",
        Scripted(400, {"Fault": {"Error": [{"code": "6070"}]}}, {"intuit_tid": "1-abc-tid"}),
    )

    with pytest.raises(errors.ValidationFault) as caught:
        call(
            session(),
            "qbo",
            "create invoice 10002-202610",
            "POST",
            f"{local_http_server.url}/v3/company/1/invoice",
            request_id_header="intuit_tid",
            parse_error=lambda response: ("Amount is not Qty * UnitPrice", "6070"),
            json={},
        )

    error = caught.value
    assert (error.service, error.operation, error.status, error.request_id, error.code) == (
        "qbo",
        "create invoice 10002-202610",
        400,
        "1-abc-tid",
        "6070",
    )
    message = str(error)
    for part in (
        "qbo",
        "create invoice 10002-202610",
        "Amount is not Qty * UnitPrice",
        "HTTP 400",
        "1-abc-tid",
    ):
        assert part in message


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, errors.AuthExpired),
        (403, errors.PermissionDenied),
        (404, errors.NotFound),
        (409, errors.ValidationFault),
    ],
)
def test_status_codes_map_to_typed_errors(
    local_http_server: LocalServer, status: int, kind: type[errors.ServiceError]
) -> None:
    local_http_server.script("GET", "/x", Scripted(status, "nope"))
    with pytest.raises(kind) as caught:
        call(session(), "msgraph", "get site", "GET", f"{local_http_server.url}/x")
    assert caught.value.reason == "nope"


def test_a_failing_error_parser_does_not_hide_the_failure(local_http_server: LocalServer) -> None:
    local_http_server.script("GET", "/x", Scripted(400, "<xml>odd</xml>"))

    def broken(response: object) -> tuple[str, str | None]:
        raise KeyError("Fault")

    with pytest.raises(errors.ValidationFault) as caught:
        call(session(), "qbo", "query", "GET", f"{local_http_server.url}/x", parse_error=broken)
    assert caught.value.reason == "<xml>odd</xml>"


def test_json_body_reports_a_garbled_reply(local_http_server: LocalServer) -> None:
    local_http_server.script(
        "GET", "/html", Scripted(200, "<html>maintenance</html>", {"Content-Type": "text/html"})
    )
    response = call(session(), "robocorp", "process runs", "GET", f"{local_http_server.url}/html")
    with pytest.raises(errors.GarbledResponse) as caught:
        json_body(response, "robocorp", "process runs")
    assert "text/html" in str(caught.value) and "maintenance" in str(caught.value)


def test_session_applies_default_timeouts_and_user_agent(local_http_server: LocalServer) -> None:
    built = build_session("qbo", timeout=7, connect_timeout=3)
    assert built.timeout == (3, 7)
    local_http_server.script("GET", "/ua", Scripted(200, "ok"))
    call(built, "qbo", "ping", "GET", f"{local_http_server.url}/ua")
    assert local_http_server.calls("GET", "/ua")[0].headers["User-Agent"].startswith("qbo-invoice-processor/")


def test_rate_limiter_windows_are_longer_than_the_services_so_late_arrivals_stay_inside() -> None:
    now, waits = [0.0], []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(per_second=10, per_minute=500, clock=lambda: now[0], sleep=sleep)
    for _ in range(11):
        limiter.acquire()

    assert waits == [pytest.approx(1.2)]  # the 11th waits the second plus the 0.2 s margin


def test_a_retried_429_passes_the_rate_limiter_like_the_first_attempt(local_http_server: LocalServer) -> None:
    local_http_server.script("GET", "/v3/query", Scripted(429, "slow down"), Scripted(200, {"ok": True}))
    limited = session(per_second=100)
    assert limited.limiter is not None
    acquired = []
    original = limited.limiter.acquire
    limited.limiter.acquire = lambda: (acquired.append(1), original())[1]  # type: ignore[method-assign]

    call(limited, "qbo", "query", "GET", f"{local_http_server.url}/v3/query")

    assert len(local_http_server.calls("GET", "/v3/query")) == 2
    assert len(acquired) == 2  # the retry counts against the service's limit too


def test_an_ssl_eof_is_retried_for_safe_calls_only() -> None:
    """urllib3 files an SSLEOFError under "other" errors; they were never retried (other=0)."""
    import ssl

    from urllib3.exceptions import SSLError

    retry = build_session("qbo", max_retries=3).get_adapter("https://x").max_retries
    dropped = SSLError(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))

    again = retry.increment(method="GET", url="/v3/company/1/query", error=dropped)
    assert again.other == 2 and again.total == 2
    with pytest.raises(SSLError):
        retry.increment(method="POST", url="/v3/company/1/invoice", error=dropped)
    replay_safe = (
        build_session("qbo", replay_safe_posts=True, max_retries=3).get_adapter("https://x").max_retries
    )
    assert replay_safe.increment(method="POST", url="/v3/company/1/invoice", error=dropped).other == 2


def test_in_flight_cap_keeps_at_most_that_many_calls_open_at_once(local_http_server: LocalServer) -> None:
    local_http_server.script("GET", "/v3/slow", Scripted(200, {"ok": True}, delay=0.3))
    capped = build_session("qbo", max_in_flight=2, max_retries=0)
    url = f"{local_http_server.url}/v3/slow"

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: capped.get(url).status_code, range(6)))
    elapsed = time.monotonic() - began

    assert answers == [200] * 6
    assert elapsed >= 0.85  # 6 calls of 0.3 s, 2 at a time: three rounds, never two


def test_a_call_counts_against_the_window_until_its_answer_so_a_late_arrival_stays_inside() -> None:
    now, waits = [0.0], []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = AnsweredRateLimiter(per_second=10, clock=lambda: now[0], sleep=sleep)
    for _ in range(10):
        limiter.acquire()
    now[0] = 0.7  # the answers take 0.7 s: any of the ten may have arrived just now
    limiter.answered()
    limiter.acquire()

    assert waits == [pytest.approx(1.05)]  # a whole window after the last answer, not after the sends


def test_unanswered_calls_hold_their_slots_until_answered() -> None:
    limiter = AnsweredRateLimiter(per_second=2)  # the real clock: the waiting thread polls
    limiter.acquire()
    limiter.acquire()
    blocked = threading.Thread(target=limiter.acquire, daemon=True)  # another thread: cannot answer ours
    blocked.start()
    blocked.join(timeout=0.3)

    assert blocked.is_alive()  # two unanswered calls fill a window of two, however long it waits
    limiter.answered()
    blocked.join(timeout=5)
    assert not blocked.is_alive()


def test_a_bare_429_holds_the_answered_limiter_like_the_plain_one() -> None:
    """QBO's 429 carries no Retry-After: the whole session waits out the throttle window, whichever
    limiter counts its calls (the merge of the two once lost this and met 429s again)."""
    for kind in (RateLimiter, AnsweredRateLimiter):
        now, waits = [0.0], []

        def sleep(seconds: float, now: list[float] = now, waits: list[float] = waits) -> None:
            waits.append(seconds)
            now[0] += seconds

        limiter = kind(per_second=10, clock=lambda now=now: now[0], sleep=sleep)
        limiter.acquire()
        limiter.answered()
        limiter.hold(60.0)
        limiter.acquire()

        assert waits == [pytest.approx(60.0)], kind.__name__
        assert limiter.report() == {"throttled": 1, "waited_seconds": 60.0}
