"""The dashboard's pages, rendered here as HTML. A page is a layout around sections;
each section is a fragment (/fragment/<name>) that static/app.js fetches again every
few seconds and swaps in, so the pages update live without reloads and read fine
without JavaScript. Every value shown goes through html.escape."""
from __future__ import annotations

import datetime
import time
from html import escape
from typing import Any
from urllib.parse import quote

from .. import _logs
from .._resource_text import SIZES, amount, shown, size
from . import api
from .stream import task_stream

__all__ = ["FRAGMENTS", "PAGES", "page"]

NAV = [("/", "Cluster"), ("/tasks", "Tasks"), ("/actors", "Actors"), ("/objects", "Objects"),
       ("/stream", "Task stream"), ("/logs", "Logs")]


def _mib(n: Any) -> str:
    return size(n or 0)   # (as zray status and the warnings write sizes: 7.06GiB)


def _num(v: Any) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}"


def _when(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.datetime.fromtimestamp(t).strftime("%H:%M:%S.%f")[:-3]


def _dur(start: float | None, end: float | None) -> str:
    if start is None:
        return ""
    d = (end if end is not None else time.time()) - start
    return f"{d * 1000:,.1f} ms" if d < 10 else f"{d:,.1f} s"


def _table(headers: list[str], rows: list[list[str]], empty: str, cls: str = "") -> str:
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _state(s: str) -> str:
    return f'<span class="state {escape(s.lower())}">{escape(s)}</span>'


def _bar(used: float, total: float, key: str = "") -> str:
    pct = 0 if not total else min(100.0, 100.0 * used / total)
    text = (f"{amount(key, used)} / {amount(key, total)}" if key in SIZES
            else f"{_num(used)} / {_num(total)}")
    return f'<span class="bar"><span style="width:{pct:.0f}%"></span></span> {text}'


def _card(label: str, value: str, cls: str = "") -> str:
    return f'<div class="card {cls}"><div class="value">{value}</div><div>{escape(label)}</div></div>'


# -- fragments ---------------------------------------------------------------------
def summary(head: Any, q: dict) -> str:
    nodes = api.nodes(head)
    alive = [n for n in nodes if n["alive"]]
    counts = head.history.summary()["counts"]
    cards = [_card("nodes alive", str(len(alive)), "")]
    for res in ("CPU", "GPU"):
        total = sum(n["resources_total"].get(res, 0) for n in alive)
        if total or res == "CPU":
            used = sum(n["resources_used"].get(res, 0) for n in alive)
            cards.append(_card(f"{res} used of {_num(total)}", _num(used)))
    store = [n["object_store"] for n in alive]
    cards.append(_card(f"object store of {_mib(sum(s['capacity'] for s in store))}",
                       _mib(sum(s["used"] for s in store))))
    cards.append(_card("spilled to disk", _mib(sum(s["spilled_bytes"] for s in store))))
    for state in api.STATES:
        cards.append(_card(f"tasks {state.lower()}", f"{counts.get(state, 0):,}", state.lower()))
    return f'<div class="cards">{"".join(cards)}</div>'


def nodes_table(head: Any, q: dict) -> str:
    rows = []
    for n in api.nodes(head):
        total, used = n["resources_total"], n["resources_used"]
        # (the object store has a column of its own; the scheduler's own keys are left out)
        res = "<br>".join(f"{escape(k)} {_bar(used.get(k, 0), v, k)}" for k, v in sorted(total.items())
                          if shown(k) and k != "object_store_memory")
        st = n["object_store"]
        load = n["load"]
        rows.append([
            f'<code title="{escape(n["node_id"])}">{escape(n["node_id"][:12])}</code>'
            + (' <span class="tag">head</span>' if n["is_head"] else ""),
            escape(f'{n["ip"]}:{n["port"]}' if n["port"] else n["ip"]),
            _state(n["state"]) + (f'<br><small>{escape(n["death_reason"])}</small>'
                                  if n["death_reason"] else ""),
            res, f'{_mib(st["used"])} / {_mib(st["capacity"])}',
            f'{_mib(st["spilled_bytes"])} ({st["spilled"]} objects)',
            str(load.get("queued", 0)), str(load.get("running", 0)), str(load.get("workers", 0)),
            str(load.get("actors", 0))])
    return _table(["node", "address", "state", "resources (used / total)", "object store",
                   "spilled", "queued", "running", "workers", "actors"], rows, "No node yet.",
                  "nodes")


def task_counts(head: Any, q: dict) -> str:
    s = head.history.summary()
    cards = "".join(_card(st.lower(), f"{s['counts'].get(st, 0):,}", st.lower())
                    for st in api.STATES)
    rows = [[escape(name)] + [f"{c.get(st, 0):,}" for st in api.STATES]
            for name, c in sorted(s["by_function"].items(),
                                  key=lambda kv: -sum(kv[1].values()))[:200]]
    table = _table(["function"] + [st.lower() for st in api.STATES], rows,
                   "No task has run yet.", "by-function")
    return f'<div class="cards">{cards}</div>{table}'


def failures(head: Any, q: dict) -> str:
    items = []
    for t in api.failures(head):
        items.append(
            f'<details data-key="{escape(t["task_id"])}"><summary>{_state("FAILED")} '
            f'<b>{escape(t["name"])}</b> <code>{escape(t["task_id"])}</code> '
            f'pid {t["pid"] or "-"} at {_when(t["end_time"])}</summary>'
            f'<pre>{escape(t["error"] or "")}</pre></details>')
    return "".join(items) or '<p class="empty">No failures.</p>'


def recent_tasks(head: Any, q: dict) -> str:
    rows = []
    for t in api.tasks(head, limit=100)["tasks"]:
        rows.append([f'<code>{escape(t["task_id"])}</code>', escape(t["name"]),
                     _state(t["state"]), f'<code>{escape((t["node_id"] or "")[:8])}</code>',
                     str(t["pid"] or ""), _when(t["start_time"]),
                     _dur(t["start_time"], t["end_time"])])
    return _table(["task", "function", "state", "node", "pid", "started", "duration"], rows,
                  "No task yet.", "tasks")


def actors_table(head: Any, q: dict) -> str:
    rows = []
    for a in api.actors(head):
        log = (f' <a href="/logs?actor={quote(a["actor_id"])}">logs</a>' if a["pid"] else "")
        rows.append([f'<code title="{escape(a["actor_id"])}">{escape(a["actor_id"][:32])}</code>',
                     escape(a["class_name"] or ""), escape(a["name"]), _state(a["state"]),
                     f'<code>{escape((a["node_id"] or "")[:8])}</code>',
                     f'{a["pid"] or ""}{log}', str(a["restarts"]), str(a["pending_calls"]),
                     escape(a["death_cause"] or "")])
    return _table(["actor", "class", "name", "state", "node", "pid", "restarts",
                   "pending calls", "death cause"], rows, "No actor yet.", "actors")


def objects_table(head: Any, q: dict) -> str:
    data = api.objects(head)
    rows = [[f'<code>{escape(str(o["object_id"]))}</code>', f'{o["object_size"] or 0:,}',
             escape(o["location"] or ""), escape(o["task_status"] or ""),
             escape(f'{o["holder_type"]} {o["pid"] or ""}'.lower()),
             "owner" if o["is_owner"] else "borrower", str(o["local_refs"]), str(o["borrowers"])]
            for o in data["objects"][:500]]
    note = f'<p class="error">{escape(data["error"])}</p>' if data.get("error") else ""
    stores = "".join(
        f'<li>node <code>{escape(node_id[:12])}</code>: {_mib(s.get("used"))} of '
        f'{_mib(s.get("capacity"))} in shared memory, {s.get("spilled", 0)} objects '
        f'({_mib(s.get("spilled_bytes"))}) spilled</li>' for node_id, s in data["stores"].items())
    table = _table(["object", "bytes", "where", "status", "holder", "holds as", "local refs",
                    "borrowers"], rows, "No object is held on the head's node.", "objects")
    return f"{note}<ul>{stores}</ul>{table}"


def stream(head: Any, q: dict) -> str:
    try:
        window = min(3600.0, max(5.0, float(q.get("window", 120))))
    except ValueError:
        window = 120.0
    now = time.time()
    return task_stream(head.history.window(now - window), api.actor_names(head), now, window)


def logs_list(head: Any, q: dict) -> str:
    files = _logs.find(head.session_dir, actor=q.get("actor") or None)
    rows = [[f'<a href="/logs/{quote(f["name"])}">{escape(f["name"])}</a>', str(f["pid"]),
             f'<code>{escape(f["actor_id"][:32])}</code>', f["stream"], f'{f["size"]:,}',
             _when(f["mtime"])] for f in files]
    return _table(["file", "pid", "actor", "stream", "bytes", "modified"], rows,
                  "No worker has printed anything yet (on the head's machine).", "logs")


def log_tail(head: Any, q: dict) -> str:
    path = _logs.path_of(head.session_dir, q.get("name", ""))
    lines = _logs.read_tail(path, 500) if path else []
    return f'<pre class="log">{escape(chr(10).join(lines))}</pre>'


FRAGMENTS = {
    "summary": summary, "nodes": nodes_table, "task_counts": task_counts, "failures": failures,
    "recent_tasks": recent_tasks, "actors": actors_table, "objects": objects_table,
    "stream": stream, "logs": logs_list, "log": log_tail,
}

# page path -> (title, [(section title, fragment, refresh ms[, its query])])
PAGES: dict[str, tuple[str, list[tuple]]] = {
    "/": ("Cluster", [("", "summary", 2000), ("Nodes", "nodes", 2000),
                      ("Task stream, last minute", "stream", 2000, {"window": "60"})]),
    "/tasks": ("Tasks", [("Counts", "task_counts", 2000), ("Recent failures", "failures", 3000),
                         ("Recent tasks", "recent_tasks", 2000)]),
    "/actors": ("Actors", [("", "actors", 2000)]),
    "/objects": ("Objects", [("", "objects", 5000)]),
    "/stream": ("Task stream", [("", "stream", 2000)]),
    "/logs": ("Logs", [("Worker log files", "logs", 5000)]),
}


def page(head: Any, path: str, q: dict) -> str | None:
    """The HTML of the page at `path` (a log file's page: /logs/<name>); None if none."""
    sections: list[tuple]
    if path.startswith("/logs/"):
        name = path[len("/logs/"):]
        if _logs.path_of(head.session_dir, name) is None:
            return None
        title, sections, q = name, [("", "log", 2000, {})], {"name": name}
    elif path in PAGES:
        title, sections = PAGES[path]
    else:
        return None
    body = []
    for heading, frag, every, *own in sections:
        fq = {**q, **own[0]} if own else q
        query = "&".join(f"{quote(k)}={quote(v)}" for k, v in fq.items())
        src = f"/fragment/{frag}" + (f"?{query}" if query else "")
        h = f"<h2>{escape(heading)}</h2>" if heading else ""
        body.append(f'<section>{h}<div data-fragment="{escape(src)}" data-every="{every}">'
                    f'{FRAGMENTS[frag](head, fq)}</div></section>')
    return _layout(head, title, path, "".join(body))


def _layout(head: Any, title: str, path: str, body: str) -> str:
    nav = "".join(f'<a href="{href}"{" class=here" if href == path else ""}>{escape(label)}</a>'
                  for href, label in NAV)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{escape(title)} · zray</title><link rel="stylesheet" href="/static/style.css">
<link rel="icon" href="data:,"></head>
<body><header><span class="logo">zray</span><nav>{nav}</nav>
<span id="live" class="ok">live</span></header>
<main><h1>{escape(title)}</h1>{body}</main>
<footer>head {escape(head.address)} · JSON: <a href="/api/nodes">/api/nodes</a>
<a href="/api/tasks">/api/tasks</a> <a href="/api/actors">/api/actors</a>
<a href="/api/objects">/api/objects</a> · <a href="/metrics">/metrics</a> ·
<a href="/api/timeline" download="zray-timeline.json">timeline (Chrome trace)</a></footer>
<script src="/static/app.js"></script></body></html>"""
