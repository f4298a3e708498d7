"""get, wait, put and ObjectRef against Ray Core's semantics, on the module's cluster
(every test takes `shared`, even without a cluster use: the leak fixture would shut
zray down after a test without it, stopping the module's cluster)."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from helpers import echo, hold_until

import zray
from zray.exceptions import GetTimeoutError, RayTaskError


@zray.remote
def fail(msg):
    raise ValueError(msg)


@zray.remote
def nap(seconds, value=None):
    time.sleep(seconds)
    return value


def never_ready():
    """A ref that stays pending without taking a CPU: its task needs a resource no
    node has (the head keeps it queued until the cluster shuts down)."""
    return echo.options(resources={"zray_test_nowhere": 1}).remote(None)


# -- get -----------------------------------------------------------------------------

def test_get_single_list_tuple(shared):
    refs = [echo.remote(i) for i in range(20)]
    assert zray.get(refs, timeout=30) == list(range(20))
    assert zray.get(refs[3], timeout=30) == 3
    assert zray.get(tuple(refs[:3]), timeout=30) == [0, 1, 2]
    assert zray.get([], timeout=30) == []


def test_get_keeps_order_when_later_refs_finish_first(shared):
    slow, fast = nap.remote(0.5, "slow"), echo.remote("fast")
    assert zray.get([slow, fast], timeout=30) == ["slow", "fast"]


def test_get_raises_as_soon_as_one_failed(shared, tmp_path):
    release = tmp_path / "release"
    slow = hold_until.remote(str(release))
    try:
        bad = fail.remote("early")
        start = time.monotonic()
        with pytest.raises(ValueError, match="early") as info:
            zray.get([slow, bad], timeout=20)
        assert time.monotonic() - start < 10, "get waited for the slow task before raising"
        assert isinstance(info.value, RayTaskError)
        assert zray.wait([slow], timeout=0)[0] == [], "the slow task finished: the test proves nothing"
    finally:
        release.touch()
    assert zray.get(slow, timeout=30) == "released"


def test_get_timeout_is_a_timeout_error(shared):
    assert issubclass(GetTimeoutError, TimeoutError)
    ref = never_ready()
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        zray.get(ref, timeout=0.3)
    elapsed = time.monotonic() - start
    assert 0.25 <= elapsed < 5
    with pytest.raises(GetTimeoutError):
        zray.get([echo.remote(1), ref], timeout=0)


@pytest.mark.parametrize("bad", [5, "ref", None, {"a": 1}])
def test_get_rejects_non_refs(shared, bad):
    with pytest.raises((TypeError, ValueError)):
        zray.get(bad, timeout=5)


def test_get_rejects_list_with_non_ref(shared):
    with pytest.raises(TypeError, match="item 1"):
        zray.get([zray.put(1), 2], timeout=5)


@pytest.mark.parametrize("timeout", [-2, -0.5, "1"])   # (-1: no timeout, as in Ray)
def test_get_rejects_bad_timeout(shared, timeout):
    with pytest.raises(ValueError, match="timeout"):
        zray.get(zray.put(1), timeout=timeout)


# -- wait ----------------------------------------------------------------------------

def test_wait_keeps_input_order_and_caps_ready(shared):
    p1, r1, p2, r2, r3 = never_ready(), zray.put(1), never_ready(), zray.put(2), zray.put(3)
    refs = [p1, r1, p2, r2, r3]
    ready, not_ready = zray.wait(refs, num_returns=2, timeout=10)
    assert ready == [r1, r2]
    assert not_ready == [p1, p2, r3]
    ready, not_ready = zray.wait(refs, num_returns=3, timeout=10)
    assert ready == [r1, r2, r3]
    assert not_ready == [p1, p2]


def test_wait_default_returns_first_ready(shared):
    refs = [never_ready(), nap.remote(0.2, "x"), never_ready()]
    start = time.monotonic()
    ready, not_ready = zray.wait(refs, timeout=20)
    assert time.monotonic() - start < 10
    assert ready == [refs[1]] and not_ready == [refs[0], refs[2]]
    assert zray.get(ready[0], timeout=5) == "x"


def test_wait_timeout_returns_what_is_ready(shared):
    pending, done = never_ready(), echo.remote(7)
    zray.get(done, timeout=30)
    start = time.monotonic()
    ready, not_ready = zray.wait([pending, done], num_returns=2, timeout=0.3)
    elapsed = time.monotonic() - start
    assert ready == [done] and not_ready == [pending]
    assert 0.25 <= elapsed < 5


def test_wait_timeout_zero_does_not_block(shared):
    pending, done = never_ready(), zray.put("here")
    start = time.monotonic()
    ready, not_ready = zray.wait([pending, done], num_returns=2, timeout=0)
    assert time.monotonic() - start < 1
    assert ready == [done] and not_ready == [pending]
    ready, not_ready = zray.wait([pending], timeout=0)
    assert ready == [] and not_ready == [pending]


def test_wait_counts_failed_tasks_as_ready(shared):
    bad = fail.remote("x")
    ready, not_ready = zray.wait([bad], timeout=30)
    assert ready == [bad] and not_ready == []


def test_wait_rejects_bad_arguments(shared):
    r1, r2 = zray.put(1), zray.put(2)
    with pytest.raises(TypeError):
        zray.wait(r1)
    with pytest.raises(TypeError):
        zray.wait({r1, r2})
    with pytest.raises(ValueError, match="unique"):
        zray.wait([r1, r1])
    with pytest.raises(ValueError):
        zray.wait([r1, r2], num_returns=0)
    with pytest.raises(ValueError):
        zray.wait([r1, r2], num_returns=3)
    with pytest.raises(TypeError):
        zray.wait([r1, "r2"])
    with pytest.raises(ValueError, match="timeout"):
        zray.wait([r1], timeout=-1)


# -- put -----------------------------------------------------------------------------

def _point_class():
    # Defined in a function, so cloudpickle sends it by value: the workers cannot
    # import this test module (tests/ is on the driver's sys.path only).
    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __eq__(self, other):
            return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)
    return Point


Point = _point_class()


@pytest.mark.parametrize("value", [
    0, -1.5, "text", b"\x00bytes", None, True, (1, "a"), [1, [2, [3]]], {"k": {"n": [1, 2]}},
    {1, 2, 3}, Point(1, 2), 10**40, "x" * 300_000, b"\x01" * 300_000,
], ids=lambda v: type(v).__name__ + str(len(v) if isinstance(v, (str, bytes)) else ""))
def test_put_get_round_trip(shared, value):
    assert zray.get(zray.put(value), timeout=30) == value
    # And through a task, both as a resolved argument and as a return value.
    assert zray.get(echo.remote(zray.put(value)), timeout=30) == value


@pytest.mark.parametrize("shape,dtype", [((3,), np.int64), ((4, 5), np.float32),
                                          ((512, 512), np.float64), ((0,), np.uint8)])
def test_put_numpy(shared, shape, dtype):
    arr = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    out = zray.get(zray.put(arr), timeout=30)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    np.testing.assert_array_equal(zray.get(echo.remote(arr), timeout=30), arr)


def test_put_lambda_and_closure(shared):
    k = 10
    fn = zray.get(zray.put(lambda x: x + k), timeout=30)
    assert fn(1) == 11

    @zray.remote
    def apply(f, x):
        return f(x)

    assert zray.get(apply.remote(lambda x: x * k, 3), timeout=30) == 30


def test_put_object_ref_is_rejected(shared):
    ref = zray.put(1)
    with pytest.raises(TypeError, match="put"):
        zray.put(ref)
    # Wrapped in a list, it is allowed and comes back as a ref.
    inner = zray.get(zray.put([ref]), timeout=30)[0]
    assert inner == ref and zray.get(inner, timeout=30) == 1


def test_get_returns_a_fresh_copy(shared):
    ref = zray.put({"a": [1, 2]})
    first = zray.get(ref, timeout=30)
    first["a"].append(3)
    first["b"] = 0
    assert zray.get(ref, timeout=30) == {"a": [1, 2]}
    arr_ref = zray.put(np.zeros(4))
    arr = zray.get(arr_ref, timeout=30)
    if arr.flags.writeable:
        arr[0] = 99
    assert zray.get(arr_ref, timeout=30)[0] == 0


def test_put_unpicklable_is_a_type_error(shared):
    with pytest.raises(TypeError, match="put"):
        zray.put(threading.Lock())


# -- ObjectRef -----------------------------------------------------------------------

def test_object_ref_hash_eq_hex_repr(shared):
    a, b = zray.put(1), zray.put(1)
    assert a == a and a != b and a != a.hex()
    assert len({a, b, a}) == 2
    assert {a: "a", b: "b"}[a] == "a"
    h = a.hex()
    assert isinstance(h, str) and h and int(h, 16) >= 0 and h != b.hex()
    assert h in repr(a)
    # The same object met again (through a value) is equal and hashes the same.
    again = zray.get(zray.put([a]), timeout=30)[0]
    assert again is not a and again == a and hash(again) == hash(a)


def test_await_ref(shared):
    async def main():
        one = await echo.remote(1)
        many = await asyncio.gather(*[echo.remote(i) for i in range(5)])
        return one, many

    assert asyncio.run(asyncio.wait_for(main(), 30)) == (1, [0, 1, 2, 3, 4])


def test_await_failing_ref_raises(shared):
    async def main():
        return await fail.remote("awaited")

    with pytest.raises(ValueError, match="awaited"):
        asyncio.run(asyncio.wait_for(main(), 30))


def test_ref_future(shared):
    assert echo.remote(5).future().result(timeout=30) == 5
    assert zray.put("p").future().result(timeout=30) == "p"
    fut = fail.remote("via future").future()
    with pytest.raises(ValueError, match="via future") as info:
        fut.result(timeout=30)
    assert isinstance(info.value, RayTaskError)
