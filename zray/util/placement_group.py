"""Placement groups, as ray.util.placement_group: bundles of resources set aside on
the cluster's nodes, all at once, for the tasks and actors scheduled into them with
PlacementGroupSchedulingStrategy.

    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    zray.get(pg.ready())          # once every bundle is set aside
    a = A.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
    remove_placement_group(pg)    # its actors end; its resources go back

Strategies: PACK (as few nodes as it can), SPREAD (as many as it can), STRICT_PACK
(one node), STRICT_SPREAD (a node per bundle). A group waits (PENDING) until the
cluster's free resources can hold it."""
from __future__ import annotations

import os
from typing import Any

from .._context import runtime_or_init

__all__ = ["PlacementGroup", "PlacementGroupID", "get_current_placement_group",
           "get_placement_group", "placement_group", "placement_group_table",
           "remove_placement_group"]

_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class PlacementGroupID:
    """A placement group's id (18 random bytes, as Ray's)."""
    __slots__ = ("_bytes",)

    def __init__(self, binary: bytes) -> None:
        self._bytes = binary

    def binary(self) -> bytes:
        return self._bytes

    def hex(self) -> str:
        return self._bytes.hex()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroupID) and other._bytes == self._bytes

    def __hash__(self) -> int:
        return hash(self._bytes)

    def __reduce__(self):
        return (PlacementGroupID, (self._bytes,))

    def __repr__(self) -> str:
        return f"PlacementGroupID({self.hex()})"


def _return_group(pg: PlacementGroup) -> PlacementGroup:
    return pg


_ready_task: Any = None


class PlacementGroup:
    """A handle to a placement group (picklable: pass it to tasks and actors)."""

    def __init__(self, id: PlacementGroupID, bundle_specs: list | None = None,
                 strategy: str = "PACK") -> None:
        self.id = id
        self.bundle_specs = [dict(b) for b in (bundle_specs or [])]
        self.strategy = strategy
        self._ready: Any = None   # the ready() ref wait() waits on (one task, not one a call)

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> Any:
        """A ref that resolves (to this group) once all its bundles are set aside."""
        global _ready_task
        from .. import remote
        from .scheduling_strategies import PlacementGroupSchedulingStrategy
        if _ready_task is None:
            _ready_task = remote(num_cpus=0, max_retries=0)(_return_group)
        return _ready_task.options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(self)).remote(self)

    def wait(self, timeout_seconds: float = 30) -> bool:
        """True once the group is created; False if it was not within the timeout."""
        from .. import wait
        if self._ready is None:
            self._ready = self.ready()
        ready, _ = wait([self._ready], timeout=timeout_seconds)
        return bool(ready)

    def __reduce__(self):
        return (PlacementGroup, (self.id, self.bundle_specs, self.strategy))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"PlacementGroup(id={self.id.hex()}, bundles={self.bundle_specs})"


def placement_group(bundles: list[dict], strategy: str = "PACK", name: str = "",
                    lifetime: str | None = None, _max_cpu_fraction_per_node: Any = None,
                    _soft_target_node_id: Any = None, bundle_label_selector: Any = None
                    ) -> PlacementGroup:
    """Ask the cluster to set `bundles` aside by `strategy`; returns at once (the
    group is created when they fit: see .ready() and .wait())."""
    from ..brokers._groups import check_bundles
    check_bundles(bundles, strategy)
    if lifetime not in (None, "detached"):
        raise ValueError(f"placement group lifetime must be None or 'detached', got {lifetime!r}.")
    if not isinstance(name, str):
        raise TypeError(f"placement group name must be a string, got {type(name).__name__}.")
    rt = runtime_or_init()
    pg_id = os.urandom(18)
    bundles = [{k: float(v) for k, v in b.items()} for b in bundles]
    rt.head_call("pg_create", [pg_id, name, rt.namespace, bundles, strategy, rt.ident])
    return PlacementGroup(PlacementGroupID(pg_id), bundles, strategy)


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Remove a group: its resources go back, its actors end, its waiting work fails."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group wants a PlacementGroup, got "
                        f"{type(placement_group).__name__}.")
    runtime_or_init().head_call("pg_remove", [placement_group.id.binary()])


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The live placement group of that name in this namespace (ValueError if none)."""
    rt = runtime_or_init()
    pg_id, bundles, strategy = rt.head_call("pg_get", [placement_group_name, rt.namespace])
    return PlacementGroup(PlacementGroupID(pg_id), bundles, strategy)


def placement_group_table(placement_group: PlacementGroup | None = None) -> dict:
    """One group's state (or every group's, by hex id): its bundles, the nodes they are
    on, its strategy and state (PENDING, CREATED, REMOVED)."""
    args = [placement_group.id.binary()] if placement_group is not None else []
    return runtime_or_init().head_call("pg_table", args)


def get_current_placement_group() -> PlacementGroup | None:
    """The placement group the calling task or actor runs in (None in a driver, or in
    work scheduled outside any group). Read from the resources it was given: a task in
    a group asks for its bundles' renamed resources (bundle_group_[<index>_]<pg>)."""
    from .._context import current_context
    from .._strategies import group_of
    ctx = current_context()
    hex_id = group_of(ctx.resources) if ctx is not None and ctx.resources else None
    if hex_id is None:
        return None
    row = runtime_or_init().head_call("pg_table", [bytes.fromhex(hex_id)])
    bundles = [row["bundles"][i] for i in sorted(row["bundles"])] if row else []
    return PlacementGroup(PlacementGroupID(bytes.fromhex(hex_id)), bundles,
                          row.get("strategy", "PACK") if row else "PACK")
