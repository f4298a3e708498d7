"""scheduling_strategy, from the option to what the schedulers read.

A strategy travels inside a task's or actor's resource request, so that specs, leases,
queues and spillback carry it unchanged:

    "SPREAD"                       -> {"_spread": 1}
    NodeAffinity(node, soft=False) -> {"_node:<hex>": 1}        (soft: "_soft_node:<hex>")
    PlacementGroup(pg, index)      -> each resource R renamed R_group_<index>_<pg>
                                      (index -1: R_group_<pg>), plus bundle_group_..: 0.001
                                      (Ray's names: a bundle is resources a node set aside)

A node has no "_"-prefixed resources, so a marked request is infeasible there and goes
to the node's spillback, where `local_choice` keeps what this node may run itself (its
own affinity, SPREAD on a one-node cluster) and sends the rest to the head, whose
`head_choice` decides; the node the head picks runs it with the markers `stripped`."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

SPREAD = "_spread"
OVERFLOW = "_overflow"             # a busy node's surplus: to a node with room now, or back
NODE = "_node:"
SOFT_NODE = "_soft_node:"
DEFAULT_CPU = "_default_cpu"       # an actor's default CPU (not a strategy; kept)
# In a placement group with placement_group_capture_child_tasks: what it submits with no
# strategy goes in the same group. Zero: no node needs to offer it (kept, not a marker).
CAPTURE = "_capture"
_KEPT = (DEFAULT_CPU, CAPTURE)
BUNDLE = "bundle_group_"
BUNDLE_UNIT = 0.001                # what a task takes of its bundle's bundle_group (1000)


def apply(res: dict, strategy: Any, what: str) -> dict:
    """`res` (a resource request, as _options.resources_of made it) with `strategy` in
    it; ValueError naming the problem for a strategy zray does not know."""
    from .util.scheduling_strategies import (
        NodeAffinitySchedulingStrategy,
        PlacementGroupSchedulingStrategy,
        check_node_id,
    )
    if strategy is None or strategy == "DEFAULT":
        return res
    if strategy == "SPREAD":
        return {**res, SPREAD: 1.0}
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        key = (SOFT_NODE if strategy.soft else NODE) + check_node_id(strategy.node_id)
        return {**res, key: 1.0}
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        pg = strategy.placement_group
        if pg is None:
            return res
        out = in_bundle(res, pg.id.hex(), pg.bundle_specs, strategy.placement_group_bundle_index,
                        what)
        if strategy.placement_group_capture_child_tasks:
            out[CAPTURE] = 0.0
        return out
    raise ValueError(f"Invalid scheduling_strategy value {strategy!r} for {what}. Valid values "
                     f'are "DEFAULT", "SPREAD", PlacementGroupSchedulingStrategy and '
                     f"NodeAffinitySchedulingStrategy (zray.util.scheduling_strategies).")


def in_bundle(res: dict, pg_hex: str, bundles: list, index: Any, what: str) -> dict:
    """`res` renamed to the resources of bundle `index` (-1: any bundle) of a placement
    group; ValueError if the index is not one of its bundles or no bundle can hold it."""
    if not isinstance(index, int) or isinstance(index, bool) or not -1 <= index < len(bundles):
        raise ValueError(f"placement group bundle index {index!r} is invalid for {what}. Valid "
                         f"placement group indexes: 0-{len(bundles) - 1} (or -1: any bundle).")
    need = {k: v for k, v in res.items() if not k.startswith("_")}
    # (An actor's default CPU is for placing it on a node: in a bundle it needs none.)
    choices = bundles if index == -1 else [bundles[index]]
    if not any(all(b.get(k, 0.0) >= v for k, v in need.items()) for b in choices):
        raise ValueError(f"Cannot schedule {what} with the placement group because the resource "
                         f"request {need} cannot fit into any bundles for the placement group, "
                         f"{bundles}.")
    return _in_group(need, pg_hex if index == -1 else f"{index}_{pg_hex}")


def _in_group(need: Mapping[str, float], tag: str) -> dict:
    """A request renamed to a bundle's resources (tag: "<index>_<pg>", or "<pg>": any)."""
    out = {f"{k}_group_{tag}": v for k, v in need.items()}
    out[f"{BUNDLE}{tag}"] = BUNDLE_UNIT
    return out


def group_of(res: Mapping[str, Any]) -> str | None:
    """The placement group (hex id) a request asks bundles of, if any."""
    for k in res:
        if k.startswith(BUNDLE):
            return k.rsplit("_", 1)[-1]
    return None


def bundle_resources(pg_hex: str, index: int, bundle: Mapping[str, float]) -> dict:
    """What a node offers once it set bundle `index` of a placement group aside: each
    resource under its bundle's name and its group's name, and the bundle_group units."""
    out: dict = {}
    for k, v in bundle.items():
        if v:
            out[f"{k}_group_{index}_{pg_hex}"] = float(v)
            out[f"{k}_group_{pg_hex}"] = float(v)
    out[f"{BUNDLE}{index}_{pg_hex}"] = 1000 * BUNDLE_UNIT
    out[f"{BUNDLE}{pg_hex}"] = 1000 * BUNDLE_UNIT
    return out


def is_group_resource(name: str) -> bool:
    """True for a placement group's renamed resources (hidden from cluster_resources(),
    as in Ray)."""
    return "_group_" in name


def marked(res: Mapping[str, Any]) -> bool:
    """True if a request carries a strategy marker."""
    return any(k[0] == "_" and k not in _KEPT for k in res)


def stripped(res: Mapping[str, Any]) -> dict:
    """The request without strategy markers (the node it was placed on runs it)."""
    return {k: v for k, v in res.items() if k[0] != "_" or k in _KEPT}


def inherited(res: dict) -> dict:
    """`res` of work submitted with no strategy: in the placement group of the task or
    actor submitting it if that one captures its child tasks (any bundle), else as is."""
    from ._context import current_context
    ctx = current_context()
    parent = ctx.resources if ctx is not None else None
    if not parent or CAPTURE not in parent:
        return res
    pg_hex = group_of(parent)
    if pg_hex is None:
        return res
    out = _in_group({k: v for k, v in res.items() if not k.startswith("_")}, pg_hex)
    out[CAPTURE] = 0.0
    return out


def affinity(res: Mapping[str, Any]) -> tuple[str | None, bool]:
    """(node id hex, soft) of a node affinity marker; (None, False) without one."""
    for k in res:
        if k.startswith(NODE):
            return k[len(NODE):], False
        if k.startswith(SOFT_NODE):
            return k[len(SOFT_NODE):], True
    return None, False


LOCAL, HEAD, FAIL = "local", "head", "fail"


def local_choice(res: Mapping[str, Any], node_hex: str, others_alive: bool,
                 feasible_here: Callable[[dict], bool]) -> str:
    """Where a request this node cannot run as it is goes: LOCAL (run it here without
    its markers), HEAD (the head places it) or FAIL (hard affinity to this node, which
    could never run it)."""
    if not marked(res):
        return HEAD
    target, soft = affinity(res)
    plain = stripped(res)
    if target is not None and target == node_hex:
        if feasible_here(plain):
            return LOCAL
        return HEAD if soft else FAIL
    if SPREAD in res and not others_alive and feasible_here(plain):
        return LOCAL
    return HEAD
