"""The operator's HTTP endpoints: /healthz, /readyz and /metrics on one small threaded server."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from jupyternetes.app.metrics import Metrics

log = logging.getLogger("jupyternetes.operator")


def make_http_server(address: str, port: int, *, health: Callable[[], bool] | None,
                     ready: Callable[[], bool | tuple[bool, dict]] | None,
                     metrics: Metrics | None) -> ThreadingHTTPServer:
    """`ready` may return (ok, document): /readyz then answers that document as JSON (who
    leads, see leader.py)."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz" and health is not None:
                ok = health()
                self._send(200 if ok else 503, b"ok\n" if ok else b"unhealthy\n", "text/plain")
            elif path == "/readyz" and ready is not None:
                answer = ready()
                if isinstance(answer, tuple):
                    ok, doc = answer
                    self._send(200 if ok else 503, (json.dumps(doc) + "\n").encode(),
                               "application/json")
                else:
                    self._send(200 if answer else 503,
                               b"ok\n" if answer else b"not ready\n", "text/plain")
            elif path == "/metrics" and metrics is not None:
                body, content_type = metrics.exposition()
                self._send(200, body, content_type)
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    return server


def serve(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return thread
