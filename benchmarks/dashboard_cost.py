"""What the dashboard and the task events cost (issue 11's budget: the microbenchmark
moves by less than 5%, the idle embedded cluster stays under 300 MB RSS).

    python benchmarks/dashboard_cost.py [--tasks 100000]

Prints, for an embedded cluster with the dashboard and without it:
  - the RSS of the idle cluster (driver and every process it started), after one task;
  - the same after `--tasks` tasks (the head's task history full) and after every page
    and API of the dashboard was fetched;
  - the head's CPU time while a browser-like client fetches a page's fragments every
    2 s during a burst of tasks, against the same burst unwatched.
With --ab METRIC[,METRIC...]: `zray microbenchmark --filter METRIC` with the task
events off (ZRAY_TASK_EVENTS=0) and on, interleaved --reps times; the best and the
median of each. With --cpu ROUNDS: the CPU time per task of every process, events off
and on.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import zray
from zray import _init
from zray._bench import proc

PAGES = ["/", "/tasks", "/actors", "/objects", "/stream", "/logs", "/api/nodes", "/api/tasks",
         "/api/actors", "/api/objects", "/api/timeline", "/metrics"]
FRAGMENTS = ["/fragment/summary", "/fragment/nodes", "/fragment/task_counts",
             "/fragment/recent_tasks", "/fragment/stream"]


@zray.remote
def tiny(x):
    return x


def rss_mb() -> float:
    return sum(proc.rss_kb(p) for p in proc.descendants(os.getpid())) / 1024.0


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def burst(n: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, n, 1000):
        zray.get([tiny.remote(j) for j in range(i, min(n, i + 1000))])
    return time.perf_counter() - t0


def measure(dashboard: bool, tasks: int) -> dict:
    ctx = zray.init(num_cpus=2, include_dashboard=dashboard)
    try:
        zray.get(tiny.remote(0))
        time.sleep(2.0)
        out = {"idle_rss_mb": rss_mb()}
        head = _init._cluster.pids[0]
        before = cpu_s(head)
        out["burst_s"] = burst(tasks)
        time.sleep(2.5)   # the last events reach the head
        out["head_cpu_s_unwatched"] = cpu_s(head) - before
        if dashboard:
            base = "http://" + ctx.dashboard_url
            for page in PAGES:
                urllib.request.urlopen(base + page, timeout=60).read()
            stop = threading.Event()
            thread = threading.Thread(target=_watch, args=(base, stop), daemon=True)
            before = cpu_s(head)
            thread.start()
            out["burst_s_watched"] = burst(tasks)
            time.sleep(2.5)
            stop.set()
            thread.join()
            out["head_cpu_s_watched"] = cpu_s(head) - before
        out["rss_after_mb"] = rss_mb()
        out["head_rss_mb"] = proc.rss_kb(head) / 1024.0
        return out
    finally:
        zray.shutdown()


def _watch(base: str, stop: threading.Event) -> None:
    """What an open cluster page and tasks page fetch: a few fragments every 2 s."""
    while not stop.wait(2.0):
        for frag in FRAGMENTS:
            urllib.request.urlopen(base + frag, timeout=60).read()


def cpu_per_task(events: bool, tasks: int, sync: bool) -> float:
    """CPU seconds (every process of the cluster, the driver included) per task."""
    os.environ["ZRAY_TASK_EVENTS"] = "1" if events else "0"   # the brokers inherit it
    zray.init(num_cpus=2, include_dashboard=False)
    try:
        zray.get(tiny.remote(0))
        pids = proc.descendants(os.getpid())
        before = sum(cpu_s(p) for p in pids)
        if sync:
            for i in range(tasks):
                zray.get(tiny.remote(i))
        else:
            burst(tasks)
        time.sleep(2.5)   # the events' last batches are sent and taken in
        return (sum(cpu_s(p) for p in pids) - before) / tasks
    finally:
        zray.shutdown()
        del os.environ["ZRAY_TASK_EVENTS"]


def ab(metrics: list[str], reps: int) -> None:
    """Each metric with the events off and on, in alternating order."""
    for metric in metrics:
        res: dict[str, list] = {"off": [], "on": []}
        for i in range(reps):
            for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                env = dict(os.environ, ZRAY_TASK_EVENTS="0" if mode == "off" else "1")
                out = subprocess.run([sys.executable, "-m", "zray.cli", "microbenchmark", "--json",
                                      "--filter", metric], capture_output=True, text=True, env=env)
                try:
                    res[mode].append(json.loads(out.stdout)["metrics"][metric]["value"])
                except (ValueError, KeyError):
                    print(f"{metric} ({mode}) failed: {out.stderr[-300:]}", flush=True)
        if res["off"] and res["on"]:
            best = max(res["on"]) / max(res["off"]) - 1
            med = statistics.median(res["on"]) / statistics.median(res["off"]) - 1
            print(f"{metric:<30} events on vs off: best {best * 100:+.1f}%, median {med * 100:+.1f}% "
                  f"({len(res['off'])} + {len(res['on'])} runs)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--ab", default=None, metavar="METRICS",
                    help="instead: these microbenchmark metrics (comma-separated), events off/on")
    ap.add_argument("--reps", type=int, default=6, help="runs of each, with --ab")
    ap.add_argument("--cpu", type=int, default=0, metavar="ROUNDS",
                    help="instead: CPU per task with the task events on and off, ROUNDS times")
    args = ap.parse_args()
    if args.ab:
        ab(args.ab.split(","), args.reps)
        return
    if args.cpu:
        for sync in (False, True):
            n = args.tasks if not sync else args.tasks // 5
            for _ in range(args.cpu):
                off, on = cpu_per_task(False, n, sync), cpu_per_task(True, n, sync)
                print(f"{'sync' if sync else 'async'} tasks: CPU per task {off * 1e6:.1f} us "
                      f"with the events off, {on * 1e6:.1f} us on ({(on / off - 1) * 100:+.1f}%)",
                      flush=True)
        return
    for dashboard in (False, True):
        res = measure(dashboard, args.tasks)
        print(f"include_dashboard={dashboard}: " +
              ", ".join(f"{k} {v:.2f}" for k, v in res.items()), flush=True)


if __name__ == "__main__":
    main()
