"""The head's choice of a node for a task or an actor: a pure function of its demand,
the node table (totals, free resources, load from heartbeats), where its large
arguments live and which nodes to avoid. Property-tested in tests/test_placement.py."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ._resources import ROUNDING


@dataclass(frozen=True)
class NodeView:
    """What the head knows of a node when it places work there."""
    node_id: bytes
    total: Mapping[str, float]           # what it offers (NODE_HELLO)
    available: Mapping[str, float]       # free at its last heartbeat (CPU may be < 0: lent)
    queued: int = 0                      # tasks waiting in its queue
    running: int = 0                     # tasks running on its workers
    alive: bool = True


def feasible(demand: Mapping[str, float], total: Mapping[str, float]) -> bool:
    """True if a node offering `total` could ever run it."""
    return all(total.get(k, 0.0) >= v for k, v in demand.items() if v)


def fits(demand: Mapping[str, float], available: Mapping[str, float]) -> bool:
    """True if it could start there now."""
    return all(available.get(k, 0.0) >= v - ROUNDING for k, v in demand.items() if v)


def load_per_cpu(node: NodeView) -> float:
    """Queued and running tasks per CPU (a node without CPUs counts as one: its load
    still orders it among the others)."""
    return (node.queued + node.running) / max(node.total.get("CPU", 0.0), 1.0)


def _candidates(demand: Mapping[str, float], nodes: Iterable[NodeView],
                exclude: Iterable[bytes]) -> list[NodeView]:
    """The live, feasible, not excluded nodes; only those it fits now if there are any."""
    skip = set(exclude)
    ok = [n for n in nodes if n.alive and n.node_id not in skip and feasible(demand, n.total)]
    now = [n for n in ok if fits(demand, n.available)]
    return now or ok


def pick_node(demand: Mapping[str, float], nodes: Iterable[NodeView],
              arg_bytes: Mapping[bytes, int] | None = None,
              exclude: Iterable[bytes] = ()) -> bytes | None:
    """The node to run a task or actor needing `demand`, or None if no live node
    outside `exclude` could ever run it (the caller keeps it pending).

    arg_bytes: node_id -> bytes of the task's arguments stored on that node (as far
    as the caller knows; missing nodes hold none). Policy: feasible nodes only; those
    it fits now first; among them the most argument bytes local (moving them costs
    more than a queue), then the least load per CPU, then the lowest node id."""
    pool = _candidates(demand, nodes, exclude)
    if not pool:
        return None
    local = arg_bytes or {}
    return min(pool, key=lambda n: (-local.get(n.node_id, 0), load_per_cpu(n), n.node_id)).node_id


class Spread:
    """scheduling_strategy="SPREAD": the least loaded node it fits (now if any fits
    now), taking turns among equally loaded ones (round robin by node id), so that a
    burst of work lands on every node. Arguments' locality is ignored, as in Ray."""

    def __init__(self) -> None:
        self._last: bytes | None = None    # the node chosen last

    def pick(self, demand: Mapping[str, float], nodes: Iterable[NodeView],
             exclude: Iterable[bytes] = ()) -> bytes | None:
        pool = _candidates(demand, nodes, exclude)
        if not pool:
            return None
        least = min(load_per_cpu(n) for n in pool)
        ties = sorted(n.node_id for n in pool if load_per_cpu(n) == least)
        after = [i for i in ties if self._last is not None and i > self._last]
        self._last = after[0] if after else ties[0]
        return self._last


def place_batch(demands: list[Mapping[str, float]], nodes: Iterable[NodeView],
                exclude: Iterable[bytes] = ()) -> list[bytes | None]:
    """pick_node for many tasks at once (none with arguments stored anywhere), each
    decision seeing the ones before it (the node it chose has that much less free and
    one more task): the same choices as pick_node one by one with the node's free
    resources and load updated in between, in O(log n) a task instead of O(n).

    Per resource shape, a heap of (does not fit now, load per CPU, node id, version)
    over the shape's feasible nodes. A choice only makes its node worse (less free, more
    load), so an entry whose node changed since (an older version) is re-keyed lazily
    when it reaches the top: a current top is the best node."""
    import heapq
    skip = set(exclude)
    live = [n for n in nodes if n.alive and n.node_id not in skip]
    free = {n.node_id: dict(n.available) for n in live}
    tasks = {n.node_id: n.queued + n.running for n in live}
    cpus = {n.node_id: max(n.total.get("CPU", 0.0), 1.0) for n in live}
    version = dict.fromkeys(free, 0)
    heaps: dict[tuple, list] = {}
    out: list[bytes | None] = []

    def key(demand: Mapping[str, float], nid: bytes) -> tuple:
        return (0 if fits(demand, free[nid]) else 1, tasks[nid] / cpus[nid], nid, version[nid])

    for d in demands:
        shape = tuple(sorted((k, v) for k, v in d.items() if v))
        demand = dict(shape)
        heap = heaps.get(shape)
        if heap is None:
            heap = heaps[shape] = [key(demand, n.node_id) for n in live if feasible(demand, n.total)]
            heapq.heapify(heap)
        if not heap:
            out.append(None)
            continue
        while heap[0][3] != version[heap[0][2]]:
            heapq.heapreplace(heap, key(demand, heap[0][2]))
        nid = heap[0][2]
        out.append(nid)
        f = free[nid]
        for k, v in shape:
            f[k] = f.get(k, 0.0) - v
        tasks[nid] += 1
        version[nid] += 1
        heapq.heapreplace(heap, key(demand, nid))
    return out
