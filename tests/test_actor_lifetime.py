"""Actor lifetime (handles dropped, held elsewhere, detached), death and restarts,
exit_actor, and cancelling a queued actor call; process exit is polled with a deadline."""
from __future__ import annotations

import gc
import os
import threading
import time

import pytest
from conftest import pid_alive
from helpers import Counter, Holder, T, use_handle, wait_exit

import zray
from zray.exceptions import ActorDiedError, RayActorError, TaskCancelledError


# -- lifetime -------------------------------------------------------------------------
def test_actor_ends_when_last_handle_is_gone(cluster):
    c = Counter.remote()
    pid = zray.get(c.pid.remote(), timeout=T)
    del c
    gc.collect()
    assert wait_exit(pid), "an actor with no handle left must exit"


def test_dropped_handle_needs_no_cycle_collection(cluster):
    # With the cyclic GC off, a handle must be freed by refcounting alone (a worker
    # may never run the cyclic GC), also after its methods were used.
    c = Counter.remote()
    pid = zray.get(c.pid.remote(), timeout=T)
    assert zray.get(c.incr.remote(), timeout=T) == 1
    gc.disable()
    try:
        del c
        assert wait_exit(pid), "a dropped handle lingered until a cyclic GC"
    finally:
        gc.enable()


def test_queued_calls_finish_before_release(cluster):
    c = Counter.remote()
    pid = zray.get(c.pid.remote(), timeout=T)
    refs = [c.incr.remote() for _ in range(50)]
    del c
    gc.collect()
    assert zray.get(refs, timeout=T) == list(range(1, 51))
    assert wait_exit(pid)


def test_handle_held_by_other_actor_keeps_it_alive(cluster):
    c = Counter.remote()
    pid = zray.get(c.pid.remote(), timeout=T)
    holder = Holder.remote()
    zray.get(holder.hold.remote([c]), timeout=T)
    del c
    gc.collect()
    for i in range(1, 21):  # many round trips after the driver's release went out
        assert zray.get(holder.call_other.remote(1), timeout=T) == i
    assert zray.get(holder.other_pid.remote(), timeout=T) == pid
    assert pid_alive(pid)


def test_handle_held_by_task_keeps_it_alive(cluster):
    c = Counter.remote()
    pid = zray.get(c.pid.remote(), timeout=T)
    ref = use_handle.remote(c, 3)
    del c
    gc.collect()
    assert zray.get(ref, timeout=T) == 3
    assert wait_exit(pid), "the actor must end once the task held its last handle"


def test_detached_actor_survives_dropped_handle(cluster):
    d = Counter.options(name="detached", lifetime="detached").remote()
    assert zray.get(d.incr.remote(), timeout=T) == 1
    pid = zray.get(d.pid.remote(), timeout=T)
    del d
    gc.collect()
    # A non-detached one made at the same time is released: use it as the marker
    # that the driver's releases have been processed.
    marker = Counter.remote()
    mpid = zray.get(marker.pid.remote(), timeout=T)
    del marker
    gc.collect()
    assert wait_exit(mpid)
    assert pid_alive(pid)
    again = zray.get_actor("detached")
    assert zray.get(again.incr.remote(), timeout=T) == 2
    assert zray.get(again.pid.remote(), timeout=T) == pid


# -- death and restarts ---------------------------------------------------------------
def test_kill_ends_actor(cluster):
    c = Counter.remote()
    pid = zray.get(c.pid.remote(), timeout=T)
    zray.kill(c)
    with pytest.raises(ActorDiedError):
        zray.get(c.incr.remote(), timeout=T)
    assert wait_exit(pid)
    with pytest.raises(ActorDiedError):
        zray.get(c.incr.remote(), timeout=T)


def test_kill_fails_queued_calls(cluster):
    @zray.remote
    class Blocker:
        def block(self):
            threading.Event().wait(60)  # never set: only kill ends it

        def pid(self):
            return os.getpid()

    b = Blocker.remote()
    pid = zray.get(b.pid.remote(), timeout=T)
    running = b.block.remote()
    queued = [b.pid.remote() for _ in range(3)]
    zray.kill(b)
    for ref in [running] + queued:
        with pytest.raises(ActorDiedError):
            zray.get(ref, timeout=T)
    assert wait_exit(pid)


def test_kill_with_restart_brings_actor_back(cluster):
    c = Counter.options(max_restarts=1).remote()
    pid = zray.get(c.pid.remote(), timeout=T)
    assert zray.get(c.incr.remote(), timeout=T) == 1
    zray.kill(c, no_restart=False)
    assert wait_exit(pid)
    # Calls that raced with the kill may fail; once the restart is seen, calls answer.
    deadline = time.monotonic() + T
    while True:
        try:
            new_pid = zray.get(c.pid.remote(), timeout=T)
            break
        except RayActorError:
            assert time.monotonic() < deadline, "the actor never came back"
    assert new_pid != pid
    assert zray.get(c.incr.remote(), timeout=T) == 1, "a restarted actor starts from fresh state"


def test_process_death_without_restarts(cluster):
    c = Counter.options(max_restarts=0).remote()
    pid = zray.get(c.pid.remote(), timeout=T)
    with pytest.raises(ActorDiedError) as info:
        zray.get(c.die.remote(), timeout=T)
    assert isinstance(info.value, RayActorError)
    assert wait_exit(pid)
    with pytest.raises(ActorDiedError):
        zray.get(c.incr.remote(), timeout=T)


def test_process_death_with_restarts(cluster):
    c = Counter.options(max_restarts=2).remote()
    pids = [zray.get(c.pid.remote(), timeout=T)]
    for _ in range(2):
        zray.get(c.incr.remote(), timeout=T)
        with pytest.raises(RayActorError):
            zray.get(c.die.remote(), timeout=T)  # the in-flight call is not retried
        assert zray.get(c.value.remote(), timeout=T) == 0, "state must be fresh after a restart"
        pids.append(zray.get(c.pid.remote(), timeout=T))
    assert len(set(pids)) == 3
    with pytest.raises(ActorDiedError):
        zray.get(c.die.remote(), timeout=T)
    with pytest.raises(ActorDiedError):
        zray.get(c.pid.remote(), timeout=T)  # out of restarts: dead for good
    for pid in pids:
        assert wait_exit(pid)


def test_max_task_retries_reruns_inflight_call(cluster, tmp_path):
    @zray.remote(max_restarts=1, max_task_retries=1)
    class Flaky:
        def once(self, marker):
            if not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)  # dies the first time only
            return os.getpid()

        def pid(self):
            return os.getpid()

    f = Flaky.remote()
    pid = zray.get(f.pid.remote(), timeout=T)
    marker = str(tmp_path / "died-once")
    new_pid = zray.get(f.once.remote(marker), timeout=T)
    assert os.path.exists(marker)
    assert new_pid != pid
    assert not pid_alive(pid)


def test_exit_actor(cluster):
    c = Counter.remote()
    pid = zray.get(c.pid.remote(), timeout=T)
    bye = c.bye.remote()
    # Ray lets the exiting call itself fail (RayActorError); later calls fail for good.
    with pytest.raises(RayActorError):
        zray.get(bye, timeout=T)
    assert wait_exit(pid)
    with pytest.raises(ActorDiedError):
        zray.get(c.incr.remote(), timeout=T)


def test_exit_actor_outside_actor_is_error(cluster):
    with pytest.raises(TypeError):
        zray.actor.exit_actor()


def test_exit_async_actor(cluster):
    @zray.remote
    class AsyncBye:
        async def pid(self):
            return os.getpid()

        async def bye(self):
            zray.actor.exit_actor()

    a = AsyncBye.remote()
    pid = zray.get(a.pid.remote(), timeout=T)
    with pytest.raises(RayActorError):
        zray.get(a.bye.remote(), timeout=T)
    assert wait_exit(pid)
    with pytest.raises(ActorDiedError):
        zray.get(a.pid.remote(), timeout=T)


# -- cancel ---------------------------------------------------------------------------
def test_cancel_queued_actor_call(cluster, tmp_path):
    @zray.remote
    class Gate:
        def __init__(self):
            self.ran = []

        def block(self, path):
            # Blocks on a FIFO until the driver writes to it: an event, not a sleep.
            fd = os.open(path, os.O_RDONLY)
            try:
                return os.read(fd, 1)
            finally:
                os.close(fd)

        def mark(self, x):
            self.ran.append(x)
            return x

        def ran_(self):
            return list(self.ran)

    fifo = str(tmp_path / "gate")
    os.mkfifo(fifo)
    wfd = os.open(fifo, os.O_RDWR)  # holds a writer so the actor's open does not block
    try:
        g = Gate.remote()
        blocked = g.block.remote(fifo)
        queued = g.mark.remote("cancelled")
        zray.cancel(queued)  # travels to the actor on the same socket as the next call
        after = g.mark.remote("kept")
        os.write(wfd, b"x")
        assert zray.get(blocked, timeout=T) == b"x"
        assert zray.get(after, timeout=T) == "kept"
        ran = zray.get(g.ran_.remote(), timeout=T)
        if "cancelled" in ran:
            # The gate opened before the cancel reached the actor (cancel is
            # asynchronous, as in Ray): nothing to check in this run.
            pytest.skip("the cancel reached the actor after the call had started")
        with pytest.raises(TaskCancelledError):
            zray.get(queued, timeout=T)
        assert ran == ["kept"]
    finally:
        os.close(wfd)
