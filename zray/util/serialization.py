"""Custom serialization of a type (as ray.util.serialization): register_serializer()
and deregister_serializer().

As in Ray, a registration applies in the process that makes it, to the values that
process pickles (task and actor arguments, put(), return values): the driver's
registration does not make a worker pickle its return values that way; register in
the worker too (in the task, or an actor's __init__) for that. Unpickling needs no
registration: the pickled value names the deserializer (a function defined in the
driver's __main__ travels by value), so any process can read it.

    >>> register_serializer(Conn, serializer=lambda c: c.url, deserializer=Conn.open)
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _serialization as S

__all__ = ["deregister_serializer", "register_serializer"]


def register_serializer(cls: type, *, serializer: Callable[[Any], Any],
                        deserializer: Callable[[Any], Any]) -> None:
    """Pickle instances of `cls` (exactly that class, not its subclasses) as
    `deserializer(serializer(obj))`: `serializer` turns one into something that pickles
    (a dict of plain values, say); `deserializer`, which must pickle itself, makes the
    instance again where the value is read. Replaces an earlier registration for `cls`."""
    if not isinstance(cls, type):
        raise TypeError(f"register_serializer wants a class, got {type(cls).__name__} {cls!r}")
    for what, fn in (("serializer", serializer), ("deserializer", deserializer)):
        if not callable(fn):
            raise TypeError(f"{what} must be callable, got {type(fn).__name__} {fn!r}")

    def reduce(obj: Any) -> tuple:
        return deserializer, (serializer(obj),)

    S.register_reducer(cls, reduce)


def deregister_serializer(cls: type) -> None:
    """Undo register_serializer(cls) in this process (nothing happens if there was none)."""
    S.unregister_reducer(cls)
