"""More of ray.util.state (re-exported by zray.util.state): actors from the head's actor
table (list_actors, get_actor, summarize_actors), placement groups, and the caller's
node's workers and jobs. Rows are StateRows with Ray's columns; a column zray has no
data for is None."""
from __future__ import annotations

from typing import Any

from ._state_rows import DEFAULT_LIMIT, Filters, StateRow
from ._state_rows import filtered as _filtered

__all__ = ["get_actor", "get_job", "get_placement_group", "get_worker", "hex_id", "list_actors",
           "list_jobs", "list_placement_groups", "list_workers", "summarize_actors"]
# zray's actor states as Ray names them (PENDING: not yet created).
_ACTOR_STATES = {"PENDING": "PENDING_CREATION"}


def _head(op: str, args: list, timeout: float = 30) -> Any:
    from .._context import runtime_or_init
    return runtime_or_init().head_call(op, args, timeout=timeout)


def hex_id(value: Any, what: str) -> bytes:
    """The bytes of an id given as hex (TypeError / ValueError naming `what`)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} id must be a hex string, got {type(value).__name__} {value!r}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{what} id must be a hex string, got {value!r}") from None


# -- actors ------------------------------------------------------------------------------
def _actor_rows() -> list[StateRow]:
    rows = []
    for a in _head("state_actors", []):
        rows.append(StateRow(
            actor_id=a["actor_id"].hex(), class_name=a["class_name"],
            state=_ACTOR_STATES.get(a["state"], a["state"]), job_id=a["job_id"], name=a["name"],
            node_id=a["node_id"], pid=a["pid"] or 0, ray_namespace=a["namespace"],
            serialized_runtime_env=None, required_resources=a["resources"] or {},
            death_cause=a["death"], is_detached=a["detached"],
            placement_group_id=a.get("placement_group_id"), repr_name="",
            num_restarts=a["restarts"], num_restarts_due_to_lineage_reconstruction=0,
            call_site=None, label_selector={}))
    return rows


def list_actors(*, filters: Filters = None, limit: int = DEFAULT_LIMIT, detail: bool = False,
                **_: Any) -> list[StateRow]:
    """Every actor of the cluster, alive, pending, restarting and dead, with Ray's columns
    (actor_id, class_name, state PENDING_CREATION/ALIVE/RESTARTING/DEAD, job_id, name,
    node_id, pid, ray_namespace, required_resources, death_cause, is_detached,
    num_restarts, ...). `filters` as Ray's: [("state", "=", "ALIVE")]."""
    return _filtered(_actor_rows(), filters)[:limit]


def get_actor(id: str, **_: Any) -> StateRow | None:
    """The actor with this hex id, or None."""
    hex_id(id, "actor")
    return next((r for r in _actor_rows() if r.actor_id == id), None)


def summarize_actors(**_: Any) -> dict:
    """Actor counts by class and state, as Ray's summarize_actors()."""
    summary: dict[str, dict] = {}
    rows = _actor_rows()
    for r in rows:
        name = r.class_name or ""
        entry = summary.setdefault(name, {"class_name": name, "state_counts": {}})
        entry["state_counts"][r.state] = entry["state_counts"].get(r.state, 0) + 1
    return {"cluster": {"summary": summary, "total_actors": len(rows), "summary_by": "class"}}


# -- placement groups --------------------------------------------------------------------
def _group_row(g: dict) -> StateRow:
    pg_id = g["placement_group_id"]
    on = {int(i): n for i, n in g.get("bundles_to_node_id", {}).items()}
    bundles = [{"bundle_id": {"placement_group_id": pg_id, "bundle_index": int(i)},
                "unit_resources": dict(b), "node_id": on.get(int(i)), "label_selector": {}}
               for i, b in sorted(g["bundles"].items(), key=lambda kv: int(kv[0]))]
    return StateRow(placement_group_id=pg_id, name=g["name"], creator_job_id=None,
                    state=g["state"], bundles=bundles, is_detached=None, stats=None,
                    strategy=g["strategy"])


def list_placement_groups(*, filters: Filters = None, limit: int = DEFAULT_LIMIT,
                          detail: bool = False, **_: Any) -> list[StateRow]:
    """The cluster's placement groups (also removed ones) with Ray's columns:
    placement_group_id, name, state (PENDING, CREATED, REMOVED, RESCHEDULING), bundles
    (each with its unit_resources and node_id), strategy."""
    rows = [_group_row(g) for g in _head("pg_table", []).values()]
    return _filtered(rows, filters)[:limit]


def get_placement_group(id: str, **_: Any) -> StateRow | None:
    """The placement group with this hex id, or None."""
    g = _head("pg_table", [hex_id(id, "placement group")])
    return _group_row(g) if g else None


# -- this node's processes ---------------------------------------------------------------
def _processes() -> dict:
    return _head("node.list_workers", [], timeout=10)


def list_workers(*, filters: Filters = None, limit: int = DEFAULT_LIMIT, detail: bool = False,
                 **_: Any) -> list[StateRow]:
    """The drivers and workers of the caller's node (not those of other nodes), with
    Ray's columns: worker_id (what get_runtime_context().get_worker_id() says in that
    process), is_alive, worker_type (DRIVER or WORKER), node_id, ip, pid."""
    reply = _processes()
    rows = []
    for ident, kind, pid, _job, facts, _actor in reply["processes"]:
        start = facts.get("start_time")
        rows.append(StateRow(
            worker_id=ident, is_alive=True, worker_type=kind, exit_type=None,
            node_id=reply["node_id"], ip=reply["ip"], pid=pid, exit_detail=None,
            worker_launch_time_ms=None, worker_launched_time_ms=None,
            start_time_ms=int(start * 1000) if isinstance(start, (int, float)) else None,
            end_time_ms=None, debugger_port=None, num_paused_threads=None))
    return _filtered(rows, filters)[:limit]


def get_worker(id: str, **_: Any) -> StateRow | None:
    """The driver or worker of the caller's node with this worker id, or None."""
    hex_id(id, "worker")
    return next((r for r in list_workers(limit=10**9) if r.worker_id == id), None)


def list_jobs(*, filters: Filters = None, limit: int = DEFAULT_LIMIT, detail: bool = False,
              **_: Any) -> list[StateRow]:
    """The running drivers' jobs on the caller's node (a job is a driver in zray; ended
    jobs and other nodes' drivers are not listed), with Ray's columns: type DRIVER,
    job_id, status RUNNING, entrypoint, start_time (ms), metadata (JobConfig's),
    driver_info (id, node_ip_address, pid), driver_node_id."""
    reply = _processes()
    rows = []
    for _ident, kind, pid, job_id, facts, _actor in reply["processes"]:
        if kind != "DRIVER":
            continue
        start = facts.get("start_time")
        rows.append(StateRow(
            type="DRIVER", job_id=job_id, submission_id=None,
            driver_info=StateRow(id=job_id, node_ip_address=reply["ip"], pid=str(pid)),
            status="RUNNING", entrypoint=facts.get("entrypoint", ""), message=None,
            error_type=None, start_time=int(start * 1000) if isinstance(start, (int, float)) else None,
            end_time=None, metadata=dict(facts.get("metadata") or {}), runtime_env=None,
            driver_agent_http_address=None, driver_node_id=reply["node_id"],
            driver_exit_code=None))
    return _filtered(rows, filters)[:limit]


def get_job(id: str, **_: Any) -> StateRow | None:
    """The running job with this hex id (of a driver on the caller's node), or None."""
    hex_id(id, "job")
    return next((r for r in list_jobs(limit=10**9) if r.job_id == id), None)
