"""The callee side of direct sockets: the ROUTER a worker binds so that callers send it
actor calls and leased tasks straight, and that answers them on the same socket.
Owned by whichever thread made it: the I/O thread (task workers, threaded and async
actors) or the thread that runs a sync actor's calls (no hand-off per call).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import zmq

from .. import _protocol as P
from .._config import CONFIG
from .._log import get_logger
from ..brokers._failures import rejected_result

_log = get_logger("endpoint")


class Endpoint:
    """on_calls(specs, funcs) gets the calls and tasks that arrive, each spec's
    T_ASSIGNED set to the identity to answer (bytes: a direct call); on_cancel(task_id)
    and on_release() the other two messages a caller may send."""

    def __init__(self, ctx: zmq.Context, address: str,
                 on_calls: Callable[[list, dict], None], on_cancel: Callable[[bytes], None],
                 on_release: Callable[[], None]) -> None:
        self.address = address
        self.on_calls, self.on_cancel, self.on_release = on_calls, on_cancel, on_release
        self.sock = ctx.socket(zmq.ROUTER)
        for opt, value in ((zmq.ROUTER_MANDATORY, 1), (zmq.LINGER, 0), (zmq.SNDHWM, 0),
                           (zmq.RCVHWM, 0)):
            self.sock.setsockopt(opt, value)
        self.sock.bind(address)
        self._out: dict[bytes, list] = {}
        self.queued = 0   # results waiting for flush()

    def read(self) -> None:
        """Handle what callers sent (call on readable)."""
        P.drain(self.sock, self._on_message, _log, routed=True)

    def _on_message(self, sender: bytes, mtype: int, fields: list) -> None:
        if mtype == P.CANCEL:
            self.on_cancel(fields[0])
            return
        if mtype == P.RELEASE_ACTOR:
            self.on_release()
            return
        P.expect(mtype, (P.SUBMIT, P.TASKS))
        funcs: Any = {}
        if mtype == P.TASKS:   # leased tasks, with functions this worker lacks
            funcs = fields[1]
            if type(funcs) is not dict:
                raise P.ProtocolError("TASKS wants a map of functions")
        specs = []
        for spec in fields[0]:
            try:
                specs.append(P.check_task(spec))
            except P.ProtocolError as exc:   # this one fails, not the batch (nor silently)
                self._reject(sender, spec, str(exc))
        for spec in specs:
            spec[P.T_ASSIGNED] = sender
        self.on_calls(specs, funcs)

    def _reject(self, sender: bytes, spec: Any, why: str) -> None:
        _log.warning("dropped a malformed task spec", error=why, spec=repr(spec)[:300])
        result = rejected_result(spec, why)
        if result is not None:
            try:
                self.sock.send(sender, _SNDMORE)
                self.sock.send(P.encode(P.RESULTS, [result]))
            except zmq.ZMQError:
                pass   # the caller is gone

    def reply(self, to: bytes, result: list) -> None:
        """Queue a result for the caller `to` (sent by flush)."""
        self.queued += 1
        out = self._out.get(to)
        if out is None:
            self._out[to] = [result]
        else:
            out.append(result)

    def send_items(self, to: bytes, rows: list) -> None:
        """Send a generator's items to the caller `to` now, behind the results queued."""
        self.flush()
        try:
            self.sock.send(to, _SNDMORE)
            self.sock.send(P.encode(P.ITEMS, rows))
        except zmq.ZMQError:
            pass  # the caller is gone

    def flush(self) -> None:
        if not self._out:
            return
        out, self._out = self._out, {}
        self.queued = 0
        for to, results in out.items():
            try:
                self.sock.send(to, _SNDMORE)
                self.sock.send(P.encode(P.RESULTS, results))
            except zmq.ZMQError:
                pass  # the caller is gone (ROUTER_MANDATORY); nobody waits for these results

    def close(self) -> None:
        # The results flushed last (an actor's before it exits: exit_actor(), its
        # release) are still in zmq's queue: with no linger they were dropped, and
        # their callers saw the actor die instead (every reply of a 200-call batch
        # before an exit_actor()). A bounded linger delivers them; the context's
        # term() waits for it. (A caller that is gone costs nothing: ROUTER drops.)
        self.sock.setsockopt(zmq.LINGER, int(CONFIG.stop_grace_s * 1000))
        self.sock.close()


_SNDMORE = int(zmq.SNDMORE)   # an int: pyzmq's enum flags cost ~1 us a send


def is_direct(spec: list) -> bool:
    """True if the task came straight from its caller (answer it on the endpoint)."""
    return type(spec[P.T_ASSIGNED]) is bytes
