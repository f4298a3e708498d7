"""A node's part in a cluster: the messages its clients send about actors that live
on other nodes (relayed there, or parked until the head says where they are), what
other nodes relay to it, the head's node table and placements, and the check that the
head accepts this node's key.

    client --LOOKUP/SUBMIT/KILL/RELEASE (actor X)--> node A: hosts X? handle it here
        else X's node known? RELAY there; else park, ask the head (actor_node), then go

What names a stored value another node made (a result, an object, a task's arguments)
waits until this node pulled it (_transfer), in order with what follows it.
"""
from __future__ import annotations

import functools
import pickle
from typing import Any

from .. import _protocol as P
from .. import _strategies as ST
from .._config import CONFIG
from .._session import tell_ready
from ..exceptions import ActorDiedError, ProtocolError
from ._actions import FAIL, NODE_DIED, UNSCHEDULABLE
from ._remote import RemoteActors
from ._resources import actor_demand
from ._transfer import Transfers, stored_in

_MARK = b"zray-"    # in a header that names a segment (a cheap test before decoding it)


class NodeCluster:
    def __init__(self, node: Any) -> None:
        self.n = node                                # the NodeBroker this is part of
        self.remote = RemoteActors(self._relay_to, self._locate_actor, node.log)
        self._own_calls: dict[int, Any] = {}         # this node's head calls: seq -> callback
        self._own_seq = 0
        self._relayed = False                        # handling a message another node relayed
        self.head_monitor: Any = None                # handshake failures with the head
        self._failed_handshakes = 0
        self.bundles: dict[bytes, tuple] = {}        # pg_id -> (taken, offered): set aside here
        self.placed_tasks: set[bytes] = set()          # tasks the head placed here, running
        self._dead_nodes: set[bytes] = set()           # as the last node table said
        self._others = False                           # other live nodes (overflow goes there)
        self._overflow_paused_until = 0.0
        self.done_placed: list[bytes] = []             # of those, done since the last heartbeat
        self.transfers = Transfers(node.store_prefix, node.store, self._node_of_prefix,
                                   self._to_node, node.log, self._other_nodes,
                                   encrypted=node.keys is not None)

    def _other_nodes(self) -> list[bytes]:
        return [nid for nid, (_a, alive) in self.n.links.table.items()
                if alive and nid != self.n.node_id]

    def _node_of_prefix(self, prefix: str) -> bytes | None:
        return self.n.links.by_store.get(prefix)

    def _to_node(self, node_id: bytes, header: bytes, payload: Any) -> bool:
        return bool(self.n.links.to_node(node_id, header, payload))

    def watch_head(self, zmq: Any) -> None:
        """Until the head answers, count failed handshakes (a wrong key: on_head_monitor)."""
        self.head_monitor = self.n.head.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        self.n.poller.register(self.head_monitor, zmq.POLLIN)

    @property
    def relayed(self) -> bool:
        """True while handling a message another node relayed (it is not passed on)."""
        return self._relayed

    def to_other_nodes(self, client: bytes, header: bytes) -> None:
        """Relay a message to every other live node."""
        links = self.n.links
        for node_id in links.by_tag.values():
            if node_id != self.n.node_id:
                links.to_node(node_id, P.encode(P.RELAY, client, header))

    def arrived(self, actor_id: bytes) -> None:
        """The actor was created here: what other nodes sent about it ahead of it is for it."""
        for client, mtype, fields in self.remote.arrived(actor_id):
            self.handle_here(client, actor_id, mtype, fields)

    def elsewhere(self, ident: bytes, actor_id: Any, mtype: int, *fields: Any) -> bool:
        """True if a client's message about `actor_id` is for another node's actor (it
        went there, or waits to know where): an actor this node does not host, in a
        cluster of more than this node. A message another node relayed here is never
        relayed on by what this node believes (two stale beliefs would pass it back and
        forth): where the actor is, the head says."""
        if type(actor_id) is not bytes:
            raise ProtocolError("an actor id must be bytes")
        if self.n.sched.actor(actor_id) is not None or len(self.n.links.by_tag) < 2:
            return False
        if self.remote.is_remote(actor_id) and not self._relayed:
            self.remote.send(ident, actor_id, mtype, *fields)
            return True
        self.remote.park(ident, actor_id, mtype, fields)
        return True

    def _relay_to(self, node_id: bytes, client: bytes, header: bytes) -> bool:
        return self.n.links.to_node(node_id, P.encode(P.RELAY, client, header))

    def _locate_actor(self, actor_id: bytes) -> None:
        """Ask the head where an actor lives (it answers once it knows, or after
        actor_locate_timeout_s with none); the messages about it wait in self.remote."""
        def located(ok: bool, node_hex: Any) -> None:
            where = bytes.fromhex(node_hex) if ok and type(node_hex) is str else None
            if where == self.n.node_id and self.n.sched.actor(actor_id) is None:
                # Placed here, its PLACE not in yet: the messages wait for it (_created).
                self.remote.expect_here(actor_id)
                return
            for client, mtype, fields in self.remote.located(
                    actor_id, None if where == self.n.node_id else where):
                self.handle_here(client, actor_id, mtype, fields)
        self._own_seq += 1
        self._own_calls[self._own_seq] = located
        self.n._to_head(P.HEAD_CALL, b"N" + self.n.node_id, self._own_seq, "actor_node", [actor_id])

    def handle_here(self, client: bytes, actor_id: bytes, mtype: int, fields: Any) -> None:
        """A parked message about an actor this node hosts, or that no node has."""
        if mtype == P.SUBMIT:
            self.n._do(self.n.sched.actor_call(fields[0][0]))
        elif mtype == P.LOOKUP:
            self.n.directory.lookup(client, actor_id, self.n.sched.actor(actor_id))
        elif mtype == P.KILL_ACTOR:
            self.n._do(self.n.sched.kill_actor(actor_id, bool(fields[1])))
        elif mtype == P.RELEASE_ACTOR:
            self.n._do(self.n.sched.release_actor(actor_id, bool(fields[1])))

    def on_head_reply(self, mtype: int, f: list) -> None:
        if f[0] == b"N" + self.n.node_id:   # an answer to this node's own call
            callback = self._own_calls.pop(f[1], None)
            if callback is not None:
                callback(bool(f[2]), f[3])
            return
        self.n._relay(mtype, f)

    def on_nodes(self, mtype: int, f: list) -> None:
        if type(f[0]) is not list:
            raise ProtocolError("NODES wants a list")
        links = self.n.links
        links.set_table(f[0])
        self.transfers.nodes_changed(lambda node_id: links.table.get(node_id, ("", False))[1])
        dead = {nid for nid, row in links.table.items() if not row[1]}
        for node_id in dead - self._dead_nodes:
            self._node_died(node_id)
        self._dead_nodes = dead
        self._others = any(alive for nid, (_a, alive) in links.table.items() if nid != self.n.node_id)
        self.resume_overflow(0.0)
        if self.n.ready_fd is not None:   # the head knows this node: it is ready
            tell_ready(self.n.ready_fd, self.n.node_id.hex())
            self.n.ready_fd = None
        self.stop_head_monitor()

    def on_head_monitor(self) -> None:
        """Handshakes with the head fail: after a few in a row (one may be a head that
        restarts), the cluster's key is not this one: stop, saying so."""
        from zmq.utils.monitor import recv_monitor_message
        event = recv_monitor_message(self.head_monitor)
        self._failed_handshakes += 1
        if self._failed_handshakes >= CONFIG.head_handshake_failures:
            self.n.log.error("the head refuses this node's handshake: the cluster's key is not "
                           "this one (a wrong token?); stopping", head=self.n.head_address,
                           what=str(event.get("event")))
            self.n.running = False

    def stop_head_monitor(self) -> None:
        if self.head_monitor is not None:
            self.n.poller.unregister(self.head_monitor)
            self.n.head.disable_monitor()
            self.head_monitor.close()
            self.head_monitor = None

    def on_placed(self, mtype: int, f: list) -> None:
        """An actor this node spilled back lives on another node now: what waits for it
        here (calls, lookups) goes there."""
        actor_id, node_id = f
        if type(actor_id) is not bytes or type(node_id) is not bytes or node_id == self.n.node_id:
            return
        held, subscribers = self.n.sched.forget_actor(actor_id), self.n.directory.forget(actor_id)
        self.remote.moved(actor_id, node_id)
        for client in subscribers:
            self.remote.send(client, actor_id, P.LOOKUP, actor_id)
        for spec in held:
            self.remote.send(spec[P.T_OWNER], actor_id, P.SUBMIT, [spec])

    def deliver_relayed(self, dest: bytes, header: bytes) -> None:
        """A message another node sent for a client of this node: once the stored
        values it names are here."""
        names: list = []
        if _MARK in header:
            mtype, fields = P.decode(header)
            if (mtype == P.RESULTS or mtype == P.ITEMS) and type(fields[0]) is list:
                for result in fields[0]:
                    if type(result) is list and len(result) > P.R_PAYLOAD:
                        stored_in(result[P.R_PAYLOAD], names)
            elif mtype == P.OBJECT:
                stored_in(fields[3], names)
        self.transfers.when_here(dest, names, lambda: self._deliver(dest, header))

    def _deliver(self, dest: bytes, header: bytes) -> None:
        try:
            self.n.front.send_multipart([dest, header])
        except self.n.zmq.ZMQError:
            pass   # the client is gone

    def on_peer(self, node_id: bytes, mtype: int, f: list, payload: Any) -> None:
        """A message from another node for this node: a client's message relayed, or a
        stored value moving between them."""
        if mtype == P.RELAY and type(f[0]) is bytes and type(f[1]) is bytes:
            self._on_relay(f[0], f[1])
        elif mtype == P.CHUNK:
            self.transfers.on_chunk(node_id, f, payload)
        elif mtype == P.CHUNK_REQ:
            self.transfers.on_chunk_req(node_id, f)
        elif mtype == P.DROP:
            self.transfers.on_drop(node_id, f)
        else:
            raise ProtocolError(f"{P.NAMES[mtype]} is not a message between nodes")

    def _on_relay(self, client: bytes, header: bytes) -> None:
        inner, fields = P.decode(header)
        if inner not in (P.SUBMIT, P.LOOKUP, P.KILL_ACTOR, P.RELEASE_ACTOR, P.CANCEL, P.LOG,
                         P.JOB_END, P.OWNER_GONE):
            raise ProtocolError(f"{P.NAMES[inner]} is not relayed between nodes")
        names: list = []
        if inner == P.SUBMIT and _MARK in header and type(fields[0]) is list:
            for spec in fields[0]:
                if type(spec) is list and len(spec) == P.TASK_FIELDS:
                    stored_in(spec[P.T_ARGS], names)
                    stored_in(spec[P.T_SLOTS], names)
        # In order with the client's other messages (a release after its calls).
        self.transfers.when_here(client, names, lambda: self._handle_relayed(client, inner, fields))

    def _handle_relayed(self, client: bytes, mtype: int, fields: list) -> None:
        self._relayed = True
        try:
            self.n._on_client(client, mtype, fields)
        finally:
            self._relayed = False

    def placed_here(self, spec: list, create: Any) -> None:
        """Work the head placed on this node: `create(spec)` once the stored values its
        arguments name are here."""
        names: list = []
        actor = len(spec) == P.ACTOR_FIELDS
        stored_in(spec[P.A_ARGS if actor else P.T_ARGS], names)
        stored_in(spec[P.A_SLOTS if actor else P.T_SLOTS], names)
        if not actor:
            self.placed_tasks.add(spec[P.T_ID])
        self.transfers.when_here(None, names, lambda: create(spec))

    # -- overflow: a busy node's surplus to nodes with room ------------------------
    def resume_overflow(self, now: float) -> None:
        """Overflow on while other nodes live (not while paused after a bounce). Called
        with now=0 when the node table changes, and on every timer tick (a no-op unless
        a pause just ended)."""
        if now and not self._overflow_paused_until:
            return
        if now < self._overflow_paused_until:
            return
        self._overflow_paused_until = 0.0
        per_cpu = CONFIG.overflow_queue_per_cpu
        cpus = self.n.sched.res.total.get("CPU", 0.0)
        on = self._others and per_cpu > 0
        self.n.sched.tasks.overflow_at = max(1, int(per_cpu * max(cpus, 1.0))) if on else 0

    def bounced(self, now: float) -> None:
        """The head sent overflow back (no node had room): none for a while."""
        self.n.sched.tasks.overflow_at = 0
        self._overflow_paused_until = now + CONFIG.overflow_backoff_s

    def _node_died(self, node_id: bytes) -> None:
        """Another node died: the clients here that called actors there are told (LOST:
        their calls in flight there are retried or fail, and they look the actor up
        again, restarted elsewhere by the head or dead)."""
        lost = self.remote.lost(node_id)
        self.n.log.info("a node died", node=node_id.hex(), actors=len(lost))
        for actor_id, callers in lost:
            blob = pickle.dumps(ActorDiedError(
                f"The actor {actor_id.hex()} is dead: the node {node_id.hex()} it lived on "
                "died.", actor_id.hex()))
            self.n.directory.remember_death(actor_id, blob)
            for client in callers:
                # After the replies held for it here (pulls of the values they name, which
                # may go on from a copy): a finished call's value is lost, not its actor.
                self.transfers.when_here(client, [], functools.partial(
                    self.n._send, client, P.ACTOR_ADDR, actor_id, "LOST", "", blob))

    # -- scheduling strategies: what this node spills, keeps or fails --------------
    def spill_or_keep(self, specs: list) -> list:
        """Of the specs this node cannot run as they are, those for the head; a spec
        whose strategy lets this node run it runs here, one it makes impossible fails."""
        here = self.n.node_id.hex()
        others = any(row[1] for nid, row in self.n.links.table.items() if nid != self.n.node_id)
        res = self.n.sched.res
        out = []
        for spec in specs:
            actor = len(spec) == P.ACTOR_FIELDS
            want = spec[P.A_RES if actor else P.T_RES]
            feasible = (lambda r: res.feasible(actor_demand(r))) if actor else res.feasible
            choice = ST.local_choice(want, here, others, feasible)
            if choice == ST.HEAD:
                out.append(spec)
            elif choice == ST.LOCAL:
                self._keep(spec, ST.stripped(want))
            else:
                self.unplaceable(spec, f"its NodeAffinitySchedulingStrategy names this node "
                                       f"({here}), which can never give it {ST.stripped(want)}")
        return out

    def _keep(self, spec: list, res: dict) -> None:
        if len(spec) == P.ACTOR_FIELDS:
            self.n._do(self.n.sched.mailboxes.keep(spec[P.A_ID], res))
        else:
            spec[P.T_RES] = res
            self.n._do(self.n.sched.submit([spec]))

    def unplaceable(self, spec: list, why: str, kind: str = UNSCHEDULABLE) -> None:
        """Work that can never run where its strategy says (or whose node died with it):
        its owner is told."""
        if len(spec) == P.ACTOR_FIELDS:
            what = "it is not schedulable" if kind == UNSCHEDULABLE else "it was lost"
            self.n._do(self.n.sched.mailboxes.unplaceable(spec[P.A_ID], f"{what}: {why}"))
        else:
            self.n._do([(FAIL, spec, kind, why)])

    def on_unplaceable(self, mtype: int, f: list) -> None:
        """The head failed work this node spilled (UNPLACEABLE)."""
        spec, why, kind = f
        if type(spec) is not list or type(why) is not str or kind not in (UNSCHEDULABLE, NODE_DIED):
            raise ProtocolError("UNPLACEABLE wants spec, reason, kind")
        spec = P.check_actor(spec) if len(spec) == P.ACTOR_FIELDS else P.check_task(spec)
        self.unplaceable(spec, why, kind)

    # -- tasks the head placed here: reported done, so the head retries the rest if
    # this node dies ------------------------------------------------------------------
    def finished(self, task_id: bytes) -> None:
        if task_id in self.placed_tasks:
            self.placed_tasks.discard(task_id)
            self.done_placed.append(task_id)

    def take_done(self) -> list:
        done, self.done_placed = self.done_placed, []
        return done

    # -- placement groups: bundles set aside here --------------------------------------
    def on_reserve(self, mtype: int, f: list) -> None:
        """The head asks this node to set a placement group's bundles aside: all of
        them if they fit now (their resources offered again under the bundles' names),
        else none; it answers RESERVED either way."""
        pg_id, bundles = f
        if type(pg_id) is not bytes or type(bundles) is not list or not all(
                type(b) is list and len(b) == 2 and type(b[0]) is int and P.resources_ok(b[1])
                for b in bundles):
            raise ProtocolError("RESERVE wants pg_id, [[index, {resource: amount}], ...]")
        res = self.n.sched.res
        need: dict = {}
        for _, bundle in bundles:
            for k, v in bundle.items():
                need[k] = need.get(k, 0.0) + float(v)
        ok = res.fits(need)
        if ok:   # (more bundles of a group it holds some of: the group lost a node)
            res.take(need)
            taken, added = self.bundles.setdefault(pg_id, ({}, {}))
            for k, v in need.items():
                taken[k] = taken.get(k, 0.0) + v
            for index, bundle in bundles:
                for k, v in ST.bundle_resources(pg_id.hex(), index, bundle).items():
                    added[k] = added.get(k, 0.0) + v
                    res.total[k] = res.total.get(k, 0.0) + v
                    res.avail[k] = res.avail.get(k, 0.0) + v
        self.n._to_head(P.RESERVED, pg_id, ok)
        if ok:
            self.n._do(self.n.sched.tasks.schedule())

    def on_unreserve(self, mtype: int, f: list) -> None:
        """A placement group was removed: its bundles' resources go back to the node,
        its actors here end, its queued tasks fail and its running ones are killed."""
        held = self.bundles.pop(f[0], None) if type(f[0]) is bytes else None
        if held is None:
            return
        need, added = held
        res, hex_id = self.n.sched.res, f[0].hex()
        for k in added:
            res.total.pop(k, None)
            res.avail.pop(k, None)
        res.give(need, [])
        why = f"its placement group {hex_id} was removed"
        mailboxes = self.n.sched.mailboxes
        for aid, actor in list(mailboxes.actors.items()):
            if any(k.endswith(hex_id) for k in actor.spec[P.A_RES]):
                self.n._do(mailboxes.kill(aid, True, why))
        self.n._do([(FAIL, spec, UNSCHEDULABLE, why)
                    for spec in self.n.sched.tasks.drop_queued(lambda r: any(
                        k.endswith(hex_id) for k in r))])
        self.n._do(self.n.sched.tasks.kill_running(
            lambda spec: any(k.endswith(hex_id) for k in spec[P.T_RES])))
        self.n._do(self.n.sched.tasks.schedule())
