"""A cluster of nodes as separate hosts (network namespaces, each with its own /dev/shm),
over tcp with CurveZMQ: work placed by resources across nodes, results back to their
owners wherever they run, actors living on other nodes, handles passed between nodes."""
from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest
from conftest import leftovers, wait_gone, zray_pids

import zray
from zray import _netns
from zray.testing import Cluster

pytestmark = [pytest.mark.slow, pytest.mark.module_cluster,
              pytest.mark.skipif(not _netns.available(), reason=_netns.why_unavailable() or "-")]
T = 30


@pytest.fixture(scope="module")
def three_hosts():
    before_pids, before_files = zray_pids(), leftovers()
    with Cluster(head_node_args={"num_cpus": 1}) as cluster:
        ours = f"zr{cluster.net.suffix}-"   # (other test runs on this machine make theirs)
        cluster.add_node(num_cpus=1, resources={"left": 1})
        cluster.add_node(num_cpus=1, resources={"right": 1})
        zray.init(address=cluster.address)
        try:
            yield cluster
        finally:
            zray.shutdown()
    pids, files = wait_gone(before_pids, before_files)
    assert not pids and not files, f"the cluster left processes {pids} or files {files}"
    left = [name for name in _netns_list() if name.startswith(ours)]
    assert not left, f"the cluster left network namespaces {left}"


def _netns_list() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def node_ips() -> dict[str, str]:
    """NodeID -> its address, as the head lists them."""
    return {n["NodeID"]: n["NodeManagerAddress"] for n in zray.nodes() if n["Alive"]}


@zray.remote
def where() -> str:
    return zray.get_runtime_context().get_node_id()


@zray.remote
def on_other_node(resource: str) -> tuple[str, str]:
    """From a task on one node, a task that must run on another: its owner is remote."""
    inner = zray.get(where.options(resources={resource: 1}).remote(), timeout=T)
    return zray.get_runtime_context().get_node_id(), inner


@zray.remote(resources={"right": 1})
class Counter:
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k
        return self.n, zray.get_runtime_context().get_node_id()

    def upto(self, n):
        yield from range(1, n + 1)


@zray.remote
def use_counter(counter, k):
    return zray.get(counter.add.remote(k), timeout=T)


def test_every_node_registers_with_its_own_address(three_hosts):
    ips = node_ips()
    assert len(ips) == 3
    assert len(set(ips.values())) == 3, "each node is a host of its own"
    assert zray.cluster_resources()["left"] == 1 and zray.cluster_resources()["right"] == 1


def test_tasks_run_where_their_resources_are(three_hosts):
    ips = node_ips()
    here = zray.get(where.remote(), timeout=T)
    left = zray.get(where.options(resources={"left": 1}).remote(), timeout=T)
    right = zray.get(where.options(resources={"right": 1}).remote(), timeout=T)
    assert len({here, left, right}) == 3
    assert {here, left, right} == set(ips)


def test_a_task_on_one_node_owns_a_task_on_another(three_hosts):
    outer, inner = zray.get(on_other_node.options(resources={"left": 1}).remote("right"), timeout=T)
    right = zray.get(where.options(resources={"right": 1}).remote(), timeout=T)
    assert inner == right and outer != inner


def test_an_actor_on_another_node_keeps_its_state_and_order(three_hosts):
    counter = Counter.remote()
    results = [zray.get(counter.add.remote(1), timeout=T) for _ in range(3)]
    results += zray.get([counter.add.remote(1) for _ in range(20)], timeout=T)
    assert [n for n, _ in results] == list(range(1, 24))
    assert len({node for _, node in results}) == 1
    assert results[0][1] != zray.get_runtime_context().get_node_id()


def test_an_actor_handle_passed_to_a_task_on_a_third_node(three_hosts):
    counter = Counter.remote()
    assert zray.get(counter.add.remote(5), timeout=T)[0] == 5
    n, _ = zray.get(use_counter.options(resources={"left": 1}).remote(counter, 2), timeout=T)
    assert n == 7
    assert zray.get(counter.add.remote(0), timeout=T)[0] == 7


def test_actors_made_one_after_another_on_a_full_node(three_hosts):
    """Each new Counter waits on the right node for the last one to end (one "right" to
    share). A message about the new one could reach that node before its placement did,
    and two nodes with stale beliefs passed it back and forth for good (seen 1 in ~10)."""
    for i in range(25):
        counter = Counter.remote()
        assert zray.get(counter.add.remote(i), timeout=T)[0] == i
        del counter


@zray.remote(resources={"left": 1})
def shout(text):
    print(text)
    return True


def test_what_a_task_prints_on_another_node_reaches_the_driver(three_hosts, capfd):
    assert zray.get(shout.remote("HELLO-FROM-THE-LEFT-NODE"), timeout=T)
    # The output travels separately from the result: wait for it, bounded.
    deadline = time.monotonic() + T
    seen = ""
    while "HELLO-FROM-THE-LEFT-NODE" not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
        seen += capfd.readouterr().out
    assert "HELLO-FROM-THE-LEFT-NODE" in seen and "(shout pid=" in seen


BIG = 50 * 1024 * 1024 // 8     # int64s: a 50 MB array


@zray.remote(resources={"left": 1})
def make_big(n):
    return np.arange(n, dtype=np.int64)


@zray.remote(resources={"right": 1})
def digest(a):
    """What a task on the right node sees of an array: (sum, length, first, last, node)."""
    return (int(a.sum(dtype=np.int64)), len(a), int(a[0]), int(a[-1]),
            zray.get_runtime_context().get_node_id())


def expected(n, start=0):
    return (n * (2 * start + n - 1) // 2, n, start, start + n - 1)


def segments(node) -> set[str]:
    """The zray segments in that node's /dev/shm (its own: the node is a host of its own)."""
    out = node.host.run(["ls", "/dev/shm"], check=True).stdout
    return {name for name in out.split() if name.startswith("zray-")}


def wait_for(condition, what):
    deadline = time.monotonic() + T
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_large_value_made_on_one_node_is_read_on_others(three_hosts):
    left, right = three_hosts.nodes[1], three_hosts.nodes[2]
    before_left, before_right = segments(left), segments(right)
    ref = make_big.remote(BIG)                        # stored on the left host
    value = zray.get(ref, timeout=T)                  # by the driver, on the head's host
    assert np.array_equal(value, np.arange(BIG, dtype=np.int64))
    *seen, node = zray.get(digest.remote(ref), timeout=T)   # by a task on the right host
    assert tuple(seen) == expected(BIG) and node == right_node()
    made_left = segments(left) - before_left
    assert len(made_left) == 1 and segments(right) - before_right == made_left, \
        "the right node pulled the left node's segment, under its name"
    del value, ref
    wait_for(lambda: not (segments(left) | segments(right)) & made_left,
             "the segment and its copy were freed with the last reference")


def test_a_large_value_of_the_driver_reaches_a_task_on_another_node(three_hosts):
    right = three_hosts.nodes[2]
    before = segments(right)
    array = np.arange(BIG, dtype=np.int64) + 7
    by_value = digest.remote(array)                   # an argument stored with the task
    put = zray.put(array)
    by_ref = digest.remote(put)                       # a reference the task resolves
    for ref in (by_value, by_ref):
        *seen, node = zray.get(ref, timeout=T)
        assert tuple(seen) == expected(BIG, 7) and node == right_node()
    del put, by_value, by_ref
    wait_for(lambda: segments(right) <= before, "the copies on the right node were freed")


def right_node():
    return zray.get(where.options(resources={"right": 1}).remote(), timeout=T)


@zray.remote(resources={"doomed": 1})
def make_big_doomed(n):
    return np.arange(n, dtype=np.int64)


def test_a_value_whose_node_died_is_pulled_from_a_copy(three_hosts):
    """The node that made a value dies; the driver's node pulled a copy (the result came
    to its owner there): a task on a third node needing the value gets it from that copy
    (it failed with ObjectLostError, as no node but the dead one was asked)."""
    doomed = three_hosts.add_node(num_cpus=1, resources={"doomed": 1})
    ref = make_big_doomed.remote(BIG)
    assert len(zray.get(ref, timeout=T)) == BIG
    three_hosts.remove_node(doomed)
    wait_for(lambda: len(node_ips()) == 3, "the doomed node is listed dead")
    assert zray.get(digest.remote(ref), timeout=T)[:4] == expected(BIG)


# -- scheduling strategies and placement groups across hosts ---------------------------
from zray.util.placement_group import (  # noqa: E402
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from zray.util.scheduling_strategies import (  # noqa: E402
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)


@zray.remote
def where_slowly(seconds: float) -> str:
    time.sleep(seconds)
    return zray.get_runtime_context().get_node_id()


def test_spread_puts_a_burst_on_every_node(three_hosts):
    ips = node_ips()
    refs = [where_slowly.options(scheduling_strategy="SPREAD").remote(0.2) for _ in range(6)]
    assert set(zray.get(refs, timeout=T)) == set(ips)


def test_a_busy_nodes_queue_overflows_to_nodes_with_room(three_hosts):
    """Plain tasks (no resources but a CPU) submitted in a burst on a 1-CPU node: past
    its overflow threshold they go to the other nodes, which have room."""
    here = zray.get_runtime_context().get_node_id()
    started = time.monotonic()
    nodes = zray.get([where_slowly.remote(0.3) for _ in range(12)], timeout=T)
    assert here in nodes and len(set(nodes)) == 3, nodes
    assert time.monotonic() - started < 12 * 0.3


def test_node_affinity_runs_tasks_and_actors_on_the_named_node(three_hosts):
    for node_id in node_ips():
        hard = NodeAffinitySchedulingStrategy(node_id, soft=False)
        assert zray.get(where.options(scheduling_strategy=hard).remote(), timeout=T) == node_id
        counter = Counter.options(resources={}, scheduling_strategy=hard).remote()
        assert zray.get(counter.add.remote(1), timeout=T) == (1, node_id)
        del counter


def test_node_affinity_to_a_node_that_is_not_there(three_hosts):
    gone = "ab" * 16
    hard = NodeAffinitySchedulingStrategy(gone, soft=False)
    with pytest.raises(zray.exceptions.TaskUnschedulableError, match="NodeAffinity"):
        zray.get(where.options(scheduling_strategy=hard).remote(), timeout=T)
    soft = NodeAffinitySchedulingStrategy(gone, soft=True)
    assert zray.get(where.options(scheduling_strategy=soft).remote(), timeout=T) in node_ips()
    # Hard affinity to a live node that can never run it ("left" is on another node).
    here = zray.get_runtime_context().get_node_id()
    with pytest.raises(zray.exceptions.TaskUnschedulableError):
        zray.get(where.options(resources={"left": 1}, scheduling_strategy=NodeAffinitySchedulingStrategy(
            here, soft=False)).remote(), timeout=T)


def test_strict_spread_puts_each_bundle_on_a_node_of_its_own(three_hosts):
    pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
    too_many = placement_group([{"CPU": 1}] * 4, strategy="STRICT_SPREAD")
    try:
        assert pg.wait(T)
        table = placement_group_table(pg)
        assert table["state"] == "CREATED"
        assert set(table["bundles_to_node_id"].values()) == set(node_ips())
        for i, node_id in table["bundles_to_node_id"].items():
            in_bundle = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i)
            assert zray.get(where.options(scheduling_strategy=in_bundle).remote(), timeout=T) == node_id
        assert not too_many.wait(1)
        assert placement_group_table(too_many)["state"] == "PENDING"
        assert zray.available_resources().get("CPU", 0) == 0   # all three set aside
    finally:
        remove_placement_group(pg)
        remove_placement_group(too_many)
    wait_for(lambda: zray.available_resources().get("CPU") == 3, "the bundles' CPUs came back")


def test_an_actor_in_a_bundle_on_another_node_ends_with_its_group(three_hosts):
    pg = placement_group([{"CPU": 1, "right": 1}], strategy="STRICT_PACK")
    assert zray.get(pg.ready(), timeout=T) == pg
    right = placement_group_table(pg)["bundles_to_node_id"][0]
    counter = Counter.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
    assert zray.get(counter.add.remote(2), timeout=T) == (2, right)
    remove_placement_group(pg)
    with pytest.raises(zray.exceptions.ActorDiedError, match="placement group"):
        zray.get(counter.add.remote(1), timeout=T)
    wait_for(lambda: zray.available_resources().get("right") == 1, "'right' came back")


# -- node failure ----------------------------------------------------------------------
@zray.remote(resources={"flaky": 1})
def flaky_node(seconds: float) -> str:
    time.sleep(seconds)
    return zray.get_runtime_context().get_node_id()


def _running_on(node_id: str, n: int) -> bool:
    return any(x["NodeID"] == node_id and x["Load"].get("running", 0) >= n for x in zray.nodes())


def _node_id(node) -> str:
    """The node's id, once the head lists it alive (add_node may return before: it counts
    live nodes, and a SIGKILLed one still counts until its heartbeats are missed)."""
    found: list = []
    wait_for(lambda: found.extend(x["NodeID"] for x in zray.nodes()
                                  if x["NodeManagerAddress"] == node.address and x["Alive"])
             or found, f"the node at {node.address} is listed")
    return found[0]


def test_tasks_of_a_dead_node_run_again_elsewhere_or_fail_with_node_died(three_hosts):
    doomed = three_hosts.add_node(num_cpus=2, resources={"flaky": 2})
    retried = flaky_node.remote(3)
    lost = flaky_node.options(max_retries=0).remote(3)
    wait_for(lambda: _running_on(_node_id(doomed), 2), "both tasks run on the doomed node")
    spare = three_hosts.add_node(num_cpus=1, resources={"flaky": 1})
    three_hosts.remove_node(doomed)
    with pytest.raises(zray.exceptions.NodeDiedError, match="no retries left"):
        zray.get(lost, timeout=T)
    assert zray.get(retried, timeout=T) == _node_id(spare)
    _remove(three_hosts, spare)


def _remove(cluster, node) -> None:
    """Stop a node the way `zray stop` does; the head lists it dead at once."""
    node_id = _node_id(node)
    cluster.remove_node(node, allow_graceful=True)
    wait_for(lambda: node_id not in node_ips(), "the stopped node is listed dead")


@zray.remote(resources={"flaky": 1})
class Survivor:
    def __init__(self):
        self.n = 0

    def add(self):
        self.n += 1
        return self.n, zray.get_runtime_context().get_node_id()

    def slow(self, seconds):
        time.sleep(seconds)


def test_actors_of_a_dead_node_restart_elsewhere_or_die(three_hosts):
    doomed = three_hosts.add_node(num_cpus=1, resources={"flaky": 2})
    keeps = Survivor.options(max_restarts=1).remote()
    dies = Survivor.remote()
    assert zray.get(keeps.add.remote(), timeout=T) == (1, _node_id(doomed))
    assert zray.get(dies.add.remote(), timeout=T) == (1, _node_id(doomed))
    in_flight = keeps.slow.remote(60)
    spare = three_hosts.add_node(num_cpus=1, resources={"flaky": 1})
    three_hosts.remove_node(doomed)
    with pytest.raises(zray.exceptions.ActorDiedError, match="died"):
        zray.get(in_flight, timeout=T)     # max_task_retries=0: not run again
    assert zray.get(keeps.add.remote(), timeout=T) == (1, _node_id(spare))   # a new instance
    with pytest.raises(zray.exceptions.ActorDiedError, match=r"node .* died"):
        zray.get(dies.add.remote(), timeout=T)
    _remove(three_hosts, spare)


# -- a job ends with its driver, on every node ------------------------------------------
SECOND_DRIVER = '''
import sys, time, zray
zray.init(address=sys.argv[1])

@zray.remote(resources={"right": 0.01}, num_cpus=0)
class Named:
    def ping(self):
        return "pong"

a = Named.options(name="job_" + sys.argv[2], namespace="jobs").remote()
d = Named.options(name="kept_" + sys.argv[2], namespace="jobs", lifetime="detached").remote()
assert zray.get([a.ping.remote(), d.ping.remote()]) == ["pong", "pong"]
print("ready", flush=True)
if sys.argv[2] == "killed":
    time.sleep(600)
'''


def _has_actor(name: str) -> bool:
    try:
        zray.get_actor(name, namespace="jobs")
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("how", ["exits", "killed"])
def test_a_drivers_actors_on_other_nodes_end_with_it(three_hosts, tmp_path, how):
    import sys
    script = tmp_path / "second_driver.py"
    script.write_text(SECOND_DRIVER)
    proc = subprocess.Popen([sys.executable, str(script), three_hosts.address, how],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert _has_actor("job_" + how)
        if how == "killed":
            proc.kill()
        assert proc.wait(T) in (0, -9)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    wait_for(lambda: not _has_actor("job_" + how), "the job's actor ended with its driver")
    kept = zray.get_actor("kept_" + how, namespace="jobs")
    assert zray.get(kept.ping.remote(), timeout=T) == "pong"   # detached: it lives on
    zray.kill(kept)


def test_a_groups_bundles_on_a_dead_node_are_set_aside_again_elsewhere(three_hosts):
    doomed = three_hosts.add_node(num_cpus=1, resources={"flaky": 1})
    pg = placement_group([{"flaky": 1}], strategy="PACK")
    try:
        assert pg.wait(T)
        assert placement_group_table(pg)["bundles_to_node_id"][0] == _node_id(doomed)
        in_pg = PlacementGroupSchedulingStrategy(pg, 0)
        survivor = Survivor.options(max_restarts=1, scheduling_strategy=in_pg).remote()
        assert zray.get(survivor.add.remote(), timeout=T) == (1, _node_id(doomed))
        three_hosts.remove_node(doomed)
        spare = three_hosts.add_node(num_cpus=1, resources={"flaky": 1})
        wait_for(lambda: placement_group_table(pg)["state"] == "CREATED"
                 and placement_group_table(pg)["bundles_to_node_id"].get(0) == _node_id(spare),
                 "the bundle set aside on the new node")
        assert zray.get(survivor.add.remote(), timeout=T) == (1, _node_id(spare))
    finally:
        remove_placement_group(pg)
    _remove(three_hosts, spare)


@zray.remote(resources={"right": 0.01}, num_cpus=0)
class Slow:
    def nap(self, seconds):
        time.sleep(seconds)
        return seconds


def test_cancel_of_a_queued_call_to_an_actor_on_another_node(three_hosts):
    slow = Slow.remote()
    zray.get(slow.nap.remote(0), timeout=T)
    running = slow.nap.remote(1.0)
    queued = slow.nap.remote(0.5)
    zray._runtime.current().flush_sync()   # both sent: the cancel must travel to the node
    zray.cancel(queued)
    with pytest.raises(zray.exceptions.TaskCancelledError):
        zray.get(queued, timeout=T)
    assert zray.get(running, timeout=T) == 1.0   # a running sync call runs on, as in Ray


@zray.remote(resources={"left": 1})
def big_items(n, size):
    """Generator on the left host: stored items (in its /dev/shm) as they are made."""
    for i in range(n):
        yield np.arange(size, dtype=np.int64) + i


@zray.remote(resources={"right": 1})
def sum_items(n, size):
    """On the right host, the owner of a generator running on the left host."""
    return [int(zray.get(ref, timeout=T)[-1]) for ref in big_items.remote(n, size)]


def test_generator_items_cross_nodes_to_their_owner(three_hosts):
    size = 2 * 1024 * 1024 // 8   # 2 MB items: pulled between hosts
    items = [zray.get(ref, timeout=T) for ref in big_items.remote(3, size)]   # the driver's
    assert [tuple(map(int, (a[0], a[-1], len(a)))) for a in items] == \
        [(i, size - 1 + i, size) for i in range(3)]
    assert zray.get(sum_items.remote(3, size), timeout=T) == [size - 1 + i for i in range(3)]
    # With backpressure the left host's generator waits for this driver's acks.
    paced = big_items.options(_generator_backpressure_num_objects=1).remote(4, 8)
    assert [int(zray.get(ref, timeout=T)[0]) for ref in paced] == [0, 1, 2, 3]
    counter = Counter.remote()      # on the right host
    assert zray.get(counter.add.remote(1), timeout=T)[0] == 1
    assert zray.get(list(counter.upto.remote(3)), timeout=T) == [1, 2, 3]


@zray.remote(num_cpus=0, resources={"right": 0.01})
class RightChild:
    def ping(self):
        return "pong"


@zray.remote(num_cpus=0, resources={"left": 0.01})
class LeftParent:
    def __init__(self):
        self.child = RightChild.remote()

    def children(self):
        return [self.child]


def test_an_actors_child_on_another_node_dies_with_it(three_hosts):
    # As in Ray: the creator's node tells the other nodes (OWNER_GONE) when it dies.
    parent = LeftParent.remote()
    child = zray.get(parent.children.remote(), timeout=T)[0]
    assert zray.get(child.ping.remote(), timeout=T) == "pong"
    zray.kill(parent)

    def dead():
        try:
            zray.get(child.ping.remote(), timeout=T)
            return False
        except zray.exceptions.ActorDiedError as exc:
            return "owner" in str(exc)
    wait_for(dead, "the child on the right host died with its parent on the left one")
