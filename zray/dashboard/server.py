"""The dashboard's HTTP server: the standard library's ThreadingHTTPServer, on threads
of its own in the head's process (the head's loop never waits for it: a request only
reads the head's tables, see api.py), serving

    /, /tasks, /actors, /objects, /stream, /logs, /logs/<file>   pages (pages.py)
    /fragment/<name>        a page's section, fetched again by static/app.js
    /api/nodes, /api/tasks, /api/actors, /api/objects, /api/timeline, /api/logs   JSON
    /api/logs/<file>        a worker's log file, text (?lines=N: its last N lines)
    /metrics                Prometheus text format (metrics.py)
    /static/app.js, /static/style.css

GET only, no authentication: it listens on 127.0.0.1 unless told otherwise. Requests
whose Host header is a name other than localhost are refused (a web page cannot reach
it by rebinding its own name to 127.0.0.1)."""
from __future__ import annotations

import ipaddress
import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .. import _logs
from .._log import get_logger
from . import api, metrics, pages

__all__ = ["DashboardServer"]

STATIC = os.path.join(os.path.dirname(__file__), "static")
_STATIC_TYPES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, head: Any, sock: socket.socket) -> None:
        # The socket is bound and listening already (by whoever started the head, who
        # knows its address at once): no bind here, and no reverse DNS look-up.
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_name, self.server_port = sock.getsockname()[:2]
        self.head = head
        self.log = get_logger("dashboard")
        self.loopback = ipaddress.ip_address(self.server_name).is_loopback
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 1.0},
                                       name="zray-dashboard", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.server_name}]" if ":" in self.server_name else self.server_name
        return f"http://{host}:{self.server_port}"

    def start(self) -> None:
        self.thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.log.warning("a dashboard request failed", client=str(client_address))


def _host_ok(server: DashboardServer, host_header: str | None) -> bool:
    """Only an IP literal or localhost may name a loopback-only dashboard."""
    if not server.loopback or not host_header:
        return True
    host = urlsplit("//" + host_header).hostname or ""
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "zray-dashboard"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass   # no line per request in the head's log

    def do_GET(self) -> None:
        if not _host_ok(self.server, self.headers.get("Host")):
            self._send(403, "text/plain; charset=utf-8", b"forbidden: unknown Host\n")
            return
        url = urlsplit(self.path)
        q = dict(parse_qsl(url.query))
        try:
            self._route(url.path.rstrip("/") or "/", q)
        except ValueError as exc:   # a bad query: the caller's error, said plainly
            self._json({"error": str(exc)}, 400)
        except Exception as exc:
            self.server.log.warning("dashboard request failed", path=url.path, error=repr(exc)[:300])
            self._json({"error": f"{type(exc).__name__}: {exc}"}, 500)

    def _route(self, path: str, q: dict) -> None:
        head = self.server.head
        if path in JSON_ROUTES:
            self._json(JSON_ROUTES[path](head, q))
        elif path == "/metrics":
            self._send(200, metrics.CONTENT_TYPE, metrics.render(head).encode())
        elif path.startswith("/fragment/") and path[10:] in pages.FRAGMENTS:
            self._html(pages.FRAGMENTS[path[10:]](head, q))
        elif path.startswith("/api/logs/"):
            self._log_file(path[len("/api/logs/"):], q)
        elif path.startswith("/static/") and path[8:] in _STATIC_TYPES:
            with open(os.path.join(STATIC, path[8:]), "rb") as f:
                self._send(200, _STATIC_TYPES[path[8:]], f.read(), cache=True)
        else:
            html = pages.page(head, path, q)
            if html is None:
                self._send(404, "text/plain; charset=utf-8", f"no page {path}\n".encode())
            else:
                self._html(html)

    def _log_file(self, name: str, q: dict) -> None:
        path = _logs.path_of(self.server.head.session_dir, name)
        if path is None or not os.path.exists(path):
            self._send(404, "text/plain; charset=utf-8", f"no log file {name}\n".encode())
            return
        lines = _logs.read_tail(path, _int(q.get("lines"), 1000))
        self._send(200, "text/plain; charset=utf-8", ("\n".join(lines) + "\n").encode())

    def _html(self, text: str) -> None:
        self._send(200, "text/html; charset=utf-8", text.encode())

    def _json(self, value: Any, status: int = 200) -> None:
        body = json.dumps(value, default=_jsonable, separators=(",", ":")).encode()
        self._send(status, "application/json", body)

    def _send(self, status: int, ctype: str, body: bytes, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=300" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


def _int(value: Any, default: int) -> int:
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"expected a whole number, got {value!r}") from None
    if n < 0:
        raise ValueError(f"expected a number >= 0, got {n}")
    return n


def _tasks(head: Any, q: dict) -> dict:
    return api.tasks(head, q.get("state") or None, q.get("name") or None,
                     _int(q.get("limit"), 1000))


def _timeline(head: Any, q: dict) -> list:
    since = q.get("since")
    try:
        return api.timeline(head, float(since) if since else 0.0)
    except ValueError:
        raise ValueError(f"since must be a time in seconds since the epoch, got {since!r}") from None


JSON_ROUTES = {
    "/api/nodes": lambda head, q: api.nodes(head),
    "/api/tasks": _tasks,
    "/api/actors": lambda head, q: api.actors(head),
    "/api/objects": lambda head, q: api.objects(head),
    "/api/timeline": _timeline,
    "/api/logs": lambda head, q: _logs.list_logs(head.session_dir),
}
