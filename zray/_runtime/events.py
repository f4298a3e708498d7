"""A worker's record of the tasks and actor calls it runs, for the dashboard and
zray.timeline(): when each started and ended, and how it ended.

The thread that runs a task pays a dict write when it starts and a deque append when
it ends (no message per task). A thread of its own sends what was recorded to the
node (TASK_EVENTS) at most every CONFIG.task_events_s, and only when something
happened: an idle worker sends nothing. A task still running at a send goes out as
RUNNING (once), and again with its end.

    row: [task_id, name, actor_id, state, start, end, error]   (times: time.time())
    info: {pid, actor_id, pending (calls it holds), counts {name: [finished, failed]}}
"""
from __future__ import annotations

import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from .. import _protocol as P
from .. import _serialization as S
from .._batching import Batched
from .._config import CONFIG

__all__ = ["EVENTS", "TaskEvents"]

RUNNING, FINISHED, FAILED = "RUNNING", "FINISHED", "FAILED"
_ERROR_CHARS = 4000   # of a failure's traceback, kept with its row
# (Module constants: started() and ended() run for every task.)
_ID, _NAME, _ACTOR, _STATUS, _PAYLOAD, _ERROR = (P.T_ID, P.T_NAME, P.T_ACTOR, P.R_STATUS,
                                                 P.R_PAYLOAD, P.ERROR)
_now = time.time


class TaskEvents(Batched):
    def __init__(self) -> None:
        super().__init__("zray-events")
        self.on = False                   # set by start(): only a worker records
        self._running: dict[bytes, tuple] = {}   # task_id -> (spec, start)
        self._told: set[bytes] = set()    # running tasks already sent as RUNNING
        # Rows of the tasks that ended (a worker ends at most ~20,000 a second: the bound
        # is never reached), those that failed apart (their error is a blob until the
        # sender turns it into text).
        self._done: deque = deque(maxlen=100_000)
        self._failed: deque = deque(maxlen=1000)
        self._send: Callable[..., None] = lambda *a: None
        self._info: dict = {}
        self._pending: Callable[[], int] = lambda: 0
        self._lock = threading.Lock()     # one send at a time (the thread, or the last)

    def start(self, send: Callable[..., None], actor_id: bytes | None,
              pending: Callable[[], int]) -> None:
        """Record from now on, and send with `send(mtype, *fields)` (thread-safe)."""
        if not CONFIG.task_events:
            return
        self._send, self._pending = send, pending
        self._info = {"pid": os.getpid(), "actor_id": actor_id}
        self.on = True
        self._start()

    # -- the threads that run tasks (~0.6 us a task) ----------------------------------
    def started(self, spec: list) -> None:
        if self.on:
            self._running[spec[_ID]] = (spec, _now())
            if not self._armed:
                self._arm()

    def ended(self, spec: list, result: list) -> None:
        if self.on:
            end = _now()
            run = self._running.pop(spec[_ID], None)
            start = run[1] if run is not None else end
            if result[_STATUS] == _ERROR:
                self._failed.append([spec[_ID], spec[_NAME], spec[_ACTOR], FAILED, start, end,
                                     result[_PAYLOAD]])
            else:
                self._done.append((spec[_ID], spec[_NAME], spec[_ACTOR], FINISHED, start, end, ""))
            if not self._armed:
                self._arm()

    def record(self, task_id: bytes, name: str, actor_id: bytes | None, start: float,
               error: str = "") -> None:
        """A piece of work that is not a task spec (an actor's __init__), ended now."""
        if self.on:
            if error:
                self._failed.append([task_id, name, actor_id, FAILED, start, _now(), error])
            else:
                self._done.append((task_id, name, actor_id, FINISHED, start, _now(), ""))
            if not self._armed:
                self._arm()

    # -- the sender thread (Batched) --------------------------------------------------
    def flush(self) -> None:
        """Send what was recorded since the last send (also at the worker's exit)."""
        if not self.on:
            return
        with self._lock:
            try:
                rows, counts = self._take()
                if rows:
                    info = dict(self._info, pending=self._pending(), rows=len(rows),
                                counts=counts)
                    self._send(P.TASK_EVENTS, P.pack_rows(rows), info)
            except Exception:   # never let a report break the worker
                pass

    def _take(self) -> tuple[list, dict]:
        """The rows to send, and how many tasks of each function ended
        ({name: [finished, failed]}: the head counts these, not the rows)."""
        rows = _drain(self._done)
        counts = {name: [n, 0] for name, n in Counter(map(_row_name, rows)).items()}
        for row in _drain(self._failed):
            if type(row[6]) is bytes:
                row[6] = _error_text(row[6])
            counts.setdefault(row[1], [0, 0])[1] += 1
            rows.append(row)
        told = set()
        for task_id, (spec, start) in list(self._running.items()):
            told.add(task_id)
            if task_id not in self._told:
                rows.append((task_id, spec[_NAME], spec[_ACTOR], RUNNING, start, None, ""))
        self._told = told
        return rows, counts


def _drain(q: deque) -> list:
    """Take what `q` holds (appended to by other threads meanwhile)."""
    out = []
    for _ in range(len(q)):
        try:
            out.append(q.popleft())
        except IndexError:
            break
    return out


_row_name = itemgetter(1)


def _error_text(blob: Any) -> str:
    """The text of a failed task's error (its traceback), from the blob its owner gets."""
    try:
        return str(S.loads(blob))[-_ERROR_CHARS:]
    except Exception as exc:
        return f"(the error could not be read here: {type(exc).__name__})"


EVENTS = TaskEvents()
