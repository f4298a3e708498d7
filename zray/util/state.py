"""What the cluster holds (as ray.util.state): objects, nodes, tasks, named actors and
memory_summary() here; actors, placement groups, workers and jobs in _state_views."""
from __future__ import annotations

from typing import Any

from ._state_rows import DEFAULT_LIMIT, StateRow
from ._state_rows import filtered as _filtered
from ._state_views import (
    get_actor,
    get_job,
    get_placement_group,
    get_worker,
    hex_id,
    list_actors,
    list_jobs,
    list_placement_groups,
    list_workers,
    summarize_actors,
)

__all__ = ["StateRow", "get_actor", "get_job", "get_node", "get_objects", "get_placement_group",
           "get_task", "get_worker", "list_actors", "list_jobs", "list_named_actors", "list_nodes",
           "list_objects", "list_placement_groups", "list_tasks", "list_workers",
           "memory_summary", "summarize_actors", "summarize_objects", "summarize_tasks"]


def _rows() -> tuple[list[dict], dict]:
    from .._init import runtime_or_init
    reply = runtime_or_init().head_call("node.list_objects", [], timeout=10)
    rows = []
    for (oid, owned, owner, status, size, segment, refs, borrowers, contained, kind, pid,
         location) in reply["rows"]:
        if not owned:
            ref_type = "BORROWED"             # a ref here to an object owned elsewhere
            if status == "PENDING":
                status = "NOT_FETCHED"        # this holder has not read its value
        elif status == "PENDING":
            ref_type = "PENDING"              # the task making it has not finished
        elif refs:
            ref_type = "LOCAL_REFERENCE"
        else:
            ref_type = "CAPTURED_IN_OBJECT"   # kept alive by borrowers or a containing value
        rows.append({
            "object_id": oid, "object_size": size, "task_status": status,
            "location": location, "segment": segment or None,
            "owner": owner, "is_owner": owned, "local_refs": refs, "borrowers": borrowers,
            "contained_refs": contained, "reference_type": ref_type,
            "type": kind, "pid": pid, "node_id": reply["node_id"], "ip": "127.0.0.1",
        })
    return rows, reply


def list_objects(*, filters: list[tuple[str, str, Any]] | None = None, limit: int = 10_000,
                 detail: bool = False, **_: Any) -> list[dict]:
    """Every object held by a process of this node, one row per holder: id, size,
    location (INLINE, SHARED_MEMORY or SPILLED), owner, and the references keeping
    it alive (local refs, borrowers). `filters` as Ray's: [("key", "=", value)]."""
    rows, _reply = _rows()
    return _filtered(rows, filters)[:limit]


def list_nodes(*, filters: list[tuple[str, str, Any]] | None = None, limit: int = DEFAULT_LIMIT,
               detail: bool = False, **_: Any) -> list[StateRow]:
    """The cluster's nodes, alive and dead, with Ray's columns (node_id, node_ip,
    is_head_node, state ALIVE/DEAD, state_message, node_name, resources_total, labels)."""
    from .._api import nodes
    rows = []
    for n in nodes():
        resources = {k: v for k, v in n["Resources"].items() if not k.startswith("node:__")}
        rows.append(StateRow(
            node_id=n["NodeID"], node_ip=n["NodeManagerAddress"],
            is_head_node="node:__internal_head__" in n["Resources"],
            state="ALIVE" if n["Alive"] else "DEAD", state_message=n["DeathReasonMessage"] or None,
            node_name=n["NodeName"], resources_total=resources, labels=dict(n.get("Labels") or {}),
            start_time_ms=None, end_time_ms=None))
    return _filtered(rows, filters)[:limit]


def list_tasks(*, filters: list[tuple[str, str, Any]] | None = None, limit: int = DEFAULT_LIMIT,
               detail: bool = False, **_: Any) -> list[StateRow]:
    """The cluster's recent tasks and actor calls, newest first, from the head's task
    history (the last task_history of them; tasks queued on a node are PENDING), with
    Ray's columns: task_id, name, func_or_class_name, state (PENDING, RUNNING, FINISHED,
    FAILED), type, actor_id, node_id, worker_pid, start_time_ms, end_time_ms,
    error_message."""
    from .._context import runtime_or_init
    rows = [task_row(*rec) for rec in runtime_or_init().head_call(
        "tasks", [max(limit, 1) * 4 if filters else max(limit, 1)])]
    return _filtered(rows, filters)[:limit]


def task_row(task_id: Any, name: str, actor_id: Any, state: str, start: Any, end: Any, pid: int,
             node_id: str, error: str) -> StateRow:
    """A record of the head's task history as a row of list_tasks()."""
    return StateRow(
        task_id=task_id.hex() if type(task_id) is bytes else task_id, name=name,
        func_or_class_name=name, state=state, type="ACTOR_TASK" if actor_id else "NORMAL_TASK",
        actor_id=actor_id.hex() if type(actor_id) is bytes else None, node_id=node_id,
        worker_pid=pid or None, error_message=error or None,
        start_time_ms=int(start * 1000) if start else None,
        end_time_ms=int(end * 1000) if end else None)


def get_task(id: Any, **_: Any) -> StateRow | None:
    """The task (or actor call) with this hex id, or whose return this ObjectRef is, as
    the head's task history has it last; None if it is not (or no longer) there."""
    from .._context import runtime_or_init
    from .._object_ref import ObjectRef
    task_id = bytes.fromhex(id.task_id()) if isinstance(id, ObjectRef) else hex_id(id, "task")
    rec = runtime_or_init().head_call("state_task", [task_id])
    return task_row(*rec) if rec else None


def get_node(id: str, **_: Any) -> StateRow | None:
    """The node with this hex id (alive or dead), or None."""
    hex_id(id, "node")
    return next((r for r in list_nodes(limit=10**9) if r.node_id == id), None)


def get_objects(id: str, **_: Any) -> list[dict]:
    """The rows of list_objects() of the object with this hex id (one per holder)."""
    hex_id(id, "object")
    return list_objects(filters=[("object_id", "=", id)])


def summarize_objects(**_: Any) -> dict:
    """The objects of this node's processes, counted (as Ray's summarize_objects() with
    call sites off): how many, their size, the processes and nodes holding them, their
    task states and reference types."""
    rows = list_objects(limit=10**9)
    size_mb = sum(r["object_size"] or 0 for r in rows) / 2**20
    group = {"total_objects": len(rows), "total_size_mb": size_mb,
             "total_num_workers": len({(r["node_id"], r["pid"]) for r in rows}),
             "total_num_nodes": len({r["node_id"] for r in rows}),
             "task_state_counts": _counts(r["task_status"] for r in rows),
             "ref_type_counts": _counts(r["reference_type"] for r in rows)}
    return {"cluster": {"summary": {"disabled": group} if rows else {},
                        "total_objects": len(rows), "total_size_mb": size_mb,
                        "callsite_enabled": False, "summary_by": "callsite"}}


def _counts(values: Any) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def summarize_tasks(**_: Any) -> dict:
    """Task counts by function and state, as Ray's summarize_tasks() (FINISHED and FAILED
    since the head started; RUNNING and PENDING now)."""
    from .._context import runtime_or_init
    summary = runtime_or_init().head_call("task_summary", [])
    by_name = {name: {"func_or_class_name": name, "type": "NORMAL_TASK",
                      "state_counts": {k: v for k, v in counts.items() if v}}
               for name, counts in summary["by_function"].items()}
    total = sum(sum(c.values()) for c in summary["by_function"].values())
    return {"cluster": {"summary": by_name, "total_tasks": total, "total_actor_tasks": 0,
                        "total_actor_scheduled": 0, "summary_by": "func_name"}}


def list_named_actors(all_namespaces: bool = False) -> list:
    """The names of the live named actors of this namespace; with all_namespaces, every
    namespace's, as [{"name": ..., "namespace": ...}] (as ray.util.list_named_actors)."""
    from .._context import runtime_or_init
    rt = runtime_or_init()
    found = rt.head_call("list_named_actors", [bool(all_namespaces), rt.namespace])
    if all_namespaces:
        return [{"name": name, "namespace": ns} for ns, name in found]
    return list(found)


def memory_summary() -> str:
    """A text table of the objects per node and their totals (what `zray memory` prints)."""
    rows, reply = _rows()
    store = reply["store"]
    lines = [f"Node {reply['node_id'][:12]}: object store {store['used'] / 2**20:.1f} MiB used of "
             f"{store['capacity'] / 2**20:.1f} MiB in shared memory, {store['spilled']} objects "
             f"({store['spilled_bytes'] / 2**20:.1f} MiB) spilled to disk"]
    header = f"{'OBJECT ID':<42} {'SIZE':>12} {'WHERE':<13} {'STATUS':<8} {'HOLDER':<14} {'REFERENCE':<18}"
    lines += ["", header, "-" * len(header)]
    for r in sorted(rows, key=lambda r: -r["object_size"]):
        holder = f"{r['type'].lower()} {r['pid'] or ''}".strip()
        lines.append(f"{r['object_id']:<42} {r['object_size']:>12,} {r['location']:<13} "
                     f"{r['task_status']:<8} {holder:<14} {r['reference_type']:<18}")
    by_loc: dict[str, list] = {}
    for r in rows:
        if r["is_owner"]:
            by_loc.setdefault(r["location"], []).append(r["object_size"])
    lines.append("")
    for loc, sizes in sorted(by_loc.items()):
        lines.append(f"total {loc:<13} {len(sizes):>6} objects {sum(sizes) / 2**20:>10.2f} MiB")
    if reply.get("unanswered"):
        lines.append(f"({reply['unanswered']} processes did not answer in time)")
    return "\n".join(lines)
