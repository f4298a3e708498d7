"""What a generator task returns to its caller: ObjectRefGenerator (num_returns=
"streaming", the default for a function or method that yields) and
DynamicObjectRefGenerator (the value of a num_returns="dynamic" task's one ref), as
in Ray. The items arrive in _runtime/streams.py.

    >>> @zray.remote
    ... def count(n):
    ...     for i in range(n):
    ...         yield i
    >>> [zray.get(ref) for ref in count.remote(3)]
    [0, 1, 2]
"""
from __future__ import annotations

import asyncio
from typing import Any

from . import _protocol as P
from ._object_ref import ObjectRef
from ._runtime.streams import END, DynamicObjectRefGenerator, Stream, state_of
from ._runtime.table import PENDING, READY
from .exceptions import GetTimeoutError

__all__ = ["DynamicObjectRefGenerator", "ObjectRefGenerator"]


class ObjectRefGenerator:
    """The refs of what a generator task yields, as it yields them: `next(gen)` (or
    `async for`) waits for the next one and returns its ObjectRef, whose get() gives
    the item or raises the error the generator raised there; after the last item,
    StopIteration. `zray.wait([gen])` says when the next one is ready; `zray.cancel(gen)`
    cancels the task; `gen.completed()` is a ref that resolves (to None) when the task
    has ended, or raises its error.
    """

    def __init__(self, ref: ObjectRef, stream: Stream, owner: Any) -> None:
        self._generator_ref = ref
        self._stream = stream
        self._owner = owner
        self._index = 0   # of the next item next() returns

    # -- iteration ---------------------------------------------------------------------
    def __iter__(self) -> ObjectRefGenerator:
        return self

    def __next__(self) -> ObjectRef:
        return self._next_sync()

    def _next_sync(self, timeout: float | None = None) -> ObjectRef:
        ref = self._peek()
        if state_of(self._owner, ref)[0] == PENDING:
            self._owner.wait([ref], 1, timeout)
        return self._take(ref)

    def __aiter__(self) -> ObjectRefGenerator:
        return self

    async def __anext__(self) -> ObjectRef:
        ref = self._peek()
        if state_of(self._owner, ref)[0] == PENDING:
            loop = asyncio.get_running_loop()
            arrived = loop.create_future()

            def arrive() -> None:
                if not arrived.done():
                    arrived.set_result(None)

            def resolved(*_args: Any) -> None:
                loop.call_soon_threadsafe(arrive)
            self._owner.when_resolved(ref, resolved)
            self._owner.t.hurry()
            await arrived
        try:
            return self._take(ref)
        except StopIteration:
            raise StopAsyncIteration from None

    def _peek(self) -> ObjectRef:
        """The ref of the next item (pending if it has not arrived)."""
        with self._stream.lock:
            return self._stream.refs[self._index]

    def _take(self, ref: ObjectRef) -> ObjectRef:
        state, data = state_of(self._owner, ref)
        if state == PENDING:
            raise GetTimeoutError(f"the next item of {self!r} did not arrive in time")
        if state == READY and data is END:
            raise StopIteration
        stream = self._stream
        with stream.lock:
            stream.refs.pop(self._index, None)
            self._index += 1
        self._owner.streams.taken(stream, self._index)
        return ref

    # -- what Ray's ObjectRefGenerator also has ------------------------------------------
    def completed(self) -> ObjectRef:
        """A ref that resolves when the task has ended (to None), or raises its error."""
        return self._generator_ref

    def next_ready(self) -> bool:
        """True if next() would return at once with an item (False at the end)."""
        state, data = state_of(self._owner, self._peek())
        return state != PENDING and data is not END

    def is_finished(self) -> bool:
        """True once next() raises StopIteration: the task ended and its items are taken."""
        state, data = state_of(self._owner, self._peek())
        return state == READY and data is END

    def close(self) -> None:
        """Stop receiving items: those not taken yet are freed (the task goes on; a
        task paused by backpressure resumes)."""
        self._owner.streams.close(self._stream)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:   # interpreter shutdown
            pass

    def __reduce__(self):
        raise TypeError("An ObjectRefGenerator cannot be passed to another task or actor, nor "
                        "pickled: pass the refs it returns (or list(gen)) instead.")

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._stream.task_id.hex()})"


def open_stream(rt: Any, task_id: bytes, nret: int, ref: ObjectRef) -> Any:
    """Before a generator task is submitted: what .remote() returns for it (its items
    may arrive as soon as it is sent)."""
    stream = rt.owner.streams.open(task_id, nret)
    if nret == P.DYNAMIC:
        return ref
    return ObjectRefGenerator(ref, stream, rt.owner)
