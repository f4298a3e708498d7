"""A worker that hosts one actor: creates the instance, then runs its calls in one of
three ways, as its options say:

    sync (max_concurrency=1): on the main thread, which also serves the callers'
        socket itself (no hand-off to the I/O thread per call; replies batched while
        more calls wait)
    threaded (max_concurrency>1): a thread pool fed by the I/O thread's endpoint
    async (async def methods): coroutines on an event loop on the main thread
"""
from __future__ import annotations

import asyncio
import inspect
import os
import queue
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import zmq

from .. import _protocol as P
from .. import _runtime_env
from .. import _serialization as S
from .._concurrency import HostGroups
from .._config import CONFIG
from .._context import ActorExit, TaskContext, set_context
from ..exceptions import ActorDiedError, TaskCancelledError
from .endpoint import Endpoint, is_direct
from .events import EVENTS
from .execute import STOP, Executor, adopt_job, flush_output
from .runtime import Runtime
from .submit import fill_slots

READY, INIT_FAILED, EXITED = 1, 0, 2   # ACTOR_READY states


def method_of(instance: Any, name: str) -> Any:
    """The bound method `name` of the actor, or one of the methods every actor has (as
    in Ray): __ray_ready__() returns True once it exists, __ray_terminate__() ends it
    after the calls queued before (as exit_actor() does)."""
    if "@" in name:   # "method@group": a call in a concurrency group (zray/_concurrency.py)
        name = name.partition("@")[0]
    try:
        return getattr(instance, name)
    except AttributeError:
        if name == "__ray_ready__":
            return _ready
        if name == "__ray_terminate__":
            return _terminate
        raise


def _ready() -> bool:
    return True


def _terminate() -> None:
    raise ActorExit()


def log_prefix(instance: Any, class_name: str) -> str:
    """What prefixes the actor's output lines: repr(instance) if its class defines
    __repr__ (as Ray), else the class name."""
    if type(instance).__repr__ is object.__repr__:
        return class_name
    try:
        return repr(instance)
    except Exception:   # a __repr__ that fails must not fail the actor
        return class_name


class ActorHost:
    spec: list   # the actor's creation spec: set by _create(), before any call runs
    prefix: str  # what its output lines are prefixed with: set by _create()

    def __init__(self, rt: Runtime, address: str, gpus: list) -> None:
        self.rt = rt
        self.address = address          # where callers reach it directly
        self.gpus = gpus
        self.ex = Executor(rt, self._emit, self._emit_item)
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        # The I/O thread wakes a sync actor's main thread through this eventfd for
        # what comes through the node (the main thread polls it with its socket).
        self.inbox_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.instance: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.endpoint: Endpoint | None = None   # a sync actor's own callers' socket
        self.calls: deque = deque()
        self.released = False
        self.async_tasks: dict[bytes, asyncio.Task] = {}
        self.groups: HostGroups | None = None   # concurrency groups, if its class has them
        self.group_pools: dict[str, ThreadPoolExecutor] = {}
        self.group_sems: dict[str, asyncio.Semaphore] = {}

    # -- called in the I/O thread --------------------------------------------------
    def on_create_actor(self, spec: list) -> None:
        self._deliver(spec)

    def on_calls(self, specs: list, funcs: dict) -> None:
        if funcs:
            self.ex.blobs.update(funcs)
        for spec in specs:
            self._deliver(spec)

    def on_cancel(self, task_id: bytes) -> None:
        # A running call of a sync actor is not interrupted (as in Ray): only its
        # queued calls are cancelled. An async call is cancelled as a coroutine.
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._cancel_async, task_id)
        else:
            self.ex.cancelled.add(task_id)

    def on_shutdown(self) -> None:
        self._deliver(STOP)

    def _deliver(self, item: Any) -> None:
        loop = self.loop
        if loop is not None:
            loop.call_soon_threadsafe(self._start_async_call, loop, item)
            return
        self.inbox.put(item)
        try:
            os.eventfd_write(self.inbox_fd, 1)
        except OSError:
            pass

    # -- main thread ---------------------------------------------------------------
    def run(self) -> None:
        while True:   # the creation comes first; a failed one waits for the node's stop
            item = self.inbox.get()
            if item is STOP:
                return
            if len(item) == P.ACTOR_FIELDS and self._create(item):
                break
        if self.loop is not None:
            self._run_async(self.loop)
        elif self.pool is not None:
            self._run_pool(self.pool)
        elif CONFIG.sync_actor_own_socket:
            self._serve_sync()
        else:
            self._run_inbox()

    def _create(self, spec: list) -> bool:
        self.spec = spec
        name = spec[P.A_CLASS_NAME]
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, self.gpus))
        env = adopt_job(self.rt, spec[P.A_JOB])
        ctx = TaskContext(spec[P.A_ID][:16], f"{name}.__init__", spec[P.A_ID], spec[P.A_RES],
                          self.gpus, name)
        set_context(ctx)
        started = time.time()
        try:
            if env is not None:   # for the actor's life
                _runtime_env.apply(self.rt, env)
            cls = self.ex.function(spec[P.A_CLASS])
            args, kwargs = fill_slots(spec[P.A_ARGS], spec[P.A_SLOTS])
            self.groups = HostGroups.take(kwargs)
            self.instance = cls(*args, **kwargs)
        except BaseException as exc:
            tb = S.remote_traceback(exc)
            err = ActorDiedError(f"The actor {name} died because of an error raised in its "
                                 f"creation task {name}.__init__() (pid={os.getpid()}):\n{tb}",
                                 spec[P.A_ID].hex())
            print(tb, file=sys.stderr, end="")
            EVENTS.record(spec[P.A_ID][:16], f"{name}.__init__", spec[P.A_ID], started, tb)
            self.rt.send(P.ACTOR_READY, spec[P.A_ID], INIT_FAILED, S.dumps_system_error(err))
            set_context(None)
            return False
        EVENTS.record(spec[P.A_ID][:16], f"{name}.__init__", spec[P.A_ID], started)
        ctx.task_id = None
        ctx.prefix_name = self.prefix = log_prefix(self.instance, name)
        concurrency = spec[P.A_MAX_CONCURRENCY]
        if spec[P.A_ASYNC]:
            self.loop = asyncio.new_event_loop()
        elif concurrency > 1 or self.groups is not None:   # (groups: threaded, as Ray)
            self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="zray-actor")
            self.group_pools = self.groups.pools() if self.groups is not None else {}
        if self.loop is not None or self.pool is not None or not CONFIG.sync_actor_own_socket:
            self.rt.open_endpoint(self.address)
            self.rt.send(P.ACTOR_READY, spec[P.A_ID], READY, self.address)
        return True   # else _serve_sync binds the callers' socket, then says ready

    def _call(self, spec: list) -> bool:
        """Run one call; True if the actor is to exit (exit_actor())."""
        set_context(TaskContext(spec[P.T_ID], spec[P.T_NAME], self.spec[P.A_ID], self.spec[P.A_RES],
                                self.gpus, self.prefix, spec))
        try:
            self.ex.run(spec, lambda: method_of(self.instance, spec[P.T_METHOD]))
            return False
        except ActorExit:
            self._exit(spec)
            return True
        finally:
            flush_output()
            set_context(None)

    def _exit(self, spec: list) -> None:
        aid = self.spec[P.A_ID]
        err = ActorDiedError(f"The actor {self.spec[P.A_CLASS_NAME]} exited with "
                             "exit_actor(); the call cannot return.", aid.hex())
        self.ex.fail(spec, err)
        self.rt.send(P.ACTOR_READY, aid, EXITED, S.dumps_system_error(err))

    def _emit(self, spec: list, result: list) -> None:
        EVENTS.ended(spec, result)
        flush_output()  # the call's last output line goes out before its result
        if not is_direct(spec):
            self.rt.send(P.RESULTS, [result])
        elif self.endpoint is not None:   # answered from this thread, in batches
            self.endpoint.reply(spec[P.T_ASSIGNED], result)
        else:
            self.rt.reply(spec[P.T_ASSIGNED], result)

    def _emit_item(self, spec: list, row: list) -> None:
        """An item a generator call yielded: on the way its result will take."""
        flush_output()
        if not is_direct(spec):
            self.rt.send(P.ITEMS, [row])
        elif self.endpoint is not None:   # sent from this thread, now
            self.rt.flush_sync()   # (the borrows it registered go first)
            self.endpoint.send_items(spec[P.T_ASSIGNED], [row])
        else:
            self.rt.reply_item(spec[P.T_ASSIGNED], row)

    def _run_inbox(self) -> None:
        while True:
            item = self.inbox.get()
            if item is STOP or self._call(item):
                return

    def _run_pool(self, pool: ThreadPoolExecutor) -> None:
        exited: list = []   # a call ran exit_actor(): the actor ends after the calls running
        while True:
            item = self.inbox.get()
            if item is STOP:
                break
            group = HostGroups.of(item[P.T_METHOD]) if self.group_pools else None
            self.group_pools.get(group or "", pool).submit(self._pooled_call, item, exited)
        for each in (*self.group_pools.values(), pool):
            each.shutdown(wait=True, cancel_futures=bool(exited))

    def _pooled_call(self, spec: list, exited: list) -> None:
        if not exited and self._call(spec):   # (it was ignored: the actor lived on)
            exited.append(True)
            self._deliver(STOP)

    # -- a sync actor serves its callers' socket itself ----------------------------
    def _serve_sync(self) -> None:
        """Calls from the callers' socket (bound here) and from the node (the inbox), run
        in arrival order on this thread, results sent from here."""
        zctx = zmq.Context(io_threads=1)
        endpoint = self.endpoint = Endpoint(zctx, self.address,
                                            lambda specs, funcs: self.calls.extend(specs),
                                            self.ex.cancelled.add, self._on_release)
        poller = zmq.Poller()
        poller.register(endpoint.sock, zmq.POLLIN)
        poller.register(self.inbox_fd, zmq.POLLIN)
        self.rt.send(P.ACTOR_READY, self.spec[P.A_ID], READY, self.address)
        try:
            self._sync_loop(poller, endpoint)
        finally:
            endpoint.close()
            self.endpoint = None
            zctx.term()

    def _sync_loop(self, poller: zmq.Poller, endpoint: Endpoint) -> None:
        stop = False
        while True:
            stop = self._take_inbox() or stop
            endpoint.read()
            if self.calls:
                exiting = self._call(self.calls.popleft())
                if exiting or not self.calls or endpoint.queued >= CONFIG.max_batch:
                    self._send_replies(endpoint)
                if exiting:
                    return
                continue
            if stop or self.released:
                return
            if self.inbox_fd in dict(poller.poll()):
                try:
                    os.eventfd_read(self.inbox_fd)
                except BlockingIOError:
                    pass

    def _take_inbox(self) -> bool:
        """Move the calls that came through the node into the queue; True at STOP."""
        stop = False
        while not self.inbox.empty():
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return stop
            if item is STOP:
                stop = True
            else:
                self.calls.append(item)
        return stop

    def _on_release(self) -> None:
        self.released = True   # the owner's last handle is gone, behind its calls

    def _send_replies(self, endpoint: Endpoint) -> None:
        if endpoint.queued:
            # Borrows the calls registered (and their output) go out through the I/O
            # thread: they must leave before the results do.
            self.rt.flush_sync()
            endpoint.flush()

    # -- async actors --------------------------------------------------------------
    def _run_async(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        self.semaphore = asyncio.Semaphore(self.spec[P.A_MAX_CONCURRENCY])
        self.group_sems = self.groups.semaphores() if self.groups is not None else {}
        self.stop_future = loop.create_future()
        # Calls that arrived before the loop existed are in the inbox.
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            loop.call_soon(self._start_async_call, loop, item)
        loop.run_until_complete(self.stop_future)
        for t in list(self.async_tasks.values()):
            t.cancel()
        loop.close()

    def _start_async_call(self, loop: asyncio.AbstractEventLoop, item: Any) -> None:
        """Runs on `loop` (self.loop)."""
        if item is STOP:  # end after the calls already here, as a sync actor does
            loop.create_task(self._stop_after(list(self.async_tasks.values())))
            return
        self.async_tasks[item[P.T_ID]] = loop.create_task(self._async_call(item))

    async def _stop_after(self, tasks: list) -> None:
        if tasks:
            await asyncio.wait(tasks)
        if not self.stop_future.done():
            self.stop_future.set_result(None)

    def _cancel_async(self, task_id: bytes) -> None:
        task = self.async_tasks.get(task_id)
        if task is not None:
            task.cancel()

    async def _async_call(self, spec: list) -> None:
        name = spec[P.T_NAME]
        try:
            group = HostGroups.of(spec[P.T_METHOD]) if self.group_sems else None
            async with self.group_sems.get(group or "", self.semaphore):
                EVENTS.started(spec)
                set_context(TaskContext(spec[P.T_ID], name, self.spec[P.A_ID], self.spec[P.A_RES],
                                        self.gpus, self.prefix, spec))
                args, kwargs = fill_slots(spec[P.T_ARGS], spec[P.T_SLOTS])
                result = method_of(self.instance, spec[P.T_METHOD])(*args, **kwargs)
                if spec[P.T_NRET] < 0:   # a generator: its items go out as they come
                    await self.ex.producers.run_async(spec, result)
                elif inspect.isawaitable(result):
                    result = await result
            self._emit(spec, self.ex.pack(spec, result))
        except asyncio.CancelledError:
            self.ex.fail(spec, TaskCancelledError(spec[P.T_ID].hex()))
        except ActorExit:
            self._exit(spec)
            if not self.stop_future.done():
                self.stop_future.set_result(None)
        except Exception as exc:
            self._emit(spec, self.ex.error_row(spec, exc))
        finally:
            self.async_tasks.pop(spec[P.T_ID], None)
            flush_output()
