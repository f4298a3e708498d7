"""The public functions: check the arguments, then delegate to the runtime."""
from __future__ import annotations

import atexit
import os
import threading
from typing import Any, Sequence

from . import _runtime
from ._cluster import LocalCluster
from ._config import CONFIG
from ._context import current_context
from ._object_ref import ObjectRef
from .exceptions import RaySystemError

_lock = threading.RLock()
_cluster: LocalCluster | None = None
_IGNORED_INIT_KWARGS = {
    "include_dashboard", "dashboard_host", "dashboard_port", "logging_level", "logging_format",
    "configure_logging", "log_to_driver_level", "_system_config", "_temp_dir", "runtime_env",
    "local_mode", "_memory", "storage", "job_config", "_node_ip_address",
    "_plasma_directory", "labels", "enable_resource_isolation", "_enable_object_reconstruction",
    "_redis_password", "logging_config", "_metrics_export_port", "_tracing_startup_hook",
}


class InitContext(dict):
    """What init() returns: a dict with the cluster's addresses (Ray's RayContext-like)."""

    @property
    def address_info(self) -> dict:
        return dict(self)

    def disconnect(self) -> None:
        shutdown()

    def __enter__(self) -> "InitContext":
        return self

    def __exit__(self, *exc: Any) -> None:
        shutdown()


def init(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None,
         resources: dict | None = None, namespace: str | None = None,
         ignore_reinit_error: bool = False, log_to_driver: bool = True,
         object_store_memory: int | None = None, **kwargs: Any) -> InitContext:
    """Start the embedded local cluster (head broker, node broker, `num_cpus` workers)
    and connect this process to it. Returns once the cluster can take work.

    >>> zray.init(num_cpus=2)
    """
    global _cluster
    unknown = set(kwargs) - _IGNORED_INIT_KWARGS
    if unknown:
        raise TypeError(f"init() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    with _lock:
        if _runtime._current is not None:
            if ignore_reinit_error:
                return _context_of(_runtime._current)
            raise RuntimeError("Maybe you called zray.init twice by accident? This error can be "
                               "suppressed by passing in 'ignore_reinit_error=True' or by calling "
                               "'zray.shutdown()' prior to 'zray.init()'.")
        if address is None:
            address = os.environ.get("ZRAY_ADDRESS") or None
        if address not in (None, "local"):
            if num_cpus is not None or num_gpus is not None or resources is not None:
                raise ValueError("When connecting to an existing cluster, num_cpus, num_gpus and "
                                 "resources must not be given (the cluster has its own).")
            return _connect(_find_cluster(address), namespace, log_to_driver)
        for key, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{key} must be a non-negative number, got {value!r}")
        if resources is not None and not isinstance(resources, dict):
            raise TypeError(f"resources must be a dict, got {type(resources).__name__}")
        total = {"CPU": float(os.cpu_count() or 1 if num_cpus is None else num_cpus)}
        if num_gpus:
            total["GPU"] = float(num_gpus)
        for k, v in (resources or {}).items():
            if k in ("CPU", "GPU"):
                raise ValueError(f"use num_cpus/num_gpus instead of resources={{{k!r}: ...}}")
            total[k] = float(v)
        total["node:127.0.0.1"] = 1.0            # as Ray: a resource naming the node
        total["node:__internal_head__"] = 1.0
        total["memory"] = float(_memory_bytes())
        total["object_store_memory"] = float(_store_memory(object_store_memory))
        pool = max(1, int(total["CPU"]))
        cluster = LocalCluster(total, pool)
        cluster.start()
        rt = _runtime.Runtime(cluster.node_address, "driver", os.urandom(4),
                              {"log_to_driver": bool(log_to_driver), "namespace": namespace or ""})
        try:
            rt.start(CONFIG.start_timeout_s)
        except BaseException:
            cluster.stop()
            raise
        rt.namespace = namespace or _anonymous_namespace()
        rt.job = [rt.job_id, rt.namespace]
        _cluster = cluster
        _runtime.set_current(rt)
        return _context_of(rt)


def _find_cluster(address: str) -> str:
    """The node socket of a running cluster on this machine: address "auto" (the
    newest), a session directory, or an ipc:// address."""
    if address.startswith("ipc://"):
        return address
    if address == "auto":
        import glob
        import tempfile
        socks = glob.glob(os.path.join(tempfile.gettempdir(), "zray-*", "node.sock"))
        if not socks:
            raise ConnectionError("address='auto': no zray cluster is running on this machine "
                                  f"(no {tempfile.gettempdir()}/zray-*/node.sock); start one "
                                  "with zray.init() in another process")
        return "ipc://" + max(socks, key=os.path.getmtime)
    if os.path.isdir(address):
        return "ipc://" + os.path.join(address, "node.sock")
    raise ValueError(f"address={address!r}: expected 'auto', a zray session directory or an "
                     "ipc:// address (clusters over tcp are not implemented yet)")


def _connect(node_address: str, namespace: str | None, log_to_driver: bool) -> InitContext:
    """Join a running cluster as one more driver (shutdown() then only disconnects)."""
    rt = _runtime.Runtime(node_address, "driver", os.urandom(4),
                          {"log_to_driver": bool(log_to_driver), "namespace": namespace or ""})
    try:
        rt.start(CONFIG.start_timeout_s)
    except RaySystemError as exc:
        raise ConnectionError(f"could not connect to the zray cluster at {node_address}: {exc}") from None
    rt.namespace = namespace or _anonymous_namespace()
    rt.job = [rt.job_id, rt.namespace]
    _runtime.set_current(rt)
    return _context_of(rt)


def _store_memory(requested: Any) -> int:
    """object_store_memory: as asked, else 30% of RAM bounded by /dev/shm's free space."""
    if requested is not None:
        if not isinstance(requested, (int, float)) or isinstance(requested, bool) or requested <= 0:
            raise ValueError(f"object_store_memory must be a positive number of bytes, got {requested!r}")
        return int(requested)
    share = int(_memory_bytes() * 0.3)
    try:
        st = os.statvfs("/dev/shm")
        shm_free = int(st.f_bavail * st.f_frsize * 0.9)
    except OSError:
        shm_free = share
    if shm_free < share:
        from ._log import get_logger
        get_logger("init").warning(
            f"/dev/shm has only {shm_free / 2**30:.1f} GiB free (containers often give 64 MiB); "
            f"the object store is limited to that and spills to disk beyond it. Give the "
            "container a larger /dev/shm (docker run --shm-size=...) for speed.")
    return max(min(share, shm_free), 64 << 20)


def _anonymous_namespace() -> str:
    return "anonymous-" + os.urandom(4).hex()


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 << 30


def _context_of(rt: _runtime.Runtime) -> InitContext:
    return InitContext(address=rt.address, node_id=rt.node_id.hex(),
                       session_dir=rt.node_info.get("session_dir"))


def shutdown() -> None:
    """Stop the embedded cluster and disconnect. Idempotent; also runs at exit."""
    global _cluster
    with _lock:
        rt = _runtime._current
        if rt is not None and rt.kind != "driver":
            return
        _runtime.set_current(None)
        if rt is not None:
            rt.stop()
        if _cluster is not None:
            _cluster.stop()
            _cluster = None


atexit.register(shutdown)


def is_initialized() -> bool:
    """True if this process is connected to a cluster."""
    return _runtime._current is not None


def _runtime_or_init() -> _runtime.Runtime:
    rt = _runtime._current
    if rt is None:
        init()
        rt = _runtime._current
    return rt


def _check_timeout(timeout: Any) -> None:
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
                                or timeout < 0):
        raise ValueError(f"timeout must be None or a non-negative number of seconds, got {timeout!r}")


def get(object_refs: ObjectRef | Sequence[ObjectRef], *, timeout: float | None = None) -> Any:
    """The value(s) of ObjectRef(s); blocks until ready. A list in gives a list out.

    Raises the task's error (a RayTaskError that is also the original type) as soon
    as any of the objects failed, and GetTimeoutError after `timeout` seconds.
    """
    _check_timeout(timeout)
    rt = _runtime_or_init()
    if type(object_refs) is ObjectRef:
        return rt.get([object_refs], timeout)[0]
    if not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"get() expects an ObjectRef or a list of ObjectRefs, got "
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
    return _runtime_or_init().put(value)


def wait(object_refs: list[ObjectRef], *, num_returns: int = 1, timeout: float | None = None,
         fetch_local: bool = True) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """(ready, not_ready): waits until `num_returns` refs are ready or `timeout` passes.
    Both lists keep the input order; `ready` never holds more than num_returns."""
    if isinstance(object_refs, ObjectRef) or not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"wait() expects a list of ObjectRefs, got {type(object_refs).__name__}")
    ids = set()
    for i, ref in enumerate(object_refs):
        if type(ref) is not ObjectRef:
            raise TypeError(f"wait() expects ObjectRefs; item {i} is a {type(ref).__name__}")
        ids.add(ref._id)
    if len(ids) != len(object_refs):
        raise ValueError("wait() requires a list of unique object refs.")
    if not isinstance(num_returns, int) or isinstance(num_returns, bool) or num_returns < 1:
        raise ValueError(f"Invalid number of objects to return {num_returns!r}; it must be >= 1.")
    if num_returns > len(object_refs):
        raise ValueError(f"num_returns ({num_returns}) cannot be greater than the number of "
                         f"objects provided ({len(object_refs)}).")
    _check_timeout(timeout)
    return _runtime_or_init().wait(list(object_refs), num_returns, timeout, fetch_local)


def kill(actor: Any, *, no_restart: bool = True) -> None:
    """Kill an actor at once (its running and queued calls fail with ActorDiedError)."""
    from .actor import ActorHandle
    if not isinstance(actor, ActorHandle):
        raise ValueError(f"zray.kill() only supports actors; got {type(actor).__name__}")
    _runtime_or_init().kill_actor(actor._actor_id, bool(no_restart))


def cancel(object_ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that makes `object_ref`; get() on it then raises TaskCancelledError.
    A running task is interrupted (force=True kills its worker)."""
    if type(object_ref) is not ObjectRef:
        raise TypeError(f"cancel() expects an ObjectRef, got {type(object_ref).__name__}")
    _runtime_or_init().cancel(object_ref._id[:16], bool(force))


def get_actor(name: str, namespace: str | None = None) -> Any:
    """The handle of the live actor called `name` (in `namespace`, default: this job's)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"get_actor() needs a non-empty actor name, got {name!r}")
    from . import _serialization as S
    rt = _runtime_or_init()
    blob = rt.head_call("get_actor", [name, namespace if namespace is not None else rt.namespace])
    return S.loads(blob)


def get_gpu_ids() -> list:
    """The GPU ids assigned to the current task or actor ([] in the driver)."""
    ctx = current_context()
    return list(ctx.gpus) if ctx is not None else []


def nodes() -> list[dict]:
    """One dict per node, with Ray's keys (NodeID, Alive, Resources, ...)."""
    return _runtime_or_init().head_call("nodes", [])


def cluster_resources() -> dict:
    """The total resources of the live nodes."""
    return _runtime_or_init().head_call("cluster_resources", [])


def available_resources() -> dict:
    """The resources not in use right now (as last reported by the nodes)."""
    return _runtime_or_init().head_call("available_resources", [])


def remote(*args: Any, **options: Any) -> Any:
    """Make a function a task or a class an actor: `@remote`, `remote(f)`, `@remote(num_cpus=2)`."""
    from ._remote_function import RemoteFunction
    from .actor import ActorClass

    def make(target: Any) -> Any:
        if isinstance(target, type):
            return ActorClass(target, options)
        if callable(target):
            return RemoteFunction(target, options)
        raise TypeError(f"@remote applies to functions and classes, not {type(target).__name__}")

    if len(args) == 1 and not options and callable(args[0]):
        return make(args[0])
    if args:
        raise TypeError("@remote takes keyword options only, e.g. @remote(num_cpus=2)")
    return make
