"""Threaded WSGI servers on 127.0.0.1 (https for the stand-ins, http for moto).

Werkzeug's development server is enough for one machine; this module only makes it quiet
(request logging happens in the fault middleware) and tolerant of connections that the fault
injection drops on purpose.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

from loguru import logger
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler


class QuietHandler(WSGIRequestHandler):
    """No access log on stderr; dropped connections are expected, not errors."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002 - werkzeug's signature
        logger.debug("http server {kind}: {message}", kind=type, message=message % args if args else message)

    def finish(self) -> None:
        try:
            super().finish()
        except Exception:  # noqa: BLE001, S110 - the socket may have been dropped on purpose
            pass


class _Server(ThreadedWSGIServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from {client} ended with an error", client=client_address)


class ServedApp:
    """One WSGI app on its own port, served from a daemon thread."""

    def __init__(
        self,
        name: str,
        app: Any,
        *,
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        handler: type[WSGIRequestHandler] = QuietHandler,
    ) -> None:
        self.name = name
        try:
            self.server = _Server("127.0.0.1", port, app, handler=handler, ssl_context=ssl_context)
        except OSError:
            self.server = _Server("127.0.0.1", 0, app, handler=handler, ssl_context=ssl_context)
        scheme = "https" if ssl_context is not None else "http"
        self.port = self.server.server_address[1]
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-{name}",
            daemon=True,
        )

    def start(self) -> ServedApp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
