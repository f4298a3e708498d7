"""The head's copy of the application metrics the processes record (zray.util.metrics,
sent as TASK_EVENTS batches without rows: see zray/_metrics.py), and their Prometheus
text for the dashboard's /metrics.

Each process's series are kept apart, as Ray keeps them (labels WorkerId, NodeAddress,
SessionName, Component and the user's tags): a series holds the process's total, so
the newest report replaces the last. At most CONFIG.app_metrics_series series are
kept: past that the least recently updated go. The head's loop only files reports
(under the lock); the dashboard's threads render.
"""
from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from typing import Any

from .._config import CONFIG

__all__ = ["AppMetrics", "sample"]

_KINDS = ("counter", "gauge", "histogram")
_VALID_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_BAD_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_NUMBER = (int, float)


class AppMetrics:
    def __init__(self, session_dir: str = "") -> None:
        self.session = os.path.basename(session_dir.rstrip("/"))
        self.lock = threading.Lock()
        self.defs: dict[str, tuple] = {}          # name -> (kind, help, bounds)
        self.series: OrderedDict = OrderedDict()   # (name, labels) -> value, oldest first
        self.bad = 0                               # malformed reports and series skipped

    # -- the head's loop -----------------------------------------------------------
    def take(self, node_id: str, node_ip: str, batches: Any) -> Any:
        """File the metrics in a node's TASK_EVENTS batches; the batches that carry task
        rows (for the task history: metrics-only batches are not passed on)."""
        if type(batches) is not list:
            return batches
        kept = []
        for batch in batches:
            info = batch[0] if type(batch) is list and len(batch) == 2 else None
            if not isinstance(info, dict) or "metrics" not in info:
                kept.append(batch)
                continue
            self.add(node_id, node_ip, info["metrics"])
            if info.get("rows"):
                kept.append(batch)
        return kept

    def add(self, node_id: str, node_ip: str, report: Any) -> None:
        if type(report) is not dict or type(report.get("worker")) is not str \
                or type(report.get("series")) is not list or type(report.get("defs")) is not dict:
            self.bad += 1
            return
        base = {"Component": "core_worker", "NodeAddress": node_ip, "SessionName": self.session,
                "WorkerId": report["worker"]}
        with self.lock:
            for name, d in report["defs"].items():
                self._define(name, d)
            for s in report["series"]:
                self._file(base, report["defs"], s)
            while len(self.series) > CONFIG.app_metrics_series:
                self.series.popitem(last=False)

    def _define(self, name: Any, d: Any) -> None:
        if name in self.defs or type(name) is not str or not _VALID_NAME.match(name) \
                or type(d) is not list or len(d) != 4 or d[0] not in _KINDS or type(d[1]) is not str:
            return
        bounds = None
        if d[0] == "histogram":
            if type(d[3]) is not list or not d[3] or not all(type(b) in _NUMBER for b in d[3]):
                self.bad += 1
                return
            bounds = tuple(sorted(float(b) for b in d[3]))
        self.defs[name] = (d[0], d[1][:1000], bounds)

    def _file(self, base: dict, defs: dict, s: Any) -> None:
        """One series [name, kind, tag values, value] of a process, with its labels."""
        if type(s) is not list or len(s) != 4 or type(s[0]) is not str:
            self.bad += 1
            return
        known, d = self.defs.get(s[0]), defs.get(s[0])
        if known is None or s[1] != known[0] or type(s[2]) is not list or type(d) is not list \
                or type(d[2]) is not list or len(d[2]) != len(s[2]) \
                or not _value_ok(s[3], known[2]):
            self.bad += 1
            return
        labels = dict(base)
        for key, value in zip(d[2], s[2], strict=True):
            labels[_label_name(key)] = str(value)
        key = (s[0], tuple(labels.items()))
        self.series[key] = s[3]
        self.series.move_to_end(key)

    # -- the dashboard's threads ---------------------------------------------------
    def prometheus(self) -> list[str]:
        """The lines of every application metric, by name."""
        with self.lock:
            defs = dict(self.defs)
            by_name: dict[str, list] = {}
            for (name, labels), value in self.series.items():
                by_name.setdefault(name, []).append((labels, value))
        lines: list[str] = []
        for name in sorted(by_name):
            kind, help_text, bounds = defs[name]
            full = "ray_" + name
            if kind == "counter" and not full.endswith("_total"):
                full += "_total"
            lines.append(f"# HELP {full} {_help(help_text)}")
            lines.append(f"# TYPE {full} {kind}")
            for labels, value in sorted(by_name[name]):
                if kind == "histogram":
                    lines += _histogram(full, labels, bounds, value)
                else:
                    lines.append(f"{full}{{{_labels(labels)}}} {sample(value)}")
        return lines


def _value_ok(value: Any, bounds: tuple | None) -> bool:
    if bounds is None:
        return type(value) in _NUMBER
    return (type(value) is list and len(value) == 3 and type(value[0]) is list
            and len(value[0]) == len(bounds) + 1 and all(type(c) is int for c in value[0])
            and type(value[1]) in _NUMBER and type(value[2]) is int)


def _histogram(full: str, labels: tuple, bounds: tuple, value: list) -> list[str]:
    counts, total, count = value
    out, running = [], 0
    for bound, n in zip([*bounds, None], counts, strict=True):
        running += n
        le = "+Inf" if bound is None else repr(float(bound))
        out.append(f"{full}_bucket{{{_labels(labels + (('le', le),))}}} {sample(running)}")
    out.append(f"{full}_count{{{_labels(labels)}}} {sample(count)}")
    out.append(f"{full}_sum{{{_labels(labels)}}} {sample(total)}")
    return out


def _label_name(key: Any) -> str:
    """A tag key as a Prometheus label name (other characters as _)."""
    name = _BAD_LABEL_CHARS.sub("_", str(key)) or "_"
    return "_" + name if name[0].isdigit() else name


def _labels(labels: tuple) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in labels)


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\"", r"\"").replace("\n", r"\n")


def _help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def sample(value: float) -> str:
    """A sample value as Prometheus reads it, exactly (an integral float without .0)."""
    value = float(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
