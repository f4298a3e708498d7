"""Objects between a node's processes: borrowers' FETCH relayed to owners and OBJECT
back (a borrower whose owner died gets OwnerDiedError, never a hang), BORROW holds
relayed, and the shared-memory store's accounting from STORE reports and ROOM asks."""
from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Callable

from .. import _protocol as P
from ..exceptions import ProtocolError
from ._failures import owner_died_blob
from ._store import NodeStore

_GONE_KEPT = 10_000   # ended processes remembered (their late messages come within seconds)


class ObjectRelay:
    def __init__(self, send: Callable[..., bool], store: NodeStore, store_prefix: str) -> None:
        self._send = send                       # (ident, type, *fields) -> False if gone
        self.store = store
        self._prefix = store_prefix             # segments of this node's session
        self._fetching: dict[bytes, set] = defaultdict(set)   # owner -> {(oid, requester)}
        # What each process of this node borrows by refs of its own (BORROW `own`):
        # released for it when it ends, or its owner would keep the object (an actor
        # whose handle it held) for good. Processes gone: their late BORROWs are dropped.
        self._borrowed: dict[bytes, dict[tuple[bytes, bytes], int]] = {}
        self._gone: OrderedDict[bytes, None] = OrderedDict()

    # Handlers of the node's client messages: (sender identity, fields).
    def on_borrow(self, ident: bytes, f: list) -> None:
        owner, oids, delta, own = f
        if own:
            if ident in self._gone:
                return   # released when it ended
            if type(owner) is not bytes or type(delta) is not int or type(oids) is not list:
                raise ProtocolError("BORROW wants an owner, a list of object ids and a delta")
            held = self._borrowed.setdefault(ident, {})
            for oid in oids:
                key = (owner, oid if type(oid) is bytes else b"")
                n = held.get(key, 0) + delta
                if n:
                    held[key] = n
                else:
                    held.pop(key, None)
        self._send(owner, P.BORROW, owner, oids, delta, own)

    def on_fetch(self, ident: bytes, f: list) -> None:
        oid, owner, requester = f
        if self._send(owner, P.FETCH, oid, owner, requester):
            self._fetching[owner].add((oid, requester))   # failed if the owner dies
        else:
            self._owner_died(oid, requester)

    def on_object(self, ident: bytes, f: list) -> None:
        self._fetching.get(ident, set()).discard((f[0], f[1]))
        self._send(f[1], P.OBJECT, *f)

    def on_items(self, ident: bytes, f: list) -> None:
        """A generator task's items (the node does not look inside): to their owners."""
        by_owner: dict[bytes, list] = {}
        for row in f[0]:
            if type(row) is list and len(row) > P.ITEM_OWNER and type(row[P.ITEM_OWNER]) is bytes:
                by_owner.setdefault(row[P.ITEM_OWNER], []).append(row)
        for owner, rows in by_owner.items():
            self._send(owner, P.ITEMS, rows)

    def on_gen_ack(self, ident: bytes, f: list) -> None:
        """A generator's caller took items: to the process that runs the generator."""
        if type(f[0]) is bytes:
            self._send(f[0], P.GEN_ACK, *f)

    def process_gone(self, ident: bytes) -> None:
        """Whoever waits for an object the process `ident` owned learns that it is lost,
        and what it borrowed is released."""
        for oid, requester in self._fetching.pop(ident, ()):
            self._owner_died(oid, requester)
        self._gone[ident] = None
        if len(self._gone) > _GONE_KEPT:
            self._gone.popitem(last=False)
        for (owner, oid), n in self._borrowed.pop(ident, {}).items():
            if n > 0 and owner != ident:
                self._send(owner, P.BORROW, owner, [oid], -n, False)

    def _owner_died(self, oid: bytes, requester: bytes) -> None:
        self._send(requester, P.OBJECT, oid, requester, P.ERROR, owner_died_blob(oid), None)

    def on_store(self, ident: bytes, f: list) -> None:
        """A process made, freed and used segments: account them, spill if over capacity."""
        made, freed, used = f
        for item in made:
            if type(item) is not list or len(item) not in (2, 3) or type(item[0]) is not str \
                    or type(item[1]) is not int or item[1] < 0:
                raise ProtocolError("STORE wants [[name, size] or [name, size, on_disk], ...]")
            if item[0].startswith(self._prefix):
                self.store.added(item[0], item[1], len(item) == 3 and bool(item[2]))
        for name in freed:
            if type(name) is str:
                self.store.freed(name)
        for name in used:
            if type(name) is str:
                self.store.touched(name)
        self.store.enforce()

    def on_room(self, ident: bytes, f: list) -> None:
        """A process needs room in /dev/shm for a value: older objects spill, then it
        hears back (ROOM_MADE) and writes, into /dev/shm or else the spill directory."""
        req, size = f
        if type(req) is not int or type(size) is not int or size < 0:
            raise ProtocolError("ROOM wants (request number, bytes)")
        self.store.make_room(size, lambda: self._send(ident, P.ROOM_MADE, req))
