"""The head's control calls behind zray.util.state's actor and task views
(list_actors, get_actor, summarize_actors, get_task): read from the control store's
actor table and the task history, never written."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["calls"]


def calls(insight: Any) -> dict[str, Callable[[list], Any]]:
    return {"state_actors": lambda args: actor_rows(insight),
            "state_task": lambda args: task_record(insight, args)}


def actor_rows(insight: Any) -> list[dict]:
    """Every actor the head knows of (alive, pending, restarting and dead)."""
    reports = insight.history.actor_reports()
    out = []
    for actor_id, a in list(insight.store.actors.items()):
        a = dict(a)
        report = reports.get(actor_id, {})
        out.append({
            "actor_id": actor_id, "class_name": a.get("class_name"),
            "state": a.get("state") or "PENDING", "name": a.get("name") or "",
            "namespace": a.get("namespace"), "node_id": a.get("node_id"),
            "pid": a.get("pid") or report.get("pid") or 0, "restarts": a.get("restarts", 0),
            "death": a.get("death"), "job_id": a.get("job_id"),
            "detached": a.get("is_detached"), "resources": a.get("required_resources"),
            "placement_group_id": a.get("placement_group_id"),
        })
    return out


def task_record(insight: Any, args: list) -> list | None:
    """The newest record of one task in the history ([task_id, name, actor_id, state,
    start, end, pid, node_id, error]), or None."""
    task_id = args[0] if args and type(args[0]) is bytes else None
    if task_id is None:
        raise ValueError("state_task wants [task_id bytes]")
    for rec in insight.history.records(insight.history.capacity + 1000):
        if rec[0] == task_id:
            return list(rec)
    return None
