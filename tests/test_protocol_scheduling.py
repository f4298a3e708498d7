"""The pure parts, with Hypothesis: the wire protocol's encode/decode, and the node's
local scheduler (zray.brokers._scheduling.LocalScheduler) as a state machine checked
against a model of what it may and may not do."""
from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

from zray import _protocol as P
from zray.brokers import _scheduling as S
from zray.exceptions import ProtocolError

# -- protocol -----------------------------------------------------------------------

_scalars = (st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 64 - 1)
            | st.floats(allow_nan=False) | st.text(max_size=20) | st.binary(max_size=40))
# Everything a field may hold: msgpack's data model (map keys that survive a round trip).
values = st.recursive(
    _scalars,
    lambda inner: (st.lists(inner, max_size=5)
                   | st.dictionaries(st.text(max_size=8) | st.integers(-1000, 1000) | st.binary(max_size=8),
                                     inner, max_size=5)),
    max_leaves=25)

message_types = st.sampled_from(sorted(P._ARITY))


@st.composite
def messages(draw):
    mtype = draw(message_types)
    return mtype, draw(st.lists(values, min_size=P._ARITY[mtype], max_size=P._ARITY[mtype]))


def test_every_message_type_is_named_and_numbered_once():
    assert set(P.NAMES) == set(P._ARITY)
    assert len(set(P.NAMES.values())) == len(P.NAMES)
    for number, name in P.NAMES.items():
        assert getattr(P, name) == number


@settings(max_examples=300, deadline=None)
@given(messages())
def test_round_trip(msg):
    mtype, fields = msg
    frame = P.encode(mtype, *fields)
    got_type, got_fields = P.decode(frame)
    assert got_type == mtype and type(got_type) is int
    assert got_fields == fields
    # Byte-identical re-encoding: bool stays bool, bytes stay bytes, str stays str.
    assert P.encode(got_type, *got_fields) == frame
    assert P.decode(memoryview(frame)) == (got_type, got_fields)


@pytest.mark.parametrize("mtype", sorted(P._ARITY), ids=lambda t: P.NAMES[t])
def test_wrong_arity_is_rejected(mtype):
    arity = P._ARITY[mtype]
    for n in {0, arity - 1, arity + 1} - {arity, -1}:
        with pytest.raises(ProtocolError, match="fields"):
            P.decode(P.encode(mtype, *([0] * n)))


@pytest.mark.parametrize("header", [
    [P.VERSION + 1, P.SUBMIT, []],            # a newer protocol
    [0, P.SUBMIT, []],
    ["1", P.SUBMIT, []],
    [P.VERSION, 99, 1],                        # unknown type
    [P.VERSION, -1],
    [P.VERSION, "3", []],
    [P.VERSION, 3.0, []],
    [P.VERSION, None, []],
    [P.VERSION],                               # too short
    [],
    {"v": 1},
    17,
    b"\x01\x03",
])
def test_bad_headers_are_rejected(header):
    with pytest.raises(ProtocolError):
        P.decode(msgpack.packb(header, use_bin_type=True))


@pytest.mark.parametrize("frame", [b"", b"\xc1", b"\x93\x01", b"\x93\x01\x03", b"\xdb\xff\xff\xff\xff",
                                   b"\xdd\xff\xff\xff\xff", b"\x92\x01\x03extra", b"\xa3\xff\xfe\xfd"])
def test_undecodable_frames_are_rejected(frame):
    with pytest.raises(ProtocolError):
        P.decode(frame)


def test_truncations_of_a_valid_frame_are_rejected():
    frame = P.encode(P.HELLO, "driver", 1234, b"job", {"namespace": "x", "log_to_driver": True})
    for n in range(len(frame)):
        with pytest.raises(ProtocolError):
            P.decode(frame[:n])


def _decode_or_protocol_error(frame) -> None:
    try:
        mtype, fields = P.decode(frame)
    except ProtocolError:
        return
    # Accepted: it must be a real message of the right shape.
    assert mtype in P._ARITY and len(fields) == P._ARITY[mtype]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_decode_of_random_bytes_raises_only_protocol_error(frame):
    _decode_or_protocol_error(frame)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, max_size=8) | values)
def test_decode_of_random_msgpack_raises_only_protocol_error(obj):
    _decode_or_protocol_error(msgpack.packb(obj, use_bin_type=True))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 3) | values, min_size=2, max_size=8))
def test_decode_of_near_valid_headers_raises_only_protocol_error(obj):
    obj[0] = P.VERSION if obj[0] in (0, 1, 2, 3) else obj[0]  # often the right version
    _decode_or_protocol_error(msgpack.packb(obj, use_bin_type=True))


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=60), st.data())
def test_corrupted_valid_frames_raise_only_protocol_error(noise, data):
    mtype, fields = data.draw(messages())
    frame = bytearray(P.encode(mtype, *fields))
    at = data.draw(st.integers(0, len(frame) - 1))
    frame[at:at + len(noise)] = noise
    _decode_or_protocol_error(bytes(frame))


_field = values | st.binary(min_size=16, max_size=16) | st.integers(-2, 3)
_amounts = st.dictionaries(st.sampled_from(["CPU", "GPU", "x"]) | st.text(max_size=2) | st.integers(0, 3),
                           st.floats() | st.integers(-2, 3) | _scalars, max_size=3)


@st.composite
def spec_like(draw, n: int, id_at: int, res_at: int):
    """A list of n random fields, with an id and a resource map where a spec has them."""
    spec = draw(st.lists(_field, min_size=n, max_size=n))
    spec[id_at] = draw(st.binary(min_size=16, max_size=16) | _field)
    spec[1] = draw(st.just(b"owner") | _field)
    spec[res_at] = draw(_amounts | _field)
    return spec


@settings(max_examples=300, deadline=None)
@given(st.lists(values, max_size=16) | values | spec_like(P.TASK_FIELDS, P.T_ID, P.T_RES)
       | spec_like(P.ACTOR_FIELDS, P.A_ID, P.A_RES))
def test_check_task_and_actor_raise_only_protocol_error(spec):
    for check in (P.check_task, P.check_actor):
        try:
            assert check(spec) is spec
        except ProtocolError:
            pass


@settings(max_examples=300, deadline=None)
@given(spec_like(P.TASK_FIELDS, P.T_ID, P.T_RES), st.booleans())
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
    for k, v in sched.res.avail.items():
        assert v <= sched.total.get(k, 0.0)


@settings(max_examples=300, deadline=None)
@given(spec_like(P.ACTOR_FIELDS, P.A_ID, P.A_RES), st.sampled_from([0, 1, 2]), st.booleans())
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
    for k, v in sched.res.avail.items():
        assert v <= sched.total.get(k, 0.0)



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

EPS = 1e-6
OWNER = b"D-owner"


def _res(cpu, gpu, custom) -> dict:
    res = {"CPU": cpu, "GPU": gpu, "custom": custom}
    return {k: float(v) for k, v in res.items() if v}


class SchedulerMachine(RuleBasedStateMachine):
    """Drives a LocalScheduler with the events a node broker feeds it, carries out its
    actions on a model of the workers, and checks that it never over-commits, never
    runs a task twice, and loses no task.

    The model of a task worker: a DISPATCH gives it a lease (one resource shape) and
    1..dispatch_batch tasks of that shape, which it runs in order, reporting each; when
    its running task blocks in get() it lends its CPU and hands back the tasks it has
    not started; when it dies, any task it has not reported may have run (the result
    of a finished one can die with it), so each is retried or failed."""

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
        self.pool = pool
        self.batch = batch
        self.now = 0.0
        self.next_task = 0
        self.specs: dict[bytes, list] = {}      # every task ever submitted
        self.alive: set[bytes] = set()          # spawned, not yet dead
        self.starting: set[bytes] = set()       # spawned, not yet ready
        self.ready: set[bytes] = set()          # said hello
        self.killed: set[bytes] = set()         # told to die, not dead yet
        self.lease: dict[bytes, dict] = {}      # worker -> resources it holds
        self.lease_gpus: dict[bytes, list] = {} # worker -> GPU ids it was given
        self.tasks_of: dict[bytes, list] = {}   # worker -> its tasks, in order (first: running)
        self.running: dict[bytes, bytes] = {}   # task -> worker, from DISPATCH actions
        self.blocked: set[bytes] = set()        # workers blocked in get()
        self.lent: set[bytes] = set()           # workers that blocked during their lease
        self.cancel_sent: set[bytes] = set()
        self.done: set[bytes] = set()
        self.failed: dict[bytes, str] = {}
        self.spilled: set[bytes] = set()
        self.apply(self.sched.start_pool())
        assert len(self.alive) == pool

    # -- carrying out actions ----------------------------------------------------------
    def apply(self, acts: list) -> list:
        for act in acts:
            kind = act[0]
            if kind == S.SPAWN:
                wid, actor = act[1], act[2]
                assert actor is None
                assert wid not in self.alive and wid not in self.ready, "worker id reused"
                self.alive.add(wid)
                self.starting.add(wid)
            elif kind == S.DISPATCH:
                self._dispatched(act[1], act[2])
            elif kind == S.KILL:
                assert act[1] in self.alive
                self.killed.add(act[1])
            elif kind == S.FAIL:
                spec, why = act[1], act[2]
                tid = spec[P.T_ID]
                assert tid not in self.failed and tid not in self.done and tid not in self.spilled
                if tid in self.running:  # only a forced cancel fails a task given to a worker
                    assert why == S.CANCELLED
                    wid = self.running.pop(tid)
                    self.tasks_of[wid].remove(tid)
                self.failed[tid] = why
            elif kind == S.SPILLBACK:
                for spec in act[1]:
                    tid = spec[P.T_ID]
                    assert any(v > self.total.get(k, 0.0) for k, v in spec[P.T_RES].items()), \
                        f"spilled a task that fits this node: {spec[P.T_RES]}"
                    assert tid not in self.spilled
                    self.spilled.add(tid)
            elif kind == S.CANCEL:
                wid, tid = act[1], act[2]
                assert self.running.get(tid) == wid
                self.cancel_sent.add(tid)
            else:
                raise AssertionError(f"unexpected action {act!r} from a task-only scheduler")
        return acts

    def _dispatched(self, wid: bytes, specs: list) -> None:
        assert wid in self.ready and wid in self.alive, "dispatch to a worker that is not up"
        assert wid not in self.killed, "dispatch to a worker told to die"
        assert wid not in self.lease and not self.tasks_of.get(wid), "dispatch to a busy worker"
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
            self.running[tid] = wid
        self.lease[wid] = res
        self.lease_gpus[wid] = gpus
        self.tasks_of[wid] = [spec[P.T_ID] for spec in specs]

    def _lease_ends(self, wid: bytes) -> None:
        self.lease.pop(wid, None)
        self.lease_gpus.pop(wid, None)
        self.tasks_of.pop(wid, None)
        self.blocked.discard(wid)
        self.lent.discard(wid)

    def queued_ids(self) -> list[bytes]:
        return [s[P.T_ID] for q in self.sched.tasks.queues.values() for s in q]

    def tick(self) -> float:
        self.now += 0.25
        return self.now

    # -- rules -------------------------------------------------------------------------
    # A few shapes, repeated, so that leases of several tasks are common; some shapes
    # never fit (CPU 5, GPU 3) and must be spilled back.
    SHAPES = [(1, 0, 0), (1, 0, 0), (0.5, 0, 0), (0, 0, 0), (1, 1, 0), (0, 0.5, 1), (2, 0, 0),
              (1, 0, 2), (5, 0, 0), (0, 3, 0)]

    @rule(batches=st.lists(st.tuples(st.sampled_from(SHAPES), st.integers(1, 5)), min_size=1, max_size=3),
          retries=st.sampled_from([0, 1, 2, -1]))
    def submit(self, batches, retries):
        specs = []
        for (cpu, gpu, custom), count in batches:
            for _ in range(count):
                self.next_task += 1
                tid = b"t%015d" % self.next_task
                spec = [None] * P.TASK_FIELDS
                spec[P.T_ID], spec[P.T_OWNER], spec[P.T_FUNC], spec[P.T_ARGS] = tid, OWNER, b"f", b""
                spec[P.T_NRET], spec[P.T_RES], spec[P.T_RETRIES] = 1, _res(cpu, gpu, custom), retries
                spec[P.T_RETRY_EXC], spec[P.T_NAME] = False, f"task{self.next_task}"
                P.check_task(spec)
                self.specs[tid] = spec
                specs.append(spec)
        self.apply(self.sched.submit(specs))

    @precondition(lambda self: self.starting)
    @rule(data=st.data())
    def worker_ready(self, data):
        wid = data.draw(st.sampled_from(sorted(self.starting)))
        self.starting.discard(wid)
        self.ready.add(wid)
        self.apply(self.sched.worker_ready(wid, self.tick()))

    @precondition(lambda self: self.ready)
    @rule(data=st.data())
    def duplicate_hello_is_ignored(self, data):
        wid = data.draw(st.sampled_from(sorted(self.ready)))
        assert self.apply(self.sched.worker_ready(wid, self.tick())) == []

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

    @precondition(lambda self: any(self.tasks_of.values()))
    @rule(data=st.data())
    def task_done(self, data):
        self._finish_first(data.draw(st.sampled_from(sorted(w for w, t in self.tasks_of.items() if t))))

    @precondition(lambda self: self.specs and self.alive)
    @rule(data=st.data())
    def stale_task_done_is_ignored(self, data):
        # A result for a task that is not running there (late, duplicated, or after a cancel).
        tid = data.draw(st.sampled_from(sorted(self.specs)))
        wid = data.draw(st.sampled_from(sorted(self.alive)))
        if self.running.get(tid) == wid:
            return
        assert self.apply(self.sched.result(wid, tid, self.tick())) == []

    @precondition(lambda self: any(self.tasks_of.values()))
    @rule(data=st.data())
    def block(self, data):
        wid = data.draw(st.sampled_from(sorted(w for w, t in self.tasks_of.items() if t)))
        if wid in self.blocked:
            return
        handed_back = self.tasks_of[wid][1:]   # the ones it has not started
        self.tasks_of[wid] = self.tasks_of[wid][:1]
        for tid in handed_back:
            del self.running[tid]
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

    def _die(self, wid: bytes) -> None:
        tids = self.tasks_of.get(wid, [])
        retries = {tid: self.specs[tid][P.T_RETRIES] for tid in tids}
        for tid in tids:
            del self.running[tid]
        self.alive.discard(wid)
        self.starting.discard(wid)
        self.ready.discard(wid)
        self.killed.discard(wid)
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
        assert self.apply(self.sched.worker_died(wid)) == []  # a second report is ignored

    @precondition(lambda self: self.killed)
    @rule(data=st.data())
    def killed_worker_exits(self, data):
        self._die(data.draw(st.sampled_from(sorted(self.killed))))

    @precondition(lambda self: self.specs)
    @rule(data=st.data(), force=st.booleans())
    def cancel(self, data, force):
        tid = data.draw(st.sampled_from(sorted(self.specs)))
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

    @rule()
    def drain(self):
        """Liveness: with every worker answering, every feasible task eventually runs."""
        for _ in range(10_000):
            if self.starting:
                wid = min(self.starting)
                self.starting.discard(wid)
                self.ready.add(wid)
                self.apply(self.sched.worker_ready(wid, self.tick()))
            elif self.killed:
                self._die(min(self.killed))
            elif any(self.tasks_of.values()):
                self._finish_first(min(w for w, t in self.tasks_of.items() if t))
            else:
                break
        else:
            raise AssertionError("the scheduler did not settle")
        assert self.queued_ids() == [], "feasible tasks stuck in the queue of an idle node"
        assert self.sched.tasks.queued == 0
        for k, v in self.total.items():
            assert math.isclose(self.sched.res.avail.get(k, 0.0), v, abs_tol=EPS), "resources leaked"

    # -- invariants --------------------------------------------------------------------
    @invariant()
    def resources_never_exceed_totals(self):
        for k, v in self.sched.res.avail.items():
            assert v <= self.total.get(k, 0.0) + EPS, f"avail {self.sched.res.avail} > total {self.total}"

    @invariant()
    def only_lent_cpu_is_overcommitted(self):
        """Available CPU goes below zero only by what blocked workers lent (and took back
        on unblocking); no other resource ever goes below zero."""
        lent = sum(self.lease[w].get("CPU", 0.0) for w in self.lent)
        blocked_now = sum(self.lease[w].get("CPU", 0.0) for w in self.blocked)
        assert blocked_now <= lent + EPS
        assert self.sched.res.avail.get("CPU", 0.0) >= -lent - EPS, (self.sched.res.avail, lent)
        for k, v in self.sched.res.avail.items():
            if k != "CPU":
                assert v >= -EPS, f"{k} over-committed: {self.sched.res.avail}"

    @invariant()
    def resources_are_conserved(self):
        """avail == total - what the leases hold (a blocked worker holds no CPU)."""
        expect = dict(self.total)
        for wid, res in self.lease.items():
            for k, v in res.items():
                if k == "CPU" and wid in self.blocked:
                    continue
                expect[k] = expect.get(k, 0.0) - v
        for k in set(expect) | set(self.sched.res.avail):
            assert math.isclose(self.sched.res.avail.get(k, 0.0), expect.get(k, 0.0), abs_tol=EPS), \
                (k, self.sched.res.avail, expect)

    @invariant()
    def gpus_are_never_shared(self):
        held = [g for gpus in self.lease_gpus.values() for g in gpus]
        everything = held + list(self.sched.res.free_gpus)
        assert sorted(everything) == list(range(int(self.total.get("GPU", 0)))), \
            (self.lease_gpus, self.sched.res.free_gpus)

    @invariant()
    def every_task_is_accounted_for_once(self):
        queued = self.queued_ids()
        assert len(queued) == len(set(queued)) == self.sched.tasks.queued
        where: dict[bytes, list] = {tid: [] for tid in self.specs}
        for name, tids in (("queued", queued), ("running", self.running), ("done", self.done),
                           ("failed", self.failed), ("spilled", self.spilled)):
            for tid in tids:
                where[tid].append(name)
        bad = {tid: w for tid, w in where.items() if len(w) != 1}
        assert not bad, f"tasks not in exactly one place: {bad}"
        assert self.sched.tasks.running == self.running

    @invariant()
    def the_pool_is_kept_full(self):
        """A dead worker is replaced: the node never has fewer task workers than its pool."""
        assert len(self.alive) >= self.pool, f"{len(self.alive)} workers, pool of {self.pool}"
        assert len(self.alive) <= self.sched.tasks.max_workers + len(self.killed)


SchedulerMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_local_scheduler = SchedulerMachine.TestCase
