"""The head's control store: the node table (resources, load and liveness from
heartbeats), actors with their state and node, and named actors; and the control
calls clients make on it (one small method per call). Pure: times are passed in."""
from __future__ import annotations

import os

from .. import _protocol as P
from .. import _strategies as ST
from ..exceptions import ProtocolError
from ._placement import NodeView


def _count(load: dict, key: str) -> int:
    """A load figure from a heartbeat, 0 if it is not a count (a broken node's)."""
    v = load.get(key, 0)
    return int(v) if type(v) in (int, float) and v >= 0 else 0


class NodeRecord:
    __slots__ = ("node_id", "ident", "address", "resources", "available", "load", "last_seen",
                 "alive", "info", "death", "placed")

    def __init__(self, node_id: bytes, ident: bytes, address: str, resources: dict, info: dict,
                 now: float) -> None:
        self.node_id, self.ident, self.address = node_id, ident, address
        self.resources = {k: float(v) for k, v in resources.items()}
        self.available = dict(self.resources)
        self.load: dict = {}
        self.last_seen = now
        self.alive = True
        self.info = info
        self.death = ""
        self.placed = 0     # work placed here since its last heartbeat

    @property
    def ip(self) -> str:
        ip = self.info.get("ip")
        return ip if type(ip) is str else "127.0.0.1"

    @property
    def public(self) -> str:
        """Where other nodes reach it (tcp), "" for a node of an ipc-only cluster."""
        public = self.info.get("public")
        return public if type(public) is str else ""

    @property
    def port(self) -> int:
        """Its tcp port for the other nodes (0 for a node of an ipc-only cluster)."""
        tail = self.public.rpartition(":")[2]
        return int(tail) if tail.isdigit() else 0

    def view(self) -> NodeView:
        return NodeView(self.node_id, self.resources, self.available,
                        _count(self.load, "queued") + self.placed, _count(self.load, "running"),
                        self.alive)

    def took(self, demand: dict) -> None:
        """Work needing `demand` was placed here: count it until the node's next
        heartbeat says so itself (a burst then spreads instead of piling on one node)."""
        self.placed += 1
        self.available = dict(self.available)
        for k, v in demand.items():
            if v:
                self.available[k] = self.available.get(k, 0.0) - v

    def as_dict(self) -> dict:
        """The node as zray.nodes() lists it (Ray's keys)."""
        return {
            "NodeID": self.node_id.hex(), "Alive": self.alive, "alive": self.alive,
            "NodeManagerAddress": self.ip, "NodeManagerHostname": os.uname().nodename,
            "NodeManagerPort": self.port, "ObjectManagerPort": self.port,
            "ObjectStoreSocketName": self.address, "RayletSocketName": self.address,
            "MetricsExportPort": 0, "NodeName": self.ip,
            "DeathReason": 0 if self.alive else 1, "DeathReasonMessage": self.death,
            "Resources": dict(self.resources), "Labels": {}, "Load": self.load,
        }


def _amounts_ok(amounts) -> bool:
    """True if `amounts` maps resource names to numbers (free amounts may be < 0)."""
    return type(amounts) is dict and all(
        type(k) is str and (type(v) is float or type(v) is int) for k, v in amounts.items())


class ControlStore:
    def __init__(self) -> None:
        self.nodes: dict[bytes, NodeRecord] = {}
        self.by_ident: dict[bytes, NodeRecord] = {}
        self.actors: dict[bytes, dict] = {}           # actor_id -> {name, namespace, state, handle...}
        self.named: dict[tuple, bytes] = {}           # (namespace, name) -> actor_id
        self._calls = {
            "register_actor": self._register_actor, "get_actor": self._get_actor,
            "list_named_actors": self._list_named_actors, "nodes": self._nodes,
            "cluster_resources": self._cluster_resources,
            "available_resources": self._available_resources,
        }

    # -- nodes -------------------------------------------------------------------
    def node_hello(self, ident: bytes, f: list, now: float) -> None:
        # Checked here: a node id that is not bytes broke nodes() and then killed
        # the head when the node was declared dead (on a timer, outside this try).
        if (type(f[0]) is not bytes or type(f[1]) is not str or not P.resources_ok(f[2])
                or type(f[3]) is not dict):
            raise ProtocolError("malformed NODE_HELLO")
        node = NodeRecord(f[0], ident, f[1], f[2], f[3], now)
        self.nodes[f[0]] = node
        self.by_ident[ident] = node

    def heartbeat(self, f: list, now: float) -> None:
        if not _amounts_ok(f[1]) or type(f[2]) is not dict:
            raise ProtocolError("malformed HEARTBEAT")
        node = self.nodes.get(f[0])
        if node is not None:
            node.available, node.load, node.last_seen = f[1], f[2], now
            node.alive = True
            node.placed = 0

    def silent_nodes(self, now: float, limit: float) -> list[NodeRecord]:
        """Mark dead the live nodes not heard of for `limit` seconds; those nodes."""
        dead = [n for n in self.nodes.values() if n.alive and now - n.last_seen > limit]
        for node in dead:
            node.alive = False
            node.death = f"no heartbeat for {limit:.1f} s"
        return dead

    def views(self) -> list[NodeView]:
        return [n.view() for n in self.nodes.values()]

    def table(self) -> list:
        """The node table nodes route by: [[node_id, public address, alive, store], ...]
        (store: the prefix of the segment names the node makes)."""
        return [[n.node_id, n.public, n.alive, str(n.info.get("store", ""))]
                for n in self.nodes.values()]

    def actor_placed(self, actor_id: bytes, node_id: bytes) -> None:
        """The head placed an actor on a node: that is where it lives (before the node
        reports it; a report from the node that spilled it came before and is stale)."""
        actor = self.actors.setdefault(actor_id, {"name": None, "namespace": None})
        actor["node_id"] = node_id.hex()
        actor.setdefault("state", "PENDING")

    def actor_node(self, actor_id: bytes) -> str | None:
        """The node (hex id) an actor was last reported on, if it is not dead."""
        actor = self.actors.get(actor_id)
        if actor is None or actor.get("state") == "DEAD":
            return None
        node = actor.get("node_id")
        return node if type(node) is str else None

    def largest(self) -> dict:
        """Per resource, the most any live node offers."""
        total: dict = {}
        for node in self.nodes.values():
            if node.alive:
                for k, v in node.resources.items():
                    total[k] = max(total.get(k, 0), v)
        return total

    # -- actors ------------------------------------------------------------------
    def actor_event(self, ident: bytes, f: list) -> None:
        actor = self.actors.setdefault(f[0], {"name": None, "namespace": None})
        actor["state"] = f[1]
        node = self.by_ident.get(ident)
        actor["node_id"] = node.node_id.hex() if node else None
        info = f[2] if type(f[2]) is dict else {}
        for field, kind in (("class_name", str), ("pid", int), ("job_id", str),
                            ("is_detached", bool), ("required_resources", dict),
                            ("placement_group_id", str)):   # the dashboard, zray.util.state
            if type(info.get(field)) is kind:
                actor[field] = info[field]
        if f[1] == "RESTARTING":
            actor["restarts"] = actor.get("restarts", 0) + 1
        if f[1] == "DEAD":
            key = (actor.get("namespace"), actor.get("name"))
            if self.named.get(key) == f[0]:
                del self.named[key]
            actor["death"] = f[2].get("reason")

    def actor_lost(self, actor_id: bytes, why: str) -> None:
        """The head declares an actor dead (its node died, or it can never be placed)."""
        actor = self.actors.get(actor_id)
        if actor is not None and actor.get("state") != "DEAD":
            actor["state"], actor["death"] = "DEAD", why
            key = (actor.get("namespace"), actor.get("name"))
            if self.named.get(key) == actor_id:
                del self.named[key]

    # -- control calls: one method per op ------------------------------------------
    def add_calls(self, calls: dict) -> None:
        """More control calls, op -> method(args), served by a part of the head that is
        not the control store (its task history)."""
        self._calls.update(calls)

    def call(self, op: str, args: list):
        """The result of the control call `op`; ValueError (sent back as the
        error) if it is unknown or fails."""
        handler = self._calls.get(op) if type(op) is str else None
        if handler is None:
            raise ValueError(f"unknown head call {op!r}")
        return handler(args)

    def _register_actor(self, args: list) -> list:
        actor_id, name, namespace, handle_blob, get_if_exists = args
        if type(actor_id) is not bytes or type(name) is not str:
            raise ValueError("register_actor wants a bytes actor id and a str name")
        key = (namespace, name)
        existing = self.named.get(key)
        if existing is not None and self.actors.get(existing, {}).get("state") != "DEAD":
            if get_if_exists:
                return [False, self.actors[existing]["handle"]]
            raise ValueError(f"The name {name!r} (namespace={namespace!r}) is already taken "
                             "by another actor; pick another name or use get_if_exists=True.")
        self.named[key] = actor_id
        self.actors[actor_id] = {"name": name, "namespace": namespace, "handle": handle_blob,
                                 "state": "PENDING"}
        return [True, None]

    def _get_actor(self, args: list) -> bytes:
        name, namespace = args
        actor_id = self.named.get((namespace, name))
        actor = self.actors.get(actor_id) if actor_id else None
        if actor is None or actor.get("state") == "DEAD":
            raise ValueError(f"Failed to look up actor with name {name!r} in namespace "
                             f"{namespace!r}: no live actor has that name.")
        return actor["handle"]

    def _list_named_actors(self, args: list) -> list:
        all_ns, namespace = args
        return [[ns, name] if all_ns else name for (ns, name), aid in self.named.items()
                if all_ns or ns == namespace]

    def _nodes(self, args: list) -> list:
        return [n.as_dict() for n in self.nodes.values()]

    def _cluster_resources(self, args: list) -> dict:
        return self._sum(lambda n: n.resources)

    def _available_resources(self, args: list) -> dict:
        return self._sum(lambda n: n.available)

    def _sum(self, pick) -> dict:
        total: dict = {}
        for node in self.nodes.values():
            if node.alive:
                for k, v in pick(node).items():
                    total[k] = total.get(k, 0.0) + float(v)
        # (A placement group's bundles are not resources of their own, as in Ray.)
        return {k: v for k, v in total.items()
                if (v > 0 or k in ("CPU",)) and not ST.is_group_resource(k)}
