"""zray.util.queue: Queue, Empty, Full. The expected results are those Ray 2.60 gave
for the same program (tests/test_util_queue.py's calls, run on Ray side by side); zray
raises the plain Full/Empty where Ray raised them wrapped in a RayTaskError (both are
instances of Full/Empty), and clearer errors for bad arguments."""
from __future__ import annotations

import asyncio

import pytest

import zray
from zray.exceptions import ActorDiedError
from zray.util.queue import Empty, Full, Queue

T = 30


def test_put_get_sizes_and_nowait(shared):
    q = Queue(maxsize=2)
    q.put(1)
    q.put_nowait(2)
    assert (q.full(), q.empty(), q.size(), len(q), q.qsize()) == (True, False, 2, 2, 2)
    with pytest.raises(Full):
        q.put_nowait(3)
    with pytest.raises(Full, match=r"stayed full for 0\.1 s"):
        q.put(3, timeout=0.1)
    with pytest.raises(Full):
        q.put(3, block=False)
    with pytest.raises(ValueError, match="'timeout' must be a non-negative number"):
        q.put(3, timeout=-1)
    assert q.get() == 1 and q.get_nowait() == 2
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty, match=r"stayed empty for 0\.1 s"):
        q.get(timeout=0.1)
    with pytest.raises(Empty):
        q.get(block=False)
    assert q.empty() and not q.full()
    q.shutdown()


def test_batches(shared):
    q = Queue(maxsize=2)
    with pytest.raises(Full, match="Cannot add 3 items to queue of size 0 and maxsize 2"):
        q.put_nowait_batch([1, 2, 3])
    assert q.size() == 0               # all or nothing
    q.put_nowait_batch(x for x in [1, 2])   # any iterable (Ray needs a sized one)
    with pytest.raises(TypeError, match="must be an Iterable"):
        q.put_nowait_batch(5)
    with pytest.raises(Empty, match="Cannot get 3 items from queue of size 2"):
        q.get_nowait_batch(3)
    with pytest.raises(ValueError, match="nonnegative"):
        q.get_nowait_batch(-1)
    with pytest.raises(TypeError, match="must be an int"):
        q.get_nowait_batch("1")
    assert q.get_nowait_batch(2) == [1, 2]
    assert q.get_nowait_batch(0) == []
    q.shutdown(force=True)


def test_async_variants(shared):
    q = Queue()

    async def main():
        await q.put_async("a")
        first = await q.get_async()
        with pytest.raises(Empty):
            await q.get_async(block=False)
        with pytest.raises(Empty):
            await q.get_async(timeout=0.05)
        await q.put_async("b", block=False)
        return first, await q.get_async(timeout=T)

    assert asyncio.run(main()) == ("a", "b")
    q.shutdown()


@zray.remote
def producer(q, n):
    for i in range(n):
        q.put(i)
    return n


@zray.remote
def consumer(q, n):
    return [q.get(timeout=T) for _ in range(n)]


def test_shared_by_tasks_and_a_blocked_put_waits_for_room(shared):
    q = Queue()
    got = consumer.remote(q, 5)        # blocks in get until the producer puts
    assert zray.get(producer.remote(q, 5), timeout=T) == 5
    assert zray.get(got, timeout=T) == [0, 1, 2, 3, 4]
    small = Queue(maxsize=1)
    small.put("x")
    put = producer.remote(small, 2)    # its second put blocks: the queue is full
    assert zray.wait([put], timeout=0.2)[0] == []
    assert small.get(timeout=T) == "x" and small.get(timeout=T) == 0
    assert small.get(timeout=T) == 1 and zray.get(put, timeout=T) == 2
    q.shutdown()
    small.shutdown()


def test_unbounded_arguments_and_shutdown(shared):
    q = Queue(maxsize=-1)              # as Ray (asyncio.Queue): <= 0 is unbounded
    assert not q.full()
    q.put_nowait_batch(range(5))
    assert q.size() == 5
    actor = q.actor
    q.shutdown()
    q.shutdown()                       # idempotent
    with pytest.raises(RuntimeError, match="shut down"):
        q.size()
    with pytest.raises(ActorDiedError):
        zray.get(actor.qsize.remote(), timeout=T)
    with pytest.raises(TypeError, match="maxsize must be an int"):
        Queue(maxsize="3")             # Ray fails later, inside the actor
    with pytest.raises(TypeError, match="actor_options must be a dict"):
        Queue(actor_options=["num_cpus"])
    with pytest.raises(TypeError, match="timeout"):
        Queue().put(1, timeout="soon")


def test_shutdown_gracefully_or_by_kill_after_the_grace_period(shared):
    q = Queue()
    blocked = q.actor.get.remote(None)  # waits on the empty queue
    q.shutdown()                        # the actor exits (its calls run concurrently)
    with pytest.raises(ActorDiedError):
        zray.get(blocked, timeout=T)
    # One call at a time: the exit request waits behind the blocked get, so after the
    # grace period the actor is killed.
    q = Queue(actor_options={"max_concurrency": 1})
    blocked = q.actor.get.remote(None)
    q.shutdown(grace_period_s=0.2)
    with pytest.raises(ActorDiedError):
        zray.get(blocked, timeout=T)
    q = Queue()
    blocked = q.actor.get.remote(None)
    q.shutdown(force=True)
    with pytest.raises(ActorDiedError):
        zray.get(blocked, timeout=T)
