"""Who is connected to a node broker: drivers and workers by socket identity, each
worker's own (direct) address, the registered functions and classes, and which of
them each worker was already sent (so that a blob travels once per worker)."""
from __future__ import annotations

from collections import defaultdict

from .. import _protocol as P
from ..exceptions import ProtocolError


class Clients:
    def __init__(self) -> None:
        self.drivers: dict[bytes, dict] = {}                   # identity -> hello info
        self.ident_of: dict[bytes, bytes] = {}                 # worker_id -> socket identity
        self.wid_of: dict[bytes, bytes] = {}                   # socket identity -> worker_id
        self.direct_of: dict[bytes, str] = {}                  # worker_id -> its own socket
        self.funcs: dict[bytes, bytes] = {}                    # func or class id -> blob
        self.registered: dict[bytes, set] = {}                 # func id -> who sent FUNC
        self._known: dict[bytes, set] = defaultdict(set)       # worker_id -> func ids it has

    def driver(self, ident: bytes, pid: int, info: dict) -> None:
        self.drivers[ident] = dict(info, pid=pid)

    def worker(self, ident: bytes, wid: bytes, info: dict) -> None:
        self.ident_of[wid] = ident
        self.wid_of[ident] = wid
        if isinstance(info.get("direct"), str):
            self.direct_of[wid] = info["direct"]

    def worker_gone(self, wid: bytes) -> bytes | None:
        """Forget the worker; its socket identity if it had said hello."""
        self.direct_of.pop(wid, None)
        self._known.pop(wid, None)
        ident = self.ident_of.pop(wid, None)
        if ident is not None:
            self.wid_of.pop(ident, None)
        return ident

    def on_func(self, ident: bytes, f: list) -> None:
        """FUNC: a function or class registered by its id, sent to workers as they need it."""
        func_id, blob = f
        if not isinstance(func_id, bytes) or not isinstance(blob, bytes):
            raise ProtocolError("FUNC wants (bytes, bytes)")
        self.funcs[func_id] = blob
        self.registered.setdefault(func_id, set()).add(ident)

    def on_func_free(self, ident: bytes, f: list) -> None:
        """FUNC_FREE: the client no longer needs these functions; a blob goes once no
        client that registered it needs it (a function's blob, 200 MB with a large
        closure, stayed here for the node's life). Workers keep what they loaded."""
        if type(f[0]) is not list:
            raise ProtocolError("FUNC_FREE wants a list of function ids")
        for func_id in f[0]:
            who = self.registered.get(func_id) if type(func_id) is bytes else None
            if who is None:
                continue
            who.discard(ident)
            if not who:
                del self.registered[func_id]
                self.funcs.pop(func_id, None)

    def add_funcs(self, funcs: dict) -> None:
        """Functions and classes sent along with work placed here by the head."""
        if type(funcs) is not dict or not all(type(k) is bytes and type(v) is bytes
                                              for k, v in funcs.items()):
            raise ProtocolError("functions must map bytes ids to bytes blobs")
        self.funcs.update(funcs)

    def funcs_of(self, specs: list) -> dict:
        """The blobs of the functions and classes `specs` need (work spilled to the head
        takes them along)."""
        out = {}
        for spec in specs:
            fid = spec[P.A_CLASS] if len(spec) == P.ACTOR_FIELDS else spec[P.T_FUNC]
            blob = self.funcs.get(fid)
            if blob is not None:
                out[fid] = blob
        return out

    def funcs_for(self, wid: bytes, specs: list) -> dict:
        """The function blobs the worker needs for `specs` and was not sent yet."""
        known = self._known[wid]
        funcs = {}
        for spec in specs:
            fid = spec[P.T_FUNC]
            if fid not in known:
                blob = self.funcs.get(fid)
                if blob is not None:
                    funcs[fid] = blob
                    known.add(fid)
        return funcs

    def processes(self) -> list:
        """The identities of every local driver and worker."""
        return list(self.drivers) + list(self.wid_of)
