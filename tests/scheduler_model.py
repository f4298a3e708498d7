"""A model of a node's workers, clients, tasks, calls and actors for the scheduler's
Hypothesis state machines (test_scheduling.py): the scheduler's actions carried out on
it, and the invariants checked after every step. The rules are in test_scheduling."""
from __future__ import annotations

import math
from collections import Counter

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from zray import _protocol as P
from zray.brokers import _scheduling as S
from zray.brokers._resources import actor_demand, actor_holds

EPS = 1e-6
OWNER = b"D-owner"
CALLERS = [b"D-owner", b"D-other"]


def res_of(cpu: float, gpu: float, custom: float) -> dict:
    """A resource request of that shape (zero amounts left out, as clients do)."""
    res = {"CPU": cpu, "GPU": gpu, "custom": custom}
    return {k: float(v) for k, v in res.items() if v}


class ActorModel:
    """What the model expects of one actor."""

    def __init__(self, spec: list) -> None:
        self.spec = spec
        self.state = "PENDING"       # or SPILLED, STARTING, ALIVE, RESTARTING, DEAD
        self.worker: bytes | None = None
        self.placed = False          # it took its resources (kept across restarts)
        self.held: dict = {}
        self.gpus: list = []
        restarts = spec[P.A_MAX_RESTARTS]
        self.restarts_left = math.inf if restarts == -1 else restarts
        self.no_restart = False
        self.released: str | None = None    # None, "node" or "direct"


class SchedulerModel(RuleBasedStateMachine):
    """Drives a LocalScheduler and checks it against a model (rules: its subclasses).

    Task workers: a DISPATCH gives one a lease (one resource shape) and tasks of that
    shape, run in order; when its running task blocks in get() it lends its CPU and
    hands back the tasks it has not started; when it dies, each task without a result
    may have run, so each is retried (a retry charged) or failed.
    Leases: a client leased a worker sends it one task at a time directly; when that
    worker dies the client charges a retry and resubmits the task through the node.
    Actors: each has its own worker; calls wait in its mailbox until it is alive,
    then are forwarded; when its worker dies it restarts (calls in flight with
    retries left go back to the mailbox, in order) or dies (its calls fail)."""

    @initialize(cpus=st.sampled_from([1, 2, 4]), gpus=st.sampled_from([0, 1, 2]),
                custom=st.sampled_from([0, 1]), pool=st.integers(1, 3), extra=st.integers(0, 3),
                batch=st.sampled_from([1, 2, 16]))
    def start(self, cpus, gpus, custom, pool, extra, batch):
        total = {"CPU": cpus, "memory": 1000.0}
        if gpus:
            total["GPU"] = gpus
        if custom:
            total["custom"] = custom
        self.sched = S.LocalScheduler(total, pool, pool + extra, batch)
        self.total = {k: float(v) for k, v in total.items()}
        self.pool, self.batch, self.now, self.next_id = pool, batch, 0.0, 0
        # workers
        self.alive: set[bytes] = set()          # spawned, not yet dead
        self.starting: set[bytes] = set()       # spawned, not yet ready
        self.ready: set[bytes] = set()          # said hello
        self.killed: set[bytes] = set()         # told to die (or exiting), not dead yet
        self.actor_of: dict[bytes, bytes] = {}  # actor worker -> its actor
        # task workers' leases, from the node or to a client
        self.lease: dict[bytes, dict] = {}      # worker -> resources it holds
        self.lease_gpus: dict[bytes, list] = {}
        self.tasks_of: dict[bytes, list] = {}   # worker -> its tasks, in order (first: running)
        self.blocked: set[bytes] = set()        # workers blocked in get()
        self.lent: set[bytes] = set()           # workers that blocked during their lease
        self.leased_to: dict[bytes, bytes] = {} # worker -> client it is leased to
        self.direct: dict[bytes, bytes] = {}    # leased worker -> the client's task on it
        self.cancelled_direct: set[bytes] = set()
        # tasks and calls
        self.specs: dict[bytes, list] = {}      # every task and call ever made
        self.running: dict[bytes, bytes] = {}   # task -> worker, from DISPATCH actions
        self.runs: Counter = Counter()          # times a task was given to a worker
        self.allowed: Counter = Counter()       # 1 + times it legitimately became runnable again
        self.cancel_sent: set[bytes] = set()
        self.done: set[bytes] = set()
        self.failed: dict[bytes, str] = {}
        self.spilled: set[bytes] = set()
        # actors
        self.actors: dict[bytes, ActorModel] = {}
        self.calls: dict[bytes, tuple] = {}     # call -> (caller, actor, sequence number)
        self.inflight: dict[bytes, list] = {}   # actor worker -> calls forwarded, no result yet
        self.last_forward: dict[tuple, int] = {}  # (worker, caller) -> last call's number
        self.created: set[bytes] = set()        # actor workers sent CREATE, not yet ready
        self.up: set[bytes] = set()             # actor workers whose __init__ succeeded
        self.releasing: set[bytes] = set()      # actor workers told to end after their calls
        self.apply(self.sched.start_pool())
        assert len(self.alive) == pool

    def new_id(self, prefix: bytes) -> bytes:
        self.next_id += 1
        return prefix + b"%015d" % self.next_id

    def tick(self) -> float:
        self.now += 0.25
        return self.now

    def queued_ids(self) -> list[bytes]:
        return [s[P.T_ID] for q in self.sched.tasks.queues.values() for s in q]

    def mailbox_ids(self) -> list[bytes]:
        return [c[P.T_ID] for a in self.sched.mailboxes.actors.values() for c in a.mailbox]

    def task_workers(self) -> set[bytes]:
        return self.alive - set(self.actor_of)

    # -- carrying out actions ----------------------------------------------------------
    def apply(self, acts: list) -> list:
        handlers = {S.SPAWN: self._spawned, S.DISPATCH: self._dispatched, S.KILL: self._killed,
                    S.FAIL: self._failed, S.SPILLBACK: self._spilled, S.CANCEL: self._cancel_sent,
                    S.CREATE: self._created, S.FORWARD: self._forwarded,
                    S.RELEASE: self._released, S.ACTOR_STATE: self._actor_state}
        for act in acts:
            handlers[act[0]](*act[1:])
        return acts

    def _spawned(self, wid: bytes, aid: bytes | None, gpus: list) -> None:
        assert wid not in self.alive and wid not in self.ready, "worker id reused"
        self.alive.add(wid)
        self.starting.add(wid)
        if aid is None:
            assert gpus == []
            return
        a = self.actors[aid]
        assert a.state not in ("DEAD", "SPILLED") and a.worker is None, "two workers for one actor"
        a.worker, self.actor_of[wid] = wid, aid
        if not a.placed:   # placed now: it takes its resources, for its whole life
            a.placed, a.held, a.gpus = True, actor_holds(a.spec[P.A_RES]), gpus
            assert len(gpus) == int(a.held.get("GPU", 0))
            a.state = "STARTING"
        else:
            assert gpus == a.gpus, "a restarted actor keeps its GPUs"

    def _dispatched(self, wid: bytes, specs: list) -> None:
        assert wid in self.ready and wid in self.alive, "dispatch to a worker that is not up"
        assert wid not in self.killed, "dispatch to a worker told to die"
        assert wid not in self.actor_of, "task dispatched to an actor's worker"
        assert wid not in self.lease and not self.tasks_of.get(wid), "dispatch to a busy or leased worker"
        assert 1 <= len(specs) <= self.batch
        res = specs[0][P.T_RES]
        for k, v in res.items():
            assert v <= self.total.get(k, 0.0) + EPS, f"dispatched {res} on {self.total}"
        gpus = (specs[0][P.T_ASSIGNED] or {}).get("GPU", [])
        assert len(gpus) == int(res.get("GPU", 0))
        for spec in specs:
            tid = spec[P.T_ID]
            assert S.shape_of(spec[P.T_RES]) == S.shape_of(res), "one lease, two shapes"
            assert tid not in self.running, "task dispatched twice at once"
            assert tid not in self.done and tid not in self.failed and tid not in self.spilled
            assert tid not in self.queued_ids()
            self.runs[tid] += 1
            assert self.runs[tid] <= self.allowed[tid], "a task ran again with no retry charged"
            self.running[tid] = wid
        self.lease[wid] = res
        self.lease_gpus[wid] = gpus
        self.tasks_of[wid] = [spec[P.T_ID] for spec in specs]

    def _killed(self, wid: bytes) -> None:
        assert wid in self.alive
        self.killed.add(wid)

    def _failed(self, spec: list, why: str, _message: str) -> None:
        tid = spec[P.T_ID]
        assert tid not in self.failed and tid not in self.done and tid not in self.spilled
        assert tid not in self.direct.values(), "the node failed a task it never had (leased)"
        if tid in self.calls:
            assert why == S.ACTOR_DIED
            for calls in self.inflight.values():
                if tid in calls:
                    calls.remove(tid)
        elif tid in self.running:  # only a forced cancel fails a task given to a worker
            assert why == S.CANCELLED
            wid = self.running.pop(tid)
            self.tasks_of[wid].remove(tid)
        self.failed[tid] = why

    def _spilled(self, specs: list) -> None:
        for spec in specs:
            if len(spec) == P.ACTOR_FIELDS:
                a = self.actors[spec[P.A_ID]]
                assert not self.sched.res.feasible(actor_demand(spec[P.A_RES]))
                assert a.state == "PENDING"
                a.state = "SPILLED"
                continue
            tid = spec[P.T_ID]
            assert any(v > self.total.get(k, 0.0) for k, v in spec[P.T_RES].items()), \
                f"spilled a task that fits this node: {spec[P.T_RES]}"
            assert tid not in self.spilled
            self.spilled.add(tid)

    def _cancel_sent(self, wid: bytes, tid: bytes) -> None:
        assert self.running.get(tid) == wid
        self.cancel_sent.add(tid)

    def _created(self, wid: bytes, spec: list) -> None:
        a = self.actors[spec[P.A_ID]]
        assert wid in self.ready and a.worker == wid and self.actor_of[wid] == spec[P.A_ID]
        self.created.add(wid)

    def _forwarded(self, wid: bytes, specs: list) -> None:
        assert wid in self.up, "calls forwarded to an actor whose __init__ has not succeeded"
        for spec in specs:
            tid = spec[P.T_ID]
            caller, aid, seq = self.calls[tid]
            a = self.actors[aid]
            assert a.state == "ALIVE" and a.worker == wid, "call forwarded to a worker not its actor's"
            assert tid not in self.done and tid not in self.failed
            assert all(tid not in calls for calls in self.inflight.values()), "call forwarded twice"
            self.runs[tid] += 1
            assert self.runs[tid] <= self.allowed[tid], "a call ran again with no retry charged"
            assert seq > self.last_forward.get((wid, caller), -1), "one caller's calls out of order"
            self.last_forward[(wid, caller)] = seq
            self.inflight.setdefault(wid, []).append(tid)

    def _released(self, wid: bytes) -> None:
        a = self.actors[self.actor_of[wid]]
        assert a.worker == wid and a.state == "ALIVE" and a.released == "node"
        self.releasing.add(wid)

    def _actor_state(self, aid: bytes, state: str, info: dict) -> None:
        a = self.actors[aid]
        assert a.state != "DEAD", "an actor came back from the dead"
        if state == "DEAD":
            a.state, a.held, a.gpus = "DEAD", {}, []
        elif state == "RESTARTING":
            a.state = "RESTARTING" if a.placed else a.state   # unplaced: still waits to be
        else:
            assert state == "ALIVE" and a.worker in self.up
            a.state = "ALIVE"
            if a.released == "direct":   # the owner's release reaches the new instance
                self.releasing.add(a.worker)

    # -- what the workers and clients do (for the rules) --------------------------------
    def make_task(self, shape: tuple, retries: int, owner: bytes = OWNER) -> list:
        tid = self.new_id(b"t")
        spec = P.task_spec(tid, owner, b"f", b"", 1, res_of(*shape), retries, False, f"task {tid!r}", None)
        P.check_task(spec)
        self.specs[tid] = spec
        self.allowed[tid] = 1
        return spec

    def _ready(self, wid: bytes) -> None:
        self.starting.discard(wid)
        self.ready.add(wid)
        acts = self.apply(self.sched.worker_ready(wid, self.tick()))
        if wid in self.actor_of:
            assert [a[0] for a in acts] == [S.CREATE]

    def _finish_first(self, wid: bytes) -> None:
        if wid in self.blocked:  # a task unblocks before it returns
            self.blocked.discard(wid)
            self.apply(self.sched.blocked(wid, False, []))
        tid = self.tasks_of[wid].pop(0)
        del self.running[tid]
        self.done.add(tid)
        if not self.tasks_of[wid]:
            self._lease_ends(wid)
        self.apply(self.sched.result(wid, tid, self.tick()))

    def _lease_ends(self, wid: bytes) -> None:
        for d in (self.lease, self.lease_gpus, self.tasks_of, self.leased_to, self.direct):
            d.pop(wid, None)
        self.blocked.discard(wid)
        self.lent.discard(wid)

    def _die(self, wid: bytes) -> None:
        if wid in self.actor_of:
            self._actor_worker_dies(wid)
        else:
            self._task_worker_dies(wid)
        for s in (self.alive, self.starting, self.ready, self.killed, self.created, self.up,
                  self.releasing):
            s.discard(wid)
        assert self.apply(self.sched.worker_died(wid)) == []  # a second report is ignored

    def _task_worker_dies(self, wid: bytes) -> None:
        tids = self.tasks_of.get(wid, [])
        retries = {tid: self.specs[tid][P.T_RETRIES] for tid in tids}
        for tid in tids:
            del self.running[tid]
            if retries[tid] != 0:
                self.allowed[tid] += 1   # a retry is charged: it may run again
        direct = self.direct.get(wid)
        self.alive.discard(wid)
        self._lease_ends(wid)
        self.apply(self.sched.worker_died(wid))
        # Any task of the lease without a result may have run (a finished task's
        # result can die with the worker): each one uses a retry, or fails.
        for tid in tids:
            if retries[tid] == 0:
                assert self.failed.get(tid) == S.CRASHED, "a task ran more often than max_retries allows"
                continue
            assert tid not in self.failed, "a task with retries left failed on a crash"
            assert tid in self.running or tid in self.queued_ids()
            assert self.specs[tid][P.T_RETRIES] == (retries[tid] - 1 if retries[tid] > 0 else -1)
        if direct is None:
            return
        # The client fails its task (cancelled, or no retries left) or retries it
        # through the node, as _leases does.
        if direct in self.cancelled_direct:
            self.failed[direct] = S.CANCELLED
        elif P.spend_retry(self.specs[direct]):
            self.allowed[direct] += 1
            self.apply(self.sched.submit([self.specs[direct]]))
        else:
            self.failed[direct] = S.CRASHED

    def _init_done(self, wid: bytes, state: int) -> None:
        """The actor's __init__ returned (1), raised (0), or called exit_actor() (2)."""
        self.created.discard(wid)
        a = self.actors[self.actor_of[wid]]
        if state == 1:
            self.up.add(wid)
        else:
            a.no_restart = True
        acts = self.apply(self.sched.actor_ready(wid, state, "ipc://actor" if state == 1 else ""))
        if state == 1:
            assert acts[0][:3] == (S.ACTOR_STATE, a.spec[P.A_ID], "ALIVE") and a.state == "ALIVE"
        elif state == 0:
            assert acts == [(S.KILL, wid)]
        else:
            assert acts == []
            self.killed.add(wid)   # it exits by itself

    def _call(self, caller: bytes, aid: bytes) -> None:
        a = self.actors.get(aid)
        tid = self.new_id(b"c")
        retries = a.spec[P.A_MAX_TASK_RETRIES] if a else 0
        spec = P.task_spec(tid, caller, b"m", b"", 1, {}, retries, False, "call", None, aid, "m")
        P.check_task(spec)
        self.specs[tid], self.calls[tid], self.allowed[tid] = spec, (caller, aid, self.next_id), 1
        acts = self.apply(self.sched.actor_call(spec))
        if a is None or a.state == "DEAD":
            assert self.failed.get(tid) == S.ACTOR_DIED
        elif a.state == "ALIVE":
            assert [x[0] for x in acts] == [S.FORWARD]
        else:
            assert acts == [] and tid in self.mailbox_ids()

    def callable_actors(self) -> list[bytes]:
        return sorted(aid for aid, a in self.actors.items() if a.released is None)

    def _actor_worker_dies(self, wid: bytes) -> None:
        aid = self.actor_of.pop(wid)
        a = self.actors[aid]
        inflight = self.inflight.pop(wid, [])
        retries = {tid: self.specs[tid][P.T_RETRIES] for tid in inflight}
        mailbox = [c[P.T_ID] for c in self.sched.actor(aid).mailbox]
        restart = a.restarts_left > 0 and not a.no_restart
        self.alive.discard(wid)
        a.worker = None
        for tid in inflight if restart else ():
            if retries[tid] != 0:
                self.allowed[tid] += 1   # a retry is charged: it may be forwarded again
        acts = self.apply(self.sched.worker_died(wid))
        if not restart:
            self._expect_dead(aid, inflight, mailbox, acts)
            return
        a.restarts_left -= 1
        assert (S.ACTOR_STATE, aid, "RESTARTING", {}) in acts
        assert [x for x in acts if x[0] == S.SPAWN and x[2] == aid], "a restart without a worker"
        for tid in inflight:   # with retries left: back in the mailbox, ahead of newer calls
            if retries[tid] == 0:
                assert self.failed.get(tid) == S.ACTOR_DIED
                continue
            assert tid not in self.failed, "a call with retries left failed on a restart"
            assert self.specs[tid][P.T_RETRIES] == (retries[tid] - 1 if retries[tid] > 0 else -1)
        kept = [t for t in inflight if retries[t] != 0]
        assert [c[P.T_ID] for c in self.sched.actor(aid).mailbox] == kept + mailbox

    def _expect_dead(self, aid: bytes, inflight: list, mailbox: list, acts: list) -> None:
        assert self.actors[aid].state == "DEAD"
        assert (S.ACTOR_STATE, aid, "DEAD") in [x[:3] for x in acts]
        for tid in inflight + mailbox:
            assert self.failed.get(tid) == S.ACTOR_DIED, "a call to a dead actor neither ran nor failed"

    # -- liveness ------------------------------------------------------------------------
    def _step(self) -> bool:
        """One step towards quiet, as every process would take it; False when quiet."""
        busy_tasks = sorted(w for w, t in self.tasks_of.items() if t)
        busy_actors = sorted(w for w, c in self.inflight.items() if c)
        exiting = sorted(w for w in self.releasing if not self.inflight.get(w))
        if self.starting:
            self._ready(min(self.starting))
        elif self.killed:
            self._die(min(self.killed))
        elif self.created:
            self._init_done(min(self.created), 1)
        elif busy_actors:
            wid = busy_actors[0]
            tid = self.inflight[wid].pop(0)
            self.done.add(tid)
            self.apply(self.sched.result(wid, tid, self.tick()))
        elif exiting:
            self._die(exiting[0])
        elif self.direct:
            wid = min(self.direct)
            if wid in self.blocked:
                self.blocked.discard(wid)
                self.apply(self.sched.blocked(wid, False, []))
            self.done.add(self.direct.pop(wid))
        elif self.leased_to:
            wid = min(self.leased_to)
            self._lease_ends(wid)
            self.apply(self.sched.unlease(wid, self.tick()))
        elif busy_tasks:
            self._finish_first(busy_tasks[0])
        else:
            return False
        return True

    @rule()
    def drain(self):
        """Liveness: with every process answering, all work that can run here runs."""
        for _ in range(10_000):
            if not self._step():
                break
        else:
            raise AssertionError("the scheduler did not settle")
        held = self.actor_holdings()
        free = {k: v - held.get(k, 0.0) for k, v in self.total.items()}
        for k, v in free.items():
            assert math.isclose(self.sched.avail.get(k, 0.0), v, abs_tol=EPS), "resources leaked"
        # What is still queued waits for resources live actors hold.
        for queue in self.sched.tasks.queues.values():
            assert not queue or not self.sched.res.fits(queue[0][P.T_RES]), "a runnable task stuck"
        if not any(held.values()):
            assert self.queued_ids() == [] and self.sched.tasks.queued == 0
        for aid in self.sched.mailboxes.pending:
            if self.actors[aid].state == "PENDING":
                assert not self.sched.res.fits(actor_demand(self.actors[aid].spec[P.A_RES]))
                break
        for aid, a in self.actors.items():
            assert a.state in ("PENDING", "SPILLED", "ALIVE", "DEAD"), (aid, a.state)
            assert a.state != "ALIVE" or not self.sched.actor(aid).mailbox, "calls stuck in a mailbox"
            assert a.released is None or a.state == "DEAD", "a released actor lives on"

    # -- invariants --------------------------------------------------------------------
    def actor_holdings(self) -> dict:
        held: dict = {}
        for a in self.actors.values():
            if a.placed and a.state != "DEAD":
                for k, v in a.held.items():
                    held[k] = held.get(k, 0.0) + v
        return held

    @invariant()
    def resources_never_exceed_totals(self):
        for k, v in self.sched.avail.items():
            assert v <= self.total.get(k, 0.0) + EPS, f"avail {self.sched.avail} > total {self.total}"

    @invariant()
    def only_lent_cpu_is_overcommitted(self):
        """Available CPU goes below zero only by what blocked workers lent (and took back
        on unblocking); no other resource ever goes below zero."""
        lent = sum(self.lease[w].get("CPU", 0.0) for w in self.lent)
        blocked_now = sum(self.lease[w].get("CPU", 0.0) for w in self.blocked)
        assert blocked_now <= lent + EPS
        assert self.sched.avail.get("CPU", 0.0) >= -lent - EPS, (self.sched.avail, lent)
        for k, v in self.sched.avail.items():
            if k != "CPU":
                assert v >= -EPS, f"{k} over-committed: {self.sched.avail}"

    @invariant()
    def resources_are_conserved(self):
        """avail == total - what leases and actors hold (a blocked worker holds no CPU)."""
        expect = dict(self.total)
        for wid, res in self.lease.items():
            for k, v in res.items():
                if not (k == "CPU" and wid in self.blocked):
                    expect[k] = expect.get(k, 0.0) - v
        for k, v in self.actor_holdings().items():
            expect[k] = expect.get(k, 0.0) - v
        for k in set(expect) | set(self.sched.avail):
            assert math.isclose(self.sched.avail.get(k, 0.0), expect.get(k, 0.0), abs_tol=EPS), \
                (k, self.sched.avail, expect)

    @invariant()
    def gpus_are_never_shared(self):
        held = [g for gpus in self.lease_gpus.values() for g in gpus]
        held += [g for a in self.actors.values() if a.state != "DEAD" for g in a.gpus]
        everything = held + list(self.sched.res.free_gpus)
        assert sorted(everything) == list(range(int(self.total.get("GPU", 0)))), \
            (self.lease_gpus, self.sched.res.free_gpus)

    @invariant()
    def every_task_and_call_is_accounted_for_once(self):
        queued, mailboxes = self.queued_ids(), self.mailbox_ids()
        assert len(queued) == len(set(queued)) == self.sched.tasks.queued
        where: dict[bytes, list] = {tid: [] for tid in self.specs}
        inflight = [t for calls in self.inflight.values() for t in calls]
        for name, tids in (("queued", queued), ("running", self.running), ("done", self.done),
                           ("failed", self.failed), ("spilled", self.spilled),
                           ("on a lease", self.direct.values()), ("in a mailbox", mailboxes),
                           ("in flight", inflight)):
            for tid in tids:
                where[tid].append(name)
        bad = {tid: w for tid, w in where.items() if len(w) != 1}
        assert not bad, f"tasks or calls not in exactly one place: {bad}"
        assert self.sched.tasks.running == self.running
        for tid, n in self.runs.items():
            assert n <= self.allowed[tid]

    @invariant()
    def actors_match_the_model(self):
        for aid, a in self.actors.items():
            actor = self.sched.actor(aid)
            assert actor.worker == a.worker
            expect = "PENDING" if a.state == "SPILLED" else a.state
            assert actor.state.name == expect, (actor.state, a.state)
            forwarded = self.inflight.get(a.worker, []) if a.worker else []
            assert list(actor.inflight) == forwarded
            assert a.state != "DEAD" or not actor.mailbox

    @invariant()
    def the_pool_is_kept_full(self):
        """A dead worker is replaced: the node never has fewer task workers than its pool."""
        tasks = self.task_workers()
        assert len(tasks) >= self.pool, f"{len(tasks)} workers, pool of {self.pool}"
        assert len(tasks) <= self.sched.tasks.max_workers + len(self.killed & tasks)
