"""Actors that live on other nodes, as this node knows them: where each one is, and the
client messages about an actor (calls, lookups, kill, release) passed on to its node.
An actor this node has never heard of is looked up at the head first; the messages
about it wait here, in order, until the head answers.

    client --SUBMIT(call to actor X on node B)--> node A --RELAY(client, SUBMIT)--> node B
    node B --RESULTS / ACTOR_ADDR for the client--> node A --> client
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _protocol as P


class RemoteActors:
    def __init__(self, relay: Callable[[bytes, bytes, bytes], bool],
                 ask_head: Callable[[bytes], None], log: Any) -> None:
        self._relay = relay            # (node_id, client, header) -> False if unreachable
        self._ask_head = ask_head      # where does actor_id live? (answered by located())
        self.log = log
        self.where: dict[bytes, bytes] = {}        # actor_id -> node_id
        self._parked: dict[bytes, list] = {}       # actor_id -> [(client, mtype, fields)]
        self._expected: set[bytes] = set()         # placed here by the head, not arrived yet
        self.callers: dict[bytes, set[bytes]] = {} # actor_id -> clients here that called it

    def is_remote(self, actor_id: bytes) -> bool:
        return actor_id in self.where

    def send(self, client: bytes, actor_id: bytes, mtype: int, *fields: Any) -> None:
        """Pass a client's message about a remote actor on to its node (or park it until
        the head says where the actor is)."""
        node_id = self.where.get(actor_id)
        callers = self.callers.get(actor_id)
        if callers is None:
            callers = self.callers[actor_id] = set()
        callers.add(client)
        if node_id is None:
            self.park(client, actor_id, mtype, fields)
            return
        if not self._relay(node_id, client, P.encode(mtype, *fields)):
            self.log.warning("the node of an actor is unreachable", actor=actor_id.hex(),
                             node=node_id.hex())

    def park(self, client: bytes, actor_id: bytes, mtype: int, fields: tuple) -> None:
        """Hold a message about an actor this node does not know until the head answers
        (or, if it is expected here, until it arrives)."""
        parked = self._parked.get(actor_id)
        if parked is None:
            parked = self._parked[actor_id] = []
            if actor_id not in self._expected:
                self._ask_head(actor_id)
        parked.append((client, mtype, fields))

    def expect_here(self, actor_id: bytes) -> None:
        """The head placed the actor on this node; its PLACE is on the way: what is
        parked for it waits for it (arrived())."""
        self._expected.add(actor_id)

    def arrived(self, actor_id: bytes) -> list:
        """The actor now lives on this node: forget any other belief; the messages parked
        for it, to handle here."""
        self.where.pop(actor_id, None)
        self._expected.discard(actor_id)
        return self._parked.pop(actor_id, [])

    def located(self, actor_id: bytes, node_id: bytes | None) -> list:
        """The head's answer: the actor lives on `node_id` (another node: the parked
        messages go there) or nowhere the head knows of. Returns the parked messages to
        handle here ([(client, type, fields)]) when the answer is not another node."""
        parked = self._parked.pop(actor_id, [])
        if node_id is None:
            return parked
        self.where[actor_id] = node_id
        for client, mtype, fields in parked:
            self.send(client, actor_id, mtype, *fields)
        return []

    def lost(self, node_id: bytes) -> list[tuple[bytes, set[bytes]]]:
        """A node died: the actors this node believed there, each with the clients here
        that called it (to be told); they are looked up afresh from now on."""
        gone = [aid for aid, where in self.where.items() if where == node_id]
        for aid in gone:
            del self.where[aid]
        return [(aid, self.callers.pop(aid, set())) for aid in gone]

    def moved(self, actor_id: bytes, node_id: bytes) -> None:
        """An actor this node spilled back was placed on `node_id` by the head."""
        self.where[actor_id] = node_id
        for client, mtype, fields in self._parked.pop(actor_id, []):
            self.send(client, actor_id, mtype, *fields)

    def forget_node(self, node_id: bytes) -> list[bytes]:
        """A node left the cluster: the actors this node knew there (to fail or restart)."""
        gone = [aid for aid, nid in self.where.items() if nid == node_id]
        for aid in gone:
            del self.where[aid]
        return gone
