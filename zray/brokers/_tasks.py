"""A node's tasks and task workers: queues by resource shape, pipelined dispatch,
workers blocked in get() lending their CPU, leases of workers to clients, cancel,
and a task worker's death with its tasks retried. Pure: events in, actions out."""
from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable

from .. import _protocol as P
from .._strategies import OVERFLOW
from ._actions import CANCEL, CANCELLED, CRASHED, DISPATCH, FAIL, KILL, SPAWN, SPILLBACK
from ._resources import Resources, shape_of


class WState(enum.Enum):
    STARTING = 1
    IDLE = 2
    BUSY = 3
    DEAD = 5     # told to stop (reaped, or killed on its lease), its exit not seen yet


class Worker:
    __slots__ = ("id", "state", "tasks", "held", "blocked", "idle_since", "gpus", "leased_to")

    def __init__(self, wid: bytes) -> None:
        self.id = wid
        self.state = WState.STARTING
        # Tasks given to this worker, in order: it runs them one after the other
        # under one lease of `held` (pipelining: one message per batch, not per task).
        self.tasks: dict[bytes, list] = {}
        self.held: dict = {}
        self.blocked = False
        self.idle_since = 0.0
        self.gpus: list = []
        self.leased_to: bytes | None = None   # the client sending it tasks directly


class Tasks:
    """One node's task queues and task workers.

    `schedule` is the node's whole placement pass, run after anything that frees
    resources or adds work; LocalScheduler points it at its own (pending actors
    first, then dispatch()). Alone, it is dispatch()."""

    def __init__(self, res: Resources, new_worker_id: Callable[[], bytes], pool_size: int,
                 max_workers: int, dispatch_batch: int) -> None:
        self.res = res
        self._new_worker_id = new_worker_id
        self.schedule: Callable[[], list] = self.dispatch
        self.pool_size = max(1, pool_size)
        self.max_workers = max(self.pool_size, max_workers)
        self.dispatch_batch = max(1, dispatch_batch)
        self.queues: dict[tuple, deque] = {}     # shape -> ready task specs
        self.queued = 0
        self.overflow_at = 0     # queued tasks past which new ones overflow (0: never)
        self.workers: dict[bytes, Worker] = {}
        self.idle: deque = deque()
        self.starting = 0
        self.running: dict[bytes, bytes] = {}    # task_id -> worker_id

    # -- the pool ----------------------------------------------------------------
    def task_workers(self) -> int:
        return sum(1 for w in self.workers.values() if w.state != WState.DEAD)

    def start_pool(self) -> list:
        return [self.spawn() for _ in range(self.pool_size)]

    def spawn(self) -> tuple:
        wid = self._new_worker_id()
        self.workers[wid] = Worker(wid)
        self.starting += 1
        return (SPAWN, wid, None, [])

    def worker_ready(self, wid: bytes, now: float) -> list:
        w = self.workers.get(wid)
        if w is None or w.state != WState.STARTING:
            return []
        self.starting -= 1
        self._now_idle(w, now)
        return self.schedule()

    def _now_idle(self, w: Worker, now: float) -> None:
        # Work goes to the most recently idle worker (idle.pop(), as Ray's worker pool):
        # a trickle of tasks stays on a warm worker, which has imported what they use
        # (numpy: 70-200 ms, once per worker; taken in turn, every worker paid it), and
        # the extra workers idle until reaped. idle[0] stays the longest idle (reap_idle).
        w.state = WState.IDLE
        w.idle_since = now
        self.idle.append(w.id)

    def reap_idle(self, now: float, timeout: float) -> list:
        """Stop extra task workers (beyond the pool size) idle for `timeout`."""
        acts = []
        while self.task_workers() > self.pool_size and self.idle:
            wid = self.idle[0]
            if now - self.workers[wid].idle_since < timeout:
                break
            self.idle.popleft()
            self.workers[wid].state = WState.DEAD
            acts.append((KILL, wid))
        return acts

    # -- queues and dispatch -------------------------------------------------------
    def submit(self, specs: list, overflow: bool = True) -> list:
        """Queue tasks; spill those this node can never run, and (overflow, in a cluster:
        overflow_at > 0) those past overflow_at queued tasks, marked OVERFLOW: the head
        gives them to a node with room now, or back."""
        spill = []
        limit = self.overflow_at if overflow else 0
        for spec in specs:
            if not self.res.feasible(spec[P.T_RES]):
                spill.append(spec)
                continue
            if limit and self.queued >= limit:
                spec[P.T_RES] = {**spec[P.T_RES], OVERFLOW: 1.0}
                spill.append(spec)
                continue
            self._queue(spec)
        acts = self.schedule()
        if spill:
            acts.append((SPILLBACK, spill))
        return acts

    def drop_queued(self, which) -> list:
        """Take the queued tasks whose resource request `which(res)` picks out of the
        queues (they can no longer run here); those specs."""
        out: list = []
        for shape, queue in list(self.queues.items()):
            if queue and which(queue[0][P.T_RES]):
                out.extend(queue)
                self.queued -= len(queue)
                del self.queues[shape]
        return out

    def drop_queued_specs(self, which) -> list:
        """Take the queued tasks `which(spec)` picks out of the queues; those specs."""
        out: list = []
        for shape, queue in list(self.queues.items()):
            keep = deque(s for s in queue if not which(s))
            if len(keep) != len(queue):
                out.extend(s for s in queue if which(s))
                self.queued -= len(queue) - len(keep)
                if keep:
                    self.queues[shape] = keep
                else:
                    del self.queues[shape]
        return out

    def _queue(self, spec: list, front: bool = False) -> None:
        queue = self.queues.setdefault(shape_of(spec[P.T_RES]), deque())
        if front:
            queue.appendleft(spec)
        else:
            queue.append(spec)
        self.queued += 1

    def dispatch(self) -> list:
        """Give queued tasks to idle workers while their resources fit; start more
        workers when runnable work outnumbers them."""
        dispatch: dict[bytes, list] = {}
        for shape, queue in list(self.queues.items()):
            if queue:
                res = queue[0][P.T_RES]
                while queue and self.idle and self.res.fits(res):
                    wid = self.idle.pop()   # the most recently idle: see _now_idle
                    dispatch[wid] = self._lease_tasks(self.workers[wid], queue, res)
            if not queue:
                del self.queues[shape]
        acts: list = [(DISPATCH, wid, specs) for wid, specs in dispatch.items()]
        return acts + self._spawn_for_backlog()

    def _lease_tasks(self, w: Worker, queue: deque, res: dict) -> list:
        """Lease `res` to the idle worker `w` for the next tasks of `queue`."""
        # A fair share of the queue, at most dispatch_batch tasks per lease.
        # Pipelining pays for long queues only: a short burst goes out one
        # task per worker, so a quick task never waits behind a slow one.
        n = min(self.dispatch_batch, max(1, len(queue) // (4 * max(1, self.task_workers()))))
        w.gpus = self.res.take(res)
        w.held = res
        w.state = WState.BUSY
        assigned = {"GPU": w.gpus} if w.gpus else None
        specs = []
        for _ in range(min(n, len(queue))):
            spec = queue.popleft()
            self.queued -= 1
            spec[P.T_ASSIGNED] = assigned
            w.tasks[spec[P.T_ID]] = spec
            self.running[spec[P.T_ID]] = w.id
            specs.append(spec)
        return specs

    def _spawn_for_backlog(self) -> list:
        # More runnable work than idle workers (workers blocked in get() lent their
        # CPU, or tasks need no CPU): start a worker, up to the cap.
        acts: list = []
        if self.queued and not self.idle:
            runnable = sum(1 for q in self.queues.values() if q and self.res.fits(q[0][P.T_RES]))
            while runnable > self.starting and self.task_workers() < self.max_workers:
                acts.append(self.spawn())
        return acts

    def task_done(self, wid: bytes, task_id: bytes, now: float) -> list:
        w = self.workers.get(wid)
        if self.running.get(task_id) != wid or w is None:
            return []
        del self.running[task_id]
        w.tasks.pop(task_id, None)
        if w.tasks or w.state != WState.BUSY:
            return []
        self._end_lease(w)
        self._now_idle(w, now)
        return self.schedule()

    def _end_lease(self, w: Worker) -> None:
        res = dict(w.held)
        if w.blocked:  # its CPU was lent out while it blocked
            res.pop("CPU", None)
        self.res.give(res, w.gpus)
        w.held, w.gpus, w.blocked = {}, [], False

    def _requeue(self, w: Worker, task_ids: list) -> None:
        """Put tasks the worker has not started back at the front of their queues."""
        for task_id in reversed(task_ids):
            spec = w.tasks.pop(task_id, None)
            if spec is None or self.running.get(task_id) != w.id:
                continue
            del self.running[task_id]
            self._queue(spec, front=True)

    def blocked(self, wid: bytes, is_blocked: bool, returned: list | tuple = ()) -> list:
        """The worker blocks in get()/wait() (or stops blocking). While blocked it lends
        its CPU, and hands back the tasks it had not started (they could be the very
        tasks it waits for)."""
        w = self.workers.get(wid)
        # (A leased worker being killed still reports: what it holds stays accounted
        # the same way until its death gives its lease back.)
        if w is None or w.state not in (WState.BUSY, WState.DEAD):
            return []
        if returned:
            self._requeue(w, list(returned))
        if w.blocked == is_blocked:
            return self.schedule() if returned else []
        w.blocked = is_blocked
        cpu = w.held.get("CPU", 0)
        if cpu:
            if is_blocked:
                self.res.lend_cpu(cpu)
            else:
                self.res.reclaim_cpu(cpu)
        return self.schedule() if is_blocked else []

    # -- cancel --------------------------------------------------------------------
    def cancel(self, task_id: bytes, force: bool) -> list:
        for queue in self.queues.values():
            for spec in queue:
                if spec[P.T_ID] == task_id:
                    queue.remove(spec)
                    self.queued -= 1
                    return [(FAIL, spec, CANCELLED, "")]
        wid = self.running.get(task_id)
        if wid is None:
            return []
        if not force:
            return [(CANCEL, wid, task_id)]
        w = self.workers[wid]
        started = next(iter(w.tasks)) == task_id   # it runs its tasks in order
        spec = w.tasks.pop(task_id)
        del self.running[task_id]
        if not started:
            # Leased but not started: it fails now and the worker skips it.
            # Killing the worker would take down the task it is running.
            return [(CANCEL, wid, task_id), (FAIL, spec, CANCELLED, "")]
        # The tasks leased behind it never started: back to the queue, no retry
        # used (else they would fail with the worker as if they had crashed it).
        self._requeue(w, list(w.tasks))
        return [(KILL, wid), (FAIL, spec, CANCELLED, "")] + self.schedule()

    def kill_running(self, which: Callable[[list], bool]) -> list:
        """Kill the workers running the tasks `which(spec)` picks (their job ended, their
        placement group was removed): those fail, the tasks queued behind go back."""
        acts: list = []
        for task_id, wid in list(self.running.items()):
            w = self.workers.get(wid)
            spec = w.tasks.get(task_id) if w is not None else None
            if spec is not None and task_id in self.running and which(spec):
                acts.extend(self.cancel(task_id, True))
        return acts

    # -- leases: a client sends tasks to a worker directly (Ray's direct task transport)
    def lease(self, client: bytes, res: dict) -> bytes | None:
        """Lease an idle worker to `client` for tasks needing `res`, if one is free now
        and nothing queued here waits for those resources; else None."""
        if not self.idle or self.queued or not self.res.fits(res) or res.get("GPU"):
            return None
        wid = self.idle.pop()   # the most recently idle: see _now_idle
        w = self.workers[wid]
        w.gpus = self.res.take(res)
        w.held, w.state, w.leased_to = res, WState.BUSY, client
        return wid

    def unlease(self, wid: bytes, now: float, kill: bool = False) -> list:
        """The client gives its leased worker back. kill: the node is to kill it (the
        client force-cancels the task on it); it keeps its lease (and its client, to be
        told LEASE_LOST) until its death is seen, and a give-back its client sent in the
        meantime is ignored: it must not be given work."""
        w = self.workers.get(wid)
        if w is None or w.leased_to is None or w.state != WState.BUSY:
            return []
        if kill:
            w.state = WState.DEAD
            return [(KILL, wid)]
        w.leased_to = None
        self._end_lease(w)
        self._now_idle(w, now)
        return self.schedule()

    def leases_of(self, client: bytes) -> list[bytes]:
        return [w.id for w in self.workers.values() if w.leased_to == client]

    # -- death ---------------------------------------------------------------------
    def worker_died(self, wid: bytes) -> list:
        w = self.workers.pop(wid, None)
        if w is None:
            return []
        if w.state == WState.STARTING:
            self.starting -= 1
        if wid in self.idle:
            self.idle.remove(wid)
        if w.state in (WState.BUSY, WState.DEAD):   # (a reaped idle worker holds nothing)
            self._end_lease(w)
        acts = self._retry_or_fail(w)
        # Keep the pool full. (task_workers() already counts the starting ones:
        # adding self.starting again left the pool short when a worker died
        # while another was still starting.)
        if self.task_workers() < self.pool_size:
            acts.append(self.spawn())
        return acts + self.schedule()

    def _retry_or_fail(self, w: Worker) -> list:
        # Every task of the lease without a result may have run: the worker runs
        # them in order, but the result of one it finished dies with it if still
        # in its outbox (a task that calls os._exit() right after another one),
        # so the first one left is not always the one that was running. Each one
        # counts as run (a retry used, or WorkerCrashedError at max_retries=0), so
        # that no task runs more often than its retries allow. (Tasks a blocked
        # worker handed back never ran and were requeued as they were.)
        crashed = []
        for spec in reversed(list(w.tasks.values())):
            if self.running.pop(spec[P.T_ID], None) is None:
                continue
            if P.spend_retry(spec):
                self._queue(spec, front=True)
            else:
                crashed.append((FAIL, spec, CRASHED, "the worker running it died"))
        return list(reversed(crashed))
