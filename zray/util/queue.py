"""Queue: a first-in first-out queue that tasks and actors share, kept by an async
actor (as ray.util.queue.Queue, with Empty and Full)."""
from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterable
from typing import Any

from .. import _api
from ..actor import ActorClass, ActorHandle, exit_actor

__all__ = ["Empty", "Full", "Queue"]


class Empty(queue.Empty):
    """Raised by get(block=False), get_nowait(), get_nowait_batch() and a get() whose
    timeout passed, when the queue has no item (or too few) to give."""


class Full(queue.Full):
    """Raised by put(block=False), put_nowait(), put_nowait_batch() and a put() whose
    timeout passed, when the queue has no room (maxsize reached)."""


class _QueueActor:
    """The queue itself: an asyncio.Queue in an async actor, so that blocked put/get
    calls wait as coroutines without holding the actor for the others."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)

    async def qsize(self) -> int:
        return self.queue.qsize()

    async def empty(self) -> bool:
        return self.queue.empty()

    async def full(self) -> bool:
        return self.queue.full()

    async def put(self, item: Any, timeout: float | None = None) -> None:
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            raise Full(f"the queue stayed full for {timeout} s") from None

    async def get(self, timeout: float | None = None) -> Any:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise Empty(f"the queue stayed empty for {timeout} s") from None

    async def put_nowait(self, item: Any) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            raise Full(f"the queue is full (maxsize {self.maxsize})") from None

    async def put_nowait_batch(self, items: list) -> None:
        if self.maxsize > 0 and len(items) + self.queue.qsize() > self.maxsize:
            raise Full(f"Cannot add {len(items)} items to queue of size "
                       f"{self.queue.qsize()} and maxsize {self.maxsize}.")
        for item in items:
            self.queue.put_nowait(item)

    async def get_nowait(self) -> Any:
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            raise Empty("the queue is empty") from None

    async def get_nowait_batch(self, num_items: int) -> list:
        if num_items > self.queue.qsize():
            raise Empty(f"Cannot get {num_items} items from queue of size "
                        f"{self.queue.qsize()}.")
        return [self.queue.get_nowait() for _ in range(num_items)]

    async def terminate(self) -> None:
        exit_actor()


def _check_timeout(timeout: Any) -> None:
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
        raise TypeError(f"'timeout' must be None or a number of seconds, got {timeout!r}")
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")


def _plain(exc: BaseException) -> BaseException:
    """The Full/Empty the actor raised, itself rather than the task error carrying it,
    so that it prints and reads as queue.Queue's."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, (Full, Empty)) else exc


class Queue:
    """A FIFO queue shared by tasks and actors (pass it to them as an argument).

    >>> q = Queue(maxsize=2)
    >>> q.put(1); q.put_nowait(2)
    >>> q.full(), q.get(), q.get_nowait_batch(1)
    (True, 1, [2])

    maxsize 0 (or less) means unbounded. actor_options go to the actor that keeps
    the queue, as .options(**actor_options) (e.g. {"num_cpus": 1}). Items are pickled
    into that actor; many producers to a full queue, or consumers of an empty one,
    are served in no set order.
    """

    def __init__(self, maxsize: int = 0, actor_options: dict | None = None) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"Queue maxsize must be an int (0 for unbounded), got {maxsize!r}")
        if actor_options is not None and not isinstance(actor_options, dict):
            raise TypeError(f"actor_options must be a dict of actor options, got "
                            f"{type(actor_options).__name__}")
        self.maxsize = maxsize
        actor_class = ActorClass(_QueueActor, {})
        self.actor: ActorHandle | None = actor_class.options(**(actor_options or {})).remote(maxsize)

    def _handle(self) -> ActorHandle:
        if self.actor is None:
            raise RuntimeError("this Queue was shut down (Queue.shutdown()); make a new one")
        return self.actor

    def _get(self, ref: Any) -> Any:
        try:
            return _api.get(ref)
        except (Full, Empty) as exc:
            raise _plain(exc) from None

    async def _await(self, ref: Any) -> Any:
        try:
            return await ref
        except (Full, Empty) as exc:
            raise _plain(exc) from None

    # -- size ----------------------------------------------------------------------
    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """How many items the queue holds."""
        return self._get(self._handle().qsize.remote())

    def qsize(self) -> int:
        """How many items the queue holds."""
        return self.size()

    def empty(self) -> bool:
        return self._get(self._handle().empty.remote())

    def full(self) -> bool:
        return self._get(self._handle().full.remote())

    # -- put -------------------------------------------------------------------------
    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add `item`. If the queue is full: wait for room (up to `timeout` seconds,
        then Full) when block, else raise Full at once."""
        self._get(self._put_ref(item, block, timeout))

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """put() for asyncio code: awaits instead of blocking the thread."""
        await self._await(self._put_ref(item, block, timeout))

    def _put_ref(self, item: Any, block: bool, timeout: float | None) -> Any:
        if not block:
            return self._handle().put_nowait.remote(item)
        _check_timeout(timeout)
        return self._handle().put.remote(item, timeout)

    def put_nowait(self, item: Any) -> None:
        """put(item, block=False)."""
        self.put(item, block=False)

    def put_nowait_batch(self, items: Iterable) -> None:
        """Add all `items` in order, or none of them (Full) if they do not all fit."""
        if not isinstance(items, Iterable) or isinstance(items, (str, bytes)):
            raise TypeError("Argument 'items' must be an Iterable")
        self._get(self._handle().put_nowait_batch.remote(list(items)))

    # -- get -------------------------------------------------------------------------
    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Take the first item. If the queue is empty: wait for one (up to `timeout`
        seconds, then Empty) when block, else raise Empty at once."""
        return self._get(self._get_ref(block, timeout))

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        """get() for asyncio code: awaits instead of blocking the thread."""
        return await self._await(self._get_ref(block, timeout))

    def _get_ref(self, block: bool, timeout: float | None) -> Any:
        if not block:
            return self._handle().get_nowait.remote()
        _check_timeout(timeout)
        return self._handle().get.remote(timeout)

    def get_nowait(self) -> Any:
        """get(block=False)."""
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> list:
        """Take `num_items` items in order, or none (Empty) if there are fewer."""
        if isinstance(num_items, bool) or not isinstance(num_items, int):
            raise TypeError("Argument 'num_items' must be an int")
        if num_items < 0:
            raise ValueError("'num_items' must be nonnegative")
        return self._get(self._handle().get_nowait_batch.remote(num_items))

    # -- end -------------------------------------------------------------------------
    def shutdown(self, force: bool = False, grace_period_s: float = 5) -> None:
        """End the queue's actor (its items are lost; calls waiting on it fail with
        ActorDiedError). Unless force, the actor first gets `grace_period_s` seconds to
        exit by itself; then it is killed. Idempotent."""
        actor, self.actor = self.actor, None
        if actor is None:
            return
        if not force:
            _check_timeout(grace_period_s)
            done, _ = _api.wait([actor.terminate.remote()], timeout=grace_period_s)
            if done:
                return
        _api.kill(actor, no_restart=True)
