"""Faults on a real cluster: workers that die inside tasks, cancellation (queued,
running, forced), and refs whose owner died or whose task failed."""
from __future__ import annotations

import os
import signal
import time

import pytest
from conftest import pid_alive, wait_until
from helpers import TIMEOUT, Counter, assert_pool_works, plus_one

import zray
from zray.exceptions import (
    GetTimeoutError,
    LocalRayletDiedError,
    TaskCancelledError,
    WorkerCrashedError,
)


@zray.remote
def hold(dirname, name, release=None, timeout=30.0):
    """Marks that it started, then sleeps until `release` exists (or `timeout`)."""
    import os
    import time
    with open(os.path.join(dirname, name), "w") as f:
        f.write(str(os.getpid()))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if release is not None and os.path.exists(release):
            return name
        time.sleep(0.01 if release else timeout)
    return name


# -- workers that die ---------------------------------------------------------------------

def test_worker_death_without_retries_is_worker_crashed_error(cluster, tmp_path):
    @zray.remote(max_retries=0)
    def die():
        os._exit(1)

    with pytest.raises(WorkerCrashedError):
        zray.get(die.remote(), timeout=TIMEOUT)
    assert_pool_works(tmp_path)   # the dead worker was replaced


def test_worker_death_is_retried_until_success(cluster, tmp_path):
    @zray.remote(max_retries=2)
    def die_first_time(marker):
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return os.getpid()

    marker = str(tmp_path / "died-once")
    survivor = zray.get(die_first_time.remote(marker), timeout=TIMEOUT)
    assert os.path.exists(marker) and survivor != os.getpid()
    assert_pool_works(tmp_path)


@pytest.mark.parametrize("max_retries, attempts", [(0, 1), (1, 2), (3, 4), (None, 4)])
def test_retries_are_counted_exactly(cluster, tmp_path, max_retries, attempts):
    @zray.remote
    def always_die(dirname):
        open(os.path.join(dirname, str(os.getpid())), "w").close()
        os._exit(1)

    d = tmp_path / "attempts"
    d.mkdir()
    with pytest.raises(WorkerCrashedError):
        zray.get(always_die.options(max_retries=max_retries).remote(str(d)), timeout=TIMEOUT)
    assert len(os.listdir(d)) == attempts   # one attempt, then max_retries (None: 3) more
    assert_pool_works(tmp_path)


def test_a_dying_task_does_not_take_others_down(cluster, tmp_path):
    @zray.remote(max_retries=0)
    def die():
        os._exit(1)

    refs = [plus_one.remote(i) for i in range(100)]
    bad = [die.remote() for _ in range(3)]
    refs += [plus_one.remote(i) for i in range(100, 200)]
    assert zray.get(refs, timeout=TIMEOUT) == list(range(1, 201))
    for ref in bad:
        with pytest.raises(WorkerCrashedError):
            zray.get(ref, timeout=TIMEOUT)
    assert_pool_works(tmp_path)


# -- cancel ---------------------------------------------------------------------------------

def fill_cpus(tmp_path, n: int = 2):
    """n tasks that hold the node's n CPUs until release() is called."""
    marks = tmp_path / f"marks-{time.monotonic_ns()}"
    marks.mkdir()
    release = str(marks / "release")
    refs = [hold.remote(str(marks), f"blocker{i}", release) for i in range(n)]
    assert wait_until(lambda: sum(f.startswith("blocker") for f in os.listdir(marks)) == n)
    return refs, marks, lambda: open(release, "w").close()


def test_cancel_queued_task(cluster, tmp_path):
    blockers, marks, release = fill_cpus(tmp_path)
    target = hold.remote(str(marks), "target", None, 0)
    zray.cancel(target)
    t0 = time.monotonic()
    with pytest.raises(TaskCancelledError):
        zray.get(target, timeout=TIMEOUT)
    assert time.monotonic() - t0 < 5
    release()
    assert zray.get(blockers, timeout=TIMEOUT) == ["blocker0", "blocker1"]
    assert not os.path.exists(marks / "target"), "the cancelled task ran"
    assert_pool_works(tmp_path)


def test_cancel_running_task_interrupts_it(cluster, tmp_path):
    ref = hold.remote(str(tmp_path), "running", None, 30.0)   # time.sleep(30) inside
    assert wait_until(lambda: os.path.exists(tmp_path / "running"))
    worker = int((tmp_path / "running").read_text())
    t0 = time.monotonic()
    zray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        zray.get(ref, timeout=TIMEOUT)
    assert time.monotonic() - t0 < 5
    assert pid_alive(worker), "a cancel without force killed the worker"
    assert_pool_works(tmp_path)


def test_force_cancel_kills_the_worker(cluster, tmp_path):
    ref = hold.remote(str(tmp_path), "running", None, 30.0)
    assert wait_until(lambda: os.path.exists(tmp_path / "running"))
    worker = int((tmp_path / "running").read_text())
    t0 = time.monotonic()
    zray.cancel(ref, force=True)
    with pytest.raises(TaskCancelledError):
        zray.get(ref, timeout=TIMEOUT)
    assert time.monotonic() - t0 < 5
    assert wait_until(lambda: not pid_alive(worker)), "force=True left the worker running"
    assert_pool_works(tmp_path)


def test_cancel_of_finished_or_cancelled_task_is_harmless(cluster, tmp_path):
    ref = plus_one.remote(1)
    assert zray.get(ref, timeout=TIMEOUT) == 2
    zray.cancel(ref)
    zray.cancel(ref, force=True)
    assert zray.get(ref, timeout=TIMEOUT) == 2
    blockers, _marks, release = fill_cpus(tmp_path)
    target = plus_one.remote(2)
    zray.cancel(target)
    zray.cancel(target)
    zray.cancel(target, force=True)
    with pytest.raises(TaskCancelledError):
        zray.get(target, timeout=TIMEOUT)
    release()
    zray.get(blockers, timeout=TIMEOUT)
    assert_pool_works(tmp_path)


def lease_of_three(tmp_path):
    """On a 1-CPU node: [running, queued1, queued2] leased to its one worker in
    that order (they queue behind a blocker, and its end dispatches them at once)."""
    blockers, marks, release = fill_cpus(tmp_path, 1)
    go = str(marks / "go")
    first = hold.options(max_retries=0).remote(str(marks), "first", go, TIMEOUT)
    behind = [plus_one.options(max_retries=0).remote(i) for i in (10, 20)]
    release()
    zray.get(blockers, timeout=TIMEOUT)
    assert wait_until(lambda: os.path.exists(marks / "first"))
    return first, behind, go


def test_force_cancel_of_a_running_task_spares_the_tasks_leased_behind_it(tmp_path):
    zray.init(num_cpus=1)
    first, behind, _go = lease_of_three(tmp_path)
    zray.cancel(first, force=True)
    with pytest.raises(TaskCancelledError):
        zray.get(first, timeout=TIMEOUT)
    # They never started: they run elsewhere, and are not failed as crashed.
    assert zray.get(behind, timeout=TIMEOUT) == [11, 21]


def test_force_cancel_of_a_leased_task_not_started_spares_the_running_one(tmp_path):
    zray.init(num_cpus=1)
    first, behind, go = lease_of_three(tmp_path)
    zray.cancel(behind[0], force=True)
    zray.cluster_resources()   # a round trip through the node, which took the cancel before it
    open(go, "w").close()
    assert zray.get(first, timeout=TIMEOUT) == "first"   # not killed with the worker
    with pytest.raises(TaskCancelledError):
        zray.get(behind[0], timeout=TIMEOUT)
    assert zray.get(behind[1], timeout=TIMEOUT) == 21


# -- owners that die, borrowers of failed tasks ----------------------------------------------

def test_object_of_a_dead_owner_raises_owner_died(cluster):
    """A ref owned by a worker that died gives OwnerDiedError (an ObjectLostError)
    on get, never a hang: whether the fetch is sent before or after the death."""
    from zray.exceptions import ObjectLostError, OwnerDiedError

    @zray.remote(max_restarts=0)
    class Maker:
        def make(self):
            # Owned by this actor's process: an object in a list stays a ref.
            return [zray.put(b"x" * 10)]

        def make_pending(self):
            @zray.remote
            def slow():
                import time
                time.sleep(60)
            return [slow.remote()]     # owned here, never finished

        def pid(self):
            return os.getpid()

    m = Maker.remote()
    [ready_ref] = zray.get(m.make.remote(), timeout=30)
    assert zray.get(ready_ref, timeout=30) == b"x" * 10
    [pending] = zray.get(m.make_pending.remote(), timeout=30)
    ready, _ = zray.wait([pending], timeout=0.2)   # the fetch is out, the owner alive
    assert not ready
    zray.kill(m)
    with pytest.raises(OwnerDiedError) as info:
        zray.get(pending, timeout=30)
    assert isinstance(info.value, ObjectLostError)


def test_borrowed_ref_to_a_failed_task_raises_in_the_borrower(cluster):
    @zray.remote
    def fails():
        raise KeyError("nope")

    @zray.remote
    def reads(box):
        try:
            zray.get(box[0], timeout=30)
        except KeyError as exc:
            return f"raised {type(exc).__name__}"
        return "no error"

    ref = fails.remote()
    assert zray.get(reads.remote([ref]), timeout=30) == "raised RayTaskError(KeyError)"


# -- the driver's own node broker dies ------------------------------------------------------
def test_a_dead_node_broker_fails_the_drivers_gets_at_once(cluster, tmp_path):
    """Issue 9, defect 2: get() waited forever once the node broker was SIGKILLed."""
    rt = zray._runtime.current()
    ref = hold.remote(str(tmp_path), "long", None, 20.0)
    assert wait_until(lambda: os.path.exists(tmp_path / "long"), TIMEOUT)
    os.kill(rt.node_info["pid"], signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(LocalRayletDiedError, match="node broker"):
        zray.get(ref, timeout=TIMEOUT)
    with pytest.raises(LocalRayletDiedError):
        zray.get(plus_one.remote(1), timeout=TIMEOUT)   # and what it asks later
    assert time.monotonic() - started < 5


# -- the head broker dies -----------------------------------------------------------------
def test_what_keeps_working_when_the_head_broker_dies(cluster):
    """Issue 9, defect 2 (its second half): the head holds the control store; without it
    the node still runs tasks and actors (it schedules locally), and what needs the head
    fails with an error naming it after head_call's timeout, instead of hanging."""
    counter = Counter.remote()
    assert zray.get(counter.incr.remote(), timeout=TIMEOUT) == 1
    head = zray._init._cluster._procs[0]
    head.send_signal(signal.SIGKILL)
    head.wait(TIMEOUT)
    assert zray.get([plus_one.remote(i) for i in range(20)], timeout=TIMEOUT) == list(range(1, 21))
    assert zray.get(counter.incr.remote(), timeout=TIMEOUT) == 2
    fresh = Counter.remote()   # an unnamed actor is created by the node alone
    assert zray.get(fresh.incr.remote(), timeout=TIMEOUT) == 1
    started = time.monotonic()
    with pytest.raises(GetTimeoutError, match="head broker did not answer 'nodes'"):
        zray.nodes()
    assert time.monotonic() - started < 15
