"""The node's actor directory for direct calls: callers look up where an actor takes
calls and are told of each change (ALIVE at an address, RESTARTING, DEAD with the
error its calls raise), and the pickled error each dead actor's calls fail with."""
from __future__ import annotations

import pickle
from collections import defaultdict
from collections.abc import Callable

from .. import _protocol as P
from ..exceptions import ActorDiedError
from ._mailboxes import Actor, AState


class ActorDirectory:
    def __init__(self, send: Callable[..., bool], is_local: Callable[[bytes], bool]) -> None:
        self._send = send                                          # (ident, type, *fields)
        # A caller on another node cannot reach the actor's own (ipc) socket: it is told
        # an empty address, and sends its calls through the nodes.
        self._is_local = is_local
        self._fail_blob: dict[bytes, bytes] = {}                   # actor_id -> why its calls fail
        self._subscribers: dict[bytes, set] = defaultdict(set)     # actor_id -> callers to tell

    def failed(self, actor_id: bytes, blob: bytes) -> None:
        """The actor's __init__ failed or it exited: its calls raise `blob` (pickled by
        its worker, a trusted process of this node)."""
        self._fail_blob[actor_id] = blob

    def fail_blob(self, actor_id: bytes) -> bytes | None:
        return self._fail_blob.get(actor_id)

    def lookup(self, ident: bytes, actor_id: bytes, actor: Actor | None) -> None:
        """A caller asks where `actor` lives: told now if it is alive or dead, and of
        every change after."""
        if actor is None or actor.state == AState.DEAD:
            why = actor.death if actor is not None else "it is not known on this node"
            self._send(ident, P.ACTOR_ADDR, actor_id, "DEAD", "", self.death_blob(actor_id, why))
            return
        self._subscribers[actor_id].add(ident)
        if actor.state == AState.ALIVE:
            self._send(ident, P.ACTOR_ADDR, actor_id, "ALIVE", self._address(ident, actor.address),
                       None)

    def changed(self, actor_id: bytes, state: str, info: dict) -> None:
        """Tell the actor's callers its new state (see _mailboxes ACTOR_STATE)."""
        subs = self._subscribers.get(actor_id)
        if not subs:
            return
        if state == "DEAD":
            blob = self.death_blob(actor_id, info.get("reason", ""))
            for ident in self._subscribers.pop(actor_id):
                self._send(ident, P.ACTOR_ADDR, actor_id, "DEAD", "", blob)
            return
        for ident in list(subs):
            address = self._address(ident, info.get("address", ""))
            if not self._send(ident, P.ACTOR_ADDR, actor_id, state, address, None):
                subs.discard(ident)

    def _address(self, ident: bytes, address: str) -> str:
        return address if self._is_local(ident) else ""

    def remember_death(self, actor_id: bytes, blob: bytes) -> None:
        """The error the actor's calls fail with, should it be asked about here (it
        lived on a node that died)."""
        self._fail_blob[actor_id] = blob

    def forget(self, actor_id: bytes) -> list[bytes]:
        """The actor lives elsewhere now: its subscribers here (to look it up there)."""
        return list(self._subscribers.pop(actor_id, ()))

    def death_blob(self, actor_id: bytes, why: str) -> bytes:
        blob = self._fail_blob.get(actor_id)
        if blob is None:
            blob = pickle.dumps(ActorDiedError(f"The actor {actor_id.hex()} is dead ({why}).",
                                               actor_id.hex()))
        return blob
