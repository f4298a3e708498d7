"""An actor that ends (exit_actor()) answers the calls it ran before: their results
reach the caller, also when the caller hears of the end before it reads them."""
from __future__ import annotations

import os
import threading

import pytest
from conftest import pid_alive, wait_until
from helpers import T

import zray
from zray._runtime.transport import Op
from zray.exceptions import ActorDiedError


@zray.remote(num_cpus=0)
class Quits:
    def echo(self, x):
        return x

    def pid(self):
        return os.getpid()

    def stop(self):
        zray.actor.exit_actor()


@zray.remote(num_cpus=0)
class AsyncQuits:
    async def echo(self, x):
        return x

    def pid(self):
        return os.getpid()

    def stop(self):
        zray.actor.exit_actor()


@pytest.mark.parametrize("kind", ["sync", "threaded", "async"])
def test_calls_before_exit_actor_return(cluster, kind):
    # 200 results of 1 kB went out in one batch as the actor exited, and its socket
    # closed without linger dropped them: every call failed with "exited with
    # exit_actor()" (Ray returns them all).
    cls = AsyncQuits if kind == "async" else Quits
    a = cls.options(max_concurrency=4).remote() if kind == "threaded" else cls.remote()
    pid = zray.get(a.pid.remote(), timeout=T)
    refs = [a.echo.remote(b"x" * 1000) for _ in range(200)]
    last = a.stop.remote()
    assert zray.get(refs, timeout=T) == [b"x" * 1000] * 200
    with pytest.raises(ActorDiedError, match="exit_actor"):
        zray.get(last, timeout=T)
    # The actor is gone (a threaded one ignored exit_actor() and took calls on).
    assert wait_until(lambda: not pid_alive(pid)), f"the {kind} actor did not exit"
    with pytest.raises(ActorDiedError):
        zray.get(a.echo.remote(1), timeout=T)


def test_result_waiting_when_the_end_is_heard(cluster):
    # The caller's I/O thread reads the node's socket before the actors' sockets: when
    # both were ready at once, the news of the actor's end failed the call whose
    # result waited unread on the actor's socket (2 in 40 calls under load). Made
    # certain here: the I/O thread is held until the actor's process is gone and the
    # node has told of its end.
    rt = zray._context.runtime()
    a = Quits.remote()
    pid = zray.get(a.pid.remote(), timeout=T)
    first = a.echo.remote("first")
    last = a.stop.remote()
    rt.flush_sync()   # both calls are sent
    held, parked = threading.Event(), threading.Event()

    class Park:   # a BARRIER command whose set() holds the I/O thread
        def set(self):
            parked.set()
            held.wait(T)

    rt.t.post(Op.BARRIER, Park())
    try:
        assert parked.wait(T)
        assert wait_until(lambda: not pid_alive(pid)), "the actor did not exit"
        # The I/O thread is parked: this thread may look at its node socket.
        assert wait_until(lambda: rt.t.node.poll(0)), "no word of the end from the node"
    finally:
        held.set()
    assert zray.get(first, timeout=T) == "first"
    with pytest.raises(ActorDiedError, match="exit_actor"):
        zray.get(last, timeout=T)
