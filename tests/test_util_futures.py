"""Futures ergonomics: zray.util.as_completed and map_unordered (as Ray 2.60's, whose
results for the same programs these assert), ObjectRef.add_done_callback, and
asyncio.wait on refs (which Ray's refs do not support on Python 3.11)."""
from __future__ import annotations

import asyncio
import threading

import pytest
from gate import Gate

import zray
from zray.exceptions import GetTimeoutError
from zray.util import as_completed, map_unordered

T = 30


@zray.remote
def square(x):
    return x * x


def test_as_completed_yields_in_completion_order(shared):
    gate = Gate.remote()
    slow, fast = gate.wait.remote(), square.remote(3)
    it = as_completed([slow, fast], chunk_size=1)
    assert next(it) == 9               # the fast one first, while the slow one waits
    gate.release.remote()
    assert next(it) == "released"
    assert list(it) == []
    assert sorted(as_completed([square.remote(i) for i in range(4)])) == [0, 1, 4, 9]
    refs = list(as_completed([square.remote(2)], yield_obj_refs=True))
    assert type(refs[0]) is zray.ObjectRef and zray.get(refs[0]) == 4
    assert list(as_completed([])) == []


def test_as_completed_timeout_errors_and_arguments(shared):
    gate = Gate.remote()
    slow = gate.wait.remote()
    it = as_completed([square.remote(2), slow], chunk_size=1, timeout=0.3)
    assert next(it) == 4
    with pytest.raises(GetTimeoutError) as info:   # a TimeoutError, as concurrent.futures'
        next(it)
    assert isinstance(info.value, TimeoutError)
    gate.release.remote()
    with pytest.raises(ValueError, match="neg"):
        list(as_completed([zray.put(1), _fails.remote()], chunk_size=1))
    with pytest.raises(ValueError, match="chunk_size"):
        as_completed([slow], chunk_size=0)     # raised at the call, not at the first next()
    with pytest.raises(ValueError, match="instead of `num_returns`"):
        as_completed([slow], num_returns=1)
    with pytest.raises(ValueError, match="timeout"):
        as_completed([slow], timeout=-1)


@zray.remote
def _fails():
    raise ValueError("neg")


def test_map_unordered(shared):
    assert sorted(map_unordered(square, [3, 1, 2], chunk_size=1, backpressure_size=2)) == [1, 4, 9]
    assert sorted(map_unordered(square, range(5), backpressure_size=None)) == [0, 1, 4, 9, 16]
    with pytest.raises(ValueError, match="backpressure_size"):
        map_unordered(square, [1], backpressure_size=0)
    with pytest.raises(TypeError, match="remote function"):
        map_unordered(lambda x: x, [1])


def test_add_done_callback_runs_on_the_callback_thread(shared):
    gate = Gate.remote()
    seen: list = []
    done = threading.Event()

    def callback(ref):
        try:
            seen.append((threading.current_thread().name, ref, zray.get(ref, timeout=T)))
        except Exception as exc:
            seen.append(("error", ref, type(exc).__name__))
        if len(seen) == 3:
            done.set()

    pending = gate.wait.remote()
    pending.add_done_callback(callback)
    failed = _fails.remote()
    failed.add_done_callback(callback)
    assert done.wait(0) is False
    ready = zray.put(5)
    ready.add_done_callback(callback)        # already ready: it still runs, soon
    gate.release.remote()
    assert done.wait(T)
    by_ref = {ref: (thread, value) for thread, ref, value in seen}
    assert by_ref[ready] == (by_ref[ready][0], 5) and by_ref[ready][0].startswith("zray-callbacks")
    assert by_ref[pending][1] == "released"
    assert by_ref[failed] == ("error", "RayTaskError(ValueError)")
    with pytest.raises(TypeError, match="callable"):
        ready.add_done_callback(None)


def test_asyncio_wait_on_refs(shared):
    async def main():
        refs = [square.remote(2), square.remote(3)]
        done, pending = await asyncio.wait(refs, timeout=T)   # the refs themselves
        return sorted(zray.get(list(done))), pending

    values, pending = asyncio.run(main())
    assert values == [4, 9] and not pending


def test_asyncio_wait_first_completed_and_remove_callback(shared):
    gate = Gate.remote()
    slow, fast = gate.wait.remote(), square.remote(4)

    async def main():
        done, pending = await asyncio.wait([slow, fast], return_when=asyncio.FIRST_COMPLETED,
                                           timeout=T)
        first = (done, pending)
        failed = _fails.remote()
        done, _ = await asyncio.wait([failed, slow], return_when=asyncio.FIRST_EXCEPTION,
                                     timeout=T)
        return first, done, failed

    (done, pending), done2, failed = asyncio.run(main())
    assert done == {fast} and pending == {slow} and fast.done() and not slow.done()
    assert done2 == {failed} and isinstance(failed.exception(), ValueError)
    assert fast.exception() is None and not fast.cancelled()
    calls = []
    slow.add_done_callback(calls.append)
    slow.add_done_callback(calls.append)
    assert slow.remove_done_callback(calls.append) == 2
    seen = threading.Event()
    slow.add_done_callback(lambda ref: seen.set())
    gate.release.remote()
    assert seen.wait(T) and calls == []
