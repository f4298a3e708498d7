"""init() and shutdown(): start or join a cluster and connect this process to it, and the
runtime every other call uses (started on first use, as Ray does)."""
from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from . import _context, _node_resources, _runtime, _session
from ._cluster import LocalCluster
from ._config import CONFIG
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

    def __enter__(self) -> InitContext:
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
        if _context.runtime() is not None:
            if ignore_reinit_error:
                return _context_of(_context.runtime())
            raise RuntimeError("Maybe you called zray.init twice by accident? This error can be "
                               "suppressed by passing in 'ignore_reinit_error=True' or by calling "
                               "'zray.shutdown()' prior to 'zray.init()'.")
        if address is None:
            address = os.environ.get("ZRAY_ADDRESS") or None
        if address not in (None, "local"):
            if num_cpus is not None or num_gpus is not None or resources is not None:
                raise ValueError("When connecting to an existing cluster, num_cpus, num_gpus and "
                                 "resources must not be given (the cluster has its own).")
            return _connect(_session.find(address), namespace, log_to_driver)
        total = _node_resources.with_defaults(
            _node_resources.requested(num_cpus, num_gpus, resources, object_store_memory),
            "127.0.0.1", head=True)
        pool = max(1, int(total["CPU"]))
        cluster = LocalCluster(total, pool)
        cluster.start()
        rt = _runtime.Runtime(cluster.node_address, "driver", os.urandom(4), cluster.node_id,
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


def _connect(node: _session.NodeInfo, namespace: str | None, log_to_driver: bool) -> InitContext:
    """Join a running cluster as one more driver, through this machine's node of it
    (shutdown() then only disconnects)."""
    rt = _runtime.Runtime(node.address, "driver", os.urandom(4), node.node_id,
                          {"log_to_driver": bool(log_to_driver), "namespace": namespace or ""})
    try:
        rt.start(CONFIG.start_timeout_s)
    except RaySystemError as exc:
        raise ConnectionError(f"could not connect to the zray cluster at {node.address}: {exc}") from None
    rt.namespace = namespace or _anonymous_namespace()
    rt.job = [rt.job_id, rt.namespace]
    _runtime.set_current(rt)
    return _context_of(rt)


def _anonymous_namespace() -> str:
    return "anonymous-" + os.urandom(4).hex()


def _context_of(rt: _runtime.Runtime) -> InitContext:
    return InitContext(address=rt.address, node_id=rt.node_id.hex(),
                       session_dir=rt.node_info.get("session_dir"))


def shutdown() -> None:
    """Stop the embedded cluster and disconnect. Idempotent; also runs at exit."""
    global _cluster
    with _lock:
        rt = _context.runtime()
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
    return _context.runtime() is not None


_context._initializer[0] = init
runtime_or_init = _context.runtime_or_init
