"""What Pool's calls return: AsyncResult (apply_async, map_async, starmap_async) and
the iterators of imap / imap_unordered. Each waits on refs of chunks of work (a
chunk is one actor call running a list of function calls)."""
from __future__ import annotations

import collections
import functools
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing import TimeoutError as MpTimeoutError
from multiprocessing.pool import RemoteTraceback  # type: ignore[attr-defined]
from typing import Any

from ... import _api
from ...exceptions import ZrayError


class Failed:
    """A function call of a chunk that raised: its exception and remote traceback."""
    __slots__ = ("exc", "tb")

    def __init__(self, exc: BaseException, tb: str) -> None:
        self.exc, self.tb = exc, tb

    def raise_(self) -> None:
        # As multiprocessing.Pool: the function's own exception, with the worker's
        # traceback as its cause.
        if self.tb:
            self.exc.__cause__ = RemoteTraceback(self.tb)
        raise self.exc


def chunk_values(ref: Any) -> list:
    """The results of one chunk; a chunk whose actor call failed as a whole (the actor
    died, a result did not pickle) gives that error for each of its calls."""
    try:
        return _api.get(ref)
    except ZrayError as exc:
        return [Failed(exc, "")]


def _values(chunks: list) -> list:
    """The flat list of results; raises the first failure in input order."""
    out = []
    for chunk in chunks:
        for value in chunk:
            if type(value) is Failed:
                value.raise_()
            out.append(value)
    return out


class AsyncResult:
    """The result of an *_async call (as multiprocessing.pool.AsyncResult): get(timeout),
    wait(timeout), ready(), successful(). `callback` gets the result (the list of
    results for map_async) if all calls succeeded, else `error_callback` gets the first
    exception; either runs on zray's callback thread, before ready() turns True."""

    def __init__(self, refs: list, single: bool, callback: Callable | None = None,
                 error_callback: Callable | None = None) -> None:
        self._single = single
        self._callback, self._error_callback = callback, error_callback
        self._chunks: list = [None] * len(refs)
        self._left = len(refs)
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        if not refs:
            self._finish()
        for i, ref in enumerate(refs):
            ref.add_done_callback(functools.partial(self._chunk_done, i))

    def _chunk_done(self, index: int, ref: Any) -> None:
        chunk = chunk_values(ref)
        with self._lock:
            self._chunks[index] = chunk
            self._left -= 1
            last = self._left == 0
        if last:
            self._finish()

    def _finish(self) -> None:
        try:
            values = _values(self._chunks)
            self._value = values[0] if self._single else values
        except BaseException as exc:
            self._error = exc
        self._chunks = []
        try:
            if self._error is not None and self._error_callback is not None:
                self._error_callback(self._error)
            elif self._error is None and self._callback is not None:
                self._callback(self._value)
        finally:
            self._done.set()

    def ready(self) -> bool:
        """True once every call has finished (and the callback ran)."""
        return self._done.is_set()

    def successful(self) -> bool:
        """True if no call raised; ValueError if the result is not ready yet."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error is None

    def wait(self, timeout: float | None = None) -> None:
        """Block until ready or `timeout` seconds passed (no error either way)."""
        self._done.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """The result; raises the first call's exception, or multiprocessing's
        TimeoutError if it is not ready within `timeout` seconds."""
        if not self._done.wait(timeout):
            raise MpTimeoutError(f"the result was not ready within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._value


class IMapIterator:
    """The iterator of imap (ordered) and imap_unordered: at most one chunk per actor
    is in flight; the next chunk is submitted when one comes back, as you iterate.
    next(timeout) raises multiprocessing's TimeoutError when nothing came in time."""

    def __init__(self, submit: Callable[[Any, list], Any], actors: int, items: Iterator,
                 chunksize: int, unpack: bool, ordered: bool) -> None:
        self._submit = submit            # submit(actor slot or None, calls) -> (ref, slot)
        self._items = items
        self._chunksize = chunksize
        self._unpack = unpack
        self._ordered = ordered
        self._exhausted = False
        self._inflight: dict = {}        # ref -> (chunk index, actor slot)
        self._done: dict = {}            # chunk index -> values (ordered: waiting their turn)
        self._next_index = 0             # the chunk index to give next (ordered)
        self._submitted = 0
        self._ready: collections.deque = collections.deque()
        for slot in range(actors):
            self._submit_next(slot)

    def _submit_next(self, slot: Any) -> None:
        if self._exhausted:
            return
        calls: list = []
        for item in self._items:
            calls.append((tuple(item) if self._unpack else (item,), {}))
            if len(calls) == self._chunksize:
                break
        if len(calls) < self._chunksize:
            self._exhausted = True
        if calls:
            ref, slot = self._submit(slot, calls)
            self._inflight[ref] = (self._submitted, slot)
            self._submitted += 1

    def __iter__(self) -> IMapIterator:
        return self

    def __next__(self) -> Any:
        return self.next()

    def next(self, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready:
            if self._ordered and self._next_index in self._done:
                self._ready.extend(self._done.pop(self._next_index))
                self._next_index += 1
                continue
            if not self._inflight:
                raise StopIteration
            self._collect_one(deadline)
        value = self._ready.popleft()
        if type(value) is Failed:
            value.raise_()
        return value

    def _collect_one(self, deadline: float | None) -> None:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _ = _api.wait(list(self._inflight), num_returns=1, timeout=remaining)
        if not ready:
            raise MpTimeoutError(f"no result came within the timeout ({len(self._inflight)} "
                                 "chunks running)")
        index, slot = self._inflight.pop(ready[0])
        self._submit_next(slot)          # keep that actor busy
        values = chunk_values(ready[0])
        if self._ordered:
            self._done[index] = values
        else:
            self._ready.extend(values)
