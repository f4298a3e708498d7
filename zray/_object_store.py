"""The node's shared-memory object store: large values are written once into a
segment in /dev/shm (pickle protocol 5, buffers out of band) and read zero-copy by
every process on the node: numpy arrays come back as read-only views of it.

A stored value travels as a descriptor [STORED, name, size] where a small value
would travel as its pickle bytes. The owner of the object unlinks the segment when
the object is freed; the node broker removes whatever is left of its session at
exit (also when the driver was killed).

Capacity: every process tells its node which segments it made and freed (STORE
messages); when the node's store holds more than object_store_memory, or /dev/shm
runs short, the node moves the least recently used segments to its spill directory
on disk (brokers/_store.py, on a thread of its own). A writer that finds /dev/shm
too full for its value first asks its node for room (ROOM: the node spills older
objects, then answers); if there is still none, it writes the segment straight into
the spill directory (Ray's fallback allocation): a put fails only when that disk is
full too. A reader that does not find a segment in /dev/shm maps the spilled file
instead (the page cache makes that a restore without a copy into shared memory).

Segment layout: MAGIC, number of buffers, length of the pickle, each buffer's
length (all u64), the pickle, then each buffer at a 64-byte aligned offset.
"""
from __future__ import annotations

import errno
import mmap
import os
import struct
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ._config import CONFIG
from .exceptions import ObjectLostError, ObjectStoreFullError

SHM_DIR = "/dev/shm"
STORED = 1                 # the first item of a descriptor
_MAGIC = 0x7A5241592D5348  # "zRAY-SH"
_U64 = struct.Struct("<Q")
_ALIGN = 64


class Store:
    """This process's view of its node's store (set up when the runtime connects)."""

    def __init__(self) -> None:
        self.prefix = ""          # segment names start with it: zray-<session>-
        self.spill_dir = ""
        self.capacity = 0         # bytes; 0: not known yet (no limit checked here)
        self._maps: dict[str, mmap.mmap] = {}
        self._lock = threading.Lock()
        # Segments made and freed here, for the node's accounting (drained by the
        # runtime's I/O thread, which on_change wakes).
        self.added: deque = deque()
        self.freed: deque = deque()
        self.touched: deque = deque()
        self.on_change: Any = None
        # make_room(size): ask the node to spill older objects until /dev/shm has room
        # for `size` bytes; returns once it did what it could (set by the runtime).
        self.make_room: Callable[[int], Any] | None = None

    def configure(self, session_dir: str, capacity: int = 0) -> None:
        self.prefix = f"zray-{session_tag(session_dir)}-"
        self.spill_dir = os.path.join(session_dir, "spill")
        self.capacity = capacity

    def _changed(self) -> None:
        hook = self.on_change
        if hook is not None:
            hook()

    # -- writing -------------------------------------------------------------------
    def put(self, key: str, meta: bytes, buffers: list) -> list:
        """Write a value into a new segment; its descriptor. The segment goes into
        /dev/shm if it has room (made by the node if need be), else into the spill
        directory on disk; ObjectStoreFullError only if that disk is full too."""
        views = [memoryview(b).cast("B") for b in buffers]
        header = 8 * (3 + len(views))
        offsets, pos = [], _align(header + len(meta))
        for v in views:
            offsets.append(pos)
            pos = _align(pos + v.nbytes)
        size = max(pos, 1)
        parts: list[tuple[int, Any]] = [(0, struct.pack(
            f"<{3 + len(views)}Q", _MAGIC, len(views), len(meta), *(v.nbytes for v in views)) + meta)]
        parts += zip(offsets, views, strict=True)
        name = self.prefix + key
        if self._room_in_shm(size) and _write(os.path.join(SHM_DIR, name), parts, size):
            self.added.append((name, size))
        else:
            self._write_to_disk(name, parts, size)
            self.added.append((name, size, True))   # the node counts it as spilled
        self._changed()
        return [STORED, name, size]

    def _room_in_shm(self, size: int) -> bool:
        """Whether /dev/shm has room for `size` bytes, leaving shm_reserve_bytes free;
        if not, the node is asked to spill older objects first (make_room)."""
        if self.capacity and size > self.capacity:
            return False          # larger than the whole store: to disk at once
        free, total = shm_space()
        reserve = CONFIG.shm_reserve_bytes
        if size + reserve > total:
            return False
        if size + reserve <= free:
            return True
        ask = self.make_room
        if ask is not None:
            ask(size)             # returns once the node spilled what it could
        return size <= shm_space()[0]

    def _write_to_disk(self, name: str, parts: list, size: int) -> None:
        if not self.spill_dir:
            raise ObjectStoreFullError(f"/dev/shm has no room for an object of {size:,} bytes")
        try:
            os.makedirs(self.spill_dir, mode=0o700, exist_ok=True)
            if _write(os.path.join(self.spill_dir, name), parts, size):
                return
        except OSError as exc:
            raise ObjectStoreFullError(f"could not write an object of {size:,} bytes to the spill "
                                       f"directory {self.spill_dir}: {exc}") from None
        raise ObjectStoreFullError(
            f"neither /dev/shm nor the disk of the spill directory {self.spill_dir} has room "
            f"for an object of {size:,} bytes; free refs, or make room on that disk")

    # -- reading -------------------------------------------------------------------
    def read(self, desc: list) -> tuple[memoryview, list]:
        """(pickle, buffers) of a stored value: read-only views of the segment."""
        name = desc[1]
        with self._lock:
            m = self._maps.get(name)
            if m is None:
                m = self._maps[name] = self._map(name)
                self.touched.append(name)   # a new reader: recently used, for spilling
                touched = True
            else:
                touched = False
        if touched:
            self._changed()
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
            try:  # spilled to disk by the node: map the file there
                fd = os.open(os.path.join(self.spill_dir, name), os.O_RDONLY)
            except FileNotFoundError:
                raise ObjectLostError(name, f"the stored object {name} is gone from the object "
                                            "store (freed, or its node's store was removed)") from None
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
        if self.spill_dir:
            _unlink(os.path.join(self.spill_dir, name))
        self.freed.append(name)
        self._changed()

    def forget(self, name: str) -> None:
        with self._lock:
            self._maps.pop(name, None)


def _write(path: str, parts: list, size: int) -> bool:
    """Write a new segment file of `size` bytes from (offset, bytes) parts; False (and
    no file left) if its filesystem is full."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        # pwrite, not an mmap: the kernel copies each buffer once into the tmpfs
        # pages (no page faults, no zeroing first: ~2x faster for 100 MB), and a
        # full /dev/shm is an ENOSPC here rather than a SIGBUS on a mapped write.
        for off, data in parts:
            _pwrite_all(fd, data, off)
        os.ftruncate(fd, size)
    except OSError as exc:
        os.close(fd)
        _unlink(path)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return False
        raise
    except BaseException:
        os.close(fd)
        _unlink(path)
        raise
    os.close(fd)
    return True


def shm_space() -> tuple[int, int]:
    """(free, total) bytes of /dev/shm as the kernel counts them now (every process's
    segments, this session's or not)."""
    st = os.statvfs(SHM_DIR)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def _pwrite_all(fd: int, data: Any, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view.nbytes:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


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
