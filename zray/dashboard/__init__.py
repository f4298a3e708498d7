"""The dashboard: pages, a JSON API and Prometheus metrics, served over HTTP by the head
broker on threads of its own (server.py), on port 8265 (Ray's) or the next free one.

Whoever starts the head (init(), `zray start --head`) binds the listening socket
with bind() and hands it to the head (--dashboard-fd): it knows the dashboard's
address at once, without waiting for the head. This module stays light (the driver
imports it); the server's modules load in the head only.
"""
from __future__ import annotations

import socket
from typing import Any

__all__ = ["DEFAULT_PORT", "bind", "serve", "url_of"]

DEFAULT_PORT = 8265      # Ray's
_TRIES = 10              # 8265..8274, then any free port


def bind(host: str = "127.0.0.1", port: int | None = None) -> socket.socket:
    """A listening TCP socket for the dashboard. port None: DEFAULT_PORT, or the next
    free one after it, or any free one; a port given explicitly must be free (OSError
    naming it if not)."""
    if not isinstance(host, str) or not host:
        raise ValueError(f"dashboard_host must be an address to listen on, got {host!r}")
    if port is not None and (type(port) is not int or not 0 <= port < 65536):
        raise ValueError(f"dashboard_port must be a port number (0-65535), got {port!r}")
    candidates = [port] if port is not None else \
        [DEFAULT_PORT + i for i in range(_TRIES)] + [0]
    last: OSError | None = None
    for p in candidates:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, p))
            sock.listen(64)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise OSError(f"the dashboard cannot listen on {host}:{port}: {last}")


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = "127.0.0.1" if host == "0.0.0.0" else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def serve(head: Any, fd: int) -> Any:
    """Serve the dashboard of `head` on the listening socket `fd` (inherited), on
    threads of its own; the server (stop it with server_close())."""
    from .server import DashboardServer
    sock = socket.socket(fileno=fd)
    server = DashboardServer(head, sock)
    server.start()
    return server
