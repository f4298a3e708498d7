"""What a process records from any thread and a thread of its own sends in batches:
at most every CONFIG.task_events_s, and only after something was recorded (an idle
process sends nothing). The first record after a send arms the sender (one Event set);
the records after it cost a bool test. Task events (_runtime/events.py) and
application metrics (_metrics.py) are sent this way."""
from __future__ import annotations

import threading
import time

from ._config import CONFIG

__all__ = ["Batched"]


class Batched:
    def __init__(self, thread_name: str) -> None:
        self._armed = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_name = thread_name
        self._start_lock = threading.Lock()

    def _start(self) -> None:
        """Start the sender thread (once)."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._sender, name=self._thread_name,
                                                    daemon=True)
                    self._thread.start()

    def _arm(self) -> None:
        self._armed = True
        self._wake.set()

    def _sender(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            time.sleep(CONFIG.task_events_s)   # (the batching interval)
            self._armed = False   # before the flush: what is recorded after arms again
            self.flush()

    def flush(self) -> None:
        raise NotImplementedError
