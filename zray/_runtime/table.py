"""The futures table of one process: the objects it owns or borrows, their state,
who waits for them, and the counts that decide when they are freed.

Owned objects live until no local ObjectRef and no borrower is left. Borrowed
entries cache a value fetched from the owner and live while a local ref does.
The table makes decisions and returns them ("send this", "free that"); the
runtime's I/O thread carries them out.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

PENDING, READY, ERROR = 0, 1, 2


class Entry:
    __slots__ = ("state", "data", "owner", "owned", "refs", "borrowers", "waiters",
                 "callbacks", "remote_waiters", "contained", "fetched", "actor")

    def __init__(self, owner: bytes, owned: bool) -> None:
        self.state = PENDING
        self.data: Any = None          # the pickled value (READY) or error (ERROR)
        self.owner = owner
        self.owned = owned
        self.refs = 0                  # live ObjectRef instances in this process
        self.borrowers = 0             # holds by other processes or by stored blobs
        self.waiters: list | None = None
        self.callbacks: list | None = None
        self.remote_waiters: list | None = None
        self.contained: list | None = None   # [(object_id, owner)] this value holds
        self.fetched = False
        self.actor = False             # the pseudo-object whose lifetime is an actor's


class Waiter:
    """Wakes one blocked get()/wait(): after `count` resolutions, or any error."""
    __slots__ = ("count", "event", "stop_on_error")

    def __init__(self, count: int, stop_on_error: bool) -> None:
        self.count = count
        self.event = threading.Event()
        self.stop_on_error = stop_on_error


class ObjectTable:
    def __init__(self, me: bytes) -> None:
        self.me = me
        self.lock = threading.Lock()
        self.entries: dict[bytes, Entry] = {}
        # ObjectRef.__del__ only appends here (it may run in any thread, inside GC,
        # even while this thread holds the lock); the I/O thread drains it.
        self.released: deque = deque()

    # -- creation (any thread) -------------------------------------------------
    def new_owned(self, oids: list[bytes]) -> None:
        with self.lock:
            for oid in oids:
                e = Entry(self.me, True)
                e.refs = 1
                self.entries[oid] = e

    def adopt(self, oid: bytes, owner: bytes) -> bool:
        """One more local ref to `oid`; True if the owner must be told of a new borrow."""
        with self.lock:
            e = self.entries.get(oid)
            if e is None:
                e = self.entries[oid] = Entry(owner, owner == self.me)
            e.refs += 1
            return e.refs == 1 and not e.owned

    def hold(self, pairs: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """Count holds on owned objects here; return the pairs whose owners are elsewhere."""
        remote = []
        with self.lock:
            for oid, owner in pairs:
                e = self.entries.get(oid) if owner == self.me else None
                if e is not None:
                    e.borrowers += 1
                else:
                    remote.append((oid, owner))
        return remote

    # -- resolution (I/O thread) -----------------------------------------------
    def resolve(self, oid: bytes, state: int, data: Any, contained: list | None) -> tuple | None:
        """Set the value of `oid`; returns (callbacks, remote_waiters) to act on, or
        None if nobody holds the object any more (then `contained` must be released)."""
        with self.lock:
            e = self.entries.get(oid)
            if e is None or e.state != PENDING:
                return None
            # state last: get() reads a READY entry's data without taking the lock.
            e.data, e.contained = data, contained
            e.state = state
            if e.waiters:
                for w in e.waiters:
                    w.count -= 1
                    if w.count <= 0 or (state == ERROR and w.stop_on_error):
                        w.event.set()
            callbacks, remote = e.callbacks, e.remote_waiters
            e.waiters = e.callbacks = e.remote_waiters = None
            return callbacks, remote

    def release_local(self, oid: bytes) -> tuple[Entry | None, bool]:
        """One local ref fewer. Returns (entry if it is to be freed now, tell_owner)."""
        with self.lock:
            e = self.entries.get(oid)
            if e is None:
                return None, False
            e.refs -= 1
            if e.refs > 0:
                return None, False
            if not e.owned:
                del self.entries[oid]
                return e, True
            if e.borrowers <= 0:
                del self.entries[oid]
                return e, False
            return None, False

    def borrow_delta(self, oid: bytes, delta: int) -> Entry | None:
        """A borrower came or went; returns the entry if it is to be freed now."""
        with self.lock:
            e = self.entries.get(oid)
            if e is None:
                return None
            e.borrowers += delta
            if e.borrowers <= 0 and e.refs <= 0:
                del self.entries[oid]
                return e
            return None

    # -- waiting (user threads) ------------------------------------------------
    def add_callback(self, oid: bytes, fn: Callable[[Entry], None]) -> Entry | None:
        """Call fn(entry) (in the I/O thread) when `oid` resolves; if it already has,
        return the entry instead and do not call fn."""
        with self.lock:
            e = self.entries.get(oid)
            if e is None or e.state != PENDING:
                return e
            if e.callbacks is None:
                e.callbacks = []
            e.callbacks.append(fn)
            return None

    def add_remote_waiter(self, oid: bytes, requester: bytes) -> Entry | None:
        with self.lock:
            e = self.entries.get(oid)
            if e is None or e.state != PENDING:
                return e
            if e.remote_waiters is None:
                e.remote_waiters = []
            e.remote_waiters.append(requester)
            return None

    def register_waiter(self, entries: list[Entry], waiter: Waiter) -> bool:
        """Attach `waiter` to the pending entries; False if it is already satisfied."""
        with self.lock:
            pending = [e for e in entries if e.state == PENDING]
            done = len(entries) - len(pending)
            if waiter.stop_on_error and any(e.state == ERROR for e in entries):
                return False
            waiter.count -= done
            if waiter.count <= 0:
                return False
            for e in pending:
                if e.waiters is None:
                    e.waiters = []
                e.waiters.append(waiter)
            return True

    def unregister_waiter(self, entries: list[Entry], waiter: Waiter) -> None:
        with self.lock:
            for e in entries:
                if e.waiters and waiter in e.waiters:
                    e.waiters.remove(waiter)
