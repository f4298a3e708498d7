"""What is running here: this process's runtime, and in this thread or coroutine the
task or actor and its resources (a ContextVar, so that the concurrent calls of a
threaded or async actor each see their own task). A leaf module: imports nothing of zray.
"""
from __future__ import annotations

import contextvars
from typing import Any


class TaskContext:
    __slots__ = ("task_id", "name", "actor_id", "resources", "gpus", "prefix_name", "spec")

    def __init__(self, task_id: bytes | None, name: str, actor_id: bytes | None, resources: dict,
                 gpus: list, prefix_name: str, spec: list | None = None) -> None:
        self.task_id = task_id
        self.name = name
        self.actor_id = actor_id
        self.resources = resources
        self.gpus = gpus
        self.prefix_name = prefix_name
        self.spec = spec   # the task spec it runs (get_runtime_context() reads it)


_var: contextvars.ContextVar[Any] = contextvars.ContextVar("zray_task", default=None)
_actor: list = [None]  # the actor context of this process, once it has one


def set_context(ctx: TaskContext | None) -> None:
    _var.set(ctx)
    if ctx is not None and ctx.actor_id is not None:
        _actor[0] = ctx


def current_context() -> TaskContext | None:
    return _var.get() or _actor[0]


_host: list = [None]   # a worker process's TaskWorker or ActorHost (set by worker.main)


def worker_host() -> Any:
    """What runs tasks or hosts the actor in this worker process; None in a driver."""
    return _host[0]


class ActorExit(BaseException):
    """Raised by exit_actor(); ends the actor after the current call."""


_runtime: list = [None]   # this process's runtime, once init() or the worker made it
_initializer: list = [None]   # zray.init, registered by _init (a leaf cannot import it)


def runtime() -> Any:
    """This process's runtime, or None."""
    return _runtime[0]


def runtime_or_init() -> Any:
    """This process's runtime; the first API call of a driver starts a local cluster."""
    rt = _runtime[0]
    if rt is None:
        _initializer[0]()
        rt = _runtime[0]
    return rt


def set_runtime(rt: Any) -> None:
    _runtime[0] = rt
