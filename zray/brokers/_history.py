"""The head's history of tasks and actor calls, from what the nodes send (TASK_EVENTS,
see _events): the last rows, about `capacity` of them (a ring of packed batches, at
most max_bytes: memory stays flat however many tasks run), counts by function and
state since the head started (counted by the workers, added here per batch), the
recent failures with their tracebacks, each node's queue snapshot and store figures,
and what actor workers report (pid, calls they hold).

The head's loop only appends batches and adds counts, and unpacks no row (every task
of the cluster comes through here) but those of batches with failures; the readers
(the dashboard's threads, timeline()) unpack the rows and make sense of them, once per
change of the ring: a task's newest row says its state; a row the node made for a
task it failed takes the start and pid from the row its worker sent before. Malformed
rows and batches are skipped where they are read. Times are wall-clock seconds (time.time()) as the
workers measured them (on a cluster of machines, as good as their clocks agree).

    row: [task_id, name, actor_id, state, start, end, error]
    record (what readers get): (task_id, name, actor_id, state, start, end, pid,
                                node_id hex, error)
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from .. import _protocol as P
from .._config import CONFIG
from ..exceptions import ProtocolError
from ._events import ROW_FIELDS, STATES

__all__ = ["TaskHistory", "chrome_trace"]

OTHER = "(other functions)"   # counts of functions past max_functions
_REPORTED = frozenset(("RUNNING", "FINISHED", "FAILED"))   # (PENDING: the queue snapshots)
_NUMBER = frozenset((float, int, type(None)))                # a time, or none yet


class TaskHistory:
    def __init__(self, capacity: int | None = None, max_functions: int = 1000,
                 max_failures: int = 50, max_bytes: int | None = None) -> None:
        self.capacity = max(1, capacity or CONFIG.task_history)
        # Whatever the batches say of their size: ~1 KB a row at most.
        self.max_bytes = max_bytes or self.capacity * 1000
        self.max_functions = max_functions
        self.lock = threading.Lock()
        self.batches: deque = deque()              # (node_id, pid, packed rows, n), oldest first
        self.held = 0                              # rows in self.batches
        self.held_bytes = 0
        self.evicted = 0                           # rows dropped from the ring
        self.totals = {"FINISHED": 0, "FAILED": 0}
        self.by_function: dict[str, list] = {}     # name -> [finished, failed]
        self.failures: deque = deque(maxlen=max_failures)
        self.nodes: dict[str, dict] = {}           # node hex -> {store, queued, pending...}
        self.actors: dict[bytes, dict] = {}        # actor_id -> {pid, pending, node_id}
        self.bad = 0                               # malformed batches and counts
        self._version = 0                          # of the ring: bumped by each batch
        self._latest_memo: tuple = (-1, {})        # (version, what _latest() made of it)

    # -- the head's loop -----------------------------------------------------------
    def add(self, node_id: str, batches: Any, node: Any) -> None:
        """A node's TASK_EVENTS: [[worker info, rows], ...] and the node's figures."""
        if type(batches) is not list or type(node) is not dict:
            raise ValueError("TASK_EVENTS from a node wants [[info, rows], ...], {node}")
        with self.lock:
            self.nodes[node_id] = node
            for batch in batches:
                if type(batch) is not list or len(batch) != 2 or type(batch[0]) is not dict \
                        or type(batch[1]) is not bytes:
                    self.bad += 1
                    continue
                self._add_batch(node_id, batch[0], batch[1])

    def _add_batch(self, node_id: str, info: dict, packed: bytes) -> None:
        pid: int = info["pid"] if type(info.get("pid")) is int else 0
        actor = info.get("actor_id")
        if type(actor) is bytes and (actor in self.actors or len(self.actors) < 10 * self.capacity):
            self.actors[actor] = {"pid": pid, "node_id": node_id, "pending": _int(info.get("pending"))}
        failed = self._count(info.get("counts"))
        n = _int(info.get("rows")) or 1
        self.batches.append((node_id, pid, packed, n))
        self._version += 1
        self.held += n
        self.held_bytes += len(packed)
        while len(self.batches) > 1 and (self.held - self.batches[0][3] >= self.capacity
                                         or self.held_bytes > self.max_bytes):
            _node, _pid, dropped, k = self.batches.popleft()
            self.held -= k
            self.held_bytes -= len(dropped)
            self.evicted += k
        if failed:
            rows = _unpack(packed)
            self.failures.extend(r for r in _records(node_id, pid, rows) if r[3] == "FAILED")

    def _count(self, counts: Any) -> int:
        """Add a batch's {name: [finished, failed]}; how many failed."""
        if type(counts) is not dict:
            return 0
        failed = 0
        for name, c in counts.items():
            if (type(name) is not str or type(c) is not list or len(c) != 2
                    or type(c[0]) is not int or type(c[1]) is not int or c[0] < 0 or c[1] < 0):
                self.bad += 1
                continue
            mine = self.by_function.get(name)
            if mine is None:
                key = OTHER if len(self.by_function) >= self.max_functions else name
                mine = self.by_function.setdefault(key, [0, 0])
            mine[0] += c[0]
            mine[1] += c[1]
            self.totals["FINISHED"] += c[0]
            self.totals["FAILED"] += c[1]
            failed += c[1]
        return failed

    # -- readers (the dashboard's threads, timeline()) -----------------------------
    def _latest(self) -> dict[bytes, tuple]:
        """Each task of the ring as its newest row says, newest first. (Made once per
        change of the ring: a page's sections all read it.)"""
        with self.lock:
            version, memo = self._latest_memo
            if version == self._version:
                return memo
            version, batches = self._version, list(self.batches)
        latest: dict[bytes, tuple] = {}
        for node_id, pid, packed, _n in reversed(batches):
            for rec in _records(node_id, pid, _unpack(packed)[::-1]):
                seen = latest.get(rec[0])
                if seen is None:
                    latest[rec[0]] = rec
                elif seen[4] is None and rec[4] is not None:   # failed by its node
                    latest[rec[0]] = seen[:4] + (rec[4], seen[5], rec[6]) + seen[7:]
        self._latest_memo = (version, latest)
        return latest

    def summary(self) -> dict:
        """Counts by state (FINISHED, FAILED since the head started; RUNNING, PENDING
        now) and by function."""
        running = [r[1] for r in self._latest().values() if r[3] == "RUNNING"]
        with self.lock:
            funcs = {name: {"PENDING": 0, "RUNNING": 0, "FINISHED": c[0], "FAILED": c[1]}
                     for name, c in self.by_function.items()}
            pending = [row[1] for node in self.nodes.values() for row in _pending_of(node)]
            queued = sum(_int(node.get("queued")) for node in self.nodes.values())
            totals = dict(self.totals)
        for state, names in (("RUNNING", running), ("PENDING", pending)):
            for name in names:
                funcs.setdefault(name, {s: 0 for s in STATES})[state] += 1
        return {"counts": {"PENDING": queued, "RUNNING": len(running), **totals},
                "by_function": funcs}

    def records(self, limit: int = 1000, state: str | None = None,
                name: str | None = None) -> list[tuple]:
        """The newest tasks first (the queued tasks' snapshot first of all)."""
        out: list[tuple] = []
        if state in (None, "PENDING"):
            with self.lock:
                nodes = list(self.nodes.items())
            for node_id, node in nodes:
                for row in _pending_of(node):
                    if len(out) < limit and (name is None or row[1] == name):
                        out.append((row[0], row[1], None, "PENDING", None, None, 0, node_id, ""))
        for rec in self._latest().values():
            if len(out) >= limit:
                break
            if (state is None or rec[3] == state) and (name is None or rec[1] == name):
                out.append(rec)
        return out

    def recent_failures(self, limit: int = 20) -> list[tuple]:
        with self.lock:
            return list(self.failures)[-limit:][::-1]

    def node_reports(self) -> dict[str, dict]:
        with self.lock:
            return dict(self.nodes)

    def actor_reports(self) -> dict[bytes, dict]:
        with self.lock:
            return dict(self.actors)

    def window(self, since: float) -> list[tuple]:
        """The tasks that ended at or after `since`, or still run, oldest first."""
        recs = [r for r in self._latest().values()
                if r[4] is not None and (r[5] is None or r[5] >= since)]
        return recs[::-1]


def _unpack(packed: bytes) -> list:
    try:
        return P.unpack_rows(packed)
    except ProtocolError:
        return []


def _records(node_id: str, pid: int, rows: list) -> Iterator[tuple]:
    """The well-formed rows of a batch, as records."""
    for row in rows:
        if type(row) is not list or len(row) != ROW_FIELDS:
            continue
        task_id, name, actor_id, state, start, end, error = row
        if (type(task_id) is bytes and type(name) is str and type(error) is str
                and state in _REPORTED and type(start) in _NUMBER and type(end) in _NUMBER):
            yield (task_id, name, actor_id if type(actor_id) is bytes else None, state, start,
                   end, pid, node_id, error)


def _pending_of(node: dict) -> list:
    rows = node.get("pending")
    return [r for r in rows if type(r) is list and len(r) == ROW_FIELDS
            and type(r[0]) is bytes and type(r[1]) is str] if type(rows) is list else []


def _int(v: Any) -> int:
    return int(v) if type(v) in (int, float) and v >= 0 else 0


def chrome_trace(records: list[tuple], actor_names: dict[bytes, str] | None = None) -> list[dict]:
    """The records that ended, as Chrome trace events (Perfetto, chrome://tracing): a
    complete ("X") event per task or actor call, a process per node and a thread per
    worker process, named by metadata ("M") events. Times in microseconds."""
    actor_names = actor_names or {}
    events: list[dict] = []
    nodes: dict[str, int] = {}
    workers: set = set()
    for task_id, name, actor_id, state, start, end, pid, node_id, error in records:
        if start is None or end is None:
            continue
        if node_id not in nodes:
            nodes[node_id] = len(nodes) + 1
            events.append({"name": "process_name", "ph": "M", "pid": nodes[node_id], "tid": 0,
                           "args": {"name": f"node {node_id[:12]}"}})
        proc = nodes[node_id]
        if (proc, pid) not in workers:
            workers.add((proc, pid))
            who = f"actor {actor_names.get(actor_id, '')} " if actor_id else "worker "
            events.append({"name": "thread_name", "ph": "M", "pid": proc, "tid": pid,
                           "args": {"name": f"{who}pid {pid}".replace("  ", " ")}})
        args = {"task_id": task_id.hex(), "state": state}
        if actor_id:
            args["actor_id"] = actor_id.hex()
        if error:
            args["error"] = error[-1000:]
        events.append({"name": name, "cat": "actor_call" if actor_id else "task", "ph": "X",
                       "ts": round(start * 1e6, 1), "dur": round(max(0.0, end - start) * 1e6, 1),
                       "pid": proc, "tid": pid, "args": args})
    return events
