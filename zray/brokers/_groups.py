"""Placement groups at the head: where each bundle goes (a pure function of the bundles,
the strategy and the nodes' free resources) and each group's record, from PENDING to
CREATED (every node it asked set its bundles aside) to REMOVED; RESCHEDULING while the
bundles of a node that died are set aside again elsewhere.

A node sets a bundle aside by taking its resources and offering them again under the
bundle's names (_strategies.bundle_resources); tasks and actors in the group ask for
those names, so the ordinary placement finds the node that holds their bundle."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from .. import _strategies as ST
from .._protocol import RESERVE, UNRESERVE
from ._placement import NodeView
from ._resources import ROUNDING

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class Group:
    """One placement group as the head keeps it."""
    __slots__ = ("pg_id", "name", "namespace", "bundles", "strategy", "state", "nodes",
                 "waiting")

    def __init__(self, pg_id: bytes, name: str, namespace: str, bundles: list,
                 strategy: str) -> None:
        self.pg_id, self.name, self.namespace = pg_id, name, namespace
        self.bundles, self.strategy = bundles, strategy
        self.state = "PENDING"
        self.nodes: dict[int, bytes] = {}      # bundle index -> node id (once planned)
        self.waiting: dict[bytes, list] = {}   # node asked to reserve -> bundle indexes

    def resources_on(self, node_id: bytes) -> dict:
        """What the node offers for this group once it set its bundles aside."""
        out: dict = {}
        hex_id = self.pg_id.hex()
        for index, where in self.nodes.items():
            if where == node_id:
                for k, v in ST.bundle_resources(hex_id, index, self.bundles[index]).items():
                    out[k] = out.get(k, 0.0) + v
        return out

    def as_dict(self) -> dict:
        """As placement_group_table() shows it (Ray's keys)."""
        return {"placement_group_id": self.pg_id.hex(), "name": self.name,
                "bundles": dict(enumerate(self.bundles)),
                "bundles_to_node_id": {i: n.hex() for i, n in sorted(self.nodes.items())},
                "strategy": self.strategy, "state": self.state}


def _fits(bundle: Mapping[str, float], free: Mapping[str, float]) -> bool:
    return all(free.get(k, 0.0) >= v - ROUNDING for k, v in bundle.items() if v)


def _take(bundle: Mapping[str, float], free: dict) -> None:
    for k, v in bundle.items():
        if v:
            free[k] = free.get(k, 0.0) - v


def plan(bundles: list, strategy: str, nodes: Iterable[NodeView],
         placed: dict[int, bytes] | None = None) -> dict[int, bytes] | None:
    """bundle index -> node id for every bundle not in `placed` (those already set aside,
    on live nodes: a group that lost a node plans the rest), fitting what the nodes have
    free now; None if the strategy cannot be met now.

    STRICT_PACK: all on one node. PACK: on one node if one holds them all, else as few
    as it can (each bundle where others already went, if it fits). STRICT_SPREAD: each on
    a node of its own. SPREAD: on nodes of their own as far as they go, then anywhere."""
    placed = placed or {}
    live = sorted((n for n in nodes if n.alive), key=lambda n: n.node_id)
    free = {n.node_id: dict(n.available) for n in live}
    todo = [i for i in range(len(bundles)) if i not in placed]
    order = sorted(todo, key=lambda i: -sum(bundles[i].values()))
    if strategy in ("PACK", "STRICT_PACK"):
        total: dict = {}
        for i in todo:
            for k, v in bundles[i].items():
                total[k] = total.get(k, 0.0) + v
        homes = set(placed.values())
        whole = sorted((n.node_id for n in live if _fits(total, free[n.node_id])
                        and (strategy == "PACK" or not homes or n.node_id in homes)),
                       key=lambda nid: nid not in homes)
        if whole:
            return dict.fromkeys(todo, whole[0])
        if strategy == "STRICT_PACK":
            return None
    out: dict[int, bytes] = {}
    for i in order:
        used = set(out.values()) | set(placed.values())
        fit = [nid for nid in free if _fits(bundles[i], free[nid])]
        if strategy == "PACK":
            pick = [nid for nid in fit if nid in used] or fit
        elif strategy == "STRICT_SPREAD":
            pick = [nid for nid in fit if nid not in used]
        else:   # SPREAD
            pick = [nid for nid in fit if nid not in used] or fit
        if not pick:
            return None
        # The node with the most free CPU among the candidates (then the lowest id).
        nid = min(pick, key=lambda n: (-free[n].get("CPU", 0.0), n))
        out[i] = nid
        _take(bundles[i], free[nid])
    return out


def check_bundles(bundles: object, strategy: object) -> None:
    """ValueError naming what is wrong with a placement group's bundles or strategy."""
    if strategy not in STRATEGIES:
        raise ValueError(f"Invalid placement group strategy {strategy!r}. Supported strategies "
                         f"are: {', '.join(STRATEGIES)}.")
    if not isinstance(bundles, list) or not bundles:
        raise ValueError("Bundles must be a non-empty list of resource dictionaries. For "
                         'example: [{"CPU": 1.0}, {"GPU": 1.0}]. Got '
                         f"{'an empty list' if bundles == [] else repr(bundles)} instead.")
    for b in bundles:
        if not isinstance(b, dict):
            raise ValueError(f"Each bundle must be a dict of resource name -> amount, got {b!r}.")
        for k, v in b.items():
            if not isinstance(k, str) or not isinstance(v, (int, float)) or isinstance(v, bool) \
                    or v < 0:
                raise ValueError(f"Bundle {b!r}: resource {k!r} must be a name with a "
                                 f"non-negative number, got {v!r}.")
        if not any(v > 0 for v in b.values()):
            raise ValueError(f"Bundles cannot be an empty dictionary or resources with only 0 "
                             f"values. Bundles: {bundles}")


class Groups:
    """The head's placement groups: planned on the nodes' free resources, reserved by
    RESERVE/RESERVED with each node (the bundles a node could not take are planned
    again at the next tick, among the nodes the others went to), removed by UNRESERVE.

    store: the ControlStore (its node records learn the bundles' resources);
    send(ident, mtype, *fields); created(): a group's bundles are ready (the head
    places held work again)."""

    def __init__(self, store, send, created) -> None:
        self.store, self.send, self.created = store, send, created
        self.groups: dict[bytes, Group] = {}
        self._next_tick = 0.0

    # -- control calls (from clients, through their node) ----------------------------
    def create(self, args: list) -> None:
        pg_id, name, namespace, bundles, strategy, owner = args
        if type(pg_id) is not bytes or type(name) is not str or type(owner) is not bytes:
            raise ValueError("pg_create wants pg_id, name, namespace, bundles, strategy, owner")
        check_bundles(bundles, strategy)
        if name and any(g.name == name and g.namespace == namespace and g.state != "REMOVED"
                        for g in self.groups.values()):
            raise ValueError(f"A placement group named {name!r} already exists in namespace "
                             f"{namespace!r}.")
        bundles = [{k: float(v) for k, v in b.items() if v} for b in bundles]
        self.groups[pg_id] = Group(pg_id, name, namespace, bundles, strategy)
        self.tick()

    def remove(self, args: list) -> None:
        group = self.groups.get(args[0]) if type(args[0]) is bytes else None
        if group is None or group.state == "REMOVED":
            return
        self._unreserve(group)
        group.state = "REMOVED"

    def table(self, args: list) -> dict:
        if args and type(args[0]) is bytes:
            group = self.groups.get(args[0])
            return group.as_dict() if group is not None else {}
        return {g.pg_id.hex(): g.as_dict() for g in self.groups.values()}

    def get(self, args: list) -> list | None:
        name, namespace = args
        for g in self.groups.values():
            if g.name == name and g.namespace == namespace and g.state != "REMOVED":
                return [g.pg_id, g.bundles, g.strategy]
        raise ValueError(f"Failed to look up placement group with name {name!r} in namespace "
                         f"{namespace!r}: no placement group has that name.")

    def removed(self, res: Mapping) -> bool:
        """True if a request names resources of a removed placement group."""
        hex_id = ST.group_of(res)
        try:
            group = self.groups.get(bytes.fromhex(hex_id)) if hex_id is not None else None
        except ValueError:
            return False
        return group is not None and group.state == "REMOVED"

    # -- reservation ---------------------------------------------------------------
    def tick(self, now: float | None = None, every: float = 0.0) -> None:
        """Plan and ask the nodes for the groups that wait: at creation (now None) and
        on the head's timer, at most once per `every` seconds."""
        if now is not None:
            if now < self._next_tick:
                return
            self._next_tick = now + every
        for group in self.groups.values():
            if group.state in ("PENDING", "RESCHEDULING") and not group.waiting:
                new = plan(group.bundles, group.strategy, self.store.views(), group.nodes)
                if new is None:
                    continue
                group.nodes.update(new)
                asks: dict[bytes, list] = {}
                for index, node_id in sorted(new.items()):
                    asks.setdefault(node_id, []).append([index, group.bundles[index]])
                for node_id, bundles in asks.items():
                    node = self.store.nodes[node_id]
                    group.waiting[node_id] = [index for index, _ in bundles]
                    node.took({k: v for _, b in bundles for k, v in b.items()})
                    self.send(node.ident, RESERVE, group.pg_id, bundles)

    def on_reserved(self, ident: bytes, f: list) -> None:
        """A node set the bundles asked of it aside, or could not (they are planned
        again at the next tick, the others kept): CREATED once every bundle is."""
        node = self.store.by_ident.get(ident)
        group = self.groups.get(f[0]) if type(f[0]) is bytes else None
        if node is None or group is None or node.node_id not in group.waiting:
            return
        asked = group.waiting.pop(node.node_id)
        if f[1]:
            node.resources = {**node.resources, **group.resources_on(node.node_id)}
        else:
            for index in asked:
                group.nodes.pop(index, None)
        if group.waiting:
            return
        if group.state == "REMOVED":
            self._unreserve(group)   # (a removed group's late yes)
        elif len(group.nodes) == len(group.bundles):
            group.state = "CREATED"
            self.created()

    def node_died(self, node_id: bytes) -> None:
        """A node died: the bundles it held are planned again elsewhere (RESCHEDULING,
        as Ray's), the others stay where they are."""
        for group in self.groups.values():
            if group.state == "REMOVED":
                continue
            group.waiting.pop(node_id, None)
            lost = [i for i, n in group.nodes.items() if n == node_id]
            for index in lost:
                del group.nodes[index]
            if lost and group.state == "CREATED":
                group.state = "RESCHEDULING"

    def _unreserve(self, group: Group) -> None:
        hex_id = group.pg_id.hex()
        for node_id in set(group.nodes.values()):
            node = self.store.nodes.get(node_id)
            if node is None:
                continue
            node.resources = {k: v for k, v in node.resources.items() if not k.endswith(hex_id)}
            self.send(node.ident, UNRESERVE, group.pg_id)
