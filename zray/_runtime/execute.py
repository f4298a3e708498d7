"""Running one task or actor call in a worker: its function, its arguments with the
resolved refs in their slots, retries on the exceptions it names, and the result row
its owner gets (return values pickled, or the error with the remote traceback).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from .. import _protocol as P
from .. import _serialization as S
from .._context import ActorExit
from ..exceptions import ObjectStoreFullError, RaySystemError, TaskCancelledError
from .events import EVENTS
from .runtime import Runtime
from .streams import NONE_BLOB, Producers
from .submit import fill_slots

__all__ = ["STOP", "ActorExit", "Executor", "adopt_job", "flush_output"]

STOP = object()   # the inbox item that ends a worker's main loop


class Executor:
    """The functions a worker was sent, and how it runs them. emit(spec, row) sends a
    finished task's result row on its way (the worker decides which way)."""

    def __init__(self, rt: Runtime, emit: Callable[[list, list], None],
                 emit_item: Callable[[list, list], None] | None = None) -> None:
        self.rt = rt
        self.emit = emit
        # Generator tasks: their items go out with emit_item (on the path emit takes).
        self.producers = Producers(rt, emit_item or (lambda spec, row: None))
        rt.on_gen_ack = self.producers.on_ack
        self.blobs: dict[bytes, bytes] = {}
        self.funcs: dict[bytes, Any] = {}
        self.cancelled: set[bytes] = set()
        self.current_task: bytes | None = None

    def function(self, func_id: bytes) -> Any:
        fn = self.funcs.get(func_id)
        if fn is None:
            blob = self.blobs.pop(func_id, None)
            if blob is None:
                raise RuntimeError(f"function {func_id.hex()} was never sent to this worker")
            fn = self.funcs[func_id] = S.loads(blob)
        return fn

    def run(self, spec: list, target: Callable[[], Any]) -> None:
        """Run target()(*args) for `spec` and emit its result. ActorExit (exit_actor())
        propagates to the actor host."""
        task_id = spec[P.T_ID]
        if task_id in self.cancelled:
            self.cancelled.discard(task_id)
            self.fail(spec, TaskCancelledError(task_id.hex()))
            return
        EVENTS.started(spec)
        while True:
            try:
                try:
                    self.current_task = task_id
                    result = self._call(spec, target)
                finally:
                    # Cleared before the handlers run: a cancel arriving now must not
                    # interrupt the error's reporting.
                    self.current_task = None
                break
            except TaskCancelledError as exc:
                self.cancelled.discard(task_id)
                self.fail(spec, exc)
                return
            except Exception as exc:
                try:
                    retry = should_retry(spec[P.T_RETRY_EXC], exc)
                except Exception as bad:   # (it killed the worker, which crash-looped)
                    self.fail(spec, RaySystemError(
                        f"Task {spec[P.T_NAME]} raised {exc!r}, and its retry_exceptions field "
                        f"could not be read ({bad!r}): a bug in zray, or a client of another "
                        "version."))
                    return
                if retry and P.spend_retry(spec):
                    continue
                self.emit(spec, self.error_row(spec, exc))
                return
            except (SystemExit, ActorExit):
                raise
            except BaseException as exc:   # the task's error, as Ray's (not a dead worker);
                if isinstance(exc, KeyboardInterrupt):   # Ray's cancel signal: a cancel
                    exc = TaskCancelledError(task_id.hex())
                self.emit(spec, self.error_row(spec, exc))
                return
        if self.cancelled and task_id in self.cancelled:
            # Cancelled while it ran, and it returned (a sync actor's call is not
            # interrupted: it may watch is_canceled()): its caller gets the cancel, as in Ray.
            self.cancelled.discard(task_id)
            self.fail(spec, TaskCancelledError(task_id.hex()))
            return
        self.emit(spec, self.pack(spec, result))

    def _call(self, spec: list, target: Callable[[], Any]) -> Any:
        fn = target()
        args, kwargs = fill_slots(spec[P.T_ARGS], spec[P.T_SLOTS])
        if spec[P.T_NRET] < 0:   # a generator: its items go out as they come
            self.producers.run(spec, fn(*args, **kwargs))
            return None
        return fn(*args, **kwargs)

    def fail(self, spec: list, exc: BaseException) -> None:
        """Emit an error of zray's own (cancelled, actor exited) for `spec`."""
        if spec[P.T_NRET] < 0:
            self.producers.end(spec)
        self.emit(spec, P.error_result(spec, S.dumps_system_error(exc)))

    def error_row(self, spec: list, exc: BaseException) -> list:
        """The result row of a task that raised `exc` (a generator's: sent as its
        next item first)."""
        blob = S.dumps_error(exc, spec[P.T_NAME], os.getpid())
        if spec[P.T_NRET] < 0:
            self.producers.error(spec, blob)
            self.producers.end(spec)
        return P.error_result(spec, blob)

    def pack(self, spec: list, result: Any) -> list:
        """The result row of a task that returned `result`: each return value pickled
        (and the refs inside it held for the owner), or the error that prevented it."""
        nret, name = spec[P.T_NRET], spec[P.T_NAME]
        if nret < 0:   # a generator's end (its items went out as they came)
            self.producers.end(spec)
            return P.ok_result(spec, [NONE_BLOB], None)
        values = _returns(result, nret, name)
        if isinstance(values, BaseException):
            return P.error_result(spec, S.dumps_error(values, name, os.getpid()))
        blobs, contained = [], []
        for v in values:
            try:
                blob, refs = S.dumps(v)
            except ObjectStoreFullError as exc:
                return P.error_result(spec, S.dumps_error(exc, name, os.getpid()))
            except Exception as exc:
                err = TypeError(S.describe_pickling_error(f"the return value of {name}", v, exc))
                return P.error_result(spec, S.dumps_error(err, name, os.getpid()))
            blobs.append(blob)
            contained.append(self.rt.owner.hold_pairs(refs) if refs else None)
        return P.ok_result(spec, blobs, contained if any(contained) else None)


def _returns(result: Any, nret: int, name: str) -> list | BaseException:
    """The return values of a task, as num_returns says; a ValueError if they do not
    match it."""
    if nret == 1:
        return [result]
    if nret == 0:
        return []
    try:
        values = list(result)
    except TypeError:
        values = None
    if values is None or len(values) != nret:
        got = "a non-sequence" if values is None else f"{len(values)} values"
        return ValueError(f"Task {name} returned {got}, but num_returns={nret}.")
    return values


def should_retry(retry_exc: Any, exc: BaseException) -> bool:
    """True if the task's retry_exceptions (True, or a pickled list of types) covers `exc`."""
    if not retry_exc:
        return False
    if retry_exc is True:
        return True
    if isinstance(retry_exc, bytes):
        return isinstance(exc, tuple(S.loads(retry_exc)))
    return False


def flush_output() -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass


def adopt_job(rt: Runtime, job: list | None) -> dict | None:
    """Run as part of the job (and namespace) of the driver that caused this work (and
    with its runtime_env, which the work's own children inherit). Returns that env's
    descriptor, None if it has none (_runtime_env.py)."""
    if not job:
        return None
    if job is not rt.job:
        rt.job_id, rt.namespace = job[0], job[1]
        rt.job = job
    return job[2] if len(job) > 2 else None
