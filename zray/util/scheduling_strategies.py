"""Scheduling strategies, as ray.util.scheduling_strategies: pass one as
`scheduling_strategy=` to @remote or .options() (or the strings "DEFAULT", "SPREAD")."""
from __future__ import annotations

from typing import Any

__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"]


def check_node_id(node_id: Any) -> str:
    """The node id, lowercase; ValueError if it is not a hex string."""
    if not isinstance(node_id, str):
        raise ValueError(f"Invalid node_id {node_id!r}: a node id is a hex string "
                         f"(zray.nodes()[i]['NodeID']).")
    try:
        bytes.fromhex(node_id)
    except ValueError:
        raise ValueError(f"Invalid node_id {node_id!r}. Node ID must be a valid hex string; "
                         f"zray.nodes() lists the cluster's nodes and their ids.") from None
    return node_id.lower()


class NodeAffinitySchedulingStrategy:
    """Run on the node `node_id` (hex, as zray.nodes()' NodeID and
    get_runtime_context().get_node_id()). soft=False: if that node is dead, unknown or
    can never run the work, it fails with TaskUnschedulableError (actors:
    ActorUnschedulableError); soft=True: it runs elsewhere instead."""

    def __init__(self, node_id: str, soft: bool, _spill_on_unavailable: bool = False,
                 _fail_on_unavailable: bool = False) -> None:
        self.node_id = check_node_id(node_id)
        self.soft = bool(soft)
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def __repr__(self) -> str:
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


class PlacementGroupSchedulingStrategy:
    """Run in a bundle of a placement group: bundle `placement_group_bundle_index`, or
    any of its bundles (-1). The task's or actor's resources come out of the bundle."""

    def __init__(self, placement_group: Any, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks: bool | None = None) -> None:
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self) -> str:
        pg = self.placement_group
        return (f"PlacementGroupSchedulingStrategy({pg!r}, "
                f"placement_group_bundle_index={self.placement_group_bundle_index})")
