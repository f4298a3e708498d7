"""Stored values moving between nodes that are separate hosts (network namespaces, each
with its own /dev/shm) over CurveZMQ (zray/brokers/_transfer.py): chunks of several
frames arrive intact and in place, several pulls run at once, and a node that dies in
the middle of a pull loses the value, or the pull goes on from a copy."""
from __future__ import annotations

import hashlib
import os
import time

import numpy as np
import pytest
from conftest import leftovers, wait_gone, zray_pids
from helpers import run_driver

import zray
from zray import _netns
from zray._object_store import session_tag
from zray.brokers import _transfer
from zray.exceptions import ObjectLostError
from zray.testing import Cluster

pytestmark = [pytest.mark.module_cluster, pytest.mark.timeout(180)]
T = 60
MB = 1 << 20
# Not a multiple of a chunk (4 MiB) or a frame (256 KiB), nor of 8: every edge is crossed.
ODD = 150 * MB + 12_345


def on_hosts(test):
    """A test of separate hosts: slow, and skipped where they cannot be made."""
    unavailable = pytest.mark.skipif(not _netns.available(), reason=_netns.why_unavailable() or "-")
    return pytest.mark.slow(unavailable(test))


@pytest.fixture(scope="module")
def hosts():
    before_pids, before_files = zray_pids(), leftovers()
    with Cluster(head_node_args={"num_cpus": 1}) as cluster:
        cluster.add_node(num_cpus=2, resources={"left": 10})
        cluster.add_node(num_cpus=2, resources={"right": 10})
        zray.init(address=cluster.address)
        try:
            yield cluster
        finally:
            zray.shutdown()
    pids, files = wait_gone(before_pids, before_files)
    assert not pids and not files, f"the cluster left processes {pids} or files {files}"


def pattern(seed: int, size: int) -> np.ndarray:
    """`size` bytes that differ at every 8-byte position and from seed to seed: a chunk
    or frame written at the wrong offset, twice or not at all changes the digest."""
    words = np.arange((size + 7) // 8, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return (words ^ np.uint64(seed)).view(np.uint8)[:size]


def digest_of(a: np.ndarray) -> str:
    return hashlib.blake2b(memoryview(a), digest_size=16).hexdigest()


# (Tasks call no helper of this module: workers cannot import it.)
@zray.remote
def make(seed: int, size: int) -> np.ndarray:
    words = np.arange((size + 7) // 8, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return (words ^ np.uint64(seed)).view(np.uint8)[:size]


@zray.remote
def digest(a: np.ndarray) -> tuple[str, int]:
    return hashlib.blake2b(memoryview(a), digest_size=16).hexdigest(), a.nbytes


@zray.remote(max_restarts=0)
class Maker:
    def make(self, seed: int, size: int) -> np.ndarray:
        words = np.arange((size + 7) // 8, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        return (words ^ np.uint64(seed)).view(np.uint8)[:size]


def on(resource: str) -> dict:
    return {"resources": {resource: 1}}


def segment_files(node) -> list[str]:
    """The zray segments in the /dev/shm of a node's host (read through /proc: the node
    lives in a mount namespace of its own)."""
    return [n for n in os.listdir(f"/proc/{node.process.pid}/root/dev/shm") if n.startswith("zray-")]


@pytest.fixture
def room(hosts):
    """Each test starts once the last test's values and their copies on the worker hosts
    are freed (asynchronously, after their refs go): their /dev/shm is 256 MiB.

    (A worker that read a large argument keeps it mapped after its task, so the space of
    a freed copy it read comes back only when that worker exits: the tests below pull
    150 MB into each host once.)"""
    deadline = time.monotonic() + T
    while any(segment_files(node) for node in hosts.nodes[1:]):
        assert time.monotonic() < deadline, "the last test's values were not freed"
        time.sleep(0.05)


@on_hosts
def test_a_large_value_arrives_intact_on_other_hosts(hosts, room):
    ref = make.options(**on("left")).remote(1, ODD)
    want = digest_of(pattern(1, ODD))
    value = zray.get(ref, timeout=T)                       # pulled to the head's host
    assert value.nbytes == ODD and digest_of(value) == want
    assert zray.get(digest.options(**on("right")).remote(ref), timeout=T) == (want, ODD)


@on_hosts
def test_several_pulls_at_once_between_several_hosts(hosts, room):
    sizes = {seed: 12 * MB + seed * 4099 for seed in range(10, 16)}
    refs = {seed: make.options(**on("left" if seed % 2 else "right")).remote(seed, size)
            for seed, size in sizes.items()}
    values = zray.get(list(refs.values()), timeout=T)     # the head's node pulls all at once
    for (seed, size), value in zip(sizes.items(), values, strict=True):
        assert digest_of(value) == digest_of(pattern(seed, size)), f"object {seed} changed"
    # each worker node pulls the other's three while it serves its own three
    crossed = [digest.options(**on("right" if seed % 2 else "left")).remote(ref)
               for seed, ref in refs.items()]
    assert zray.get(crossed, timeout=T) == [(digest_of(pattern(s, n)), n) for s, n in sizes.items()]


def parts_of(node_pid: int, prefix: str) -> list[str]:
    """The half-pulled segments of a node that `prefix` names, in that node's /dev/shm."""
    shm = f"/proc/{node_pid}/root/dev/shm"
    return [n for n in os.listdir(shm) if n.startswith(prefix) and n.endswith(_transfer._PART)]


def kill_mid_pull(cluster, doomed, puller_pid: int) -> str:
    """SIGKILL `doomed` as soon as the node of `puller_pid` has begun to pull from it;
    the prefix of the doomed node's segments."""
    prefix = f"zray-{session_tag(doomed.session_dir)}-"
    deadline = time.monotonic() + T
    while not parts_of(puller_pid, prefix):
        assert time.monotonic() < deadline, "no pull from the doomed node began"
        time.sleep(0.001)
    cluster.remove_node(doomed)
    return prefix


@on_hosts
def test_a_node_dying_mid_pull_loses_the_value(hosts, room):
    doomed = hosts.add_node(num_cpus=1, resources={"doomed": 1})
    maker = Maker.options(**on("doomed")).remote()
    zray.get(maker.__ray_ready__.remote(), timeout=T)
    ref = maker.make.remote(2, ODD)              # the head's node pulls it for the driver
    head_pid = hosts.head_node.process.pid
    prefix = kill_mid_pull(hosts, doomed, head_pid)
    with pytest.raises(ObjectLostError):
        zray.get(ref, timeout=T)
    assert not parts_of(head_pid, prefix), "a failed pull left its half-written segment"


@on_hosts
def test_a_node_dying_mid_pull_gives_the_rest_from_a_copy(hosts, room):
    """The driver's node holds a copy; the left node pulls from the node that made the
    value, which dies in the middle: the pull starts over from that copy."""
    doomed = hosts.add_node(num_cpus=1, resources={"doomed": 1})
    maker = Maker.options(**on("doomed")).remote()
    ref = maker.make.remote(3, ODD)
    want = digest_of(zray.get(ref, timeout=T))   # the copy, on the head's node
    assert want == digest_of(pattern(3, ODD))
    left_pid = hosts.nodes[1].process.pid
    read = digest.options(**on("left")).remote(ref)
    prefix = kill_mid_pull(hosts, doomed, left_pid)
    assert zray.get(read, timeout=T) == (want, ODD)
    assert not parts_of(left_pid, prefix)


@on_hosts
def test_a_large_value_between_insecure_hosts(tmp_path):
    """Without CurveZMQ a chunk travels whole, as one frame: a value of several chunks
    arrives intact (a cluster of its own, in a driver of its own)."""
    proc = run_driver(tmp_path, f"""
        import numpy as np
        import zray
        from zray.testing import Cluster

        def pattern(size):
            return np.arange((size + 7) // 8, dtype=np.uint64).view(np.uint8)[:size]

        @zray.remote(resources={{"far": 1}})
        def make(size):
            return pattern(size)

        with Cluster(head_node_args={{"num_cpus": 1}}, secure=False) as cluster:
            cluster.add_node(num_cpus=1, resources={{"far": 1}})
            zray.init(address=cluster.address)
            try:
                value = zray.get(make.remote({ODD // 3}), timeout={T})
                print("intact" if np.array_equal(value, pattern({ODD // 3})) else "changed")
                del value
            finally:
                zray.shutdown()
        """)
    assert proc.stdout.strip().splitlines()[-1] == "intact", proc.stdout


def test_pwrite_all_writes_every_buffer_in_place_across_short_writes(tmp_path, monkeypatch):
    """os.pwritev may write less than asked (a signal, a full disk that frees up): the
    rest is written after it, in place."""
    real = os.pwritev
    calls = []

    def short(fd, buffers, offset):
        calls.append(offset)
        budget, cut = 1000, []
        for buf in buffers:
            cut.append(memoryview(buf)[:budget])
            budget -= cut[-1].nbytes
            if not budget:
                break
        return real(fd, cut, offset)

    monkeypatch.setattr(os, "pwritev", short)
    views = [bytes([i]) * size for i, size in enumerate((700, 1, 2500, 300, 1), start=1)]
    path = tmp_path / "segment"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        os.write(fd, b"\0" * 10)
        _transfer._pwrite_all(fd, views, 10)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"\0" * 10 + b"".join(views)
    assert len(calls) == 4 and calls[0] == 10
