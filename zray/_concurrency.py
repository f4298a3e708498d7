"""Actor concurrency groups (Ray's): `@remote(concurrency_groups={"io": 2})` gives an
actor groups of calls that run apart from each other, each at most its own number at a
time; `@method(concurrency_group="io")` or `.options(concurrency_group="io")` puts a
call in one, and every other call is in the default group, which runs at most
max_concurrency at a time (default 1; 1000 for an async actor).

A threaded actor gives each group a thread pool of its size (a sync actor with groups
becomes threaded, as in Ray); an async actor gives each a semaphore on its event loop
(in Ray each group also has a thread and a loop of its own, so there a call that
blocks its thread holds up only its group; here it holds up the actor).

How they travel (no protocol field of their own): the groups' sizes in the actor's
constructor keyword arguments, under KWARG (taken out before __init__ runs); a call's
group in its method name, "method@group".
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["KWARG", "HostGroups", "call_method", "check_call", "check_groups"]

KWARG = "__zray_concurrency_groups__"
_SEP = "@"


def check_groups(groups: Any, methods: dict, what: str) -> dict | None:
    """The actor class's concurrency_groups, checked against what its methods name."""
    if groups is not None:
        if not isinstance(groups, dict):
            raise TypeError(f"concurrency_groups must be a dict of group name -> max concurrency, "
                            f"got {type(groups).__name__} for {what}.")
        for name, size in groups.items():
            if not isinstance(name, str) or not name or _SEP in name:
                raise ValueError(f"a concurrency group's name must be a non-empty str without "
                                 f"{_SEP!r}, got {name!r} for {what}.")
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise ValueError(f"concurrency group {name!r} must have a positive int max "
                                 f"concurrency, got {size!r} for {what}.")
    for method, opts in methods.items():
        group = opts.get("concurrency_group")
        if group is not None:
            _check_member(group, groups, f"{what}.{method}")
    return dict(groups) if groups else None


def check_call(group: Any, groups: list | None, what: str) -> None:
    """A call's .options(concurrency_group=...), against the actor's groups."""
    _check_member(group, groups, what)


def _check_member(group: Any, groups: Any, what: str) -> None:
    if not isinstance(group, str):
        raise TypeError(f"concurrency_group must be a str, got {type(group).__name__} for {what}.")
    if not groups or group not in groups:
        known = ", ".join(sorted(groups)) if groups else "none"
        raise ValueError(f"{what} names concurrency group {group!r}, which its actor class does "
                         f"not define (its concurrency_groups: {known}).")


def call_method(method: str, group: str | None) -> str:
    """The method field of a call in `group` (None: the default group)."""
    return method if group is None else f"{method}{_SEP}{group}"


class HostGroups:
    """In the actor's worker: the groups, and which one a call goes to."""

    def __init__(self, sizes: dict) -> None:
        self.sizes = {k: v for k, v in sizes.items() if isinstance(k, str) and type(v) is int
                      and v > 0}

    @staticmethod
    def take(kwargs: dict) -> HostGroups | None:
        """The groups the actor's creation carries in its keyword arguments (removed)."""
        sizes = kwargs.pop(KWARG, None)
        return HostGroups(sizes) if isinstance(sizes, dict) and sizes else None

    @staticmethod
    def of(method: str) -> str | None:
        """The group a call's method field names (None: the default group)."""
        return method.partition(_SEP)[2] or None if _SEP in method else None

    def pools(self) -> dict[str, ThreadPoolExecutor]:
        return {name: ThreadPoolExecutor(size, thread_name_prefix=f"zray-actor-{name}")
                for name, size in self.sizes.items()}

    def semaphores(self) -> dict[str, asyncio.Semaphore]:
        return {name: asyncio.Semaphore(size) for name, size in self.sizes.items()}
