"""What a node offers: CPUs, GPUs and custom resources as the user gives them (checked
here, for init(), `zray start` and zray.testing alike), and the defaults a node adds:
its memory, its object store's share of /dev/shm, and Ray's `node:<ip>` resource."""
from __future__ import annotations

import os
from typing import Any

from ._log import get_logger

# The object store takes this share of RAM by default, bounded by /dev/shm's free space
# (with this margin), and at least this much.
STORE_SHARE_OF_RAM = 0.3
SHM_MARGIN = 0.9
MIN_STORE_BYTES = 64 << 20


def _number(key: str, value: Any) -> None:
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                              or value < 0):
        raise ValueError(f"{key} must be a non-negative number, got {value!r}")


def requested(num_cpus: Any, num_gpus: Any, resources: Any,
              object_store_memory: Any = None) -> dict:
    """The resources a user asks a node to offer, checked; CPUs default to this machine's."""
    _number("num_cpus", num_cpus)
    _number("num_gpus", num_gpus)
    if resources is not None and not isinstance(resources, dict):
        raise TypeError(f"resources must be a dict, got {type(resources).__name__}")
    total = {"CPU": float(os.cpu_count() or 1 if num_cpus is None else num_cpus)}
    if num_gpus:
        total["GPU"] = float(num_gpus)
    for k, v in (resources or {}).items():
        if k in ("CPU", "GPU"):
            raise ValueError(f"use num_cpus/num_gpus instead of resources={{{k!r}: ...}}")
        _number(f"resource {k!r}", v)
        total[k] = float(v)
    if object_store_memory is not None:
        if not isinstance(object_store_memory, (int, float)) or isinstance(object_store_memory, bool) \
                or object_store_memory <= 0:
            raise ValueError("object_store_memory must be a positive number of bytes, got "
                             f"{object_store_memory!r}")
        total["object_store_memory"] = float(int(object_store_memory))
    return total


def with_defaults(total: dict, ip: str, head: bool) -> dict:
    """`total` plus what the node adds by itself (computed where it runs: /dev/shm is the
    node's own)."""
    out = dict(total)
    out[f"node:{ip}"] = 1.0                    # as Ray: a resource naming the node
    if head:
        out["node:__internal_head__"] = 1.0
    out.setdefault("memory", float(memory_bytes()))
    out.setdefault("object_store_memory", float(store_memory()))
    return out


def store_memory() -> int:
    """The default object store size: a share of RAM bounded by /dev/shm's free space."""
    share = int(memory_bytes() * STORE_SHARE_OF_RAM)
    try:
        st = os.statvfs("/dev/shm")
        shm_free = int(st.f_bavail * st.f_frsize * SHM_MARGIN)
    except OSError:
        shm_free = share
    if shm_free < share:
        get_logger("init").warning(
            f"/dev/shm has only {shm_free / 2**30:.1f} GiB free (containers often give 64 MiB); "
            f"the object store is limited to that and spills to disk beyond it. Give the "
            "container a larger /dev/shm (docker run --shm-size=...) for speed.")
    return max(min(share, shm_free), MIN_STORE_BYTES)


def memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 << 30
