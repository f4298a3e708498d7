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
