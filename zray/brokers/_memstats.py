"""`zray memory` on one node: ask every local process (drivers and workers) to list
the objects it owns or borrows, gather the rows with where each value lives, and
answer the requester when all have replied or the deadline passed."""
from __future__ import annotations

from collections.abc import Callable

from .. import _protocol as P
from ._store import NodeStore

# A process's row: the 9 fields it sends, then the node adds kind, pid and location.
_ROW_FIELDS = 9


class MemoryStats:
    def __init__(self, send: Callable[..., bool], node_id: bytes, store: NodeStore) -> None:
        self._send = send          # (ident, type, *fields) -> False if that peer is gone
        self._node_id = node_id
        self._store = store
        self._pending: dict[int, dict] = {}
        self._seq = 0

    def start(self, requester: bytes, seq: int, processes: list, now: float, timeout: float) -> None:
        """Ask each of `processes` (socket identities) for its rows; `seq` is the
        requester's HEAD_CALL number, which the answer carries."""
        self._seq += 1
        req = self._seq
        waiting = {ident for ident in processes if self._send(ident, P.STATS, req, None)}
        self._pending[req] = {"requester": requester, "seq": seq, "waiting": waiting, "rows": [],
                              "deadline": now + timeout}
        self._finish(req)

    def reply(self, ident: bytes, req: int, rows: list, kind: str, pid: int | None) -> None:
        """A process's rows (kind: WORKER or DRIVER)."""
        pending = self._pending.get(req)
        if pending is None or ident not in pending["waiting"] or type(rows) is not list:
            return
        pending["waiting"].discard(ident)
        for row in rows:
            if type(row) is list and len(row) == _ROW_FIELDS:
                pending["rows"].append(row + [kind, pid, self._location(row[5])])
        self._finish(req)

    def expire(self, now: float) -> None:
        """Answer the requests whose deadline passed with the rows they have."""
        for req in [r for r, p in self._pending.items() if now > p["deadline"]]:
            self._finish(req, force=True)

    def _location(self, name: str) -> str:
        if not name:
            return "INLINE"
        return "SPILLED" if name in self._store.spilled else "SHARED_MEMORY"

    def _finish(self, req: int, force: bool = False) -> None:
        pending = self._pending.get(req)
        if pending is None or (pending["waiting"] and not force):
            return
        del self._pending[req]
        result = {"node_id": self._node_id.hex(), "rows": pending["rows"], "store": self._store.stats(),
                  "unanswered": len(pending["waiting"])}
        requester = pending["requester"]
        self._send(requester, P.HEAD_REPLY, requester, pending["seq"], True, result)
