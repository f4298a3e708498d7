"""Ids of tasks, objects, actors, workers and nodes: short random bytes plus counters.

A task id is 16 bytes: 8 random bytes per process, then a counter. An object id is
the task id of the task that returns it plus a 4-byte return index.
"""
from __future__ import annotations

import itertools
import os
import struct

_pack_q = struct.Struct(">Q").pack
_pack_i = struct.Struct(">I").pack


class IdSource:
    """Makes fresh task ids for one process (thread-safe: itertools.count is atomic)."""

    def __init__(self) -> None:
        self.prefix = os.urandom(8)
        self._count = itertools.count(1)

    def task_id(self) -> bytes:
        return self.prefix + _pack_q(next(self._count))


def object_id(task_id: bytes, index: int) -> bytes:
    """The id of return value `index` (0-based) of task `task_id`."""
    return task_id + _pack_i(index)


def task_of(object_id: bytes) -> bytes:
    return object_id[:16]


def random_id(n: int = 16) -> bytes:
    return os.urandom(n)
