"""What a node tells the head about its tasks, for the dashboard and zray.timeline():
the rows its workers report (TASK_EVENTS, batched by each worker and passed on packed,
as they came: the node never unpacks a row), the failures the node sees itself (a
worker that died, a call to a dead actor, a cancelled task), a snapshot of its queue
(the PENDING tasks) and its object store's figures. Sent on at most every
CONFIG.task_events_s, and only when something changed.

    row: [task_id, name, actor_id, state, start, end, error]   (wall-clock times)
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Iterable

from .. import _protocol as P
from .._config import CONFIG
from ..exceptions import ProtocolError

__all__ = ["EventRelay"]

STATES = ("PENDING", "RUNNING", "FINISHED", "FAILED")
PENDING_ROWS = 200      # a snapshot lists at most this many queued tasks (all are counted)
ROW_FIELDS = 7


class EventRelay:
    def __init__(self, limit: int | None = None) -> None:
        # Bytes of rows held for the head (they wait at most a period; a head that does
        # not take them loses the excess, counted in `dropped`).
        self.limit = limit or max(1000, CONFIG.task_history) * 1000
        self.batches: list = []           # [[worker info, packed rows], ...]
        self.held = 0
        self.own: list = []               # rows of failures the node saw itself
        self.own_counts: dict = {}        # and their counts, {name: [0, failed]}
        self.dropped = 0                  # batches dropped for want of room (a slow head)
        self.next_report = 0.0
        self._last_node: dict | None = None

    def from_worker(self, rows: bytes, info: dict) -> None:
        """A worker's TASK_EVENTS: kept as it came (the head checks it)."""
        if type(rows) is not bytes or type(info) is not dict:
            raise ProtocolError("TASK_EVENTS wants packed rows and {info}")
        if self.held + len(rows) > self.limit:
            self.dropped += 1
            return
        self.batches.append([info, rows])
        self.held += len(rows)

    def failed(self, spec: list, why: str) -> None:
        """The node failed a task or call itself (its worker or actor died, cancelled)."""
        self.own_counts.setdefault(spec[P.T_NAME], [0, 0])[1] += 1
        if len(self.own) < PENDING_ROWS * 50:
            self.own.append([spec[P.T_ID], spec[P.T_NAME], spec[P.T_ACTOR], "FAILED", None,
                             time.time(), str(why)[:4000]])

    def report(self, now: float, queues: Iterable, queued: int, store: dict) -> tuple | None:
        """(batches, node info) for a TASK_EVENTS to the head, if one is due and there
        is something new; None otherwise. `queues`: the node's queues of ready task
        specs; `queued`: how many they hold; `store`: its object store's figures."""
        if now < self.next_report:
            return None
        self.next_report = now + CONFIG.task_events_s
        # pending: a snapshot of its queue, which replaces the last one at the head.
        node = {"store": store, "queued": queued, "dropped": self.dropped,
                "pending": _pending_rows(queues) if queued else []}
        if not self.batches and not self.own_counts and node == self._last_node:
            return None
        batches = self.batches
        if self.own_counts:
            batches.append([{"pid": 0, "counts": self.own_counts, "rows": len(self.own)},
                            P.pack_rows(self.own)])
        self.batches, self.own, self.own_counts, self.held = [], [], {}, 0
        self._last_node = node
        return batches, node


def _pending_rows(queues: Iterable) -> list:
    rows: list = []
    for queue in queues:
        for spec in itertools.islice(queue, PENDING_ROWS - len(rows)):
            rows.append([spec[P.T_ID], spec[P.T_NAME], None, "PENDING", None, None, ""])
        if len(rows) >= PENDING_ROWS:
            break
    return rows
