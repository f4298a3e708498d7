"""The node broker's decisions, apart from its I/O: which task runs on which worker,
what each holds, when to start or stop workers, and each actor's mailbox and life.

Pure state: methods take events and return actions (tuples, see ACTION KINDS);
no sockets, no clock reads (times are passed in). The broker loop carries the
actions out. Tested with Hypothesis state machines in tests/test_protocol_scheduling.py.
"""
from __future__ import annotations

import enum
from collections import deque

from .. import _protocol as P

# ACTION KINDS
DISPATCH = "dispatch"      # (DISPATCH, worker_id, [task specs])
SPAWN = "spawn"            # (SPAWN, worker_id, actor_id | None)
KILL = "kill"              # (KILL, worker_id)
FAIL = "fail"              # (FAIL, spec, error_kind, message)  error_kind below
SPILLBACK = "spillback"    # (SPILLBACK, [task specs])      tasks no resource here can fit
CREATE = "create"          # (CREATE, worker_id, actor spec)
FORWARD = "forward"        # (FORWARD, worker_id, [call specs])   calls to a live actor
RELEASE = "release"        # (RELEASE, worker_id)           end the actor after its queued calls
CANCEL = "cancel"          # (CANCEL, worker_id, task_id)
ACTOR_STATE = "actor"      # (ACTOR_STATE, actor_id, state name, info)

# error kinds for FAIL
CRASHED, CANCELLED, ACTOR_DIED = "crashed", "cancelled", "actor_died"


class WState(enum.Enum):
    STARTING = 1
    IDLE = 2
    BUSY = 3
    ACTOR = 4
    DEAD = 5


class AState(enum.Enum):
    PENDING = 1      # waiting for resources
    STARTING = 2     # worker started, __init__ not done
    ALIVE = 3
    RESTARTING = 4
    DEAD = 5


class Worker:
    __slots__ = ("id", "state", "tasks", "held", "blocked", "actor_id", "idle_since", "gpus",
                 "leased_to")

    def __init__(self, wid: bytes, actor_id: bytes | None) -> None:
        self.id = wid
        self.state = WState.STARTING
        # Tasks given to this worker, in order: it runs them one after the other
        # under one lease of `held` (pipelining: one message per batch, not per task).
        self.tasks: dict[bytes, list] = {}
        self.held: dict = {}
        self.blocked = False
        self.actor_id = actor_id
        self.idle_since = 0.0
        self.gpus: list = []
        self.leased_to: bytes | None = None   # the client sending it tasks directly


class Actor:
    __slots__ = ("spec", "state", "worker", "mailbox", "inflight", "restarts_left", "no_restart",
                 "death", "held", "released", "gpus", "address")

    def __init__(self, spec: list) -> None:
        self.spec = spec
        self.state = AState.PENDING
        self.worker: bytes | None = None
        self.mailbox: deque = deque()
        self.inflight: dict[bytes, list] = {}
        restarts = spec[P.A_MAX_RESTARTS]
        self.restarts_left = float("inf") if restarts == -1 else restarts
        self.no_restart = False
        self.death = ""
        self.held: dict = {}
        self.released = False
        self.gpus: list = []
        self.address = ""   # where callers send calls directly while it is ALIVE


def shape_of(res: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in res.items() if v))


class LocalScheduler:
    """One node's resources, task queue, worker pool and actors."""

    def __init__(self, resources: dict, pool_size: int, max_workers: int, dispatch_batch: int = 1) -> None:
        self.total = {k: float(v) for k, v in resources.items()}
        self.avail = dict(self.total)
        self.free_gpus = list(range(int(self.total.get("GPU", 0))))
        self.pool_size = max(1, pool_size)
        self.max_workers = max(self.pool_size, max_workers)
        self.queues: dict[tuple, deque] = {}     # shape -> ready task specs
        self.queued = 0
        self.workers: dict[bytes, Worker] = {}
        self.idle: deque = deque()
        self.starting = 0
        self.running: dict[bytes, bytes] = {}    # task_id -> worker_id
        self.actors: dict[bytes, Actor] = {}
        self.pending_actors: deque = deque()
        self.dispatch_batch = max(1, dispatch_batch)
        self._next = 0

    # -- helpers ---------------------------------------------------------------
    def _new_worker_id(self) -> bytes:
        self._next += 1
        return b"w%d" % self._next

    def feasible(self, res: dict) -> bool:
        return all(self.total.get(k, 0.0) >= v for k, v in res.items() if v)

    def _fits(self, res: dict) -> bool:
        avail = self.avail
        for k, v in res.items():
            if v and avail.get(k, 0.0) < v - 1e-9:
                return False
        return True

    def _take(self, res: dict) -> list:
        for k, v in res.items():
            if v:
                self.avail[k] = self.avail.get(k, 0.0) - v
        n = int(res.get("GPU", 0) or 0)
        gpus, self.free_gpus = self.free_gpus[:n], self.free_gpus[n:]
        return gpus

    def _give(self, res: dict, gpus: list) -> None:
        for k, v in res.items():
            if v:
                self.avail[k] = self.avail.get(k, 0.0) + v
        self.free_gpus.extend(gpus)

    def task_workers(self) -> int:
        return sum(1 for w in self.workers.values() if w.actor_id is None and w.state != WState.DEAD)

    # -- startup -----------------------------------------------------------------
    def start_pool(self) -> list:
        acts = []
        for _ in range(self.pool_size):
            acts.append(self._spawn(None))
        return acts

    def _spawn(self, actor_id: bytes | None) -> tuple:
        wid = self._new_worker_id()
        self.workers[wid] = Worker(wid, actor_id)
        if actor_id is None:
            self.starting += 1
        return (SPAWN, wid, actor_id)

    def worker_ready(self, wid: bytes, now: float) -> list:
        w = self.workers.get(wid)
        if w is None or w.state != WState.STARTING:
            return []
        if w.actor_id is None:
            self.starting -= 1
            w.state = WState.IDLE
            w.idle_since = now
            self.idle.append(wid)
            return self._schedule()
        actor = self.actors.get(w.actor_id)
        if actor is None or actor.state == AState.DEAD:
            return [(KILL, wid)]
        w.state = WState.ACTOR
        return [(CREATE, wid, actor.spec)]

    # -- tasks -------------------------------------------------------------------
    def submit(self, specs: list) -> list:
        spill = []
        for spec in specs:
            res = spec[P.T_RES]
            if not self.feasible(res):
                spill.append(spec)
                continue
            self.queues.setdefault(shape_of(res), deque()).append(spec)
            self.queued += 1
        acts = self._schedule()
        if spill:
            acts.append((SPILLBACK, spill))
        return acts

    def _schedule(self) -> list:
        acts: list = []
        dispatch: dict[bytes, list] = {}
        if self.pending_actors:
            acts.extend(self._place_actors())
        for shape, queue in list(self.queues.items()):
            res = queue[0][P.T_RES] if queue else None
            while queue and self.idle and self._fits(res):
                wid = self.idle.popleft()
                w = self.workers[wid]
                # A fair share of the queue, at most dispatch_batch tasks per lease.
                # Pipelining pays for long queues only: a short burst goes out one
                # task per worker, so a quick task never waits behind a slow one.
                n = min(self.dispatch_batch, max(1, len(queue) // (4 * max(1, self.task_workers()))))
                w.gpus = self._take(res)
                w.held = res
                w.state = WState.BUSY
                assigned = {"GPU": w.gpus} if w.gpus else None
                specs = dispatch.setdefault(wid, [])
                for _ in range(min(n, len(queue))):
                    spec = queue.popleft()
                    self.queued -= 1
                    spec[P.T_ASSIGNED] = assigned
                    w.tasks[spec[P.T_ID]] = spec
                    self.running[spec[P.T_ID]] = wid
                    specs.append(spec)
            if not queue:
                del self.queues[shape]
        for wid, specs in dispatch.items():
            acts.append((DISPATCH, wid, specs))
        # More runnable work than idle workers (workers blocked in get() lent their
        # CPU, or tasks need no CPU): start a worker, up to the cap.
        if self.queued and not self.idle:
            runnable = sum(1 for q in self.queues.values() if q and self._fits(q[0][P.T_RES]))
            while runnable > self.starting and self.task_workers() < self.max_workers:
                acts.append(self._spawn(None))
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
        w.state = WState.IDLE
        w.idle_since = now
        self.idle.append(wid)
        return self._schedule()

    def _end_lease(self, w: Worker) -> None:
        res = dict(w.held)
        if w.blocked:  # its CPU was lent out while it blocked
            res.pop("CPU", None)
        self._give(res, w.gpus)
        w.held, w.gpus, w.blocked = {}, [], False

    def _requeue(self, w: Worker, task_ids: list) -> None:
        """Put tasks the worker has not started back at the front of their queues."""
        for task_id in reversed(task_ids):
            spec = w.tasks.pop(task_id, None)
            if spec is None or self.running.get(task_id) != w.id:
                continue
            del self.running[task_id]
            self.queues.setdefault(shape_of(spec[P.T_RES]), deque()).appendleft(spec)
            self.queued += 1

    def blocked(self, wid: bytes, is_blocked: bool, returned: list | tuple = ()) -> list:
        """The worker blocks in get()/wait() (or stops blocking). While blocked it lends
        its CPU, and hands back the tasks it had not started (they could be the very
        tasks it waits for)."""
        w = self.workers.get(wid)
        if w is None or w.state != WState.BUSY:
            return []
        if returned:
            self._requeue(w, list(returned))
        if w.blocked == is_blocked:
            return self._schedule() if returned else []
        w.blocked = is_blocked
        cpu = w.held.get("CPU", 0)
        if cpu:
            self.avail["CPU"] = self.avail.get("CPU", 0.0) + (cpu if is_blocked else -cpu)
        return self._schedule() if is_blocked else []

    def cancel(self, task_id: bytes, force: bool) -> list:
        for _shape, queue in self.queues.items():
            for spec in queue:
                if spec[P.T_ID] == task_id:
                    queue.remove(spec)
                    self.queued -= 1
                    return [(FAIL, spec, CANCELLED, "")]
        wid = self.running.get(task_id)
        if wid is None:
            return []
        w = self.workers[wid]
        if w.actor_id is not None:
            return [(CANCEL, wid, task_id)]
        if force:
            if next(iter(w.tasks)) != task_id:
                # Leased but not started: it fails now and the worker skips it.
                # Killing the worker would take down the task it is running.
                spec = w.tasks.pop(task_id)
                del self.running[task_id]
                return [(CANCEL, wid, task_id), (FAIL, spec, CANCELLED, "")]
            spec = w.tasks.pop(task_id)
            del self.running[task_id]
            # The tasks leased behind it never started: back to the queue, no retry
            # used (else they would fail with the worker as if they had crashed it).
            self._requeue(w, list(w.tasks))
            return [(KILL, wid), (FAIL, spec, CANCELLED, "")] + self._schedule()
        return [(CANCEL, wid, task_id)]

    # -- leases: a client sends tasks to a worker directly (Ray's direct task transport)
    def lease(self, client: bytes, res: dict) -> bytes | None:
        """Lease an idle worker to `client` for tasks needing `res`, if one is free now
        and nothing queued here waits for those resources; else None."""
        if not self.idle or self.queued or not self._fits(res) or res.get("GPU"):
            return None
        wid = self.idle.popleft()
        w = self.workers[wid]
        w.gpus = self._take(res)
        w.held, w.state, w.leased_to = res, WState.BUSY, client
        return wid

    def unlease(self, wid: bytes, now: float) -> list:
        w = self.workers.get(wid)
        if w is None or w.leased_to is None or w.state != WState.BUSY:
            return []
        w.leased_to = None
        self._end_lease(w)
        w.state = WState.IDLE
        w.idle_since = now
        self.idle.append(wid)
        return self._schedule()

    def leases_of(self, client: bytes) -> list[bytes]:
        return [w.id for w in self.workers.values() if w.leased_to == client]

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

    # -- worker death ------------------------------------------------------------
    def worker_died(self, wid: bytes) -> list:
        w = self.workers.pop(wid, None)
        if w is None:
            return []
        acts: list = []
        if w.actor_id is None:
            if w.state == WState.STARTING:
                self.starting -= 1
            if wid in self.idle:
                self.idle.remove(wid)
            if w.state == WState.BUSY:
                self._end_lease(w)
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
                    self.queues.setdefault(shape_of(spec[P.T_RES]), deque()).appendleft(spec)
                    self.queued += 1
                else:
                    crashed.append((FAIL, spec, CRASHED, "the worker running it died"))
            acts.extend(reversed(crashed))
            # Keep the pool full. (task_workers() already counts the starting ones:
            # adding self.starting again left the pool short when a worker died
            # while another was still starting.)
            if self.task_workers() < self.pool_size:
                acts.append(self._spawn(None))
            acts.extend(self._schedule())
            return acts
        actor = self.actors.get(w.actor_id)
        if actor is not None and actor.worker == wid:
            acts.extend(self._actor_died(actor, "its worker process died"))
        return acts

    # -- actors ------------------------------------------------------------------
    def create_actor(self, spec: list) -> list:
        aid = spec[P.A_ID]
        if aid in self.actors:
            return []
        self.actors[aid] = Actor(spec)
        if not self.feasible(self._placement_res(spec)):
            return [(SPILLBACK, [spec])]
        self.pending_actors.append(aid)
        return self._schedule()

    @staticmethod
    def _placement_res(spec: list) -> dict:
        res = dict(spec[P.A_RES])
        # Ray's default: an actor needs 1 CPU to be placed and holds 0 while it lives.
        if res.pop("_default_cpu", None):
            res["CPU"] = max(res.get("CPU", 0), 1)
        return res

    def _place_actors(self) -> list:
        acts = []
        while self.pending_actors:
            actor = self.actors.get(self.pending_actors[0])
            if actor is None or actor.state != AState.PENDING:
                self.pending_actors.popleft()
                continue
            if not self._fits(self._placement_res(actor.spec)):
                break
            self.pending_actors.popleft()
            held = {k: v for k, v in actor.spec[P.A_RES].items() if k != "_default_cpu"}
            actor.gpus = self._take(held)
            actor.held = held
            acts.extend(self._start_actor(actor))
        return acts

    def _start_actor(self, actor: Actor) -> list:
        act = self._spawn(actor.spec[P.A_ID])
        actor.worker = act[1]
        actor.state = AState.STARTING if actor.state == AState.PENDING else actor.state
        return [act]

    def actor_ready(self, wid: bytes, state: int, message: str) -> list:
        w = self.workers.get(wid)
        if w is None or w.actor_id is None:
            return []
        actor = self.actors.get(w.actor_id)
        if actor is None or actor.worker != wid:
            return []
        if state == 1:
            actor.state = AState.ALIVE
            actor.address = message
            acts: list = [(ACTOR_STATE, actor.spec[P.A_ID], "ALIVE", {"address": message})]
            if actor.mailbox:
                calls = list(actor.mailbox)
                actor.mailbox.clear()
                for c in calls:
                    actor.inflight[c[P.T_ID]] = c
                acts.append((FORWARD, wid, calls))
            if actor.released is True:
                acts.append((RELEASE, wid))
            return acts
        actor.no_restart = True
        actor.death = message or ("the actor called exit_actor()" if state == 2 else "its __init__ raised")
        return [] if state == 2 else [(KILL, wid)]

    def actor_call(self, spec: list) -> list:
        actor = self.actors.get(spec[P.T_ACTOR])
        if actor is None or actor.state == AState.DEAD:
            why = actor.death if actor is not None else "it is not known on this node"
            return [(FAIL, spec, ACTOR_DIED, why)]
        if actor.state == AState.ALIVE:
            actor.inflight[spec[P.T_ID]] = spec
            return [(FORWARD, actor.worker, [spec])]
        actor.mailbox.append(spec)
        return []

    def call_done(self, wid: bytes, task_id: bytes) -> None:
        w = self.workers.get(wid)
        if w is not None and w.actor_id is not None:
            actor = self.actors.get(w.actor_id)
            if actor is not None:
                actor.inflight.pop(task_id, None)

    def kill_actor(self, aid: bytes, no_restart: bool) -> list:
        actor = self.actors.get(aid)
        if actor is None or actor.state == AState.DEAD:
            return []
        if no_restart:
            actor.no_restart = True
            actor.death = "it was killed with zray.kill()"
        if actor.worker is not None and actor.worker in self.workers:
            return [(KILL, actor.worker)]
        return self._actor_died(actor, actor.death or "it was killed")

    def release_actor(self, aid: bytes, sent_direct: bool = False) -> list:
        """The last handle is gone: end the actor once its queued calls are done.
        With sent_direct the owner told the actor itself (behind its own calls)."""
        actor = self.actors.get(aid)
        if actor is None or actor.state == AState.DEAD or actor.spec[P.A_DETACHED]:
            return []
        actor.released = "direct" if sent_direct else True
        if sent_direct and actor.state != AState.PENDING:
            actor.no_restart = True
            actor.death = "all handles to it went out of scope"
            return []
        actor.no_restart = True
        actor.death = "all handles to it went out of scope"
        if actor.state == AState.ALIVE:
            return [(RELEASE, actor.worker)]
        if actor.state == AState.PENDING:
            return self._actor_died(actor, actor.death)
        return []

    def _actor_died(self, actor: Actor, why: str) -> list:
        acts: list = []
        aid = actor.spec[P.A_ID]
        if actor.worker is not None:
            self.workers.pop(actor.worker, None)
        actor.worker = None
        inflight = list(actor.inflight.values())
        actor.inflight.clear()
        why = actor.death or why
        if actor.restarts_left > 0 and not actor.no_restart:
            actor.restarts_left -= 1
            actor.state = AState.RESTARTING
            retry = [c for c in inflight if P.spend_retry(c)]
            for c in reversed(retry):
                actor.mailbox.appendleft(c)
            for c in inflight:
                if c not in retry:
                    acts.append((FAIL, c, ACTOR_DIED, f"the actor died ({why}) while running this call"))
            acts.append((ACTOR_STATE, aid, "RESTARTING", {}))
            acts.extend(self._start_actor(actor))
            return acts
        actor.state = AState.DEAD
        actor.death = why
        self._give(actor.held, actor.gpus)
        actor.held, actor.gpus = {}, []
        for c in inflight + list(actor.mailbox):
            acts.append((FAIL, c, ACTOR_DIED, why))
        actor.mailbox.clear()
        acts.append((ACTOR_STATE, aid, "DEAD", {"reason": why}))
        acts.extend(self._schedule())
        return acts

    # -- introspection -----------------------------------------------------------
    def load(self) -> dict:
        return {"queued": self.queued, "running": len(self.running), "workers": len(self.workers),
                "actors": sum(1 for a in self.actors.values() if a.state != AState.DEAD)}
