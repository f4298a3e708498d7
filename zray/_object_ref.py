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
from . import _protocol as P
from .exceptions import RaySystemError


class ObjectRef:
    """A future of one object. `zray.get(ref)` blocks for its value; `await ref`
    and `ref.future()` give it asynchronously.

    >>> ref = zray.put(41)
    >>> zray.get(ref) + 1
    42

    Passing a ref to a task, an actor or into put() (or pickling it) is how it reaches
    another process: the object then lives while that process holds it. Out of band
    (a file, a socket), `ObjectRef(ref.binary())` or `ObjectRef.from_hex(ref.binary().hex())`
    rebuilds it in any process of the cluster, with these limits:
    - nothing holds the object while it travels: its owner (the process that made the
      put or submitted the task) must still hold it when the rebuilt ref is made; once
      made, the rebuilt ref holds it as a passed ref does;
    - if the owner freed it, get() raises ObjectLostError; if the owner's process is
      gone, OwnerDiedError (Ray's get hangs in both cases, and in every process but
      the owner's);
    - ref.hex() is the object's id alone (what zray memory and the state API show):
      `ObjectRef.from_hex(ref.hex())` (or the id's 20 bytes) works only in a process
      that already knows the object (its owner, or one holding a ref to it); else
      ValueError. (Ray's from_hex raises NotImplementedError.)
    """
    __slots__ = ("_id", "_owner", "_rt", "__weakref__")

    def __init__(self, object_id: bytes, owner: bytes | None = None, objects: Any = None) -> None:
        # The caller has counted this ref in its process's object table already;
        # `objects` is that process's runtime.owner. Without them (out of band: see the
        # class docstring), this counts it.
        if objects is None or owner is None:
            object_id, owner, objects = _out_of_band(object_id)
        self._id = object_id
        self._owner: bytes = owner
        self._rt = objects

    def __del__(self) -> None:
        try:
            self._rt.on_ref_deleted(self._id)
        except Exception:  # interpreter shutdown: the runtime is half gone
            pass

    def binary(self) -> bytes:
        """The object's id and its owner's: ObjectRef(binary) rebuilds this ref."""
        return self._id + self._owner

    def hex(self) -> str:
        """The object's id, in hex."""
        return self._id.hex()

    @classmethod
    def from_hex(cls, hex_id: str) -> ObjectRef:
        """ObjectRef(bytes.fromhex(hex_id)): see the class docstring for its limits."""
        if not isinstance(hex_id, str):
            raise TypeError(f"ObjectRef.from_hex() expects a str, got {type(hex_id).__name__}")
        try:
            binary = bytes.fromhex(hex_id)
        except ValueError:
            raise ValueError(f"ObjectRef.from_hex(): {hex_id[:80]!r} is not a hex string") from None
        return cls(binary)

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


_ID_SIZE = 20                       # task id (16) + return index (4): P.object_id
_OWNER_SIZE = 1 + P.NODE_TAG + 8    # P.client_ident: kind, node tag, process prefix


def _out_of_band(binary: Any) -> tuple[bytes, bytes, Any]:
    """(object id, owner, the runtime's owner part) of a ref rebuilt from binary(),
    counted in this process's table (a borrow, told to the owner, as when a ref is
    unpickled)."""
    if not isinstance(binary, (bytes, bytearray)):
        raise TypeError(f"ObjectRef() expects the bytes of ref.binary(), got {type(binary).__name__}")
    binary = bytes(binary)
    if len(binary) not in (_ID_SIZE, _ID_SIZE + _OWNER_SIZE):
        raise ValueError(f"ObjectRef() expects the {_ID_SIZE + _OWNER_SIZE} bytes of ref.binary() "
                         f"(or an object id's {_ID_SIZE}), got {len(binary)}")
    rt = _context.runtime_or_init()
    owner = rt.owner
    oid = binary[:_ID_SIZE]
    who = binary[_ID_SIZE:] or owner.owner_of(oid)
    if who is None:
        raise ValueError(f"ObjectRef(): this process does not know the object {oid.hex()}, and "
                         "an id alone does not say who owns it: rebuild it from ref.binary() "
                         "(the id and its owner), or pass the ref itself.")
    return oid, who, owner.count_out_of_band(oid, who)


def _rebuild_ref(object_id: bytes, owner: bytes) -> ObjectRef:
    rt = _context.runtime()
    if rt is None:
        raise RaySystemError("an ObjectRef can only be unpickled in a process connected to "
                             "zray (call zray.init() first)")
    return rt.owner.adopt_ref(object_id, owner)
