"""The head broker: one per cluster, the global scheduler and the control store
(nodes and their resources, actors and where they live, named actors).

It sees only what node brokers send up: heartbeats, actor events, and tasks a
node can never run (spillback), which it places on a node that can, or holds
with a warning to their owner until one joins. Run as `python -m zray.brokers.head`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time

from .. import _protocol as P
from .._config import CONFIG
from .._log import get_logger
from ..exceptions import ProtocolError


class NodeRecord:
    __slots__ = ("node_id", "ident", "address", "resources", "available", "load", "last_seen",
                 "alive", "info", "death")

    def __init__(self, node_id: bytes, ident: bytes, address: str, resources: dict, info: dict) -> None:
        self.node_id, self.ident, self.address = node_id, ident, address
        self.resources = {k: float(v) for k, v in resources.items()}
        self.available = dict(self.resources)
        self.load: dict = {}
        self.last_seen = time.monotonic()
        self.alive = True
        self.info = info
        self.death = ""


class HeadBroker:
    def __init__(self, session_dir: str, parent_fd: int | None, cleanup_dir: bool) -> None:
        self.session_dir = session_dir
        self.address = f"ipc://{session_dir}/head.sock"
        self.parent_fd = parent_fd
        self.cleanup_dir = cleanup_dir
        self.log = get_logger("head")
        self.nodes: dict[bytes, NodeRecord] = {}
        self.by_ident: dict[bytes, NodeRecord] = {}
        self.actors: dict[bytes, dict] = {}           # actor_id -> {name, namespace, state, handle...}
        self.named: dict[tuple, bytes] = {}           # (namespace, name) -> actor_id
        self.infeasible: list = []                    # [(spec, owner, first_seen)]
        self.running = True

    def serve(self) -> None:
        import zmq
        self.zmq = zmq
        ctx = zmq.Context()
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.setsockopt(zmq.LINGER, 0)
        try:
            self.sock.bind(self.address)
        except zmq.ZMQError as exc:
            # The session is already gone (a driver that stopped before this head came
            # up, on a loaded machine): nothing to serve.
            self.log.info("session gone before the head broker started", error=str(exc))
            self.sock.close()
            ctx.term()
            return
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        if self.parent_fd is not None:
            poller.register(self.parent_fd, zmq.POLLIN)
        try:
            while self.running:
                events = dict(poller.poll(int(CONFIG.heartbeat_s * 1000)))
                if self.parent_fd is not None and self.parent_fd in events:
                    break
                if self.sock in events:
                    P.drain(self.sock, self._handle, self.log, routed=True)
                self._check_nodes()
        finally:
            for node in self.nodes.values():
                self._send(node.ident, P.SHUTDOWN, "the head broker is stopping")
            self.sock.close()
            ctx.term()
            if self.cleanup_dir:
                shutil.rmtree(self.session_dir, ignore_errors=True)

    def _send(self, ident: bytes, mtype: int, *fields) -> bool:
        try:
            self.sock.send_multipart([ident, P.encode(mtype, *fields)])
            return True
        except self.zmq.ZMQError:
            return False

    def _check_nodes(self) -> None:
        now = time.monotonic()
        limit = CONFIG.heartbeat_s * CONFIG.heartbeat_misses
        for node in self.nodes.values():
            if node.alive and now - node.last_seen > limit:
                node.alive = False
                node.death = f"no heartbeat for {limit:.1f} s"
                self.log.warning("node missed its heartbeats", node=node.node_id.hex())
        for i, (spec, owner, seen, warned) in enumerate(self.infeasible):
            if not warned and now - seen >= CONFIG.infeasible_warning_s:
                self.infeasible[i] = (spec, owner, seen, True)
                self._warn_infeasible(spec, owner)

    def _handle(self, ident: bytes, mtype: int, f: list) -> None:
        if mtype == P.HEARTBEAT:
            if not _amounts_ok(f[1]) or type(f[2]) is not dict:
                raise ProtocolError("malformed HEARTBEAT")
            node = self.nodes.get(f[0])
            if node is not None:
                node.available, node.load, node.last_seen = f[1], f[2], time.monotonic()
                node.alive = True
        elif mtype == P.NODE_HELLO:
            # Checked here: a node id that is not bytes broke nodes() and then killed
            # the head when the node was declared dead (on a timer, outside this try).
            if (type(f[0]) is not bytes or type(f[1]) is not str or not P.resources_ok(f[2])
                    or type(f[3]) is not dict):
                raise ProtocolError("malformed NODE_HELLO")
            node = NodeRecord(f[0], ident, f[1], f[2], f[3])
            self.nodes[f[0]] = node
            self.by_ident[ident] = node
            self._retry_infeasible()
        elif mtype == P.HEAD_CALL:
            client, seq, op, args = f
            try:
                ok, result = True, self._call(ident, op, args)
            except Exception as exc:
                ok, result = False, str(exc)
            self._send(ident, P.HEAD_REPLY, client, seq, ok, result)
        elif mtype == P.SPILLBACK:
            for spec in f[0]:
                # Checked here: an infeasible spec is looked at again on a timer (to
                # warn its owner), where a malformed one killed the head.
                try:
                    spec = P.check_actor(spec) if len(spec) == P.ACTOR_FIELDS else P.check_task(spec)
                except (ProtocolError, TypeError):
                    self.log.warning("dropped a malformed spilled spec", spec=repr(spec)[:300])
                    continue
                self._place(ident, spec)
        elif mtype == P.ACTOR_EVENT:
            actor = self.actors.setdefault(f[0], {"name": None, "namespace": None})
            actor["state"] = f[1]
            node = self.by_ident.get(ident)
            actor["node_id"] = node.node_id.hex() if node else None
            if f[1] == "DEAD":
                key = (actor.get("namespace"), actor.get("name"))
                if self.named.get(key) == f[0]:
                    del self.named[key]
                actor["death"] = f[2].get("reason")
        else:
            raise ProtocolError(f"{P.NAMES[mtype]} is not a message for the head")

    # -- placement -------------------------------------------------------------------
    def _place(self, from_ident: bytes, spec: list) -> None:
        res = spec[P.A_RES] if len(spec) == P.ACTOR_FIELDS else spec[P.T_RES]
        res = {k: v for k, v in res.items() if not k.startswith("_")}
        for node in self.nodes.values():
            if node.alive and node.ident != from_ident and all(
                    node.resources.get(k, 0) >= v for k, v in res.items() if v):
                self._send(node.ident, P.PLACE, [spec])
                return
        owner = spec[P.A_OWNER] if len(spec) == P.ACTOR_FIELDS else spec[P.T_OWNER]
        self.infeasible.append((spec, (from_ident, owner), time.monotonic(), False))

    def _warn_infeasible(self, spec: list, owner: tuple) -> None:
        is_actor = len(spec) == P.ACTOR_FIELDS
        res = spec[P.A_RES] if is_actor else spec[P.T_RES]
        res = {k: v for k, v in res.items() if v and not k.startswith("_")}
        total: dict = {}
        for node in self.nodes.values():
            if node.alive:
                for k, v in node.resources.items():
                    total[k] = max(total.get(k, 0), v)
        missing = {k: v for k, v in res.items() if total.get(k, 0) < v}
        what = f"actor {spec[P.A_CLASS_NAME]}" if is_actor else f"task {spec[P.T_NAME]}"
        msg = (f"The {what} cannot be scheduled: it needs {res} but no node has {missing} "
               f"(the largest node offers {total}). It stays pending until a node that fits joins.")
        self._send(owner[0], P.WARN, owner[1], msg)

    def _retry_infeasible(self) -> None:
        pending, self.infeasible = self.infeasible, []
        for spec, owner, _seen, _warned in pending:
            self._place(owner[0], spec)

    # -- control store calls ---------------------------------------------------------
    def _call(self, ident: bytes, op: str, args: list):
        if op == "register_actor":
            actor_id, name, namespace, handle_blob, get_if_exists = args
            if type(actor_id) is not bytes or type(name) is not str:
                raise ValueError("register_actor wants a bytes actor id and a str name")
            key = (namespace, name)
            existing = self.named.get(key)
            if existing is not None and self.actors.get(existing, {}).get("state") != "DEAD":
                if get_if_exists:
                    return [False, self.actors[existing]["handle"]]
                raise ValueError(f"The name {name!r} (namespace={namespace!r}) is already taken "
                                 "by another actor; pick another name or use get_if_exists=True.")
            self.named[key] = actor_id
            self.actors[actor_id] = {"name": name, "namespace": namespace, "handle": handle_blob,
                                     "state": "PENDING"}
            return [True, None]
        if op == "get_actor":
            name, namespace = args
            actor_id = self.named.get((namespace, name))
            actor = self.actors.get(actor_id) if actor_id else None
            if actor is None or actor.get("state") == "DEAD":
                raise ValueError(f"Failed to look up actor with name {name!r} in namespace "
                                 f"{namespace!r}: no live actor has that name.")
            return actor["handle"]
        if op == "list_named_actors":
            all_ns, namespace = args
            return [[ns, name] if all_ns else name for (ns, name), aid in self.named.items()
                    if all_ns or ns == namespace]
        if op == "nodes":
            return [self._node_dict(n) for n in self.nodes.values()]
        if op == "cluster_resources":
            return self._sum(lambda n: n.resources)
        if op == "available_resources":
            return self._sum(lambda n: n.available)
        raise ValueError(f"unknown head call {op!r}")

    def _sum(self, pick) -> dict:
        total: dict = {}
        for node in self.nodes.values():
            if node.alive:
                for k, v in pick(node).items():
                    total[k] = total.get(k, 0.0) + float(v)
        return {k: v for k, v in total.items() if v > 0 or k in ("CPU",)}

    @staticmethod
    def _node_dict(n: NodeRecord) -> dict:
        return {
            "NodeID": n.node_id.hex(), "Alive": n.alive, "alive": n.alive,
            "NodeManagerAddress": "127.0.0.1", "NodeManagerHostname": os.uname().nodename,
            "NodeManagerPort": 0, "ObjectManagerPort": 0,
            "ObjectStoreSocketName": n.address, "RayletSocketName": n.address,
            "MetricsExportPort": 0, "NodeName": "127.0.0.1",
            "DeathReason": 0 if n.alive else 1, "DeathReasonMessage": n.death,
            "Resources": dict(n.resources), "Labels": {}, "Load": n.load,
        }


def _amounts_ok(amounts) -> bool:
    """True if `amounts` maps resource names to numbers (free amounts may be < 0)."""
    return type(amounts) is dict and all(
        type(k) is str and (type(v) is float or type(v) is int) for k, v in amounts.items())


def _exit_on_signal(signum, frame):
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m zray.brokers.head", description="zray head broker")
    ap.add_argument("--session-dir", required=True)
    ap.add_argument("--parent-fd", type=int, default=None)
    ap.add_argument("--cleanup-dir", action="store_true")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        HeadBroker(args.session_dir, args.parent_fd, args.cleanup_dir).serve()
    except SystemExit:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
