"""The node's scheduler (zray.brokers._scheduling.LocalScheduler: tasks, leases and
actors), pure, with Hypothesis: a state machine feeds it the events a node broker
would, carries its actions out on a model of workers and clients, and checks after
every step that no task or call is lost or run twice, that one caller's calls reach
an actor in order, and that resources and GPU ids are never over-committed."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule
from scheduler_model import CALLERS, OWNER, ActorModel, SchedulerModel, res_of
from strategies import near_actor_specs, near_task_specs

from zray import _protocol as P
from zray.brokers import _scheduling as S
from zray.exceptions import ProtocolError


@settings(max_examples=150, deadline=None)
@given(near_task_specs(), st.booleans())
def test_a_task_spec_check_task_accepts_never_breaks_the_scheduler(spec, force):
    """What the node takes (check_task) the scheduler can handle through a task's
    whole life: queued, dispatched, its worker dead (retry or fail), cancelled."""
    try:
        P.check_task(spec)
    except ProtocolError:
        return
    spec[P.T_ACTOR] = None   # actor calls go elsewhere
    sched = S.LocalScheduler({"CPU": 2.0, "GPU": 1.0, "x": 1.0}, 1, 2, 4)
    (_, wid, _, _), = sched.start_pool()
    if any(a[0] == S.DISPATCH for a in sched.submit([spec]) + sched.worker_ready(wid, 0.0)):
        for a in sched.worker_died(wid):
            if a[0] == S.SPAWN:
                sched.worker_ready(a[1], 1.0)
    sched.cancel(spec[P.T_ID], force)
    sched.reap_idle(100.0, 1.0)
    for k, v in sched.avail.items():
        assert v <= sched.res.total.get(k, 0.0)


@settings(max_examples=150, deadline=None)
@given(near_actor_specs(), st.sampled_from([0, 1, 2]), st.booleans())
def test_an_actor_spec_check_actor_accepts_never_breaks_the_scheduler(spec, ready_state, restart):
    """What the node takes (check_actor) the scheduler can handle through an actor's
    life: placed, started, __init__ done or failed, its worker dead, restarted."""
    try:
        P.check_actor(spec)
    except ProtocolError:
        return
    sched = S.LocalScheduler({"CPU": 2.0, "GPU": 1.0, "x": 1.0}, 1, 2, 4)
    sched.start_pool()
    for _ in range(3):
        spawns = [a for a in sched.create_actor(spec) + sched._schedule() if a[0] == S.SPAWN]
        for _, wid, _, _ in spawns:
            sched.worker_ready(wid, 0.0)
            sched.actor_ready(wid, ready_state, "")
            sched.worker_died(wid)
    sched.kill_actor(spec[P.A_ID], not restart)
    sched.release_actor(spec[P.A_ID])
    for k, v in sched.avail.items():
        assert v <= sched.res.total.get(k, 0.0)


def _actor(aid: bytes, res: dict, restarts: int = 1) -> list:
    return P.actor_spec(aid, b"owner", b"cls", b"", res, restarts, 0, 1, None, "ns", False, False,
                        "Actor", False, None)


def test_killing_an_actor_that_never_started_keeps_it_waiting_for_its_resources():
    """Regression (found by the state machine): zray.kill(a, no_restart=False) of an
    actor still waiting for its resources, or spilled back because no resource here
    fits it, "restarted" it at once: a worker was started for it holding nothing,
    past the resources that kept it waiting (two 1-CPU actors ran on a 1-CPU node)."""
    sched = S.LocalScheduler({"CPU": 1.0}, 1, 1)
    sched.start_pool()
    first, waiting, spilled = b"a" * 16, b"b" * 16, b"c" * 16
    [(_, first_worker, _, _)] = sched.create_actor(_actor(first, {"CPU": 1.0}))
    assert sched.create_actor(_actor(waiting, {"CPU": 1.0})) == []   # pending: the CPU is taken
    assert sched.create_actor(_actor(spilled, {"GPU": 1.0}))[0][0] == S.SPILLBACK
    for aid in (waiting, spilled):
        assert sched.kill_actor(aid, False) == [(S.ACTOR_STATE, aid, "RESTARTING", {})]
        assert sched.actor(aid).state == S.AState.PENDING and sched.actor(aid).worker is None
        assert sched.actor(aid).restarts_left == 0          # a restart was charged
    assert sched.avail["CPU"] == 0.0
    # It starts, with its CPU, once the first actor is gone for good.
    sched.kill_actor(first, True)
    acts = sched.worker_died(first_worker)
    assert [a[2] for a in acts if a[0] == S.SPAWN] == [waiting] and sched.avail["CPU"] == 0.0
    # With no restart left, killing it before it started ends it.
    sched.kill_actor(spilled, False)
    assert sched.actor(spilled).state == S.AState.DEAD


def test_a_leased_worker_killed_for_its_client_gets_no_work_before_it_dies():
    """Regression (found by the state machine): UNLEASE(kill) (a force-cancel of the
    task on a leased worker) killed the worker behind the scheduler's back, so an
    UNLEASE its client sent before hearing of the death (the task's result came
    first) put the dying worker back in the pool, and queued tasks were dispatched
    to it: they died with it, charged a retry or failed with WorkerCrashedError."""
    sched = S.LocalScheduler({"CPU": 1.0}, 1, 1)
    [(_, wid, _, _)] = sched.start_pool()
    sched.worker_ready(wid, 0.0)
    assert sched.lease(b"client", {"CPU": 1.0}) == wid
    assert sched.unlease(wid, 1.0, kill=True) == [(S.KILL, wid)]
    task = P.task_spec(b"t" * 16, b"owner", b"f", b"", 1, {"CPU": 1.0}, 0, False, "task", None)
    assert sched.submit([task]) == []                       # waits: the CPU is still held
    assert sched.unlease(wid, 2.0) == []                     # the client's late give-back
    assert sched.leased_to(wid) == b"client"                 # told LEASE_LOST at its death
    acts = sched.worker_died(wid)
    assert [a[0] for a in acts] == [S.SPAWN] and sched.avail["CPU"] == 1.0
    assert task[P.T_RETRIES] == 0 and sched.tasks.queued == 1


# -- the local scheduler as a state machine --------------------------------------------

class SchedulerMachine(SchedulerModel):
    """The events a node broker feeds its scheduler, each a rule, with what must
    follow from it (the model checks the rest after every step)."""

    # -- tasks -------------------------------------------------------------------------
    # A few shapes, repeated, so that leases of several tasks are common; some shapes
    # never fit (CPU 5, GPU 3) and must be spilled back.
    SHAPES = ((1, 0, 0), (1, 0, 0), (0.5, 0, 0), (0, 0, 0), (1, 1, 0), (0, 0.5, 1), (2, 0, 0),
              (1, 0, 2), (5, 0, 0), (0, 3, 0))

    @rule(batches=st.lists(st.tuples(st.sampled_from(SHAPES), st.integers(1, 5)), min_size=1, max_size=3),
          retries=st.sampled_from([0, 1, 2, -1]))
    def submit(self, batches, retries):
        specs = [self.make_task(shape, retries) for shape, count in batches for _ in range(count)]
        self.apply(self.sched.submit(specs))

    @precondition(lambda self: self.starting)
    @rule(data=st.data())
    def worker_ready(self, data):
        self._ready(data.draw(st.sampled_from(sorted(self.starting))))

    @precondition(lambda self: self.ready)
    @rule(data=st.data())
    def duplicate_hello_is_ignored(self, data):
        wid = data.draw(st.sampled_from(sorted(self.ready)))
        assert self.apply(self.sched.worker_ready(wid, self.tick())) == []

    @precondition(lambda self: any(self.tasks_of.values()))
    @rule(data=st.data())
    def task_done(self, data):
        self._finish_first(data.draw(st.sampled_from(sorted(w for w, t in self.tasks_of.items() if t))))

    @precondition(lambda self: self.specs and self.alive)
    @rule(data=st.data())
    def stale_result_is_ignored(self, data):
        # A result for a task that is not running there (late, duplicated, or after a cancel).
        tid = data.draw(st.sampled_from(sorted(self.specs)))
        wid = data.draw(st.sampled_from(sorted(self.alive)))
        if self.running.get(tid) == wid or tid in self.inflight.get(wid, ()):
            return
        assert self.apply(self.sched.result(wid, tid, self.tick())) == []

    @precondition(lambda self: any(self.tasks_of.values()) or self.direct)
    @rule(data=st.data())
    def block(self, data):
        running = {w for w, t in self.tasks_of.items() if t} | set(self.direct)
        wid = data.draw(st.sampled_from(sorted(running)))
        if wid in self.blocked:
            return
        handed_back = self.tasks_of.get(wid, [])[1:]   # the ones it has not started
        if wid in self.tasks_of:
            self.tasks_of[wid] = self.tasks_of[wid][:1]
        for tid in handed_back:
            del self.running[tid]
            self.allowed[tid] += 1     # it never started: it may be given out again
        self.blocked.add(wid)
        self.lent.add(wid)
        self.apply(self.sched.blocked(wid, True, handed_back))
        for tid in handed_back:   # back in the queue, or already given to another worker
            assert tid in self.queued_ids() or (tid in self.running and self.running[tid] != wid)

    @precondition(lambda self: self.blocked)
    @rule(data=st.data())
    def unblock(self, data):
        wid = data.draw(st.sampled_from(sorted(self.blocked)))
        self.blocked.discard(wid)
        assert self.apply(self.sched.blocked(wid, False, [])) == []

    @precondition(lambda self: self.alive)
    @rule(data=st.data())
    def worker_died(self, data):
        self._die(data.draw(st.sampled_from(sorted(self.alive))))

    @precondition(lambda self: self.actor_of)
    @rule(data=st.data())
    def actor_worker_died(self, data):
        """An actor's process dies, most often one running calls (they are retried
        across the restart, in order, or fail)."""
        busy = sorted(w for w, calls in self.inflight.items() if calls)
        self._die(data.draw(st.sampled_from(busy or sorted(self.actor_of))))

    @precondition(lambda self: self.killed)
    @rule(data=st.data())
    def killed_worker_exits(self, data):
        self._die(data.draw(st.sampled_from(sorted(self.killed))))

    # -- leases ------------------------------------------------------------------------
    @rule(client=st.sampled_from(CALLERS), shape=st.sampled_from(SHAPES[:5]))
    def lease(self, client, shape):
        res = res_of(*shape)
        idle = [w for w in self.task_workers() & self.ready
                if w not in self.lease and w not in self.killed]
        may = bool(idle) and not self.sched.tasks.queued and self.sched.res.fits(res) \
            and not res.get("GPU")
        wid = self.sched.lease(client, res)
        assert (wid is not None) == may, (wid, idle, res, self.sched.avail)
        if wid is not None:
            assert wid in idle
            self.lease[wid], self.lease_gpus[wid], self.leased_to[wid] = res, [], client
            self.tasks_of[wid] = []
            assert self.sched.leased_to(wid) == client and wid in self.sched.leases_of(client)

    @precondition(lambda self: set(self.leased_to) - set(self.direct) - self.killed)
    @rule(data=st.data(), retries=st.sampled_from([0, 1, -1]))
    def task_on_leased_worker(self, data, retries):
        wid = data.draw(st.sampled_from(sorted(set(self.leased_to) - set(self.direct) - self.killed)))
        res = self.lease[wid]
        shape = (res.get("CPU", 0), res.get("GPU", 0), res.get("custom", 0))
        spec = self.make_task(shape, retries, self.leased_to[wid])
        self.direct[wid] = spec[P.T_ID]
        self.runs[spec[P.T_ID]] += 1

    @precondition(lambda self: self.direct)
    @rule(data=st.data())
    def leased_task_done(self, data):
        wid = data.draw(st.sampled_from(sorted(self.direct)))
        if wid in self.blocked:
            self.blocked.discard(wid)
            assert self.apply(self.sched.blocked(wid, False, [])) == []
        self.done.add(self.direct.pop(wid))

    @precondition(lambda self: set(self.direct) - self.killed)
    @rule(data=st.data())
    def force_cancel_leased_task(self, data):
        """UNLEASE(kill): the client force-cancels its task; the node kills the worker,
        which keeps its lease until its death is seen."""
        wid = data.draw(st.sampled_from(sorted(set(self.direct) - self.killed)))
        self.cancelled_direct.add(self.direct[wid])
        assert self.apply(self.sched.unlease(wid, self.tick(), kill=True)) == [(S.KILL, wid)]

    @precondition(lambda self: set(self.leased_to) - set(self.direct))
    @rule(data=st.data())
    def unlease(self, data):
        """The client gives its lease back (also after a kill it has not heard of yet)."""
        wid = data.draw(st.sampled_from(sorted(set(self.leased_to) - set(self.direct))))
        if wid in self.killed:
            assert self.apply(self.sched.unlease(wid, self.tick())) == []
            assert self.sched.leased_to(wid) == self.leased_to[wid]
            return
        self._lease_ends(wid)
        self.apply(self.sched.unlease(wid, self.tick()))
        assert self.sched.leased_to(wid) is None

    # -- cancel and reaping ------------------------------------------------------------
    @precondition(lambda self: set(self.specs) - set(self.calls))
    @rule(data=st.data(), force=st.booleans())
    def cancel(self, data, force):
        tid = data.draw(st.sampled_from(sorted(set(self.specs) - set(self.calls))))
        was_queued = tid in self.queued_ids()
        wid = self.running.get(tid)
        started = wid is not None and self.tasks_of[wid][0] == tid
        behind = []
        if force and started:
            # The worker is killed with its running task; the tasks leased behind it
            # never started and must go back to the queue (not fail with the worker).
            behind = self.tasks_of[wid][1:]
            self.tasks_of[wid] = [tid]
            for t in behind:
                del self.running[t]
                self.allowed[t] += 1
        retries = {t: self.specs[t][P.T_RETRIES] for t in behind}
        acts = self.apply(self.sched.cancel(tid, force))
        kinds = [a[0] for a in acts]
        if was_queued:
            assert kinds == [S.FAIL] and self.failed[tid] == S.CANCELLED
            assert tid not in self.queued_ids()
        elif force and started:
            assert kinds[:2] == [S.KILL, S.FAIL] and set(kinds[2:]) <= {S.DISPATCH, S.SPAWN}
            assert self.failed[tid] == S.CANCELLED and wid in self.killed
            for t in behind:
                assert t in self.queued_ids() or (t in self.running and self.running[t] != wid)
                assert self.specs[t][P.T_RETRIES] == retries[t], "a task that never ran lost a retry"
        elif force and wid is not None:
            # Leased but not started: it fails now, and the worker is told to skip it
            # (killing the worker would take the task it runs with it).
            assert kinds == [S.CANCEL, S.FAIL] and self.failed[tid] == S.CANCELLED, acts
            assert tid not in self.tasks_of[wid]
        elif wid is not None:
            # Running, not forced: the worker is asked to interrupt it.
            assert kinds == [S.CANCEL], acts
        else:
            assert acts == []

    @rule(wait=st.sampled_from([0.0, 1.0, 10.0]))
    def reap_idle(self, wait):
        self.now += wait
        self.apply(self.sched.reap_idle(self.tick(), 5.0))

    # -- actors ------------------------------------------------------------------------
    # (cpu, gpu, custom, default_cpu): the default actor needs 1 CPU to be placed and
    # holds none; some never fit here (GPU 3) and are spilled back.
    ACTOR_SHAPES = ((0, 0, 0, True), (0, 0, 0, True), (1, 0, 0, False), (0, 1, 0, False),
                    (0, 0, 1, False), (2, 0, 0, False), (0, 0, 0, False), (0, 3, 0, False))

    @rule(shape=st.sampled_from(ACTOR_SHAPES), restarts=st.sampled_from([0, 1, 2, -1]),
          task_retries=st.sampled_from([0, 1, 2, -1]), detached=st.booleans(),
          up_to=st.sampled_from(["created", "hello", "alive"]))
    def create_actor(self, shape, restarts, task_retries, detached, up_to):
        """A new actor; if placed at once, its worker may also say hello and finish
        __init__ in this step (most calls then find it alive)."""
        aid = self.new_id(b"a")
        res = res_of(*shape[:3])
        if shape[3]:
            res["_default_cpu"] = 1.0
        spec = P.actor_spec(aid, OWNER, b"cls", b"", res, restarts, task_retries, 1, None, "ns",
                            detached, False, "Actor", False, None)
        P.check_actor(spec)
        self.actors[aid] = ActorModel(spec)
        self.apply(self.sched.create_actor(spec))
        assert self.apply(self.sched.create_actor(spec)) == [], "created twice"
        wid = self.actors[aid].worker
        if wid is not None and up_to != "created":
            self._ready(wid)
            if up_to == "alive":
                self._init_done(wid, 1)

    @precondition(lambda self: self.actors)
    @rule(data=st.data(), callers=st.lists(st.sampled_from(CALLERS), min_size=1, max_size=4),
          unknown=st.booleans())
    def actor_calls(self, data, callers, unknown):
        """Callers call one actor (a few calls: their order per caller is checked)."""
        alive = [aid for aid in self.callable_actors() if self.actors[aid].state == "ALIVE"]
        aid = b"a-nobody" if unknown or not self.callable_actors() else \
            data.draw(st.sampled_from(alive or self.callable_actors()))
        for caller in callers:
            self._call(caller, aid)

    @precondition(lambda self: self.created)
    @rule(data=st.data(), state=st.sampled_from([1, 1, 0, 2]))
    def actor_init_done(self, data, state):
        self._init_done(data.draw(st.sampled_from(sorted(self.created))), state)

    @precondition(lambda self: any(self.inflight.values()))
    @rule(data=st.data())
    def call_done(self, data):
        wid = data.draw(st.sampled_from(sorted(w for w, c in self.inflight.items() if c)))
        calls = self.inflight[wid]
        # Calls may end out of order (max_concurrency, async actors); only their
        # forwarding order is promised.
        tid = calls.pop(data.draw(st.integers(0, len(calls) - 1)))
        self.done.add(tid)
        assert self.apply(self.sched.result(wid, tid, self.tick())) == []

    @precondition(lambda self: self.actors)
    @rule(data=st.data(), no_restart=st.booleans())
    def kill_actor(self, data, no_restart):
        aid = data.draw(st.sampled_from(sorted(self.actors)))
        a = self.actors[aid]
        was_dead, worker = a.state == "DEAD", a.worker
        if no_restart and not was_dead:
            a.no_restart = True
        restart = a.restarts_left > 0 and not a.no_restart
        mailbox = [c[P.T_ID] for c in self.sched.actor(aid).mailbox]
        acts = self.apply(self.sched.kill_actor(aid, no_restart))
        if was_dead:
            assert acts == []
        elif worker is not None:
            assert acts == [(S.KILL, worker)]
        elif restart:   # not started yet: it still waits for its resources, a restart charged
            a.restarts_left -= 1
            assert acts == [(S.ACTOR_STATE, aid, "RESTARTING", {})], acts
        else:
            self._expect_dead(aid, [], mailbox, acts)

    @precondition(lambda self: self.callable_actors())
    @rule(data=st.data(), sent_direct=st.booleans())
    def release_actor(self, data, sent_direct):
        """The owner's last handle is gone (sent_direct: it told the actor itself too)."""
        aid = data.draw(st.sampled_from(self.callable_actors()))
        a = self.actors[aid]
        state, detached = a.state, a.spec[P.A_DETACHED]
        mailbox = [c[P.T_ID] for c in self.sched.actor(aid).mailbox]
        if not detached and state != "DEAD":
            a.released, a.no_restart = ("direct" if sent_direct else "node"), True
            if sent_direct and state == "ALIVE":
                self.releasing.add(a.worker)
        acts = self.apply(self.sched.release_actor(aid, sent_direct))
        if detached or state == "DEAD":
            assert acts == []
        elif state in ("PENDING", "SPILLED"):
            self._expect_dead(aid, [], mailbox, acts)
        elif state == "ALIVE" and not sent_direct:
            assert acts == [(S.RELEASE, a.worker)]
        else:
            assert acts == []


SchedulerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_local_scheduler = SchedulerMachine.TestCase
# Passing takes a few seconds; shrinking a failure to a short example can take minutes.
test_local_scheduler.pytestmark = [pytest.mark.timeout(900)]


class ActorMachine(SchedulerMachine):
    """The same model, with fewer task and lease events, so that actors live long
    enough for calls to be in their mailboxes and in flight when they restart."""

    def _quiet(self, *args, **kwargs):  # a rule of SchedulerMachine, not one of this machine
        raise AssertionError("not a rule here")

    cancel = reap_idle = stale_result_is_ignored = duplicate_hello_is_ignored = _quiet
    lease = task_on_leased_worker = leased_task_done = force_cancel_leased_task = unlease = _quiet
    block = unblock = worker_died = _quiet


ActorMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_actors_in_the_local_scheduler = ActorMachine.TestCase
test_actors_in_the_local_scheduler.pytestmark = [pytest.mark.timeout(900)]
