"""Worker log files: what a worker prints goes to its drivers and also to files in its
node's session directory, which `zray logs` and the dashboard read.

    <session>/logs/worker-<pid>.out, .err                   a task worker's stdout, stderr
    <session>/logs/worker-<pid>-actor-<actor id>.out, .err  an actor's worker

Before the lines of each task or actor call that prints, a marker line names it
(`::zray task <task id> <name>`), so the lines of one task can be found again.
A leaf module: it imports nothing of zray.
"""
from __future__ import annotations

import os
import re
from collections import deque
from typing import Any

__all__ = ["MARKER", "LogFiles", "find", "list_logs", "log_dir", "read_tail", "task_lines"]

MARKER = "::zray task "
_NAME = re.compile(r"^worker-(\d+)(?:-actor-([0-9a-f]+))?\.(out|err)$")


def log_dir(session_dir: str) -> str:
    return os.path.join(session_dir, "logs")


class LogFiles:
    """The log files of this worker process, opened at its first output line."""

    def __init__(self, session_dir: str, actor_id: bytes | None) -> None:
        self.dir = log_dir(session_dir) if session_dir else ""
        stem = f"worker-{os.getpid()}" + (f"-actor-{actor_id.hex()}" if actor_id else "")
        self._names = {False: stem + ".out", True: stem + ".err"}
        self._files: dict[bool, Any] = {}
        self._last: dict[bool, bytes | None] = {False: None, True: None}

    def write(self, is_err: bool, text: str, task_id: bytes | None, name: str) -> None:
        """Append `text` (one or more lines) as printed by task `task_id`."""
        f = self._files.get(is_err)
        if f is None:
            f = self._open(is_err)
            if f is None:
                return
        try:
            if task_id is not None and task_id != self._last[is_err]:
                f.write(f"{MARKER}{task_id.hex()} {name}\n")
            self._last[is_err] = task_id
            f.write(text + "\n")
            f.flush()
        except (OSError, ValueError):
            self._files[is_err] = False   # the session is gone: stop trying

    def _open(self, is_err: bool) -> Any:
        if not self.dir or self._files.get(is_err) is False:
            return None
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(self.dir, self._names[is_err]),
                         os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            # Kept open for the worker's life (closed with the process).
            f = self._files[is_err] = open(fd, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
            return f
        except OSError:
            self._files[is_err] = False
            return None


# -- reading (zray logs, the dashboard) ---------------------------------------------
def list_logs(session_dir: str) -> list[dict]:
    """The worker log files of a session: name, pid, actor_id, stream, size, mtime;
    the newest first."""
    found = []
    d = log_dir(session_dir)
    try:
        names = os.listdir(d)
    except OSError:
        return []
    for name in names:
        m = _NAME.match(name)
        if m is None:
            continue
        try:
            st = os.stat(os.path.join(d, name))
        except OSError:
            continue
        found.append({"name": name, "pid": int(m.group(1)), "actor_id": m.group(2) or "",
                      "stream": "stdout" if m.group(3) == "out" else "stderr",
                      "size": st.st_size, "mtime": st.st_mtime})
    found.sort(key=lambda r: (-float(r["mtime"]), str(r["name"])))
    return found


def find(session_dir: str, *, pid: int | None = None, actor: str | None = None,
         task: str | None = None, name: str | None = None) -> list[dict]:
    """The log files that match: of worker `pid`, of the actor whose id starts with
    `actor`, holding the output of the task whose id starts with `task`, or by name."""
    rows = list_logs(session_dir)
    if name is not None:
        rows = [r for r in rows if r["name"] == name]
    if pid is not None:
        rows = [r for r in rows if r["pid"] == pid]
    if actor:
        rows = [r for r in rows if r["actor_id"] and r["actor_id"].startswith(actor.lower())]
    if task:
        rows = [r for r in rows if task_lines(os.path.join(log_dir(session_dir), r["name"]), task)]
    return rows


def path_of(session_dir: str, name: str) -> str | None:
    """The path of the log file called `name` in the session; None unless it is one
    (no other file can be named: the name must match a worker log's pattern)."""
    if _NAME.match(name) is None:
        return None
    return os.path.join(log_dir(session_dir), name)


def read_tail(path: str, lines: int = 1000) -> list[str]:
    """The last `lines` lines of a log file (marker lines included)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n") for line in deque(f, maxlen=max(0, lines))]
    except OSError:
        return []


def task_lines(path: str, task: str) -> list[str]:
    """The lines a task (whose id starts with `task`) printed to the log file `path`."""
    task = task.lower()
    out, inside = [], False
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(MARKER):
                    inside = line[len(MARKER):].startswith(task)
                elif inside:
                    out.append(line.rstrip("\n"))
    except OSError:
        return []
    return out
