"""A worker process: runs tasks one at a time, or hosts one actor (sync, threaded
or async), on the main thread, fed by the runtime's I/O thread.

Started by the node's zygote (a fork), so it shares the node's imports. It exits
when the node broker tells it to, or when the node's life pipe closes.
"""
from __future__ import annotations

import asyncio
import inspect
import os
import queue
import signal
import sys
import threading
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import zmq

from . import _protocol as P
from . import _runtime
from . import _serialization as S
from ._config import CONFIG
from ._context import TaskContext, current_context, set_context
from ._direct import DIRECT
from ._futures import _Slot
from ._log import get_logger
from .exceptions import ActorDiedError, ObjectStoreFullError, TaskCancelledError

_STOP = object()
_log = get_logger("worker")


class _ActorExit(BaseException):
    """Raised by exit_actor(); ends the actor after the current call."""


class _Output:
    """sys.stdout/sys.stderr of a worker: lines go to the driver, prefixed with the
    task or actor and pid, as Ray prints them."""

    def __init__(self, rt: _runtime.Runtime, is_err: bool) -> None:
        self._rt, self._is_err = rt, is_err
        self._buf = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._buf += text
            if "\n" in self._buf:
                lines, self._buf = self._buf.rsplit("\n", 1)
                self._emit(lines)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._buf:
                self._emit(self._buf)
                self._buf = ""

    def _emit(self, text: str) -> None:
        ctx = current_context()
        who = ctx.prefix_name if ctx is not None else "worker"
        self._rt.send(P.LOG, f"({who} pid={os.getpid()})", text, self._is_err)

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError("a zray worker's output is forwarded, it has no file descriptor")


class Worker:
    def __init__(self, rt: _runtime.Runtime, worker_id: bytes, actor_id: bytes | None, gpus: list) -> None:
        self.rt = rt
        self.worker_id = worker_id
        self.actor_id = actor_id
        self.actor_gpus = gpus
        self.blobs: dict[bytes, bytes] = {}
        self.funcs: dict[bytes, Any] = {}
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.current_task: bytes | None = None
        self.cancelled: set[bytes] = set()
        self.instance: Any = None
        self.actor_spec: list | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.async_tasks: dict[bytes, asyncio.Task] = {}
        self.stopping = False
        # While the running task blocks in get(), tasks queued behind it go back to
        # the node (they may be what it waits for); guarded with the inbox.
        self.blocked = False
        self.inbox_lock = threading.Lock()
        # A sync actor serves its callers' socket on its main thread, the thread that
        # runs the calls: no hand-off to and from the I/O thread per call. The I/O
        # thread wakes it through this eventfd for what comes through the node.
        self.direct_address = ""
        self.endpoint: Any = None
        self.replies: dict[bytes, list] = {}
        self.inbox_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) if actor_id else None

    # -- called in the I/O thread --------------------------------------------------
    def on_tasks(self, specs: list, funcs: dict) -> None:
        if funcs:
            self.blobs.update(funcs)
        if self.actor_id is None:
            with self.inbox_lock:
                for spec in specs:
                    if self.blocked and spec[P.T_ASSIGNED] != DIRECT:
                        # Dispatched before the node knew this worker blocks: hand back.
                        self.rt.send(P.BLOCKED, 1, [spec[P.T_ID]])
                    else:
                        self.inbox.put(spec)
            return
        for spec in specs:
            self._deliver(spec)

    def on_block(self, is_blocked: bool) -> None:
        """The running task blocks in get()/wait() (True) or resumes (False)."""
        handed_back = []
        with self.inbox_lock:
            self.blocked = is_blocked
            if is_blocked:
                keep = []
                while True:
                    try:
                        item = self.inbox.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP or len(item) != P.TASK_FIELDS:
                        keep.append(item)
                    else:
                        handed_back.append(item[P.T_ID])
                for item in keep:
                    self.inbox.put(item)
        self.rt.send(P.BLOCKED, int(is_blocked), handed_back)

    def on_create_actor(self, spec: list) -> None:
        self._deliver(spec)

    def _deliver(self, item: Any) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._start_async_call, item)
        else:
            self.inbox.put(item)
            if self.inbox_fd is not None:
                try:
                    os.eventfd_write(self.inbox_fd, 1)
                except OSError:
                    pass

    def on_cancel(self, task_id: bytes) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._cancel_async, task_id)
            return
        self.cancelled.add(task_id)
        # A running task is interrupted; a running call of a sync actor is not (as
        # in Ray): only its queued calls are cancelled.
        if self.current_task == task_id and self.actor_id is None:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

    def on_shutdown(self) -> None:
        self.stopping = True
        self._deliver(_STOP)

    # -- main thread ---------------------------------------------------------------
    def run(self) -> None:
        signal.signal(signal.SIGUSR1, self._on_cancel_signal)
        while True:
            item = self.inbox.get()
            if item is _STOP:
                break
            if len(item) == P.ACTOR_FIELDS:
                if self._create_actor(item):
                    self._serve_sync()
                    break
                if self.loop is not None:  # an async actor: the loop runs from now on
                    self._run_async()
                    break
                continue
            if self.pool is not None:
                self.pool.submit(self._run_call, item)
            elif self.actor_spec is not None:
                if self._run_call(item):
                    break
            else:
                self._run_task(item)
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def _serve_sync(self) -> None:
        """A sync actor's loop: calls from the callers' socket (bound here) and from the
        node (the inbox), run in arrival order on this thread, results sent from here."""
        zctx = zmq.Context(io_threads=1)
        sock = zctx.socket(zmq.ROUTER)
        for opt, value in ((zmq.LINGER, 0), (zmq.SNDHWM, 0), (zmq.RCVHWM, 0),
                           (zmq.ROUTER_MANDATORY, 1)):
            sock.setsockopt(opt, value)
        sock.bind(self.direct_address)
        self.endpoint = sock
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self.inbox_fd, zmq.POLLIN)
        self.rt.send(P.ACTOR_READY, self.actor_spec[P.A_ID], 1, self.direct_address)
        self.replies = {}
        calls: deque = deque()
        stop = False
        try:
            while True:
                while True:                      # through the node
                    try:
                        item = self.inbox.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                    else:
                        calls.append(item)
                stop = self._read_callers(sock, calls) or stop
                if calls:
                    exiting = self._run_call(calls.popleft())
                    if exiting or not calls or len(self.replies) > 64 or \
                            sum(map(len, self.replies.values())) >= CONFIG.max_batch:
                        self._send_replies(sock)
                    if exiting:
                        return                   # exit_actor()
                    continue
                if stop:
                    return
                events = dict(poller.poll())
                if self.inbox_fd in events:
                    try:
                        os.eventfd_read(self.inbox_fd)
                    except BlockingIOError:
                        pass
        finally:
            self.endpoint = None
            sock.close()
            zctx.term()

    def _send_replies(self, sock: Any) -> None:
        if not self.replies:
            return
        # Borrows the calls registered (and their output) go out through the I/O
        # thread: they must leave before the results do.
        self.rt.flush_sync()
        replies, self.replies = self.replies, {}
        for owner, results in replies.items():
            try:
                sock.send_multipart([owner, P.encode(P.RESULTS, results)])
            except zmq.ZMQError:
                pass   # the caller is gone

    def _read_callers(self, sock: Any, calls: deque) -> bool:
        """Move what callers sent into `calls` (cancels applied at once); True if the
        owner released the actor (after the calls before it)."""
        released = []

        def handle(_sender: bytes, mtype: int, fields: list) -> None:
            if mtype == P.CANCEL:
                self.cancelled.add(fields[0])
            elif mtype == P.RELEASE_ACTOR:
                released.append(True)
            else:
                P.expect(mtype, (P.SUBMIT, P.TASKS))
                for spec in fields[0]:
                    P.check_task(spec)[P.T_ASSIGNED] = DIRECT
                    calls.append(spec)
        P.drain(sock, handle, _log, routed=True)
        return bool(released)

    def _on_cancel_signal(self, signum, frame) -> None:
        task = self.current_task
        if task is not None and task in self.cancelled:
            raise TaskCancelledError(task.hex())

    def function(self, func_id: bytes) -> Any:
        fn = self.funcs.get(func_id)
        if fn is None:
            blob = self.blobs.pop(func_id, None)
            if blob is None:
                raise RuntimeError(f"function {func_id.hex()} was never sent to this worker")
            fn = self.funcs[func_id] = S.loads(blob)
        return fn

    @staticmethod
    def _args(blob: bytes | list, slots: list | None) -> tuple[list, dict]:
        """The call's arguments, with each top-level ref's value in its slot."""
        args, kwargs = S.loads(blob)
        if slots:
            values = [S.loads(blob) for _i, blob in slots]
            args = [values[a.index] if type(a) is _Slot else a for a in args]
            kwargs = {k: values[v.index] if type(v) is _Slot else v for k, v in kwargs.items()}
        return args, kwargs

    def _adopt_job(self, job: list | None) -> None:
        """Run as part of the job (and namespace) of the driver that caused this work."""
        if job and job is not self.rt.job:
            self.rt.job_id, self.rt.namespace = job[0], job[1]
            self.rt.job = job

    def _run_task(self, spec: list) -> None:
        task_id = spec[P.T_ID]
        name = spec[P.T_NAME]
        if task_id in self.cancelled:
            self.cancelled.discard(task_id)
            self._send_error(spec, S.dumps_system_error(TaskCancelledError(task_id.hex())), 1)
            return
        assigned = spec[P.T_ASSIGNED] if type(spec[P.T_ASSIGNED]) is dict else {}
        gpus = assigned.get("GPU") or []
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
        ctx = TaskContext(task_id, name, None, spec[P.T_RES], gpus, name)
        self._adopt_job(spec[P.T_JOB])
        set_context(ctx)
        self.rt.block_hook = self.on_block
        retry_exc = spec[P.T_RETRY_EXC]
        try:
            while True:
                try:
                    self.current_task = task_id
                    try:
                        fn = self.function(spec[P.T_FUNC])
                        args, kwargs = self._args(spec[P.T_ARGS], spec[P.T_SLOTS])
                        result = fn(*args, **kwargs)
                    finally:
                        self.current_task = None
                    break
                except TaskCancelledError as exc:
                    self.cancelled.discard(task_id)
                    self._send_error(spec, S.dumps_system_error(exc), spec[P.T_NRET])
                    return
                except Exception as exc:
                    if _should_retry(retry_exc, exc) and P.spend_retry(spec):
                        continue
                    self._send_error(spec, S.dumps_error(exc, name, os.getpid()), spec[P.T_NRET])
                    return
            self._send_result(spec, result)
        finally:
            self.rt.block_hook = None
            _flush_output()  # while the context still names the task: "(f pid=..) tail"
            set_context(None)

    def _send_result(self, spec: list, result: Any) -> None:
        nret = spec[P.T_NRET]
        name = spec[P.T_NAME]
        if nret == 1:
            values = [result]
        elif nret == 0:
            values = []
        else:
            try:
                values = list(result)
            except TypeError:
                values = None
            if values is None or len(values) != nret:
                got = "a non-sequence" if values is None else f"{len(values)} values"
                exc = ValueError(f"Task {name} returned {got}, but num_returns={nret}.")
                self._send_error(spec, S.dumps_error(exc, name, os.getpid()), nret)
                return
        blobs, contained = [], []
        for v in values:
            try:
                blob, refs = S.dumps(v)
            except ObjectStoreFullError as exc:
                self._send_error(spec, S.dumps_error(exc, name, os.getpid()), nret)
                return
            except Exception as exc:
                err = TypeError(S.describe_pickling_error(f"the return value of {name}", v, exc))
                self._send_error(spec, S.dumps_error(err, name, os.getpid()), nret)
                return
            blobs.append(blob)
            contained.append(self.rt.hold_pairs(refs) if refs else None)
        self._emit(spec, P.ok_result(spec, blobs, contained if any(contained) else None))

    def _send_error(self, spec: list, blob: bytes, nret: int) -> None:
        self._emit(spec, P.error_result(spec, blob))

    def _emit(self, spec: list, result: list) -> None:
        _flush_output()  # the task's last output line goes out before its result
        if spec[P.T_ASSIGNED] == DIRECT and self.endpoint is not None:
            # A sync actor's call: answered from this thread, on its own socket, in
            # batches while more calls wait (sent by _send_replies).
            self.replies.setdefault(spec[P.T_OWNER], []).append(result)
        elif spec[P.T_ASSIGNED] == DIRECT:   # the call came straight from its caller
            self.rt.send_direct_result(spec[P.T_OWNER], result)
        else:
            self.rt.send(P.RESULTS, [result])

    # -- actors --------------------------------------------------------------------
    def _create_actor(self, spec: list) -> None:
        self.actor_spec = spec
        name = spec[P.A_CLASS_NAME]
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, self.actor_gpus))
        self._adopt_job(spec[P.A_JOB])
        ctx = TaskContext(spec[P.A_ID][:16], f"{name}.__init__", spec[P.A_ID], spec[P.A_RES],
                          self.actor_gpus, name)
        set_context(ctx)
        try:
            cls = self.function(spec[P.A_CLASS])
            args, kwargs = self._args(spec[P.A_ARGS], spec[P.A_SLOTS])
            self.instance = cls(*args, **kwargs)
        except BaseException as exc:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            err = ActorDiedError(f"The actor {name} died because of an error raised in its "
                                 f"creation task {name}.__init__() (pid={os.getpid()}):\n{tb}",
                                 spec[P.A_ID].hex())
            print(tb, file=sys.stderr, end="")
            self.rt.send(P.ACTOR_READY, spec[P.A_ID], 0, S.dumps_system_error(err))
            set_context(None)
            return
        ctx.task_id = None
        ctx.prefix_name = name
        concurrency = spec[P.A_MAX_CONCURRENCY]
        if spec[P.A_ASYNC]:
            self.loop = asyncio.new_event_loop()
            self.semaphore_size = concurrency
        elif concurrency > 1:
            self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="zray-actor")
        if self.loop is None and self.pool is None and CONFIG.sync_actor_own_socket:
            return True   # run() binds the callers' socket on this thread, then says ready
        self.rt.open_endpoint(self.direct_address)
        self.rt.send(P.ACTOR_READY, spec[P.A_ID], 1, self.direct_address)
        return False

    def _call_target(self, spec: list) -> tuple[Any, str]:
        method = spec[P.T_METHOD]
        cls_name = self.actor_spec[P.A_CLASS_NAME]
        return getattr(self.instance, method), f"{cls_name}.{method}"

    def _run_call(self, spec: list) -> bool:
        """Run one actor call; True if the actor is to exit."""
        name = spec[P.T_NAME]
        ctx = TaskContext(spec[P.T_ID], name, self.actor_spec[P.A_ID], {}, self.actor_gpus,
                          self.actor_spec[P.A_CLASS_NAME])
        set_context(ctx)
        if spec[P.T_ID] in self.cancelled:
            self.cancelled.discard(spec[P.T_ID])
            self._send_error(spec, S.dumps_system_error(TaskCancelledError(spec[P.T_ID].hex())),
                             spec[P.T_NRET])
            set_context(None)
            return False
        try:
            while True:
                try:
                    self.current_task = spec[P.T_ID]
                    fn, _ = self._call_target(spec)
                    args, kwargs = self._args(spec[P.T_ARGS], spec[P.T_SLOTS])
                    result = fn(*args, **kwargs)
                    break
                except _ActorExit:
                    self._exit_actor(spec)
                    return True
                except TaskCancelledError as exc:
                    self._send_error(spec, S.dumps_system_error(exc), spec[P.T_NRET])
                    return False
                except Exception as exc:
                    if _should_retry(spec[P.T_RETRY_EXC], exc) and P.spend_retry(spec):
                        continue
                    self._send_error(spec, S.dumps_error(exc, name, os.getpid()), spec[P.T_NRET])
                    return False
                finally:
                    self.current_task = None
            self._send_result(spec, result)
            return False
        finally:
            _flush_output()
            set_context(None)

    def _exit_actor(self, spec: list | None) -> None:
        aid = self.actor_spec[P.A_ID]
        err = ActorDiedError(f"The actor {self.actor_spec[P.A_CLASS_NAME]} exited with "
                             "exit_actor(); the call cannot return.", aid.hex())
        blob = S.dumps_system_error(err)
        if spec is not None:
            self._send_error(spec, blob, spec[P.T_NRET])
        self.rt.send(P.ACTOR_READY, aid, 2, blob)
        self.stopping = True

    # -- async actors --------------------------------------------------------------
    def _run_async(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        self.semaphore = asyncio.Semaphore(self.semaphore_size)
        # Calls that arrived before the loop existed are in the inbox.
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            loop.call_soon(self._start_async_call, item)
        self.stop_future = loop.create_future()
        loop.run_until_complete(self.stop_future)
        for t in list(self.async_tasks.values()):
            t.cancel()
        loop.close()

    def _start_async_call(self, item: Any) -> None:
        if item is _STOP:  # end after the calls already here, as a sync actor does
            self.loop.create_task(self._stop_after(list(self.async_tasks.values())))
            return
        self.async_tasks[item[P.T_ID]] = self.loop.create_task(self._async_call(item))

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
            async with self.semaphore:
                ctx = TaskContext(spec[P.T_ID], name, self.actor_spec[P.A_ID], {}, self.actor_gpus,
                                  self.actor_spec[P.A_CLASS_NAME])
                set_context(ctx)
                fn, _ = self._call_target(spec)
                args, kwargs = self._args(spec[P.T_ARGS], spec[P.T_SLOTS])
                result = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            self._send_result(spec, result)
        except asyncio.CancelledError:
            self._send_error(spec, S.dumps_system_error(TaskCancelledError(spec[P.T_ID].hex())),
                             spec[P.T_NRET])
        except _ActorExit:
            self._exit_actor(spec)
            if not self.stop_future.done():
                self.stop_future.set_result(None)
        except Exception as exc:
            self._send_error(spec, S.dumps_error(exc, name, os.getpid()), spec[P.T_NRET])
        finally:
            self.async_tasks.pop(spec[P.T_ID], None)
            _flush_output()


def _should_retry(retry_exc: Any, exc: BaseException) -> bool:
    if not retry_exc:
        return False
    if retry_exc is True:
        return True
    if isinstance(retry_exc, bytes):
        types = S.loads(retry_exc)
        return isinstance(exc, tuple(types))
    return False


def _flush_output() -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass


def exit_actor() -> None:
    """End the current actor after this call (from inside an actor method)."""
    ctx = current_context()
    if ctx is None or ctx.actor_id is None:
        raise TypeError("exit_actor() may only be called inside an actor method")
    raise _ActorExit()


def main(address: str, worker_id: bytes, actor_id: bytes | None, gpus: list, life_fd: int) -> None:
    # Every worker takes calls (actors) or leased tasks on its own socket, next to the
    # node's: a task worker's is bound by its I/O thread now; an actor's once it exists.
    direct = address.rsplit("/", 1)[0] + "/" + worker_id.decode() + ".sock"
    rt = _runtime.Runtime(address, "worker", b"", {"worker_id": worker_id}, life_fd=life_fd,
                          direct_address=None if actor_id else direct)
    _runtime.set_current(rt)
    worker = Worker(rt, worker_id, actor_id, gpus)
    worker.direct_address = direct
    rt.on_tasks = worker.on_tasks
    rt.on_create_actor = worker.on_create_actor
    rt.on_cancel = worker.on_cancel
    rt.on_shutdown = worker.on_shutdown
    rt.start(timeout=30)
    sys.stdout = _Output(rt, False)
    sys.stderr = _Output(rt, True)
    try:
        worker.run()
    finally:
        _flush_output()
        rt.stop()
