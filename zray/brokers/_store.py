"""The node broker's account of its shared-memory store, and the thread that spills it.

    STORE reports, ROOM asks ---> NodeStore (the loop): which segments are in /dev/shm
                                  (least recently used first), on their way to disk, on
                                  disk; which to spill, and when a ROOM is answered
    NodeStore --jobs-----------> Spiller thread: copy to <session>/spill, rename, unlink
    Spiller --eventfd----------> the loop: handle_fd (accounting, ROOM answers)

The loop decides and the thread copies: a 100 MB spill copied on the loop stalled it
for 50 ms to a second (a busy disk), and every task and message of the node with it.
The store spills past its capacity (object_store_memory) and whenever /dev/shm has
less than shm_reserve_bytes free (its real free space, which other sessions share);
a writer that finds no room asks for it (ROOM) and is answered once the spills it
caused are done. A reader never breaks: a mapping outlives the file's move, and the
file is in the spill directory (renamed there) before it leaves /dev/shm.
"""
from __future__ import annotations

import os
import queue
import shutil
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from .._config import CONFIG
from .._object_store import SHM_DIR, shm_space

_SPILL, _DROP = 1, 2


class NodeStore:
    def __init__(self, session_dir: str, capacity: int, log: Any) -> None:
        self.capacity = capacity
        self.spill_dir = os.path.join(session_dir, "spill")
        self.in_shm: OrderedDict[str, int] = OrderedDict()   # least recently used first
        self.spilling: dict[str, int] = {}    # given to the spiller, still in /dev/shm
        self.spilled: dict[str, int] = {}
        self.used = 0          # bytes in /dev/shm (those being spilled included)
        self._moving = 0       # bytes being spilled
        self._stuck = False    # a spill failed (disk full?): none until something is freed
        self._rooms: list = []   # [job number, answer]: ROOM asks waiting for their spills
        self.log = log
        self._spiller = Spiller(self.spill_dir, log)

    # -- the loop's file descriptor --------------------------------------------------
    def attach(self, poller: Any, flag: int) -> None:
        """Poll the spiller's wake-ups in the node's loop (after the zygote's fork)."""
        poller.register(self._spiller.open(), flag)

    def handle_fd(self, fd: int) -> bool:
        """True if `fd` was the spiller's: what it finished is accounted, and the ROOM
        asks it satisfied are answered."""
        if fd != self._spiller.fd:
            return False
        for kind, name, ok in self._spiller.take():
            if kind == _SPILL:
                self._spilled_one(name, ok)
        done = self._spiller.spills_done
        while self._rooms and self._rooms[0][0] <= done:
            self._rooms.pop(0)[1]()
        return True

    def close(self) -> None:
        self._spiller.close(CONFIG.stop_grace_s)

    # -- what the node's processes report ------------------------------------------
    def added(self, name: str, size: int, on_disk: bool = False) -> None:
        if name in self.in_shm or name in self.spilled or name in self.spilling:
            return
        if on_disk:            # written straight to the spill directory
            self.spilled[name] = size
        else:
            self.in_shm[name] = size
            self.used += size

    def touched(self, name: str) -> None:
        """A process mapped the segment: it is the most recently used now."""
        if name in self.in_shm:
            self.in_shm.move_to_end(name)

    def freed(self, name: str) -> None:
        self._stuck = False
        size = self.in_shm.pop(name, None)
        if size is not None:
            self.used -= size
            return
        size = self.spilling.pop(name, None)
        if size is not None:    # on its way to disk: the spiller skips it, or it is dropped
            self.used -= size
            self._moving -= size
            self._spiller.cancel(name)
        elif self.spilled.pop(name, None) is not None:
            # (its owner removed the file; one the spiller renamed just after goes too)
            self._spiller.drop(name)

    # -- spilling --------------------------------------------------------------------
    def enforce(self) -> None:
        """Spill the least recently used segments until the store fits its capacity and
        leaves shm_reserve_bytes of /dev/shm free (counting what is on its way out)."""
        if self._stuck:
            return
        free = _shm_space()[0]
        reserve = CONFIG.shm_reserve_bytes
        self._spill_while(lambda: self.used - self._moving > self.capacity
                          or free + self._moving < reserve)

    def make_room(self, size: int, answer: Callable[[], Any]) -> None:
        """A writer needs `size` bytes of /dev/shm: spill until they would be free (and
        fit the capacity); answer() once those spills are done (at once if none are).
        (Nothing spills for a value larger than /dev/shm: it goes to disk anyway.)"""
        free, total = _shm_space()
        reserve = CONFIG.shm_reserve_bytes
        if not self._stuck and size + reserve <= total:
            self._spill_while(lambda: self.used - self._moving + size > self.capacity
                              or free + self._moving < size + reserve)
        if self._spiller.spills_done >= self._spiller.spills:
            answer()
        else:
            self._rooms.append([self._spiller.spills, answer])

    def _spill_while(self, more: Callable[[], bool]) -> None:
        while self.in_shm and more():
            name, size = self.in_shm.popitem(last=False)
            self.spilling[name] = size
            self._moving += size
            self._spiller.spill(name)

    def _spilled_one(self, name: str, ok: bool) -> None:
        size = self.spilling.pop(name, None)
        if size is None:          # freed on its way (cancel queued a drop behind it)
            return
        self._moving -= size
        if ok:
            self.used -= size
            self.spilled[name] = size
        else:                     # stays in /dev/shm, first in line for the next try
            self.in_shm[name] = size
            self.in_shm.move_to_end(name, last=False)
            self._stuck = True

    def stats(self) -> dict:
        """capacity: what /dev/shm can hold of the store now (object_store_memory, or
        less when /dev/shm has less room)."""
        return {"capacity": min(self.capacity, self.used + _shm_space()[0]), "used": self.used,
                "in_shm": len(self.in_shm) + len(self.spilling), "spilled": len(self.spilled),
                "spilled_bytes": sum(self.spilled.values())}


def _shm_space() -> tuple[int, int]:
    try:
        return shm_space()
    except OSError:        # no /dev/shm to ask: the capacity alone bounds the store
        return 1 << 62, 1 << 62


class Spiller:
    """A thread that moves segments to the spill directory and removes spilled files, in
    the order given; started by the first job. It counts the spills asked (spills) and
    those whose results the loop took (spills_done), and wakes the loop by an eventfd."""

    def __init__(self, spill_dir: str, log: Any) -> None:
        self.spill_dir, self.log = spill_dir, log
        self.fd = -1
        self.spills = 0
        self.spills_done = 0
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._done: deque = deque()           # (kind, name, ok), appended by the thread
        self._cancelled: set[str] = set()     # freed before the thread got to them
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def open(self) -> int:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        return self.fd

    def spill(self, name: str) -> None:
        self.spills += 1
        self._put((_SPILL, name))

    def drop(self, name: str) -> None:
        self._put((_DROP, name))

    def cancel(self, name: str) -> None:
        with self._lock:
            self._cancelled.add(name)
        self.drop(name)   # (if it was being copied already: what it left goes)

    def _put(self, job: tuple) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="zray-spill", daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def take(self) -> list:
        """The results the thread has (the loop's side)."""
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            pass
        done = self._done
        out = [done.popleft() for _ in range(len(done))]
        self.spills_done += sum(1 for kind, _, _ in out if kind == _SPILL)
        return out

    def close(self, timeout: float) -> None:
        thread = self._thread
        if thread is not None:
            self._jobs.put(None)
            thread.join(timeout)
        if self.fd >= 0 and (thread is None or not thread.is_alive()):
            os.close(self.fd)
            self.fd = -1

    # -- the thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            kind, name = job
            ok = True
            try:
                if kind == _DROP:
                    with self._lock:
                        self._cancelled.discard(name)
                    _unlink(os.path.join(self.spill_dir, name))
                else:
                    with self._lock:
                        skip = name in self._cancelled
                    ok = skip or self._move(name)
            except Exception as exc:   # never dies: the loop would wait for it forever
                self.log.warning("the spiller failed", name=name, error=repr(exc)[:300])
                ok = False
            self._done.append((kind, name, ok))
            try:
                os.eventfd_write(self.fd, 1)
            except OSError:
                pass

    def _move(self, name: str) -> bool:
        src = os.path.join(SHM_DIR, name)
        dst = os.path.join(self.spill_dir, name)
        try:
            os.makedirs(self.spill_dir, mode=0o700, exist_ok=True)
            shutil.copyfile(src, dst + ".tmp")   # (sendfile: no copy through Python)
            os.rename(dst + ".tmp", dst)   # readers find it there before it leaves shm
            os.unlink(src)
            return True
        except FileNotFoundError:            # freed meanwhile: nothing to keep
            _unlink(dst + ".tmp")
            return True
        except OSError as exc:
            _unlink(dst + ".tmp")
            self.log.warning("could not spill an object to disk", name=name, error=str(exc))
            return False


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
