"""Startup workloads: cold_start (fresh interpreter to first task result) and
idle_rss_mb (resident memory of an idle cluster's processes)."""

import os
import statistics
import subprocess
import sys
import tempfile
import time

from . import proc

# A cold start far slower than Ray's few seconds is a hang, not a figure.
_COLD_START_TIMEOUT_S = 180
# Lines of a failed cold start's stderr quoted in the error.
_STDERR_TAIL_LINES = 5
# Characters of each process's command line kept in idle_rss_mb's details.
_CMDLINE_CHARS = 120

# Run by a fresh interpreter: prints the time from before the import to the
# first task's result, then the time shutdown took.
_COLD_START_CODE = """\
import time
t0 = time.perf_counter()
import %s as ray
ray.init(num_cpus=%d)
@ray.remote
def f():
    return 1
assert ray.get(f.remote()) == 1
t1 = time.perf_counter()
print('COLD_START', t1 - t0, flush=True)
ray.shutdown()
print('SHUTDOWN', time.perf_counter() - t1, flush=True)
"""


def _child_env(rn):
    env = dict(os.environ)
    if rn.backend == "zray":
        # Make the child import the same zray as this process.
        root = os.path.dirname(os.path.dirname(os.path.abspath(rn.ray.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _one_cold_start(code, env):
    """(cold start s, shutdown s or None, process wall s) of one fresh interpreter."""
    w0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tempfile.gettempdir(),
        env=env,
        check=False,  # a failure is reported below, with the end of its stderr
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=_COLD_START_TIMEOUT_S,
    )
    wall = time.perf_counter() - w0
    cold = shut = None
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "COLD_START":
            cold = float(parts[1])
        elif len(parts) == 2 and parts[0] == "SHUTDOWN":
            shut = float(parts[1])
    if done.returncode != 0 or cold is None:
        tail = (done.stderr or "").strip().splitlines()[-_STDERR_TAIL_LINES:]
        raise RuntimeError(
            f"cold start subprocess failed (rc={done.returncode}): {' | '.join(tail)}"
        )
    return cold, shut, wall


def cold_start(rn):
    """Median over fresh interpreters of: import + init + first task."""
    code = _COLD_START_CODE % ("zray" if rn.backend == "zray" else "ray", rn.cfg.num_cpus)
    env = _child_env(rn)
    samples, shutdowns, walls = [], [], []
    for _ in range(rn.cfg.cold_runs):
        cold, shut, wall = _one_cold_start(code, env)
        walls.append(wall)
        samples.append(cold)
        if shut is not None:
            shutdowns.append(shut)
    med = statistics.median(samples)
    rn.results["cold_start"] = {
        "value": med,
        "unit": "s",
        "samples": samples,
        "shutdown_s": shutdowns,
        "process_wall_s": walls,
        "what": "import + init + first trivial task, from before the import",
    }
    shut_med = f"{statistics.median(shutdowns):.3f}" if shutdowns else "n/a"
    rn.say(
        f"cold_start seconds {med:.3f} (median of {len(samples)}; min {min(samples):.3f} "
        f"max {max(samples):.3f}; shutdown median {shut_med} s)"
    )


def _ray_non_descendants(rn, tree):
    """Ray's processes of this run that are not descendants of the driver.

    Best effort: Ray processes are normally descendants of the driver
    (gcs_server/raylet are its children, workers are the raylet's), but some
    may be re-parented or started elsewhere.  Counted: processes of this user
    whose cmdline looks like Ray, that started after this driver and that were
    not there before init.
    """
    me = os.getpid()
    my_start = proc.starttime(me) or 0
    my_uid = os.getuid()
    in_tree = set(tree)
    extra = []
    for pid in proc.ray_like_pids():
        if pid in in_tree or pid in rn.pre_existing_ray_pids:
            continue
        st = proc.starttime(pid)
        if st is None or st < my_start or proc.uid(pid) != my_uid:
            continue
        extra.append(pid)
    rn.notes.append(
        "idle_rss_mb (ray): some Ray processes may not be descendants "
        "of the driver; non-descendant processes whose cmdline contains "
        "'ray::', 'raylet' or 'gcs_server' and that started after the "
        f"benchmark began are added (best effort): {len(extra)} added"
    )
    return extra


def idle_rss_mb(rn):
    """Total RSS of the driver and its cluster, idle after one task."""
    ray, r = rn.ray, rn.r
    ray.get(r.small_value.remote())
    time.sleep(rn.cfg.idle_s)
    me = os.getpid()
    pids = proc.descendants(me)
    extra = _ray_non_descendants(rn, pids) if rn.backend == "ray" else []
    pids.extend(extra)
    per_proc = []
    total_kb = 0
    for pid in pids:
        kb = proc.rss_kb(pid)
        total_kb += kb
        per_proc.append(
            {"pid": pid, "rss_mb": kb / 1024.0, "cmd": proc.cmdline(pid)[:_CMDLINE_CHARS]}
        )
    mb = total_kb / 1024.0
    rn.results["idle_rss_mb"] = {
        "value": mb,
        "unit": "MB",
        "processes": len(pids),
        "non_descendants_added": len(extra),
        "driver_rss_mb": proc.rss_kb(me) / 1024.0,
        "per_process": per_proc,
    }
    added = f", {len(extra)} non-descendant Ray processes added" if rn.backend == "ray" else ""
    rn.say(f"idle_rss_mb MB {mb:.1f} ({len(pids)} processes{added})")


METRICS = {"cold_start": cold_start, "idle_rss_mb": idle_rss_mb}
