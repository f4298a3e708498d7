"""zray.timeline(): the recent tasks and actor calls as a Chrome trace (Ray's
ray.timeline()), from the task history the head keeps (brokers/_history)."""
from __future__ import annotations

import json
import os
from typing import Any

from ._context import runtime_or_init

__all__ = ["timeline"]


def timeline(filename: str | os.PathLike | None = None) -> list[dict] | None:
    """The recent tasks and actor calls as Chrome trace events (a complete "X" event
    each, a process per node, a thread per worker; load the file in Perfetto or
    chrome://tracing). With `filename`, written there as JSON and None returned.

    The head keeps the last CONFIG.task_history of them (10,000); a task reaches it
    within about two seconds of its end (workers and nodes report once a second).
    """
    if filename is not None and not isinstance(filename, (str, os.PathLike)):
        raise TypeError(f"filename must be a path or None, got {type(filename).__name__}")
    events: Any = runtime_or_init().head_call("timeline", [], timeout=60)
    if filename is None:
        return events
    with open(filename, "w") as f:
        json.dump(events, f)
    return None
