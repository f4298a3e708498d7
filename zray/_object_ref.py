"""ObjectRef: the future of a task's result or of a put value.

A ref counts itself in its process's object table while it lives; when the last
one anywhere is gone, the object is freed. Pickling a ref (inside a task's args,
a return value or a put value) makes whoever holds the pickle a borrower.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Callable
from typing import Any

from . import _callbacks, _context, _serialization
from .exceptions import RaySystemError


class ObjectRef:
    """A future of one object. `zray.get(ref)` blocks for its value; `await ref`
    and `ref.future()` give it asynchronously.

    >>> ref = zray.put(41)
    >>> zray.get(ref) + 1
    42
    """
    __slots__ = ("_id", "_owner", "_rt", "__weakref__")

    def __init__(self, object_id: bytes, owner: bytes, objects: Any) -> None:
        # The caller has counted this ref in its process's object table already;
        # `objects` is that process's runtime.owner.
        self._id = object_id
        self._owner = owner
        self._rt = objects

    def __del__(self) -> None:
        try:
            self._rt.on_ref_deleted(self._id)
        except Exception:  # interpreter shutdown: the runtime is half gone
            pass

    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def task_id(self) -> str:
        return self._id[:16].hex()

    def __repr__(self) -> str:
        return f"ObjectRef({self._id.hex()})"

    def __hash__(self) -> int:
        return hash(self._id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other._id == self._id

    def __reduce__(self):
        refs = _serialization.collecting()
        if refs is not None:
            refs.append((self._id, self._owner))
        return (_rebuild_ref, (self._id, self._owner))

    def future(self) -> concurrent.futures.Future:
        """A concurrent.futures.Future that completes with the object's value."""
        return self._rt.future_of(self)

    def __await__(self):
        return asyncio.wrap_future(self.future()).__await__()

    def as_future(self) -> asyncio.Future[Any]:
        return asyncio.wrap_future(self.future())

    # -- future-like: callbacks, and what asyncio.wait(refs) asks of a future --------
    def add_done_callback(self, fn: Callable[[ObjectRef], Any], *,
                          context: contextvars.Context | None = None) -> None:
        """Call fn(ref) once the object has its value or its error (soon, if it has
        already). Added in a coroutine, fn runs on that event loop, as an
        asyncio.Future's callback (so asyncio.wait(refs) works); otherwise on this
        process's zray callback thread, never the caller's: those run one at a time,
        in the order their refs resolved, so a slow one delays the others. fn may
        call zray.get(ref) (it returns at once, or raises the task's error); what fn
        raises is logged and dropped.
        """
        _callbacks.add(self, fn, context)

    def remove_done_callback(self, fn: Callable[[ObjectRef], Any]) -> int:
        """Forget the callbacks `fn` not yet run; returns how many were removed."""
        return _callbacks.remove(self, fn)

    def done(self) -> bool:
        """True once the object has its value or its error (in this process)."""
        return bool(self._rt.wait([self], 1, 0)[0])

    def cancelled(self) -> bool:
        """False: a ref itself is never cancelled (a cancelled task's ref is done, with
        TaskCancelledError)."""
        return False

    def exception(self) -> BaseException | None:
        """The error the object resolved to, or None if it has a value."""
        if not self.done():
            raise asyncio.InvalidStateError(f"{self!r} is not ready yet")
        try:
            self._rt.get([self], 0)
        except Exception as exc:
            return exc
        return None


def _rebuild_ref(object_id: bytes, owner: bytes) -> ObjectRef:
    rt = _context.runtime()
    if rt is None:
        raise RaySystemError("an ObjectRef can only be unpickled in a process connected to "
                             "zray (call zray.init() first)")
    return rt.owner.adopt_ref(object_id, owner)
