"""Shared fixtures.

``local_http_server`` is a tiny scripted HTTP server on 127.0.0.1: `responses` mocks bypass
urllib3's retry machinery, so retry, Retry-After, timeout and dropped-connection behaviour is
tested against real sockets here.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from integrations.logging import masker


@dataclass
class Scripted:
    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (timeouts)
    drop: bool = False  # close the connection without answering


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class LocalServer:
    """Answers each (method, path) from a queue of scripted replies; the last reply repeats."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], deque[Scripted]] = {}
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                with owner._lock:
                    owner.requests.append(
                        Seen(self.command, parts.path, parts.query, dict(self.headers), body)
                    )
                    queue = owner.routes.get((self.command, parts.path))
                    reply = (
                        (queue.popleft() if len(queue) > 1 else queue[0])
                        if queue
                        else Scripted(404, {"error": "no route"})
                    )
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                payload = reply.body
                headers = dict(reply.headers)
                if isinstance(payload, dict | list):
                    payload = json.dumps(payload).encode()
                    headers.setdefault("Content-Type", "application/json")
                elif isinstance(payload, str):
                    payload = payload.encode()
                try:
                    self.send_response(reply.status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to answer

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def script(self, method: str, path: str, *replies: Scripted) -> None:
        with self._lock:
            self.routes[(method.upper(), path)] = deque(replies)

    def calls(self, method: str, path: str) -> list[Seen]:
        return [r for r in self.requests if r.method == method.upper() and r.path == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def local_http_server() -> Iterator[LocalServer]:
    server = LocalServer()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _fresh_secret_mask() -> Iterator[None]:
    """Each test starts with no registered secrets, so one test's secrets do not mask another's output."""
    masker.clear()
    yield
    masker.clear()


@pytest.fixture
def rotate_every_time(sandbox):
    """The QBO stand-in's strict mode for one test: a new refresh token on every refresh, the old
    one dead at once (its default follows Intuit's documented ~24 h rotation)."""
    from sandbox.qbo_oauth import OPTIONS, STRICT_ROTATION

    sandbox.set_qbo_options(**STRICT_ROTATION)
    yield
    sandbox.set_qbo_options(**{name: OPTIONS[name] for name in STRICT_ROTATION})
