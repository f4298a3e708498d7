"""get_runtime_context(): the job, task, actor and node of the caller (Ray's RuntimeContext)."""
from __future__ import annotations

import json
import os
import threading
from typing import Any

from . import _protocol as P
from . import _runtime, _runtime_env
from ._context import current_context, worker_host
from ._strategies import BUNDLE, group_of


class RuntimeContext:
    """Ids and resources of whatever is running here; call zray.get_runtime_context().

    Ids are hex strings (zray's ids are shorter than Ray's). In the driver the task,
    actor and placement group ids are None, as in Ray.
    """

    def __init__(self, rt: _runtime.Runtime) -> None:
        self._rt = rt

    def get_job_id(self) -> str:
        return self._rt.job_id.hex() if self._rt.job_id else self._rt.node_info.get("job_id", "")

    @property
    def job_id(self) -> str:
        return self.get_job_id()

    def get_node_id(self) -> str:
        return self._rt.node_id.hex()

    @property
    def node_id(self) -> str:
        return self.get_node_id()

    def get_worker_id(self) -> str:
        return self._rt.ident.hex()

    def get_task_id(self) -> str | None:
        ctx = current_context()
        return ctx.task_id.hex() if ctx is not None and ctx.task_id else None

    @property
    def task_id(self) -> str | None:
        return self.get_task_id()

    def get_task_name(self) -> str | None:
        ctx = current_context()
        return ctx.name if ctx is not None else None

    def get_task_function_name(self) -> str | None:
        """module.function (module.Class.method for an actor call) of the running task;
        None in the driver."""
        ctx = current_context()
        spec = ctx.spec if ctx is not None else None
        host = worker_host()
        if spec is None or host is None:
            return None
        if spec[P.T_ACTOR] is not None:
            cls = type(host.instance)
            # (a call in a concurrency group says "method@group": the method's name)
            return f"{cls.__module__}.{cls.__qualname__}.{spec[P.T_METHOD].partition('@')[0]}"
        fn = host.ex.funcs.get(spec[P.T_FUNC])
        if fn is None:
            return None
        return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', spec[P.T_NAME])}"

    def get_actor_id(self) -> str | None:
        ctx = current_context()
        return ctx.actor_id.hex() if ctx is not None and ctx.actor_id else None

    @property
    def actor_id(self) -> str | None:
        return self.get_actor_id()

    def get_actor_name(self) -> str | None:
        """The actor's name ("" if it has none); None outside an actor."""
        spec = _actor_spec()
        return None if spec is None else spec[P.A_NAME] or ""

    @property
    def namespace(self) -> str:
        return self._rt.namespace

    @property
    def current_actor(self) -> Any:
        """A handle to the actor this runs in (RuntimeError outside an actor). Held by the
        actor itself it does not keep the actor alive (as in Ray); passed to a task or
        another actor, it does, as any handle."""
        spec = _actor_spec()
        if spec is None:
            raise RuntimeError("This method is only available in an actor.")
        from .actor import ActorHandle, _method_table
        methods, _is_async = _method_table(type(worker_host().instance))
        meta = {"class_name": spec[P.A_CLASS_NAME], "methods": methods,
                "is_async": spec[P.A_ASYNC], "max_task_retries": spec[P.A_MAX_TASK_RETRIES]}
        return ActorHandle(spec[P.A_ID], None, meta)

    def get_assigned_resources(self) -> dict:
        """The resources reserved for the running task or actor ({"CPU": 1.0} for a
        default task, {} for a default actor), by their own names also inside a
        placement group. Only in a task or actor (AssertionError in the driver, as Ray)."""
        ctx = current_context()
        if ctx is None:
            if worker_host() is None:
                raise AssertionError("get_assigned_resources() is only available in a task or "
                                     "an actor, not in the driver")
            return {}
        out: dict[str, float] = {}
        for name, amount in ctx.resources.items():
            if name.startswith("_") or name.startswith(BUNDLE) or not amount:
                continue
            if "_group_" in name:   # in a placement group: CPU_group_[<index>_]<pg>
                name = name.rsplit("_group_", 1)[0]
            out[name] = out.get(name, 0.0) + float(amount)
        return out

    def get_placement_group_id(self) -> str | None:
        """The placement group the running task or actor is in, or None."""
        ctx = current_context()
        return group_of(ctx.resources) if ctx is not None and ctx.resources else None

    def get_accelerator_ids(self) -> dict:
        ctx = current_context()
        return {"GPU": [str(g) for g in ctx.gpus] if ctx is not None else []}

    def get_resource_ids(self) -> dict:
        return self.get_accelerator_ids()

    def get_node_labels(self) -> dict:
        return {"ray.io/node-id": self.get_node_id()}

    def get_temp_dir(self) -> str:
        return os.path.dirname(self._rt.node_info.get("session_dir", "")) or ""

    def is_canceled(self) -> bool:
        """True once zray.cancel() was called on the running task or actor call (for a
        sync actor's call, which cancel does not interrupt, the way to stop early; its
        caller then gets TaskCancelledError whatever it returns). RuntimeError in the
        driver and in an async actor (as Ray: cancel interrupts its coroutine)."""
        host = worker_host()
        ctx = current_context()
        if host is None or ctx is None:
            raise RuntimeError("is_canceled() is only available in a task or an actor, not in "
                               "the driver")
        if getattr(host, "loop", None) is not None:
            raise RuntimeError("is_canceled() is not supported in an async actor (cancel "
                               "interrupts its coroutine).")
        endpoint = getattr(host, "endpoint", None)
        if endpoint is not None and threading.current_thread() is threading.main_thread():
            # A sync actor serves its callers' socket on the thread that runs its calls:
            # a CANCEL sent to it waits there, unread, while the call runs.
            endpoint.read()
        return ctx.task_id is not None and ctx.task_id in host.ex.cancelled

    @property
    def runtime_env(self) -> dict:
        """The runtime_env the caller runs with (the job's in the driver; in a task or
        actor, its own merged over its parent's), directories by their content's URI."""
        return _runtime_env.view(self._rt.job)

    def get_runtime_env_string(self) -> str:
        return json.dumps(self.runtime_env)

    @property
    def was_current_actor_reconstructed(self) -> bool:
        return False

    def get(self) -> dict[str, Any]:
        out = {"job_id": self.get_job_id(), "node_id": self.get_node_id(),
               "namespace": self.namespace}
        for key, value in (("task_id", self.get_task_id()), ("actor_id", self.get_actor_id())):
            if value is not None:
                out[key] = value
        return out


def _actor_spec() -> list | None:
    """The creation spec of the actor this process hosts, or None."""
    ctx = current_context()
    if ctx is None or ctx.actor_id is None:
        return None
    return getattr(worker_host(), "spec", None)


def get_runtime_context() -> RuntimeContext:
    """The RuntimeContext of the caller (driver, task or actor)."""
    from ._init import runtime_or_init
    return RuntimeContext(runtime_or_init())
