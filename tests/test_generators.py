"""Generator tasks and actor methods (Ray 2.x's streaming generators): a function or
method that yields returns an ObjectRefGenerator whose refs arrive as the items are
yielded; num_returns="dynamic" returns one ref to a DynamicObjectRefGenerator.
Expected results are Ray 2.60's on the same programs (checked side by side)."""
from __future__ import annotations

import asyncio
import os
import pickle

import numpy as np
import pytest
from helpers import T, poll

import zray
from zray.exceptions import (
    ActorDiedError,
    GetTimeoutError,
    RayTaskError,
    TaskCancelledError,
    WorkerCrashedError,
)


@zray.remote
def count(n):
    yield from range(n)


@zray.remote
def fails_after(n):
    yield from range(n)
    raise ValueError("boom")


@zray.remote
def waits_for(path, n):
    """Yields i, then waits for `path`-i to exist before the next one."""
    import time
    for i in range(n):
        yield i
        while not os.path.exists(f"{path}-{i}"):
            time.sleep(0.005)


def test_a_generator_task_returns_refs_of_its_items_in_order(shared):
    gen = count.remote(5)
    assert type(gen) is zray.ObjectRefGenerator
    refs = list(gen)
    assert all(type(r) is zray.ObjectRef for r in refs)
    assert zray.get(refs, timeout=T) == [0, 1, 2, 3, 4]
    assert zray.get(gen.completed(), timeout=T) is None
    assert gen.is_finished()
    with pytest.raises(StopIteration):
        next(gen)


def test_items_reach_the_caller_while_the_generator_still_runs(shared, tmp_path):
    gate = str(tmp_path / "gate")
    gen = waits_for.remote(gate, 3)
    for i in range(3):
        # Item i is there although the task waits for this caller before going on.
        assert zray.get(next(gen), timeout=T) == i
        open(f"{gate}-{i}", "w").close()
    with pytest.raises(StopIteration):
        next(gen)


def test_an_error_raised_mid_stream_is_the_item_after_the_last_yield(shared):
    gen = fails_after.remote(2)
    refs = list(gen)
    assert len(refs) == 3
    assert zray.get(refs[:2], timeout=T) == [0, 1]
    with pytest.raises(ValueError, match="boom") as info:
        zray.get(refs[2], timeout=T)
    assert isinstance(info.value, RayTaskError)
    assert zray.get(gen.completed(), timeout=T) is None   # (as Ray: the task ran)


def test_dynamic_returns_one_ref_to_the_refs_of_the_items(shared):
    @zray.remote(num_returns="dynamic")
    def dyn(n, fail):
        for i in range(n):
            yield i * 10
        if fail:
            raise KeyError("late")

    ref = dyn.remote(3, False)
    assert type(ref) is zray.ObjectRef
    value = zray.get(ref, timeout=T)
    assert type(value) is zray.DynamicObjectRefGenerator and len(value) == 3
    assert [zray.get(r, timeout=T) for r in value] == [0, 10, 20]
    items = list(zray.get(dyn.remote(1, True), timeout=T))
    assert zray.get(items[0], timeout=T) == 0
    with pytest.raises(KeyError):
        zray.get(items[1], timeout=T)


def test_wait_on_generators_and_next_ready(shared, tmp_path):
    gate = str(tmp_path / "gate")
    gen = waits_for.remote(gate, 2)
    ready, not_ready = zray.wait([gen], timeout=T)
    assert ready == [gen] and not_ready == []
    assert gen.next_ready()
    assert zray.get(next(gen), timeout=T) == 0
    ready, not_ready = zray.wait([gen], timeout=0.2)   # item 1 waits for the gate
    assert ready == [] and not_ready == [gen]
    assert not gen.next_ready()
    with pytest.raises(GetTimeoutError):
        gen._next_sync(timeout=0.1)
    open(f"{gate}-0", "w").close()
    assert zray.get(next(gen), timeout=T) == 1
    open(f"{gate}-1", "w").close()
    ready, _ = zray.wait([gen, zray.put(1)], num_returns=2, timeout=T)   # its end is ready too
    assert len(ready) == 2 and not gen.next_ready()
    assert list(gen) == []
    assert zray.get(gen) is gen   # as Ray's get


def test_async_for_over_a_generator(shared):
    async def main():
        return [await ref async for ref in count.remote(4)]
    assert asyncio.run(main()) == [0, 1, 2, 3]


@zray.remote(num_cpus=0)
class Producer:
    def __init__(self):
        self.n = 0

    def items(self, n):
        for i in range(n):
            self.n += 1
            yield (i, self.n)

    @zray.method(num_returns="dynamic")
    def dynamic_items(self, n):
        yield from range(n)

    def failing(self):
        yield "one"
        raise RuntimeError("actor boom")


@zray.remote(num_cpus=0)
class AsyncProducer:
    async def items(self, n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    def sync_items(self, n):
        yield from range(n)


@pytest.mark.parametrize("options", [{}, {"max_concurrency": 2}], ids=["sync", "threaded"])
def test_actor_generator_methods(shared, options):
    actor = Producer.options(**options).remote()
    # The first call may wait in the actor's mailbox at the node (items via the node);
    # the later ones go straight to it.
    first = actor.items.remote(3)
    assert type(first) is zray.ObjectRefGenerator
    assert zray.get(list(first), timeout=T) == [(0, 1), (1, 2), (2, 3)]
    assert zray.get(list(actor.items.remote(2)), timeout=T) == [(0, 4), (1, 5)]
    dyn = zray.get(actor.dynamic_items.remote(3), timeout=T)
    assert zray.get(list(dyn), timeout=T) == [0, 1, 2]
    refs = list(actor.failing.remote())
    assert zray.get(refs[0], timeout=T) == "one"
    with pytest.raises(RuntimeError, match="actor boom"):
        zray.get(refs[1], timeout=T)
    zray.kill(actor)


def test_async_actor_async_and_sync_generators(shared):
    actor = AsyncProducer.remote()
    assert zray.get(list(actor.items.remote(3)), timeout=T) == [0, 1, 2]
    assert zray.get(list(actor.sync_items.remote(2)), timeout=T) == [0, 1]
    zray.kill(actor)


def test_backpressure_pauses_the_generator(shared, tmp_path):
    @zray.remote(_generator_backpressure_num_objects=2)
    def tracked(path, n):
        for i in range(n):
            with open(path, "w") as f:
                f.write(str(i))
            yield i

    path = str(tmp_path / "progress")
    gen = tracked.remote(path, 10)

    def read():
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            return ""
    poll(lambda: read() == "1", what="two items made")
    # It has sent 2 items none of which was taken: it waits (it would be at 9 by now).
    _stays(read, "1", 0.5)
    assert zray.get(next(gen), timeout=T) == 0
    poll(lambda: read() == "2", what="one more item after one was taken")
    assert zray.get(list(gen), timeout=T) == list(range(1, 10))


def _stays(read, value, seconds):
    """Fail if read() gives anything but `value` within `seconds` (the claim that
    something does not happen needs a bounded wait)."""
    try:
        poll(lambda: read() != value, timeout=seconds)
    except AssertionError:
        return
    raise AssertionError(f"it moved on to {read()!r}")


def test_cancel_a_running_generator(shared, tmp_path):
    gate = str(tmp_path / "gate")
    gen = waits_for.remote(gate, 5)
    assert zray.get(next(gen), timeout=T) == 0
    zray.cancel(gen)
    with pytest.raises(TaskCancelledError):
        for ref in gen:
            zray.get(ref, timeout=T)
    assert list(gen) == []


def test_large_items_and_items_holding_refs(shared):
    @zray.remote
    def arrays(n):
        for i in range(n):
            yield np.full(300_000, i, dtype=np.int64)   # 2.4 MB: stored in /dev/shm

    @zray.remote
    def boxes(n):
        for i in range(n):
            yield [zray.put(i * 2)]

    got = [zray.get(r, timeout=T) for r in arrays.remote(4)]
    assert [int(a[0]) for a in got] == [0, 1, 2, 3] and all(a.sum() == a[0] * 300_000 for a in got)
    del got
    boxed = [zray.get(r, timeout=T) for r in boxes.remote(3)]
    assert zray.get([b[0] for b in boxed], timeout=T) == [0, 2, 4]


def test_a_dropped_generator_frees_its_items_and_the_task_ends(shared, tmp_path):
    @zray.remote
    def arrays(path):
        for _ in range(5):
            yield np.zeros(200_000)
        open(path, "w").close()

    done = str(tmp_path / "done")
    gen = arrays.remote(done)
    zray.get(next(gen), timeout=T)
    del gen
    poll(lambda: os.path.exists(done), what="the task's end")   # (no segment leaks: conftest)


def test_a_generator_retried_after_its_worker_died_sends_no_item_twice(shared, tmp_path):
    @zray.remote(max_retries=1)
    def dies_once(path):
        for i in range(4):
            if i == 2 and not os.path.exists(path):
                open(path, "w").close()
                os._exit(1)
            yield i

    assert zray.get(list(dies_once.remote(str(tmp_path / "died"))), timeout=T) == [0, 1, 2, 3]

    @zray.remote(max_retries=0)
    def dies_at_the_gate(gate):
        import time
        yield from range(2)
        while not os.path.exists(gate):
            time.sleep(0.005)
        os._exit(1)

    gen = dies_at_the_gate.remote(str(tmp_path / "gate"))
    assert zray.get([next(gen), next(gen)], timeout=T) == [0, 1]
    open(tmp_path / "gate", "w").close()
    with pytest.raises(WorkerCrashedError):
        zray.get(next(gen), timeout=T)
    assert list(gen) == []


def test_an_actor_that_dies_mid_stream_fails_the_next_item(shared, tmp_path):
    @zray.remote(num_cpus=0)
    class Dies:
        def items(self, gate):
            import time
            yield 1
            while not os.path.exists(gate):
                time.sleep(0.005)
            os._exit(1)

    gen = Dies.remote().items.remote(str(tmp_path / "gate"))
    assert zray.get(next(gen), timeout=T) == 1
    open(tmp_path / "gate", "w").close()
    with pytest.raises(ActorDiedError):
        zray.get(next(gen), timeout=T)
    assert list(gen) == []


def test_retry_exceptions_runs_the_generator_again(shared, tmp_path):
    @zray.remote(retry_exceptions=[OSError], max_retries=2)
    def flaky(path):
        yield "a"
        if not os.path.exists(path):
            open(path, "w").close()
            raise OSError("once")
        yield "b"

    assert zray.get(list(flaky.remote(str(tmp_path / "once"))), timeout=T) == ["a", "b"]


def test_a_task_consumes_another_generator(shared):
    @zray.remote
    def total(n):
        return sum(zray.get(ref) for ref in count.remote(n))

    assert zray.get(total.remote(10), timeout=T) == 45


def test_generator_options_and_misuse(shared):
    @zray.remote(num_returns=2)
    def two():
        yield 1
        yield 2
    assert zray.get(two.remote(), timeout=T) == [1, 2]
    with pytest.raises(ValueError, match="generator functions"):
        zray.remote(num_returns="streaming")(lambda: 1)
    with pytest.raises(ValueError, match="generator functions"):
        zray.remote(lambda: 1).options(num_returns="dynamic")
    with pytest.raises(ValueError, match="_generator_backpressure_num_objects"):
        count.options(_generator_backpressure_num_objects=0)
    with pytest.raises(ValueError, match="num_returns"):
        count.options(num_returns="lots")

    async def agen():
        yield 1
    with pytest.raises(TypeError, match="async generator"):
        zray.remote(agen)
    gen = count.remote(1)
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        pickle.dumps(gen)
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        echo_gen.remote(gen)
    assert zray.get(list(gen), timeout=T) == [0]


@zray.remote
def echo_gen(x):
    return x


def test_a_generator_method_called_as_streaming_but_returning_a_value(shared):
    @zray.remote(num_cpus=0)
    class Plain:
        def value(self):
            return 5

    actor = Plain.remote()
    refs = list(actor.value.options(num_returns="streaming").remote())
    with pytest.raises(TypeError, match="not a generator"):
        zray.get(refs[0], timeout=T)
    zray.kill(actor)
