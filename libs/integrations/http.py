"""The one HTTP session factory and the one place that turns HTTP failures into typed errors.

Retries are urllib3's ``Retry``: backoff with jitter, ``Retry-After`` honoured (capped), and a
bounded budget. Only calls that are safe to repeat are retried on 5xx and timeouts: GET/PUT/DELETE
always, POST only on sessions built with ``replay_safe_posts=True`` (the QBO API session, whose
writes all carry a ``requestid``). A 429 is retried for every method: the server refused the call,
so repeating it cannot do the work twice.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests
from loguru import logger
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util.retry import Retry
from urllib3.util.util import reraise

from integrations import errors
from integrations.config import MAX_WORKERS

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
USER_AGENT = "qbo-invoice-processor/1.0"
POOL_SIZE = MAX_WORKERS + 8  # connections kept per host: one per worker, and spares


@dataclass(frozen=True)
class ThrottlePolicy:
    """How to wait out a 429 that carries no ``Retry-After`` (QBO documents none: "wait 60 seconds
    before retrying" [LIMITS]): every request of the session waits ``window_seconds``, and one call
    gives up once its waits would pass ``max_wait_seconds``. Such waits do not use up the retry
    count: only time bounds them."""

    window_seconds: float = 60.0
    max_wait_seconds: float = 300.0


class ServiceRetry(Retry):
    """urllib3 Retry that also retries a refused (429) non-idempotent call, caps Retry-After, reads
    ClickUp's ``X-RateLimit-Reset`` (epoch seconds) and waits out a bare QBO 429 (``throttle``)."""

    max_retry_after: float = 120.0
    limiter: RateLimiter | None = None  # a retry is one more request against the service's limit
    throttle: ThrottlePolicy | None = None
    throttle_waited: float = 0.0  # this call's waits for bare 429s so far

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code == 429 and self.total and self.status != 0:
            return True
        return super().is_retry(method, status_code, has_retry_after)

    def get_retry_after(self, response: Any) -> float | None:
        seconds = super().get_retry_after(response)
        if seconds is None:
            seconds = _reset_in(response)
        if seconds is None:
            return None
        return min(seconds, self.max_retry_after)

    def _bare_throttle(self, response: Any) -> bool:
        return (
            self.throttle is not None
            and response is not None
            and response.status == 429
            and self.get_retry_after(response) is None
        )

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> ServiceRetry:
        """Two additions to urllib3's count. "Other" errors (an SSL EOF, a connection dropped
        mid-handshake) are retried like read errors: only for methods that are safe to repeat,
        because the request may have reached the server. A bare 429 (``throttle``) is bounded by
        time, not by the retry count."""
        if not self._bare_throttle(response):
            is_other = (
                error is not None and not self._is_connection_error(error) and not self._is_read_error(error)
            )
            if is_other and (method is None or not self._is_method_retryable(method)):
                raise reraise(type(error), error, _stacktrace)
            return super().increment(method, url, response, error, _pool, _stacktrace)
        assert self.throttle is not None
        waited = self.throttle_waited + self.throttle.window_seconds
        if waited > self.throttle.max_wait_seconds:
            raise MaxRetryError(
                _pool, url, ResponseError(f"still throttled (429) after {self.throttle_waited:.0f} s")
            )
        # Counted against time, not against the retry count: give back what urllib3 takes.
        spare = self.new(
            total=self.total + 1 if isinstance(self.total, int) else self.total,
            status=self.status + 1 if isinstance(self.status, int) else self.status,
        )
        new = Retry.increment(spare, method, url, response, error, _pool, _stacktrace)
        new.throttle_waited = waited
        return new

    def sleep(self, response: Any = None) -> None:
        if self.limiter is not None:
            self.limiter.answered()  # the attempt that failed is back: it no longer holds a slot open
        if self._bare_throttle(response):
            assert self.throttle is not None
            if self.limiter is not None:
                self.limiter.hold(self.throttle.window_seconds)  # every thread of the session waits
            else:
                time.sleep(self.throttle.window_seconds)
        else:
            waited = self.get_retry_after(response) if response is not None else None
            super().sleep(response)
            if waited and response.status == 429 and self.limiter is not None:
                self.limiter.count_wait(waited)
        if self.limiter is not None:
            self.limiter.acquire()

    def new(self, **kw: Any) -> ServiceRetry:
        new = super().new(**kw)
        new.max_retry_after = self.max_retry_after
        new.limiter = self.limiter
        new.throttle = self.throttle
        new.throttle_waited = self.throttle_waited
        return new


def _reset_in(response: Any) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (ClickUp: a Unix time in seconds), or None."""
    if response is None or response.status != 429:
        return None
    raw = (response.headers.get("X-RateLimit-Reset") or "").strip()
    try:
        reset = float(raw)
    except ValueError:
        return None
    if reset > 1e11:  # milliseconds, defensively: ClickUp documents seconds
        reset /= 1000.0
    return max(reset - time.time(), 0.0) + 0.5  # half a second for clock skew


class RateLimiter:
    """Client-side limit of requests per second and per minute (QBO: 10/s and 500/min per company).

    Thread-safe sliding windows: callers block until a slot is free, so concurrent workers stay
    inside the service's published limits instead of collecting 429s. The stamp is taken before
    the request leaves, but the service counts its arrival, and one request can take longer to get
    there than a later one (a new TLS connection, a thread waiting for the GIL): so each window is
    ``margin`` seconds longer than the service's. Without it, a job running at the limit got 429s
    on ~6% of its QBO calls in ``python -m sandbox.bench --fast``; 0.2 s costs nothing sustained, as
    10 per 1.2 s is QBO's 500/min anyway.
    """

    def __init__(
        self,
        per_second: int | None = None,
        per_minute: int | None = None,
        clock=time.monotonic,
        sleep=time.sleep,
        margin: float = 0.2,
    ):
        self.windows = [
            (limit, span + margin) for limit, span in ((per_second, 1.0), (per_minute, 60.0)) if limit
        ]
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep
        self._hold_until = 0.0
        self.throttled = 0  # 429s this session waited out
        self.waited_seconds = 0.0  # wall time the session was held back by them

    def hold(self, seconds: float) -> None:
        """The service refused a call (429): no request of this session leaves for ``seconds``."""
        with self._lock:
            now = self._clock()
            until = now + seconds
            self.throttled += 1
            self.waited_seconds += max(0.0, until - max(self._hold_until, now))
            self._hold_until = max(self._hold_until, until)

    def count_wait(self, seconds: float) -> None:
        """A 429 whose Retry-After (or reset time) the retry slept out."""
        with self._lock:
            self.throttled += 1
            self.waited_seconds += seconds

    def report(self) -> dict[str, float]:
        with self._lock:
            return {"throttled": self.throttled, "waited_seconds": round(self.waited_seconds, 1)}

    def acquire(self) -> None:
        """Block until a request may leave: after any 429 hold, and inside every window."""
        while True:
            with self._lock:
                now = self._clock()
                wait = self._hold_until - now if now < self._hold_until else self._slot(now)
                if wait <= 0:
                    self._take(now)
                    return
            self._sleep(wait)

    def answered(self) -> None:
        """The calling thread's request is back (only ``AnsweredRateLimiter`` counts this)."""

    def _take(self, now: float) -> None:
        """Count a request leaving now. Caller holds the lock."""
        self._stamps.append(now)

    def _slot(self, now: float) -> float:
        """Seconds until a request may leave under the windows (0: now). Caller holds the lock."""
        horizon = max((span for _, span in self.windows), default=0.0)
        while self._stamps and now - self._stamps[0] >= horizon:
            self._stamps.popleft()
        wait = 0.0
        for limit, span in self.windows:
            recent = [t for t in self._stamps if now - t < span]
            if len(recent) >= limit:
                wait = max(wait, span - (now - recent[-limit]))
        return wait


class AnsweredRateLimiter(RateLimiter):
    """A ``RateLimiter`` that counts each request in its windows until its answer is back.

    The service counts a request when it ARRIVES, some time between our send and our answer; how
    long that takes varies (a new TLS connection, a busy machine: the bench saw four QBO calls sent
    0.12 s apart arrive within 0.08 s, and twelve in one second). A fixed margin cannot cover an
    unbounded delay, but cause and effect can: a request that arrived in the service's window
    ``(t - W, t]`` was answered after ``t - W``. So a new request may leave only while fewer than
    ``limit`` requests were answered within the last window or are still unanswered; then no window
    of the service's can ever hold more than ``limit`` arrivals, whatever the delays. The cost is one
    round trip per window (10 per 1.1-1.3 s for QBO), which its 500/min pace hides beyond 500 calls.

    ``answered()`` closes every request the calling thread opened (urllib3's retries included)."""

    def __init__(self, per_second: int | None = None, per_minute: int | None = None, **options: Any):
        options.setdefault("margin", 0.05)  # clock granularity only: arrival delays are covered above
        super().__init__(per_second, per_minute, **options)
        self._calls: deque[list[float | None]] = deque()  # [sent, answered or None]
        self._open = threading.local()

    def _slot(self, now: float) -> float:
        horizon = max((span for _, span in self.windows), default=0.0)
        while self._calls and self._calls[0][1] is not None and now - self._calls[0][1] >= horizon:
            self._calls.popleft()
        wait = 0.0
        for limit, span in self.windows:
            ends = [end for _, end in self._calls if end is None or now - end < span]
            if len(ends) >= limit:
                answered = sorted(end for end in ends if end is not None)
                excess = len(ends) - limit  # this many more must leave the window first
                wait = max(wait, span - (now - answered[excess]) if excess < len(answered) else 0.02)
        return wait

    def _take(self, now: float) -> None:
        call: list[float | None] = [now, None]
        self._calls.append(call)
        self._open.calls = [*getattr(self._open, "calls", []), call]

    def answered(self) -> None:
        with self._lock:
            now = self._clock()
            for call in getattr(self._open, "calls", []):
                call[1] = now
            self._open.calls = []


class InFlightCap:
    """At most ``limit`` requests of one session in flight at once (QBO: 10 concurrent per realm).

    Taken before the rate limiter's slot, so a request waiting here has not been counted yet;
    held for the whole call, its retries included (a retry is the same request in flight)."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError("an in-flight cap must be at least 1")
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    def __enter__(self) -> InFlightCap:
        self._slots.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._slots.release()


class ServiceSession(requests.Session):
    """A requests Session that knows its service name, applies a default timeout and a rate limit."""

    def __init__(
        self,
        service: str,
        timeout: float | tuple[float, float],
        limiter: RateLimiter | None = None,
        in_flight: InFlightCap | None = None,
    ):
        super().__init__()
        self.service = service
        self.timeout = timeout
        self.limiter = limiter
        self.in_flight = in_flight
        # The same service and limits, but a POST is never replayed on 5xx/timeouts (only on 429,
        # which refused it): for writes the service does not de-duplicate, such as QBO's /send.
        self.no_post_replay: ServiceSession = self
        self.max_attempts = 1  # set by build_session: 1 + the retry budget

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self.timeout)
        if self.in_flight is None:
            return self._limited(method, url, **kwargs)
        with self.in_flight:
            return self._limited(method, url, **kwargs)

    def _limited(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        if self.limiter is None:
            return super().request(method, url, **kwargs)
        self.limiter.acquire()
        try:
            return super().request(method, url, **kwargs)
        finally:
            self.limiter.answered()


def session_for(service: str, settings: Any, **options: Any) -> ServiceSession:
    """``build_session`` with the timeout and retry budget of ``settings`` (each may be overridden):
    the read timeout is the service's own (``Settings.timeout_for``: QBO 130 s, its token endpoint
    30 s, the others 60 s; ``HTTP_TIMEOUT_SECONDS`` overrides all)."""
    defaults = {
        "timeout": settings.timeout_for(service),
        "max_retries": settings.http_max_retries,
        "max_retry_after": settings.http_max_retry_after_seconds,
    }
    return build_session(service, **{**defaults, **options})


def build_session(
    service: str,
    *,
    replay_safe_posts: bool = False,
    timeout: float = 60.0,
    connect_timeout: float = 10.0,
    max_retries: int = 5,
    backoff_factor: float = 0.5,
    backoff_max: float = 30.0,
    max_retry_after: float = 120.0,
    per_second: int | None = None,
    per_minute: int | None = None,
    throttle: ThrottlePolicy | None = None,
    max_in_flight: int | None = None,
    count_until_answered: bool = False,
) -> ServiceSession:
    """Build the session a client uses for one service.

    ``throttle``: wait out a 429 without ``Retry-After`` as the policy says (QBO) instead of
    urllib3's short backoff. Every session counts the 429s it waited out (``session.limiter``).
    ``max_in_flight``: see ``InFlightCap``; ``count_until_answered``: see ``AnsweredRateLimiter``.
    Both are shared by the session and its ``no_post_replay`` twin: one service, one budget."""
    kind = AnsweredRateLimiter if count_until_answered else RateLimiter
    limiter = kind(per_second, per_minute)  # without limits it only holds and counts 429 waits
    in_flight = InFlightCap(max_in_flight) if max_in_flight else None

    def mounted(methods: frozenset[str]) -> ServiceSession:
        retry = ServiceRetry(
            total=max_retries,
            connect=max_retries,
            read=max_retries,
            status=max_retries,
            other=max_retries,  # only for retryable methods: see ServiceRetry.increment
            allowed_methods=methods,
            status_forcelist=RETRY_STATUSES,
            backoff_factor=backoff_factor,
            backoff_max=backoff_max,
            backoff_jitter=backoff_factor,
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
        )
        retry.max_retry_after = max_retry_after
        retry.throttle = throttle
        retry.limiter = limiter
        session = ServiceSession(
            service, timeout=(connect_timeout, timeout), limiter=limiter, in_flight=in_flight
        )
        session.max_attempts = max_retries + 1
        adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=POOL_SIZE)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers["User-Agent"] = USER_AGENT
        return session

    session = mounted(IDEMPOTENT_METHODS | ({"POST", "PATCH"} if replay_safe_posts else set()))
    session.no_post_replay = mounted(IDEMPOTENT_METHODS) if replay_safe_posts else session
    return session


def throttling(session: requests.Session) -> dict[str, float]:
    """The 429s a session waited out and for how long (zeros for a session not built here)."""
    limiter = getattr(session, "limiter", None)
    return limiter.report() if limiter is not None else {"throttled": 0, "waited_seconds": 0.0}


ErrorParser = Callable[[requests.Response], tuple[str, str | None]]


def _default_reason(response: requests.Response) -> tuple[str, str | None]:
    text = (response.text or "").strip().replace("\n", " ")
    return (text[:300] or response.reason or "no body"), None


def call(
    session: requests.Session,
    service: str,
    operation: str,
    method: str,
    url: str,
    *,
    parse_error: ErrorParser = _default_reason,
    request_id_header: str | None = None,
    **kwargs: Any,
) -> requests.Response:
    """Make one call (retries happen inside the session) and raise a typed error on failure.

    ``parse_error`` turns an error body into ``(reason, code)``; it must be lenient (bodies may be
    XML, JSON with odd casing, or empty). ``request_id_header`` names the response header that
    carries the service's transaction id (``intuit_tid`` for QBO).
    """
    try:
        response = session.request(method, url, **kwargs)
    except requests.exceptions.RetryError as exc:  # raised only when the budget ends on a redirect
        raise errors.TransportError(
            service, operation, f"retries exhausted ({exc.__class__.__name__})"
        ) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise errors.TransportError(service, operation, _transport_reason(exc, session)) from None
    except requests.exceptions.RequestException as exc:
        raise errors.TransportError(service, operation, exc.__class__.__name__) from None

    tid = response.headers.get(request_id_header) if request_id_header else None
    logger.debug(
        "{service} {operation} -> {status}",
        service=service,
        operation=operation,
        status=response.status_code,
        **({"tid": tid} if tid else {}),
    )
    if response.status_code < 400:
        return response
    try:
        reason, code = parse_error(response)
    except Exception:  # noqa: BLE001 - a parser must never hide the real failure
        reason, code = _default_reason(response)
    status = response.status_code
    kinds: dict[int, type[errors.ServiceError]] = {
        401: errors.AuthExpired,
        403: errors.PermissionDenied,
        404: errors.NotFound,
        429: errors.RateLimited,
    }
    kind = kinds.get(status) or (errors.ServerError if status >= 500 else errors.ValidationFault)
    raise kind(service, operation, reason, status=status, request_id=tid, code=code)


def _transport_reason(exc: Exception, session: requests.Session) -> str:
    """What went wrong and how many attempts were made: the whole budget when urllib3 gave up
    after retrying, one when the call was not safe to repeat."""
    text = str(exc)
    exhausted = "Max retries exceeded" in text
    attempts = getattr(session, "max_attempts", 1) if exhausted else 1
    if isinstance(exc, requests.exceptions.Timeout) or any(
        marker in text for marker in ("Read timed out", "ReadTimeoutError", "ConnectTimeoutError")
    ):
        what = "timed out"
    elif exhausted and "ResponseError" in text:
        what = "too many error responses"
    else:
        what = "connection failed or dropped"
    return f"{what} ({attempts} attempt{'s' if attempts != 1 else ''})"


def json_body(response: requests.Response, service: str, operation: str) -> Any:
    """Parse a JSON body or raise GarbledResponse naming the call.

    Non-integral numbers become Decimal, so money read from a service never passes through a float."""
    try:
        return response.json(parse_float=Decimal)
    except ValueError:
        snippet = (response.text or "")[:120].replace("\n", " ")
        raise errors.GarbledResponse(
            service,
            operation,
            f"expected JSON, got {response.headers.get('Content-Type', '?')}: {snippet!r}",
            status=response.status_code,
        ) from None
