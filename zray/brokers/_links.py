"""A node's tcp side: its public ROUTER, which other nodes send to, and one DEALER to
each other node it sends to, found by the node tag in a client identity (P.node_tag).

    node A DEALER --[dest identity, header]--> node B public ROUTER --> B's client dest
    node A DEALER --[b"", RELAY(client, header)]--> node B: a client of A's message for
                                                    B to handle (an actor B hosts)

Every tcp socket is CurveZMQ (zray._keys) unless the cluster runs insecure. A message
for a client of a node that is not (or no longer) in the head's table is dropped.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import zmq

from .. import _protocol as P
from ._transfer import MAX_FRAMES

_NOBLOCK = int(zmq.NOBLOCK)
# [peer, dest, header] and a CHUNK's frames of bytes after them
_FRAME_COUNTS = tuple(range(3, 4 + MAX_FRAMES))


class NodeLinks:
    def __init__(self, ctx: zmq.Context, node_id: bytes, keys: Any, log: Any) -> None:
        self.ctx, self.node_id, self.keys, self.log = ctx, node_id, keys, log
        self.tag = node_id[:P.NODE_TAG]
        self.public: zmq.Socket | None = None
        self.address = ""                                       # tcp://host:port, once bound
        self.table: dict[bytes, tuple[str, bool]] = {}           # node_id -> (address, alive)
        self.by_tag: dict[bytes, bytes] = {}                     # node tag -> node_id
        self.by_store: dict[str, bytes] = {}                     # segment prefix -> node_id
        self._socks: dict[bytes, zmq.Socket] = {}                # node_id -> DEALER to it

    def bind(self, host: str, port: int) -> str:
        """Open the public port (0: any free one); its tcp address."""
        sock = self.ctx.socket(zmq.ROUTER)
        for opt, value in ((zmq.LINGER, 0), (zmq.SNDHWM, 0), (zmq.RCVHWM, 0)):
            sock.setsockopt(opt, value)
        if self.keys is not None:
            from .._keys import serve
            serve(sock, self.keys)
        if port:
            sock.bind(f"tcp://{host}:{port}")
        else:
            port = sock.bind_to_random_port(f"tcp://{host}")
        self.public, self.address = sock, f"tcp://{host}:{port}"
        return self.address

    def set_table(self, rows: list) -> None:
        """The head's node table: [[node_id, public address, alive, store prefix], ...].
        Links to nodes that left or died are closed (what was queued for them is dropped)."""
        table: dict[bytes, tuple[str, bool]] = {}
        by_store: dict[str, bytes] = {}
        for row in rows:
            if (type(row) is list and len(row) == 4 and type(row[0]) is bytes
                    and type(row[1]) is str and type(row[2]) is bool and type(row[3]) is str):
                table[row[0]] = (row[1], row[2])
                if row[2] and row[3]:
                    by_store[row[3]] = row[0]
        for node_id in list(self._socks):
            if node_id not in table or not table[node_id][1] or \
                    table[node_id][0] != self.table.get(node_id, ("", False))[0]:
                self._socks.pop(node_id).close()
        self.table, self.by_store = table, by_store
        self.by_tag = {nid[:P.NODE_TAG]: nid for nid, (_a, alive) in table.items() if alive}

    def is_local(self, ident: bytes) -> bool:
        """False only for a client of another node of the table: any other identity is
        tried on this node's own socket (which drops it if no such client is there)."""
        tag = P.node_tag(ident)
        return tag == self.tag or tag not in self.by_tag

    def node_of(self, ident: bytes) -> bytes | None:
        """The node a client identity belongs to, if it is a live node of the table."""
        return self.by_tag.get(P.node_tag(ident))

    def to_client(self, ident: bytes, header: bytes) -> bool:
        """Send a message to a client of another node; False if that node is unknown."""
        node_id = self.node_of(ident)
        sock = self._sock(node_id) if node_id is not None else None
        if sock is None:
            return False
        sock.send_multipart([ident, header])
        return True

    def to_node(self, node_id: bytes, header: bytes, frames: list | None = None) -> bool:
        """Send a message to node `node_id` itself (with frames of bytes after it, sent
        without a copy: a chunk of a segment); False if it is unknown or dead."""
        sock = self._sock(node_id)
        if sock is None:
            return False
        if frames is None:
            sock.send_multipart([b"", header])
        else:
            sock.send_multipart([b"", header, *frames], copy=False)
        return True

    def _sock(self, node_id: bytes) -> zmq.Socket | None:
        sock = self._socks.get(node_id)
        if sock is not None:
            return sock
        address, alive = self.table.get(node_id, ("", False))
        if not alive or not address or node_id == self.node_id:
            return None
        sock = self.ctx.socket(zmq.DEALER)
        for opt, value in ((zmq.LINGER, 0), (zmq.SNDHWM, 0), (zmq.RCVHWM, 0)):
            sock.setsockopt(opt, value)
        sock.setsockopt(zmq.ROUTING_ID, b"P" + self.node_id)
        if self.keys is not None:
            from .._keys import connect_as_client
            connect_as_client(sock, self.keys)
        sock.connect(address)
        self._socks[node_id] = sock
        return sock

    def read(self, deliver: Callable[[bytes, bytes], None],
             handle: Callable[[bytes, int, list, Any], None]) -> None:
        """What other nodes sent: deliver(dest, header) a message for a local client (not
        decoded here: the client decodes it), handle(peer node id, type, fields, payload)
        one for this node (payload: the zmq.Frames after the header, or None)."""
        def on_frames(peer: bytes, dest: bytes, header: bytes, *payload: Any) -> None:
            if len(peer) != 17 or peer[:1] != b"P":
                raise P.ProtocolError("not a node's link")
            if dest:
                if not self.is_local(dest) or payload:
                    raise P.ProtocolError("a message for a client of another node")
                deliver(dest, header)
            else:
                mtype, fields = P.decode(header)
                handle(peer[1:], mtype, fields, payload or None)
        if self.public is not None:
            P.drain(self.public, on_frames, self.log, frames=_FRAME_COUNTS, raw=True,
                    payload_at=3)

    def close(self) -> None:
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()
        if self.public is not None:
            self.public.close()
            self.public = None
