"""Who holds what: zray.util.state.list_objects(), `zray memory`, `zray status`,
and a second driver joining a running cluster with init(address=...)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import zray
from zray import _runtime
from zray.util.state import list_objects, memory_summary

T = 30


def test_list_objects_rows(cluster):
    big = zray.put(np.ones(200_000))
    small = zray.put("small")

    @zray.remote
    class Keeper:
        def keep(self, box):
            self.box = box          # a borrower of the object inside
            return len(box)

    k = Keeper.remote()
    assert zray.get(k.keep.remote([big]), timeout=T) == 1
    rows = list_objects()
    mine = {r["object_id"]: r for r in rows if r["type"] == "DRIVER" and r["is_owner"]}
    assert mine[big.hex()]["location"] == "SHARED_MEMORY"
    assert mine[big.hex()]["object_size"] >= 1_600_000
    assert mine[small.hex()]["location"] == "INLINE"
    assert mine[big.hex()]["borrowers"] >= 1, "the actor's stored ref keeps it alive"
    assert mine[big.hex()]["pid"] == os.getpid()
    held = [r for r in rows if r["object_id"] == big.hex() and r["type"] == "WORKER"]
    assert held and held[0]["reference_type"] == "BORROWED" and not held[0]["is_owner"]
    only_shm = list_objects(filters=[("location", "=", "SHARED_MEMORY")])
    assert {r["location"] for r in only_shm} == {"SHARED_MEMORY"}
    with pytest.raises(ValueError):
        list_objects(filters=[("location", ">", "x")])
    summary = memory_summary()
    assert big.hex() in summary and "total SHARED_MEMORY" in summary


def test_cli_memory_and_status_join_the_running_cluster(cluster):
    ref = zray.put(np.zeros(300_000))
    session = _runtime.current().node_info["session_dir"]
    env = dict(os.environ)
    for cmd in (["memory", "--address", session], ["status", "--address", session]):
        out = subprocess.run([sys.executable, "-m", "zray.cli", *cmd], capture_output=True,
                             text=True, timeout=T, env=env)
        assert out.returncode == 0, out.stderr
        if cmd[0] == "memory":
            assert ref.hex() in out.stdout and "SHARED_MEMORY" in out.stdout
        else:
            assert "CPU" in out.stdout and "2.0" in out.stdout
    # The joining drivers disconnected; this cluster still works.
    assert zray.get(zray.put(1)) == 1


def test_second_driver_shares_the_cluster(cluster, tmp_path):
    session = _runtime.current().node_info["session_dir"]

    @zray.remote
    class Board:
        def __init__(self):
            self.notes = []

        def add(self, x):
            self.notes.append(x)
            return len(self.notes)

    b = Board.options(name="board", namespace="shared", lifetime="detached").remote()
    assert zray.get(b.add.remote("first"), timeout=T) == 1
    script = tmp_path / "second.py"
    script.write_text(
        "import sys, zray\n"
        "zray.init(address=sys.argv[1], namespace='shared')\n"
        "b = zray.get_actor('board')\n"
        "print('COUNT', zray.get(b.add.remote('second'), timeout=30))\n"
        "zray.shutdown()\n")
    out = subprocess.run([sys.executable, str(script), session], capture_output=True, text=True,
                         timeout=T)
    assert "COUNT 2" in out.stdout, out.stderr
    assert zray.get(b.add.remote("third"), timeout=T) == 3


def test_cli_without_a_cluster_says_so(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "zray.cli", "memory"], capture_output=True,
                         text=True, timeout=T, env=env)
    assert out.returncode == 1 and "no zray cluster is running" in out.stderr


def test_connect_with_resources_is_an_error(cluster):
    session = _runtime.current().node_info["session_dir"]
    zray.shutdown()
    with pytest.raises(ValueError):
        zray.init(address=session, num_cpus=2)
