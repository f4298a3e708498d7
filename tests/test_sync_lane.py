"""The sync lane: the main thread sends the call it blocks on over a socket of its own
(zray/_runtime/sync.py). What it must keep: call order across threads, results that
arrive after get() gave up, and calls taken back when their actor or worker dies."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import zray
from zray import _runtime
from zray.exceptions import ActorDiedError, GetTimeoutError, WorkerCrashedError

T = 30


@zray.remote(num_cpus=0)
class Log:
    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)
        return len(self.items)

    def slow(self, seconds, value):
        time.sleep(seconds)
        return value

    def read(self):
        return self.items


@zray.remote
def plus_one(x):
    return x + 1


def lane_sockets() -> int:
    """Sockets the main thread's lane holds now (one per peer it called itself)."""
    return len(_runtime.current().sync.socks)


def test_sync_calls_take_the_lane(cluster):
    log = Log.remote()
    for i in range(20):
        assert zray.get(log.add.remote(i), timeout=T) == i + 1
    assert lane_sockets() == 1, "the main thread's sync calls go on its own socket"


def test_calls_from_two_threads_keep_their_order(cluster):
    """A call another thread made before this thread's call runs before it, although
    this thread's call may take its own socket."""
    log = Log.remote()
    zray.get(log.add.remote(("warm", 0)), timeout=T)
    made = threading.Event()
    go = threading.Event()
    rounds = 200

    def other():
        for i in range(rounds):
            go.wait(T)
            go.clear()
            log.add.remote(("other", i))
            made.set()

    t = threading.Thread(target=other)
    t.start()
    for i in range(rounds):
        go.set()
        assert made.wait(T)
        made.clear()
        zray.get(log.add.remote(("main", i)), timeout=T)
    t.join(T)
    items = zray.get(log.read.remote(), timeout=T)[1:]
    assert items == [(who, i) for i in range(rounds) for who in ("other", "main")]


def test_result_after_get_timed_out_still_arrives(cluster):
    log = Log.remote()
    zray.get(log.add.remote(0), timeout=T)
    ref = log.slow.remote(0.5, "late")
    with pytest.raises(GetTimeoutError):
        zray.get(ref, timeout=0.05)
    # The I/O thread took the socket over: a task depending on the ref gets its value
    # without this thread waiting on it again.
    dependent = plus_one.remote(zray.get(log.add.remote(1), timeout=T))
    assert zray.get(dependent, timeout=T) == 3
    assert zray.get(ref, timeout=T) == "late"
    assert zray.get(log.add.remote(2), timeout=T) == 3, "the lane is usable again"


def test_ctrl_c_during_a_sync_call(cluster):
    log = Log.remote()
    zray.get(log.add.remote(0), timeout=T)
    ref = log.slow.remote(0.5, "after ctrl-c")
    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        zray.get(ref, timeout=T)
    timer.join()
    assert zray.get(ref, timeout=T) == "after ctrl-c"


@zray.remote(num_cpus=0, max_restarts=1, max_task_retries=1)
class DiesOnce:
    def ready(self):
        return True

    def die_once(self, path):
        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(1)
        return os.getpid()


def warm(actor) -> None:
    """Calls until the lane knows the actor's address and sends on its own socket."""
    for _ in range(2):   # the first call finds out where the actor lives
        assert zray.get(actor.ready.remote(), timeout=T)
    assert lane_sockets() == 1


def test_actor_dying_under_a_sync_call_retries_it(cluster, tmp_path):
    actor = DiesOnce.remote()
    warm(actor)
    pid = zray.get(actor.die_once.remote(str(tmp_path / "marker")), timeout=T)
    assert pid != os.getpid()
    assert zray.get(actor.ready.remote(), timeout=T)


def test_actor_dying_under_a_sync_call_without_retries_fails(cluster, tmp_path):
    actor = DiesOnce.options(max_restarts=0, max_task_retries=0).remote()
    warm(actor)
    with pytest.raises(ActorDiedError):
        zray.get(actor.die_once.remote(str(tmp_path / "marker")), timeout=T)


def test_leased_worker_dying_under_a_sync_task_fails_or_retries(cluster, tmp_path):
    @zray.remote(max_retries=0)
    def crash():
        os._exit(1)

    @zray.remote(max_retries=1)
    def crash_once(path):
        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(1)
        return "retried"

    for _ in range(5):   # a lease for the shape, then the lane
        zray.get(plus_one.remote(1), timeout=T)
    with pytest.raises(WorkerCrashedError):
        zray.get(crash.remote(), timeout=T)
    for _ in range(5):
        zray.get(plus_one.remote(1), timeout=T)
    assert zray.get(crash_once.remote(str(tmp_path / "m")), timeout=T) == "retried"


def test_lane_keeps_a_bounded_number_of_sockets(cluster):
    from zray._config import CONFIG
    limit = CONFIG.sync_lane_sockets
    object.__setattr__(CONFIG, "sync_lane_sockets", 2)   # a frozen dataclass
    try:
        logs = [Log.remote() for _ in range(3)]
        for log in logs * 3:
            zray.get(log.add.remote(1), timeout=T)
        assert lane_sockets() == 2, "the least recently used socket is closed past the limit"
        assert [zray.get(log.read.remote(), timeout=T) for log in logs] == [[1] * 3] * 3
    finally:
        object.__setattr__(CONFIG, "sync_lane_sockets", limit)


def test_a_call_made_after_kill_is_not_sent_past_the_kill(cluster):
    """The kill is still in the outbox (the I/O thread is held up) when get() could take
    the call that follows it: it must not, or the call reaches the actor first."""
    from zray._runtime.transport import Op
    counter = Log.remote()
    for _ in range(2):
        zray.get(counter.add.remote(0), timeout=T)
    rt = _runtime.current()
    gate = threading.Event()
    barrier = rt.t.ops[Op.BARRIER]
    rt.t.ops[Op.BARRIER] = lambda event: (gate.wait(T), barrier(event))
    try:
        rt.t.post(Op.BARRIER, threading.Event())   # the I/O thread waits at the gate
        zray.kill(counter)
        ref = counter.add.remote(1)
        threading.Timer(0.3, gate.set).start()
        with pytest.raises(ActorDiedError):
            zray.get(ref, timeout=T)
    finally:
        gate.set()
        rt.t.ops[Op.BARRIER] = barrier
