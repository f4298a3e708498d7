"""More of zray.util.state, with Ray's columns: actors from the head's actor table
(get_actor, list_actors of dead ones too, summarize_actors), placement groups, the
node's workers and jobs, one task, node or object, and summarize_objects; bad ids are
named errors, unknown ones None."""
from __future__ import annotations

import os
import time

import pytest
from helpers import poll

import zray
from zray.exceptions import RayActorError
from zray.util import state
from zray.util.placement_group import placement_group, remove_placement_group

T = 30


@zray.remote
class Box:
    def pid(self):
        return os.getpid()

    def die(self):
        os._exit(1)


@zray.remote
def double(x):
    return 2 * x


def test_actors_from_the_head(shared):
    ctx = zray.get_runtime_context()
    named = Box.options(name="box", lifetime="detached").remote()
    plain = Box.options(max_restarts=1).remote()
    pid = zray.get(named.pid.remote(), timeout=T)
    with pytest.raises(RayActorError):
        zray.get(plain.die.remote(), timeout=T)
    zray.get(plain.pid.remote(), timeout=T)   # restarted
    row = state.get_actor(named._actor_id.hex())
    assert (row.actor_id, row.class_name, row.state, row.name, row.pid, row.job_id,
            row.is_detached, row.node_id, row.ray_namespace) == \
        (named._actor_id.hex(), "Box", "ALIVE", "box", pid, ctx.get_job_id(), True,
         ctx.get_node_id(), ctx.namespace)
    assert row["required_resources"] == {} and row.death_cause is None
    assert state.get_actor(plain._actor_id.hex()).num_restarts == 1
    zray.kill(named)
    poll(lambda: state.get_actor(named._actor_id.hex()).state == "DEAD", timeout=T,
         what="the killed actor listed DEAD")
    dead = state.list_actors(filters=[("state", "=", "DEAD")])
    assert named._actor_id.hex() in [r.actor_id for r in dead]
    counts = state.summarize_actors()["cluster"]
    assert counts["summary_by"] == "class" and counts["summary"]["Box"]["class_name"] == "Box"
    assert counts["summary"]["Box"]["state_counts"].get("DEAD", 0) >= 1
    assert counts["total_actors"] >= 2
    assert state.get_actor("ff" * 20) is None
    with pytest.raises(ValueError, match="hex"):
        state.get_actor("not hex")
    with pytest.raises(TypeError, match="hex string"):
        state.get_actor(5)


def test_one_task_by_id_or_ref(shared):
    ref = double.remote(21)
    assert zray.get(ref, timeout=T) == 42
    row = poll(lambda: (r := state.get_task(ref)) is not None and r.state == "FINISHED" and r,
               timeout=T, what="the task in the head's history")
    assert (row.name, row.type, row.task_id) == ("double", "NORMAL_TASK", ref.task_id())
    assert state.get_task(ref.task_id()) == row
    assert state.get_task("00" * 16) is None


def test_placement_groups(shared):
    pg = placement_group([{"CPU": 0.5}, {"CPU": 0.5}], name="pair", strategy="PACK")
    zray.get(pg.ready(), timeout=T)
    node = zray.get_runtime_context().get_node_id()
    row = state.get_placement_group(pg.id.hex())
    assert (row.placement_group_id, row.name, row.state) == (pg.id.hex(), "pair", "CREATED")
    assert [(b["bundle_id"]["bundle_index"], b["unit_resources"], b["node_id"]) for b in row.bundles] \
        == [(0, {"CPU": 0.5}, node), (1, {"CPU": 0.5}, node)]
    assert pg.id.hex() in [r.placement_group_id for r in state.list_placement_groups()]
    remove_placement_group(pg)
    poll(lambda: state.get_placement_group(pg.id.hex()).state == "REMOVED", timeout=T,
         what="the group REMOVED")
    assert state.list_placement_groups(filters=[("name", "=", "nothing")]) == []
    assert state.get_placement_group("ab" * 18) is None


def test_workers_and_jobs_of_this_node(shared):
    ctx = zray.get_runtime_context()
    box = Box.remote()
    actor_pid = zray.get(box.pid.remote(), timeout=T)
    rows = state.list_workers(limit=1000)
    me = state.get_worker(ctx.get_worker_id())
    assert (me.worker_type, me.pid, me.node_id, me.is_alive) == ("DRIVER", os.getpid(),
                                                                 ctx.get_node_id(), True)
    assert me.ip == zray.util.get_node_ip_address()
    assert abs(me.start_time_ms / 1000 - time.time()) < 3600
    assert actor_pid in [r.pid for r in rows if r.worker_type == "WORKER"]
    assert len(state.list_workers(limit=1)) == 1
    assert state.list_workers(filters=[("worker_type", "=", "DRIVER")]) == [me]
    (job,) = state.list_jobs()
    assert (job.job_id, job.type, job.status, job.driver_info.pid, job.driver_node_id) == \
        (ctx.get_job_id(), "DRIVER", "RUNNING", str(os.getpid()), ctx.get_node_id())
    assert "python" in job.entrypoint and job.metadata == {}
    assert state.get_job(ctx.get_job_id()) == job and state.get_job("00000000") is None
    assert state.get_worker("00" * 15) is None


def test_nodes_and_objects(shared):
    node_id = zray.get_runtime_context().get_node_id()
    assert state.get_node(node_id) == state.list_nodes()[0]
    assert state.get_node("00" * 16) is None
    ref = zray.put(b"x" * 300_000)
    (row,) = state.get_objects(ref.hex())
    assert (row["object_size"] >= 300_000, row["location"]) == (True, "SHARED_MEMORY")
    summary = state.summarize_objects()["cluster"]
    assert summary["summary_by"] == "callsite" and summary["callsite_enabled"] is False
    group = summary["summary"]["disabled"]
    assert group["total_objects"] == summary["total_objects"] >= 1
    assert group["total_size_mb"] >= 300_000 / 2**20 and group["total_num_nodes"] == 1
    assert group["ref_type_counts"].get("LOCAL_REFERENCE", 0) >= 1
