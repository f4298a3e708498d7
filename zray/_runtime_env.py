"""runtime_env: environment variables, a working directory and Python modules for the
tasks and actors of a job (zray.init(runtime_env=...)) or of one task or actor
(.options(runtime_env=...)), as Ray's (which ships local directories only per job).

    validate()  at init()/options(): a clear error for a bad value or a key zray lacks
    job_for()   at .remote(): the spec's job field [job_id, namespace, env] -- the env
                merged over its parent's (the job's, or the task's that submits it: a
                task's children inherit its env) and each directory zipped once,
                content-addressed, put in the object store (the descriptor carries
                its hash and ref)
    run_in() / apply()  in the worker: the env set around the task, then undone

Why around each task, not a worker per env (Ray's way): the job field carries the
env, so a task without one pays a single None check in the worker (adopt_job) and
nothing anywhere else; workers and leases stay keyed by resources alone (no change
to the node's scheduler), and a warm worker serves every env. What a task changes is
undone after it: the variables, the working directory, sys.path, and the modules it
imported from the env's directories. An actor keeps its env for its life.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import threading
import types
import weakref
import zipfile
from collections.abc import Callable
from fnmatch import fnmatch
from typing import Any

from ._config import CONFIG
from .exceptions import RuntimeEnvSetupError

__all__ = ["EnvSpec", "apply", "job_for", "run_in", "validate", "view"]

_SUPPORTED = ("env_vars", "working_dir", "py_modules", "excludes", "config")
_RAY_ONLY = {   # Ray's keys zray does not support, and what to do instead
    "pip": "install the packages on every node", "conda": "activate the environment "
    "on every node before zray starts", "uv": "install the packages on every node",
    "container": "start the nodes in the container", "image_uri": "start the nodes in "
    "the image", "java_jars": "zray runs Python only", "py_executable": "start the "
    "nodes with that interpreter", "nsight": "profile the workers yourself", "mpi": "",
    "rocprof_sys": "", "worker_process_setup_hook": "run the setup at the start of "
    "your tasks", "_inject_current_ray": "",
}


class EnvSpec:
    """A validated runtime_env: absolute paths, and a key naming its content."""
    __slots__ = ("env_vars", "working_dir", "py_modules", "excludes", "key")

    def __init__(self, env_vars: dict, working_dir: str | None, py_modules: list,
                 excludes: list) -> None:
        self.env_vars, self.working_dir = env_vars, working_dir
        self.py_modules, self.excludes = py_modules, excludes
        self.key = json.dumps([env_vars, working_dir, py_modules, excludes], sort_keys=True)


def validate(env: Any, what: str) -> EnvSpec | None:
    """`env` checked (TypeError/ValueError naming the fault); None if it asks nothing."""
    if env is None:
        return None
    if isinstance(env, EnvSpec):
        return env
    if not isinstance(env, dict):
        raise TypeError(f"runtime_env must be a dict, got {type(env).__name__} for {what}.")
    for key in env:
        if key in _RAY_ONLY:
            hint = f": {_RAY_ONLY[key]}" if _RAY_ONLY[key] else ""
            raise ValueError(f"runtime_env key {key!r} is not supported by zray (for {what}); "
                             f"it supports {', '.join(_SUPPORTED)}{hint}.")
        if key not in _SUPPORTED:
            raise ValueError(f"unknown runtime_env key {key!r} for {what}; zray supports "
                             f"{', '.join(_SUPPORTED)}.")
    env_vars = env.get("env_vars") or {}
    if not isinstance(env_vars, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()):
        raise TypeError(f"runtime_env['env_vars'] must be a dict of str to str for {what}, got "
                        f"{env_vars!r:.200}")
    excludes = env.get("excludes") or []
    if not isinstance(excludes, (list, tuple)) or not all(isinstance(p, str) for p in excludes):
        raise TypeError(f"runtime_env['excludes'] must be a list of patterns (str) for {what}.")
    working_dir = env.get("working_dir")
    if working_dir is not None:
        working_dir = _local_path(working_dir, "working_dir", what, dirs_only=True)
    modules = env.get("py_modules") or []
    if not isinstance(modules, (list, tuple)):
        raise TypeError(f"runtime_env['py_modules'] must be a list of paths or modules for {what}.")
    py_modules = [_local_path(_module_path(m), "py_modules", what, dirs_only=False)
                  for m in modules]
    if not (env_vars or working_dir or py_modules):
        return None
    return EnvSpec(dict(env_vars), working_dir, py_modules, list(excludes))


def _module_path(module: Any) -> Any:
    if isinstance(module, types.ModuleType):
        paths = getattr(module, "__path__", None)
        return next(iter(paths)) if paths else module.__file__
    return module


def _local_path(path: Any, key: str, what: str, dirs_only: bool) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"runtime_env[{key!r}] wants local paths, got {type(path).__name__} "
                        f"for {what}.")
    text = os.fspath(path)
    if "://" in text or text.endswith((".zip", ".whl")):
        raise ValueError(f"runtime_env[{key!r}] = {text!r} for {what}: zray ships local "
                         "directories (and .py files) only, not URIs, zip or wheel files.")
    full = os.path.abspath(os.path.expanduser(text))
    if not os.path.isdir(full) and (dirs_only or not full.endswith(".py") or not os.path.isfile(full)):
        kind = "directory" if dirs_only else "directory or .py file"
        raise ValueError(f"runtime_env[{key!r}] = {text!r} for {what} is not an existing local {kind}.")
    return full


# -- the driver (or whoever submits): descriptors, zipped directories ----------------

class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.packages: dict[tuple, list] = {}   # (path, excludes) -> [hash, ref binary]
        self.refs: list = []                    # the zips' refs: held while this process runs
        self.jobs: dict[tuple, list] = {}       # (parent job, env key) -> job field


_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # runtime -> _Cache


def job_for(rt: Any, spec: EnvSpec) -> list:
    """The job field of a task or actor submitted here with runtime_env `spec`: the job
    this process runs for, with `spec` merged over the env it runs with (a child's keys
    win; env_vars merge, a child's value winning)."""
    parent = rt.job
    pdesc = parent[2] if len(parent) > 2 else None
    key = (parent[0], parent[1], pdesc["id"] if pdesc else "", spec.key)
    cache = _caches.get(rt)
    if cache is None:
        cache = _caches.setdefault(rt, _Cache())
    job = cache.jobs.get(key)
    if job is None:
        desc = _merge(pdesc, _describe(rt, cache, spec))
        job = cache.jobs[key] = [parent[0], parent[1], desc] if desc else [parent[0], parent[1]]
    return job


def _describe(rt: Any, cache: _Cache, spec: EnvSpec) -> dict:
    desc: dict[str, Any] = {}
    if spec.env_vars:
        desc["env_vars"] = spec.env_vars
    if spec.working_dir:
        desc["working_dir"] = _package(rt, cache, spec.working_dir, spec.excludes, False)
    if spec.py_modules:
        desc["py_modules"] = [_package(rt, cache, p, spec.excludes, True) for p in spec.py_modules]
    return desc


def _merge(parent: dict | None, child: dict) -> dict | None:
    out = {k: v for k, v in (parent or {}).items() if k != "id"}
    for k, v in child.items():
        out[k] = {**out.get("env_vars", {}), **v} if k == "env_vars" else v
    if not out:
        return None
    ident = [out.get("env_vars"), (out.get("working_dir") or [None])[0],
             [m[0] for m in out.get("py_modules", ())]]
    out["id"] = hashlib.blake2b(json.dumps(ident, sort_keys=True).encode(), digest_size=8).hexdigest()
    return out


def _package(rt: Any, cache: _Cache, path: str, excludes: list, as_module: bool) -> list:
    """[content hash, ObjectRef binary] of `path` zipped (once per process)."""
    key = (path, tuple(excludes), as_module)
    with cache.lock:
        pkg = cache.packages.get(key)
        if pkg is None:
            data = zip_path(path, excludes, as_module)
            ref = rt.owner.put(data)
            cache.refs.append(ref)
            pkg = cache.packages[key] = [hashlib.blake2b(data, digest_size=16).hexdigest(),
                                         ref.binary()]
    return pkg


def zip_path(path: str, excludes: list, as_module: bool) -> bytes:
    """`path` as a zip with stable bytes (sorted, fixed times: the same files give the
    same hash); a module's zip holds the directory (or file) itself at its root.
    ValueError past CONFIG.runtime_env_max_bytes of files."""
    base = os.path.dirname(path) if as_module else path
    buf, total = io.BytesIO(), 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for full in _files(path, base, excludes):
            rel = os.path.relpath(full, base)
            total += os.path.getsize(full)
            if total > CONFIG.runtime_env_max_bytes:
                raise ValueError(
                    f"runtime_env: {path} holds more than {CONFIG.runtime_env_max_bytes >> 20} MiB "
                    f"of files (at {rel}); zray ships it to every worker. Leave large files out "
                    "with runtime_env={'excludes': [...]}, pass data through zray.put() or a "
                    "shared file system, or raise ZRAY_RUNTIME_ENV_MAX_BYTES.")
            info = zipfile.ZipInfo(rel, (1980, 1, 1, 0, 0, 0))
            info.external_attr = (os.stat(full).st_mode & 0o777) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(full, "rb") as f:
                zf.writestr(info, f.read())
    return buf.getvalue()


def _files(path: str, base: str, excludes: list) -> list[str]:
    def excluded(full: str) -> bool:
        rel = os.path.relpath(full, base)
        return any(fnmatch(rel, p) or fnmatch(os.path.basename(rel), p) or fnmatch(rel, p.rstrip("/") + "/*")
                   for p in excludes)
    if os.path.isfile(path):
        return [] if excluded(path) else [path]
    out: list[str] = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not excluded(os.path.join(root, d)))
        out.extend(os.path.join(root, f) for f in sorted(files) if not excluded(os.path.join(root, f)))
    return out


def view(job: list | None) -> dict:
    """The runtime env a job field carries, as get_runtime_context().runtime_env shows it
    (directories by their content's URI, as in Ray)."""
    desc = job[2] if job is not None and len(job) > 2 else None
    if not desc:
        return {}
    out: dict[str, Any] = {}
    if desc.get("env_vars"):
        out["env_vars"] = dict(desc["env_vars"])
    if desc.get("working_dir"):
        out["working_dir"] = f"zray://_zray_pkg_{desc['working_dir'][0]}.zip"
    if desc.get("py_modules"):
        out["py_modules"] = [f"zray://_zray_pkg_{m[0]}.zip" for m in desc["py_modules"]]
    return out


# -- the worker: set around a task, or for an actor's life ------------------------

_unpacked: dict[str, str] = {}   # content hash -> where this process found it unpacked


def run_in(env: dict, rt: Any, ex: Any, spec: list, target: Callable[[], Any]) -> None:
    """ex.run(spec, target) with `env` set, undone after; if it cannot be set, the task
    fails with RuntimeEnvSetupError."""
    try:
        undo = apply(rt, env)
    except RuntimeEnvSetupError as exc:
        ex.fail(spec, exc)
        return
    try:
        ex.run(spec, target)
    finally:
        undo()


def apply(rt: Any, env: Any) -> Callable[[], None]:
    """Set `env` (a job field's descriptor) in this process; returns what undoes it."""
    if type(env) is not dict:
        raise RuntimeEnvSetupError(f"a malformed runtime_env descriptor: {env!r:.200}")
    session = rt.node_info.get("session_dir") or ""
    try:
        dirs = ([_unpack(rt, session, env["working_dir"])] if env.get("working_dir") else [])
        dirs += [_unpack(rt, session, m) for m in env.get("py_modules") or ()]
    except RuntimeEnvSetupError:
        raise
    except Exception as exc:
        raise RuntimeEnvSetupError(f"could not set up the runtime_env's files: {exc!r}") from exc
    saved = {k: os.environ.get(k) for k in env.get("env_vars") or {}}
    os.environ.update(env.get("env_vars") or {})
    cwd = None
    if env.get("working_dir"):
        cwd = os.getcwd()
        os.chdir(dirs[0])
    sys.path[:0] = dirs

    def undo() -> None:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if cwd is not None:
            os.chdir(cwd)
        for d in dirs:
            if d in sys.path:
                sys.path.remove(d)
        if dirs:   # what it imported from them must not serve the next task's imports
            for name, mod in list(sys.modules.items()):
                f = getattr(mod, "__file__", None) or ""
                if f and any(f.startswith(d + os.sep) for d in dirs):
                    del sys.modules[name]
    return undo


def _unpack(rt: Any, session: str, pkg: Any) -> str:
    """The directory where package `pkg` ([hash, ref binary]) is unpacked on this node
    (fetched and unpacked by the first process of the node that needs it)."""
    if type(pkg) is not list or len(pkg) != 2 or type(pkg[0]) is not str or type(pkg[1]) is not bytes:
        raise RuntimeEnvSetupError(f"a malformed runtime_env package: {pkg!r:.200}")
    digest = pkg[0]
    if not all(c in "0123456789abcdef" for c in digest):
        raise RuntimeEnvSetupError(f"a malformed runtime_env package hash: {digest!r:.80}")
    where = _unpacked.get(digest)
    if where is not None:
        return where
    root = os.path.join(session or os.getcwd(), "runtime_resources")
    where = os.path.join(root, digest)
    if not os.path.isdir(where):
        from ._object_ref import ObjectRef
        data = rt.get([ObjectRef(pkg[1])], 60.0)[0]
        os.makedirs(root, exist_ok=True)
        tmp = f"{where}.{os.getpid()}.part"
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            zf.extractall(tmp)
            for info in zf.infolist():   # (extractall drops the modes: scripts stay runnable)
                mode = info.external_attr >> 16
                if mode:
                    os.chmod(os.path.join(tmp, info.filename), mode)
        try:
            os.rename(tmp, where)
        except OSError:   # another process of this node unpacked it first
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    _unpacked[digest] = where
    return where
