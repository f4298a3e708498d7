"""What the cluster holds: list_objects(), list_nodes(), list_actors(),
list_named_actors() and memory_summary() (as ray.util.state)."""
from __future__ import annotations

from typing import Any

__all__ = ["StateRow", "list_actors", "list_named_actors", "list_nodes", "list_objects",
           "list_tasks", "memory_summary", "summarize_tasks"]

# Ray's state API returns at most 100 rows unless told otherwise.
DEFAULT_LIMIT = 100
# The id of an actor is the id of the lifetime token its handles share (a task id and
# the return index 0xFFFFFFFF, P.object_id): a row of list_objects with such an id is
# a holder of an actor's handle.
_ACTOR_SUFFIX = "ffffffff"


class StateRow(dict):
    """One row of a state listing: a dict whose keys are also attributes (Ray's
    ActorState/NodeState allow both `row.state` and `row["state"]`)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def asdict(self) -> dict:
        return dict(self)


def _filtered(rows: list, filters: list[tuple[str, str, Any]] | None) -> list:
    for key, op, value in filters or []:
        if op not in ("=", "!="):
            raise ValueError(f"filter operator must be '=' or '!=', got {op!r}")
        rows = [r for r in rows if (str(r.get(key)) == str(value)) == (op == "=")]
    return rows


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
    rows = []
    for task_id, name, actor_id, state, start, end, pid, node_id, error in \
            runtime_or_init().head_call("tasks", [max(limit, 1) * 4 if filters else max(limit, 1)]):
        rows.append(StateRow(
            task_id=task_id.hex() if type(task_id) is bytes else task_id, name=name,
            func_or_class_name=name, state=state,
            type="ACTOR_TASK" if actor_id else "NORMAL_TASK",
            actor_id=actor_id.hex() if type(actor_id) is bytes else None, node_id=node_id,
            worker_pid=pid or None, error_message=error or None,
            start_time_ms=int(start * 1000) if start else None,
            end_time_ms=int(end * 1000) if end else None))
    return _filtered(rows, filters)[:limit]


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


def list_actors(*, filters: list[tuple[str, str, Any]] | None = None, limit: int = DEFAULT_LIMIT,
                detail: bool = False, **_: Any) -> list[StateRow]:
    """The actors the driver can see, with Ray's columns (actor_id, class_name, state,
    name, ray_namespace, node_id, pid, ...): every named actor of any namespace (state
    ALIVE: the head says it is not dead), and every actor this process created or a
    process of this node holds a handle to (state UNKNOWN, class_name None: the head
    keeps the state, node and death cause of every actor but gives no list of them yet,
    so dead actors, pids and nodes are not listed)."""
    from .. import _serialization as S
    from .._context import runtime_or_init
    rt = runtime_or_init()
    found: dict[str, StateRow] = {}
    for entry in list_named_actors(all_namespaces=True):
        try:
            handle = S.loads(rt.head_call("get_actor", [entry["name"], entry["namespace"]]))
        except ValueError:
            continue   # it died since it was listed
        aid = handle._actor_id.hex()
        found[aid] = _actor_row(aid, "ALIVE", handle._meta["class_name"], entry["name"],
                                entry["namespace"])
        del handle
    held = [r["object_id"] for r in _rows()[0] if r["object_id"].endswith(_ACTOR_SUFFIX)]
    with rt.owner.table.lock:     # the tokens of the actors this process created
        held += [oid.hex() for oid, e in rt.owner.table.entries.items() if e.actor]
    for aid in held:
        if aid not in found:
            found[aid] = _actor_row(aid, "UNKNOWN", None, None, None)
    return _filtered(list(found.values()), filters)[:limit]


def _actor_row(actor_id: str, state: str, class_name: str | None, name: str | None,
               namespace: str | None) -> StateRow:
    return StateRow(actor_id=actor_id, class_name=class_name, state=state, job_id=None,
                    name=name or "", node_id=None, pid=0, ray_namespace=namespace,
                    death_cause=None, is_detached=None)


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
