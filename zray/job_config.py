"""JobConfig: what init(job_config=...) says about the driver's job (as ray.job_config).

zray uses: runtime_env (as init's runtime_env=; init's own wins if both are given),
ray_namespace (as init's namespace=; init's own wins), metadata (a dict of str to str,
shown by zray.util.state.list_jobs()), default_actor_lifetime ("detached" makes the
actors this driver creates detached unless they say lifetime=; actors created inside
tasks keep their own default, non_detached). jvm_options and _py_driver_sys_path
are accepted and unused (no Java workers; workers import as the driver's session
does); _disable_job_level_lineage_reconstruction changes nothing (zray keeps no lineage).
code_search_path is refused when not empty: ship code with runtime_env's working_dir
or py_modules instead.
"""
from __future__ import annotations

from typing import Any

__all__ = ["JobConfig"]

LIFETIMES = ("detached", "non_detached")


class JobConfig:
    """The configuration of a job: `zray.init(job_config=JobConfig(metadata={"team":
    "search"}, runtime_env={"env_vars": {"MODE": "prod"}}))`."""

    def __init__(self, jvm_options: list[str] | None = None,
                 code_search_path: list[str] | None = None, runtime_env: dict | None = None,
                 _client_job: bool = False, metadata: dict | None = None,
                 ray_namespace: str | None = None, default_actor_lifetime: str = "non_detached",
                 _disable_job_level_lineage_reconstruction: bool = False,
                 _py_driver_sys_path: list[str] | None = None) -> None:
        self.jvm_options = list(jvm_options or [])
        search = code_search_path or []
        if not isinstance(search, (list, tuple)):
            raise TypeError(f"The type of code search path is incorrect: {type(code_search_path)}")
        self.code_search_path = list(search)
        self._client_job = _client_job
        self.metadata: dict = {}
        for key, value in (metadata or {}).items():
            self.set_metadata(key, value)
        self.ray_namespace: str | None = None
        if ray_namespace is not None:
            self.set_ray_namespace(ray_namespace)
        self.set_runtime_env(runtime_env)
        self.set_default_actor_lifetime(default_actor_lifetime)
        self._disable_job_level_lineage_reconstruction = _disable_job_level_lineage_reconstruction
        self._py_driver_sys_path = list(_py_driver_sys_path or [])
        self.py_logging_config: Any = None

    def set_metadata(self, key: str, value: str) -> None:
        """Set one metadata entry (both strings, as Ray's protobuf field needs)."""
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"JobConfig metadata maps str to str, got {key!r}: {value!r}")
        self.metadata[key] = value

    def set_runtime_env(self, runtime_env: dict | None, validate: bool = False) -> None:
        if runtime_env is not None and not isinstance(runtime_env, dict):
            raise TypeError(f"runtime_env must be a dict, got {type(runtime_env).__name__}")
        self.runtime_env = dict(runtime_env) if runtime_env is not None else {}
        if validate:
            from . import _runtime_env
            _runtime_env.validate(self.runtime_env, "JobConfig")

    def set_ray_namespace(self, ray_namespace: str) -> None:
        if not isinstance(ray_namespace, str):
            raise TypeError(f"ray_namespace must be a str, got {type(ray_namespace).__name__}")
        self.ray_namespace = ray_namespace

    def set_default_actor_lifetime(self, default_actor_lifetime: str) -> None:
        if default_actor_lifetime not in LIFETIMES:
            raise ValueError("Default actor lifetime must be one of `detached`, `non_detached`")
        self.default_actor_lifetime = default_actor_lifetime

    def set_py_logging_config(self, logging_config: Any = None) -> None:
        """Not supported: zray does not configure the workers' logging."""
        if logging_config is not None:
            raise NotImplementedError("zray does not apply a logging config to workers "
                                      "(JobConfig.set_py_logging_config)")

    @classmethod
    def from_json(cls, job_config_json: dict) -> JobConfig:
        return cls(jvm_options=job_config_json.get("jvm_options"),
                   code_search_path=job_config_json.get("code_search_path"),
                   runtime_env=job_config_json.get("runtime_env"),
                   metadata=job_config_json.get("metadata"),
                   ray_namespace=job_config_json.get("ray_namespace"),
                   default_actor_lifetime=job_config_json.get("default_actor_lifetime",
                                                              "non_detached"))

    def __repr__(self) -> str:
        return (f"JobConfig(runtime_env={self.runtime_env!r}, metadata={self.metadata!r}, "
                f"ray_namespace={self.ray_namespace!r}, "
                f"default_actor_lifetime={self.default_actor_lifetime!r})")


def apply(job_config: Any, namespace: str | None, runtime_env: Any) -> tuple[str | None, Any, dict]:
    """init()'s (namespace, runtime_env, job info for the driver's hello) once its
    job_config is taken into account: init's own namespace and runtime_env win."""
    if job_config is None:
        return namespace, runtime_env, {}
    if not isinstance(job_config, JobConfig):
        raise TypeError(f"job_config must be a zray.job_config.JobConfig, got "
                        f"{type(job_config).__name__}")
    if job_config.code_search_path:
        raise ValueError("JobConfig(code_search_path=...) is not supported by zray: ship the "
                         "code with runtime_env={'working_dir': ...} or {'py_modules': [...]}")
    if namespace is None:
        namespace = job_config.ray_namespace
    if runtime_env is None and job_config.runtime_env:
        runtime_env = job_config.runtime_env
    info = {"metadata": dict(job_config.metadata),
            "default_actor_lifetime": job_config.default_actor_lifetime}
    return namespace, runtime_env, info
