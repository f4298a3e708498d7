"""Process tree and memory helpers read from Linux's /proc (descendants, RSS,
uid, command line, start time, Ray-looking processes)."""

import os

# Substrings of the command lines of Ray's processes (workers, raylet, GCS).
_RAY_PATTERNS = ("ray::", "raylet", "gcs_server")

# Position of ``starttime`` (field 22 of /proc/<pid>/stat) among the fields
# that follow ``comm`` (field 2) and its closing parenthesis.
_STARTTIME_AFTER_COMM = 22 - 3


def read(path, mode="r"):
    """The content of ``path``, or None if it cannot be read (process gone)."""
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None


def children(pid):
    """Direct children of ``pid``, over all its threads."""
    out = []
    tasks = f"/proc/{pid}/task"
    try:
        tids = os.listdir(tasks)
    except OSError:
        return out
    for tid in tids:
        data = read(f"{tasks}/{tid}/children")
        if data:
            out.extend(int(c) for c in data.split())
    return out


def descendants(pid):
    """pid and all its descendants (walking /proc/<pid>/task/*/children)."""
    seen = []
    stack = [pid]
    visited = set()
    while stack:
        p = stack.pop()
        if p in visited:
            continue
        visited.add(p)
        seen.append(p)
        stack.extend(children(p))
    return seen


def _status_field(pid, field):
    data = read(f"/proc/{pid}/status")
    if data is None:
        return None
    for line in data.splitlines():
        if line.startswith(field + ":"):
            return line.split()[1:]
    return None


def rss_kb(pid):
    """Resident set size of ``pid`` in kB (0 if it has none or is gone)."""
    v = _status_field(pid, "VmRSS")
    return int(v[0]) if v else 0  # kernel threads / zombies have no VmRSS


def uid(pid):
    """Real uid of ``pid``, or None if it is gone."""
    v = _status_field(pid, "Uid")
    return int(v[0]) if v else None


def cmdline(pid):
    """Command line of ``pid`` as one string ("" if it is gone)."""
    data = read(f"/proc/{pid}/cmdline", "rb")
    if not data:
        return ""
    return data.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def starttime(pid):
    """Start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    data = read(f"/proc/{pid}/stat")
    if not data:
        return None
    # comm (field 2) may contain spaces/parentheses: split after the last ')'.
    rest = data[data.rfind(")") + 2 :].split()
    try:
        return int(rest[_STARTTIME_AFTER_COMM])
    except (IndexError, ValueError):
        return None


def ray_like_pids():
    """Pids of every process whose command line looks like one of Ray's."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        cmd = cmdline(int(name))
        if any(p in cmd for p in _RAY_PATTERNS):
            pids.append(int(name))
    return pids
