"""Actors on a real embedded cluster: creation, ordering, handles, options and async
actors (DESIGN.md sections 1 and 4). No sleeps stand in for events: concurrency is
proven with barriers and events that only release when the calls really overlap."""
from __future__ import annotations

import asyncio
import os
import pickle
import threading
import time

import pytest
from helpers import Counter, Holder, T, use_handle, wait_exit

import zray
from zray.exceptions import ActorDiedError, RayActorError, RayTaskError


@zray.remote
class SlowInit:
    def __init__(self, seconds):
        time.sleep(seconds)  # the workload: creation must not wait for it

    def pid(self):
        return os.getpid()


@zray.remote
class BadInit:
    def __init__(self):
        raise ZeroDivisionError("the init failed on purpose 1234")

    def ping(self):
        return "pong"


@zray.remote
def double(x):
    return 2 * x


# -- creation, ordering, handles ------------------------------------------------------
def test_creation_returns_at_once(cluster):
    start = time.monotonic()
    h = SlowInit.remote(1.0)
    assert time.monotonic() - start < 0.5, "creating an actor must not wait for its __init__"
    assert isinstance(h, zray.ActorHandle)
    assert isinstance(zray.get(h.pid.remote(), timeout=T), int)


def test_init_error_surfaces_as_actor_died(cluster):
    h = BadInit.remote()
    with pytest.raises(ActorDiedError) as info:
        zray.get(h.ping.remote(), timeout=T)
    assert isinstance(info.value, RayActorError)
    assert "ZeroDivisionError" in str(info.value)
    assert "the init failed on purpose 1234" in str(info.value)
    # and it stays dead
    with pytest.raises(ActorDiedError):
        zray.get(h.ping.remote(), timeout=T)


def test_calls_from_one_caller_run_in_order(cluster):
    c = Counter.remote()
    for i in range(500):
        c.append.remote(i)
    assert zray.get(c.items_.remote(), timeout=T) == list(range(500))


def test_calls_return_values_in_order(cluster):
    c = Counter.remote()
    refs = [c.incr.remote() for _ in range(200)]
    assert zray.get(refs, timeout=T) == list(range(1, 201))


def test_method_error_is_task_error_and_actor_lives_on(cluster):
    @zray.remote
    class Raiser:
        def boom(self):
            raise KeyError("nope")

        def ok(self):
            return 1

    r = Raiser.remote()
    with pytest.raises(KeyError) as info:
        zray.get(r.boom.remote(), timeout=T)
    assert isinstance(info.value, RayTaskError)
    assert zray.get(r.ok.remote(), timeout=T) == 1


def test_handle_passed_to_task(cluster):
    c = Counter.remote()
    out = zray.get([use_handle.remote(c, 1) for _ in range(5)], timeout=T)
    assert sorted(out) == [1, 2, 3, 4, 5]
    assert zray.get(c.value.remote(), timeout=T) == 5


def test_handle_passed_to_actor(cluster):
    c = Counter.remote()
    h1 = Holder.remote(c)          # via __init__
    h2 = Holder.remote()
    zray.get(h2.hold.remote([c]), timeout=T)  # via a method, nested in a list
    assert zray.get(h1.call_other.remote(10), timeout=T) == 10
    assert zray.get(h2.call_other.remote(5), timeout=T) == 15
    assert zray.get(c.value.remote(), timeout=T) == 15


def test_handle_pickles(cluster):
    c = Counter.remote()
    copy = pickle.loads(pickle.dumps(c))
    assert copy == c and hash(copy) == hash(c)
    assert zray.get(copy.incr.remote(7), timeout=T) == 7
    assert zray.get(c.value.remote(), timeout=T) == 7
    assert "Counter" in repr(copy)


def test_direct_call_and_instantiation_raise_type_error(cluster):
    c = Counter.remote()
    with pytest.raises(TypeError, match=r"\.remote\(\)"):
        c.incr()
    with pytest.raises(TypeError, match=r"\.remote\(\)"):
        Counter()


def test_unknown_method_is_attribute_error(cluster):
    c = Counter.remote()
    with pytest.raises(AttributeError, match="no_such_method"):
        c.no_such_method.remote()


# -- options --------------------------------------------------------------------------
def test_threaded_actor_runs_calls_concurrently(cluster):
    @zray.remote(max_concurrency=4)
    class Threaded:
        def __init__(self):
            self.barrier = threading.Barrier(4, timeout=10)

        def meet(self):
            # Passes only if 4 calls wait here at the same time.
            return self.barrier.wait(), threading.get_ident()

    t = Threaded.remote()
    out = zray.get([t.meet.remote() for _ in range(4)], timeout=T)
    assert sorted(i for i, _ in out) == [0, 1, 2, 3]
    assert len({tid for _, tid in out}) == 4


def test_default_actor_runs_one_call_at_a_time(cluster):
    @zray.remote
    class Serial:
        def __init__(self):
            self.active = 0
            self.peak = 0

        def work(self):
            self.active += 1
            self.peak = max(self.peak, self.active)
            time.sleep(0.002)  # workload, widens the window an overlap would show in
            self.active -= 1

        def peak_(self):
            return self.peak

    s = Serial.remote()
    zray.get([s.work.remote() for _ in range(20)], timeout=T)
    assert zray.get(s.peak_.remote(), timeout=T) == 1


@zray.remote
class AsyncActor:
    def __init__(self):
        self.arrived = 0
        self.all_in = asyncio.Event()

    async def gather(self, n):
        # Returns only once n calls are inside this method at the same time.
        self.arrived += 1
        if self.arrived == n:
            self.all_in.set()
        await asyncio.wait_for(self.all_in.wait(), 10)
        return id(asyncio.get_running_loop()), threading.get_ident()

    async def await_task(self, x):
        return await double.remote(x)

    async def await_nested(self, refs):
        return await refs[0]

    def sync_method(self):
        return "sync"


def test_async_actor_runs_calls_concurrently_on_one_loop(cluster):
    a = AsyncActor.remote()
    n = 50
    out = zray.get([a.gather.remote(n) for _ in range(n)], timeout=T)
    assert len(set(out)) == 1, "every call must run on the actor's one event loop thread"


def test_async_actor_awaits_object_refs(cluster):
    a = AsyncActor.remote()
    assert zray.get(a.await_task.remote(21), timeout=T) == 42
    assert zray.get(a.await_nested.remote([double.remote(5)]), timeout=T) == 10
    assert zray.get(a.sync_method.remote(), timeout=T) == "sync"


def test_method_num_returns(cluster):
    @zray.remote
    class Multi:
        @zray.method(num_returns=2)
        def pair(self, x):
            return x, x + 1

        def one(self):
            return "one"

    m = Multi.remote()
    refs = m.pair.remote(1)
    assert isinstance(refs, list) and len(refs) == 2
    assert zray.get(refs, timeout=T) == [1, 2]
    a, b = m.pair.remote(10)
    assert zray.get(b, timeout=T) == 11 and zray.get(a, timeout=T) == 10
    assert zray.get(m.one.remote(), timeout=T) == "one"


def test_zero_cpu_actors_do_not_hold_cpu(cluster):
    # A 2-CPU actor holds the whole node while it lives: any actor still placed
    # after it must need no CPU at all.
    hog = Counter.options(num_cpus=2).remote()
    assert zray.get(hog.value.remote(), timeout=T) == 0
    actors = [Counter.options(num_cpus=0).remote(i) for i in range(5)]
    assert zray.get([a.incr.remote() for a in actors], timeout=T) == [1, 2, 3, 4, 5]
    pids = zray.get([a.pid.remote() for a in actors], timeout=T)
    assert len(set(pids)) == 5


def test_default_actor_needs_one_cpu_to_be_placed(cluster):
    hog = Counter.options(num_cpus=2).remote()
    hog_pid = zray.get(hog.pid.remote(), timeout=T)
    waiting = Counter.remote()
    ref = waiting.incr.remote()
    ready, _ = zray.wait([ref], timeout=1.0)
    assert not ready, "a default actor was placed with no CPU free"
    zray.kill(hog)
    assert wait_exit(hog_pid)
    assert zray.get(ref, timeout=T) == 1


def test_default_actors_hold_no_cpu_once_placed(cluster):
    # Ray's default: 1 CPU to be placed, 0 while alive; 5 fit on 2 CPUs, and tasks still run.
    actors = [Counter.remote() for _ in range(5)]
    assert zray.get([a.incr.remote() for a in actors], timeout=T) == [1] * 5
    assert zray.get([double.remote(i) for i in range(4)], timeout=T) == [0, 2, 4, 6]


def test_sync_actor_method_joining_a_thread_that_calls_get(cluster):
    """A sync actor serves its callers on the thread running its calls; a method whose
    helper thread calls get() (and is joined) must still complete."""
    import threading

    @zray.remote
    def square(x):
        return x * x

    @zray.remote
    class Joiner:
        def run(self, n):
            out = []

            def helper():
                out.append(zray.get([square.remote(i) for i in range(n)], timeout=T))

            t = threading.Thread(target=helper)
            t.start()
            t.join(T)
            return out[0] if out else None

    j = Joiner.remote()
    assert zray.get(j.run.remote(5), timeout=T) == [0, 1, 4, 9, 16]
    assert zray.get([j.run.remote(3) for _ in range(3)], timeout=T) == [[0, 1, 4]] * 3
