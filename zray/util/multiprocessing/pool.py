"""Pool: multiprocessing.Pool's API on a set of zray actors (as
ray.util.multiprocessing.Pool), so a program written for multiprocessing runs its
work across the cluster by changing one import.

Each "process" is an actor (num_cpus=0, as Ray's: the pool's size is bounded by the
cluster's CPUs instead). A map is cut into chunks; a chunk is one actor call that
runs the function over its items and returns their results, or for an item that
raised, its exception (re-raised by get(), as multiprocessing does).
"""
from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from ... import _api
from ..._init import init, is_initialized
from ._results import AsyncResult, Failed, IMapIterator

__all__ = ["AsyncResult", "IMapIterator", "Pool"]


class _PoolWorker:
    """One worker "process" of a Pool (an actor: _PoolActor)."""

    def __init__(self, initializer: Callable | None = None, initargs: Iterable | None = None) -> None:
        if initializer is not None:
            initializer(*(initargs or ()))

    def ping(self) -> None:
        """Answered once the initializer ran: the pool waits for it."""

    def run_batch(self, func: Callable, calls: list) -> list:
        out: list = []
        for args, kwargs in calls:
            try:
                out.append(func(*args, **kwargs))
            except Exception as exc:
                out.append(Failed(exc, traceback.format_exc()))
        return out


_PoolActor = _api.remote(num_cpus=0)(_PoolWorker)


def _connect(processes: int | None, address: str | None) -> int:
    """Start or join a cluster if this process has none; the pool's size."""
    if processes is not None and (isinstance(processes, bool) or not isinstance(processes, int)):
        raise TypeError(f"processes must be an int or None, got {processes!r}")
    if not is_initialized():
        joining = address if address is not None else os.environ.get("ZRAY_ADDRESS")
        if joining and joining != "local":
            init(address=joining)
        else:
            init(num_cpus=processes)
    cpus = int(_api.cluster_resources().get("CPU", 0))
    if processes is None:
        processes = cpus
    if processes <= 0:
        raise ValueError("Processes in the pool must be >0.")
    if processes > cpus:
        raise ValueError(f"Tried to start a pool with {processes} processes on an existing "
                         f"cluster, but there are only {cpus} CPUs in the cluster.")
    return processes


def _kill_if_connected(actor: Any) -> None:
    # Not after shutdown (which fails the pending chunks, running this): a kill would
    # start a new cluster.
    if is_initialized():
        _api.kill(actor)


def _check_chunksize(chunksize: Any) -> None:
    if chunksize is not None and (isinstance(chunksize, bool) or not isinstance(chunksize, int)
                                  or chunksize < 1):
        raise ValueError(f"Chunksize must be 1+, not {chunksize!r}")


class Pool:
    """A pool of actors with multiprocessing.Pool's methods.

    >>> with Pool(2) as pool:
    ...     pool.map(square, range(4))
    [0, 1, 4, 9]

    processes: how many actors (default: the cluster's CPUs; it may not exceed them).
    initializer(*initargs) runs in each actor as it starts. maxtasksperchild: an actor
    is replaced after running that many chunks. ray_address: the cluster to join if this
    process has none (else ZRAY_ADDRESS, else a new local cluster of `processes` CPUs).
    ray_remote_args: options of the actors (e.g. {"num_cpus": 1}). `context` is
    accepted and ignored. Callbacks of the *_async calls run on zray's callback thread.
    """

    def __init__(self, processes: int | None = None, initializer: Callable | None = None,
                 initargs: Iterable | None = None, maxtasksperchild: int | None = None,
                 context: Any = None, ray_address: str | None = None,
                 ray_remote_args: dict | None = None) -> None:
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if maxtasksperchild is not None and (not isinstance(maxtasksperchild, int)
                                             or maxtasksperchild < 1):
            raise ValueError("maxtasksperchild must be a positive int or None")
        self._closed = False
        self._init = (initializer, tuple(initargs or ()))
        self._max_chunks = maxtasksperchild
        self._retiring: list = []    # the last chunk of each actor that is to end
        processes = _connect(processes, ray_address)
        self._actor_class = _PoolActor.options(**(ray_remote_args or {}))
        self._actors = [self._actor_class.remote(*self._init) for _ in range(processes)]
        self._counts = [0] * processes
        self._last: list = [None] * processes   # each actor's latest chunk
        self._next_slot = 0
        _api.get([a.ping.remote() for a in self._actors])

    # -- running chunks --------------------------------------------------------------
    def _run(self, slot: int | None, func: Any, calls: list) -> tuple[Any, int]:
        """Send one chunk to the actor in `slot` (None: the next in turn)."""
        if slot is None:
            slot, self._next_slot = self._next_slot, (self._next_slot + 1) % len(self._actors)
        ref = self._last[slot] = self._actors[slot].run_batch.remote(func, calls)
        self._counts[slot] += 1
        if self._max_chunks is not None and self._counts[slot] >= self._max_chunks:
            self._retire(slot)
            self._actors[slot] = self._actor_class.remote(*self._init)
            self._counts[slot] = 0
        return ref, slot

    def _retire(self, slot: int) -> None:
        """End the actor in `slot` once its last chunk is done. (Killed once its result
        is in, rather than asked to exit behind it: an exit could overtake the reply.)"""
        actor, last = self._actors[slot], self._last[slot]
        self._last[slot] = None
        if last is None:
            _api.kill(actor)
            return
        self._retiring.append(last)
        last.add_done_callback(lambda _ref: _kill_if_connected(actor))

    def _chunks(self, func: Callable, iterable: Iterable, chunksize: int | None,
                unpack: bool) -> list:
        self._check_running()
        _check_chunksize(chunksize)
        items = list(iterable)
        if chunksize is None:
            chunksize, extra = divmod(len(items), len(self._actors) * 4)
            chunksize += bool(extra)
        shared = _api.put(func) if len(items) > chunksize else func   # pickled once
        refs = []
        for start in range(0, len(items), chunksize or 1):
            calls: list = [(tuple(x) if unpack else (x,), {}) for x in items[start:start + chunksize]]
            refs.append(self._run(None, shared, calls)[0])
        return refs

    def _check_running(self) -> None:
        if self._closed:
            raise ValueError("Pool not running")

    # -- multiprocessing.Pool's API --------------------------------------------------
    def apply(self, func: Callable, args: tuple = (), kwds: dict | None = None, *,
              kwargs: dict | None = None) -> Any:
        """func(*args, **kwds) on one of the actors; its result."""
        return self.apply_async(func, args, kwds, kwargs=kwargs).get()

    def apply_async(self, func: Callable, args: tuple = (), kwds: dict | None = None,
                    callback: Callable | None = None, error_callback: Callable | None = None,
                    *, kwargs: dict | None = None) -> AsyncResult:
        """func(*args, **kwds) on one of the actors; an AsyncResult at once. (`kwargs=`
        is Ray's name for `kwds`.)"""
        self._check_running()
        call = (tuple(args or ()), dict(kwds or kwargs or {}))
        return AsyncResult([self._run(None, func, [call])[0]], True, callback, error_callback)

    def map(self, func: Callable, iterable: Iterable, chunksize: int | None = None) -> list:
        """[func(x) for x in iterable], computed by the actors in chunks."""
        return self.map_async(func, iterable, chunksize).get()

    def map_async(self, func: Callable, iterable: Iterable, chunksize: int | None = None,
                  callback: Callable | None = None,
                  error_callback: Callable | None = None) -> AsyncResult:
        return AsyncResult(self._chunks(func, iterable, chunksize, False), False, callback,
                           error_callback)

    def starmap(self, func: Callable, iterable: Iterable, chunksize: int | None = None) -> list:
        """[func(*args) for args in iterable]."""
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(self, func: Callable, iterable: Iterable, chunksize: int | None = None,
                      callback: Callable | None = None,
                      error_callback: Callable | None = None) -> AsyncResult:
        return AsyncResult(self._chunks(func, iterable, chunksize, True), False, callback,
                           error_callback)

    def imap(self, func: Callable, iterable: Iterable, chunksize: int = 1) -> IMapIterator:
        """func(x) for x in iterable, lazily, in order: one chunk per actor in flight."""
        return self._imap(func, iterable, chunksize, ordered=True)

    def imap_unordered(self, func: Callable, iterable: Iterable, chunksize: int = 1) -> IMapIterator:
        """As imap, each result as soon as it is ready."""
        return self._imap(func, iterable, chunksize, ordered=False)

    def _imap(self, func: Callable, iterable: Iterable, chunksize: int, ordered: bool) -> IMapIterator:
        self._check_running()
        _check_chunksize(chunksize)
        shared = _api.put(func)
        return IMapIterator(lambda slot, calls: self._run(slot, shared, calls), len(self._actors),
                            iter(iterable), chunksize or 1, False, ordered)

    # -- lifecycle -------------------------------------------------------------------
    def close(self) -> None:
        """Take no more work; each actor ends once the work given to it is done."""
        if self._closed:
            return
        self._closed = True
        for slot in range(len(self._actors)):
            self._retire(slot)

    def terminate(self) -> None:
        """Stop at once: the actors are killed, work in flight fails."""
        if not self._closed:
            self._closed = True
            self._last = [None] * len(self._actors)
        for actor in self._actors:
            _api.kill(actor)

    def join(self, timeout: float | None = None) -> None:
        """Wait until the work given to the actors of a closed pool is done."""
        if not self._closed:
            raise ValueError("Pool is still running")
        if self._retiring:
            _, self._retiring = _api.wait(self._retiring, num_returns=len(self._retiring),
                                          timeout=timeout)

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()

    def __reduce__(self):
        raise TypeError("a Pool cannot be pickled or passed to tasks: use it in the process "
                        "that made it")
