"""The memory table of the head's own node (who holds which object), for the objects
page: asked of that node as `zray memory` asks it (HEAD_CALL node.list_objects), on a
socket of the dashboard's own, one request at a time. The node asks each of its
processes and answers within CONFIG.memory_stats_timeout_s."""
from __future__ import annotations

import os
import threading

import zmq

from .. import _protocol as P
from .._config import CONFIG
from .._session import read_node_info

__all__ = ["NodeObjects"]


class NodeObjects:
    def __init__(self, session_dir: str) -> None:
        self.session_dir = session_dir
        self._lock = threading.Lock()
        self._ctx: zmq.Context | None = None
        self._seq = 0

    def fetch(self) -> dict:
        """{node_id, rows, store, unanswered} as the node answers, or {error}."""
        with self._lock:
            try:
                return self._ask()
            except (OSError, ConnectionError, zmq.ZMQError, ValueError) as exc:
                return {"rows": [], "error": f"the head's node did not answer: {exc}"}

    def _ask(self) -> dict:
        node = read_node_info(self.session_dir)
        if self._ctx is None:
            self._ctx = zmq.Context(io_threads=1)
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, P.client_ident(b"D", node.node_id, os.urandom(8)))
        try:
            sock.connect(node.address)
            self._seq += 1
            sock.send(P.encode(P.HEAD_CALL, b"", self._seq, "node.list_objects", []))
            timeout_ms = int((CONFIG.memory_stats_timeout_s + 2) * 1000)
            while sock.poll(timeout_ms):
                mtype, f = P.decode(sock.recv())
                if mtype == P.HEAD_REPLY and f[1] == self._seq and f[2] and type(f[3]) is dict:
                    return f[3]
            raise OSError("no answer in time")
        finally:
            sock.close()

    def close(self) -> None:
        with self._lock:
            if self._ctx is not None:
                self._ctx.term()
                self._ctx = None
