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
    other = rows[anon._actor_id.hex()]             # unnamed: from the head's actor table too
    assert (other.state, other.class_name, other.name) == ("ALIVE", "Named", "")
    assert [r.actor_id for r in list_actors(filters=[("name", "=", "keeper")])] == [keeper.actor_id]
    assert len(list_actors(limit=1)) == 1


@zray.remote
def square(x):
    return x * x


@zray.remote
def broken():
    raise ValueError("no")


def test_list_tasks_and_summarize_tasks(cluster):
    import time

    from zray.util.state import list_tasks, summarize_tasks
    assert zray.get([square.remote(i) for i in range(5)]) == [0, 1, 4, 9, 16]
    with pytest.raises(ValueError):
        zray.get(broken.remote())
    deadline = time.monotonic() + 20   # workers report once a second, nodes too
    while True:
        counts = summarize_tasks()["cluster"]["summary"]
        if counts.get("square", {}).get("state_counts", {}).get("FINISHED") == 5 \
                and counts.get("broken", {}).get("state_counts", {}).get("FAILED") == 1:
            break
        assert time.monotonic() < deadline, counts
        time.sleep(0.1)
    rows = list_tasks(filters=[("name", "=", "square")])
    assert len(rows) == 5 and all(r.state == "FINISHED" and r.type == "NORMAL_TASK" for r in rows)
    assert all(r["start_time_ms"] <= r["end_time_ms"] for r in rows)
    failed = list_tasks(filters=[("state", "=", "FAILED")])
    assert [r.name for r in failed] == ["broken"] and "no" in failed[0].error_message
