"""The dashboard against a live cluster: the JSON API with tasks, actors and objects,
/metrics parsed by Prometheus' own parser, the timeline as a Chrome trace, worker log
files with `zray logs`, bad requests answered plainly, and nothing of it with
include_dashboard=False."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from conftest import leftovers, wait_gone, zray_pids
from helpers import hold_until, poll
from prometheus_client.parser import text_string_to_metric_families

import zray
from zray import _init

pytestmark = pytest.mark.module_cluster
T = 30


@pytest.fixture(scope="module")
def dash():
    """The module's cluster, with its dashboard: (context, base URL)."""
    before_pids, before_files = zray_pids(), leftovers()
    ctx = zray.init(num_cpus=2)
    yield ctx, "http://" + ctx.dashboard_url
    zray.shutdown()
    pids, files = wait_gone(before_pids, before_files)
    assert not pids and not files, f"module leaked {pids} {files}"


def fetch(url: str, headers: dict | None = None) -> tuple[int, str, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=T) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def api(base: str, path: str):
    status, ctype, body = fetch(base + path)
    assert status == 200 and ctype == "application/json", (status, body[:300])
    return json.loads(body)


@zray.remote
def square(x):
    return x * x


@zray.remote
def fails():
    raise KeyError("no-such-key-in-the-dashboard-test")


@zray.remote
def chatty(tag):
    print(f"chatty says {tag}")
    return zray.get_runtime_context().get_task_id()


@zray.remote
class Keeper:
    def __init__(self):
        self.box = None

    def pid(self):
        return os.getpid()

    def keep(self, box):
        self.box = box
        return len(box)


def test_init_returns_and_prints_the_dashboard_url(dash):
    ctx, base = dash
    assert ctx.dashboard_url == ctx.address_info["webui_url"]
    host, port = ctx.dashboard_url.rsplit(":", 1)
    assert host == "127.0.0.1" and 8265 <= int(port) < 65536
    status, ctype, body = fetch(base + "/")
    assert status == 200 and "text/html" in ctype and "Nodes" in body


def test_api_nodes_tasks_actors_objects(dash):
    ctx, base = dash
    assert zray.get([square.remote(i) for i in range(20)], timeout=T) == [i * i for i in range(20)]
    with pytest.raises(KeyError):
        zray.get(fails.remote(), timeout=T)
    k = Keeper.remote()
    pid = zray.get(k.pid.remote(), timeout=T)
    big = zray.put(np.ones(300_000))
    assert zray.get(k.keep.remote([big]), timeout=T) == 1

    def tasks_in():
        t = api(base, "/api/tasks")
        done = t["by_function"].get("square", {}).get("FINISHED", 0) == 20 \
            and t["counts"]["FAILED"] >= 1 \
            and t["by_function"].get("Keeper.keep", {}).get("FINISHED", 0) == 1
        return t if done else None
    tasks = poll(tasks_in, T, "the tasks reaching /api/tasks")
    assert tasks["history_capacity"] >= 1000
    squares = [t for t in tasks["tasks"] if t["name"] == "square"]
    assert len(squares) == 20 and {t["state"] for t in squares} == {"FINISHED"}
    for t in squares:
        assert t["start_time"] <= t["end_time"] and t["node_id"] == ctx["node_id"] and t["pid"]
    failed = api(base, "/api/tasks?state=FAILED&name=fails")["tasks"]
    assert failed and "no-such-key-in-the-dashboard-test" in failed[0]["error"]

    node, = api(base, "/api/nodes")
    assert node["node_id"] == ctx["node_id"] and node["state"] == "ALIVE" and node["is_head"]
    assert node["resources_total"]["CPU"] == 2.0
    poll(lambda: api(base, "/api/nodes")[0]["object_store"]["used"] >= big_size(),
         T, "the stored array in the node's figures")

    actor = next(a for a in api(base, "/api/actors") if a["actor_id"] == k._actor_id.hex())
    assert actor["class_name"] == "Keeper" and actor["state"] == "ALIVE" and actor["pid"] == pid
    assert actor["restarts"] == 0 and actor["node_id"] == ctx["node_id"]

    objects = api(base, "/api/objects")
    mine = [o for o in objects["objects"] if o["object_id"] == big.hex()]
    assert {o["holder_type"] for o in mine} == {"DRIVER", "WORKER"}, "the driver owns, the actor borrows"
    assert next(o for o in mine if o["is_owner"])["location"] == "SHARED_MEMORY"
    assert objects["stores"][ctx["node_id"]]["used"] >= big_size()


def big_size() -> int:
    return 300_000 * 8


def test_running_and_pending_tasks_are_counted(dash, tmp_path):
    _ctx, base = dash
    gate = str(tmp_path / "go")
    refs = [hold_until.remote(gate) for _ in range(3)]   # 2 CPUs: two run, one waits

    def states():
        t = api(base, "/api/tasks?name=hold_until")
        mine = t["by_function"].get("hold_until", {})
        return t if mine.get("RUNNING") == 2 and mine.get("PENDING") == 1 else None
    t = poll(states, T, "2 RUNNING and 1 PENDING hold_until")
    assert t["counts"]["RUNNING"] >= 2 and t["counts"]["PENDING"] >= 1
    assert {x["state"] for x in t["tasks"]} == {"RUNNING", "PENDING"}
    with open(gate, "w"):
        pass
    assert zray.get(refs, timeout=T) == ["released"] * 3
    poll(lambda: api(base, "/api/tasks")["by_function"]["hold_until"]["FINISHED"] == 3, T,
         "the three ending")


def test_metrics_parse_as_prometheus_text(dash):
    _ctx, base = dash
    zray.get(square.remote(3), timeout=T)
    status, ctype, body = fetch(base + "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert families and all(name.startswith("zray_") for name in families)
    for name in ("zray_nodes", "zray_tasks", "zray_actors", "zray_node_resources_total",
                 "zray_node_resources_used", "zray_object_store_used_bytes",
                 "zray_object_store_spilled_bytes"):
        assert name in families, f"{name} missing from /metrics"
    tasks = {s.labels["state"]: s.value for s in families["zray_tasks"].samples}
    assert set(tasks) == {"PENDING", "RUNNING", "FINISHED", "FAILED"}
    cpu = [s for s in families["zray_node_resources_total"].samples if s.labels["resource"] == "CPU"]
    assert [s.value for s in cpu] == [2.0]
    assert next(s.value for s in families["zray_nodes"].samples if s.labels["state"] == "ALIVE") == 1


@zray.remote
def nap(seconds):
    time.sleep(seconds)
    return seconds


def test_timeline_is_a_chrome_trace(dash, tmp_path):
    _ctx, base = dash
    zray.get([nap.remote(0.05) for _ in range(4)], timeout=T)
    k = Keeper.remote()
    zray.get(k.pid.remote(), timeout=T)

    def naps():
        events = zray.timeline()
        return events if sum(e["name"] == "nap" for e in events) == 4 and \
            any(e["name"] == "Keeper.pid" for e in events) else None
    events = poll(naps, T, "the naps in the timeline")
    _check_trace(events)
    for e in (e for e in events if e["name"] == "nap"):
        assert e["dur"] >= 50_000 and e["cat"] == "task"
    assert next(e for e in events if e["name"] == "Keeper.pid")["cat"] == "actor_call"
    path = tmp_path / "trace.json"
    assert zray.timeline(str(path)) is None
    _check_trace(json.loads(path.read_text()))
    _check_trace(api(base, "/api/timeline"))
    later = api(base, f"/api/timeline?since={time.time() + 3600}")
    assert not [e for e in later if e["ph"] == "X"]
    with pytest.raises(TypeError):
        zray.timeline(42)


def _check_trace(events: list) -> None:
    """The Chrome trace event format (JSON array form): complete events with numeric
    times and ids, every thread named by a metadata event."""
    assert isinstance(events, list) and events
    named = {(e["pid"], e["tid"]) for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    for e in events:
        assert e["ph"] in ("X", "M") and isinstance(e["name"], str)
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if e["ph"] == "X":
            assert isinstance(e["ts"], (int, float)) and isinstance(e["dur"], (int, float))
            assert e["dur"] >= 0 and (e["pid"], e["tid"]) in named
    json.dumps(events)


def test_logs_files_api_and_cli(dash):
    ctx, base = dash
    task_id = zray.get(chatty.remote("apple"), timeout=T)
    zray.get(chatty.remote("pear"), timeout=T)
    files = poll(lambda: [f for f in api(base, "/api/logs") if f["stream"] == "stdout"
                          and "apple" in fetch(base + "/api/logs/" + f["name"])[2]], T,
                 "the worker's log file")
    name = files[0]["name"]
    assert name == f"worker-{files[0]['pid']}.out"
    status, _ctype, text = fetch(base + f"/api/logs/{name}?lines=1000")
    assert status == 200 and "chatty says apple" in text
    session = ctx["session_dir"]

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "zray.cli", "logs", "--address", session,
                               *args], capture_output=True, text=True, timeout=T)
    listing = cli()
    assert listing.returncode == 0 and name in listing.stdout
    one = cli("--task", task_id)
    assert one.returncode == 0 and one.stdout.strip() == "chatty says apple", one.stdout
    by_pid = cli("--pid", str(files[0]["pid"]))
    assert "chatty says apple" in by_pid.stdout and "::zray" not in by_pid.stdout
    k = Keeper.remote()
    zray.get(k.pid.remote(), timeout=T)
    missing = cli("--actor", k._actor_id.hex())
    assert missing.returncode == 1 and "no worker log file" in missing.stderr


def test_zray_timeline_cli(dash, tmp_path):
    ctx, _base = dash
    zray.get(square.remote(2), timeout=T)
    out = tmp_path / "t.json"
    run = subprocess.run([sys.executable, "-m", "zray.cli", "timeline", "--address",
                          ctx["session_dir"], "-o", str(out)], capture_output=True, text=True,
                         timeout=T)
    assert run.returncode == 0, run.stderr
    assert "Perfetto" in run.stdout
    _check_trace(json.loads(out.read_text()))


def test_bad_requests_are_answered_plainly(dash):
    _ctx, base = dash
    assert fetch(base + "/no/such/page")[0] == 404
    status, _ctype, body = fetch(base + "/api/tasks?state=BOGUS")
    assert status == 400 and "state must be one of" in json.loads(body)["error"]
    assert fetch(base + "/api/tasks?limit=many")[0] == 400
    assert fetch(base + "/api/timeline?since=yesterday")[0] == 400
    assert fetch(base + "/api/logs/..%2f..%2fnode.json")[0] == 404
    assert fetch(base + "/api/logs/node.json")[0] == 404
    assert fetch(base + "/static/../__init__.py")[0] == 404
    # A page that rebinds its own name to 127.0.0.1 cannot read it.
    assert fetch(base + "/api/nodes", {"Host": "attacker.example:8265"})[0] == 403
    assert fetch(base + "/api/nodes", {"Host": "localhost"})[0] == 200
    assert zray.get(square.remote(4), timeout=T) == 16, "the cluster is unharmed"


def _listening_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A":   # LISTEN
                    inodes.add(parts[9])
    return inodes


def _listens(pid: int) -> bool:
    listening = _listening_inodes()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in listening:
            return True
    return False


@pytest.mark.usefixtures("dash")
def test_the_head_listens_only_for_its_dashboard():
    head_pid = _init._cluster.pids[0]
    assert _listens(head_pid), "the embedded head serves its dashboard on tcp"
