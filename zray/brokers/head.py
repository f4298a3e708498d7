"""The head broker, one per cluster: a thin loop around the control store (_control)
and the global scheduler, which places what nodes spill back (_placement) or holds it,
warning its owner, until a node that fits joins. Run as `python -m zray.brokers.head`."""
from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time

from .. import _protocol as P
from .._config import CONFIG
from .._log import get_logger
from .._object_store import STORED
from ..exceptions import ProtocolError
from ._control import ControlStore
from ._placement import pick_node
from ._resources import actor_demand


class HeadBroker:
    def __init__(self, session_dir: str, parent_fd: int | None, cleanup_dir: bool) -> None:
        self.session_dir = session_dir
        self.address = f"ipc://{session_dir}/head.sock"
        self.parent_fd = parent_fd
        self.cleanup_dir = cleanup_dir
        self.log = get_logger("head")
        self.store = ControlStore()
        self.infeasible: list = []                    # [(spec, (from_ident, owner), first_seen, warned)]
        self.running = True
        self._handlers = {
            P.HEARTBEAT: self._on_heartbeat, P.NODE_HELLO: self._on_node_hello,
            P.HEAD_CALL: self._on_head_call, P.SPILLBACK: self._on_spillback,
            P.ACTOR_EVENT: self._on_actor_event,
        }

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
        try:
            self._loop()
        finally:
            for node in self.store.nodes.values():
                self._send(node.ident, P.SHUTDOWN, "the head broker is stopping")
            self.sock.close()
            ctx.term()
            if self.cleanup_dir:
                shutil.rmtree(self.session_dir, ignore_errors=True)

    def _loop(self) -> None:
        poller = self.zmq.Poller()
        poller.register(self.sock, self.zmq.POLLIN)
        if self.parent_fd is not None:
            poller.register(self.parent_fd, self.zmq.POLLIN)
        while self.running:
            events = dict(poller.poll(int(CONFIG.heartbeat_s * 1000)))
            if self.parent_fd is not None and self.parent_fd in events:
                break
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
        for node in self.store.silent_nodes(now, CONFIG.heartbeat_s * CONFIG.heartbeat_misses):
            self.log.warning("node missed its heartbeats", node=node.node_id.hex())
        for i, (spec, owner, seen, warned) in enumerate(self.infeasible):
            if not warned and now - seen >= CONFIG.infeasible_warning_s:
                self.infeasible[i] = (spec, owner, seen, True)
                self._warn_infeasible(spec, owner)

    # -- messages: one handler per type -------------------------------------------------
    def _handle(self, ident: bytes, mtype: int, f: list) -> None:
        handler = self._handlers.get(mtype)
        if handler is None:
            raise ProtocolError(f"{P.NAMES[mtype]} is not a message for the head")
        handler(ident, f)

    def _on_heartbeat(self, ident: bytes, f: list) -> None:
        self.store.heartbeat(f, time.monotonic())

    def _on_node_hello(self, ident: bytes, f: list) -> None:
        self.store.node_hello(ident, f, time.monotonic())
        self._retry_infeasible()

    def _on_head_call(self, ident: bytes, f: list) -> None:
        client, seq, op, args = f
        try:
            ok, result = True, self.store.call(op, args)
        except Exception as exc:   # any failure goes back to the caller, as its error
            ok, result = False, str(exc)
        self._send(ident, P.HEAD_REPLY, client, seq, ok, result)

    def _on_spillback(self, ident: bytes, f: list) -> None:
        for spec in f[0]:
            # Checked here: an infeasible spec is looked at again on a timer (to
            # warn its owner), where a malformed one killed the head.
            try:
                spec = P.check_actor(spec) if len(spec) == P.ACTOR_FIELDS else P.check_task(spec)
            except (ProtocolError, TypeError):
                self.log.warning("dropped a malformed spilled spec", spec=repr(spec)[:300])
                continue
            self._place(ident, spec)

    def _on_actor_event(self, ident: bytes, f: list) -> None:
        self.store.actor_event(ident, f)

    # -- placement: decode, ask _placement, send --------------------------------------
    def _place(self, from_ident: bytes, spec: list) -> None:
        demand = _demand(spec)
        # Never back to the node that spilled it (it cannot run it).
        exclude = [n.node_id for n in self.store.nodes.values() if n.ident == from_ident]
        spiller = self.store.by_ident.get(from_ident)
        local = _arg_bytes(spec, spiller.node_id) if spiller is not None else {}
        node_id = pick_node(demand, self.store.views(), local, exclude)
        if node_id is None:
            owner = spec[P.A_OWNER] if len(spec) == P.ACTOR_FIELDS else spec[P.T_OWNER]
            self.infeasible.append((spec, (from_ident, owner), time.monotonic(), False))
            return
        node = self.store.nodes[node_id]
        node.took(demand)
        self._send(node.ident, P.PLACE, [spec])

    def _warn_infeasible(self, spec: list, owner: tuple) -> None:
        is_actor = len(spec) == P.ACTOR_FIELDS
        res = {k: v for k, v in _demand(spec).items() if v}
        total = self.store.largest()
        missing = {k: v for k, v in res.items() if total.get(k, 0) < v}
        what = f"actor {spec[P.A_CLASS_NAME]}" if is_actor else f"task {spec[P.T_NAME]}"
        msg = (f"The {what} cannot be scheduled: it needs {res} but no node has {missing} "
               f"(the largest node offers {total}). It stays pending until a node that fits joins.")
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
