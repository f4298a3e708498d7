"""A node under pressure from its own workers: the worker cap holding work back, and
workers that die as they start. Each level of a nested get() holds a worker, and past
the cap the task that would unblock them waits for a worker that never comes (a
recursion 70 deep hung silently at the cap of 64); workers that die as they start
leave their tasks waiting forever. The node asks here and says what it is told."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _protocol as P
from .._config import CONFIG
from ._actions import WORKER_START
from ._failures import failed_result
from ._tasks import Tasks, WState


class Pressure:
    """send(ident, mtype, *fields) as the node's; drivers(): the node's drivers now."""

    def __init__(self, tasks: Tasks, send: Callable[..., Any], drivers: Callable[[], Any],
                 log: Any) -> None:
        self.cap = tasks.max_workers   # (counting those blocked in get())
        self.tasks, self.send, self.drivers, self.log = tasks, send, drivers, log
        self._seen = 0   # heartbeats in a row the cap held work back (2: warned)

    # -- the cap -------------------------------------------------------------------
    def heartbeat(self) -> None:
        """Warn the drivers once per episode (two heartbeats in a row at the cap, with
        runnable work queued and workers blocked)."""
        stalled = self._stalled()
        if stalled is None:
            self._seen = 0
            return
        self._seen += 1
        if self._seen != 2:
            return
        blocked, waiting = stalled
        self.log.warning("the worker cap holds work back", cap=self.cap, blocked=blocked,
                         waiting=waiting)
        text = (f"This node runs {self.cap} task workers, its cap, {blocked} of them blocked "
                f"in get() or wait(), and {waiting} runnable task(s) wait for a worker: if the "
                "blocked ones wait for those, nothing will move (a nested get() deeper than the "
                "cap). Raise the cap with the environment variable ZRAY_MAX_WORKERS_PER_NODE "
                "(config max_workers_per_node; 0: from the node's memory), or nest less.")
        for driver in list(self.drivers()):
            self.send(driver, P.WARN, driver, text)

    def _stalled(self) -> tuple[int, int] | None:
        """(blocked workers, runnable queued tasks) when the cap holds work back."""
        tasks = self.tasks
        if not tasks.queued or tasks.idle or tasks.task_workers() < self.cap:
            return None
        blocked = sum(1 for w in tasks.workers.values() if w.blocked and w.state == WState.BUSY)
        if not blocked:
            return None
        waiting = sum(len(q) for q in tasks.queues.values() if q and tasks.res.fits(q[0][P.T_RES]))
        return (blocked, waiting) if waiting else None

    # -- workers that die as they start ----------------------------------------------
    def start_failed(self, failures: int) -> None:
        """`failures` workers in a row died before their hello: past
        CONFIG.worker_start_failures the tasks waiting for a worker fail (unless a
        worker that did start is there to take them)."""
        if failures < CONFIG.worker_start_failures or any(
                w.state in (WState.IDLE, WState.BUSY) for w in self.tasks.workers.values()):
            return
        why = (f"{failures} workers in a row died as they started on this node (see its "
               "log); it keeps starting workers, more and more slowly")
        self.log.error("workers die as they start", failures=failures)
        for spec in self.tasks.drop_queued(lambda res: True):
            self.send(spec[P.T_OWNER], P.RESULTS, [failed_result(spec, WORKER_START, why, None)])
