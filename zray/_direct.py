"""Direct actor calls: a caller sends calls straight to the actor's own ROUTER
socket and gets results back on it, 2 hops instead of 4 through the node broker
(Ray's direct actor transport). Everything here runs on the runtime's I/O thread.

    caller I/O thread --LOOKUP--> node --ACTOR_ADDR(ALIVE, address)--> caller
    caller DEALER --SUBMIT(calls)--> actor ROUTER ... actor ROUTER --RESULTS--> caller

The node tells every caller that looked an actor up when it restarts or dies;
the caller then retries (max_task_retries) or fails its calls in flight. Calls made
before the address is known wait here, so that one caller's calls keep their order.
"""
from __future__ import annotations

import pickle
from collections import deque
from typing import Callable

import zmq

from . import _protocol as P
from ._log import get_logger
from .exceptions import ActorDiedError, ActorUnavailableError, TaskCancelledError

_log = get_logger("direct")


class _Actor:
    __slots__ = ("state", "address", "sock", "queue", "inflight", "error", "release", "stale")

    def __init__(self) -> None:
        self.state = "RESOLVING"
        self.address = ""
        self.sock: zmq.Socket | None = None
        self.queue: deque = deque()            # calls waiting for an address
        self.inflight: dict[bytes, list] = {}  # task_id -> spec, sent, no result yet
        self.error: bytes | None = None
        self.release = False                   # the last handle is gone: end it after the queue
        self.stale = ""                        # the address of an instance killed from here


class DirectCalls:
    """The caller side, owned by one runtime's I/O thread."""

    def __init__(self, ctx: zmq.Context, poller: zmq.Poller, ident: bytes, node: zmq.Socket,
                 on_result: Callable[[list], None]) -> None:
        self.ctx, self.poller, self.ident, self.node = ctx, poller, ident, node
        self.on_result = on_result
        self.actors: dict[bytes, _Actor] = {}
        self.by_sock: dict[zmq.Socket, _Actor] = {}
        self._batch: dict[bytes, list] = {}

    def call(self, spec: list) -> None:
        """Queue one call (sent by flush())."""
        aid = spec[P.T_ACTOR]
        a = self.actors.get(aid)
        if a is None:
            a = self.actors[aid] = _Actor()
            self.node.send(P.encode(P.LOOKUP, aid))
        if a.state == "ALIVE":
            self._batch.setdefault(aid, []).append(spec)
        elif a.state in ("DEAD", "KILLED"):
            self._fail(spec, a.error)
        else:
            a.queue.append(spec)

    def flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, {}
        for aid, specs in batch.items():
            self._send(self.actors[aid], specs)

    def _send(self, a: _Actor, specs: list) -> None:
        for spec in specs:
            a.inflight[spec[P.T_ID]] = spec
        a.sock.send(P.encode(P.SUBMIT, specs))

    def on_address(self, aid: bytes, state: str, address: str, error: bytes | None) -> None:
        a = self.actors.get(aid)
        if a is None:
            a = self.actors[aid] = _Actor()
        if state == "ALIVE":
            if a.state == "KILLED" or (a.stale and address == a.stale):
                return   # news of the instance this process just killed
            if a.sock is None or a.address != address:
                self._close(a)
                sock = self.ctx.socket(zmq.DEALER)
                sock.setsockopt(zmq.ROUTING_ID, self.ident)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.SNDHWM, 0)
                sock.setsockopt(zmq.RCVHWM, 0)
                sock.connect(address)
                self.poller.register(sock, zmq.POLLIN)
                a.sock, a.address = sock, address
                self.by_sock[sock] = a
            a.state = "ALIVE"
            if a.queue:
                specs = list(a.queue)
                a.queue.clear()
                self._send(a, specs)
            if a.release:
                a.sock.send(P.encode(P.RELEASE_ACTOR, aid, True))
        elif state == "RESTARTING":
            a.state = "RESTARTING"
            self._close(a)
            retry = []
            for spec in a.inflight.values():
                if P.spend_retry(spec):
                    retry.append(spec)
                else:
                    self._fail(spec, pickle.dumps(ActorUnavailableError(
                        f"The actor {aid.hex()} died while running {spec[P.T_NAME]} and is "
                        "restarting; the call was not retried (max_task_retries=0).", aid.hex())))
            a.inflight.clear()
            a.queue.extendleft(reversed(retry))
        else:  # DEAD
            a.state, a.error = "DEAD", error
            self._close(a)
            for spec in list(a.inflight.values()) + list(a.queue):
                self._fail(spec, error)
            a.inflight.clear()
            a.queue.clear()

    def on_readable(self, sock: zmq.Socket) -> None:
        a = self.by_sock.get(sock)
        if a is None:
            return
        def on_results(results: list) -> None:
            for r in results:
                a.inflight.pop(r[P.R_TASK], None)
                self.on_result(r)
        recv_results(sock, on_results)

    def killed(self, aid: bytes, no_restart: bool) -> None:
        """This process killed the actor: calls made from now on must not reach the
        old instance (they fail, or wait for the restart). Calls already sent fail or
        are retried when the node reports the death."""
        a = self.actors.get(aid)
        if a is None:
            if not no_restart:
                return
            a = self.actors[aid] = _Actor()
            self.node.send(P.encode(P.LOOKUP, aid))   # to hear of the death, too
        self.flush()
        a.stale = a.address
        if no_restart:
            a.state = "KILLED"   # new calls fail; in-flight ones with the DEAD notice
            a.error = pickle.dumps(ActorDiedError(
                f"The actor {aid.hex()} was killed with zray.kill().", aid.hex()))
            for spec in list(a.queue):
                self._fail(spec, a.error)
            a.queue.clear()
        elif a.state == "ALIVE":
            a.state = "RESTARTING"   # new calls wait for the restarted instance

    def release(self, aid: bytes) -> bool:
        """Tell the actor (behind this caller's calls) that its last handle is gone;
        False if this process never called it (the node tells it then)."""
        a = self.actors.get(aid)
        if a is None or a.state == "DEAD":
            return False
        a.release = True
        self.flush()
        if a.state == "ALIVE":
            a.sock.send(P.encode(P.RELEASE_ACTOR, aid, True))
        return True

    def cancel(self, task_id: bytes, force: bool) -> bool:
        """Cancel a call made here: a queued one at once, a sent one by asking its
        actor. False if the task is not an actor call of this caller."""
        for _aid, a in self.actors.items():
            for spec in a.queue:
                if spec[P.T_ID] == task_id:
                    a.queue.remove(spec)
                    self._fail(spec, pickle.dumps(TaskCancelledError(task_id.hex())))
                    return True
            if task_id in a.inflight and a.sock is not None:
                a.sock.send(P.encode(P.CANCEL, task_id, force))
                return True
        return False

    def _fail(self, spec: list, error: bytes | None) -> None:
        self.on_result(P.error_result(spec, error))

    def _close(self, a: _Actor) -> None:
        if a.sock is not None:
            self.poller.unregister(a.sock)
            self.by_sock.pop(a.sock, None)
            a.sock.close()
            a.sock = None

    def close(self) -> None:
        for a in self.actors.values():
            self._close(a)


def recv_results(sock: zmq.Socket, on_results: Callable[[list], None]) -> None:
    """Hand the RESULTS lists waiting on a caller's DEALER to an actor or a leased worker
    to on_results (anything else there is dropped and logged)."""
    def handle(mtype: int, fields: list) -> None:
        P.expect(mtype, (P.RESULTS,))
        on_results(fields[0])
    P.drain(sock, handle, _log, routed=False)


class ActorEndpoint:
    """The actor side: a ROUTER that callers send calls to, owned by the actor
    worker's I/O thread. Results of calls that came this way go back this way."""

    def __init__(self, ctx: zmq.Context, poller: zmq.Poller, address: str,
                 on_calls: Callable[[list, dict], None], on_cancel: Callable[[bytes], None],
                 on_release: Callable[[], None]) -> None:
        self.on_cancel, self.on_release = on_cancel, on_release
        self.address = address
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.bind(address)
        poller.register(self.sock, zmq.POLLIN)
        self.on_calls = on_calls
        self._out: dict[bytes, list] = {}

    def on_readable(self) -> None:
        P.drain(self.sock, self._on_message, _log, routed=True)

    def _on_message(self, _sender: bytes, mtype: int, fields: list) -> None:
        if mtype == P.CANCEL:
            self.on_cancel(fields[0])
            return
        if mtype == P.RELEASE_ACTOR:
            self.on_release()
            return
        P.expect(mtype, (P.SUBMIT, P.TASKS))
        funcs = {}
        if mtype == P.TASKS:   # leased tasks, with functions this worker lacks
            funcs = fields[1]
            if type(funcs) is not dict:
                raise P.ProtocolError("TASKS wants a map of functions")
        specs = [P.check_task(s) for s in fields[0]]
        for spec in specs:
            spec[P.T_ASSIGNED] = DIRECT
        self.on_calls(specs, funcs)

    def result(self, owner: bytes, result: list) -> None:
        self._out.setdefault(owner, []).append(result)

    def flush(self) -> None:
        if not self._out:
            return
        out, self._out = self._out, {}
        for owner, results in out.items():
            try:
                self.sock.send_multipart([owner, P.encode(P.RESULTS, results)])
            except zmq.ZMQError:
                pass  # the caller is gone; nobody waits for these results

    def close(self) -> None:
        self.sock.close()


DIRECT = 1  # T_ASSIGNED of a call that came straight from its caller
