"""get_runtime_context(): the job, task, actor and node of the caller (Ray's RuntimeContext)."""
from __future__ import annotations

from typing import Any

from . import _runtime
from ._context import current_context


class RuntimeContext:
    """Ids and resources of whatever is running here; call zray.get_runtime_context()."""

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

    def get_actor_id(self) -> str | None:
        ctx = current_context()
        return ctx.actor_id.hex() if ctx is not None and ctx.actor_id else None

    @property
    def actor_id(self) -> str | None:
        return self.get_actor_id()

    def get_actor_name(self) -> str | None:
        return None

    @property
    def namespace(self) -> str:
        return self._rt.namespace

    def get_assigned_resources(self) -> dict:
        ctx = current_context()
        if ctx is None:
            return {}
        return {k: v for k, v in ctx.resources.items() if not k.startswith("_")}

    def get_accelerator_ids(self) -> dict:
        ctx = current_context()
        return {"GPU": [str(g) for g in ctx.gpus] if ctx is not None else []}

    def get_resource_ids(self) -> dict:
        return self.get_accelerator_ids()

    @property
    def was_current_actor_reconstructed(self) -> bool:
        return False

    def get(self) -> dict[str, Any]:
        return {"job_id": self.get_job_id(), "node_id": self.get_node_id(),
                "task_id": self.get_task_id(), "actor_id": self.get_actor_id(),
                "namespace": self.namespace}


def get_runtime_context() -> RuntimeContext:
    """The RuntimeContext of the caller (driver, task or actor)."""
    from ._init import runtime_or_init
    return RuntimeContext(runtime_or_init())
