"""Actor concurrency groups (Ray's): each group of a threaded actor runs at most its size
of calls at once on threads of its own, the default group max_concurrency; an async
actor's groups are semaphores; @method(concurrency_group=) and
.options(concurrency_group=) choose the group; unknown groups and bad sizes are named
errors; restarts, generators, exit_actor and local mode keep working."""
from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter

import pytest
from helpers import poll, run_driver

import zray
from zray.exceptions import RayActorError

T = 30


@zray.remote(concurrency_groups={"io": 2, "compute": 1, "probe": 1})
class Threaded:
    def __init__(self):
        self.lock = threading.Lock()
        self.running: Counter = Counter()
        self.peak: Counter = Counter()
        self.go = threading.Event()

    def _hold(self, group):
        with self.lock:
            self.running[group] += 1
            self.peak[group] = max(self.peak[group], self.running[group])
        self.go.wait(T)
        with self.lock:
            self.running[group] -= 1
        return threading.current_thread().name

    @zray.method(concurrency_group="io")
    def io(self):
        return self._hold("io")

    @zray.method(concurrency_group="compute")
    def compute(self):
        return self._hold("compute")

    def default(self):
        return self._hold("default")

    @zray.method(concurrency_group="probe")
    def status(self):
        with self.lock:
            return dict(self.running), dict(self.peak)

    @zray.method(concurrency_group="probe")
    def release(self):
        self.go.set()

    @zray.method(concurrency_group="io")
    def where(self):
        return (threading.current_thread().name,
                zray.get_runtime_context().get_task_function_name())

    @zray.method(concurrency_group="io")
    def items(self, n):
        yield from range(n)

    @zray.method(concurrency_group="compute")
    def die(self):
        os._exit(1)

    @zray.method(concurrency_group="compute")
    def leave(self):
        zray.actor.exit_actor()


def _fill_and_release(actor, calls, want):
    refs = [getattr(actor, m).remote() for m in calls]
    poll(lambda: zray.get(actor.status.remote(), timeout=T)[0] == want, timeout=T,
         what=f"running calls {want}")
    zray.get(actor.release.remote(), timeout=T)
    names = zray.get(refs, timeout=T)
    return names, zray.get(actor.status.remote(), timeout=T)[1]


def test_each_group_runs_apart_at_most_its_size(shared):
    a = Threaded.remote()
    names, peak = _fill_and_release(a, ["io"] * 3 + ["compute"] * 2 + ["default"] * 2,
                                    {"io": 2, "compute": 1, "default": 1})
    assert peak == {"io": 2, "compute": 1, "default": 1}
    assert {n.rsplit("_", 1)[0] for n in names} == {"zray-actor-io", "zray-actor-compute",
                                                    "zray-actor"}


def test_default_group_takes_max_concurrency(shared):
    a = Threaded.options(max_concurrency=3).remote()
    _names, peak = _fill_and_release(a, ["default"] * 4, {"default": 3})
    assert peak == {"default": 3}


def test_options_puts_a_call_in_a_group(shared):
    a = Threaded.remote()
    refs = [a.default.options(concurrency_group="io").remote() for _ in range(2)]
    poll(lambda: zray.get(a.status.remote(), timeout=T)[0] == {"default": 2}, timeout=T,
         what="two default() calls running in the io group")
    zray.get(a.release.remote(), timeout=T)
    assert all(n.startswith("zray-actor-io") for n in zray.get(refs, timeout=T))
    thread, fn_name = zray.get(a.where.remote(), timeout=T)
    assert thread.startswith("zray-actor-io") and fn_name.endswith("Threaded.where")
    assert list(zray.get(list(a.items.remote(3)), timeout=T)) == [0, 1, 2]


def test_unknown_groups_and_bad_sizes_are_named(shared):
    a = Threaded.remote()
    with pytest.raises(ValueError, match=r"concurrency group 'nope'.*compute, io, probe"):
        a.default.options(concurrency_group="nope")
    with pytest.raises(TypeError, match="concurrency_group must be a str"):
        a.default.options(concurrency_group=5)
    with pytest.raises(ValueError, match=r"not supported in '\.options\(\)'"):
        Threaded.options(concurrency_groups={"x": 1})
    with pytest.raises(ValueError, match="names concurrency group 'nope'"):
        @zray.remote
        class Undefined:
            @zray.method(concurrency_group="nope")
            def f(self):
                return 1
    for bad, kind in (({"io": 0}, ValueError), ({"io": "2"}, ValueError), ({1: 2}, ValueError),
                      ([("io", 1)], TypeError)):
        with pytest.raises(kind, match="concurrency"):
            zray.remote(concurrency_groups=bad)(type("Bad", (), {}))


def test_restart_and_exit_keep_the_groups(shared):
    a = Threaded.options(max_restarts=1).remote()
    with pytest.raises(RayActorError):
        zray.get(a.die.remote(), timeout=T)
    assert zray.get(a.where.remote(), timeout=T)[0].startswith("zray-actor-io")   # restarted
    _names, peak = _fill_and_release(a, ["io"] * 3, {"io": 2})
    assert peak == {"io": 2}
    with pytest.raises(RayActorError):
        zray.get(a.leave.remote(), timeout=T)
    with pytest.raises(RayActorError):
        zray.get(a.where.remote(), timeout=T)


@zray.remote(concurrency_groups={"io": 2, "probe": 1})
class Async:
    def __init__(self):
        self.running: Counter = Counter()
        self.peak: Counter = Counter()
        self.go = asyncio.Event()

    async def _hold(self, group):
        self.running[group] += 1
        self.peak[group] = max(self.peak[group], self.running[group])
        await self.go.wait()
        self.running[group] -= 1
        return group

    @zray.method(concurrency_group="io")
    async def io(self):
        return await self._hold("io")

    async def default(self):
        return await self._hold("default")

    @zray.method(concurrency_group="probe")
    async def status(self):
        return dict(self.running), dict(self.peak)

    @zray.method(concurrency_group="probe")
    async def release(self):
        self.go.set()


def test_async_groups_are_semaphores(shared):
    a = Async.options(max_concurrency=2).remote()
    names, peak = _fill_and_release(a, ["io"] * 4 + ["default"] * 3, {"io": 2, "default": 2})
    assert peak == {"io": 2, "default": 2} and sorted(names) == ["default"] * 3 + ["io"] * 4
    b = Async.remote()   # the default group of an async actor: 1000 at once
    _names, peak = _fill_and_release(b, ["default"] * 5, {"default": 5})
    assert peak == {"default": 5}


def test_local_mode_takes_a_class_with_groups(shared, tmp_path):
    proc = run_driver(tmp_path, """
        import threading, zray
        zray.init(local_mode=True, num_cpus=1, include_dashboard=False)
        @zray.remote(concurrency_groups={"io": 2})
        class A:
            def __init__(self, x):
                self.x = x
            @zray.method(concurrency_group="io")
            def get(self):
                return self.x
        a = A.remote(7)
        print(zray.get(a.get.remote()), zray.get(a.get.options(concurrency_group="io").remote()))
        zray.shutdown()
    """)
    assert proc.stdout.split() == ["7", "7"], proc.stdout
