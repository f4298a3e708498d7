"""as_completed and map_unordered: results of many tasks in the order they finish
(as ray.util.as_completed / ray.util.map_unordered)."""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .. import _api
from .._object_ref import ObjectRef
from ..exceptions import GetTimeoutError

__all__ = ["as_completed", "map_unordered"]

# Ray's defaults: wait() for up to 10 refs a round; at most 100 tasks in flight.
DEFAULT_CHUNK_SIZE = 10
DEFAULT_BACKPRESSURE_SIZE = 100


def _check(chunk_size: Any, wait_kwargs: dict) -> None:
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be an int >= 1, got {chunk_size!r}")
    if "num_returns" in wait_kwargs:
        raise ValueError("Use the `chunk_size` argument instead of `num_returns`.")
    unknown = set(wait_kwargs) - {"fetch_local"}
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}; as_completed and "
                        "map_unordered take chunk_size, yield_obj_refs, timeout and fetch_local")


def _batch(refs: list[ObjectRef], chunk_size: int, yield_obj_refs: bool, deadline: float | None,
           wait_kwargs: dict) -> tuple[list, list[ObjectRef]]:
    """(what to yield, the refs still pending): waits for min(chunk_size, len(refs))
    refs, or until the deadline; raises GetTimeoutError if the deadline passed with
    nothing ready."""
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    ready, rest = _api.wait(refs, num_returns=min(chunk_size, len(refs)), timeout=timeout,
                            **wait_kwargs)
    if not ready:
        raise GetTimeoutError(f"as_completed: {len(rest)} of the refs were not ready within the "
                              "timeout")
    return (ready if yield_obj_refs else _api.get(ready)), rest


def as_completed(refs: Sequence[ObjectRef], *, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 yield_obj_refs: bool = False, timeout: float | None = None,
                 **wait_kwargs: Any) -> Iterator[Any]:
    """Yield the values of `refs` (their refs if yield_obj_refs) as they finish, a batch
    of up to `chunk_size` at a time: unlike get(refs), the first results arrive before
    the slowest task ends. A task's error is raised when its batch is reached.

    >>> refs = [square.remote(i) for i in range(4)]
    >>> sorted(zray.util.as_completed(refs, chunk_size=1))
    [0, 1, 4, 9]

    `timeout` (seconds) bounds the whole iteration, as in concurrent.futures and Dask:
    once it has passed, the next round raises GetTimeoutError (a TimeoutError) instead of
    waiting on. (Ray passes `timeout` to each wait() round and then waits on, forever.)
    """
    _check(chunk_size, wait_kwargs)   # here, not at the first next(): errors at the call
    _api._check_timeout(timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    return _drain(list(refs), chunk_size, yield_obj_refs, deadline, wait_kwargs)


def _drain(pending: list[ObjectRef], chunk_size: int, yield_obj_refs: bool,
           deadline: float | None, wait_kwargs: dict) -> Iterator[Any]:
    while pending:
        results, pending = _batch(pending, chunk_size, yield_obj_refs, deadline, wait_kwargs)
        yield from results


def map_unordered(fn: Any, items: Iterable[Any], *,
                  backpressure_size: int | None = DEFAULT_BACKPRESSURE_SIZE,
                  chunk_size: int = DEFAULT_CHUNK_SIZE, yield_obj_refs: bool = False,
                  timeout: float | None = None, **wait_kwargs: Any) -> Iterator[Any]:
    """fn.remote(item) for each item, yielding results as they finish; at most
    `backpressure_size` tasks are in flight (None: no limit). `fn` is a remote function
    (or anything with .remote). `timeout` bounds the whole iteration, as in as_completed."""
    if backpressure_size is not None and (not isinstance(backpressure_size, int)
                                          or backpressure_size <= 0):
        raise ValueError(f"backpressure_size must be a positive int or None, got "
                         f"{backpressure_size!r}")
    _check(chunk_size, wait_kwargs)
    _api._check_timeout(timeout)
    if not callable(getattr(fn, "remote", None)):
        raise TypeError(f"map_unordered needs a remote function (with .remote), got "
                        f"{type(fn).__name__}")
    deadline = None if timeout is None else time.monotonic() + timeout
    limit = float("inf") if backpressure_size is None else backpressure_size
    return _map(fn, items, limit, chunk_size, yield_obj_refs, deadline, wait_kwargs)


def _map(fn: Any, items: Iterable[Any], limit: float, chunk_size: int, yield_obj_refs: bool,
         deadline: float | None, wait_kwargs: dict) -> Iterator[Any]:
    pending: list[ObjectRef] = []
    for item in items:
        pending.append(fn.remote(item))
        if len(pending) >= limit:
            results, pending = _batch(pending, chunk_size, yield_obj_refs, deadline, wait_kwargs)
            yield from results
    yield from _drain(pending, chunk_size, yield_obj_refs, deadline, wait_kwargs)
