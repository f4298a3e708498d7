"""What a newcomer tripped over (issue 10, item 9): init() says what it started or
joined, as Ray does; people read sizes and resources as `ray status` writes them
(warnings, `zray status`, the dashboard) while cluster_resources() keeps Ray's raw
dict; a driver that exits right after starting many actors leaves a clean terminal;
a trickle of tasks stays on the most recently idle worker, as in Ray."""
from __future__ import annotations

import re
import subprocess
import sys
import time

from helpers import run_driver
from test_bad_frames import head_address, probe, raw_dealer, spec

from zray import _protocol as P
from zray import _resource_text as RT
from zray.brokers import _scheduling as S

T = 60


# -- sizes and resource maps, as people read them ---------------------------------------
def test_sizes_and_resources_read_as_ray_status_writes_them():
    # Ray's format_memory: the largest binary unit reached, 2 decimals; bytes as an int.
    assert [RT.size(n) for n in (0, 1, 1023, 1024, 25276510208.0, 7582953062.0, 2**40)] == \
        ["0B", "1B", "1023B", "1.00KiB", "23.54GiB", "7.06GiB", "1.00TiB"]
    node = {"CPU": 2.0, "node:127.0.0.1": 1.0, "node:__internal_head__": 1.0,
            "memory": 25276510208.0, "object_store_memory": 7582953062.0, "custom": 3.0,
            "CPU_group_ab12": 1.0, "bundle_group_ab12": 1.0}
    assert RT.describe(node) == "2.0 CPU, 3.0 custom, 23.54GiB memory, 7.06GiB object_store_memory"
    # A request renamed into a placement group's bundle reads as what it asks of it.
    assert RT.describe({"CPU_group_0_ab12": 1.0, "bundle_group_0_ab12": 0.001}) == "1.0 CPU"
    assert RT.describe({"node:127.0.0.1": 1.0}) == "nothing"
    free = {**node, "CPU": 1.5, "memory": node["memory"] - 2 * 2**30}
    assert RT.usage(node, free) == ["0.5/2.0 CPU", "0.0/3.0 custom", "2.00GiB/23.54GiB memory",
                                    "0B/7.06GiB object_store_memory"]


def test_cluster_resources_keep_rays_raw_format(cluster):
    """The API stays exactly Ray's: floats of bytes and the node: keys (people-facing
    text is what changed, not this)."""
    total = cluster.cluster_resources()
    assert total["node:__internal_head__"] == 1.0 and total["node:127.0.0.1"] == 1.0
    assert set(total) == {"CPU", "memory", "object_store_memory", "node:127.0.0.1",
                          "node:__internal_head__"}
    assert all(type(v) is float for v in total.values())
    assert total["memory"] > 2**20 and total["memory"].is_integer()
    assert set(cluster.available_resources()) == set(total)


def test_the_unschedulable_warning_names_sizes_and_no_internal_keys(cluster):
    """The head's warning to an owner whose task no node can run: sizes in binary
    units, no node: keys (it wrote {'memory': 25276510208.0, 'node:__internal_head__':
    1.0, ...})."""
    big = {"CPU": 8.0, "memory": float(2**45), "object_store_memory": float(2**40),
           "node:10.9.9.9": 1.0}
    with raw_dealer(head_address(), b"Nnewcomer") as node:
        node.send(P.encode(P.NODE_HELLO, b"newcomer", "ipc:///nowhere", big, {}))
        node.send(P.encode(P.HEARTBEAT, b"newcomer", big, {"queued": 0, "running": 0}))
        probe(node)
        node.send(P.encode(P.SPILLBACK, [spec(T_RES={"CPU": 16.0, "memory": float(2**31)},
                                              T_OWNER=b"me", T_NAME="wide")], {}))
        node.send(P.encode(P.SPILLBACK, [spec(T_RES={"CPU_group_0_ab12": 1.0,
                                                     "bundle_group_0_ab12": 0.001},
                                              T_OWNER=b"me", T_NAME="grouped")], {}))
        said = {}
        while len(said) < 2:
            target, text = _recv_warning(node)
            assert target == b"me"
            said[text.split()[2]] = text
    assert ("The task wide cannot be scheduled: it needs 16.0 CPU, 2.00GiB memory but no node "
            "has 16.0 CPU (the largest node offers 8.0 CPU, 32.00TiB memory, 1.00TiB "
            "object_store_memory).") in said["wide"], said
    assert "the bundle it asks for cannot hold 1.0 CPU." in said["grouped"], said
    for text in said.values():
        assert "node:" not in text and "{" not in text and "35184372088832" not in text, text


def _recv_warning(sock, timeout: float = 10.0) -> tuple:
    """The next WARN the head sends on `sock` (other messages skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0 and sock.poll(int(left * 1000)), "the head sent no warning"
        mtype, f = P.decode(sock.recv())
        if mtype == P.WARN:
            return f[0], f[1]


def test_zray_status_reads_like_ray_status(cluster):
    """`zray status` wrote "memory 0.0 / 25,276,510,208.0"; now, as `ray status`:
    " 0B/23.54GiB memory", and nothing on stderr (no "Connected to" line)."""
    session = cluster._runtime.current().node_info["session_dir"]
    out = subprocess.run([sys.executable, "-m", "zray.cli", "status", "--address", session],
                         capture_output=True, text=True, timeout=T)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    lines = out.stdout.splitlines()
    assert "1 node(s) alive, 0 dead" in lines and "resources (used/total):" in lines, out.stdout
    assert re.search(r"^node [0-9a-f]{12} 127\.0\.0\.1 +alive: ", out.stdout, re.M), out.stdout
    assert " 0.0/2.0 CPU" in lines, out.stdout
    size = r"\d+(\.\d\d[KMGT]iB|B)"
    assert re.search(rf"^ {size}/{size} memory$", out.stdout, re.M), out.stdout
    assert re.search(rf"^ {size}/{size} object_store_memory$", out.stdout, re.M), out.stdout
    assert "node:" not in out.stdout and "," not in out.stdout.split("resources")[1]


# -- what init() says ---------------------------------------------------------------------
SAYS = """
import subprocess, sys, zray
ctx = zray.init(num_cpus=1)
join = "import zray; zray.init(address=%r{}); zray.shutdown()" % ctx["session_dir"]
for extra in ("", ", logging_level='WARNING'"):
    p = subprocess.run([sys.executable, "-c", join.format(extra)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    print("joined:", repr(p.stderr))
print("url:", ctx.dashboard_url)
print("session:", ctx["session_dir"])
zray.shutdown()
zray.init(num_cpus=1, include_dashboard=False)
"""


def test_init_says_what_it_started_and_what_it_joined(tmp_path):
    """As Ray's "Started a local Ray instance. View the dashboard at ..." and
    "Connected to Ray cluster. View the dashboard at ..." (joining said nothing), and
    nothing with logging_level above INFO (the CLI's own joins)."""
    proc = run_driver(tmp_path, SAYS)
    out = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    url, session = "http://" + out["url"], out["session"]
    joined = [line.split(": ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("joined")]
    assert joined == [repr(f"Connected to the zray cluster at {session}. View the dashboard at {url}\n"),
                      repr("")], proc.stdout
    assert proc.stderr.splitlines() == [f"Started a local zray instance. View the dashboard at {url}",
                                        "Started a local zray instance."], proc.stderr


# -- a driver that exits at once ------------------------------------------------------------
EXITS_AT_ONCE = """
import zray

@zray.remote(num_cpus=0)
class A:
    def ping(self):
        return 1

for n in (50, 0, 0) * 3:   # (with no actors, the pool's workers lose the race more often)
    zray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    actors = [A.remote() for _ in range(n)]
    zray.shutdown()
"""


def test_a_driver_that_exits_right_after_starting_actors_leaves_a_clean_terminal(tmp_path):
    """Workers still starting when their node stopped found its session directory gone
    and printed "could not connect to the node broker" with two tracebacks each (about
    one cluster in six with 50 actors here, one in two with none); they now exit quietly."""
    proc = run_driver(tmp_path, EXITS_AT_ONCE, timeout=120)
    assert proc.stdout == "" and proc.stderr == "", proc.stdout + proc.stderr


# -- the most recently idle worker first ---------------------------------------------------
def _task(n: int) -> list:
    s = spec(T_RES={"CPU": 1.0}, T_NAME=f"t{n}")
    s[P.T_ACTOR] = None
    return s


def test_a_trickle_of_tasks_stays_on_the_most_recently_idle_worker():
    """Work goes to the worker idle the shortest (Ray's worker pool pops the most
    recently pushed): taken in turn, every worker paid its first imports (numpy,
    70-200 ms each: task_100mb_ref_arg read 7.9/s) and none idled long enough to be
    reaped. The longest idle is still the one reaped."""
    sched = S.LocalScheduler({"CPU": 3.0}, 1, 3)
    acts = sched.start_pool() + sched.submit([_task(i) for i in range(3)])
    clock = 0.0
    while any(a[0] == S.SPAWN for a in acts):   # the burst grows the pool to 3 workers
        clock += 1.0
        acts = [b for a in acts if a[0] == S.SPAWN for b in sched.worker_ready(a[1], clock)]
    running = dict(sched.tasks.running)
    assert len(running) == 3 and len(set(running.values())) == 3
    for task_id, wid in sorted(running.items(), key=lambda kv: kv[1]):
        clock += 1.0
        sched.result(wid, task_id, clock)
    last, longest = max(running.values()), min(running.values())   # idle last, idle first
    for n in range(5):
        t = _task(10 + n)
        acts = sched.submit([t])
        assert [a[1] for a in acts if a[0] == S.DISPATCH] == [last], acts
        clock += 1.0
        sched.result(last, t[P.T_ID], clock)
    assert sched.lease(b"client", {"CPU": 1.0}) == last
    sched.unlease(last, clock)
    assert (S.KILL, longest) in sched.reap_idle(clock + 100.0, 5.0)
