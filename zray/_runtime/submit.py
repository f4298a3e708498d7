"""Submitting work: arguments pickled (top-level refs replaced by slots), the owner
resolves those refs first, then the task, actor call or actor creation goes out.

    f.remote(x, ref) -> args blob with slot 0 for ref -> ref resolves -> slot filled
                     -> Op.TASK (lanes pick lease or node) / Op.CALL / CREATE_ACTOR

Calls to one actor leave in the order they were made, also when a later call's
arguments resolve before an earlier one's.
"""
from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from typing import Any

from .. import _protocol as P
from .. import _serialization as S
from .._config import CONFIG
from .._context import current_context
from .._object_ref import ObjectRef
from ..exceptions import ObjectStoreFullError
from .owner import Owner
from .table import ERROR
from .transport import Transport


class _Slot:
    """Stands in the pickled args for a top-level ObjectRef argument; the worker
    puts the resolved value in its place."""
    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self):
        return (_Slot, (self.index,))


def fill_slots(blob: bytes | list, slots: list | None) -> tuple[list, dict]:
    """The arguments pickled in `blob`, each slot replaced by its resolved value."""
    args, kwargs = S.loads(blob)
    if slots:
        values = [S.loads(slot[1]) for slot in slots]
        for slot, value in zip(slots, values, strict=True):
            if len(slot) > 2:   # [i, error, True]: an actor's argument failed (_watch_dep)
                raise value
        args = [values[a.index] if type(a) is _Slot else a for a in args]
        kwargs = {k: values[v.index] if type(v) is _Slot else v for k, v in kwargs.items()}
    return args, kwargs


class _PendingTask:
    """A task whose top-level ref arguments are not all resolved yet."""
    __slots__ = ("spec", "deps", "missing", "error", "returns", "actor_id", "creation")

    def __init__(self, spec: list, deps: list, returns: list, actor_id: bytes | None,
                 creation: bool) -> None:
        self.spec, self.deps, self.returns = spec, deps, returns
        self.actor_id, self.creation = actor_id, creation
        self.missing = len(deps)
        self.error = None

    def slots(self) -> list:
        return self.spec[P.A_SLOTS if self.creation else P.T_SLOTS]


class Submitter:
    def __init__(self, owner: Owner, transport: Transport) -> None:
        self.owner = owner
        self.t = transport
        self.blobs: dict[bytes, bytes] = {}   # the functions this process registered
        self._lock = threading.Lock()
        self._actor_queues: dict[bytes, deque] = {}
        # Remote functions: how many RemoteFunction objects use each here, those gone
        # (appended by their finalizers: no lock in a finalizer), and those no object
        # uses any more -> when the node is told (FUNC_FREE). One defined again meanwhile
        # (a loop that makes the same remote function each turn) is not sent again.
        self._users: dict[bytes, int] = {}
        self.gone: deque = deque()
        self._dying: dict[bytes, float] = {}
        # In a task worker: the tasks and calls each running task made (its children),
        # which a cancel of it cancels too (Ray's cancel(recursive=True)). None elsewhere.
        self.children: dict[bytes, list] | None = None

    def ensure_function(self, func_id: bytes, blob: bytes) -> None:
        if func_id not in self.blobs:
            with self._lock:   # (one forgotten may be on its way out: tick)
                if func_id in self.blobs:
                    return
                self.blobs[func_id] = blob
            self.t.send(P.FUNC, func_id, blob)

    def use_function(self, func_id: bytes, fn: Any) -> None:
        """`fn` (a RemoteFunction) submits tasks of `func_id` here: once the last such
        object is garbage (its tasks are done: each keeps it alive), the node is told."""
        with self._lock:
            self._users[func_id] = self._users.get(func_id, 0) + 1
            self._dying.pop(func_id, None)
        weakref.finalize(fn, _function_gone, self.gone, self.t, func_id).atexit = False

    def tick(self, now: float) -> float | None:
        """(I/O thread) Tell the node of the functions unused for function_free_delay_s;
        the seconds until the next one is due."""
        if not self.gone and not self._dying:
            return None
        with self._lock:
            while self.gone:
                fid = self.gone.popleft()
                n = self._users.get(fid, 0) - 1
                if n > 0:
                    self._users[fid] = n
                elif fid in self._users:
                    del self._users[fid]
                    self._dying[fid] = now + CONFIG.function_free_delay_s
            freed = [fid for fid, due in self._dying.items() if due <= now]
            for fid in freed:
                del self._dying[fid]
                self.blobs.pop(fid, None)
            nxt = min(self._dying.values(), default=None)
        if freed:
            self.t.node.send(P.encode(P.FUNC_FREE, freed))
        return None if nxt is None else max(0.0, nxt - now)

    def forget_all(self) -> None:
        """This process leaves: the node may drop every remote function it registered
        (not actor classes: a detached actor may need its class to restart)."""
        with self._lock:
            gone = [fid for fid in (*self._users, *self._dying) if fid in self.blobs]
            self._users.clear()
            self._dying.clear()
        if gone:
            self.t.send(P.FUNC_FREE, gone)

    def serialize_args(self, args: tuple | list, kwargs: dict, what: str) -> tuple[Any, list, list]:
        """(blob, deps, held): args pickled with top-level refs replaced by slots."""
        deps = []
        if args:
            args = list(args)
            for i, a in enumerate(args):
                if type(a) is ObjectRef:
                    deps.append(a)
                    args[i] = _Slot(len(deps) - 1)
        if kwargs and any(type(a) is ObjectRef for a in kwargs.values()):
            kwargs = dict(kwargs)
            for k, a in kwargs.items():
                if type(a) is ObjectRef:
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
        held = self.owner.hold_pairs(refs) if refs else []
        return blob, deps, held

    def submit(self, spec: list, deps: list, held: list, returns: list) -> None:
        """Send a task or actor call once its ref arguments are resolved."""
        actor_id = spec[P.T_ACTOR]
        self.owner.track(spec[P.T_ID], held, spec[P.T_ARGS])
        if self.children is not None:
            ctx = current_context()
            if ctx is not None and ctx.task_id is not None:
                self.children.setdefault(ctx.task_id, []).append(spec[P.T_ID])
        if not deps and (actor_id is None or not self._actor_queues.get(actor_id)):
            self._send(spec, False)
            return
        self._wait_for_deps(_PendingTask(spec, deps, returns, actor_id, False))

    def create_actor(self, spec: list, deps: list, held: list) -> None:
        """Send an actor's creation once its constructor's ref arguments are resolved;
        its calls queue behind it."""
        actor_id = spec[P.A_ID]
        self.owner.track(actor_id[:16], held, None)
        if not deps:
            self._send(spec, True)
            return
        self._wait_for_deps(_PendingTask(spec, deps, [], actor_id, True))

    def _wait_for_deps(self, pending: _PendingTask) -> None:
        with self._lock:
            if pending.actor_id is not None:
                self._actor_queues.setdefault(pending.actor_id, deque()).append(pending)
        pending.spec[P.A_SLOTS if pending.creation else P.T_SLOTS] = [None] * len(pending.deps)
        if not pending.deps:
            self._dep_ready(pending)
            return
        for i, ref in enumerate(pending.deps):
            self._watch_dep(pending, i, ref)

    def _watch_dep(self, pending: _PendingTask, i: int, ref: ObjectRef) -> None:
        def done(_oid, state, data, _entry):
            pending.slots()[i] = [i, data]
            if state == ERROR and pending.error is None:
                pending.error = data
            if state == ERROR and pending.creation:
                # Its __init__ raises the error, so the actor dies of it, as in Ray.
                name = f"{pending.spec[P.A_CLASS_NAME]}.__init__"
                pending.slots()[i] = [i, S.dumps_arg_error(data, name, os.getpid()), True]
            pending.missing -= 1
            if pending.missing == 0:
                self._dep_ready(pending)

        self.owner.when_resolved(ref, done)

    def _dep_ready(self, pending: _PendingTask) -> None:
        pending.deps = []
        if pending.actor_id is None:
            self._finish(pending)
            return
        with self._lock:
            queue = self._actor_queues.get(pending.actor_id)
            ready = []
            while queue and (queue[0].missing == 0 and not queue[0].deps):
                ready.append(queue.popleft())
            if queue is not None and not queue:
                del self._actor_queues[pending.actor_id]
            for p in ready:
                self._finish(p)

    def _finish(self, pending: _PendingTask) -> None:
        if pending.error is not None and not pending.creation:
            # An argument failed: so do the task's returns, and it never runs. As in
            # Ray, the error names this task and says why, its cause the root cause.
            self.owner.untrack(pending.spec[P.T_ID])
            blob = S.dumps_arg_error(pending.error, pending.spec[P.T_NAME], os.getpid())
            for oid in pending.returns:
                self.owner.resolve(oid, ERROR, blob, None)
            return
        self._send(pending.spec, pending.creation)

    def _send(self, spec: list, creation: bool) -> None:
        if creation:
            self.t.send(P.CREATE_ACTOR, spec)
        elif spec[P.T_ACTOR] is not None and CONFIG.direct_actor_calls:
            self.t.post_call(spec)
        elif spec[P.T_ACTOR] is not None:
            self.t.send(P.SUBMIT, [spec])
        else:
            self.t.post_task(spec)



def _function_gone(gone: deque, t: Transport, func_id: bytes) -> None:
    """A RemoteFunction's finalizer: no lock (it may run inside any code, in any thread)."""
    gone.append(func_id)
    t.nudge()
