"""ActorPool: spread work over a fixed set of actors, one call per idle actor (as
ray.util.ActorPool, with its method names and its results, errors and ordering)."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .. import _api
from ..actor import ActorClass, ActorHandle, _BoundClass
from ..exceptions import ActorDiedError

__all__ = ["ActorPool"]

_TIMED_OUT = "Timed out waiting for result"


def _key(future: Any) -> Any:
    # fn may return a list of refs (num_returns > 1): a tuple of them is the key.
    return tuple(future) if isinstance(future, list) else future


class ActorPool:
    """Runs `fn(actor, value)` on whichever actor of the pool is idle; an actor is busy
    until the call's ref is returned by get_next / get_next_unordered.

    >>> pool = ActorPool([Doubler.remote(), Doubler.remote()])
    >>> list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4]))
    [2, 4, 6, 8]

    Values submitted while every actor is busy wait in the pool, in order, and go to
    the next actor that comes back. A call whose actor died (ActorDiedError) does not
    return that actor to the pool.
    """

    def __init__(self, actors: Iterable[ActorHandle]) -> None:
        if isinstance(actors, (ActorHandle, str, bytes)) or not isinstance(actors, Iterable):
            raise TypeError(f"ActorPool takes a list of actor handles, got {type(actors).__name__}")
        self._idle: list = list(actors)
        for i, actor in enumerate(self._idle):
            if isinstance(actor, (ActorClass, _BoundClass)):
                raise TypeError(f"ActorPool item {i} is an actor class, not an actor: create "
                                "the actors first, e.g. ActorPool([Cls.remote() for _ in range(n)])")
        self._future_to_actor: dict = {}     # key of the call's ref(s) -> (index, actor)
        self._index_to_future: dict = {}     # submission index -> the call's ref(s)
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending: list = []             # (fn, value) waiting for an idle actor

    # -- submitting ------------------------------------------------------------------
    def map(self, fn: Callable[[Any, Any], Any], values: Iterable) -> Iterator:
        """Results of fn(actor, v) for each v, in the order of `values`. Results of
        earlier submissions not yet collected are dropped first (as Ray does)."""
        self._drop_uncollected(ordered=True)
        self._submit_all(fn, values)
        return self._results(self.get_next)

    def map_unordered(self, fn: Callable[[Any, Any], Any], values: Iterable) -> Iterator:
        """As map(), but each result as soon as it is ready."""
        self._drop_uncollected(ordered=False)
        self._submit_all(fn, values)
        return self._results(self.get_next_unordered)

    def submit(self, fn: Callable[[Any, Any], Any], value: Any) -> None:
        """Run fn(actor, value) on an idle actor now, or on the next one that is free."""
        if not self._idle:
            self._pending.append((fn, value))
            return
        actor = self._idle.pop()
        future = fn(actor, value)
        self._future_to_actor[_key(future)] = (self._next_task_index, actor)
        self._index_to_future[self._next_task_index] = future
        self._next_task_index += 1

    def _submit_all(self, fn: Callable, values: Iterable) -> None:
        values = list(values)
        if values and not self._idle and not self._future_to_actor:
            raise ValueError("ActorPool has no actors: add some with push() (or pass them to "
                             "ActorPool([...])) before map()")
        for v in values:
            self.submit(fn, v)

    def _drop_uncollected(self, ordered: bool) -> None:
        while self.has_next():
            try:
                if ordered:
                    self.get_next(timeout=0, ignore_if_timedout=True)
                else:
                    self.get_next_unordered(timeout=0)
            except TimeoutError:
                pass

    def _results(self, next_result: Callable[[], Any]) -> Iterator:
        while self.has_next():
            yield next_result()

    # -- collecting ------------------------------------------------------------------
    def has_next(self) -> bool:
        """True if a submitted call's result has not been returned yet."""
        return bool(self._future_to_actor)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order. Raises TimeoutError after `timeout`
        seconds (the call stays next, unless ignore_if_timedout: then it is dropped and
        its actor returns to the pool), StopIteration if nothing is pending."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        future = self._index_to_future[self._next_return_index]
        timed_out = False
        if timeout is not None:
            ready, _ = _api.wait(list(future) if isinstance(future, list) else [future],
                                 num_returns=len(future) if isinstance(future, list) else 1,
                                 timeout=timeout)
            if not ready:
                if not ignore_if_timedout:
                    raise TimeoutError(_TIMED_OUT)
                timed_out = True
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        _, actor = self._future_to_actor.pop(_key(future))
        if timed_out:
            self._return_actor(actor)
            raise TimeoutError(f"{_TIMED_OUT}. The task {future} has been ignored.")
        return self._result(future, actor)

    def get_next_unordered(self, timeout: float | None = None,
                           ignore_if_timedout: bool = False) -> Any:
        """Whichever pending result is ready first. Raises TimeoutError after `timeout`
        seconds, StopIteration if nothing is pending. After it, get_next() may raise
        ValueError (the in-order position was passed)."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        keys = list(self._future_to_actor)
        firsts = [k[0] if isinstance(k, tuple) else k for k in keys]
        ready, _ = _api.wait(firsts, num_returns=1, timeout=timeout)
        if ready:
            key = keys[firsts.index(ready[0])]
        elif ignore_if_timedout:
            key = keys[0]
        else:
            raise TimeoutError(_TIMED_OUT)
        index, actor = self._future_to_actor.pop(key)
        future = self._index_to_future.pop(index)
        self._next_return_index = max(self._next_return_index, index + 1)
        if not ready:
            self._return_actor(actor)
            raise TimeoutError(f"{_TIMED_OUT}. The task {future} has been ignored.")
        return self._result(future, actor)

    def _result(self, future: Any, actor: Any) -> Any:
        alive = True
        try:
            return _api.get(future)
        except ActorDiedError:
            alive = False
            raise
        finally:
            self._return_actor(actor, alive)

    def _return_actor(self, actor: Any, alive: bool = True) -> None:
        if alive:
            self._idle.append(actor)
        if self._pending and self._idle:
            self.submit(*self._pending.pop(0))

    # -- the set of actors -----------------------------------------------------------
    def has_free(self) -> bool:
        """True if an actor is idle and no submitted value is waiting for one."""
        return bool(self._idle) and not self._pending

    def pop_idle(self) -> Any:
        """Take an idle actor out of the pool; None if none is free."""
        return self._idle.pop() if self.has_free() else None

    def push(self, actor: Any) -> None:
        """Add an actor to the pool (it takes a waiting value at once, if any)."""
        busy = [a for _, a in self._future_to_actor.values()]
        if actor in self._idle or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)
