"""zray.init(local_mode=True): tasks and actor calls run in the driver, at .remote(), one
at a time; errors surface at get() as RayTaskError; prints and breakpoints work.
(Ray 2.60 refuses local_mode: these are the semantics of Ray's older local mode.)"""
from __future__ import annotations

import asyncio
import os
import sys

import pytest
from conftest import leftovers, wait_gone, zray_pids
from helpers import run_driver

import zray
from zray.exceptions import ActorDiedError, RayTaskError

pytestmark = pytest.mark.module_cluster
T = 30
RAN: list = []   # what the tasks did, seen by the driver at once (they run here)


@pytest.fixture(scope="module")
def local():
    before_pids, before_files = zray_pids(), leftovers()
    zray.init(num_cpus=1, local_mode=True, include_dashboard=False)
    yield
    zray.shutdown()
    pids, files = wait_gone(before_pids, before_files)
    assert not pids and not files, f"module leaked {pids} {files}"


@zray.remote
def record(x):
    RAN.append(x)
    print(f"task says {x}")
    return x, os.getpid()


@zray.remote
def fail(text):
    raise ValueError(text)


@zray.remote
def plus(a, b):
    return a + b


@zray.remote
def outer(x):
    return zray.get(plus.remote(x, 1), timeout=T) * 10


@zray.remote(num_returns=2)
def pair():
    return "a", "b"


@zray.remote
def mutate(items):
    items.append("changed")
    return len(items)


@zray.remote
def context():
    c = zray.get_runtime_context()
    return c.get_task_id(), c.get_task_name(), os.environ.get("LOCALVAR")


@zray.remote
def stop_here():
    breakpoint()
    return "after the breakpoint"


def test_tasks_run_here_at_remote(local, capsys):
    RAN.clear()
    ref = record.remote(1)
    assert RAN == [1]   # already ran: .remote() returned after it
    assert zray.get(ref, timeout=T) == (1, os.getpid())
    assert "task says 1" in capsys.readouterr().out
    assert zray.wait([ref], timeout=0)[0] == [ref]
    assert zray.get(outer.remote(4), timeout=T) == 50
    assert zray.get(plus.remote(zray.put(2), plus.remote(1, 1)), timeout=T) == 4
    assert zray.get(list(pair.remote()), timeout=T) == ["a", "b"]
    items = ["x"]
    assert zray.get(mutate.remote(items), timeout=T) == 2 and items == ["x"]   # a copy


def test_errors_surface_at_get(local):
    ref = fail.remote("bad input")   # raises nothing here
    with pytest.raises(RayTaskError) as info:
        zray.get(ref, timeout=T)
    assert isinstance(info.value, ValueError) and "bad input" in str(info.value)
    with pytest.raises(ValueError):   # a dependent task fails with it
        zray.get(plus.remote(ref, 1), timeout=T)


def test_breakpoints_stop_in_the_task(local, monkeypatch):
    frames = []
    monkeypatch.setattr(sys, "breakpointhook", lambda *a, **k: frames.append(sys._getframe(1)))
    assert zray.get(stop_here.remote(), timeout=T) == "after the breakpoint"
    assert [f.f_code.co_name for f in frames] == ["stop_here"]


def test_context_and_runtime_env(local):
    task_id, name, var = zray.get(
        context.options(runtime_env={"env_vars": {"LOCALVAR": "set"}}).remote(), timeout=T)
    assert task_id and name == "context" and var == "set"
    assert os.environ.get("LOCALVAR") is None   # undone after the task
    assert zray.get_runtime_context().get_task_id() is None   # the driver's own, again


@zray.remote
class Log:
    def __init__(self, first):
        self.items = [first]

    def add(self, x):
        self.items.append(x)
        return list(self.items)

    def pid(self):
        return os.getpid()

    def bye(self):
        zray.actor.exit_actor()


@zray.remote
class AsyncLog:
    async def add(self, x):
        await asyncio.sleep(0)
        return x * 2


def test_actors_run_here_in_order(local):
    log = Log.remote("start")
    refs = [log.add.remote(i) for i in range(3)]
    assert zray.get(refs[-1], timeout=T) == ["start", 0, 1, 2]
    assert zray.get(log.pid.remote(), timeout=T) == os.getpid()
    assert zray.get(log.__ray_ready__.remote(), timeout=T) is True
    assert zray.get(AsyncLog.remote().add.remote(21), timeout=T) == 42
    with pytest.raises(ActorDiedError, match="exit_actor"):
        zray.get(log.bye.remote(), timeout=T)
    with pytest.raises(ActorDiedError):
        zray.get(log.add.remote(4), timeout=T)
    other = Log.remote("x")
    zray.kill(other)
    with pytest.raises(ActorDiedError, match="killed"):
        zray.get(other.add.remote(1), timeout=T)


def test_named_actor_and_a_failing_constructor(local):
    named = Log.options(name="local-log").remote("n")
    assert zray.get(zray.get_actor("local-log").add.remote(1), timeout=T) == ["n", 1]
    assert zray.get(named.add.remote(2), timeout=T) == ["n", 1, 2]
    broken = Broken.remote()
    with pytest.raises(ActorDiedError, match=r"(?s)creation task.*no good"):
        zray.get(broken.add.remote(1), timeout=T)


@zray.remote
class Broken:
    def __init__(self):
        raise RuntimeError("no good")

    def add(self, x):
        return x


def test_async_driver_can_call(local):
    async def main():
        return await AsyncLog.remote().add.remote(5)
    assert asyncio.run(main()) == 10


def test_local_mode_ends_with_its_cluster(tmp_path):
    # The same remote function in local mode, then in a normal cluster: only the first
    # runs in the driver (local mode is the runtime's, not the function's).
    proc = run_driver(tmp_path, """
        import os
        import zray

        @zray.remote
        def pid():
            return os.getpid()

        zray.init(num_cpus=1, local_mode=True, include_dashboard=False)
        assert zray.get(pid.remote()) == os.getpid()
        zray.shutdown()
        zray.init(num_cpus=1, include_dashboard=False)
        assert zray.get(pid.remote()) != os.getpid()
        zray.shutdown()
        print("OK")
    """)
    assert "OK" in proc.stdout


@zray.remote
def counts(n, fail):
    yield from range(n)
    if fail:
        raise ValueError("late")


def test_generators_in_local_mode(local):
    assert zray.get(list(counts.remote(3, False))) == [0, 1, 2]
    refs = list(counts.remote(1, True))
    assert zray.get(refs[0]) == 0
    with pytest.raises(ValueError, match="late"):
        zray.get(refs[1])
    dyn = zray.get(counts.options(num_returns="dynamic").remote(2, False))
    assert zray.get(list(dyn)) == [0, 1]

    @zray.remote
    class Streams:
        async def items(self, n):
            for i in range(n):
                yield i

    assert zray.get(list(Streams.remote().items.remote(3))) == [0, 1, 2]
