"""Resources as people read them, in warnings, `zray status` and the dashboard: sizes
in binary units and counts as Ray's `ray status` writes them ("0B/23.54GiB memory",
"1.0/2.0 CPU"), without the keys that only the scheduler uses (node:<ip>,
node:__internal_head__, a placement group's renamed resources). cluster_resources()
and available_resources() keep Ray's raw dicts (floats of bytes, every key)."""
from __future__ import annotations

from collections.abc import Mapping

from ._strategies import BUNDLE, is_group_resource

SIZES = frozenset({"memory", "object_store_memory"})   # resources counted in bytes
_UNITS = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def size(n: float) -> str:
    """Bytes in the largest binary unit they reach, as Ray's format_memory: 23.54GiB, 512B."""
    for unit, scale in _UNITS:
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{int(n)}B"


def amount(key: str, value: float) -> str:
    """One resource's amount: a size for memory, else the count (2.0, 0.5)."""
    return size(value) if key in SIZES else str(float(value))


def shown(key: str) -> bool:
    """False for the keys only the scheduler reads (as `ray status` leaves them out)."""
    return not (key.startswith(("node:", "accelerator_type:")) or is_group_resource(key))


def describe(res: Mapping[str, float]) -> str:
    """A resource map in a sentence: "4.0 CPU, 2.00GiB memory". A request renamed into a
    placement group's bundle (its every key) reads as what it asks of the bundle."""
    grouped = all(is_group_resource(key) for key in res)
    asked: dict[str, float] = {}
    for key, value in res.items():
        if grouped and not key.startswith(BUNDLE):
            key = key.split("_group_", 1)[0]
        if shown(key):
            asked[key] = asked.get(key, 0.0) + float(value)
    return ", ".join(f"{amount(k, v)} {k}" for k, v in sorted(asked.items())) or "nothing"


def usage(total: Mapping[str, float], available: Mapping[str, float]) -> list[str]:
    """`ray status`'s lines: "used/total resource", one per resource people use."""
    return [f"{amount(k, v - available.get(k, 0.0))}/{amount(k, v)} {k}"
            for k, v in sorted(total.items()) if shown(k)]
