"""One loopback HTTP server per emulated service, each in its own thread.

werkzeug's threaded WSGI server binds port 0 (a free port chosen by the OS) on 127.0.0.1 only, so
the sandbox never listens on an outside interface and many sandboxes can run side by side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

HOST = "127.0.0.1"


class _QuietHandler(WSGIRequestHandler):
    """No per-request access log lines (the inventory counts requests instead)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return

    def make_environ(self) -> dict[str, Any]:
        # werkzeug drops headers whose names contain "_" (proxy spoofing); Schematics needs the
        # literal ``refresh_token`` header, and nothing sits between the SDK and this server.
        environ = super().make_environ()
        for key, value in self.headers.items():
            if "_" in key:
                environ["HTTP_" + key.upper().replace("-", "_")] = value
        return environ


class ServiceServer:
    def __init__(self, name: str, app: Callable[..., Any], port: int = 0) -> None:
        self.name = name
        self._server: BaseWSGIServer = make_server(
            HOST, port, app, threaded=True, request_handler=_QuietHandler
        )
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self.port = self._server.server_port
        self.url = f"http://{HOST}:{self.port}"
        # a short poll interval makes shutdown() quick (it waits for the serve loop to notice)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-{name}",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
