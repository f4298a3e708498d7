"""The dashboard's JSON API: what the head knows, as plain dicts and lists (the pages,
/metrics and the JSON endpoints are made from these).

    /api/nodes     one dict per node: resources total/used, load, object store
    /api/tasks     counts by state and by function, and the recent tasks, newest first
    /api/actors    one dict per actor: class, name, state, node, pid, restarts, pending calls
    /api/objects   the head node's memory table (zray memory) and every node's store figures
    /api/timeline  the recent tasks as a Chrome trace (as zray.timeline())

Runs on the dashboard's threads: it reads the head's tables through copies (a copy of
a dict is one step under the GIL) and the task history under its lock; it never
writes to them.
"""
from __future__ import annotations

import time
from typing import Any

from ..brokers._history import chrome_trace

__all__ = ["actors", "nodes", "objects", "tasks", "timeline"]

STATES = ("PENDING", "RUNNING", "FINISHED", "FAILED")
ACTOR_STATES = ("PENDING", "ALIVE", "RESTARTING", "DEAD")


def nodes(head: Any) -> list[dict]:
    reports = head.history.node_reports()
    now = time.monotonic()
    out = []
    for n in list(head.store.nodes.values()):
        node_id = n.node_id.hex()
        total = {k: float(v) for k, v in n.resources.items() if not k.startswith("node:")}
        avail = dict(n.available)
        used = {k: max(0.0, v - float(avail.get(k, v))) for k, v in total.items()}
        report = reports.get(node_id, {})
        store = report.get("store") if type(report.get("store")) is dict else {}
        out.append({
            "node_id": node_id, "state": "ALIVE" if n.alive else "DEAD", "alive": n.alive,
            "death_reason": n.death or None, "ip": n.ip, "port": n.port, "address": n.address,
            "is_head": "node:__internal_head__" in n.resources,
            "resources_total": total, "resources_used": used,
            "load": {k: v for k, v in dict(n.load).items() if type(v) in (int, float)},
            "object_store": {k: store.get(k, 0) for k in
                             ("used", "capacity", "in_shm", "spilled", "spilled_bytes")},
            "last_heartbeat_s": round(max(0.0, now - n.last_seen), 3),
        })
    return out


def tasks(head: Any, state: str | None = None, name: str | None = None,
          limit: int = 1000) -> dict:
    if state is not None and state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    summary = head.history.summary()
    rows = head.history.records(max(0, min(limit, 100_000)), state, name)
    return {"counts": summary["counts"], "by_function": summary["by_function"],
            "tasks": [task_dict(r) for r in rows], "history_capacity": head.history.capacity,
            "evicted": head.history.evicted}


def task_dict(rec: tuple) -> dict:
    task_id, name, actor_id, state, start, end, pid, node_id, error = rec
    return {"task_id": task_id.hex(), "name": name, "state": state,
            "actor_id": actor_id.hex() if actor_id else None, "node_id": node_id,
            "pid": pid or None, "start_time": start, "end_time": end,
            "duration_s": round(end - start, 6) if start is not None and end is not None else None,
            "error": error or None}


def failures(head: Any, limit: int = 20) -> list[dict]:
    return [task_dict(r) for r in head.history.recent_failures(limit)]


def actors(head: Any) -> list[dict]:
    reports = head.history.actor_reports()
    out = []
    for actor_id, a in list(head.store.actors.items()):
        a = dict(a)
        report = reports.get(actor_id, {})
        state = a.get("state") or "PENDING"
        out.append({
            "actor_id": actor_id.hex(), "class_name": a.get("class_name"),
            "name": a.get("name") or "", "namespace": a.get("namespace"), "state": state,
            "node_id": a.get("node_id"), "pid": a.get("pid") or report.get("pid") or None,
            "restarts": a.get("restarts", 0),
            "pending_calls": report.get("pending", 0) if state == "ALIVE" else 0,
            "death_cause": a.get("death"),
        })
    order = {s: i for i, s in enumerate(("ALIVE", "RESTARTING", "PENDING", "DEAD"))}
    out.sort(key=lambda r: (order.get(r["state"], 9), r["class_name"] or "", r["actor_id"]))
    return out


def objects(head: Any) -> dict:
    """The memory table of the head's node (as `zray memory`), and the store figures of
    every node."""
    stores = {node_id: r.get("store") for node_id, r in head.history.node_reports().items()
              if type(r.get("store")) is dict}
    reply = head.node_objects.fetch()
    rows = []
    for row in reply.get("rows", []):
        (oid, owned, owner, status, size, _segment, refs, borrowers, contained, kind, pid,
         location) = row
        rows.append({"object_id": oid, "object_size": size, "location": location,
                     "task_status": status, "is_owner": bool(owned), "owner": owner,
                     "local_refs": refs, "borrowers": borrowers, "contained_refs": contained,
                     "holder_type": kind, "pid": pid})
    rows.sort(key=lambda r: -(r["object_size"] or 0))
    return {"node_id": reply.get("node_id"), "objects": rows, "stores": stores,
            "unanswered": reply.get("unanswered", 0), "error": reply.get("error")}


def actor_names(head: Any) -> dict[bytes, str]:
    return {aid: a.get("class_name") or "" for aid, a in list(head.store.actors.items())}


def timeline(head: Any, since: float = 0.0) -> list[dict]:
    return chrome_trace(head.history.window(since), actor_names(head))
