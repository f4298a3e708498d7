"""The node's shared-memory object store: large values are written once into a
segment in /dev/shm (pickle protocol 5, buffers out of band) and read zero-copy by
every process on the node: numpy arrays come back as read-only views of it.

A stored value travels as a descriptor [STORED, name, size] where a small value
would travel as its pickle bytes. The owner of the object unlinks the segment when
the object is freed; the node broker removes whatever is left of its session at
exit (also when the driver was killed).

Segment layout: MAGIC, number of buffers, length of the pickle, each buffer's
length (all u64), the pickle, then each buffer at a 64-byte aligned offset.
"""
from __future__ import annotations

import mmap
import os
import struct
import threading
from typing import Any

SHM_DIR = "/dev/shm"
STORED = 1                 # the first item of a descriptor
_MAGIC = 0x7A5241592D5348  # "zRAY-SH"
_U64 = struct.Struct("<Q")
_ALIGN = 64


class Store:
    """This process's view of its node's store (set up when the runtime connects)."""

    def __init__(self) -> None:
        self.prefix = ""          # segment names start with it: zray-<session>-
        self._maps: dict[str, mmap.mmap] = {}
        self._lock = threading.Lock()

    def configure(self, session: str) -> None:
        self.prefix = f"zray-{session}-"

    # -- writing -------------------------------------------------------------------
    def put(self, key: str, meta: bytes, buffers: list) -> list:
        """Write a value into a new segment; its descriptor."""
        views = [memoryview(b).cast("B") for b in buffers]
        header = 8 * (3 + len(views))
        offsets, pos = [], _align(header + len(meta))
        for v in views:
            offsets.append(pos)
            pos = _align(pos + v.nbytes)
        size = max(pos, 1)
        name = self.prefix + key
        path = os.path.join(SHM_DIR, name)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, size)
            with mmap.mmap(fd, size) as m:
                m[0:8] = _U64.pack(_MAGIC)
                m[8:16] = _U64.pack(len(views))
                m[16:24] = _U64.pack(len(meta))
                for i, v in enumerate(views):
                    m[24 + 8 * i:32 + 8 * i] = _U64.pack(v.nbytes)
                m[header:header + len(meta)] = meta
                for off, v in zip(offsets, views, strict=False):
                    m[off:off + v.nbytes] = v          # the one copy of the data
        except BaseException:
            os.close(fd)
            _unlink(path)
            raise
        os.close(fd)
        return [STORED, name, size]

    # -- reading -------------------------------------------------------------------
    def read(self, desc: list) -> tuple[memoryview, list]:
        """(pickle, buffers) of a stored value: read-only views of the segment."""
        name = desc[1]
        with self._lock:
            m = self._maps.get(name)
            if m is None:
                m = self._maps[name] = self._map(name)
        view = memoryview(m)
        n = _U64.unpack_from(m, 8)[0]
        meta_len = _U64.unpack_from(m, 16)[0]
        header = 8 * (3 + n)
        meta = view[header:header + meta_len]
        buffers, pos = [], _align(header + meta_len)
        for i in range(n):
            length = _U64.unpack_from(m, 24 + 8 * i)[0]
            buffers.append(view[pos:pos + length])
            pos = _align(pos + length)
        return meta, buffers

    def _map(self, name: str) -> mmap.mmap:
        try:
            fd = os.open(os.path.join(SHM_DIR, name), os.O_RDONLY)
        except FileNotFoundError:
            from .exceptions import ObjectLostError
            raise ObjectLostError(name, f"the stored object {name} is gone from the object store "
                                        "(freed, or its node's store was removed)") from None
        try:
            size = os.fstat(fd).st_size
            m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        if _U64.unpack_from(m, 0)[0] != _MAGIC:
            raise ValueError(f"{name} is not a zray object segment")
        return m

    # -- freeing -------------------------------------------------------------------
    def free(self, desc: list) -> None:
        """Remove a stored value (its owner calls this when the object is freed).
        Views already handed out stay valid until they are dropped."""
        name = desc[1]
        with self._lock:
            self._maps.pop(name, None)
        _unlink(os.path.join(SHM_DIR, name))

    def forget(self, name: str) -> None:
        with self._lock:
            self._maps.pop(name, None)


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def session_tag(session_dir: str) -> str:
    """The tag of a session's segments: its directory's random part."""
    return os.path.basename(session_dir.rstrip("/")).removeprefix("zray-")


def is_stored(data: Any) -> bool:
    return type(data) is list


def sweep(session: str) -> int:
    """Remove every segment of a session (the node broker calls this at exit)."""
    prefix = f"zray-{session}-"
    n = 0
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return 0
    for name in names:
        if name.startswith(prefix):
            _unlink(os.path.join(SHM_DIR, name))
            n += 1
    return n


STORE = Store()
