"""Named actors and namespaces: lookup from the driver, tasks and actors, isolation
between namespaces, duplicate names, get_if_exists, and names freed by a kill."""
from __future__ import annotations

import gc

import pytest
from conftest import wait_until
from helpers import Counter, T, wait_exit

import zray


def name_is_free(name: str, namespace: str | None = None) -> bool:
    try:
        zray.get_actor(name, namespace=namespace)
    except ValueError:
        return True
    return False


# -- named actors and namespaces ------------------------------------------------------
def test_named_actor_from_driver(cluster):
    c = Counter.options(name="counter").remote()
    assert zray.get(c.incr.remote(), timeout=T) == 1
    got = zray.get_actor("counter")
    assert got == c
    assert zray.get(got.incr.remote(), timeout=T) == 2
    assert zray.get(c.value.remote(), timeout=T) == 2


def test_named_actor_from_task_with_explicit_namespace():
    zray.init(num_cpus=2, namespace="explicit")
    c = Counter.options(name="counter").remote()

    @zray.remote
    def from_task():
        return zray.get(zray.get_actor("counter", namespace="explicit").incr.remote(), timeout=T)

    assert zray.get(from_task.remote(), timeout=T) == 1
    assert zray.get(c.value.remote(), timeout=T) == 1


def test_named_actor_from_task(cluster):
    c = Counter.options(name="counter").remote()

    @zray.remote
    def from_task():
        return zray.get(zray.get_actor("counter").incr.remote(), timeout=T)

    assert zray.get(from_task.remote(), timeout=T) == 1
    assert zray.get(c.value.remote(), timeout=T) == 1


def test_named_actor_from_task_in_named_namespace():
    zray.init(num_cpus=2, namespace="job-ns")
    c = Counter.options(name="counter").remote()

    @zray.remote
    def from_task():
        return zray.get(zray.get_actor("counter").incr.remote(), timeout=T)

    assert zray.get(from_task.remote(), timeout=T) == 1
    assert zray.get(c.value.remote(), timeout=T) == 1


def test_named_actor_from_actor(cluster):
    c = Counter.options(name="counter2").remote()

    @zray.remote
    class Finder:
        def find(self):
            return zray.get(zray.get_actor("counter2").incr.remote(), timeout=T)

    f = Finder.remote()
    assert zray.get(f.find.remote(), timeout=T) == 1
    assert zray.get(c.value.remote(), timeout=T) == 1


def test_namespaces_isolate_names():
    zray.init(num_cpus=2, namespace="ns1")
    a = Counter.options(name="x").remote(100)
    b = Counter.options(name="x", namespace="ns2").remote(200)  # same name, other namespace
    assert zray.get(zray.get_actor("x").value.remote(), timeout=T) == 100
    assert zray.get(zray.get_actor("x", namespace="ns1").value.remote(), timeout=T) == 100
    assert zray.get(zray.get_actor("x", namespace="ns2").value.remote(), timeout=T) == 200
    with pytest.raises(ValueError):
        zray.get_actor("x", namespace="ns3")
    assert zray.get([a.value.remote(), b.value.remote()], timeout=T) == [100, 200]


def test_duplicate_name_is_value_error(cluster):
    a = Counter.options(name="dup").remote()
    assert zray.get(a.incr.remote(), timeout=T) == 1
    with pytest.raises(ValueError, match="dup"):
        Counter.options(name="dup").remote()
    assert zray.get(zray.get_actor("dup").value.remote(), timeout=T) == 1


def test_get_if_exists_returns_existing(cluster):
    a = Counter.options(name="gie", get_if_exists=True).remote(5)
    assert zray.get(a.incr.remote(), timeout=T) == 6
    b = Counter.options(name="gie", get_if_exists=True).remote(1000)
    assert b == a
    assert zray.get(b.incr.remote(), timeout=T) == 7
    assert zray.get(a.pid.remote(), timeout=T) == zray.get(b.pid.remote(), timeout=T)
    # Dropping the second handle must not end the actor.
    del b
    gc.collect()
    assert zray.get(a.incr.remote(), timeout=T) == 8


def test_get_actor_unknown_name_is_value_error(cluster):
    with pytest.raises(ValueError, match="no-such-actor"):
        zray.get_actor("no-such-actor")


def test_name_is_freed_after_kill(cluster):
    a = Counter.options(name="reuse").remote()
    pid = zray.get(a.pid.remote(), timeout=T)
    zray.kill(a)
    assert wait_exit(pid)
    assert wait_until(lambda: name_is_free("reuse")), "the name of a killed actor stays taken"
    b = Counter.options(name="reuse").remote(50)
    assert zray.get(zray.get_actor("reuse").value.remote(), timeout=T) == 50
    assert zray.get(b.pid.remote(), timeout=T) != pid
