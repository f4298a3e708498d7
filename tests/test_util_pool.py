"""zray.util.ActorPool (and zray.util being there after `import zray`). The expected
results are those Ray 2.60 gave for the same program (run side by side); where zray
differs on purpose, the test says so."""
from __future__ import annotations

import pytest
from gate import Gate

import zray
from zray.exceptions import RayTaskError
from zray.util import ActorPool

T = 30


@zray.remote
class Doubler:
    def double(self, v):
        return 2 * v

    def boom(self, v):
        raise ValueError(f"bad {v}")

    def wait_on(self, gate):
        return zray.get(gate.wait.remote(), timeout=T)


def double(a, v):
    return a.double.remote(v)


def test_util_is_there_after_import_zray():
    assert zray.util.ActorPool is ActorPool
    assert "util" in zray.__all__
    for name in ("ActorPool", "as_completed", "map_unordered", "list_named_actors", "state"):
        assert name in zray.util.__all__


def test_actor_pool_map_and_ordering_as_ray(shared):
    a1, a2 = Doubler.remote(), Doubler.remote()
    pool = ActorPool([a1, a2])
    assert list(pool.map(double, [1, 2, 3, 4])) == [2, 4, 6, 8]
    assert sorted(pool.map_unordered(double, [1, 2, 3, 4])) == [2, 4, 6, 8]
    # Ray 2.60: two submits take both actors; the third waits in the pool.
    pool.submit(double, 1)
    pool.submit(double, 2)
    assert pool.has_next() and not pool.has_free()
    pool.submit(double, 3)
    assert pool.pop_idle() is None
    assert [pool.get_next(), pool.get_next(), pool.get_next()] == [2, 4, 6]
    assert not pool.has_next()
    with pytest.raises(StopIteration, match="No more results to get"):
        pool.get_next()
    taken = pool.pop_idle()
    assert taken in (a1, a2) and pool.has_free()
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(a2 if taken == a1 else a1)
    pool.push(taken)
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(taken)


def test_actor_pool_timeouts_and_unordered(shared):
    gate = Gate.remote()
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    pool.submit(lambda a, g: a.wait_on.remote(g), gate)
    with pytest.raises(TimeoutError, match="Timed out waiting for result"):
        pool.get_next(timeout=0.05)
    assert pool.has_next()             # still pending: the call stays next
    with pytest.raises(TimeoutError, match="has been ignored"):
        pool.get_next(timeout=0.05, ignore_if_timedout=True)
    assert not pool.has_next() and pool.has_free()   # Ray: dropped, its actor is free again
    gate.release.remote()              # (though its call still runs: let it end)
    pool.submit(double, 5)
    assert pool.get_next_unordered(timeout=T) == 10
    # An out-of-order result passed the in-order position: get_next refuses (as Ray).
    gate2 = Gate.remote()
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    pool.submit(lambda a, g: a.wait_on.remote(g), gate2)
    pool.submit(double, 8)
    assert pool.get_next_unordered(timeout=T) == 16
    with pytest.raises(ValueError, match="not allowed to call get_next"):
        pool.get_next()
    gate2.release.remote()
    assert pool.get_next_unordered(timeout=T) == "released"


def test_actor_pool_errors(shared):
    pool = ActorPool([Doubler.remote()])
    pool.submit(lambda a, v: a.boom.remote(v), 7)
    with pytest.raises(ValueError, match="bad 7") as info:
        pool.get_next()
    assert isinstance(info.value, RayTaskError)
    assert pool.has_free()             # a task's error does not lose the actor (Ray too)
    # Differs from Ray on purpose: Ray's map over an empty pool returns [] silently.
    with pytest.raises(ValueError, match="no actors"):
        ActorPool([]).map(double, [1, 2])
    assert list(ActorPool([]).map(double, [])) == []
    with pytest.raises(TypeError, match="list of actor handles"):
        ActorPool(Doubler.remote())
    with pytest.raises(TypeError, match="actor class, not an actor"):
        ActorPool([Doubler])


def test_actor_pool_pending_values_go_to_a_pushed_actor(shared):
    pool = ActorPool([])
    pool.submit(double, 21)            # no actor yet: the value waits
    assert not pool.has_next() and not pool.has_free()
    pool.push(Doubler.remote())
    assert pool.get_next(timeout=T) == 42
