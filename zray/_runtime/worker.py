"""A worker process: its main loop runs tasks one at a time (or, in actor_host.py,
hosts one actor), fed by the runtime's I/O thread.

Started by the node's zygote (a fork), so it shares the node's imports. It exits
when the node broker tells it to, or when the node's life pipe closes.

    node --TASKS--> I/O thread --inbox--> main thread runs it --RESULTS--> node -> owner
    owner --SUBMIT (leased)--> endpoint (I/O thread) --inbox--> main --reply--> owner
"""
from __future__ import annotations

import os
import queue
import signal
import sys
import threading
from typing import Any

from .. import _context, _runtime_env
from .. import _protocol as P
from .. import _serialization as S
from .._context import TaskContext, set_context
from .._log import get_logger
from .._logs import LogFiles
from .._metrics import REGISTRY as METRICS
from ..exceptions import RaySystemError, TaskCancelledError
from .actor_host import ActorHost
from .endpoint import is_direct
from .events import EVENTS
from .execute import STOP, Executor, adopt_job, flush_output
from .output import Output
from .runtime import Runtime, set_current

_log = get_logger("worker")


class TaskWorker:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.ex = Executor(rt, self._emit, self._emit_item)
        rt.submitter.children = {}   # (what each task submits: cancelled with it)
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        # While the running task blocks in get(), tasks queued behind it go back to
        # the node (they may be what it waits for); guarded with the inbox.
        self.blocked = False
        self.inbox_lock = threading.Lock()

    # -- called in the I/O thread --------------------------------------------------
    def on_tasks(self, specs: list, funcs: dict) -> None:
        if funcs:
            self.ex.blobs.update(funcs)
        with self.inbox_lock:
            for spec in specs:
                if self.blocked and not is_direct(spec):
                    # Dispatched before the node knew this worker blocks: hand back.
                    self.rt.send(P.BLOCKED, 1, [spec[P.T_ID]])
                else:
                    self.inbox.put(spec)

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
                    if item is STOP or is_direct(item):
                        keep.append(item)
                    else:
                        handed_back.append(item[P.T_ID])
                for item in keep:
                    self.inbox.put(item)
        self.rt.send(P.BLOCKED, int(is_blocked), handed_back)

    def on_cancel(self, task_id: bytes) -> None:
        self.ex.cancelled.add(task_id)
        if self.ex.current_task == task_id:   # interrupt it (see _on_cancel_signal)
            main = threading.main_thread().ident
            assert main is not None   # it runs the task: it has started
            signal.pthread_kill(main, signal.SIGUSR1)
        # And what it submitted (it may be blocked on them), as Ray's recursive cancel.
        children = self.rt.submitter.children
        for child in children.pop(task_id, ()) if children is not None else ():
            self.rt.cancel(child, False)

    def on_shutdown(self) -> None:
        self.inbox.put(STOP)

    # -- main thread ---------------------------------------------------------------
    def run(self) -> None:
        signal.signal(signal.SIGUSR1, self._on_cancel_signal)
        while True:
            item = self.inbox.get()
            if item is STOP:
                return
            try:
                self._run_task(item)
            except Exception as exc:   # a bad spec must not kill the worker (the node
                self._reject(item, exc)  # would fork another for it, and so on)

    def _on_cancel_signal(self, signum: int, frame: Any) -> None:
        task = self.ex.current_task
        if task is not None and task in self.ex.cancelled:
            raise TaskCancelledError(task.hex())

    def _run_task(self, spec: list) -> None:
        name = spec[P.T_NAME]
        assigned = spec[P.T_ASSIGNED] if type(spec[P.T_ASSIGNED]) is dict else {}
        gpus = assigned.get("GPU") or []
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
        env = adopt_job(self.rt, spec[P.T_JOB])
        set_context(TaskContext(spec[P.T_ID], name, None, spec[P.T_RES], gpus, name, spec))
        self.rt.owner.block_hook = self.on_block
        try:
            if env is None:
                self.ex.run(spec, lambda: self.ex.function(spec[P.T_FUNC]))
            else:   # set around this task only (a worker serves every env)
                _runtime_env.run_in(env, self.rt, self.ex, spec,
                                    lambda: self.ex.function(spec[P.T_FUNC]))
        finally:
            self.rt.owner.block_hook = None
            if self.rt.submitter.children:
                self.rt.submitter.children.pop(spec[P.T_ID], None)
            flush_output()  # while the context still names the task: "(f pid=..) tail"
            set_context(None)

    def _reject(self, spec: list, exc: Exception) -> None:
        """A task that could not even be started: its owner gets an error naming why."""
        _log.error("could not run a task", task=repr(spec)[:200], error=repr(exc))
        err = RaySystemError(f"The worker could not run task {spec[P.T_NAME]!r}: {exc!r} "
                             "(a malformed task: a bug in zray, or a client of another version).")
        try:
            self._emit(spec, P.error_result(spec, S.dumps_system_error(err)))
        except Exception:
            pass   # not even an owner to tell: logged above

    def _emit(self, spec: list, result: list) -> None:
        EVENTS.ended(spec, result)
        flush_output()  # the task's last output line goes out before its result
        if is_direct(spec):   # it came straight from its owner (a lease)
            self.rt.reply(spec[P.T_ASSIGNED], result)
        else:
            self.rt.send(P.RESULTS, [result])


    def _emit_item(self, spec: list, row: list) -> None:
        flush_output()
        if is_direct(spec):
            self.rt.reply_item(spec[P.T_ASSIGNED], row)
        else:
            self.rt.send(P.ITEMS, [row])


def main(address: str, node_id: bytes, worker_id: bytes, actor_id: bytes | None, gpus: list,
         life_fd: int) -> None:
    # Every worker takes calls (actors) or leased tasks on its own socket, next to the
    # node's: a task worker's is bound by its I/O thread now; an actor's once it exists.
    direct = address.rsplit("/", 1)[0] + "/" + worker_id.decode() + ".sock"
    rt = Runtime(address, "worker", b"", node_id, {"worker_id": worker_id}, life_fd=life_fd,
                 direct_address=None if actor_id else direct)
    set_current(rt)
    if actor_id is None:
        worker: Any = TaskWorker(rt)
        rt.on_tasks = worker.on_tasks
    else:
        worker = ActorHost(rt, direct, gpus)
        rt.on_tasks = worker.on_calls
        rt.on_create_actor = worker.on_create_actor
    rt.on_cancel = worker.on_cancel
    rt.on_shutdown = worker.on_shutdown
    _context._host[0] = worker   # (get_runtime_context(): is_canceled, current_actor)
    rt.start(timeout=30)
    EVENTS.start(rt.send, actor_id, lambda: _pending(worker))
    logs = LogFiles(rt.node_info.get("session_dir", ""), actor_id)
    sys.stdout = Output(rt, False, logs)
    sys.stderr = Output(rt, True, logs)
    try:
        worker.run()
    finally:
        flush_output()
        EVENTS.flush()
        METRICS.flush(rt)   # (zray.util.metrics recorded since the last send, if any)
        rt.stop()


def _pending(worker: Any) -> int:
    """The calls (or tasks) this worker holds and has not finished, roughly: what waits
    in its queues, and an async actor's calls in flight."""
    return (worker.inbox.qsize() + len(getattr(worker, "calls", ()))
            + len(getattr(worker, "async_tasks", ())))
