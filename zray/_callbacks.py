"""Callbacks users hang on refs (ObjectRef.add_done_callback), and where they run.

Never on the I/O thread that resolves the ref: a callback that blocks (get, wait, a
slow computation) would stall every socket of the process, or deadlock waiting for
a value only that thread can deliver. A callback added from a running asyncio loop
runs on that loop (call_soon_threadsafe), as asyncio.Future's do: that is what lets
`asyncio.wait(refs)` work. Any other runs on this process's callback thread (started
on first use, also after a worker's fork; Python joins it at exit), one at a time in
the order their refs resolved.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import threading
from collections.abc import Callable
from typing import Any

from ._log import get_logger

_log = get_logger("callbacks")
_lock = threading.Lock()
_executor: list = [None, 0]   # the executor, and the pid that made it
# object id -> the callbacks waiting for it, while its one runtime hook is pending
_waiting: dict[bytes, list[_Callback]] = {}


class _Callback:
    __slots__ = ("fn", "ref", "loop", "context")

    def __init__(self, fn: Callable, ref: Any, loop: asyncio.AbstractEventLoop | None,
                 context: contextvars.Context | None) -> None:
        self.fn, self.ref, self.loop, self.context = fn, ref, loop, context


def add(ref: Any, fn: Callable, context: contextvars.Context | None = None) -> None:
    """Call fn(ref) once ref's object resolved (value or error); see the module's doc."""
    if not callable(fn):
        raise TypeError(f"add_done_callback() needs a callable, got {type(fn).__name__}")
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    key = ref.binary()
    with _lock:
        waiting = _waiting.setdefault(key, [])
        waiting.append(_Callback(fn, ref, loop, context))
        first = len(waiting) == 1
    if first:   # one hook in the runtime per object, whatever the number of callbacks
        ref._rt.when_resolved(ref, lambda *_: _fire(key))
        ref._rt.t.hurry()   # what makes the object may still wait in the outbox


def remove(ref: Any, fn: Callable) -> int:
    """Forget the callbacks `fn` of ref not yet run; how many there were."""
    with _lock:
        waiting = _waiting.get(ref.binary(), [])
        kept = [cb for cb in waiting if cb.fn != fn]
        removed = len(waiting) - len(kept)
        waiting[:] = kept   # an empty list stays: the runtime hook is still pending
        return removed


def _fire(key: bytes) -> None:
    with _lock:
        callbacks = _waiting.pop(key, [])
    for cb in callbacks:
        if cb.loop is not None:
            try:
                cb.loop.call_soon_threadsafe(cb.fn, cb.ref, context=cb.context)
            except RuntimeError:   # the loop was closed meanwhile: nobody waits any more
                pass
        else:
            _thread().submit(_call, cb)


def _thread() -> concurrent.futures.ThreadPoolExecutor:
    with _lock:
        executor, pid = _executor
        if executor is None or pid != os.getpid():
            executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="zray-callbacks")
            _executor[:] = [executor, os.getpid()]
        return executor


def _call(cb: _Callback) -> None:
    try:
        if cb.context is not None:
            cb.context.run(cb.fn, cb.ref)
        else:
            cb.fn(cb.ref)
    except Exception:
        _log.exception("a done-callback raised", callback=repr(cb.fn))
