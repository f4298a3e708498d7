"""The head broker, one per cluster: a thin loop around the control store (_control)
and the global scheduler, which places what nodes spill back (_placement) or holds it,
warning its owner, until a node that fits joins. Run as `python -m zray.brokers.head`."""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from typing import Any

from .. import _protocol as P
from .. import _strategies as ST
from .._config import CONFIG
from .._keys import ZapHandler, serve, warn_insecure
from .._keys import load as load_keys
from .._log import get_logger
from .._object_store import STORED
from .._resource_text import describe
from .._session import tell_ready
from ..exceptions import ProtocolError
from ._control import ControlStore
from ._groups import Groups
from ._insight import Insight
from ._placement import Spread, feasible, fits, pick_node, place_batch
from ._resources import actor_demand


class HeadBroker:
    def __init__(self, session_dir: str, parent_fd: int | None, cleanup_dir: bool,
                 tcp: str = "", keys: Any = None, ready_fd: int | None = None,
                 dashboard_fd: int | None = None) -> None:
        self.session_dir = session_dir
        # A cluster's head listens on tcp (CurveZMQ unless keys is None); an embedded
        # one on its session's ipc socket.
        self.address = tcp or f"ipc://{session_dir}/head.sock"
        self.keys = keys
        self.ready_fd = ready_fd                      # told the bound address, then closed
        self._locating: dict[bytes, list] = {}        # actor_id -> [(ident, client, seq, deadline)]
        self.parent_fd = parent_fd
        self.cleanup_dir = cleanup_dir
        self.log = get_logger("head")
        self.store = ControlStore()
        self.insight = Insight(self.store, session_dir, dashboard_fd)   # task history, dashboard
        self.infeasible: list = []                    # [(spec, (from_ident, owner), first_seen, warned)]
        # The functions and classes spilled work needs, sent along with it to the node
        # that runs it. (Kept: work held as infeasible is placed later.)
        self.funcs: dict[bytes, bytes] = {}
        self.spread = Spread()                        # scheduling_strategy="SPREAD"
        # Tasks placed on each node and not reported done: placed again elsewhere (or
        # failed, their retries spent) if that node dies. node_id -> {task_id: (spec, from)}
        self.placed: dict[bytes, dict[bytes, tuple]] = {}
        # Actors the head placed, alive: restarted elsewhere (max_restarts) if their
        # node dies. actor_id -> (spec, from)
        self.placed_actors: dict[bytes, tuple] = {}
        self.groups = Groups(self.store, self._send, self._retry_infeasible)
        self.running = True
        self._handlers = {
            P.HEARTBEAT: self._on_heartbeat, P.NODE_HELLO: self._on_node_hello,
            P.HEAD_CALL: self._on_head_call, P.SPILLBACK: self._on_spillback,
            P.ACTOR_EVENT: self._on_actor_event, P.RESERVED: self._on_reserved,
            P.NODE_BYE: self._on_node_bye,
            P.TASK_EVENTS: self.insight.on_task_events,
        }
        self._group_calls = {"pg_create": self.groups.create, "pg_remove": self._remove_group,
                             "pg_table": self.groups.table, "pg_get": self.groups.get}

    def serve(self) -> None:
        import zmq
        self.zmq = zmq
        ctx = zmq.Context()
        self.zap = ZapHandler(ctx, self.keys, self.log) if self.keys is not None else None
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.setsockopt(zmq.LINGER, 0)
        if self.keys is not None:
            serve(self.sock, self.keys)
        try:
            if self.address.endswith(":0"):   # any free port: the starter learns which
                host = self.address[:-2]
                self.address = f"{host}:{self.sock.bind_to_random_port(host)}"
            else:
                self.sock.bind(self.address)
        except zmq.ZMQError as exc:
            # The session may be gone already (a driver that stopped before this head
            # came up, on a loaded machine): nothing to serve, and nothing to say on
            # that driver's terminal, where the line logged here went.
            if os.path.isdir(self.session_dir):
                self.log.warning("the head broker cannot listen", address=self.address,
                                 error=str(exc))
            self.sock.close()
            if self.zap is not None:
                self.zap.close()
            ctx.term()
            return
        if self.ready_fd is not None:
            tell_ready(self.ready_fd, self.address)
        self.insight.start(self.address)
        try:
            self._loop()
        finally:
            self.insight.stop()
            for node in self.store.nodes.values():
                self._send(node.ident, P.SHUTDOWN, "the head broker is stopping")
            self.sock.close()
            if self.zap is not None:
                self.zap.close()
            ctx.term()
            if self.cleanup_dir:
                shutil.rmtree(self.session_dir, ignore_errors=True)

    def _loop(self) -> None:
        poller = self.zmq.Poller()
        poller.register(self.sock, self.zmq.POLLIN)
        if self.zap is not None:
            poller.register(self.zap.sock, self.zmq.POLLIN)
        if self.parent_fd is not None:
            poller.register(self.parent_fd, self.zmq.POLLIN)
        while self.running:
            events = dict(poller.poll(int(CONFIG.heartbeat_s * 1000)))
            if self.parent_fd is not None and self.parent_fd in events:
                break
            if self.zap is not None and self.zap.sock in events:
                self.zap.handle()
            if self.sock in events:
                P.drain(self.sock, self._handle, self.log, routed=True)
            self._timers(time.monotonic())

    def _send(self, ident: bytes, mtype: int, *fields) -> bool:
        try:
            self.sock.send_multipart([ident, P.encode(mtype, *fields)])
            return True
        except self.zmq.ZMQError:
            return False

    def _timers(self, now: float) -> None:
        dead = self.store.silent_nodes(now, CONFIG.heartbeat_s * CONFIG.heartbeat_misses)
        for node in dead:
            self.log.warning("node missed its heartbeats", node=node.node_id.hex())
        self._nodes_dead(dead)
        self._expire_locating(now)
        self.groups.tick(now, CONFIG.heartbeat_s)
        for i, (spec, owner, seen, warned) in enumerate(self.infeasible):
            if not warned and now - seen >= CONFIG.infeasible_warning_s:
                self.infeasible[i] = (spec, owner, seen, True)
                self._warn_infeasible(spec, owner)

    def _on_node_bye(self, ident: bytes, f: list) -> None:
        node = self.store.by_ident.get(ident)
        if node is not None and node.alive and node.node_id == f[0]:
            node.alive, node.death = False, "it stopped"
            self._nodes_dead([node])

    def _nodes_dead(self, dead: list) -> None:
        if dead:
            # First the table (each node tells the callers of actors there), then what
            # moves: a restarted actor's PLACED must reach its node after the death.
            self._broadcast_nodes()
        for node in dead:
            self._node_died(node.node_id, node.death)

    # -- messages: one handler per type -------------------------------------------------
    def _handle(self, ident: bytes, mtype: int, f: list) -> None:
        handler = self._handlers.get(mtype)
        if handler is None:
            raise ProtocolError(f"{P.NAMES[mtype]} is not a message for the head")
        handler(ident, f)

    def _on_heartbeat(self, ident: bytes, f: list) -> None:
        done = f[2].pop("done", None) if type(f[2]) is dict else None
        self.store.heartbeat(f, time.monotonic())
        placed = self.placed.get(f[0])
        if placed and type(done) is list:
            for task_id in done:
                placed.pop(task_id, None)

    def _node_died(self, node_id: bytes, why: str) -> None:
        """A node stopped answering: the tasks placed there run elsewhere, as far as
        their retries go (else their owners get NodeDiedError); its actors restart
        elsewhere, as far as their max_restarts go (else they are dead)."""
        hex_id = node_id.hex()
        self.groups.node_died(node_id)
        self.groups.tick()
        for aid, actor in list(self.store.actors.items()):
            if actor.get("node_id") != hex_id or actor.get("state") == "DEAD":
                continue
            spec, from_ident = self.placed_actors.get(aid, (None, b""))
            if spec is None or spec[P.A_MAX_RESTARTS] == 0:
                self.store.actor_lost(aid, f"its node {hex_id} died ({why})")
                self.placed_actors.pop(aid, None)
                continue
            if spec[P.A_MAX_RESTARTS] > 0:
                spec[P.A_MAX_RESTARTS] -= 1
            actor["state"], actor["node_id"] = "RESTARTING", None   # where: once placed
            self._place(from_ident, spec)
        for spec, from_ident in self.placed.pop(node_id, {}).values():
            if P.spend_retry(spec):
                self._place(from_ident, spec)
            else:
                self._send(from_ident, P.UNPLACEABLE, spec, (
                    f"the node {node_id.hex()} running it died ({why}) and it has no retries "
                    "left (max_retries)."), "node_died")

    def _on_node_hello(self, ident: bytes, f: list) -> None:
        self.store.node_hello(ident, f, time.monotonic())
        self._broadcast_nodes()
        self._retry_infeasible()

    def _broadcast_nodes(self) -> None:
        """Every node learns the node table (where to reach each other) at each change."""
        table = self.store.table()
        for node in self.store.nodes.values():
            if node.alive:
                self._send(node.ident, P.NODES, table)

    def _on_head_call(self, ident: bytes, f: list) -> None:
        client, seq, op, args = f
        if op == "actor_node":
            self._locate(ident, client, seq, args)
            return
        try:
            group_call = self._group_calls.get(op) if type(op) is str else None
            ok, result = True, (group_call(args) if group_call is not None
                                else self.store.call(op, args))
        except Exception as exc:   # any failure goes back to the caller, as its error
            ok, result = False, str(exc)
        self._send(ident, P.HEAD_REPLY, client, seq, ok, result)

    def _on_spillback(self, ident: bytes, f: list) -> None:
        if type(f[0]) is not list or type(f[1]) is not dict:
            raise ProtocolError("SPILLBACK wants [spec, ...], {func_id: blob}")
        self.funcs.update({k: v for k, v in f[1].items() if type(k) is bytes and type(v) is bytes})
        plain = []
        for spec in f[0]:
            # Checked here: an infeasible spec is looked at again on a timer (to
            # warn its owner), where a malformed one killed the head.
            try:
                spec = P.check_actor(spec) if len(spec) == P.ACTOR_FIELDS else P.check_task(spec)
            except (ProtocolError, TypeError):
                self.log.warning("dropped a malformed spilled spec", spec=repr(spec)[:300])
                continue
            if len(spec) == P.TASK_FIELDS and not ST.marked(spec[P.T_RES]) \
                    and not any(ST.is_group_resource(k) for k in spec[P.T_RES]) \
                    and not _arg_bytes(spec, b""):
                plain.append(spec)
            else:
                self._place(ident, spec)
        if plain:
            self._place_plain(ident, plain)

    def _place_plain(self, from_ident: bytes, specs: list) -> None:
        """Tasks with no strategy and no stored arguments, placed together (one decision
        in O(log n), _placement.place_batch; one PLACE per node)."""
        spiller = self.store.by_ident.get(from_ident)
        exclude = [spiller.node_id] if spiller is not None else []
        chosen = place_batch([_demand(s) for s in specs], self.store.views(), exclude)
        to: dict[bytes, list] = {}
        for spec, node_id in zip(specs, chosen, strict=True):
            if node_id is None:
                self.infeasible.append((spec, (from_ident, spec[P.T_OWNER]), time.monotonic(), False))
                continue
            to.setdefault(node_id, []).append(spec)
        for node_id, batch in to.items():
            node = self.store.nodes[node_id]
            placed = self.placed.setdefault(node_id, {})
            funcs = {}
            for spec in batch:
                node.took(_demand(spec))
                placed[spec[P.T_ID]] = (spec, from_ident)
                blob = self.funcs.get(spec[P.T_FUNC])
                if blob is not None:
                    funcs[spec[P.T_FUNC]] = blob
            self._send(node.ident, P.PLACE, batch, funcs)

    def _on_reserved(self, ident: bytes, f: list) -> None:
        self.groups.on_reserved(ident, f)

    def _remove_group(self, args: list) -> None:
        self.groups.remove(args)
        self._retry_infeasible()   # what waits for it fails now

    def _on_actor_event(self, ident: bytes, f: list) -> None:
        self.store.actor_event(ident, f)
        if f[1] == "DEAD":
            self.placed_actors.pop(f[0], None)
        for where, client, seq, _deadline in self._locating.pop(f[0], ()):
            self._send(where, P.HEAD_REPLY, client, seq, True, self.store.actor_node(f[0]))

    # -- where does an actor live? (asked by nodes, answered once it is known) ----------
    def _locate(self, ident: bytes, client: bytes, seq: int, args: list) -> None:
        actor_id = args[0] if type(args) is list and len(args) == 1 else None
        if type(actor_id) is not bytes:
            raise ProtocolError("actor_node wants [actor_id]")
        node = self.store.actor_node(actor_id)
        if node is not None or self.store.actors.get(actor_id, {}).get("state") == "DEAD":
            self._send(ident, P.HEAD_REPLY, client, seq, True, node)
            return
        # Not reported yet (its handle can travel faster than its creation's report):
        # answered when it is, or with none after a while.
        deadline = time.monotonic() + CONFIG.actor_locate_timeout_s
        self._locating.setdefault(actor_id, []).append((ident, client, seq, deadline))

    def _expire_locating(self, now: float) -> None:
        # (An actor restarting after its node died is waited for as long as it takes:
        # it may wait for a node, or a placement group's bundle, to come.)
        for actor_id in [a for a, w in self._locating.items() if w[0][3] <= now
                         and self.store.actors.get(a, {}).get("state") != "RESTARTING"]:
            for where, client, seq, _deadline in self._locating.pop(actor_id):
                self._send(where, P.HEAD_REPLY, client, seq, True, None)

    # -- placement: decode, ask _placement, send --------------------------------------
    def _place(self, from_ident: bytes, spec: list) -> None:
        demand = _demand(spec)
        node_id, why = self._choose(from_ident, spec, demand)
        if why:
            self._send(from_ident, P.UNPLACEABLE, spec, why, "unschedulable")
            if len(spec) == P.ACTOR_FIELDS:
                self.store.actor_lost(spec[P.A_ID], f"it is not schedulable: {why}")
            return
        if node_id is None:
            owner = spec[P.A_OWNER] if len(spec) == P.ACTOR_FIELDS else spec[P.T_OWNER]
            self.infeasible.append((spec, (from_ident, owner), time.monotonic(), False))
            return
        node = self.store.nodes[node_id]
        node.took(demand)
        is_actor = len(spec) == P.ACTOR_FIELDS
        fid = spec[P.A_CLASS] if is_actor else spec[P.T_FUNC]
        blob = self.funcs.get(fid)
        self._send(node.ident, P.PLACE, [spec], {fid: blob} if blob is not None else {})
        if not is_actor:
            self.placed.setdefault(node_id, {})[spec[P.T_ID]] = (spec, from_ident)
        if is_actor:   # what waits for it on the node that spilled it goes there now
            self.placed_actors[spec[P.A_ID]] = (spec, from_ident)
            self.store.actor_placed(spec[P.A_ID], node_id)
            self._send(from_ident, P.PLACED, spec[P.A_ID], node_id)
            for where, client, seq, _deadline in self._locating.pop(spec[P.A_ID], ()):
                self._send(where, P.HEAD_REPLY, client, seq, True, node_id.hex())

    def _choose(self, from_ident: bytes, spec: list, demand: dict) -> tuple[bytes | None, str]:
        """The node for spilled work (None: none yet), or why no node ever will."""
        res = spec[P.A_RES] if len(spec) == P.ACTOR_FIELDS else spec[P.T_RES]
        if self.groups.removed(res):
            return None, "its placement group was removed."
        views = self.store.views()
        spiller = self.store.by_ident.get(from_ident)
        local = _arg_bytes(spec, spiller.node_id) if spiller is not None else {}
        if not ST.marked(res):
            # Never back to the node that spilled it (it cannot run it), unless it asks
            # for a placement group's bundle, which that node may have set aside since.
            grouped = any(ST.is_group_resource(k) for k in res)
            exclude = [spiller.node_id] if spiller is not None and not grouped else []
            return pick_node(demand, views, local, exclude), ""
        target, soft = ST.affinity(res)
        if target is not None:
            try:
                node = self.store.nodes.get(bytes.fromhex(target))
            except ValueError:
                node = None
            if node is not None and node.alive and feasible(demand, node.resources):
                return node.node_id, ""
            if not soft:
                return None, ("The node specified via NodeAffinitySchedulingStrategy doesn't "
                              "exist any more or is infeasible, and soft=False was specified.")
            return pick_node(demand, views, local), ""
        if ST.SPREAD in res:
            return self.spread.pick(demand, views), ""
        if ST.OVERFLOW in res:   # a node with room now, else back where it came from
            room = [v for v in views if v.alive and fits(demand, v.available)
                    and (spiller is None or v.node_id != spiller.node_id)]
            if room:
                del res[ST.OVERFLOW]   # (left on a spec sent back: its node pauses overflow)
                return pick_node(demand, room, local), ""
            return (spiller.node_id if spiller is not None else None), ""
        return pick_node(demand, views, local), ""

    def _warn_infeasible(self, spec: list, owner: tuple) -> None:
        is_actor = len(spec) == P.ACTOR_FIELDS
        res = {k: v for k, v in _demand(spec).items() if v}
        total = {k: v for k, v in self.store.largest().items() if not ST.is_group_resource(k)}
        what = f"actor {spec[P.A_CLASS_NAME]}" if is_actor else f"task {spec[P.T_NAME]}"
        group = ST.group_of(res)
        if group is not None:
            self._send(owner[0], P.WARN, owner[1], (
                f"The {what} waits for its placement group {group}, which is not created yet "
                f"(its bundles do not fit the cluster's free resources; the largest node "
                f"offers {describe(total)}), or the bundle it asks for cannot hold "
                f"{describe(res)}."))
            return
        missing = {k: v for k, v in res.items() if total.get(k, 0) < v}
        msg = (f"The {what} cannot be scheduled: it needs {describe(res)} but no node has "
               f"{describe(missing)} (the largest node offers {describe(total)}). It stays "
               "pending until a node that fits joins.")
        self._send(owner[0], P.WARN, owner[1], msg)

    def _retry_infeasible(self) -> None:
        pending, self.infeasible = self.infeasible, []
        for spec, owner, _seen, _warned in pending:
            self._place(owner[0], spec)


def _demand(spec: list) -> dict:
    """What a spilled task or actor needs of a node (the scheduler's own markers,
    "_"-prefixed, are not resources; an actor's default CPU counts for placement)."""
    res = actor_demand(spec[P.A_RES]) if len(spec) == P.ACTOR_FIELDS else spec[P.T_RES]
    return {k: v for k, v in res.items() if not k.startswith("_")}


def _arg_bytes(spec: list, owner_node: bytes) -> dict:
    """node_id -> bytes of the spec's stored arguments there, as far as the head can
    tell: a descriptor names no node, so they count as on the node that spilled the
    spec (its owner's node, where the owner stored them). For the cluster: fill in
    where each object's copies are."""
    is_actor = len(spec) == P.ACTOR_FIELDS
    args, slots = (spec[P.A_ARGS], spec[P.A_SLOTS]) if is_actor else (spec[P.T_ARGS], spec[P.T_SLOTS])
    size = _stored_size(args)
    for slot in slots if type(slots) is list else ():
        if type(slot) is list and len(slot) == 2:
            size += _stored_size(slot[1])
    return {owner_node: size} if size else {}


def _stored_size(value) -> int:
    """The size of a stored value's descriptor ([STORED, name, size]); 0 otherwise."""
    if (type(value) is list and len(value) == 3 and value[0] == STORED
            and type(value[2]) is int and value[2] > 0):
        return value[2]
    return 0


def _exit_on_signal(signum, frame):
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m zray.brokers.head", description="zray head broker")
    ap.add_argument("--session-dir", required=True)
    ap.add_argument("--parent-fd", type=int, default=None)
    ap.add_argument("--cleanup-dir", action="store_true")
    ap.add_argument("--host", default="", help="listen on tcp at this address (a cluster)")
    ap.add_argument("--port", type=int, default=6379, help="the tcp port, with --host")
    ap.add_argument("--keys", default=None, help="the directory of the cluster's keys")
    ap.add_argument("--insecure", action="store_true", help="tcp without CurveZMQ (warns)")
    ap.add_argument("--ready-fd", type=int, default=None,
                    help="write the bound address to this fd once listening")
    ap.add_argument("--dashboard-fd", type=int, default=None,
                    help="serve the dashboard on this listening socket (zray.dashboard.bind)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    tcp = f"tcp://{args.host}:{args.port}" if args.host else ""
    keys = None
    if tcp and args.insecure:
        warn_insecure(get_logger("head"))
    elif tcp:
        if not args.keys:
            raise SystemExit("a head on tcp needs --keys (the cluster's key directory) or, "
                             "knowingly, --insecure")
        keys = load_keys(args.keys)
    try:
        HeadBroker(args.session_dir, args.parent_fd, args.cleanup_dir, tcp, keys,
                   args.ready_fd, args.dashboard_fd).serve()
    except SystemExit:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
