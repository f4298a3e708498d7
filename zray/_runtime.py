"""The per-process runtime: one DEALER socket to the node broker, owned by one I/O
thread, and the futures table that the user's threads wait on.

    user threads --outbox deque + eventfd wake--> I/O thread --DEALER--> node broker
    user threads <--Waiter events / callbacks---- I/O thread <--DEALER-- node broker

User threads never touch the socket: they append to the outbox and wake the I/O
thread, which drains the outbox into batched messages (a loop of 10,000 .remote()
calls becomes a few SUBMIT messages, not 10,000). Drivers and workers use the same
runtime; workers add hooks for the tasks they are given.
"""
from __future__ import annotations

import concurrent.futures
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
from ._ids import IdSource, object_id
from ._leases import TaskLeases
from ._log import get_logger
from ._object_ref import ObjectRef
from ._object_store import STORE
from ._object_table import ERROR, PENDING, READY, ObjectTable, Waiter
from .exceptions import (
    GetTimeoutError,
    LocalRayletDiedError,
    ObjectLostError,
    ObjectStoreFullError,
    RaySystemError,
)

_log = get_logger("runtime")
# Outbox entries for the I/O thread's direct-call sockets.
_CALL, _DRESULT, _CANCEL, _RELEASE = -1, -2, -3, -4
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


class _Slot:
    """Stands in the pickled args for a top-level ObjectRef argument; the worker
    puts the resolved value in its place."""
    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self):
        return (_Slot, (self.index,))


class _PendingTask:
    """A task whose top-level ref arguments are not all resolved yet."""
    __slots__ = ("spec", "deps", "missing", "error", "returns", "actor_id", "kind")

    def __init__(self, spec: list, deps: list, returns: list, actor_id: bytes | None, kind: int):
        self.spec, self.deps, self.returns, self.actor_id, self.kind = spec, deps, returns, actor_id, kind
        self.missing = len(deps)
        self.error = None


class Runtime:
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
                    self._recv_all(sock)
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

    def _recv_all(self, sock: zmq.Socket) -> None:
        for _ in range(10_000):
            try:
                frame = sock.recv(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            try:
                mtype, fields = P.decode(frame)
                self._handle(mtype, fields)
            except Exception:
                _log.exception("bad message from the node broker")

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
            n = r[P.R_CONTAINED] or 1  # for errors, the number of returns
            for i in range(n):
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

    def object_rows(self) -> list:
        """One row per object this process owns or borrows, for zray memory."""
        rows = []
        with self.table.lock:
            items = list(self.table.entries.items())
        for oid, e in items:
            if e.actor:
                continue
            data = e.data
            stored = type(data) is list
            rows.append([oid.hex(), e.owned, e.owner.hex(), ("PENDING", "READY", "ERROR")[e.state],
                         data[2] if stored else (len(data) if data is not None else 0),
                         data[1] if stored else "", e.refs, e.borrowers,
                         len(e.contained) if e.contained else 0])
        return rows

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
    def adopt_ref(self, oid: bytes, owner: bytes) -> ObjectRef:
        """An ObjectRef for `oid` met in an unpickled value."""
        if self.table.adopt(oid, owner):
            self.send(P.BORROW, owner, [oid], 1)
        return ObjectRef(oid, owner, self)

    def _ensure_fetch(self, oid: bytes, entry: Any) -> None:
        if not entry.owned and entry.state == PENDING and not entry.fetched:
            entry.fetched = True
            self.send(P.FETCH, oid, entry.owner, self.ident)

    def new_refs(self, oids: list[bytes]) -> list[ObjectRef]:
        self.table.new_owned(oids)
        return [ObjectRef(oid, self.ident, self) for oid in oids]

    # -- put / get / wait --------------------------------------------------------
    def put(self, value: Any) -> ObjectRef:
        try:
            blob, refs = S.dumps(value)
        except ObjectStoreFullError:
            raise
        except Exception as exc:
            raise TypeError(S.describe_pickling_error("the value given to put()", value, exc)) from exc
        oid = object_id(self.ids.task_id(), 0)
        ref = self.new_refs([oid])[0]
        held = self.hold_pairs(refs) if refs else None
        self._resolve(oid, READY, blob, held)
        return ref

    def _entries(self, refs: list[ObjectRef]) -> list:
        entries = []
        for ref in refs:
            entry = self.table.entries.get(ref._id)
            if entry is None:  # cannot happen while the ref lives; be safe
                raise ObjectLostError(ref.hex())
            self._ensure_fetch(ref._id, entry)
            entries.append(entry)
        return entries

    def get(self, refs: list[ObjectRef], timeout: float | None) -> list:
        entries = self._entries(refs)
        if any(e.state != READY for e in entries):
            self._wait_for(entries, len(entries), True, timeout, refs)
            # Woken by an error while other objects are still pending: raise it now.
            for e in entries:
                if e.state == ERROR:
                    raise S.loads(e.data)
        return [self._value(e) for e in entries]

    def _value(self, entry: Any) -> Any:
        if entry.state == ERROR:
            raise S.loads(entry.data)
        return S.loads(entry.data)

    def _wait_for(self, entries: list, count: int, stop_on_error: bool, timeout: float | None,
                  refs: list) -> None:
        waiter = Waiter(count, stop_on_error)
        if not self.table.register_waiter(entries, waiter):
            return
        hook = self.block_hook
        if hook is not None:
            hook(True)
        try:
            if not waiter.event.wait(timeout):
                if stop_on_error:
                    pending = [r for r, e in zip(refs, entries, strict=False) if e.state == PENDING]
                    raise GetTimeoutError(
                        f"get() timed out after {timeout} s; {len(pending)} of {len(refs)} objects "
                        f"not ready (first: {pending[0] if pending else None})")
        finally:
            self.table.unregister_waiter(entries, waiter)
            if hook is not None:
                hook(False)

    def wait(self, refs: list[ObjectRef], num_returns: int, timeout: float | None,
             fetch_local: bool = True) -> tuple[list, list]:
        # One pass when enough are ready already (a loop of wait(num_returns=1) over a
        # long list is O(n) per call; keep that n cheap).
        lookup = self.table.entries.get
        ready, not_ready = [], []
        for ref in refs:
            e = lookup(ref._id)
            if e is None:
                raise ObjectLostError(ref.hex())
            if e.state != PENDING and len(ready) < num_returns:
                ready.append(ref)
            else:
                not_ready.append(ref)
        if len(ready) >= num_returns or timeout == 0:
            if timeout == 0:
                self._entries(not_ready)   # start fetching what is borrowed
            return ready, not_ready
        entries = self._entries(refs)
        self._wait_for(entries, num_returns, False, timeout, refs)
        ready, not_ready = [], []
        for ref, entry in zip(refs, entries, strict=False):
            if entry.state != PENDING and len(ready) < num_returns:
                ready.append(ref)
            else:
                not_ready.append(ref)
        return ready, not_ready

    def future_of(self, ref: ObjectRef) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        keep = [ref]  # the ref must live until the value is in

        def done(_oid, state, data, _entry):
            try:
                value = S.loads(data)
            except Exception as exc:
                fut.set_exception(exc)
                return
            if state == ERROR:
                fut.set_exception(value)
            else:
                fut.set_result(value)
            keep.clear()

        entry = self.table.entries.get(ref._id)
        if entry is not None:
            self._ensure_fetch(ref._id, entry)
        entry = self.table.add_callback(ref._id, done)
        if entry is not None:
            done(ref._id, entry.state, entry.data, entry)
        return fut

    # -- functions and tasks -----------------------------------------------------
    def ensure_function(self, func_id: bytes, blob: bytes) -> None:
        if func_id not in self._func_blobs:
            self._func_blobs[func_id] = blob
            self.send(P.FUNC, func_id, blob)

    def serialize_args(self, args: tuple, kwargs: dict, what: str) -> tuple[bytes, list, list]:
        """(blob, deps, held): args pickled with top-level refs replaced by slots."""
        deps = []
        if args:
            args = list(args)
            for i, a in enumerate(args):
                if type(a) is ObjectRef:
                    deps.append(a)
                    args[i] = _Slot(len(deps) - 1)
        if kwargs:
            for k, a in kwargs.items():
                if type(a) is ObjectRef:
                    if kwargs is not None:
                        kwargs = dict(kwargs)
                    deps.append(a)
                    kwargs[k] = _Slot(len(deps) - 1)
        try:
            blob, refs = S.dumps((args, kwargs))
        except ObjectStoreFullError:
            raise
        except Exception as exc:
            raise TypeError(S.describe_pickling_error(f"an argument of {what}", (args, kwargs), exc)) from exc
        # Top-level refs are held too, until the task ends: their values (maybe a
        # shared-memory segment) are read by the worker after the caller may have
        # dropped its last ref (`f.remote(put(x))`).
        if deps:
            refs = refs + [(d._id, d._owner) for d in deps]
        held = self.hold_pairs(refs) if refs else []
        return blob, deps, held

    def submit(self, spec: list, deps: list, held: list, returns: list, actor_id: bytes | None,
               kind: int = P.SUBMIT) -> None:
        """Send a task (or actor call or creation) once its ref arguments are resolved."""
        task_id = spec[P.T_ID] if kind != P.CREATE_ACTOR else spec[P.A_ID][:16]
        if held:
            self._inflight[task_id] = held
        if kind != P.CREATE_ACTOR and type(spec[P.T_ARGS]) is list:
            self._arg_segments[task_id] = spec[P.T_ARGS]   # freed with the task's result
        if not deps and (actor_id is None or not self._actor_queues.get(actor_id)):
            self._send_task(kind, spec)
            return
        pending = _PendingTask(spec, deps, returns, actor_id, kind)
        with self._submit_lock:
            if actor_id is not None:
                self._actor_queues.setdefault(actor_id, deque()).append(pending)
        slots = [None] * len(deps)
        spec_slots = P.T_SLOTS if kind != P.CREATE_ACTOR else P.A_SLOTS
        spec[spec_slots] = slots
        if not deps:
            self._dep_ready(pending)
            return
        for i, ref in enumerate(deps):
            self._watch_dep(pending, i, ref)

    def _watch_dep(self, pending: _PendingTask, i: int, ref: ObjectRef) -> None:
        def done(_oid, state, data, _entry):
            slots = pending.spec[P.T_SLOTS if pending.kind != P.CREATE_ACTOR else P.A_SLOTS]
            slots[i] = [i, data]
            if state == ERROR and pending.error is None:
                pending.error = data
            pending.missing -= 1
            if pending.missing == 0:
                self._dep_ready(pending)

        entry = self.table.entries.get(ref._id)
        if entry is not None:
            self._ensure_fetch(ref._id, entry)
        entry = self.table.add_callback(ref._id, done)
        if entry is not None:
            done(ref._id, entry.state, entry.data, entry)

    def _dep_ready(self, pending: _PendingTask) -> None:
        pending.deps = []
        if pending.actor_id is None:
            self._finish_pending(pending)
            return
        with self._submit_lock:
            queue = self._actor_queues.get(pending.actor_id)
            ready = []
            while queue and (queue[0].missing == 0 and not queue[0].deps):
                ready.append(queue.popleft())
            if queue is not None and not queue:
                del self._actor_queues[pending.actor_id]
            for p in ready:
                self._finish_pending(p)

    def _finish_pending(self, pending: _PendingTask) -> None:
        if pending.error is not None:
            held = self._inflight.pop(pending.spec[P.T_ID], None) if pending.kind != P.CREATE_ACTOR else None
            if pending.kind != P.CREATE_ACTOR:
                args = self._arg_segments.pop(pending.spec[P.T_ID], None)
                if args is not None:
                    STORE.free(args)
            if held:
                self.release_pairs(held)
            for oid in pending.returns:
                self._resolve(oid, ERROR, pending.error, None)
            if pending.kind != P.CREATE_ACTOR:
                return
        self._send_task(pending.kind, pending.spec)

    def _send_task(self, kind: int, spec: list) -> None:
        if kind == P.CREATE_ACTOR:
            self.send(P.CREATE_ACTOR, spec)
        elif spec[P.T_ACTOR] is not None and CONFIG.direct_actor_calls:
            self.send(_CALL, spec)
        else:
            self.send(P.SUBMIT, [spec])

    def cancel(self, task_id: bytes, force: bool) -> None:
        """Cancel a task (through the node) or an actor call (through its actor)."""
        self.send(_CANCEL, task_id, force)

    def send_direct_result(self, owner: bytes, result: list) -> None:
        """Send the result of a call that came straight from its caller back that way."""
        self.send(_DRESULT, owner, result)

    def fail_returns(self, oids: list[bytes], exc: BaseException) -> None:
        blob = S.dumps_system_error(exc)
        for oid in oids:
            self._resolve(oid, ERROR, blob, None)

    # -- the head broker, through the node broker --------------------------------
    def head_call(self, op: str, args: list, timeout: float | None = 10.0) -> Any:
        seq = next(self._head_seq)
        call = [threading.Event(), None, None]
        self._head_calls[seq] = call
        self.send(P.HEAD_CALL, self.ident, seq, op, args)
        if not call[0].wait(timeout):
            self._head_calls.pop(seq, None)
            raise GetTimeoutError(f"the head broker did not answer {op!r} within {timeout} s")
        if not call[1]:
            if isinstance(call[2], BaseException):
                raise call[2]
            raise ValueError(call[2])
        return call[2]
