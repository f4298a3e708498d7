"""Values to bytes and back: cloudpickle with pickle protocol 5, and the refs a value holds.

The only module that imports cloudpickle. Functions and classes are pickled once
(by value when they live in __main__ or a notebook) and named by a content hash.
"""
from __future__ import annotations

import hashlib
import io
import threading
import traceback
from typing import Any

import cloudpickle

from .exceptions import RayTaskError

_collect = threading.local()


def collecting() -> list | None:
    """The list that ObjectRef.__reduce__ appends to while a value is serialized."""
    return getattr(_collect, "refs", None)


def _dumps(value: Any) -> bytes:
    buf = io.BytesIO()
    cloudpickle.CloudPickler(buf, protocol=5).dump(value)
    return buf.getvalue()


def dumps(value: Any) -> tuple[bytes, list]:
    """(blob, refs): `value` pickled, and the ObjectRefs found inside it."""
    outer = getattr(_collect, "refs", None)
    refs: list = []
    _collect.refs = refs
    try:
        return _dumps(value), refs
    finally:
        _collect.refs = outer


def loads(blob: bytes | memoryview) -> Any:
    """The value pickled in `blob`."""
    return cloudpickle.loads(blob)


def dumps_function(fn: Any) -> tuple[bytes, bytes]:
    """(func_id, blob): `fn` pickled once, named by the hash of its bytes."""
    blob = _dumps(fn)
    return hashlib.blake2b(blob, digest_size=16).digest(), blob


def describe_pickling_error(what: str, value: Any, exc: BaseException) -> str:
    """A message naming what failed to pickle and why, for TypeError/PicklingError."""
    return (f"Could not serialize {what} of type {type(value).__name__}: {exc}. "
            "Only picklable values can cross process boundaries; pass something picklable "
            "or create the unpicklable object inside the task.")


def dumps_error(exc: BaseException, function_name: str, pid: int, where: str = "") -> bytes:
    """The blob of a RayTaskError for `exc`, raised in `function_name`."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    cause: BaseException | None = exc
    try:
        _dumps(exc)
    except Exception:  # the exception itself does not pickle: keep its text
        cause = None
        tb += f"\n(the exception {type(exc).__name__} could not be pickled; only its text is kept)"
    err = RayTaskError(function_name, tb, cause, pid, where)
    return _dumps(err)


def dumps_system_error(exc: BaseException) -> bytes:
    """The blob of an error that zray raises itself (WorkerCrashedError, ...)."""
    return _dumps(exc)
