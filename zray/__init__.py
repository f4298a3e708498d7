"""zray: Ray Core's API (tasks, actors, futures) on ZeroMQ brokers.

    import zray as ray
    ray.init()
    @ray.remote
    def f(x): return x * 2
    ray.get([f.remote(i) for i in range(4)])   # [0, 2, 4, 6]
"""
from . import exceptions, experimental, job_config, util  # noqa: F401  (experimental, job_config: not in __all__, as in Ray)
from ._api import (
                   available_resources,
                   cancel,
                   cluster_resources,
                   get,
                   get_actor,
                   get_gpu_ids,
                   init,
                   is_initialized,
                   kill,
                   nodes,
                   put,
                   remote,
                   shutdown,
                   wait,
)
from ._generator import DynamicObjectRefGenerator, ObjectRefGenerator
from ._object_ref import ObjectRef
from ._runtime_context import get_runtime_context
from ._timeline import timeline
from .actor import ActorClass, ActorHandle, method

__version__ = "0.1.0"

__all__ = [
    "ActorClass", "ActorHandle", "DynamicObjectRefGenerator", "ObjectRef", "ObjectRefGenerator",
    "available_resources", "cancel", "cluster_resources",
    "exceptions", "get", "get_actor", "get_gpu_ids", "get_runtime_context", "init", "is_initialized",
    "kill", "method", "nodes", "put", "remote", "shutdown", "timeline", "util", "wait",
]
