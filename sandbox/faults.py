"""Fault injection and request recording, one WSGI middleware in front of every stand-in.

Per service: latency, rate limits answered with the service's own 429 shape, a share of 5xx,
timeouts (the server does the work, then stalls past the client's timeout), dropped connections,
and deterministic rules ("fail the next N calls with status X") for tests.
"""

from __future__ import annotations

import json
import math
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SERVICES = ("qbo", "qbo_auth", "graph", "graph_auth", "clickup", "robocorp")
SPECIAL_OUTCOMES = ("timeout", "timeout-before", "drop", "drop-after")


@dataclass
class FaultConfig:
    """What to do to a share of one service's calls. Rates are probabilities between 0 and 1."""

    latency_ms: float = 0.0
    rate_limit_per_sec: int | None = None
    rate_limit_per_min: int | None = None
    max_concurrent: int | None = None  # more calls in flight than this: 429 (QBO: 10 per realm)
    concurrent_match: str | None = None  # only calls whose "METHOD /path" matches count (None: all)
    window_seconds: float = 60.0  # length of the "per minute" window (shorter only to test fast)
    throttle_seconds: float = 0.0  # a throttle burst: every call gets 429 for this long after set()
    retry_after: int | None = None  # seconds in Retry-After; None: until the window frees (at least 1)
    send_retry_after: bool = True  # False leaves Retry-After out (QBO's default: it documents none)
    error_rate: float = 0.0
    error_status: int | None = None  # None: 500, 502 or 503 at random
    timeout_rate: float = 0.0  # the work is done, then the answer stalls for timeout_seconds
    timeout_seconds: float = 65.0
    drop_rate: float = 0.0  # the connection is closed before the work is done
    seed: int | None = None

    def active(self) -> bool:
        return self != FaultConfig(seed=self.seed)


# The documented rules each stand-in enforces unless a test relaxes them by name (0 switches a
# limit off). Sources in sandbox/README.md, "Strict by default".
STRICT_DEFAULTS: dict[str, dict[str, Any]] = {
    # Intuit [LIMITS]: 10 requests/s and 500/min per realm, no Retry-After on the 429 ("wait 60
    # seconds"); [BLOG-CONC2016]: at most 10 concurrent requests per realm.
    "qbo": {
        "rate_limit_per_sec": 10,
        "rate_limit_per_min": 500,
        "max_concurrent": 10,
        "send_retry_after": False,
    },
    # Outlook [saas-apis.md C4]: 4 concurrent requests per app and mailbox; the 429 carries
    # Retry-After. Only the mailbox's own resources count (SharePoint has limits of its own).
    "graph": {"max_concurrent": 4, "concurrent_match": r"^\S+ /v1\.0/users/"},
    # ClickUp's 429 carries only X-RateLimit-Limit/Remaining/Reset (fault_response never adds
    # Retry-After for it); its per-token limit depends on the plan, so none is set by default.
}


def default_config(service: str) -> FaultConfig:
    """The strict configuration a service starts with (and returns to on clear())."""
    return FaultConfig(**STRICT_DEFAULTS.get(service, {}))


@dataclass
class FailRule:
    """Fail the next ``remaining`` calls matching ``match`` (regex on "METHOD /path?query")."""

    remaining: int
    status: int | str = 503
    match: str | None = None


@dataclass
class Decision:
    latency: float = 0.0
    outcome: int | str | None = None  # an HTTP status, one of SPECIAL_OUTCOMES, or None (serve normally)
    retry_after: int | None = None
    reset_at: float | None = None
    stall: float = 0.0
    rule: bool = False
    counted: bool = False  # holds a concurrency slot until done() is called


@dataclass
class _ServiceState:
    config: FaultConfig = field(default_factory=FaultConfig)
    rules: list[FailRule] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    window: deque[float] = field(default_factory=deque)
    in_flight: int = 0
    throttled_until: float = 0.0


def _fresh_state(service: str) -> _ServiceState:
    return _ServiceState(config=default_config(service))


class FaultInjector:
    """Holds the fault settings of every service; thread-safe; ``on_change`` persists them."""

    def __init__(self, on_change: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._services = {name: _fresh_state(name) for name in SERVICES}
        self._on_change = on_change

    def _state(self, service: str) -> _ServiceState:
        if service not in self._services:
            raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
        return self._services[service]

    def set(self, service: str, **settings: Any) -> FaultConfig:
        """Replace the random/latency/rate-limit settings of a service. Unnamed settings go back to
        the service's strict default (STRICT_DEFAULTS); a test relaxes a limit by naming it (0 = off)."""
        known = {f.name for f in fields(FaultConfig)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(
                f"unknown fault setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        given = {k: v for k, v in settings.items() if v is not None}
        config = FaultConfig(**{**STRICT_DEFAULTS.get(service, {}), **given})
        for name in ("error_rate", "timeout_rate", "drop_rate"):
            value = getattr(config, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1 (got {value})")
        with self._lock:
            state = self._state(service)
            state.config = config
            state.rng = random.Random(config.seed)
            state.window.clear()
            state.throttled_until = time.monotonic() + float(config.throttle_seconds or 0.0)
        self._changed()
        return config

    def config(self, service: str) -> FaultConfig:
        with self._lock:
            return self._state(service).config

    def fail_next(self, service: str, count: int, status: int | str = 503, match: str | None = None) -> None:
        """Deterministic faults for tests: the next ``count`` matching calls get ``status``."""
        if isinstance(status, str) and status.isdigit():
            status = int(status)
        if not (isinstance(status, int) and 400 <= status <= 599) and status not in SPECIAL_OUTCOMES:
            raise ValueError(
                f"status must be 400-599 or one of {', '.join(SPECIAL_OUTCOMES)} (got {status!r})"
            )
        if match:
            re.compile(match)
        with self._lock:
            self._state(service).rules.append(FailRule(int(count), status, match))
        self._changed()

    def clear(self, service: str | None = None) -> None:
        with self._lock:
            for name in [service] if service else list(self._services):
                self._services[name] = _fresh_state(name)
        self._changed()

    def describe(self) -> dict[str, Any]:
        """The non-default settings and pending rules, per service (JSON-able)."""
        with self._lock:
            out: dict[str, Any] = {}
            for name, state in self._services.items():
                rules = [asdict(rule) for rule in state.rules if rule.remaining > 0]
                defaults = asdict(default_config(name))
                if asdict(state.config) != {**defaults, "seed": state.config.seed} or rules:
                    settings = {k: v for k, v in asdict(state.config).items() if v != defaults[k]}
                    out[name] = {"settings": settings, "fail_next": rules}
            return out

    def load(self, described: dict[str, Any]) -> None:
        for service, entry in (described or {}).items():
            if service not in self._services:
                continue
            self.set(service, **entry.get("settings", {}))
            for rule in entry.get("fail_next", []):
                self.fail_next(service, rule["remaining"], rule.get("status", 503), rule.get("match"))

    def _changed(self) -> None:
        if self._on_change:
            self._on_change(self.describe())

    def decide(self, service: str, method: str, target: str) -> Decision:
        changed = False
        with self._lock:
            state = self._state(service)
            config = state.config
            decision = Decision(latency=max(float(config.latency_ms), 0.0) / 1000.0)
            for rule in state.rules:
                if rule.remaining > 0 and (not rule.match or re.search(rule.match, f"{method} {target}")):
                    rule.remaining -= 1
                    decision.outcome, decision.rule, changed = rule.status, True, True
                    if rule.status in ("timeout", "timeout-before"):
                        decision.stall = config.timeout_seconds
                    if rule.status == 429:
                        decision.retry_after = config.retry_after if config.retry_after is not None else 1
                        decision.reset_at = time.time() + decision.retry_after
                    break
            if decision.outcome is None and time.monotonic() < state.throttled_until:
                decision.outcome = 429
                decision.retry_after = config.retry_after if config.retry_after is not None else 60
                decision.reset_at = time.time() + (state.throttled_until - time.monotonic())
            if decision.outcome is None:
                self._rate_limit(state, decision)
            limited = bool(config.max_concurrent) and (
                not config.concurrent_match or re.search(config.concurrent_match, f"{method} {target}")
            )
            if decision.outcome is None and limited:
                if state.in_flight >= config.max_concurrent:
                    decision.outcome, decision.retry_after = 429, config.retry_after or 1
                    decision.reset_at = time.time() + 1
                else:
                    state.in_flight += 1
                    decision.counted = True
            if decision.outcome is None:
                if config.drop_rate and state.rng.random() < config.drop_rate:
                    decision.outcome = "drop"
                elif config.error_rate and state.rng.random() < config.error_rate:
                    decision.outcome = config.error_status or state.rng.choice((500, 502, 503))
                elif config.timeout_rate and state.rng.random() < config.timeout_rate:
                    decision.outcome, decision.stall = "timeout", config.timeout_seconds
            state.rules = [rule for rule in state.rules if rule.remaining > 0]
        if changed:
            self._changed()
        return decision

    def done(self, service: str, decision: Decision) -> None:
        """The call that ``decide`` let through has finished: free its concurrency slot."""
        if decision.counted:
            with self._lock:
                state = self._state(service)
                state.in_flight = max(0, state.in_flight - 1)

    @staticmethod
    def _rate_limit(state: _ServiceState, decision: Decision) -> None:
        config, window, now = state.config, state.window, time.monotonic()
        if not (config.rate_limit_per_sec or config.rate_limit_per_min):
            return
        span = float(config.window_seconds or 60.0)
        while window and window[0] <= now - span:
            window.popleft()
        wait = None
        if config.rate_limit_per_sec:
            recent = [t for t in window if t > now - 1.0]
            if len(recent) >= config.rate_limit_per_sec:
                wait = recent[-config.rate_limit_per_sec] + 1.0 - now
        if wait is None and config.rate_limit_per_min and len(window) >= config.rate_limit_per_min:
            wait = window[-config.rate_limit_per_min] + span - now
        if wait is None:
            window.append(now)
            return
        decision.outcome = 429
        decision.retry_after = (
            config.retry_after if config.retry_after is not None else max(1, math.ceil(wait))
        )
        decision.reset_at = time.time() + max(wait, 0.0)


# --- the services' own error shapes -------------------------------------------------------------

_QBO_THROTTLE_XML = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<IntuitResponse time="{time}" xmlns="http://schema.intuit.com/finance/v3">
    <Fault type="SERVICE">
        <Error code="3001">
            <Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>
            <Detail>The request limit was reached.  Try again later</Detail>
        </Error>
    </Fault>
</IntuitResponse>
"""


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


def fault_response(
    service: str, status: int, decision: Decision, config: FaultConfig
) -> tuple[int, dict, bytes]:
    """The body and headers the real service sends with ``status`` (as far as documented)."""
    headers: dict[str, str] = {}
    # Real ClickUp sends only X-RateLimit-* on a 429; real QBO documents none (send_retry_after).
    wants_retry_after = service != "clickup" and (config.send_retry_after or service != "qbo")
    if status == 429 and decision.retry_after is not None and wants_retry_after:
        headers["Retry-After"] = str(decision.retry_after)
    if service == "qbo":
        if status == 429:
            body = _QBO_THROTTLE_XML.format(time=_now_iso()).encode()
            return status, {"Content-Type": "application/xml", **headers}, body
        if status in (502, 503, 504):
            html = f"<html><head><title>{status}</title></head><body><h1>{status} Service Unavailable</h1></body></html>"
            return status, {"Content-Type": "text/html", **headers}, html.encode()
        error = {
            "Message": "An application error has occurred while processing your request",
            "code": "10000",
        }
        error["Detail"] = f"System Failure Error: sandbox injected HTTP {status}"
        return _json(
            status, {"Fault": {"Error": [error], "type": "SystemFault"}, "time": _now_iso()}, headers
        )
    if service == "qbo_auth":
        return _json(status, {"error": "server_error" if status >= 500 else "invalid_request"}, headers)
    if service in ("graph", "graph_auth"):
        code = {429: "TooManyRequests", 503: "serviceNotAvailable", 504: "gatewayTimeout"}.get(
            status, "generalException"
        )
        inner = {"request-id": str(uuid.uuid4()), "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")}
        if service == "graph_auth":
            return _json(
                status, {"error": "temporarily_unavailable", "error_description": f"AADSTS: {code}"}, headers
            )
        if status == 503:
            headers.setdefault("Retry-After", str(decision.retry_after or 1))
        return _json(
            status,
            {"error": {"code": code, "message": f"Sandbox injected HTTP {status}", "innerError": inner}},
            headers,
        )
    if service == "clickup":
        if status == 429:
            reset = int(math.ceil(decision.reset_at or time.time()))
            headers.update(
                {"X-RateLimit-Limit": str(config.rate_limit_per_min or config.rate_limit_per_sec or 100)}
            )
            headers.update({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)})
            return _json(status, {"err": "Rate limit reached", "ECODE": "APP_002"}, headers)
        return _json(status, {"err": "Internal Server Error", "ECODE": "APP_001"}, headers)
    code = "too_many_requests" if status == 429 else "internal_server_error"
    return _json(status, {"error": {"code": code, "message": f"Sandbox injected HTTP {status}"}}, headers)


# --- recording ----------------------------------------------------------------------------------


class RequestRecorder:
    """Counts calls per service and keeps the recent ones (method, path, query, status; never headers)."""

    def __init__(self, log_path: Path | None = None, keep: int = 20000) -> None:
        self._lock = threading.Lock()
        self.log_path = log_path
        self.counts: Counter[str] = Counter()
        self.statuses: dict[str, Counter[str]] = {}
        self.entries: deque[dict[str, Any]] = deque(maxlen=keep)

    def record(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False)
        with self._lock:
            self.counts[entry["service"]] += 1
            self.statuses.setdefault(entry["service"], Counter())[str(entry["status"])] += 1
            self.entries.append(entry)
            if self.log_path is not None:
                with open(self.log_path, "a", encoding="utf-8") as handle:
                    handle.write(line + "\n")

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                name: {"total": total, "by_status": dict(self.statuses[name])}
                for name, total in self.counts.items()
            }

    def calls(self, service: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self.entries if service is None or e["service"] == service]

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.statuses.clear()
            self.entries.clear()


def _drop_connection(environ: dict[str, Any]) -> None:
    sock = environ.get("werkzeug.socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class FaultMiddleware:
    """Applies the injector's decision to each call, records it, and adds per-service headers."""

    def __init__(
        self,
        app: Callable,
        service_for: Callable[[str], str],
        injector: FaultInjector,
        recorder: RequestRecorder,
        stop: threading.Event,
        extra_headers: Callable[[str], dict[str, str]] | None = None,
    ) -> None:
        self.app = app
        self.service_for = service_for
        self.injector = injector
        self.recorder = recorder
        self.stop = stop
        self.extra_headers = extra_headers or (lambda service: {})

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        started = time.monotonic()
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        service = self.service_for(path)
        decision = self.injector.decide(service, method, f"{path}?{query}" if query else path)
        entry = {"time": _now_iso(), "service": service, "method": method, "path": path, "query": query}
        try:
            return self._serve(environ, start_response, decision, started, entry)
        finally:
            self.injector.done(service, decision)

    def _serve(
        self,
        environ: dict[str, Any],
        start_response: Callable,
        decision: Decision,
        started: float,
        entry: dict[str, Any],
    ) -> Iterable[bytes]:
        service = entry["service"]

        def finish(status: int, fault: str | None) -> None:
            entry.update(status=status, ms=round((time.monotonic() - started) * 1000, 1), fault=fault)
            self.recorder.record(entry)

        if decision.latency:
            self.stop.wait(decision.latency)
        outcome = decision.outcome
        if outcome in ("drop", "timeout-before"):
            if outcome == "timeout-before":
                self.stop.wait(decision.stall)
            finish(0, str(outcome))
            _drop_connection(environ)
            raise ConnectionResetError("sandbox dropped the connection on purpose")
        if isinstance(outcome, int):
            status, headers, body = fault_response(service, outcome, decision, self.injector.config(service))
            headers = {**self.extra_headers(service), **headers, "Content-Length": str(len(body))}
            finish(status, f"injected {status}")
            start_response(f"{status} {_REASONS.get(status, 'Error')}", list(headers.items()))
            return [body]

        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        result = self.app(environ, capture)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        status_code = int(captured["status"].split(" ", 1)[0])
        if outcome in ("timeout", "drop-after"):
            if outcome == "timeout":
                self.stop.wait(decision.stall)
            finish(status_code, f"{outcome} (the work was done)")
            _drop_connection(environ)
            raise ConnectionResetError("sandbox dropped the connection after doing the work")
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        present = {k.lower() for k, _ in headers}
        headers += [(k, v) for k, v in self.extra_headers(service).items() if k.lower() not in present]
        headers.append(("Content-Length", str(len(body))))
        finish(status_code, None)
        start_response(captured["status"], headers)
        return [body]


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
