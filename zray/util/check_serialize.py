"""inspect_serializability(): which part of a value keeps it from pickling (as
ray.util.check_serialize). zray pickles what tasks and actors are given, return and
capture with cloudpickle; this walks a value that fails to find the members that fail.

    >>> ok, failures = inspect_serializability(my_function, name="my_function")
    >>> [f.path for f in failures]          # e.g. [("my_function", "db_connection")]
"""
from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any, TextIO

from .. import _serialization as S

__all__ = ["FailureTuple", "inspect_serializability"]

_CONTAINER_ITEMS = 1000   # items of a list, tuple, set or dict looked into, at most


class FailureTuple:
    """One value that does not pickle: `obj`, the `path` of names from the inspected
    value down to it, and the `parent` that refers to it (None at the top)."""

    def __init__(self, obj: Any, path: tuple[str, ...], parent: Any) -> None:
        self.obj, self.path, self.parent = obj, path, parent

    @property
    def name(self) -> str:
        return str(self.path[-1]) if self.path else "unknown"

    def __repr__(self) -> str:
        shown = " -> ".join("unknown" if p is None else str(p) for p in self.path)
        return f"FailTuple({self.name} [path={shown}, obj={_short(self.obj)}, " \
               f"parent={_short(self.parent)}])"


class _Printer:
    def __init__(self, file: TextIO | None) -> None:
        self.file, self.level = file, 0

    def line(self, text: str) -> None:
        print("    " * self.level + text, file=self.file)


def inspect_serializability(base_obj: Any, name: str | None = None, depth: int = 3,
                            print_file: TextIO | None = None) -> tuple[bool, set[FailureTuple]]:
    """(True, set()) if `base_obj` pickles as zray pickles task arguments and functions;
    else (False, the set of FailureTuple found): the members (attributes, a function's
    globals and closure variables, the items of a list, tuple, set or dict) that fail
    themselves, looked for up to `depth` levels down; the object itself if none of its
    members fails alone. What it finds is printed (to `print_file`, default stdout)."""
    if type(depth) is not int or depth < 0:
        raise ValueError(f"depth must be an int >= 0, got {depth!r}")
    out = _Printer(print_file)
    title = f"Checking Serializability of {_short(base_obj, 200)}"
    rule = "=" * min(len(title), 80)
    out.line(rule)
    out.line(title)
    out.line(rule)
    failures: set[FailureTuple] = set()
    path = (name,) if name is not None else ()
    ok = _inspect(base_obj, path, depth, None, failures, out)
    if not ok:
        out.line(rule)
        out.line("Variable(s) found to be non-serializable:")
        for failure in sorted(failures, key=repr):
            out.line(f"    {failure}")
        out.line("Create such objects inside the task or actor instead of capturing them, "
                 "or give their class a __reduce__ (or zray.util.register_serializer).")
    out.line(rule)
    return ok, failures


def _inspect(obj: Any, path: tuple, depth: int, parent: Any, failures: set, out: _Printer) -> bool:
    """True if `obj` pickles; else records what fails in `failures`."""
    error = _pickle_error(obj)
    if error is None:
        return True
    out.line(f"!!! FAIL serialization: {error}")
    found = False
    if depth > 0:
        out.level += 1
        for member_name, member in _members(obj):
            out.line(f"Serializing {member_name!r} {_short(member)}...")
            if not _inspect(member, path + (member_name,), depth - 1, obj, failures, out):
                found = True
        out.level -= 1
    if not found:   # none of its members fails alone: the object itself is at fault
        failures.add(FailureTuple(obj, path, parent))
    return False


def _members(obj: Any) -> Iterator[tuple[str, Any]]:
    """What `obj` refers to, by name: a function's globals and closure variables, a
    container's items, an object's (or class's) attributes and methods."""
    if inspect.isfunction(obj):
        try:
            closure = inspect.getclosurevars(obj)
        except (TypeError, ValueError):
            return
        yield from closure.globals.items()
        yield from closure.nonlocals.items()
        return
    if type(obj) in (list, tuple):
        yield from ((f"[{i}]", v) for i, v in enumerate(obj[:_CONTAINER_ITEMS]))
        return
    if type(obj) in (set, frozenset):
        yield from ((f"<item {i}>", v) for i, v in zip(range(_CONTAINER_ITEMS), obj, strict=False))
        return
    if type(obj) is dict:
        for i, (k, v) in enumerate(obj.items()):
            if i >= _CONTAINER_ITEMS:
                return
            yield f"[{k!r}]", v
        return
    try:
        members = inspect.getmembers(obj)
    except Exception:   # a property that raises, a broken __getattr__
        return
    for member_name, member in members:
        if (member_name.startswith("__") and member_name.endswith("__")) or inspect.isbuiltin(member):
            continue
        if inspect.ismethod(member) and member.__self__ is obj:   # (fails for obj's sake only)
            continue
        yield member_name, member


def _pickle_error(obj: Any) -> str | None:
    try:
        S.dumps_plain(obj)
    except Exception as exc:   # (what pickling raises varies: TypeError, PicklingError...)
        return f"{type(exc).__name__}: {exc}"
    return None


def _short(obj: Any, limit: int = 80) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = f"<{type(obj).__name__} object>"
    return text if len(text) <= limit else text[:limit - 3] + "..."
