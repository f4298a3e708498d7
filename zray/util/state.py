"""Who holds what: list_objects() and memory_summary() (as ray.util.state)."""
from __future__ import annotations

from typing import Any


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
    for key, op, value in filters or []:
        if op not in ("=", "!="):
            raise ValueError(f"filter operator must be '=' or '!=', got {op!r}")
        rows = [r for r in rows if (str(r.get(key)) == str(value)) == (op == "=")]
    return rows[:limit]


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
