"""The application metrics this process records (zray.util.metrics: Counter, Gauge,
Histogram), sent to the head, whose dashboard serves them at /metrics.

Nothing runs until a metric records a value: then a thread of this module's own sends
the series that changed, at most every CONFIG.task_events_s, as a TASK_EVENTS message
with no task rows and the series in its info (the worker's task-events path: the node
passes it on in its next batch to the head). Values are this process's totals (a
counter's sum, a gauge's last value, a histogram's buckets), so a message lost on the
way is made good by the next one.

    info["metrics"] = {"worker": id hex, "defs": {name: [kind, help, tag_keys, bounds]},
                       "series": [[name, kind, [tag values], value], ...]}
    value: a number (counter, gauge) or [[bucket counts], sum, count] (histogram)
"""
from __future__ import annotations

import bisect
import os
import threading
from typing import Any

from . import _context
from . import _protocol as P
from ._batching import Batched

__all__ = ["COUNTER", "GAUGE", "HISTOGRAM", "REGISTRY", "Registry"]

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"


class Registry(Batched):
    def __init__(self) -> None:
        super().__init__("zray-metrics")
        self.lock = threading.Lock()
        self.defs: dict[str, list] = {}          # name -> [kind, help, tag_keys, bounds]
        self.values: dict[tuple, Any] = {}       # (name, kind, tag values) -> value
        self.dirty: set[tuple] = set()           # keys changed since the last send
        self.sent_to: Any = None                 # the runtime the last send went to
        self.empty_rows = P.pack_rows([])

    def define(self, name: str, kind: str, description: str, tag_keys: tuple,
               boundaries: list | None) -> None:
        with self.lock:
            self.defs[name] = [kind, description, list(tag_keys), boundaries]

    # -- any thread that records (~1-2 us) -------------------------------------------
    def record(self, name: str, kind: str, tags: tuple, value: float,
               bounds: list | None = None) -> None:
        key = (name, kind, tags)
        with self.lock:
            if kind == COUNTER:
                self.values[key] = self.values.get(key, 0.0) + value
            elif kind == GAUGE:
                self.values[key] = value
            else:
                hist = self.values.get(key)
                if hist is None:
                    hist = self.values[key] = [[0] * (len(bounds or ()) + 1), 0.0, 0]
                hist[0][bisect.bisect_left(bounds or (), value)] += 1   # (le: value <= bound)
                hist[1] += value
                hist[2] += 1
            self.dirty.add(key)
        if not self._armed:
            self._arm()

    def _arm(self) -> None:
        self._start()   # (no thread until a metric records)
        super()._arm()

    # -- the sender thread (Batched) ------------------------------------------------
    def flush(self, rt: Any = None) -> None:
        """Send the series that changed to this process's node (also at its exit)."""
        rt = rt if rt is not None else _context.runtime()
        if rt is None or not self.values:
            return
        try:
            with self.lock:
                if rt is not self.sent_to:   # a new cluster (init again): it has nothing yet
                    self.sent_to = rt
                    self.dirty = set(self.values)
                if not self.dirty:
                    return
                series = [[name, kind, list(tags), _copy(self.values[(name, kind, tags)])]
                          for name, kind, tags in self.dirty]
                self.dirty = set()
                defs = {s[0]: self.defs[s[0]] for s in series if s[0] in self.defs}
            report = {"worker": rt.ident.hex(), "defs": defs, "series": series}
            rt.send(P.TASK_EVENTS, self.empty_rows, {"pid": os.getpid(), "rows": 0,
                                                     "metrics": report})
        except Exception:   # never let a report break the process (a stopped runtime)
            pass


def _copy(value: Any) -> Any:
    return [list(value[0]), value[1], value[2]] if type(value) is list else value


REGISTRY = Registry()
