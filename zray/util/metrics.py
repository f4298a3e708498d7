"""Application metrics (as ray.util.metrics): Counter, Gauge and Histogram, recorded in
tasks, actors and the driver, and served by the head's dashboard at /metrics in
Prometheus' text format, named as Ray names them: `ray_<name>` (a counter
`ray_<name>_total`), one series per process and tag values, labelled with the user's
tags and WorkerId, NodeAddress, SessionName and Component.

    >>> requests = Counter("requests", description="Requests served.", tag_keys=("route",))
    >>> requests.inc(tags={"route": "/home"})

A process sends what changed at most once a second (CONFIG.task_events_s), through
its node, to the head; nothing is recorded or sent by a program that uses no metric.
"""
from __future__ import annotations

import re
import warnings
from typing import Any

from .._metrics import COUNTER, GAUGE, HISTOGRAM, REGISTRY

__all__ = ["Counter", "Gauge", "Histogram", "Metric"]

# Prometheus' rule for metric names (a name that breaks it is discarded, as Ray does).
_VALID_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class Metric:
    """What Counter, Gauge and Histogram share: a name, a description, the tag keys
    every value is recorded with (each record names a value for each key, or the
    default tags do), and default tags."""

    _kind = GAUGE

    def __init__(self, name: str, description: str = "", tag_keys: tuple[str, ...] | None = None) -> None:
        if not isinstance(name, str):
            raise TypeError(f"metric name must be a str, got {type(name).__name__} {name!r}")
        if not name:
            raise ValueError("Empty name is not allowed. Please provide a metric name.")
        if not isinstance(description, str):
            raise TypeError(f"description must be a str, got {type(description).__name__}")
        self._discard_metric = not _VALID_NAME.match(name)
        if self._discard_metric:
            warnings.warn(f"Invalid metric name: {name}. Metric will be discarded and data will "
                          "not be collected or published. Metric names can only contain "
                          "letters, numbers, _, and :. Metric names cannot start with numbers.",
                          UserWarning, stacklevel=3)
        elif ":" in name:
            warnings.warn(f"Metric name {name} contains a : character, which is no longer "
                          "allowed. Please migrate to the new metric name format. This will be "
                          "an error in the future.", FutureWarning, stacklevel=3)
        self._name, self._description = name, description
        self._tag_keys: tuple[str, ...] = tag_keys if tag_keys is not None else ()
        if not isinstance(self._tag_keys, tuple):
            raise TypeError(f"tag_keys should be a tuple type, got: {type(self._tag_keys)}")
        for key in self._tag_keys:
            if not isinstance(key, str):
                raise TypeError(f"Tag keys must be str, got {type(key)}.")
        self._default_tags: dict[str, str] = {}

    def _define(self, boundaries: list | None = None) -> None:
        if not self._discard_metric:
            REGISTRY.define(self._name, self._kind, self._description, self._tag_keys, boundaries)

    def set_default_tags(self, default_tags: dict[str, str]) -> Metric:
        """Tags used by every record that does not name them; returns the metric."""
        for key, value in default_tags.items():
            if key not in self._tag_keys:
                raise ValueError(f"Unrecognized tag key {key}.")
            if not isinstance(value, str):
                raise TypeError(f"Tag values must be str, got {type(value)}.")
        self._default_tags = default_tags
        return self

    @property
    def info(self) -> dict[str, Any]:
        return {"name": self._name, "description": self._description,
                "tag_keys": self._tag_keys, "default_tags": self._default_tags}

    def _tags(self, tags: dict[str, str] | None) -> tuple:
        """The record's tag values, in tag_keys order (keys not in tag_keys dropped)."""
        if tags:
            for value in tags.values():
                if not isinstance(value, str):
                    raise TypeError(f"Tag values must be str, got {type(value)}.")
            final = {**self._default_tags, **tags}
        else:
            final = self._default_tags
        missing = [k for k in self._tag_keys if k not in final]
        if missing:
            raise ValueError(f"Missing value for tag key(s): {','.join(missing)}.")
        return tuple(final[k] for k in self._tag_keys)

    def _record(self, value: float, tags: dict[str, str] | None, bounds: list | None = None) -> None:
        if self._discard_metric:
            return
        REGISTRY.record(self._name, self._kind, self._tags(tags), float(value), bounds)

    def __reduce__(self) -> tuple:
        # (As Ray's: a metric passed to a task is made again there, without its default tags.)
        return type(self), (self._name, self._description, self._tag_keys)


def _number(value: Any) -> None:
    if not isinstance(value, (int, float)):
        raise TypeError(f"value must be int or float, got {type(value)}.")


class Counter(Metric):
    """A total that only goes up (a Prometheus counter: `ray_<name>_total`)."""

    _kind = COUNTER

    def __init__(self, name: str, description: str = "", tag_keys: tuple[str, ...] | None = None) -> None:
        super().__init__(name, description, tag_keys)
        self._define()

    def inc(self, value: int | float = 1.0, tags: dict[str, str] | None = None) -> None:
        """Add `value` (> 0, default 1); `tags` name values for the tag keys (over the
        default tags)."""
        _number(value)
        if value <= 0:
            raise ValueError(f"value must be >0, got {value}")
        self._record(value, tags)


class Gauge(Metric):
    """A value that goes up and down; the last one set is kept (a Prometheus gauge)."""

    _kind = GAUGE

    def __init__(self, name: str, description: str = "", tag_keys: tuple[str, ...] | None = None) -> None:
        super().__init__(name, description, tag_keys)
        self._define()

    def set(self, value: int | float | None, tags: dict[str, str] | None = None) -> None:
        """Set the gauge to `value` (None: nothing happens)."""
        if value is None:
            return
        _number(value)
        self._record(value, tags)


class Histogram(Metric):
    """How many values fell in each bucket (a Prometheus histogram: `_bucket{le=...}`,
    `_sum`, `_count`); `boundaries` are the buckets' upper bounds, all > 0."""

    _kind = HISTOGRAM

    def __init__(self, name: str, description: str = "", boundaries: list[float] | None = None,
                 tag_keys: tuple[str, ...] | None = None) -> None:
        super().__init__(name, description, tag_keys)
        if boundaries is None or len(boundaries) == 0:
            raise ValueError('boundaries argument should be provided when using the Histogram '
                             'class. e.g., Histogram("name", boundaries=[1.0, 2.0])')
        for i, boundary in enumerate(boundaries):
            _number(boundary)
            if boundary <= 0:
                raise ValueError(f"Invalid `boundaries` argument at index {i}, {boundaries}. "
                                 "Use positive values for the arguments.")
        self.boundaries = boundaries
        self._bounds = sorted({float(b) for b in boundaries})
        self._define(self._bounds)

    def observe(self, value: int | float, tags: dict[str, str] | None = None) -> None:
        """Count `value` in its bucket."""
        _number(value)
        self._record(value, tags, self._bounds)

    @property
    def info(self) -> dict[str, Any]:
        return {**super().info, "boundaries": self.boundaries}

    def __reduce__(self) -> tuple:
        return Histogram, (self._name, self._description, self.boundaries, self._tag_keys)
