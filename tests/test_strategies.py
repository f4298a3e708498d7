"""scheduling_strategy and placement groups on one node (the cluster's side is in
test_cluster.py): Ray's names, results and errors (checked against Ray 2.60), and the
head's bundle planner."""
from __future__ import annotations

import time

import pytest

import zray
from zray.brokers._groups import plan
from zray.brokers._placement import NodeView
from zray.exceptions import ActorDiedError, TaskUnschedulableError
from zray.util.placement_group import (
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from zray.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

T = 20


@zray.remote
def node() -> str:
    return zray.get_runtime_context().get_node_id()


@zray.remote
class Box:
    def node(self):
        return zray.get_runtime_context().get_node_id()


def test_util_is_there_after_import_zray():
    assert zray.util.scheduling_strategies.NodeAffinitySchedulingStrategy is \
        NodeAffinitySchedulingStrategy
    assert zray.util.placement_group is placement_group
    assert callable(zray.util.remove_placement_group)


def test_spread_and_affinity_on_one_node(shared):
    me = zray.nodes()[0]["NodeID"]
    assert zray.get(node.options(scheduling_strategy="SPREAD").remote(), timeout=T) == me
    assert zray.get(node.options(scheduling_strategy="DEFAULT").remote(), timeout=T) == me
    hard = NodeAffinitySchedulingStrategy(me, soft=False)
    assert zray.get(node.options(scheduling_strategy=hard).remote(), timeout=T) == me
    assert zray.get(Box.options(scheduling_strategy=hard).remote().node.remote(), timeout=T) == me
    assert zray.get(Box.options(scheduling_strategy="SPREAD").remote().node.remote(), timeout=T) == me
    assert me == zray.get_runtime_context().get_node_id()


def test_affinity_errors(shared):
    with pytest.raises(ValueError, match="Invalid node_id"):
        NodeAffinitySchedulingStrategy("zz", soft=False)
    gone = NodeAffinitySchedulingStrategy("ab" * 16, soft=False)
    with pytest.raises(TaskUnschedulableError, match="soft=False"):
        zray.get(node.options(scheduling_strategy=gone).remote(), timeout=T)
    soft = NodeAffinitySchedulingStrategy("ab" * 16, soft=True)
    assert zray.get(node.options(scheduling_strategy=soft).remote(), timeout=T)
    me = NodeAffinitySchedulingStrategy(zray.nodes()[0]["NodeID"], soft=False)
    with pytest.raises(TaskUnschedulableError, match="can never give it"):
        zray.get(node.options(num_cpus=64, scheduling_strategy=me).remote(), timeout=T)
    with pytest.raises(ActorDiedError, match="not schedulable"):
        zray.get(Box.options(num_cpus=64, scheduling_strategy=me).remote().node.remote(), timeout=T)
    with pytest.raises(ValueError, match="Invalid scheduling_strategy value 'BOGUS'"):
        node.options(scheduling_strategy="BOGUS").remote()


def test_placement_group_errors(shared):
    with pytest.raises(ValueError, match="non-empty list"):
        placement_group([])
    with pytest.raises(ValueError, match="Invalid placement group strategy"):
        placement_group([{"CPU": 1}], strategy="NOPE")
    with pytest.raises(ValueError, match="empty dictionary"):
        placement_group([{}])
    with pytest.raises(ValueError, match="non-negative"):
        placement_group([{"CPU": -1}])
    with pytest.raises(ValueError, match="no placement group has that name"):
        get_placement_group("nobody")


def test_a_placement_group_from_ready_to_removed(shared):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK", name="two")
    try:
        assert zray.get(pg.ready(), timeout=T) == pg
        assert pg.wait(T) and pg.bundle_count == 2
        table = placement_group_table(pg)
        assert table["state"] == "CREATED" and table["strategy"] == "PACK"
        assert table["bundles"] == {0: {"CPU": 1.0}, 1: {"CPU": 1.0}}
        assert get_placement_group("two") == pg
        assert pg.id.hex() in placement_group_table()
        # As in Ray: the bundles' resources are not resources of their own, and what
        # they set aside is not available to others.
        assert not any("_group_" in k for k in zray.cluster_resources())
        assert zray.cluster_resources()["CPU"] == 2 and zray.available_resources()["CPU"] == 0
        with pytest.raises(ValueError, match="already exists"):
            placement_group([{"CPU": 1}], name="two")
        in0 = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0)
        assert zray.get(node.options(scheduling_strategy=in0).remote(), timeout=T)
        any_bundle = PlacementGroupSchedulingStrategy(pg)
        assert len(zray.get([node.options(scheduling_strategy=any_bundle).remote()
                             for _ in range(4)], timeout=T)) == 4
        with pytest.raises(ValueError, match="bundle index 5 is invalid"):
            node.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 5)).remote()
        with pytest.raises(ValueError, match="cannot fit into any bundles"):
            node.options(num_cpus=2, scheduling_strategy=in0).remote()
        box = Box.options(num_cpus=1, scheduling_strategy=in0).remote()
        assert zray.get(box.node.remote(), timeout=T)
    finally:
        remove_placement_group(pg)
    with pytest.raises(ActorDiedError, match="placement group"):
        zray.get(box.node.remote(), timeout=T)
    assert placement_group_table(pg)["state"] == "REMOVED"
    with pytest.raises(TaskUnschedulableError, match="placement group was removed"):
        zray.get(node.options(scheduling_strategy=in0).remote(), timeout=T)
    deadline = time.monotonic() + T
    while zray.available_resources().get("CPU") != 2:
        assert time.monotonic() < deadline, "the bundles' CPUs did not come back"
        time.sleep(0.05)


def test_a_group_too_big_waits_and_its_ready_fails_when_removed(shared):
    big = placement_group([{"CPU": 100}])
    ready = big.ready()
    assert not big.wait(0.5)
    assert placement_group_table(big)["state"] == "PENDING"
    remove_placement_group(big)
    with pytest.raises(TaskUnschedulableError, match="removed"):
        zray.get(ready, timeout=T)


def _views(*cpus: float) -> list[NodeView]:
    return [NodeView(bytes([i]), {"CPU": c}, {"CPU": c}) for i, c in enumerate(cpus)]


def test_plan_follows_each_strategy():
    two = [{"CPU": 1.0}, {"CPU": 1.0}]
    assert len(set(plan(two, "STRICT_PACK", _views(2, 2)).values())) == 1
    assert plan(two, "STRICT_PACK", _views(1, 1)) is None
    assert len(set(plan(two, "PACK", _views(1, 1)).values())) == 2    # as few as it can
    assert len(set(plan(two, "PACK", _views(1, 2)).values())) == 1
    assert len(set(plan(two, "STRICT_SPREAD", _views(2, 2)).values())) == 2
    assert plan(two, "STRICT_SPREAD", _views(4)) is None
    assert len(set(plan(two, "SPREAD", _views(4)).values())) == 1     # spread as far as it goes
    assert len(set(plan(two, "SPREAD", _views(4, 4)).values())) == 2
    assert plan([{"CPU": 3.0}], "PACK", _views(2, 2)) is None


def test_plan_of_the_bundles_a_dead_node_held():
    two = [{"CPU": 1.0}, {"CPU": 1.0}]
    n0, n1, n2 = (bytes([i]) for i in range(3))
    views = _views(2, 2, 2)
    # Bundle 1 stays on n0: STRICT_SPREAD puts bundle 0 elsewhere, STRICT_PACK beside it.
    assert plan(two, "STRICT_SPREAD", views, {1: n0})[0] != n0
    assert plan(two, "STRICT_PACK", views, {1: n1}) == {0: n1}
    assert plan(two, "STRICT_PACK", _views(2, 0, 2), {1: n1}) is None
    assert plan(two, "PACK", views, {1: n2}) == {0: n2}


@zray.remote
def my_group():
    from zray.util.placement_group import get_current_placement_group
    pg = get_current_placement_group()
    return None if pg is None else (pg.id.hex(), pg.bundle_specs)


def test_get_current_placement_group(shared):
    from zray.util.placement_group import get_current_placement_group
    assert get_current_placement_group() is None   # a driver is in none
    assert zray.get(my_group.remote(), timeout=T) is None
    pg = placement_group([{"CPU": 1}])
    try:
        assert pg.wait(T)
        in_pg = PlacementGroupSchedulingStrategy(pg)
        assert zray.get(my_group.options(scheduling_strategy=in_pg).remote(), timeout=T) == \
            (pg.id.hex(), [{"CPU": 1.0}])
    finally:
        remove_placement_group(pg)


@zray.remote
def child_group():
    # (No CPU: the group's bundles hold every CPU of this node, which a child outside
    # the group would wait for, as in Ray.)
    return zray.get(my_group.options(num_cpus=0).remote(), timeout=T)


def test_capture_child_tasks_puts_them_in_the_parents_group(shared):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    try:
        assert pg.wait(T)
        captures = PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)
        assert zray.get(child_group.options(scheduling_strategy=captures).remote(),
                        timeout=T) == (pg.id.hex(), [{"CPU": 1.0}, {"CPU": 1.0}])
        plain = PlacementGroupSchedulingStrategy(pg)   # (capture off, as Ray's default)
        assert zray.get(child_group.options(scheduling_strategy=plain).remote(), timeout=T) is None
    finally:
        remove_placement_group(pg)
