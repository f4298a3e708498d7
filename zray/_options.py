"""The options of @remote and .options(): their names, checks, and defaults (Ray's)."""
from __future__ import annotations

from typing import Any

from . import _protocol as P
from . import _runtime_env

_COMMON = {"num_cpus", "num_gpus", "resources", "memory", "name", "namespace", "runtime_env",
           "scheduling_strategy", "accelerator_type", "label_selector", "_metadata"}
TASK_OPTIONS = _COMMON | {"num_returns", "max_retries", "retry_exceptions", "max_calls",
                          "_generator_backpressure_num_objects"}
ACTOR_OPTIONS = _COMMON | {"max_restarts", "max_task_retries", "max_concurrency", "lifetime",
                           "get_if_exists", "max_pending_calls", "concurrency_groups",
                           "enable_task_events", "object_store_memory"}
METHOD_OPTIONS = {"num_returns", "name", "max_task_retries", "retry_exceptions",
                  "concurrency_group", "enable_task_events", "_generator_backpressure_num_objects"}


def check(options: dict, allowed: set, what: str) -> dict:
    """`options` validated; ValueError/TypeError naming the bad option."""
    for key in options:
        if key not in allowed:
            valid = ", ".join(sorted(k for k in allowed if not k.startswith("_")))
            raise ValueError(f"Invalid option keyword {key!r} for {what}. Valid ones are: {valid}.")
    _check_kinds(options, allowed, what)
    for key in ("num_cpus", "num_gpus", "memory"):
        v = options.get(key)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
            raise ValueError(f"{key} must be a non-negative number, got {v!r} for {what}.")
    res = options.get("resources")
    if res is not None:
        if not isinstance(res, dict):
            raise TypeError(f"resources must be a dict of name -> amount, got {type(res).__name__} "
                            f"for {what}.")
        for k, v in res.items():
            if k in ("CPU", "GPU"):
                raise ValueError(f"Use num_cpus/num_gpus instead of resources={{{k!r}: ...}} for {what}.")
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"resource {k!r} must be a non-negative number, got {v!r} for {what}.")
    n = options.get("num_returns")
    if n is not None and n not in ("streaming", "dynamic") and (
            not isinstance(n, int) or isinstance(n, bool) or n < 0):
        raise ValueError(f"num_returns must be a non-negative integer, 'streaming' or 'dynamic', "
                         f"got {n!r} for {what}.")
    bp = options.get("_generator_backpressure_num_objects")
    if bp is not None and (not isinstance(bp, int) or isinstance(bp, bool) or bp == 0 or bp < -1):
        raise ValueError(f"_generator_backpressure_num_objects must be a positive integer (or -1: "
                         f"none), got {bp!r} for {what}.")
    for key in ("max_retries", "max_restarts", "max_task_retries"):
        v = options.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < -1):
            raise ValueError(f"{key} must be an integer >= -1 (-1: forever), got {v!r} for {what}.")
    mc = options.get("max_concurrency")
    if mc is not None and (not isinstance(mc, int) or isinstance(mc, bool) or mc < 1):
        raise ValueError(f"max_concurrency must be a positive integer, got {mc!r} for {what}.")
    re = options.get("retry_exceptions")
    if re is not None and not isinstance(re, bool) and (not isinstance(re, (list, tuple)) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in re)):
        raise TypeError(f"retry_exceptions must be a bool or a list of exception types for {what}.")
    lt = options.get("lifetime")
    if lt not in (None, "detached", "non_detached"):
        raise ValueError(f"lifetime must be 'detached' or 'non_detached', got {lt!r} for {what}.")
    if options.get("runtime_env") is not None:
        _runtime_env.validate(options["runtime_env"], what)
    name = options.get("name")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__} for {what}.")
    # None means the default (as in Ray): dropped here, so that the defaults apply
    # (a None in a task spec is malformed, and the node drops it).
    for key in ("max_retries", "max_restarts", "max_task_retries"):
        if key in options and options[key] is None:
            del options[key]
    return options


def wire_nret(num_returns: Any, options: dict) -> int:
    """A task spec's T_NRET for num_returns (an int, 'streaming' or 'dynamic')."""
    if type(num_returns) is int:
        return num_returns
    return P.stream_nret(num_returns, options.get("_generator_backpressure_num_objects") or 0)


# Ray's rule: a value of the wrong type is a TypeError (num_cpus="1"), a bad value of
# the right type a ValueError (num_cpus=-1).
_NUMBER = (int, float)
_KINDS: dict[str, tuple] = {
    "num_cpus": _NUMBER, "num_gpus": _NUMBER, "memory": _NUMBER, "max_retries": (int,),
    "max_restarts": (int,), "max_task_retries": (int,), "max_calls": (int,),
    "max_concurrency": (int,), "max_pending_calls": (int,), "name": (str,), "namespace": (str,),
}


def _check_kinds(options: dict, allowed: set, what: str) -> None:
    """TypeError for an option of the wrong type; the checks Ray makes that check()
    does not otherwise (max_calls, get_if_exists without a name)."""
    for key, kinds in _KINDS.items():
        v = options.get(key)
        if v is not None and (not isinstance(v, kinds) or isinstance(v, bool)):
            raise TypeError(f"{key} must be {' or '.join(k.__name__ for k in kinds)} (or None), "
                            f"got {type(v).__name__} {v!r} for {what}.")
    if options.get("max_calls") is not None and options["max_calls"] < 0:
        raise ValueError(f"max_calls must be 0 (no limit) or a positive integer, got "
                         f"{options['max_calls']!r} for {what}.")
    if allowed is ACTOR_OPTIONS and options.get("get_if_exists") and not options.get("name"):
        raise ValueError(f"get_if_exists=True needs the actor's name ({what}): name=...")


def resources_of(options: dict, default_cpus: float) -> dict:
    """The resource request: {"CPU": .., "GPU": .., custom...}, zeros dropped."""
    cpus = options.get("num_cpus")
    res: dict[str, Any] = {"CPU": default_cpus if cpus is None else cpus}
    if options.get("num_gpus"):
        res["GPU"] = options["num_gpus"]
    if options.get("memory"):
        res["memory"] = options["memory"]
    for k, v in (options.get("resources") or {}).items():
        res[k] = v
    return {k: float(v) for k, v in res.items() if v}
