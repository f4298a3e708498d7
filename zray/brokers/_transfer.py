"""Objects between nodes. A stored value (a shared-memory segment) that a local client
is handed must be in this node's /dev/shm: before a node delivers a result, an object or
a task that names a segment another node made, it pulls that segment from that node, in
chunks, several in flight, written straight into a local segment of the same name (so
a reader maps it as it would a local one). One pull serves every message waiting for
the segment; messages to the same client (or from it) stay in order behind a held one.

    node B (needs it) --CHUNK_REQ(name, offset, length)--> node A (made it)
    node B <--CHUNK(name, offset, size, "") + the bytes---- node A   (error: "why", no bytes)

A chunk's bytes go as frames (of transfer_frame_bytes over CurveZMQ) that are views of a
mapping of the segment, and are written with one pwritev: no copy in Python either side.

A copy goes with its original: the node where the owner frees either one tells the
other (DROP), and the node that made it tells every node that pulled it. A pull that
cannot finish (its node died or left, the segment is gone, no progress for
transfer_timeout_s) lets its messages through: their reader gets ObjectLostError.
"""
from __future__ import annotations

import errno
import mmap
import os
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from .. import _protocol as P
from .._config import CONFIG
from .._object_store import SHM_DIR, STORED
from ._store import NodeStore

_PART = ".part"
MAX_FRAMES = 64   # a CHUNK's bytes come in at most this many frames


def stored_in(value: Any, found: list, depth: int = 0) -> list:
    """Append the (name, size) of each segment descriptor ([STORED, name, size]) in a
    message field (values are blobs or descriptors, in lists); `found`."""
    if type(value) is list:
        if len(value) == 3 and value[0] == STORED and type(value[1]) is str \
                and type(value[2]) is int:
            found.append((value[1], value[2]))
        elif depth < 4:
            for item in value:
                stored_in(item, found, depth + 1)
    return found


def prefix_of(name: str) -> str:
    """The prefix of a segment name (zray-<session>-): which node made it."""
    return name[:name.rfind("-") + 1]


def _valid_name(name: Any) -> bool:
    return type(name) is str and name.startswith("zray-") and "/" not in name \
        and not name.endswith(_PART) and len(name) < 256


class _Pull:
    __slots__ = ("name", "size", "fd", "source", "next_offset", "received", "waiters",
                 "last_progress", "others")

    def __init__(self, name: str, size: int, fd: int, source: bytes, now: float,
                 others: list[bytes]) -> None:
        self.name, self.size, self.fd, self.source = name, size, fd, source
        self.others = others   # nodes that may hold a copy, tried in turn if source fails
        self.next_offset = 0
        self.received = 0
        self.waiters: list[_Need] = []
        self.last_progress = now


class _Need:
    """What waits until the segments it names are here."""
    __slots__ = ("missing", "then")

    def __init__(self, missing: int, then: Callable[[], None]) -> None:
        self.missing, self.then = missing, then


class Transfers:
    def __init__(self, prefix: str, store: NodeStore, node_of_prefix: Callable[[str], Any],
                 send: Callable[[bytes, bytes, Any], bool], log: Any,
                 other_nodes: Callable[[], list] = list, encrypted: bool = True) -> None:
        self.prefix, self.store, self.log = prefix, store, log
        # A chunk goes in frames of transfer_frame_bytes over CurveZMQ, which encrypts
        # each frame apart (see _config); over plain tcp whole (frames: ~4% slower there).
        self._frame_bytes = CONFIG.transfer_frame_bytes if encrypted \
            else CONFIG.transfer_chunk_bytes
        self._node_of_prefix = node_of_prefix   # segment prefix -> node id (the head's table)
        self._send = send                       # (node id, header, frames | None) -> reached?
        self._other_nodes = other_nodes         # () -> the other live nodes' ids
        self._pulls: dict[str, _Pull] = {}
        self.replicas: dict[str, bytes] = {}          # name -> the node that made it
        self._served: dict[str, set[bytes]] = {}      # name -> nodes that pulled it from here
        self._queues: dict[Hashable, deque] = {}      # key -> [ready, then] in arrival order

    # -- holding messages ----------------------------------------------------------
    def when_here(self, key: Hashable, names: list, then: Callable[[], None]) -> None:
        """Run `then` once every (name, size) in `names` is in this node's store, after
        whatever was held before it under the same `key` (None: no order to keep)."""
        if key is None:
            self._need(names, then)
            return
        queue = self._queues.get(key)
        if queue is None:
            if not names or not self._missing(names):
                then()
                return
            queue = self._queues[key] = deque()
        entry = [False, then]
        queue.append(entry)
        self._need(names, lambda: self._ready(key, entry))

    def _ready(self, key: Hashable, entry: list) -> None:
        entry[0] = True
        queue = self._queues.get(key)
        while queue and queue[0][0]:
            _run(queue.popleft()[1], self.log)
        if queue is not None and not queue:
            del self._queues[key]

    def _missing(self, names: list) -> list:
        return [(n, s) for n, s in names if not self._here(n)]

    def _here(self, name: str) -> bool:
        # (a segment already in this /dev/shm: nodes of one machine share it)
        return name.startswith(self.prefix) or name in self.replicas \
            or os.path.exists(os.path.join(SHM_DIR, name))

    def _need(self, names: list, then: Callable[[], None]) -> None:
        missing = self._missing(names)
        if not missing:
            _run(then, self.log)
            return
        need = _Need(len(missing), then)
        for name, size in missing:
            pull = self._pulls.get(name) or self._start(name, size)
            if pull is None:          # cannot be pulled: its reader fails on it
                self._done_one(need)
            else:
                pull.waiters.append(need)

    # -- the node that pulls -----------------------------------------------------------
    def _start(self, name: str, size: int) -> _Pull | None:
        """Pull from the node that made it; if that node is gone, or goes in the middle,
        from another node that pulled a copy (each live node is asked in turn: one that
        has none says so)."""
        source = self._node_of_prefix(prefix_of(name)) if _valid_name(name) else None
        others = [n for n in self._other_nodes() if n != source] if _valid_name(name) else []
        if source is None and others:
            source, others = others[0], others[1:]
        if source is None or size < 0:
            self.log.warning("no node holds a stored object to pull", name=name)
            return None
        try:
            fd = os.open(os.path.join(SHM_DIR, name + _PART),
                         os.O_CREAT | os.O_TRUNC | os.O_RDWR, 0o600)
        except OSError as exc:
            self.log.warning("cannot make a segment to pull into", name=name, error=str(exc))
            return None
        pull = self._pulls[name] = _Pull(name, size, fd, source, time.monotonic(), others)
        if size == 0:
            self._finish(pull, "")
            return pull
        for _ in range(CONFIG.transfer_in_flight):
            if not self._request_next(pull):
                break
        return pull

    def _request_next(self, pull: _Pull) -> bool:
        if pull.next_offset >= pull.size or pull.name not in self._pulls:
            return False
        length = min(CONFIG.transfer_chunk_bytes, pull.size - pull.next_offset)
        if not self._send(pull.source, P.encode(P.CHUNK_REQ, pull.name, pull.next_offset, length),
                          None):
            self._finish(pull, "its node is unreachable")
            return False
        pull.next_offset += length
        return True

    def on_chunk(self, source: bytes, f: list, frames: Any) -> None:
        """A chunk's header and its bytes (zmq.Frames, or None)."""
        name, offset, size, error = f
        pull = self._pulls.get(name) if type(name) is str else None
        if pull is None or pull.source != source:
            return                # a late chunk of a pull that failed
        views = [frame.buffer for frame in frames or ()]
        if error or not views or type(offset) is not int or offset < 0 \
                or not size == sum(view.nbytes for view in views) \
                == min(CONFIG.transfer_chunk_bytes, pull.size - offset):
            self._finish(pull, str(error) or "a malformed chunk")
            return
        try:
            _pwrite_all(pull.fd, views, offset)
        except OSError as exc:      # /dev/shm is full
            self._finish(pull, f"cannot write it here ({exc.strerror})")
            return
        pull.received += size
        pull.last_progress = time.monotonic()
        if pull.received >= pull.size:
            self._finish(pull, "")
        else:
            self._request_next(pull)

    def _finish(self, pull: _Pull, error: str) -> None:
        if error and pull.others:   # another node may have a copy: start over from it
            pull.source, pull.others = pull.others[0], pull.others[1:]
            pull.next_offset = pull.received = 0
            pull.last_progress = time.monotonic()
            for _ in range(CONFIG.transfer_in_flight):
                if not self._request_next(pull):
                    break
            return
        del self._pulls[pull.name]
        part = os.path.join(SHM_DIR, pull.name + _PART)
        try:
            if not error:
                os.ftruncate(pull.fd, pull.size)
                os.rename(part, os.path.join(SHM_DIR, pull.name))
        except OSError as exc:
            error = f"cannot keep it here ({exc.strerror})"
        os.close(pull.fd)
        if error:
            self.log.warning("could not pull a stored object from its node", name=pull.name,
                             error=error)
            _unlink(part)
        else:
            self.replicas[pull.name] = pull.source
            self.store.added(pull.name, pull.size)   # counted here too, for spilling
            self.store.enforce()
        for need in pull.waiters:
            self._done_one(need)

    def _done_one(self, need: _Need) -> None:
        need.missing -= 1
        if need.missing == 0:
            _run(need.then, self.log)

    def nodes_changed(self, alive: Callable[[bytes], bool]) -> None:
        """The node table changed: pulls from nodes that died or left go on from another
        copy, or fail."""
        for pull in [p for p in self._pulls.values() if not alive(p.source)]:
            pull.others = [n for n in pull.others if alive(n)]
            self._finish(pull, "its node left the cluster")
        for nodes in self._served.values():
            nodes.difference_update([n for n in nodes if not alive(n)])

    def expire(self, now: float) -> None:
        """Pulls that made no progress for transfer_timeout_s fail."""
        for pull in [p for p in self._pulls.values()
                     if now - p.last_progress > CONFIG.transfer_timeout_s]:
            self._finish(pull, "no progress")

    # -- the node that made it -----------------------------------------------------
    def on_chunk_req(self, peer: bytes, f: list) -> None:
        name, offset, length = f
        # (It serves what it made, and whole copies it pulled: their origin may be gone.)
        if not _valid_name(name) or not (name.startswith(self.prefix) or name in self.replicas) \
                or type(offset) is not int \
                or type(length) is not int or offset < 0 \
                or not 0 < length <= CONFIG.transfer_chunk_bytes:
            self._send(peer, P.encode(P.CHUNK, str(name)[:256], -1, 0,
                                      "not a stored object of this node"), None)
            return
        try:
            data = _read_segment(name, self.store.spill_dir, offset, length)
        except OSError as exc:
            self._send(peer, P.encode(P.CHUNK, name, offset, 0, f"gone ({exc.strerror})"), None)
            return
        self._served.setdefault(name, set()).add(peer)
        step = max(self._frame_bytes, -(-length // MAX_FRAMES))
        frames = [data[start:start + step] for start in range(0, length, step)]
        self._send(peer, P.encode(P.CHUNK, name, offset, length, ""), frames)

    # -- freeing: a copy goes with its original ------------------------------------------
    def freed(self, name: str) -> None:
        """A process of this node freed a segment: if it was a copy, the original goes
        too; if it was an original, so do its copies."""
        origin = self.replicas.pop(name, None)
        if origin is not None:
            self._send(origin, P.encode(P.DROP, name), None)
        for node in self._served.pop(name, ()):
            self._send(node, P.encode(P.DROP, name), None)

    def on_drop(self, peer: bytes, f: list) -> None:
        """Another node's copy of a segment was freed: this node's goes."""
        name = f[0]
        if not _valid_name(name) or not (name.startswith(self.prefix) or name in self.replicas):
            return
        _unlink(os.path.join(SHM_DIR, name))
        _unlink(os.path.join(self.store.spill_dir, name))
        self.store.freed(name)
        self.replicas.pop(name, None)
        for node in self._served.pop(name, set()) - {peer}:   # (the other nodes that pulled it)
            self._send(node, P.encode(P.DROP, name), None)

    def sweep(self) -> None:
        """At exit: the copies and half-pulled segments this node made."""
        for pull in list(self._pulls.values()):
            os.close(pull.fd)
            _unlink(os.path.join(SHM_DIR, pull.name + _PART))
        self._pulls.clear()
        for name in self.replicas:
            _unlink(os.path.join(SHM_DIR, name))
            _unlink(os.path.join(self.store.spill_dir, name))
        self.replicas.clear()


def _run(then: Callable[[], None], log: Any) -> None:
    try:
        then()
    except Exception as exc:  # a held message's handler failed: drop that message only
        log.warning("dropped a bad message", error=repr(exc)[:300])


def _read_segment(name: str, spill_dir: str, offset: int, length: int) -> memoryview:
    """A read-only view of part of a segment (mapped: zmq sends from it without a copy,
    and unmaps it when it is sent)."""
    try:
        fd = os.open(os.path.join(SHM_DIR, name), os.O_RDONLY)
    except FileNotFoundError:   # spilled to disk
        fd = os.open(os.path.join(spill_dir, name), os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if offset + length > size:
            raise OSError(errno.EINVAL, "shorter than asked")
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        m = mmap.mmap(fd, offset + length - start, prot=mmap.PROT_READ, offset=start)
    finally:
        os.close(fd)
    return memoryview(m)[offset - start:]


def _pwrite_all(fd: int, views: list, offset: int) -> None:
    """Write the buffers one after another at `offset` (one syscall, unless it is cut short)."""
    views = [memoryview(view).cast("B") for view in views]
    while views:
        n = os.pwritev(fd, views, offset)
        offset += n
        while views and n >= views[0].nbytes:
            n -= views.pop(0).nbytes
        if views and n:
            views[0] = views[0][n:]


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
