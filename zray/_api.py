"""The public functions: check the arguments, then delegate to the runtime."""
from __future__ import annotations

import inspect
import operator
from collections.abc import Sequence
from typing import Any

from . import _serialization as S
from ._context import current_context
from ._generator import ObjectRefGenerator
from ._init import init, is_initialized, runtime_or_init, shutdown
from ._object_ref import ObjectRef
from ._remote_function import RemoteFunction
from .actor import ActorClass, ActorHandle

__all__ = [
    "available_resources",
    "cancel",
    "cluster_resources",
    "get",
    "get_actor",
    "get_gpu_ids",
    "init",
    "is_initialized",
    "kill",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "wait",
]


def _check_timeout(timeout: Any) -> None:
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
                                or timeout < 0):
        raise ValueError(f"timeout must be None or a non-negative number of seconds, got {timeout!r}")


def get(object_refs: ObjectRef | Sequence[ObjectRef], *, timeout: float | None = None) -> Any:
    """The value(s) of ObjectRef(s); blocks until ready. A list in gives a list out.

    Raises the task's error (a RayTaskError that is also the original type) as soon
    as any of the objects failed, and GetTimeoutError after `timeout` seconds.
    """
    if type(timeout) is int and timeout == -1:   # (Ray's: -1 waits as long as it takes)
        timeout = None
    _check_timeout(timeout)
    rt = runtime_or_init()
    if type(object_refs) is ObjectRef:
        return rt.get([object_refs], timeout)[0]
    if type(object_refs) is ObjectRefGenerator:   # (as Ray: itself)
        return object_refs
    if not isinstance(object_refs, (list, tuple)):   # (ValueError: Ray's type for it)
        raise ValueError(f"get() expects an ObjectRef or a list of ObjectRefs, got "
                         f"{type(object_refs).__name__}")
    for i, ref in enumerate(object_refs):
        if type(ref) is not ObjectRef:
            raise TypeError(f"get() expects ObjectRefs; item {i} is a {type(ref).__name__}")
    return rt.get(list(object_refs), timeout)


def put(value: Any, *, _owner: Any = None) -> ObjectRef:
    """Store `value` in the cluster and return a ref to it."""
    if isinstance(value, ObjectRef):
        raise TypeError("Calling 'put' on an ObjectRef is not allowed. If you really want to do "
                        "this, you can wrap the ObjectRef in a list and call 'put' on it.")
    return runtime_or_init().owner.put(value)


def wait(object_refs: list[ObjectRef], *, num_returns: int = 1, timeout: float | None = None,
         fetch_local: bool = True) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """(ready, not_ready): waits until `num_returns` refs are ready or `timeout` passes.
    Both lists keep the input order; `ready` never holds more than num_returns."""
    if isinstance(object_refs, ObjectRef) or not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"wait() expects a list of ObjectRefs, got {type(object_refs).__name__}")
    # Checked with C-level loops (map, set): a loop of wait(num_returns=1) over a long
    # list pays this per call (1,000 refs: ~25 us here, against ~110 us in Python).
    if set(map(type, object_refs)) - {ObjectRef}:
        if ObjectRefGenerator in set(map(type, object_refs)):
            return _wait_generators(list(object_refs), num_returns=num_returns, timeout=timeout)
        i, bad = next((i, r) for i, r in enumerate(object_refs) if type(r) is not ObjectRef)
        raise TypeError(f"wait() expects ObjectRefs; item {i} is a {type(bad).__name__}")
    if not object_refs:   # (as Ray: nothing to wait for, whatever num_returns says)
        _check_timeout(timeout)
        return [], []
    if len(set(map(_ref_id, object_refs))) != len(object_refs):
        raise ValueError("wait() requires a list of unique object refs.")
    if not isinstance(num_returns, int) or isinstance(num_returns, bool) or num_returns < 1:
        raise ValueError(f"Invalid number of objects to return {num_returns!r}; it must be >= 1.")
    if num_returns > len(object_refs):
        raise ValueError(f"num_returns ({num_returns}) cannot be greater than the number of "
                         f"objects provided ({len(object_refs)}).")
    _check_timeout(timeout)
    return runtime_or_init().owner.wait(list(object_refs), num_returns, timeout)


_ref_id = operator.attrgetter("_id")


def _wait_generators(items: list, num_returns: int, timeout: float | None) -> tuple[list, list]:
    """wait() on a list with ObjectRefGenerators: one is ready when its next item is
    (or its end: next() will not block)."""
    refs = [x._peek() if type(x) is ObjectRefGenerator else x for x in items]
    ready, _ = wait(refs, num_returns=num_returns, timeout=timeout)
    done = set(map(_ref_id, ready))
    return ([x for x, r in zip(items, refs, strict=True) if r._id in done],
            [x for x, r in zip(items, refs, strict=True) if r._id not in done])


def kill(actor: Any, *, no_restart: bool = True) -> None:
    """Kill an actor at once (its running and queued calls fail with ActorDiedError)."""
    if not isinstance(actor, ActorHandle):
        raise ValueError(f"zray.kill() only supports actors; got {type(actor).__name__}")
    runtime_or_init().kill_actor(actor._actor_id, bool(no_restart))


def cancel(object_ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that makes `object_ref`; get() on it then raises TaskCancelledError.
    A running task is interrupted (force=True kills its worker)."""
    if type(object_ref) is ObjectRefGenerator:
        object_ref = object_ref.completed()
    if type(object_ref) is not ObjectRef:
        raise TypeError(f"cancel() expects an ObjectRef, got {type(object_ref).__name__}")
    runtime_or_init().cancel(object_ref._id[:16], bool(force))


def get_actor(name: str, namespace: str | None = None) -> Any:
    """The handle of the live actor called `name` (in `namespace`, default: this job's)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"get_actor() needs a non-empty actor name, got {name!r}")
    rt = runtime_or_init()
    blob = rt.head_call("get_actor", [name, namespace if namespace is not None else rt.namespace])
    return S.loads(blob)


def get_gpu_ids() -> list:
    """The GPU ids assigned to the current task or actor ([] in the driver)."""
    ctx = current_context()
    return list(ctx.gpus) if ctx is not None else []


def nodes() -> list[dict]:
    """One dict per node, with Ray's keys (NodeID, Alive, Resources, ...)."""
    return runtime_or_init().head_call("nodes", [])


def cluster_resources() -> dict:
    """The total resources of the live nodes."""
    return runtime_or_init().head_call("cluster_resources", [])


def available_resources() -> dict:
    """The resources not in use right now (as last reported by the nodes)."""
    return runtime_or_init().head_call("available_resources", [])


def remote(*args: Any, **options: Any) -> Any:
    """Make a function a task or a class an actor: `@remote`, `remote(f)`, `@remote(num_cpus=2)`."""
    def make(target: Any) -> Any:
        if isinstance(target, type):
            return ActorClass(target, options)
        if inspect.isfunction(target):   # (as Ray: not a builtin, a partial, a bound method)
            return RemoteFunction(target, options)
        raise TypeError(f"The @remote decorator must be applied to either a function or a class, "
                        f"not {type(target).__name__} {target!r}: wrap it in a def.")

    if len(args) == 1 and not options and callable(args[0]):
        return make(args[0])
    if args:
        raise TypeError("@remote takes keyword options only, e.g. @remote(num_cpus=2)")
    return make
