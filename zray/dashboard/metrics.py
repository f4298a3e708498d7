"""/metrics: the cluster's figures in Prometheus' text format (version 0.0.4), every
name prefixed zray_, so that Prometheus (and Grafana on top) can scrape the head.

    zray_nodes{state}                                   nodes alive and dead
    zray_tasks{state}                                   PENDING, RUNNING now; FINISHED,
                                                        FAILED since the head started
    zray_tasks_ended_total{name,state}                  FINISHED and FAILED by function
    zray_actors{state}                                  actors by state
    zray_node_resources_total{node_id,resource}         CPU, GPU, memory, custom
    zray_node_resources_used{node_id,resource}
    zray_object_store_used_bytes{node_id}               and _capacity_bytes,
    zray_object_store_spilled_bytes{node_id}            _spilled_objects
    zray_node_tasks_queued{node_id}, zray_node_workers{node_id}
    ray_<name>[_total|_bucket|_sum|_count]{WorkerId,NodeAddress,...,tags}   the
                                                        application's (zray.util.metrics)
"""
from __future__ import annotations

from typing import Any

from ..brokers._app_metrics import sample
from . import api

__all__ = ["CONTENT_TYPE", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: Any) -> str:
    return str(value).replace("\\", r"\\").replace("\"", r"\"").replace("\n", r"\n")


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: list) -> None:
        """samples: [(labels dict, value), ...]"""
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{text}}} {sample(value)}" if text
                              else f"{name} {sample(value)}")


def render(head: Any) -> str:
    out = _Out()
    nodes = api.nodes(head)
    out.family("zray_nodes", "gauge", "Nodes by state.",
               [({"state": s}, sum(n["state"] == s for n in nodes)) for s in ("ALIVE", "DEAD")])
    summary = head.history.summary()
    out.family("zray_tasks", "gauge", "Tasks and actor calls by state: PENDING and RUNNING now, "
               "FINISHED and FAILED since the head started.",
               [({"state": s}, summary["counts"].get(s, 0)) for s in api.STATES])
    ended = []
    for name, counts in sorted(summary["by_function"].items()):
        for state in ("FINISHED", "FAILED"):
            ended.append(({"name": name, "state": state}, counts.get(state, 0)))
    out.family("zray_tasks_ended_total", "counter",
               "Tasks and actor calls that ended, by function and state.", ended)
    actors = api.actors(head)
    out.family("zray_actors", "gauge", "Actors by state.",
               [({"state": s}, sum(a["state"] == s for a in actors)) for s in api.ACTOR_STATES])
    _node_families(out, [n for n in nodes if n["alive"]])
    app = getattr(head, "app_metrics", None)   # zray.util.metrics' (ray_<name>)
    if app is not None:
        out.lines += app.prometheus()
    return "\n".join(out.lines) + "\n"


def _node_families(out: _Out, nodes: list[dict]) -> None:
    for which in ("total", "used"):
        out.family(f"zray_node_resources_{which}", "gauge",
                   f"Resources of each live node ({which}).",
                   [({"node_id": n["node_id"], "resource": k}, v) for n in nodes
                    for k, v in sorted(n[f"resources_{which}"].items())])
    for name, key, help_text in (
            ("zray_object_store_used_bytes", "used", "Bytes of the node's objects in shared memory."),
            ("zray_object_store_capacity_bytes", "capacity", "The node's object store capacity."),
            ("zray_object_store_spilled_bytes", "spilled_bytes", "Bytes of objects spilled to disk."),
            ("zray_object_store_spilled_objects", "spilled", "Objects spilled to disk.")):
        out.family(name, "gauge", help_text,
                   [({"node_id": n["node_id"]}, n["object_store"].get(key, 0)) for n in nodes])
    out.family("zray_node_tasks_queued", "gauge", "Tasks waiting in the node's queue.",
               [({"node_id": n["node_id"]}, n["load"].get("queued", 0)) for n in nodes])
    out.family("zray_node_workers", "gauge", "Worker processes of the node.",
               [({"node_id": n["node_id"]}, n["load"].get("workers", 0)) for n in nodes])
