"""Room in /dev/shm for a value about to be written (the store's make_room hook): any
thread that writes a segment asks its node (ROOM, after the STORE report of what this
process made so far) and waits until the node has spilled older objects (ROOM_MADE),
for at most spill_wait_s; then it writes into /dev/shm or, still short, to disk."""
from __future__ import annotations

import itertools
import threading

from .. import _protocol as P
from .._config import CONFIG
from .transport import Transport


class RoomAsks:
    def __init__(self, t: Transport) -> None:
        self.t = t
        self._seq = itertools.count(1)
        self._waiting: dict[int, threading.Event] = {}

    def ask(self, size: int) -> bool:
        """Wait for the node to make room for `size` bytes; False if it did not answer
        (or this is the I/O thread, which would wait for its own reply)."""
        thread = self.t.thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            return False
        seq = next(self._seq)
        done = self._waiting[seq] = threading.Event()
        try:
            self.t.send(P.ROOM, seq, size)
            return done.wait(CONFIG.spill_wait_s)
        finally:
            self._waiting.pop(seq, None)

    def on_made(self, f: list) -> None:
        """ROOM_MADE (the I/O thread)."""
        done = self._waiting.get(f[0]) if type(f[0]) is int else None
        if done is not None:
            done.set()
