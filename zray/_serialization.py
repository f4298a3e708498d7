"""Values to bytes and back: cloudpickle with pickle protocol 5, and the refs a value holds.

The only module that imports cloudpickle. Functions and classes are pickled once
(by value when they live in __main__ or a notebook) and named by a content hash.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import threading
import traceback
import types
from collections import ChainMap
from typing import Any, ClassVar

import cloudpickle

from ._config import CONFIG
from ._object_store import STORE, is_stored
from .exceptions import RayTaskError, UnserializableException, ZrayError

_collect = threading.local()


def collecting() -> list | None:
    """The list that ObjectRef.__reduce__ appends to while a value is serialized."""
    return getattr(_collect, "refs", None)


def _rebuild_code(make: Any, args: tuple, filename: str) -> types.CodeType:
    code = make(*args)
    return code if code.co_filename == filename else code.replace(co_filename=filename)


_base_code_reduce = cloudpickle.CloudPickler.dispatch_table.get(types.CodeType)


def _code_reduce(code: types.CodeType) -> tuple:
    # cloudpickle >= 3.1 ships code with co_filename "<dynamic-code>" (for stable
    # payloads); keep the real one, so that a remote traceback shows the file, and,
    # on this machine, the source line of every frame, as Ray's do.
    make, args = _base_code_reduce(code)[:2]
    return _rebuild_code, (make, args, code.co_filename)


# zray.util.register_serializer()'s reducers, this process's own (as Ray's: each
# process registers for itself; a value they made carries its deserializer along).
_REDUCERS: dict[type, Any] = {}


class _Pickler(cloudpickle.CloudPickler):
    dispatch_table: ClassVar[ChainMap] = ChainMap(
        _REDUCERS, {types.CodeType: _code_reduce} if _base_code_reduce else {},
        cloudpickle.CloudPickler.dispatch_table)


def _dumps(value: Any) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol=5).dump(value)
    return buf.getvalue()


def dumps_plain(value: Any) -> bytes:
    """`value` pickled as zray pickles values (in band, its refs not collected): what
    zray.util.inspect_serializability tries."""
    return _dumps(value)


def register_reducer(cls: type, reducer: Any) -> None:
    """Pickle instances of exactly `cls` as `reducer(obj)` says, in this process."""
    _REDUCERS[cls] = reducer


def unregister_reducer(cls: type) -> None:
    _REDUCERS.pop(cls, None)


# Values made only of these types pickle the same with the C pickler as with
# cloudpickle (nothing in them is pickled by reference to a module a worker may lack),
# and 10x faster: 0.7 us for a call's empty arguments, against 6.6 us for building a
# CloudPickler. Checked to a small depth and size, so that the check stays cheaper.
_PLAIN = frozenset({int, float, bool, str, bytes, type(None)})
_PLAIN_DEPTH, _PLAIN_ITEMS = 3, 32


def _plain(value: Any, depth: int = 0) -> bool:
    t = type(value)
    if t in _PLAIN:
        return True
    if depth >= _PLAIN_DEPTH:
        return False
    if t is tuple or t is list:
        return len(value) <= _PLAIN_ITEMS and all(_plain(v, depth + 1) for v in value)
    if t is dict:
        return len(value) <= _PLAIN_ITEMS and all(
            type(k) in _PLAIN and _plain(v, depth + 1) for k, v in value.items())
    return False


def dumps(value: Any) -> tuple[bytes | list, list]:
    """(data, refs): `value` pickled, and the ObjectRefs found inside it.

    data is the pickle itself when it is small (CONFIG.inline_threshold), else the
    descriptor of a shared-memory segment holding it, its buffers out of band (so
    numpy arrays are written once and read without a copy).
    """
    if _plain(value):
        meta = pickle.dumps(value, 5)
        if len(meta) <= CONFIG.inline_threshold:
            return meta, []
    outer = getattr(_collect, "refs", None)
    refs: list = []
    _collect.refs = refs
    try:
        buffers: list = []
        buf = io.BytesIO()
        _Pickler(buf, protocol=5, buffer_callback=buffers.append).dump(value)
        meta = buf.getvalue()
        if not buffers and len(meta) <= CONFIG.inline_threshold:
            return meta, refs
        raws = [b.raw() for b in buffers]
        if len(meta) + sum(r.nbytes for r in raws) <= CONFIG.inline_threshold:
            del refs[:]              # pickled again, in band: small, rare
            return _dumps(value), refs
        return STORE.put(os.urandom(12).hex(), meta, raws), refs
    finally:
        _collect.refs = outer


def loads(data: bytes | memoryview | list) -> Any:
    """The value pickled in `data` (bytes, or a shared-memory descriptor)."""
    if type(data) is list:
        meta, buffers = STORE.read(data)
        return pickle.loads(meta, buffers=buffers)
    return cloudpickle.loads(data)


__all__ = ["STORE", "dumps", "dumps_arg_error", "dumps_function", "dumps_plain", "is_stored",
           "loads", "register_reducer", "unregister_reducer"]


def dumps_function(fn: Any) -> tuple[bytes, bytes]:
    """(func_id, blob): `fn` pickled once, named by the hash of its bytes."""
    blob = _dumps(fn)
    return hashlib.blake2b(blob, digest_size=16).digest(), blob


def check_function_size(fn: Any, size: int, what: str) -> None:
    """Warn when a function or class pickles to more than function_size_warn_bytes,
    naming the biggest global it captures; ValueError past function_size_error_bytes
    (Ray's 10 MB and 100 MB: a closure over a 200 MB array shipped without a word)."""
    if size <= CONFIG.function_size_warn_bytes:
        return
    culprit = max(((_size(v), k) for k, v in _captured(fn).items()), default=(0, ""))
    msg = (f"The {what} pickles to {size / 1e6:.1f} MB"
           + (f"; its biggest captured global is {culprit[1]!r} ({culprit[0] / 1e6:.1f} MB)"
              if culprit[1] else "")
           + ". Check that its definition does not capture a large array or object by "
           "accident: put large values in the object store with zray.put() and pass the ref.")
    if size >= CONFIG.function_size_error_bytes:
        raise ValueError(f"{msg} (Refused: the limit is {CONFIG.function_size_error_bytes} "
                         "bytes, ZRAY_FUNCTION_SIZE_ERROR_BYTES.)")
    from ._log import get_logger
    get_logger("remote").warning(msg)


def _captured(fn: Any) -> dict[str, Any]:
    """The globals and closure variables a function, or a class's methods, refer to
    (and a class's own attributes)."""
    out: dict[str, Any] = {}
    funcs = [fn]
    if isinstance(fn, type):
        attrs = {k: v for k, v in vars(fn).items() if not k.startswith("__")}
        funcs = [getattr(v, "__func__", v) for v in attrs.values()]
        out.update((k, v) for k, v in attrs.items() if not callable(v) and not hasattr(v, "__func__"))
    for f in funcs:
        code = getattr(f, "__code__", None)
        if code is None:
            continue
        names = _names(code)
        out.update((k, v) for k, v in getattr(f, "__globals__", {}).items()
                   if k in names and not isinstance(v, types.ModuleType))
        for k, cell in zip(code.co_freevars, getattr(f, "__closure__", None) or (), strict=False):
            try:
                out[k] = cell.cell_contents
            except ValueError:   # an empty cell
                pass
    return out


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _size(value: Any) -> int:
    """About how many bytes `value` adds to a pickle."""
    n = getattr(value, "nbytes", None)
    if type(n) is int:
        return n
    if isinstance(value, (bytes, bytearray, str)):
        return len(value)
    try:
        return len(_dumps(value))
    except Exception:
        return 0


def describe_pickling_error(what: str, value: Any, exc: BaseException) -> str:
    """A message naming what failed to pickle and why, for TypeError/PicklingError."""
    return (f"Could not serialize {what} of type {type(value).__name__}: {exc}. "
            "Only picklable values can cross process boundaries; pass something picklable "
            "or create the unpicklable object inside the task.")


_ZRAY_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _zray_frame(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_ZRAY_DIR)


def remote_traceback(exc: BaseException) -> str:
    """The traceback text of an exception raised in a task, without zray's own frames
    (the worker's that called the task, a nested get()'s): noise to the user, as Ray
    hides its own. Chained exceptions keep theirs, filtered the same way."""
    te = traceback.TracebackException.from_exception(exc)
    seen: set[int] = set()
    todo = [te]
    while todo:
        t = todo.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        t.stack = traceback.StackSummary.from_list(
            [f for f in t.stack if not _zray_frame(f.filename)])
        if t.exc_type is not None and issubclass(t.exc_type, RayTaskError):
            t.__cause__, t.__suppress_context__ = None, True   # its text has its cause
        todo += [c for c in (t.__cause__, t.__context__) if c is not None]
    return "".join(te.format())


def dumps_error(exc: BaseException, function_name: str, pid: int, where: str = "") -> bytes:
    """The blob of a RayTaskError for `exc`, raised in `function_name`.

    As Ray: an exception that does not pickle comes back as a RayTaskError whose cause
    is a ZrayError naming why, with the text; one that pickles but cannot be rebuilt
    (an __init__ that takes other arguments than it gives Exception) as an
    UnserializableException holding the text; a RayTaskError raised by a nested get()
    keeps its root cause (its text is in the traceback)."""
    tb = remote_traceback(exc)
    cause: BaseException | None = exc
    if isinstance(exc, RayTaskError) and exc.cause is not None:
        cause = exc.cause
    try:
        blob = _dumps(cause)
    except Exception as why:  # the exception itself does not pickle: keep its text
        kind = f"{type(cause).__module__}.{type(cause).__qualname__}"
        return _dumps(RayTaskError(function_name, tb, ZrayError(
            f"Exception {kind} isn't serializable: {why}.\nOriginal exception details:\n{tb}"),
            pid, where))
    try:
        cloudpickle.loads(blob)
    except Exception as why:  # it would not unpickle where get() runs either
        text = RayTaskError(function_name, tb, None, pid, where)
        return _dumps(UnserializableException(
            f"Failed to deserialize exception: {type(why).__name__}: {why}. Give the "
            f"exception class a __reduce__, or pass all its __init__ arguments on to "
            f"Exception.__init__, so that it pickles back.\nOriginal exception:\n"
            f"zray.exceptions.RayTaskError: {text}"))
    return _dumps(RayTaskError(function_name, tb, cause, pid, where))


class _ArgFailed:
    """Pickles as a call of _arg_failed: the error of a task whose argument failed,
    made from that argument's error blob when someone reads it (not before)."""

    def __init__(self, function_name: str, pid: int, blob: bytes) -> None:
        self.args = (function_name, pid, blob)

    def __reduce__(self) -> tuple:
        return (_arg_failed, self.args)


def dumps_arg_error(blob: Any, function_name: str, pid: int) -> Any:
    """The error blob of a task that never ran because an argument's task failed with
    the error in `blob`: as Ray's, a RayTaskError for this task that says so, and whose
    cause is the root cause (`except ValueError` still catches an upstream ValueError)."""
    if type(blob) is not bytes:   # (error blobs are inline; anything else goes as is)
        return blob
    return pickle.dumps(_ArgFailed(function_name, pid, blob), 5)


def _arg_failed(function_name: str, pid: int, blob: bytes) -> BaseException:
    try:
        upstream = loads(blob)
    except Exception as exc:
        upstream = UnserializableException(
            f"Failed to deserialize the error of an argument: {type(exc).__name__}: {exc}")
    cause = upstream.cause if isinstance(upstream, RayTaskError) else upstream
    kind = "zray.exceptions.RayTaskError" if isinstance(upstream, RayTaskError) else \
        f"{type(upstream).__module__}.{type(upstream).__qualname__}"
    tb = ("  At least one of the input arguments for this task could not be computed:\n"
          f"{kind}: {upstream}")
    return RayTaskError(function_name, tb, cause if cause is not None else upstream,
                        pid).as_instanceof_cause()


def dumps_system_error(exc: BaseException) -> bytes:
    """The blob of an error that zray raises itself (WorkerCrashedError, ...)."""
    return _dumps(exc)
