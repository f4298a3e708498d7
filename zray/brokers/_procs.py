"""The node's worker processes: forked by the zygote (fork server), watched through
pidfds, killed by worker id, all stopped with the node. A life pipe makes every
worker exit when the node dies, however it dies. Workers that die as they start
(before their hello) are forked again ever more slowly (a broken environment or a
bad message made a node fork about 100 workers a second)."""
from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any

from .._config import CONFIG
from . import _zygote


def _worker_entry(address: str, node_id: bytes, life_fd: int):
    def run(wid: bytes, actor_id: bytes | None, gpus: list) -> None:
        from .._runtime import worker
        worker.main(address, node_id, wid, actor_id, gpus, life_fd)
    return run


def _kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class WorkerProcesses:
    """Start with the node (before any zmq context: the zygote is forked here), then
    attach() to the node's poller; handle_fd() takes the fds it registered."""

    def __init__(self, node_address: str, node_id: bytes) -> None:
        # The life pipe: workers hold the read end and exit when this process dies.
        life_r, self._life_w = os.pipe()
        os.set_inheritable(self._life_w, False)
        self._zygote = _zygote.start(_worker_entry(node_address, node_id, life_r), [life_r])
        os.close(life_r)
        self.pid_of: dict[bytes, int] = {}     # worker_id -> pid
        self._pidfds: dict[int, bytes] = {}    # pidfd -> worker_id
        # Told to die before the zygote said its pid (a worker's hello can come
        # first): killed as soon as the pid is known, else the kill was lost.
        self._doomed: set[bytes] = set()
        self._poller: Any = None
        self._wanted: Callable[[bytes], bool] = lambda wid: False
        self._on_exit: Callable[[bytes], None] = lambda wid: None
        # Workers forked (or to be) that have not said hello yet, those whose fork waits
        # for its backoff [(due, wid, actor_id, gpus)], and how many workers in a row
        # died before their hello (0 again once one says it).
        self._young: set[bytes] = set()
        self._delayed: list[tuple[float, bytes, bytes | None, list]] = []
        self.start_failures = 0

    def attach(self, poller: Any, pollin: int, wanted: Callable[[bytes], bool],
               on_exit: Callable[[bytes], None]) -> None:
        """Watch the zygote's replies and workers' exits on `poller`. wanted(wid): the
        node still wants that worker; on_exit(wid): it exited (or never started)."""
        self._poller, self._pollin = poller, pollin
        self._wanted, self._on_exit = wanted, on_exit
        poller.register(self._zygote.reply_fd, pollin)

    def spawn(self, wid: bytes, actor_id: bytes | None, gpus: list) -> None:
        self._young.add(wid)
        delay = self.backoff()
        if delay > 0:
            self._delayed.append((time.monotonic() + delay, wid, actor_id, gpus))
        else:
            self._zygote.spawn(wid, actor_id, gpus)

    def backoff(self) -> float:
        """How long the next fork waits: 0 until CONFIG.worker_start_free workers in a
        row died at start, then worker_start_backoff_s, doubling up to its max."""
        n = self.start_failures - CONFIG.worker_start_free
        if n < 0:
            return 0.0
        return min(CONFIG.worker_start_backoff_max_s, CONFIG.worker_start_backoff_s * 2.0 ** min(n, 30))

    def started(self, wid: bytes) -> None:
        """The worker said hello: it started, so the workers can start."""
        self._young.discard(wid)
        self.start_failures = 0

    def tick(self, now: float) -> None:
        """Fork the workers whose backoff is over (or report, for those killed while they
        waited, that they are gone)."""
        if not self._delayed:
            return
        due = [d for d in self._delayed if d[0] <= now]
        self._delayed = [d for d in self._delayed if d[0] > now]
        for _due, wid, actor_id, gpus in due:
            if wid in self._doomed or not self._wanted(wid):
                self._doomed.discard(wid)
                self._young.discard(wid)
                self._on_exit(wid)
            else:
                self._zygote.spawn(wid, actor_id, gpus)

    def kill(self, wid: bytes) -> None:
        self._young.discard(wid)   # (its death is no failure to start)
        pid = self.pid_of.get(wid)
        if pid is None:
            self._doomed.add(wid)
        else:
            _kill_pid(pid)

    def handle_fd(self, fd: int) -> bool:
        """Take an event on `fd` if it is one of ours; EOFError if the zygote died."""
        if fd == self._zygote.reply_fd:
            for spawned, pid in self._zygote.read_replies():
                self._watch(spawned, pid)
            return True
        wid = self._pidfds.pop(fd, None)
        if wid is None:
            return False
        self._poller.unregister(fd)
        os.close(fd)
        self._gone(wid)
        return True

    def _watch(self, wid: bytes, pid: int) -> None:
        if not self._wanted(wid):  # killed before it even started
            self._doomed.discard(wid)
            _kill_pid(pid)
            return
        self.pid_of[wid] = pid
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._gone(wid)
            return
        self._pidfds[fd] = wid
        self._poller.register(fd, self._pollin)
        if wid in self._doomed:
            self._doomed.discard(wid)
            _kill_pid(pid)

    def _gone(self, wid: bytes) -> None:
        self.pid_of.pop(wid, None)
        if wid in self._young:
            self._young.discard(wid)
            self.start_failures += 1
        self._on_exit(wid)

    def stop(self, grace_s: float) -> None:
        """Kill every worker, wait up to `grace_s` for their exits, stop the zygote."""
        for pid in list(self.pid_of.values()):
            _kill_pid(pid)
        deadline = time.monotonic() + grace_s
        # poll, not select: past 1,023 workers a pidfd's number is out of select()'s
        # range, and the ValueError skipped the node's sweep of its shared memory.
        waiting = select.poll()
        left = len(self._pidfds)
        for fd in self._pidfds:
            waiting.register(fd, select.POLLIN)
        while left and time.monotonic() < deadline:
            for fd, _event in waiting.poll(max(0.0, deadline - time.monotonic()) * 1000):
                waiting.unregister(fd)
                left -= 1
        for fd in self._pidfds:
            os.close(fd)
        self._pidfds.clear()
        os.close(self._life_w)
        self._zygote.stop(grace_s)
