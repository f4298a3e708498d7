"""The user-facing half of the runtime: refs, put/get/wait, futures, and submitting
tasks once their ref arguments are resolved (the owner resolves dependencies).

A mixin of Runtime (zray/_runtime.py), which owns the socket, the I/O thread and
the object table these methods read; everything here runs on the caller's thread
and reaches the I/O thread only through the outbox.
"""
from __future__ import annotations

import concurrent.futures
import threading
from collections import deque
from typing import Any

from . import _protocol as P
from . import _serialization as S
from ._config import CONFIG
from ._ids import object_id
from ._object_ref import ObjectRef
from ._object_store import STORE
from ._object_table import ERROR, PENDING, READY, Waiter
from .exceptions import (
    GetTimeoutError,
    ObjectLostError,
    ObjectStoreFullError,
    RaySystemError,
)

# Outbox entries for the I/O thread's direct-call sockets.
_CALL, _DRESULT, _CANCEL, _RELEASE, _OPEN, _FLUSHED, _KILL = -1, -2, -3, -4, -5, -6, -7


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


class Futures:
    """Runtime's methods for the user's threads (see the module docstring)."""

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

        self._when_resolved(ref, done)
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

        self._when_resolved(ref, done)

    def _when_resolved(self, ref: ObjectRef, done: Any) -> None:
        """Call done(oid, state, data, entry) once `ref` has a value or an error:
        now if it has, else on the I/O thread when it arrives (fetched if borrowed)."""
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

    def kill_actor(self, actor_id: bytes, no_restart: bool) -> None:
        """Kill an actor; this process's later calls to it fail at once (or wait for
        its restart), not only once the node has seen it die."""
        self.send(_KILL, actor_id, no_restart)

    def flush_sync(self, timeout: float = 10.0) -> None:
        """Return once everything queued so far has been sent (no wait if nothing is)."""
        if not self._outbox:
            return
        sent = threading.Event()
        self.send(_FLUSHED, sent)
        sent.wait(timeout)

    def open_endpoint(self, address: str, timeout: float = 10.0) -> None:
        """Have the I/O thread bind and serve an actor's callers' socket."""
        bound = threading.Event()
        self.send(_OPEN, address, bound)
        if not bound.wait(timeout):
            raise RaySystemError(f"the I/O thread did not bind {address} in {timeout} s")

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
