"""The HTTP endpoints of a watch replica (``--listen HOST:PORT``): ``/healthz`` (the process
answers), ``/readyz`` (its role: ``leader`` or ``standby``, 503 while the database is
unreachable) and ``/metrics`` (Prometheus text format)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .metrics import REGISTRY

READY_ROLES = ("leader", "standby")


def parse_listen(value: str) -> tuple[str, int]:
    """'127.0.0.1:9100' -> ('127.0.0.1', 9100); ValueError when it is not HOST:PORT."""
    host, _sep, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be HOST:PORT, like 127.0.0.1:9100, got {value!r}")
    return host.strip("[]"), int(port)


def serve(address: tuple[str, int], role: Callable[[], str]) -> ThreadingHTTPServer:
    """Serve the endpoints from a daemon thread; ``role`` says what this replica is now."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._reply(200, b"ok\n")
            elif path == "/readyz":
                now = role()
                self._reply(200 if now in READY_ROLES else 503, f"{now}\n".encode())
            elif path == "/metrics":
                self._reply(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            else:
                self._reply(404, b"not found\n")

        def _reply(self, status: int, body: bytes, kind: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # probes every few seconds would drown the pass summaries

    server = ThreadingHTTPServer(address, Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
