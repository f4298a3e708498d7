"""zray.util.state.list_nodes / list_actors and zray.util.list_named_actors (beside
list_objects, tested in test_state.py): Ray's column names, rows that read as dicts
and as attributes, filters and limits."""
from __future__ import annotations

import pytest

import zray
from zray.util import list_named_actors
from zray.util.state import list_actors, list_nodes

T = 30


@zray.remote
class Named:
    def ping(self):
        return "pong"


def test_list_nodes(cluster):
    rows = list_nodes()
    assert len(rows) == 1
    node = rows[0]
    assert node.node_id == zray.nodes()[0]["NodeID"] == node["node_id"]
    assert node.state == "ALIVE" and node.is_head_node is True
    assert node.resources_total["CPU"] == 2.0
    assert not any(k.startswith("node:__") for k in node.resources_total)
    assert node.asdict()["node_ip"] == "127.0.0.1"
    assert list_nodes(filters=[("state", "=", "DEAD")]) == []
    assert list_nodes(filters=[("state", "!=", "DEAD")]) == rows
    with pytest.raises(AttributeError):
        _ = node.no_such_column
    with pytest.raises(ValueError, match="filter operator"):
        list_nodes(filters=[("state", "~", "x")])


def test_list_actors_and_named_actors(cluster):
    named = Named.options(name="keeper", namespace="elsewhere").remote()
    anon = Named.remote()
    assert zray.get([named.ping.remote(), anon.ping.remote()], timeout=T) == ["pong", "pong"]
    assert list_named_actors() == []               # this job's namespace has none
    assert list_named_actors(all_namespaces=True) == [{"name": "keeper", "namespace": "elsewhere"}]
    rows = {r.actor_id: r for r in list_actors()}
    keeper = rows[named._actor_id.hex()]
    assert (keeper.class_name, keeper.name, keeper.ray_namespace, keeper.state) == \
        ("Named", "keeper", "elsewhere", "ALIVE")
    other = rows[anon._actor_id.hex()]             # known by its handle only
    assert other.state == "UNKNOWN" and other.class_name is None
    assert [r.actor_id for r in list_actors(filters=[("name", "=", "keeper")])] == [keeper.actor_id]
    assert len(list_actors(limit=1)) == 1
