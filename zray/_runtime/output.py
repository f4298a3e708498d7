"""A worker's sys.stdout and sys.stderr: lines go to the drivers, prefixed with the
task or actor and the pid, as Ray prints them, and to the worker's log files."""
from __future__ import annotations

import os
import threading
from typing import Any

from .. import _protocol as P
from .._context import current_context
from .._logs import LogFiles


class Output:
    def __init__(self, rt: Any, is_err: bool, files: LogFiles | None = None) -> None:
        self._rt, self._is_err = rt, is_err
        self._files = files
        self._buf = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._buf += text
            if "\n" in self._buf:
                lines, self._buf = self._buf.rsplit("\n", 1)
                self._emit(lines)
        return len(text)

    def flush(self) -> None:
        if not self._buf:   # called after every task and call: most have printed nothing
            return
        with self._lock:
            if self._buf:
                self._emit(self._buf)
                self._buf = ""

    def _emit(self, text: str) -> None:
        ctx = current_context()
        who = ctx.prefix_name if ctx is not None else "worker"
        self._rt.send(P.LOG, f"({who} pid={os.getpid()})", text, self._is_err, self._rt.job_id or b"")
        if self._files is not None:
            self._files.write(self._is_err, text, ctx.task_id if ctx is not None else None,
                              ctx.name if ctx is not None else "")

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError("a zray worker's output is forwarded, it has no file descriptor")
