"""The Raft example over a cluster of hosts: each server an actor on a node of its own
(network namespaces, CurveZMQ), the leader's whole node SIGKILLed: the others elect a
new leader and every committed write stays readable (issue 8's chaos test)."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from conftest import leftovers, wait_gone, zray_pids

import zray
from zray import _netns
from zray.testing import Cluster
from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

RAFT_DIR = str(Path(__file__).resolve().parent.parent / "examples" / "raft")
sys.path.insert(0, RAFT_DIR)
from raft_group import RaftGroup  # noqa: E402 (from the example's directory, put on the path above)

pytestmark = [pytest.mark.slow, pytest.mark.module_cluster,
              pytest.mark.skipif(not _netns.available(), reason=_netns.why_unavailable() or "-")]


@pytest.fixture(scope="module")
def raft_hosts():
    """A head and three hosts; the workers import the example's modules (PYTHONPATH is
    set before the brokers start: their children inherit it)."""
    before_pids, before_files = zray_pids(), leftovers()
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [RAFT_DIR, old]))
    try:
        with Cluster(head_node_args={"num_cpus": 1}) as cluster:
            hosts = [cluster.add_node(num_cpus=1) for _ in range(3)]
            zray.init(address=cluster.address)
            try:
                yield cluster, hosts
            finally:
                zray.shutdown()
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    pids, files = wait_gone(before_pids, before_files)
    assert not pids and not files, f"the cluster left processes {pids} or files {files}"


class SpreadRaftGroup(RaftGroup):
    """Server i on node i (hard affinity), not all on the driver's node."""

    def __init__(self, node_ids: list[str], *args, **kwargs) -> None:
        self.node_ids = node_ids
        super().__init__(*args, **kwargs)

    def _create(self, i: int):
        where = NodeAffinitySchedulingStrategy(self.node_ids[i - 1], soft=False)
        return super()._create_with(i, scheduling_strategy=where, num_cpus=0)


def test_raft_survives_its_leaders_node_dying(raft_hosts, tmp_path):
    cluster, hosts = raft_hosts
    ids = {n["NodeManagerAddress"]: n["NodeID"] for n in zray.nodes() if n["Alive"]}
    node_ids = [ids[h.address] for h in hosts]
    group = SpreadRaftGroup(node_ids, 3, str(tmp_path / "storage"))
    try:
        where = {i: s["node_id"] for i, s in group.statuses().items()}
        assert sorted(where.values()) == sorted(node_ids), "a server on each host"
        leader = group.wait_for_leader()
        for key, value in (("a", 1), ("b", 2)):
            group.put(key, value)
        # The leader's whole host dies (its node broker and, with it, its workers).
        cluster.remove_node(hosts[node_ids.index(where[leader])])
        group.handles.pop(leader)
        killed = time.monotonic()
        new_leader = group.wait_for_leader(timeout=30)
        assert new_leader != leader
        assert {k: group.get(k) for k in ("a", "b")} == {"a": 1, "b": 2}
        group.put("c", 3)
        assert group.get("c") == 3
        assert time.monotonic() - killed < 30
    finally:
        group.shutdown()
