"""Local mode: zray.init(local_mode=True) runs every task and actor call in the driver
process, at .remote(), one at a time, so that pdb, breakpoint() and print work in them.

    f.remote(x) -> args pickled, refs resolved (as always) -> f runs here, now -> its
    result (or its error, raised at get() as RayTaskError) is the ref's value already

The cluster is the usual one (put, get, wait, named actors, nodes() work as always);
only the submitter is replaced, so the normal path carries no check for this mode.
Arguments and results are pickled as in a worker: a task sees copies, as it would
elsewhere. Actor calls run in the order they are made. Not supported here: retries
after a crash (nothing crashes apart), actor restarts, cancelling (a task has ended
before cancel() can name it), get_runtime_context().current_actor and is_canceled().
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import threading
import traceback
from collections import deque
from typing import Any

from . import _context, _runtime_env
from . import _protocol as P
from . import _serialization as S
from ._concurrency import KWARG
from ._context import ActorExit, TaskContext, set_context
from ._runtime.actor_host import log_prefix, method_of
from ._runtime.execute import Executor
from ._runtime.submit import Submitter, fill_slots
from ._runtime.transport import Op
from .exceptions import ActorDiedError

__all__ = ["enable"]


class _Actor:
    __slots__ = ("name", "res", "env", "instance", "prefix", "error", "loop")

    def __init__(self, name: str, res: dict, env: dict | None) -> None:
        self.name, self.res, self.env = name, res, env
        self.instance: Any = None
        self.prefix = name
        self.error: bytes | None = None   # set once it is dead: what its calls fail with
        self.loop: asyncio.AbstractEventLoop | None = None

    def end(self, error: bytes | None) -> None:
        """Dead (its calls fail with `error`), or gone (None): its instance let go."""
        if error is not None and self.error is None:
            self.error = error
        self.instance = None
        if self.loop is not None:
            self.loop.close()
            self.loop = None


class LocalSubmitter(Submitter):
    """Runs what the normal submitter would send, here and now."""

    def __init__(self, rt: Any) -> None:
        super().__init__(rt.owner, rt.t)
        self.rt = rt
        self.functions: dict[bytes, Any] = {}    # func_id -> the function itself
        self.actors: dict[bytes, _Actor] = {}
        self.released: deque = deque()           # actors whose last handle is gone
        self.ex = Executor(rt, lambda spec, row: rt.owner.on_result(row),
                           lambda spec, row: rt.owner.streams.on_items([row]))
        self.running = threading.RLock()         # one at a time (nested calls run inline)

    # -- what the normal submitter tells the node: kept here ---------------------------
    def ensure_function(self, func_id: bytes, blob: bytes) -> None:
        self.blobs[func_id] = blob

    def use_function(self, func_id: bytes, fn: Any) -> None:
        self.functions[func_id] = fn._function

    def tick(self, now: float) -> float | None:
        return None

    def forget_all(self) -> None:
        """(shutdown) The actors end."""
        with self.running:
            for actor in self.actors.values():
                actor.end(None)
            self.actors.clear()

    # -- running ----------------------------------------------------------------------
    def _send(self, spec: list, creation: bool) -> None:
        with self.running:
            while self.released:
                gone = self.actors.pop(self.released.popleft(), None)
                if gone is not None:
                    gone.end(None)
            outer, outer_actor = _context._var.get(), _context._actor[0]
            try:
                if creation:
                    self._create(spec)
                elif spec[P.T_ACTOR] is not None:
                    self._call(spec)
                else:
                    name = spec[P.T_NAME]
                    fn = self.functions[spec[P.T_FUNC]]
                    set_context(TaskContext(spec[P.T_ID], name, None, spec[P.T_RES], [], name, spec))
                    self._run(_env(spec[P.T_JOB]), spec, lambda: fn)
            finally:   # (set_context keeps an actor's context as the process's: undone)
                set_context(outer)
                _context._actor[0] = outer_actor

    def _create(self, spec: list) -> None:
        name = spec[P.A_CLASS_NAME]
        actor = self.actors[spec[P.A_ID]] = _Actor(name, spec[P.A_RES], _env(spec[P.A_JOB]))
        set_context(TaskContext(spec[P.A_ID][:16], f"{name}.__init__", spec[P.A_ID],
                                spec[P.A_RES], [], name, None))
        undo = None
        try:
            if actor.env is not None:
                undo = _runtime_env.apply(self.rt, actor.env)
            cls = S.loads(self.blobs[spec[P.A_CLASS]])
            args, kwargs = fill_slots(spec[P.A_ARGS], spec[P.A_SLOTS])
            kwargs.pop(KWARG, None)   # (concurrency groups: one call at a time here anyway)
            actor.instance = cls(*args, **kwargs)
            actor.prefix = log_prefix(actor.instance, name)
        except Exception as exc:   # (not KeyboardInterrupt: in a debugger, it stops)
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            actor.error = S.dumps_system_error(ActorDiedError(
                f"The actor {name} died because of an error raised in its creation task "
                f"{name}.__init__() (pid={os.getpid()}, local mode):\n{tb}", spec[P.A_ID].hex()))
        finally:
            if undo is not None:
                undo()
            self.owner.untrack(spec[P.A_ID][:16])

    def _call(self, spec: list) -> None:
        aid = spec[P.T_ACTOR]
        actor = self.actors.get(aid)
        if actor is None or actor.error is not None:
            error = actor.error if actor is not None and actor.error is not None else \
                S.dumps_system_error(ActorDiedError(f"The actor {aid.hex()} is gone: all its "
                                                    "handles went out of scope.", aid.hex()))
            self.ex.emit(spec, P.error_result(spec, error))
            return
        set_context(TaskContext(spec[P.T_ID], spec[P.T_NAME], aid, actor.res, [], actor.prefix, spec))
        try:
            self._run(actor.env, spec,
                      lambda: _awaited(actor, method_of(actor.instance, spec[P.T_METHOD])))
        except ActorExit:
            err = ActorDiedError(f"The actor {actor.name} exited with exit_actor(); the call "
                                 "cannot return.", aid.hex())
            actor.end(S.dumps_system_error(err))
            self.ex.fail(spec, err)

    def _run(self, env: dict | None, spec: list, target: Any) -> None:
        """ex.run, with the runtime_env set around it (in this process: undone after)."""
        if env is None:
            self.ex.run(spec, target)
        else:
            _runtime_env.run_in(env, self.rt, self.ex, spec, target)

    def kill(self, actor_id: bytes, no_restart: bool) -> None:
        """zray.kill(): the actor is dead at once (local mode restarts nothing)."""
        with self.running:
            actor = self.actors.get(actor_id)
            if actor is not None and actor.error is None:
                actor.end(S.dumps_system_error(ActorDiedError(
                    f"The actor {actor.name} was killed with zray.kill().", actor_id.hex())))


def _env(job: list | None) -> dict | None:
    return job[2] if job is not None and len(job) > 2 else None


def _awaited(actor: _Actor, method: Any) -> Any:
    """`method`, its coroutine (an async actor's) run to its end on the actor's loop."""
    if not inspect.iscoroutinefunction(method):
        return method

    def run(*args: Any, **kwargs: Any) -> Any:
        if actor.loop is None:
            actor.loop = asyncio.new_event_loop()
        coro = method(*args, **kwargs)
        try:
            asyncio.get_running_loop()
        except RuntimeError:   # none running in this thread: run it here
            return actor.loop.run_until_complete(coro)
        # Called from a coroutine of the driver: its loop cannot be re-entered.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(actor.loop.run_until_complete, coro).result()
    return run


def enable(rt: Any) -> None:
    """Make `rt` (the driver's runtime, before it is in use) run its work itself."""
    local = LocalSubmitter(rt)
    rt.submitter = local
    rt.kill_actor = local.kill
    rt.cancel = lambda task_id, force: None

    def release(actor_id: bytes) -> None:   # (I/O thread) dropped at the next call
        local.released.append(actor_id)
    rt.t.ops[Op.RELEASE] = release
