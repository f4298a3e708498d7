"""Task leases (direct task transport): an owner's one-at-a-time tasks go straight
to a leased worker; crashes, cancels and nested gets still behave as through the node."""
from __future__ import annotations

import os
import time

import pytest

import zray
from zray import _runtime
from zray.exceptions import TaskCancelledError, WorkerCrashedError

T = 30


@zray.remote
def ping():
    return os.getpid()


def leased() -> list:
    """The leases this driver holds now (read on the I/O thread's own structures)."""
    return [lease for lease in _runtime.current().lanes.leases.values() if lease.open]


def hold_lease(fn=ping, deadline_s: float = 10.0):
    """Run sync tasks until the driver holds a lease for their shape."""
    deadline = time.monotonic() + deadline_s
    while not leased():
        assert time.monotonic() < deadline, "no lease was granted for a sync loop"
        zray.get(fn.remote(), timeout=T)


def test_sync_loop_gets_a_lease_and_uses_it(cluster):
    hold_lease()
    lease = leased()[0]
    pids = {zray.get(ping.remote(), timeout=T) for _ in range(20)}
    assert lease.open and lease.task is None
    assert len(pids) == 1, "sync tasks on a lease all run on the leased worker"


def test_burst_gives_the_lease_back_and_uses_every_worker(cluster):
    hold_lease()
    pids = set(zray.get([ping.remote() for _ in range(400)], timeout=T))
    assert not leased(), "a burst through the node must give the lease back"
    assert len(pids) == 2


def test_leased_task_whose_worker_dies_is_retried(cluster, tmp_path):
    marker = tmp_path / "died-once"

    @zray.remote(max_retries=2)
    def die_once(path):
        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(1)
        return "ok"

    hold_lease()
    # Same shape as ping (1 CPU): it goes on the lease, its worker dies, and the
    # owner retries it through the node.
    assert zray.get(die_once.remote(str(marker)), timeout=T) == "ok"
    assert zray.get(ping.remote(), timeout=T) > 0


def test_leased_task_without_retries_fails_with_worker_crashed(cluster):
    @zray.remote(max_retries=0)
    def die():
        os._exit(1)

    hold_lease()
    with pytest.raises(WorkerCrashedError):
        zray.get(die.remote(), timeout=T)
    assert zray.get(ping.remote(), timeout=T) > 0


@pytest.mark.parametrize("force", [False, True])
def test_cancel_a_running_leased_task(cluster, force):
    @zray.remote
    def sleeper():
        time.sleep(60)

    hold_lease()
    ref = sleeper.remote()
    ready, _ = zray.wait([ref], timeout=0.3)
    assert not ready
    assert leased()[0].task is not None, "the task should be on the lease"
    zray.cancel(ref, force=force)
    with pytest.raises(TaskCancelledError):
        zray.get(ref, timeout=T)
    assert zray.get(ping.remote(), timeout=T) > 0


def test_nested_sync_gets_on_one_cpu_complete():
    zray.init(num_cpus=1)

    @zray.remote
    def depth(n):
        return 0 if n == 0 else 1 + zray.get(depth.remote(n - 1), timeout=T)

    for _ in range(3):
        assert zray.get(depth.remote(6), timeout=T) == 6
    zray.shutdown()


def test_leases_off_sends_every_task_through_the_node(monkeypatch):
    """lease_linger_s 0 turns leases off. It once routed every task as False in place
    of its spec: the node dropped them and every get() hung."""
    from zray._config import CONFIG
    monkeypatch.setenv("ZRAY_LEASE_LINGER_S", "0")   # the workers
    linger = CONFIG.lease_linger_s
    object.__setattr__(CONFIG, "lease_linger_s", 0.0)   # this driver (a frozen dataclass)
    try:
        zray.init(num_cpus=1)
        try:
            assert [zray.get(ping.remote(), timeout=T) > 0 for _ in range(3)] == [True] * 3
            assert zray.get([ping.remote() for _ in range(20)], timeout=T)
            assert not _runtime.current().lanes.leases, "no lease is asked for"
        finally:
            zray.shutdown()
    finally:
        object.__setattr__(CONFIG, "lease_linger_s", linger)
