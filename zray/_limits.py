"""How many of a scarce thing a process may use: file descriptors (and so zmq sockets)
and, for a node, task workers, as the operating system says.

    raise_fd_limit()      the soft RLIMIT_NOFILE up to the hard one (as Ray does)
    fd_limit()            the soft limit now
    max_sockets()         how many sockets that limit leaves room for (zmq's default of
                          1,023 per context silently lost the calls to actors past it)
    new_context()         a zmq context with MAX_SOCKETS set from it
    worker_cap(n)         a node's cap on task workers: n, or (n == 0) from its memory
"""
from __future__ import annotations

import resource

import zmq

__all__ = ["fd_limit", "max_sockets", "new_context", "raise_fd_limit", "worker_cap"]

# A zmq socket costs its mailbox's eventfd plus one fd per connection (one, for the
# DEALERs zray opens to peers). Kept out of the count: the main thread's own sockets
# (CONFIG.sync_lane_sockets, 64) and the files, pipes and eventfds a process has.
FDS_PER_SOCKET = 2
RESERVED_FDS = 256
MIN_SOCKETS = 16


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (children
    inherit it); the soft limit now. A limit that cannot be raised stays."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = _nr_open()
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else _nr_open()


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def fd_limit() -> int:
    """This process's soft limit on open files now."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if soft != resource.RLIM_INFINITY else _nr_open()


def max_sockets(limit: int | None = None) -> int:
    """How many sockets to open, given the fd limit (now, if None): as many as the fds
    allow, never more than zmq can take. (Fewer than zmq's default of 1,023 when the fds
    are fewer: a socket that cannot be made fails at once, where a connection that finds
    no fd is retried by zmq forever, and what was sent on it is lost without a word.)"""
    by_fds = max(0, (fd_limit() if limit is None else limit) - RESERVED_FDS) // FDS_PER_SOCKET
    return min(max(MIN_SOCKETS, by_fds), _socket_limit())


_SOCKET_LIMIT: list[int] = []


def _socket_limit() -> int:
    """zmq's own ceiling on MAX_SOCKETS (asked once, of a throwaway context)."""
    if not _SOCKET_LIMIT:
        ctx = zmq.Context()
        try:
            _SOCKET_LIMIT.append(int(ctx.get(zmq.SOCKET_LIMIT)))
        finally:
            ctx.term()
    return _SOCKET_LIMIT[0]


def new_context(io_threads: int = 1) -> zmq.Context:
    """A zmq context that may open as many sockets as this process's fds allow (the fd
    limit raised first): zmq's default of 1,023 lost the calls to actors past it."""
    ctx = zmq.Context(io_threads=io_threads)
    ctx.set(zmq.MAX_SOCKETS, max_sockets(raise_fd_limit()))
    return ctx


def worker_cap(configured: int, per_worker: int, floor: int = 64, ceiling: int = 1024) -> int:
    """A node's cap on task workers: `configured` if set (> 0); else as many as the
    available memory holds at `per_worker` bytes each, between floor and ceiling (each
    level of a nested get() holds a worker: 64 deadlocked a recursion 70 deep)."""
    if configured > 0:
        return configured
    try:
        with open("/proc/meminfo") as f:
            avail = next(int(line.split()[1]) * 1024 for line in f
                         if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return floor
    return max(floor, min(ceiling, avail // max(1, per_worker)))

