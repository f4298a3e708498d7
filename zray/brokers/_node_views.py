"""What a node tells about itself for zray.util.state: its processes (list_workers,
list_jobs: the node.list_workers call, answered at once by the caller's node) and the
facts of an actor it is asked to create (for the head's actor table: get_actor)."""
from __future__ import annotations

from typing import Any

from .. import _protocol as P
from .. import _strategies as ST

__all__ = ["actor_facts", "workers"]

# What a driver's hello says of its job that list_jobs shows (zray/_init.py, job_config).
_JOB_KEYS = ("namespace", "metadata", "entrypoint", "start_time")


def workers(node: Any) -> dict:
    """{node_id, ip, processes: [[identity hex, "DRIVER" | "WORKER", pid, job id hex,
    job facts, actor id hex or None]]}: the drivers and the workers that said hello."""
    hosts = {a.worker: aid for aid, a in list(node.sched.mailboxes.actors.items())
             if a.worker is not None}
    rows: list = []
    for ident, info in node.clients.drivers.items():
        job_id = info.get("job_id")
        rows.append([ident.hex(), "DRIVER", info.get("pid"),
                     job_id.hex() if type(job_id) is bytes else None,
                     {k: info[k] for k in _JOB_KEYS if k in info}, None])
    for ident, wid in node.clients.wid_of.items():
        aid = hosts.get(wid)
        rows.append([ident.hex(), "WORKER", node.procs.pid_of.get(wid), None, {},
                     aid.hex() if aid is not None else None])
    return {"node_id": node.node_id.hex(), "ip": node.node_ip, "processes": rows}


def actor_facts(spec: list) -> dict:
    """An actor's job, lifetime, resources and placement group, from its creation spec."""
    job = spec[P.A_JOB]
    res = {k: v for k, v in spec[P.A_RES].items() if not k.startswith("_")}
    return {"job_id": job[0].hex() if job and type(job[0]) is bytes else None,
            "is_detached": bool(spec[P.A_DETACHED]), "required_resources": res,
            "placement_group_id": ST.group_of(spec[P.A_RES])}
