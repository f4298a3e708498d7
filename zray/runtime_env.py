"""RuntimeEnv, as ray.runtime_env: a runtime_env given as an object instead of a dict.

>>> zray.init(runtime_env=RuntimeEnv(env_vars={"MODE": "test"}, working_dir="."))

zray supports env_vars, working_dir and py_modules (local directories and .py files,
also per task or actor), excludes and config; other keys raise ValueError.
"""
from __future__ import annotations

from typing import Any

__all__ = ["RuntimeEnv", "RuntimeEnvConfig"]


class RuntimeEnvConfig(dict):
    """Options of how an env is set up (Ray's setup_timeout_seconds, eager_install):
    accepted, and not needed by zray (its setup is unpacking a zip)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)


class RuntimeEnv(dict):
    """A runtime_env: RuntimeEnv(env_vars=..., working_dir=..., py_modules=...); a dict
    with those keys (checked where it is used: init() or .options())."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__({k: v for k, v in kwargs.items() if v is not None})
