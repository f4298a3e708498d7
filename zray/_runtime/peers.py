"""The caller side of direct sockets: one DEALER per actor this process calls and per
worker leased to it, owned by the I/O thread. Carries out what lanes.py decides and
feeds back what comes in (2 hops a task or call instead of 4 through the node).

    caller I/O thread --LOOKUP--> node --ACTOR_ADDR(ALIVE, address)--> caller
    caller DEALER --SUBMIT(calls)--> actor ROUTER ... actor ROUTER --RESULTS--> caller
    caller --LEASE(shape)--> node --LEASED(worker, address)--> caller
    caller DEALER --SUBMIT/TASKS(1 task)--> worker ROUTER --RESULTS--> caller
"""
from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable

import zmq

from .. import _protocol as P
from .._limits import fd_limit, max_sockets
from .._log import get_logger
from . import lanes as L
from .transport import Claim, Transport

_log = get_logger("peers")


class Peers:
    """lock guards the lanes: the main thread's sync lane (sync.py) decides there too."""

    def __init__(self, transport: Transport, lanes: L.Lanes, blobs: dict[bytes, bytes],
                 on_result: Callable[[list], None]) -> None:
        self.t = transport
        self.lanes = lanes
        self.lock = threading.Lock()
        self.blobs = blobs            # func_id -> pickled function, of this process's functions
        self.on_result = on_result    # a result (or a local failure) for the owner
        self.on_items: Callable[[list], None] = lambda rows: None   # a generator's (streams.py)
        self.socks: dict[tuple, zmq.Socket] = {}
        self.unopened: set[tuple] = set()   # peers whose socket could not be opened
        self.adopted: dict[zmq.Socket, tuple] = {}   # socket -> (spec, worker_id)
        self.on_abandon: Callable[[list], None] = lambda spec: None
        self._warned_unopened = False

    # -- commands (I/O thread) ---------------------------------------------------------
    def route_task(self, claim: Claim) -> list | None:
        """The task, to send through the node; None if it went on a lease (or the main
        thread took it)."""
        with self.lock:
            spec, claim.spec = claim.spec, None
            if spec is None:   # the main thread took it (and counted it as handled)
                return None
            self.t.handled = claim.seq
            leased, acts = self.lanes.route(spec, time.monotonic())
        if acts:
            self.do(acts)
        return None if leased else spec

    def call(self, claim: Claim) -> None:
        with self.lock:
            spec, claim.spec = claim.spec, None
            if spec is None:   # the main thread took it (and counted it as handled)
                return
            self.t.handled = claim.seq
            acts = self.lanes.call(spec)
        self.do(acts)

    def flush(self) -> None:
        with self.lock:
            acts = self.lanes.flush()
        self.do(acts)

    def decide(self, fn: Callable, *args) -> list:
        """Call a lanes method under the lock; its actions."""
        with self.lock:
            return fn(*args)

    def cancel(self, task_id: bytes, force: bool) -> None:
        """An actor call of this process (its actor), a leased task (its worker), or
        else a task of the node."""
        for cancel in (self.lanes.cancel_call, self.lanes.cancel_task):
            handled, acts = self.decide(cancel, task_id, force)
            if handled:
                self.do(acts)
                return
        self.t.node.send(P.encode(P.CANCEL, task_id, force))

    def kill(self, actor_id: bytes, no_restart: bool) -> None:
        self.do(self.decide(self.lanes.killed, actor_id, no_restart))
        self.t.node.send(P.encode(P.KILL_ACTOR, actor_id, no_restart))

    def release(self, actor_id: bytes) -> None:
        """Through the actor's own socket when this process calls it, so that the actor
        ends after the calls sent before, not before them."""
        direct, acts = self.decide(self.lanes.release, actor_id)
        self.do(acts)
        self.t.node.send(P.encode(P.RELEASE_ACTOR, actor_id, direct))

    def tick(self) -> float | None:
        acts, wait = self.decide(self.lanes.tick, time.monotonic())
        self.do(acts)
        return wait

    # -- node messages -------------------------------------------------------------
    def on_actor_address(self, fields: list) -> None:
        aid, state, address, error = fields
        sock = self.socks.get(("actor", aid)) if state != L.ALIVE else None
        if sock is not None:
            # Results the actor sent before it ended may wait on its socket, unread:
            # this loop drains the node's socket first, and the news of the end (whose
            # handling closes that socket) failed calls that had returned (1 in 30
            # calls made just before an exit_actor(), under load). They count first.
            P.drain(sock, lambda m, f: self._on_message(("actor", aid), m, f), _log)
        self.do(self.decide(self.lanes.actor_address, aid, state, address, error))

    def on_leased(self, fields: list) -> None:
        key, wid, address = fields
        self.do(self.decide(self.lanes.leased, key, wid, address, time.monotonic()))

    def on_lease_lost(self, fields: list) -> None:
        self.do(self.decide(self.lanes.lease_lost, fields[0]))

    # -- actions ---------------------------------------------------------------------
    def do(self, acts: list) -> None:
        for act in acts:
            kind = act[0]
            if kind == L.SEND or kind == L.TASK:
                if act[1] in self.unopened:
                    continue   # what it carried, the lanes sent another way (unreachable)
                if kind == L.SEND:
                    self.socks[act[1]].send(P.encode(act[2], *act[3]))
                else:
                    self._send_task(act[1], act[2], act[3])
            elif kind == L.NODE:
                self.t.node.send(P.encode(act[1], *act[2]))
            elif kind == L.FAIL:
                self.on_result(P.error_result(act[1], act[2]))
            elif kind == L.OPEN and not self._open(act[1], act[2]):
                self.do(self.decide(self.lanes.unreachable, act[1], time.monotonic()))
            elif kind == L.CLOSE:
                self._close(act[1])
            elif kind == L.ABANDON:
                self._abandon(act[1])

    def _send_task(self, peer: tuple, spec: list, with_function: bool) -> None:
        if with_function:
            fid = spec[P.T_FUNC]
            self.socks[peer].send(P.encode(P.TASKS, [spec], {fid: self.blobs[fid]}))
        else:
            self.socks[peer].send(P.encode(P.SUBMIT, [spec]))

    def _open(self, peer: tuple, address: str) -> bool:
        """Connect a socket to `peer`; False if this process cannot open one more (its
        fd limit, read now: past it a connection that finds no fd is retried by zmq
        forever, and what was sent on it lost without a word)."""
        self.unopened.discard(peer)
        sock = None
        try:
            if len(self.socks) + len(self.adopted) >= max_sockets():
                raise zmq.ZMQError(errno.EMFILE, "the fd limit leaves no room for a socket")
            sock = self.t.socket(zmq.DEALER)
            sock.setsockopt(zmq.ROUTING_ID, self.t.ident)
            sock.connect(address)
        except zmq.ZMQError as exc:
            if sock is not None:
                sock.close()
            self.unopened.add(peer)
            if not self._warned_unopened:
                self._warned_unopened = True
                _log.warning(f"cannot open a socket to another actor or worker ({exc}; "
                             f"{len(self.socks)} open, fd limit {fd_limit()}): calls to those "
                             "go through the node broker, slower. Raise the limit (ulimit -n).")
            return False
        self.socks[peer] = sock
        self.t.register(sock, lambda: P.drain(sock, lambda m, f: self._on_message(peer, m, f),
                                              _log, routed=False))
        return True

    def _close(self, peer: tuple) -> None:
        self.unopened.discard(peer)
        sock = self.socks.pop(peer, None)
        if sock is not None:
            self.t.unregister(sock)
            sock.close()

    def _on_message(self, peer: tuple, mtype: int, fields: list) -> None:
        if mtype == P.ITEMS:   # a generator's items, before its result
            self.on_items(fields[0])
            return
        P.expect(mtype, (P.RESULTS,))
        kind, key = peer
        for r in fields[0]:
            if kind == "actor":
                self.decide(self.lanes.call_result, key, r[P.R_TASK])
                self.on_result(r)
            else:
                self.on_result(r)
                self.do(self.decide(self.lanes.lease_result, key, r[P.R_TASK], time.monotonic()))

    # -- calls a user thread sent on its own socket ----------------------------------
    def adopt(self, sock: zmq.Socket, spec: list, wid: bytes | None) -> None:
        """Read the result of a call in flight on a user thread's socket (its get() gave
        up waiting), then close the socket."""
        self.adopted[sock] = (spec, wid)
        self.t.register(sock, lambda: P.drain(sock, lambda m, f: self._on_adopted(sock, m, f),
                                              _log, routed=False))

    def _on_adopted(self, sock: zmq.Socket, mtype: int, fields: list) -> None:
        P.expect(mtype, (P.RESULTS,))
        spec, wid = self.adopted[sock]
        for r in fields[0]:
            self.on_result(r)
        self.do(self.decide(sync_done(self.lanes, spec, wid)))
        self._close_adopted(sock)

    def _abandon(self, spec: list) -> None:
        """The call a user thread sent itself was taken back (retried or failed here)."""
        for sock, (adopted, _wid) in list(self.adopted.items()):
            if adopted is spec:
                self._close_adopted(sock)
                return
        self.on_abandon(spec)

    def _close_adopted(self, sock: zmq.Socket) -> None:
        if self.adopted.pop(sock, None) is not None:
            self.t.unregister(sock)
            sock.close()

    def close(self) -> None:
        for peer in list(self.socks):
            self._close(peer)
        for sock in list(self.adopted):
            self._close_adopted(sock)


def sync_done(lanes: L.Lanes, spec: list, wid: bytes | None) -> Callable[[], list]:
    """The lanes method that ends a call or task sent on a user thread's own socket."""
    if wid is None:
        return lambda: lanes.sync_call_done(spec)
    return lambda: lanes.sync_task_done(wid, spec, time.monotonic())
