"""init() and shutdown(): start or join a cluster and connect this process to it, and the
runtime every other call uses (started on first use, as Ray does)."""
from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from typing import Any

from . import _context, _metrics, _node_resources, _runtime, _runtime_env, _session
from ._cluster import LocalCluster
from ._config import CONFIG
from .exceptions import RaySystemError

_lock = threading.RLock()
_cluster: LocalCluster | None = None
_IGNORED_INIT_KWARGS = {
    "logging_level", "logging_format",
    "configure_logging", "log_to_driver_level", "_system_config", "_temp_dir",
    "_memory", "storage", "_node_ip_address",
    "_plasma_directory", "labels", "enable_resource_isolation", "_enable_object_reconstruction",
    "_redis_password", "logging_config", "_metrics_export_port", "_tracing_startup_hook",
}


class InitContext(dict):
    """What init() returns: a dict with the cluster's addresses (Ray's RayContext-like)."""

    @property
    def address_info(self) -> dict:
        return dict(self)

    @property
    def dashboard_url(self) -> str | None:
        """host:port of the dashboard (as Ray's, without http://); None if it is off."""
        return self.get("webui_url") or None

    def disconnect(self) -> None:
        shutdown()

    def __enter__(self) -> InitContext:
        return self

    def __exit__(self, *exc: Any) -> None:
        shutdown()


def init(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None,
         resources: dict | None = None, namespace: str | None = None,
         ignore_reinit_error: bool = False, log_to_driver: bool = True,
         object_store_memory: int | None = None, include_dashboard: bool | None = None,
         dashboard_host: str = "127.0.0.1", dashboard_port: int | None = None,
         **kwargs: Any) -> InitContext:
    """Start the embedded local cluster (head broker, node broker, `num_cpus` workers)
    and connect this process to it. Returns once the cluster can take work.

    The head serves a dashboard (pages, JSON API, /metrics) at dashboard_host:dashboard_port
    (127.0.0.1: this machine only; 8265 or the next free port), said in dashboard_url.

    >>> zray.init(num_cpus=2)
    """
    global _cluster
    say = _says(kwargs.get("logging_level", logging.INFO))
    namespace, job_info = _job_config(kwargs, namespace)
    local_mode, runtime_env = _job_kwargs(kwargs)
    unknown = set(kwargs) - _IGNORED_INIT_KWARGS
    if unknown:
        raise TypeError(f"init() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    with _lock:
        if _context.runtime() is not None:
            if ignore_reinit_error:
                return _context_of(_context.runtime(), _cluster.dashboard_url if _cluster else None)
            raise RuntimeError("Maybe you called zray.init twice by accident? This error can be "
                               "suppressed by passing in 'ignore_reinit_error=True' or by calling "
                               "'zray.shutdown()' prior to 'zray.init()'.")
        if address is None:
            address = os.environ.get("ZRAY_ADDRESS") or None
        if address not in (None, "local"):
            if num_cpus is not None or num_gpus is not None or resources is not None:
                raise ValueError("When connecting to an existing cluster, num_cpus, num_gpus and "
                                 "resources must not be given (the cluster has its own).")
            return _job_options(runtime_env, local_mode,
                                _connect(_session.find(address), namespace, log_to_driver, job_info,
                                         say=say))
        total = _node_resources.with_defaults(
            _node_resources.requested(num_cpus, num_gpus, resources, object_store_memory),
            "127.0.0.1", head=True)
        pool = max(1, int(total["CPU"]))
        cluster = LocalCluster(total, pool, _dashboard(include_dashboard, dashboard_host,
                                                       dashboard_port))
        cluster.start()
        rt = _runtime.Runtime(cluster.node_address, "driver", os.urandom(4), cluster.node_id,
                              {"log_to_driver": bool(log_to_driver), "namespace": namespace or "",
                               **job_info})
        try:
            rt.start(CONFIG.start_timeout_s)
        except BaseException:
            cluster.stop()
            raise
        rt.namespace = namespace or _anonymous_namespace()
        rt.job = [rt.job_id, rt.namespace]
        _cluster = cluster
        _runtime.set_current(rt)
        _job_options(runtime_env, local_mode, None)
        if say:   # (as Ray says it)
            print("Started a local zray instance." + _view(cluster.dashboard_url), file=sys.stderr)
        return _context_of(rt, cluster.dashboard_url)


def _says(level: Any) -> bool:
    """Whether init() says what it started or joined: Ray logs that at INFO, so a
    logging_level above it (logging.WARNING, "WARNING") keeps init() quiet, as Ray's."""
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    return not isinstance(level, int) or level <= logging.INFO


def _view(dashboard_url: str | None) -> str:
    return f" View the dashboard at {dashboard_url}" if dashboard_url else ""


def _dashboard(include: Any, host: str, port: Any) -> tuple | None:
    """Where the head serves its dashboard: (host, port or None), or None for none."""
    if include not in (None, True, False):
        raise TypeError(f"include_dashboard must be True, False or None, got {include!r}")
    return None if include is False else (host, port)


def _connect(node: _session.NodeInfo, namespace: str | None, log_to_driver: bool,
             job_info: dict | None = None, *, say: bool = False) -> InitContext:
    """Join a running cluster as one more driver, through this machine's node of it
    (shutdown() then only disconnects); `say`: tell which one, as Ray does."""
    rt = _runtime.Runtime(node.address, "driver", os.urandom(4), node.node_id,
                          {"log_to_driver": bool(log_to_driver), "namespace": namespace or "",
                           **(job_info or {})})
    try:
        rt.start(CONFIG.start_timeout_s)
    except RaySystemError as exc:
        raise ConnectionError(f"could not connect to the zray cluster at {node.address}: {exc}") from None
    rt.namespace = namespace or _anonymous_namespace()
    rt.job = [rt.job_id, rt.namespace]
    _runtime.set_current(rt)
    try:
        url = rt.head_call("dashboard_url", [], timeout=5.0) or None
    except Exception:   # a head without the call (or slow): no dashboard to name
        url = None
    if say:   # its head's address (tcp), or the session of a cluster init() started
        at = node.head.removeprefix("tcp://") if node.head.startswith("tcp://") else node.session_dir
        print(f"Connected to the zray cluster at {at}." + _view(url), file=sys.stderr)
    return _context_of(rt, url)


def _job_config(kwargs: dict, namespace: str | None) -> tuple[str | None, dict]:
    """init()'s job_config taken out of kwargs: the namespace, kwargs' runtime_env (init's
    own win), and what the driver tells its node about its job (zray.job_config)."""
    from . import job_config
    runtime_env = kwargs.get("runtime_env")
    namespace, runtime_env, info = job_config.apply(kwargs.pop("job_config", None), namespace,
                                                    runtime_env)
    if runtime_env is not None:
        kwargs["runtime_env"] = runtime_env
    info["entrypoint"] = " ".join([sys.executable, *sys.argv])[:4000]
    info["start_time"] = time.time()
    return namespace, info


def _job_kwargs(kwargs: dict) -> tuple[Any, _runtime_env.EnvSpec | None]:
    """init()'s local_mode and runtime_env (checked before anything starts), taken out."""
    return (kwargs.pop("local_mode", False),
            _runtime_env.validate(kwargs.pop("runtime_env", None), "zray.init()"))


def _job_options(runtime_env: _runtime_env.EnvSpec | None, local_mode: Any,
                 ctx: InitContext | None) -> Any:
    """The job's runtime_env (every task and actor of the job runs with it) and local
    mode (they all run in this process: _local_mode.py), on the new runtime; ctx."""
    rt = _context.runtime()
    try:
        if runtime_env is not None:
            rt.job = _runtime_env.job_for(rt, runtime_env)
        if local_mode:
            from . import _local_mode
            _local_mode.enable(rt)
    except BaseException:
        shutdown()
        raise
    return ctx


def _anonymous_namespace() -> str:
    return "anonymous-" + os.urandom(4).hex()


def _context_of(rt: _runtime.Runtime, dashboard_url: str | None = None) -> InitContext:
    return InitContext(address=rt.address, node_id=rt.node_id.hex(),
                       session_dir=rt.node_info.get("session_dir"),
                       webui_url=dashboard_url.removeprefix("http://") if dashboard_url else None)


def shutdown() -> None:
    """Stop the embedded cluster and disconnect. Idempotent; also runs at exit."""
    global _cluster
    with _lock:
        rt = _context.runtime()
        if rt is not None and rt.kind != "driver":
            return
        _runtime.set_current(None)
        if rt is not None:
            _metrics.REGISTRY.flush(rt)   # (zray.util.metrics the driver recorded, if any)
            rt.stop()
        if _cluster is not None:
            _cluster.stop()
            _cluster = None


def _at_exit() -> None:
    """At interpreter exit: the tasks and calls the driver made get up to
    CONFIG.exit_grace_s to finish (a script whose last line is f.remote() runs f, as in
    Ray), then shutdown(). An explicit shutdown() does not wait."""
    rt = _context.runtime()
    if rt is not None and rt.kind == "driver" and getattr(rt, "owner", None) is not None:
        try:
            rt.drain(CONFIG.exit_grace_s)
        except Exception:   # (exiting anyway)
            pass
    shutdown()


atexit.register(_at_exit)


def is_initialized() -> bool:
    """True if this process is connected to a cluster."""
    return _context.runtime() is not None


_context._initializer[0] = init
runtime_or_init = _context.runtime_or_init
