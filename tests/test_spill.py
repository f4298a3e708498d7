"""A bounded object store: spilling to disk past object_store_memory (on the node's
spill thread: the tests wait for it), transparent restore on access, and a value
larger than the whole store written straight to disk. (A small /dev/shm:
test_small_shm.py.)"""
from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import wait_until

import zray
from zray import _runtime
from zray._object_store import SHM_DIR, session_tag

T = 30
MB = 2**20


@zray.remote
def _noop():
    return None


def settle() -> None:
    """A round trip through the node: it has handled this driver's store reports
    (sent ahead of everything else) by the time the answer comes back."""
    zray.cluster_resources()


def spill_dir() -> str:
    return os.path.join(_runtime.current().node_info["session_dir"], "spill")


def in_shm() -> list[str]:
    tag = session_tag(_runtime.current().node_info["session_dir"])
    return [n for n in os.listdir(SHM_DIR) if n.startswith(f"zray-{tag}-")]


def spilled() -> list[str]:
    d = spill_dir()
    return [n for n in os.listdir(d) if not n.endswith(".tmp")] if os.path.isdir(d) else []


def shm_bytes() -> int:
    total = 0
    for n in in_shm():   # (the spill thread may unlink one between listdir and stat)
        try:
            total += os.path.getsize(os.path.join(SHM_DIR, n))
        except FileNotFoundError:
            pass
    return total


@pytest.fixture
def small_store():
    zray.init(num_cpus=2, object_store_memory=40 * MB)
    yield
    zray.shutdown()


def test_spills_past_capacity_and_restores_on_access(small_store):
    arrays = [np.full(10 * MB // 8, i, dtype=np.float64) for i in range(8)]   # 8 x 10 MB
    refs = [zray.put(a) for a in arrays]
    settle()  # the node has the account of all eight
    assert wait_until(lambda: spilled() and shm_bytes() <= 40 * MB, T), \
        "80 MB in a 40 MB store must spill down to 40 MB"
    for i, ref in enumerate(refs):  # spilled or not, every value reads back
        value = zray.get(ref, timeout=T)
        assert value[0] == i and value[-1] == i and value.shape == arrays[i].shape

    @zray.remote
    def first(a):
        return float(a[0])

    assert zray.get([first.remote(r) for r in refs], timeout=T) == [float(i) for i in range(8)]


def test_spill_files_removed_when_freed(small_store):
    refs = [zray.put(np.ones(10 * MB // 8)) for _ in range(8)]
    settle()
    assert wait_until(spilled, T)
    del refs
    settle()
    # (a file on its way to disk as its object was freed goes once the spiller is done)
    assert wait_until(lambda: spilled() == [] and in_shm() == [], T)


def test_object_larger_than_the_store_goes_to_disk(small_store):
    """As Ray's fallback allocation: a value larger than object_store_memory is written
    straight to the spill directory (by its writer), and reads back from there."""
    ref = zray.put(np.full(60 * MB // 8, 7.0))
    assert zray.get(ref, timeout=T)[-1] == 7.0
    seg = _runtime.current().owner.table.entries[ref._id].data[1]
    assert seg in spilled() and seg not in in_shm()

    @zray.remote
    def big():
        return np.full(60 * MB // 8, 3.0)

    assert zray.get(big.remote(), timeout=T)[0] == 3.0
    del ref
    assert wait_until(lambda: spilled() == [], T)
    # The cluster goes on.
    assert zray.get(zray.put(np.ones(MB))).sum() == MB
    assert zray.get(_noop.remote(), timeout=T) is None


def test_bad_object_store_memory():
    with pytest.raises(ValueError):
        zray.init(object_store_memory=-1)
    assert not zray.is_initialized()


def test_recently_read_objects_stay_in_memory(small_store):
    refs = [zray.put(np.full(10 * MB // 8, i, dtype=np.float64)) for i in range(3)]

    @zray.remote
    def read(a):
        return float(a[0])

    settle()
    # A task maps the oldest object: it becomes the most recently used.
    assert zray.get(read.remote(refs[0]), timeout=T) == 0.0
    refs += [zray.put(np.full(10 * MB // 8, i, dtype=np.float64)) for i in range(3, 5)]
    settle()
    assert wait_until(lambda: spilled() and shm_bytes() <= 40 * MB, T), \
        "50 MB in a 40 MB store must spill"
    names = set(spilled())
    first = zray.get(refs[0])   # readable wherever it is
    assert first[0] == 0.0
    seg = lambda ref: _runtime.current().owner.table.entries[ref._id].data[1]  # noqa: E731
    assert seg(refs[0]) not in names, "the recently read object was spilled before older ones"
    assert seg(refs[1]) in names
