"""The per-process runtime: one DEALER socket to the node broker, owned by one I/O
thread, and the futures table that the user's threads wait on.

    user threads --outbox deque + eventfd wake--> I/O thread --DEALER--> node broker
    user threads <--Waiter events / callbacks---- I/O thread <--DEALER-- node broker

User threads never touch the socket: they append to the outbox and wake the I/O
thread, which drains the outbox into batched messages (a loop of 10,000 .remote()
calls becomes a few SUBMIT messages, not 10,000). Drivers and workers use the same
runtime; workers add hooks for the tasks they are given. This module is the I/O
half; the methods user threads call (put/get/wait/submit) are in _futures.py.
"""
from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections import deque
from typing import Any, Callable

import zmq

from . import _protocol as P
from . import _serialization as S
from ._config import CONFIG
from ._direct import ActorEndpoint, DirectCalls
from ._futures import (
    _CALL,
    _CANCEL,
    _DRESULT,
    _FLUSHED,
    _KILL,
    _OPEN,
    _RELEASE,
    Futures,
)
from ._ids import IdSource, object_id
from ._leases import TaskLeases
from ._log import get_logger
from ._object_store import STORE
from ._object_table import ERROR, PENDING, READY, ObjectTable
from .exceptions import (
    LocalRayletDiedError,
    ObjectLostError,
    RaySystemError,
)

_log = get_logger("runtime")
_current: "Runtime | None" = None


def current() -> "Runtime":
    """This process's runtime; RaySystemError if zray is not initialised here."""
    rt = _current
    if rt is None:
        raise RaySystemError("zray is not initialised in this process; call zray.init() first")
    return rt


def set_current(rt: "Runtime | None") -> None:
    global _current
    _current = rt


def _wire(state: int) -> int:
    """A table state as an OBJECT message's status (P.OK / P.ERROR)."""
    return P.ERROR if state == ERROR else P.OK


class Runtime(Futures):
    """One per process: the socket to the node broker and the futures table."""

    def __init__(self, address: str, kind: str, job_id: bytes, info: dict | None = None,
                 life_fd: int | None = None, direct_address: str | None = None) -> None:
        self.address = address
        self.direct_address = direct_address   # an actor worker's own call socket
        self._direct: DirectCalls | None = None
        self._leases: TaskLeases | None = None
        self._endpoint: ActorEndpoint | None = None
        self.life_fd = life_fd
        self.kind = kind
        self.job_id = job_id
        self.ids = IdSource()
        self.ident = (b"D" if kind == "driver" else b"W") + self.ids.prefix
        self.table = ObjectTable(self.ident)
        self.info = dict(info or {})
        self.node_id: bytes = b""
        self.node_info: dict = {}
        self._outbox: deque = deque()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._wake_pending = False
        self._inflight: dict[bytes, list] = {}
        self._arg_segments: dict[bytes, list] = {}   # task_id -> its args' segment
        self._func_blobs: dict[bytes, bytes] = {}   # the functions this process registered
        self._head_calls: dict[int, list] = {}
        self._head_seq = itertools.count(1)
        self._submit_lock = threading.Lock()
        self._actor_queues: dict[bytes, deque] = {}
        self._stopping = False
        self._dead: BaseException | None = None
        self._welcome = threading.Event()
        self._thread: threading.Thread | None = None
        # Worker hooks, called in the I/O thread.
        self.on_tasks: Callable[[list, dict], None] | None = None
        self.on_cancel: Callable[[bytes], None] | None = None
        self.on_shutdown: Callable[[], None] | None = None
        self.on_create_actor: Callable[[list], None] | None = None
        # Set by a task worker while it runs a task: get()/wait() call it with True
        # before blocking and False after, so that the node can lend the task's CPU
        # and take back the tasks queued behind it.
        self.block_hook: Callable[[bool], None] | None = None
        self.task_context: Any = None
        self.namespace: str = self.info.get("namespace") or ""
        # [job_id, namespace] stamped on every task and actor this process submits;
        # a worker takes it over from the task or actor it runs.
        self.job: list = [job_id, self.namespace]

    # -- lifecycle ---------------------------------------------------------------
    def start(self, timeout: float) -> None:
        self._thread = threading.Thread(target=self._io_main, name="zray-io", daemon=True)
        self._thread.start()
        if not self._welcome.wait(timeout):
            self.stop()
            raise RaySystemError(f"the node broker at {self.address} did not answer within {timeout:.1f} s")
        if self._dead is not None:
            raise RaySystemError(f"could not connect to the node broker: {self._dead}")

    def stop(self, timeout: float = 2.0) -> None:
        """Flush what is queued, close the socket, join the I/O thread. Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        # Refs that outlive shutdown() still call _wake() when dropped: a write to
        # this fd's number, reused by then (by a new zmq context's own eventfd, as in
        # a notebook kernel), made libzmq abort (mailbox.cpp:72). No wake-up after this.
        self._wake_pending = True
        fd, self._wake_fd = self._wake_fd, -1
        try:
            os.close(fd)
        except OSError:
            pass

    # -- outbox ------------------------------------------------------------------
    def _wake(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            try:
                os.eventfd_write(self._wake_fd, 1)
            except OSError:
                pass

    def send(self, mtype: int, *fields: Any) -> None:
        """Queue a message for the node broker (any thread)."""
        self._outbox.append((mtype, fields))
        self._wake()

    def on_ref_deleted(self, oid: bytes) -> None:
        self.table.released.append(oid)
        self._wake()

    # -- the I/O thread ----------------------------------------------------------
    def _io_main(self) -> None:
        ctx = zmq.Context(io_threads=1)
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, self.ident)
        sock.setsockopt(zmq.LINGER, int(CONFIG.stop_grace_s * 1000))
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        try:
            sock.connect(self.address)
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            poller.register(self._wake_fd, zmq.POLLIN)
            if self.life_fd is not None:
                poller.register(self.life_fd, zmq.POLLIN)
            self._ctx, self._poller = ctx, poller
            self._direct = DirectCalls(ctx, poller, self.ident, sock, self._on_direct_result)
            self._leases = TaskLeases(ctx, poller, self.ident, sock, self._on_direct_result,
                                      self._func_blobs)
            use_leases = CONFIG.lease_linger_s > 0
            timeout = None
            if self.direct_address:  # bound before HELLO: the node hands the address out
                self._endpoint = ActorEndpoint(ctx, poller, self.direct_address,
                                               lambda specs, funcs: self.on_tasks(specs, funcs),
                                               lambda task_id: self.on_cancel(task_id),
                                               lambda: self.on_shutdown())
                self.info["direct"] = self.direct_address
            sock.send(P.encode(P.HELLO, self.kind, os.getpid(), self.job_id, self.info))
            while True:
                events = dict(poller.poll(timeout))
                if self._wake_fd in events:
                    # Read first, then clear: a wake written between the two would
                    # otherwise be swallowed with the flag left set (a lost wake-up).
                    try:
                        os.eventfd_read(self._wake_fd)
                    except BlockingIOError:
                        pass
                    self._wake_pending = False
                if sock in events:
                    P.drain(sock, self._handle, _log, routed=False)
                if self.life_fd is not None and self.life_fd in events:
                    os._exit(1)  # the node broker died: nobody is left to talk to
                if len(events) > 1 or sock not in events:
                    for s in events:
                        if s in self._leases.by_sock:
                            self._leases.on_readable(s)
                        elif s in self._direct.by_sock:
                            self._direct.on_readable(s)
                        elif self._endpoint is not None and s is self._endpoint.sock:
                            self._endpoint.on_readable()
                self._drain_released()
                self._flush(sock, use_leases)
                if use_leases and self._leases.leases:
                    wait = self._leases.tick(time.monotonic())
                    timeout = None if wait is None else max(1, int(wait * 1000) + 1)
                else:
                    timeout = None
                if self._stopping:
                    break
        except Exception as exc:  # a bug here would hang every get(): make it loud
            self._dead = exc
            _log.exception("runtime I/O thread failed")
            self._fail_everything(exc)
        finally:
            self._welcome.set()
            if self._direct is not None:
                self._direct.close()
            if self._leases is not None:
                self._leases.close()
            if self._endpoint is not None:
                self._endpoint.close()
            sock.close()
            ctx.term()

    def _flush(self, sock: zmq.Socket, use_leases: bool = False) -> None:
        """Send what is queued, batching consecutive messages of one type."""
        if STORE.added or STORE.freed or STORE.touched:
            # The node keeps the store's account; it goes first, so that whatever
            # this flush sends through the node is handled after it.
            added, freed, touched = STORE.added, STORE.freed, STORE.touched
            news = [list(added.popleft()) for _ in range(len(added))]
            gone = [freed.popleft() for _ in range(len(freed))]
            used = [touched.popleft() for _ in range(len(touched))]
            sock.send(P.encode(P.STORE, news, gone, used))
        out = self._outbox
        while out:
            mtype, fields = out.popleft()
            if mtype == _CALL:
                self._direct.call(fields[0])
                continue
            if mtype == _KILL:
                self._direct.killed(fields[0], fields[1])
                sock.send(P.encode(P.KILL_ACTOR, fields[0], fields[1]))
                continue
            if mtype == _FLUSHED:   # everything queued before it is sent
                fields[0].set()
                continue
            if mtype == _OPEN:   # an actor's callers' socket, served by this thread
                self._endpoint = ActorEndpoint(self._ctx, self._poller, fields[0],
                                               lambda specs, funcs: self.on_tasks(specs, funcs),
                                               lambda task_id: self.on_cancel(task_id),
                                               lambda: self.on_shutdown())
                fields[1].set()
                continue
            if mtype == _DRESULT:
                self._endpoint.result(fields[0], fields[1])
                continue
            if mtype == _RELEASE:
                # Through the actor's own socket when this process calls it, so that
                # the actor ends after the calls sent before, not before them.
                direct = self._direct.release(fields[0])
                sock.send(P.encode(P.RELEASE_ACTOR, fields[0], direct))
                continue
            if mtype == _CANCEL:
                if not self._direct.cancel(fields[0], fields[1]) and \
                        not self._leases.cancel(fields[0], fields[1]):
                    sock.send(P.encode(P.CANCEL, fields[0], fields[1]))
                continue
            if mtype in (P.SUBMIT, P.RESULTS):
                items = list(fields[0])
                while out and out[0][0] == mtype and len(items) < CONFIG.max_batch:
                    items.extend(out.popleft()[1][0])
                if mtype == P.SUBMIT and use_leases:
                    items = [spec for spec in items if not self._leases.route(spec)]
                    if not items:
                        continue
                fields = (items,)
            sock.send(P.encode(mtype, *fields), copy=True)
        self._direct.flush()
        if self._endpoint is not None:
            self._endpoint.flush()

    def _drain_released(self) -> None:
        released = self.table.released
        while released:
            oid = released.popleft()
            entry, tell_owner = self.table.release_local(oid)
            if entry is None:
                continue
            if tell_owner:
                self._outbox.append((P.BORROW, (entry.owner, [oid], -1)))
            self._free(oid, entry)

    def _free(self, oid: bytes, entry: Any) -> None:
        if type(entry.data) is list:   # a shared-memory segment
            if entry.owned:
                STORE.free(entry.data)
            else:
                STORE.forget(entry.data[1])
        if entry.contained:
            self.release_pairs(entry.contained)
        if entry.actor and entry.owned:
            self._outbox.append((_RELEASE, (oid,)))

    def release_pairs(self, pairs: list, via_node: bool = False) -> None:
        """Drop the holds a stored value or a finished task had on these objects.
        via_node: also the holds on objects owned here go out as BORROW messages
        through the node and come back (see _on_direct_result)."""
        for oid, owner in pairs:
            if owner == self.ident and not via_node:
                entry = self.table.borrow_delta(oid, -1)
                if entry is not None:
                    self._free(oid, entry)
            else:
                self._outbox.append((P.BORROW, (owner, [oid], -1)))

    def hold_pairs(self, pairs: list) -> list:
        """Make these (object_id, owner) pairs held by a blob about to be sent."""
        for oid, owner in self.table.hold(pairs):
            self.send(P.BORROW, owner, [oid], 1)
        return [(oid, owner) for oid, owner in pairs]

    def _fail_everything(self, exc: BaseException) -> None:
        err = S.dumps_system_error(LocalRayletDiedError(f"the connection to the node broker failed: {exc}"))
        for oid, entry in list(self.table.entries.items()):
            if entry.state == PENDING:
                self._resolve(oid, ERROR, err, None)
        for call in list(self._head_calls.values()):
            call[1], call[2] = False, RaySystemError(str(exc))
            call[0].set()

    # -- incoming ----------------------------------------------------------------
    def _handle(self, mtype: int, f: list) -> None:
        if mtype == P.RESULTS:
            for result in f[0]:
                self._on_result(result)
        elif mtype == P.TASKS:
            if self.on_tasks is not None:
                self.on_tasks(f[0], f[1])
        elif mtype == P.OBJECT:
            oid, _requester, status, blob, _contained = f
            self._resolve(oid, ERROR if status == P.ERROR else READY, blob, None)
        elif mtype == P.FETCH:
            self._on_fetch(f[0], f[2])
        elif mtype == P.BORROW:
            for oid in f[1]:
                entry = self.table.borrow_delta(oid, f[2])
                if entry is not None:
                    self._free(oid, entry)
        elif mtype == P.HEAD_REPLY:
            call = self._head_calls.pop(f[1], None)
            if call is not None:
                call[1], call[2] = f[2], f[3]
                call[0].set()
        elif mtype == P.LOG:
            stream = sys.stderr if f[2] else sys.stdout
            try:
                stream.write("".join(f"{f[0]} {line}\n" for line in f[1].splitlines()))
                stream.flush()
            except Exception:
                pass
        elif mtype == P.WARN:
            _log.warning(f[1])
        elif mtype == P.CANCEL:
            if self.on_cancel is not None:
                self.on_cancel(f[0])
        elif mtype == P.STATS:
            self._outbox.append((P.STATS, (f[0], self.object_rows())))
        elif mtype == P.LEASED:
            self._leases.on_leased(f[0], f[1], f[2])
        elif mtype == P.LEASE_LOST:
            self._leases.on_lost(f[0])
        elif mtype == P.ACTOR_ADDR:
            self._direct.on_address(f[0], f[1], f[2], f[3])
        elif mtype == P.CREATE_ACTOR:
            if self.on_create_actor is not None:
                self.on_create_actor(f[0])
        elif mtype == P.WELCOME:
            self.node_id, self.node_info = f[0], f[1]
            STORE.configure(self.node_info.get("session_dir", ""),
                            int(self.node_info.get("store_capacity", 0)))
            STORE.on_change = self._wake
            self._welcome.set()
        elif mtype == P.SHUTDOWN:
            if self.on_shutdown is not None:
                self.on_shutdown()
            else:
                self._fail_everything(RuntimeError(f"the cluster shut down ({f[0]})"))

    def _on_direct_result(self, r: list) -> None:
        self._on_result(r, direct=True)

    def _on_result(self, r: list, direct: bool = False) -> None:
        task_id = r[P.R_TASK]
        self._leases.on_node_result(task_id)
        held = self._inflight.pop(task_id, None)
        if held:
            # A worker that kept a ref from the args registered as a borrower with a
            # BORROW sent through the node before its result. A result that came
            # straight from the worker can overtake that BORROW, so the holds of a
            # direct call are dropped through the node too, behind it.
            self.release_pairs(held, via_node=direct)
        args = self._arg_segments.pop(task_id, None)
        if args is not None:
            STORE.free(args)
        if r[P.R_STATUS] == P.OK:
            contained = r[P.R_CONTAINED] or []
            for i, blob in enumerate(r[P.R_PAYLOAD]):
                pairs = [tuple(p) for p in contained[i]] if i < len(contained) and contained[i] else None
                self._resolve(object_id(task_id, i), READY, blob, pairs, owned=True)
        else:
            for i in range(P.error_returns(r)):
                self._resolve(object_id(task_id, i), ERROR, r[P.R_PAYLOAD], None)

    def _resolve(self, oid: bytes, state: int, data: Any, contained: list | None,
                 owned: bool = False) -> None:
        acts = self.table.resolve(oid, state, data, contained)
        if acts is None:  # nobody holds the object any more
            if contained:
                self.release_pairs(contained)
            if owned and type(data) is list:
                STORE.free(data)
            return
        callbacks, remote = acts
        if remote:
            for requester in remote:
                self._outbox.append((P.OBJECT, (oid, requester, _wire(state), data, None)))
        if callbacks:
            entry = self.table.entries.get(oid)
            for fn in callbacks:
                try:
                    fn(oid, state, data, entry)
                except Exception:
                    _log.exception("object callback failed")

    def _on_fetch(self, oid: bytes, requester: bytes) -> None:
        entry = self.table.add_remote_waiter(oid, requester)
        if entry is None:
            if oid not in self.table.entries:
                self._send_lost(oid, requester)
            return
        self._outbox.append((P.OBJECT, (oid, requester, _wire(entry.state), entry.data, None)))

    def _send_lost(self, oid: bytes, requester: bytes) -> None:
        err = S.dumps_system_error(ObjectLostError(oid.hex(), f"Object {oid.hex()} was freed by its owner"))
        self._outbox.append((P.OBJECT, (oid, requester, P.ERROR, err, None)))

    # -- refs --------------------------------------------------------------------
