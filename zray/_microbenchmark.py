"""Microbenchmark harness for zray, runnable against zray or Ray.

Usage::

    python -m zray._microbenchmark                      # zray, human readable
    python zray/_microbenchmark.py --backend ray --json  # under a Ray venv
    python -m zray._microbenchmark --compare-ray --ray-python /path/to/python

This module deliberately imports neither ``zray`` nor ``ray`` at module level:
the backend is imported inside :func:`run` so that the very same file can be
run as a plain script by an interpreter that only has Ray installed.  Both
backends are driven through the same API subset (``init(num_cpus=...)``,
``remote``, ``.remote()``, ``.options()``, ``get``, ``wait``, ``put``, actors,
async actors, ``max_concurrency``, ``kill``, ``shutdown``).

The workloads follow the structure of Ray's own ``ray microbenchmark``
(``ray/_private/ray_perf.py``) and use the metric names of Ray's release
tests, but the batch sizes are scaled down so that each metric takes roughly
2-4 s and a whole run takes 1-2 minutes on a small (2-core) machine.  Each
rate is the mean +- (population) standard deviation over a few timed rounds
after a short warm-up.  Differences from Ray's script worth knowing:

* ``single_client_wait_1k_refs`` drains a list of 1000 refs that are *already
  ready* with ``wait(refs, num_returns=1)`` until it is empty (1000 wait calls
  per iteration); Ray's script also submits the 1000 tasks inside the timed
  function.  The rate is iterations (drains of 1000 refs) per second.
* Batch sizes of ``multi_client_tasks_async``, ``1_n_actor_calls_async`` and
  ``n_n_actor_calls_async`` are 10x smaller than Ray's.
* ``actor_creation``, ``cold_start`` and ``idle_rss_mb`` are not in Ray's
  script.
"""

import os
import sys

if __name__ == "__main__":
    # Run as a script (``python .../zray/_microbenchmark.py``): Python put this
    # file's directory, i.e. the zray package directory, first on sys.path.
    # Modules of the package would then shadow top-level modules of the same
    # name (and Ray propagates the driver's sys.path to its workers), so drop
    # it before importing anything else.
    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _here:
        del sys.path[0]
    del _here

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

_THIS_FILE = os.path.abspath(__file__)
# The repository root (the directory that holds the ``zray`` package).
_REPO_ROOT = os.path.dirname(os.path.dirname(_THIS_FILE))

BACKENDS = ("zray", "ray")

# Metrics where a smaller number is better (for the comparison table).
LOWER_IS_BETTER = ("cold_start", "idle_rss_mb")

# Order in which metrics run (and are printed).
METRIC_NAMES = (
    "cold_start",
    "idle_rss_mb",
    "single_client_get_calls",
    "single_client_put_calls",
    "single_client_wait_1k_refs",
    "single_client_tasks_sync",
    "single_client_tasks_async",
    "multi_client_tasks_async",
    "1_1_actor_calls_sync",
    "1_1_actor_calls_async",
    "1_1_actor_calls_concurrent",
    "1_n_actor_calls_async",
    "n_n_actor_calls_async",
    "1_1_async_actor_calls_sync",
    "1_1_async_actor_calls_async",
    "actor_creation",
    "single_client_put_gigabytes",
    "single_client_get_100mb_calls",
    "put_get_100mb_gigabytes",
    "task_100mb_ref_arg",
)


# Method names for metric names that are not valid identifiers.
_METHOD_SUFFIX = {
    "1_1_actor_calls_sync": "one_one_actor_calls_sync",
    "1_1_actor_calls_async": "one_one_actor_calls_async",
    "1_1_actor_calls_concurrent": "one_one_actor_calls_concurrent",
    "1_n_actor_calls_async": "one_many_actor_calls_async",
    "n_n_actor_calls_async": "many_many_actor_calls_async",
    "1_1_async_actor_calls_sync": "one_one_async_actor_calls_sync",
    "1_1_async_actor_calls_async": "one_one_async_actor_calls_async",
}


class Config:
    """Timing and size parameters; ``quick`` shrinks everything."""

    def __init__(self, quick=False, num_cpus=None):
        self.quick = quick
        self.num_cpus = num_cpus or os.cpu_count() or 2
        if quick:
            self.warmup_s = 0.05
            self.rounds = 2
            self.round_s = 0.1
            self.batch = 100  # refs/tasks/calls per "async" iteration
            self.multi_n = 50  # per client, multi_client / 1:n / n:n
            self.multi_m = 2  # number of clients
            self.cold_runs = 1
            self.idle_s = 0.5
            self.creation_n = 2
            self.creation_rounds = 1
            self.creation_budget_s = 0.5
        else:
            self.warmup_s = 0.5
            self.rounds = 4
            self.round_s = 0.6
            self.batch = 1000
            self.multi_n = 500
            self.multi_m = 4
            self.cold_runs = 5
            self.idle_s = 2.0
            self.creation_n = 8
            self.creation_rounds = 3
            self.creation_budget_s = 3.0


# ---------------------------------------------------------------------------
# Remote functions and actor classes.  They are built after the backend has
# been imported and only close over ``ray`` (pickled by reference as a module)
# and each other, so both Ray and zray ship them by value to their workers.
# ---------------------------------------------------------------------------


def _build_remotes(ray):
    import asyncio

    @ray.remote
    def small_value():
        return b"ok"

    @ray.remote(num_cpus=0)
    class Actor:
        def small_value(self):
            return b"ok"

        def small_value_arg(self, x):
            return b"ok"

        def small_value_batch(self, n):
            ray.get([small_value.remote() for _ in range(n)])

    @ray.remote
    class AsyncActor:
        async def small_value(self):
            return b"ok"

        async def small_value_with_arg(self, x):
            return b"ok"

        async def sleep(self, s):
            await asyncio.sleep(s)

    @ray.remote(num_cpus=0)
    class Client:
        def __init__(self, servers):
            if not isinstance(servers, list):
                servers = [servers]
            self.servers = servers

        def small_value_batch(self, n):
            results = []
            for s in self.servers:
                results.extend([s.small_value.remote() for _ in range(n)])
            ray.get(results)

    @ray.remote
    def first_item(a):
        return float(a[0])

    @ray.remote
    def work(actors, n):
        k = len(actors)
        ray.get([actors[i % k].small_value.remote() for i in range(n)])

    class Remotes:
        pass

    r = Remotes()
    r.small_value = small_value
    r.Actor = Actor
    r.AsyncActor = AsyncActor
    r.Client = Client
    r.work = work
    r.first_item = first_item
    return r


# ---------------------------------------------------------------------------
# Process tree / memory helpers (Linux /proc only).
# ---------------------------------------------------------------------------


def _read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None


def _children(pid):
    out = []
    tasks = "/proc/%d/task" % pid
    try:
        tids = os.listdir(tasks)
    except OSError:
        return out
    for tid in tids:
        data = _read("%s/%s/children" % (tasks, tid))
        if data:
            out.extend(int(c) for c in data.split())
    return out


def _descendants(pid):
    """pid and all its descendants (walking /proc/<pid>/task/*/children)."""
    seen = []
    stack = [pid]
    visited = set()
    while stack:
        p = stack.pop()
        if p in visited:
            continue
        visited.add(p)
        seen.append(p)
        stack.extend(_children(p))
    return seen


def _status_field(pid, field):
    data = _read("/proc/%d/status" % pid)
    if data is None:
        return None
    for line in data.splitlines():
        if line.startswith(field + ":"):
            return line.split()[1:]
    return None


def _rss_kb(pid):
    v = _status_field(pid, "VmRSS")
    return int(v[0]) if v else 0  # kernel threads / zombies have no VmRSS


def _uid(pid):
    v = _status_field(pid, "Uid")
    return int(v[0]) if v else None


def _cmdline(pid):
    data = _read("/proc/%d/cmdline" % pid, "rb")
    if not data:
        return ""
    return data.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def _starttime(pid):
    """Start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    data = _read("/proc/%d/stat" % pid)
    if not data:
        return None
    # comm (field 2) may contain spaces/parentheses: split after the last ')'.
    rest = data[data.rfind(")") + 2 :].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


_RAY_PATTERNS = ("ray::", "raylet", "gcs_server")


def _ray_like_pids():
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        cmd = _cmdline(int(name))
        if any(p in cmd for p in _RAY_PATTERNS):
            pids.append(int(name))
    return pids


# ---------------------------------------------------------------------------
# The benchmark runner.
# ---------------------------------------------------------------------------


def _fmt(x):
    return "%.2f" % x if x is not None else "n/a"


class Runner:
    def __init__(self, backend, cfg, filter_substr=None, out=None):
        self.backend = backend
        self.cfg = cfg
        self.filter = filter_substr
        self.out = out or sys.stdout
        self.results = {}
        self.errors = {}
        self.notes = []
        self.ray = None
        self.r = None
        self.pre_existing_ray_pids = set()
        self.initialized = False

    # -- output -----------------------------------------------------------

    def _say(self, line):
        print(line, file=self.out, flush=True)

    def _wanted(self, name):
        return not self.filter or self.filter in name

    # -- timing -----------------------------------------------------------

    def timeit(self, name, fn, multiplier=1):
        """Warm up, then time ``cfg.rounds`` rounds of ~``cfg.round_s`` each.

        Every round runs ``fn`` at least once; the rate of a round is
        ``multiplier * calls / elapsed``.
        """
        cfg = self.cfg
        perf = time.perf_counter
        start = perf()
        while True:
            fn()
            if perf() - start >= cfg.warmup_s:
                break
        stats = []
        for _ in range(cfg.rounds):
            count = 0
            start = perf()
            while True:
                fn()
                count += 1
                elapsed = perf() - start
                if elapsed >= cfg.round_s:
                    break
            stats.append(multiplier * count / elapsed)
        self._record_rate(name, stats)

    def _record_rate(self, name, stats):
        mean = statistics.fmean(stats)
        sd = statistics.pstdev(stats) if len(stats) > 1 else 0.0
        self.results[name] = {
            "value": mean,
            "mean": mean,
            "sd": sd,
            "unit": "per second",
            "rounds": stats,
        }
        self._say("%s per second %s +- %s" % (name, _fmt(mean), _fmt(sd)))

    # -- backend ------------------------------------------------------------

    def import_backend(self):
        if self.backend == "zray":
            try:
                import zray as ray  # noqa: F401
            except ImportError:
                # Run as a plain script from a checkout: use this repo's zray.
                if _REPO_ROOT not in sys.path:
                    sys.path.insert(0, _REPO_ROOT)
                import zray as ray
        else:
            import ray
        self.ray = ray
        return ray

    def backend_version(self):
        return getattr(self.ray, "__version__", "unknown")

    def init(self):
        if self.backend == "ray":
            self.pre_existing_ray_pids = set(_ray_like_pids())
        self.ray.init(num_cpus=self.cfg.num_cpus)
        self.initialized = True
        self.r = _build_remotes(self.ray)

    def shutdown(self):
        if self.initialized:
            self.initialized = False
            self.ray.shutdown()

    def _kill(self, *handles):
        kill = getattr(self.ray, "kill", None)
        for h in handles:
            if kill is None:
                break
            try:
                kill(h)
            except Exception:  # noqa: BLE001 -- best effort cleanup
                pass

    # -- driver -------------------------------------------------------------

    def run(self):
        self.import_backend()
        ran_any = False
        try:
            # cold_start spawns fresh interpreters; run it before this process
            # starts its own cluster so that the two do not compete.
            if self._wanted("cold_start"):
                self._guard("cold_start", self.bench_cold_start)
                ran_any = True
            rest = [n for n in METRIC_NAMES if n != "cold_start" and self._wanted(n)]
            if rest:
                self.init()
                for name in rest:
                    fn = getattr(self, "bench_" + _METHOD_SUFFIX.get(name, name))
                    self._guard(name, fn)
                    gc.collect()
                ran_any = True
        finally:
            self.shutdown()
        if not ran_any:
            self._say("no metric matches filter %r" % (self.filter,))
        return self.as_dict()

    def _guard(self, name, fn):
        try:
            fn()
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 -- report and go on
            msg = "%s: %s" % (type(e).__name__, e)
            self.errors[name] = msg
            self._say("%s ERROR %s" % (name, msg))

    def as_dict(self):
        return {
            "backend": self.backend,
            "version": self.backend_version() if self.ray else None,
            "python": sys.executable,
            "python_version": platform.python_version(),
            "num_cpus": self.cfg.num_cpus,
            "cpu_count": os.cpu_count(),
            "quick": self.cfg.quick,
            "filter": self.filter,
            "metrics": self.results,
            "errors": self.errors,
            "notes": self.notes,
        }

    # -- cold start / memory -------------------------------------------------

    def bench_cold_start(self):
        """Median over fresh interpreters of: import + init + first task."""
        mod = "zray" if self.backend == "zray" else "ray"
        code = (
            "import time\n"
            "t0 = time.perf_counter()\n"
            "import %s as ray\n"
            "ray.init(num_cpus=%d)\n"
            "@ray.remote\n"
            "def f():\n"
            "    return 1\n"
            "assert ray.get(f.remote()) == 1\n"
            "t1 = time.perf_counter()\n"
            "print('COLD_START', t1 - t0, flush=True)\n"
            "ray.shutdown()\n"
            "print('SHUTDOWN', time.perf_counter() - t1, flush=True)\n"
        ) % (mod, self.cfg.num_cpus)
        env = dict(os.environ)
        if self.backend == "zray":
            # Make the child import the same zray as this process.
            root = os.path.dirname(os.path.dirname(os.path.abspath(self.ray.__file__)))
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (root, env.get("PYTHONPATH")) if p
            )
        samples, shutdowns, walls = [], [], []
        for _ in range(self.cfg.cold_runs):
            w0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", code],
                cwd=tempfile.gettempdir(),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                timeout=180,
            )
            walls.append(time.perf_counter() - w0)
            cold = shut = None
            for line in proc.stdout.splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[0] == "COLD_START":
                    cold = float(parts[1])
                elif len(parts) == 2 and parts[0] == "SHUTDOWN":
                    shut = float(parts[1])
            if proc.returncode != 0 or cold is None:
                tail = (proc.stderr or "").strip().splitlines()[-5:]
                raise RuntimeError(
                    "cold start subprocess failed (rc=%s): %s"
                    % (proc.returncode, " | ".join(tail))
                )
            samples.append(cold)
            if shut is not None:
                shutdowns.append(shut)
        med = statistics.median(samples)
        self.results["cold_start"] = {
            "value": med,
            "unit": "s",
            "samples": samples,
            "shutdown_s": shutdowns,
            "process_wall_s": walls,
            "what": "import + init + first trivial task, from before the import",
        }
        self._say(
            "cold_start seconds %.3f (median of %d; min %.3f max %.3f; "
            "shutdown median %s s)"
            % (
                med,
                len(samples),
                min(samples),
                max(samples),
                "%.3f" % statistics.median(shutdowns) if shutdowns else "n/a",
            )
        )

    def bench_idle_rss_mb(self):
        ray, r = self.ray, self.r
        ray.get(r.small_value.remote())
        time.sleep(self.cfg.idle_s)
        me = os.getpid()
        tree = _descendants(me)
        pids = list(tree)
        extra = []
        if self.backend == "ray":
            # Best effort: Ray processes are normally descendants of the
            # driver (gcs_server/raylet are its children, workers are the
            # raylet's), but some may be re-parented or started elsewhere.
            # Also count processes of this user whose cmdline looks like Ray,
            # that started after this driver and that were not there before
            # init, if they are not descendants.
            my_start = _starttime(me) or 0
            my_uid = os.getuid()
            in_tree = set(tree)
            for pid in _ray_like_pids():
                if pid in in_tree or pid in self.pre_existing_ray_pids:
                    continue
                st = _starttime(pid)
                if st is None or st < my_start or _uid(pid) != my_uid:
                    continue
                extra.append(pid)
            pids.extend(extra)
            self.notes.append(
                "idle_rss_mb (ray): some Ray processes may not be descendants "
                "of the driver; non-descendant processes whose cmdline contains "
                "'ray::', 'raylet' or 'gcs_server' and that started after the "
                "benchmark began are added (best effort): %d added" % len(extra)
            )
        per_proc = []
        total_kb = 0
        for pid in pids:
            kb = _rss_kb(pid)
            total_kb += kb
            per_proc.append({"pid": pid, "rss_mb": kb / 1024.0, "cmd": _cmdline(pid)[:120]})
        mb = total_kb / 1024.0
        self.results["idle_rss_mb"] = {
            "value": mb,
            "unit": "MB",
            "processes": len(pids),
            "non_descendants_added": len(extra),
            "driver_rss_mb": _rss_kb(me) / 1024.0,
            "per_process": per_proc,
        }
        self._say(
            "idle_rss_mb MB %.1f (%d processes%s)"
            % (
                mb,
                len(pids),
                ", %d non-descendant Ray processes added" % len(extra)
                if self.backend == "ray"
                else "",
            )
        )

    # -- object store ---------------------------------------------------------

    def bench_single_client_get_calls(self):
        ray = self.ray
        value = ray.put(0)

        def get_small():
            ray.get(value)

        self.timeit("single_client_get_calls", get_small)

    def bench_single_client_put_calls(self):
        ray = self.ray

        def put_small():
            ray.put(0)

        self.timeit("single_client_put_calls", put_small)

    def bench_single_client_wait_1k_refs(self):
        ray, r = self.ray, self.r
        refs = [r.small_value.remote() for _ in range(self.cfg.batch)]
        ray.get(refs)  # all ready from here on

        def wait_multiple_refs():
            not_ready = refs
            while not_ready:
                _ready, not_ready = ray.wait(not_ready, num_returns=1)

        self.timeit("single_client_wait_1k_refs", wait_multiple_refs)

    # -- large objects (100 MB numpy arrays) -----------------------------------

    def _array_100mb(self):
        import numpy as np
        n = (10 if self.cfg.quick else 100) * 2**20 // 8
        return np.arange(n, dtype=np.float64)

    def bench_single_client_put_gigabytes(self):
        ray = self.ray
        arr = self._array_100mb()
        gb = arr.nbytes / 1e9

        def put_large():
            ray.put(arr)   # the ref is dropped at once: the store is freed as it goes

        self.timeit("single_client_put_gigabytes", put_large, gb)

    def bench_single_client_get_100mb_calls(self):
        ray = self.ray
        ref = ray.put(self._array_100mb())

        def get_large():
            ray.get(ref)

        self.timeit("single_client_get_100mb_calls", get_large)

    def bench_put_get_100mb_gigabytes(self):
        ray = self.ray
        arr = self._array_100mb()
        gb = arr.nbytes / 1e9

        def put_get():
            ray.get(ray.put(arr))

        self.timeit("put_get_100mb_gigabytes", put_get, gb)

    def bench_task_100mb_ref_arg(self):
        ray, r = self.ray, self.r
        ref = ray.put(self._array_100mb())

        def task_on_ref():
            ray.get(r.first_item.remote(ref))

        self.timeit("task_100mb_ref_arg", task_on_ref)

    # -- tasks ----------------------------------------------------------------

    def bench_single_client_tasks_sync(self):
        ray, r = self.ray, self.r

        def small_task():
            ray.get(r.small_value.remote())

        self.timeit("single_client_tasks_sync", small_task)

    def bench_single_client_tasks_async(self):
        ray, r = self.ray, self.r
        n = self.cfg.batch

        def small_task_async():
            ray.get([r.small_value.remote() for _ in range(n)])

        self.timeit("single_client_tasks_async", small_task_async, n)

    def bench_multi_client_tasks_async(self):
        ray, r = self.ray, self.r
        n, m = self.cfg.multi_n, self.cfg.multi_m
        actors = [r.Actor.remote() for _ in range(m)]
        ray.get([a.small_value.remote() for a in actors])
        try:

            def multi_task():
                ray.get([a.small_value_batch.remote(n) for a in actors])

            self.timeit("multi_client_tasks_async", multi_task, n * m)
        finally:
            self._kill(*actors)

    # -- actors ---------------------------------------------------------------

    def bench_one_one_actor_calls_sync(self):
        ray, r = self.ray, self.r
        a = r.Actor.remote()
        try:

            def actor_sync():
                ray.get(a.small_value.remote())

            self.timeit("1_1_actor_calls_sync", actor_sync)
        finally:
            self._kill(a)

    def bench_one_one_actor_calls_async(self):
        ray, r = self.ray, self.r
        n = self.cfg.batch
        a = r.Actor.remote()
        try:

            def actor_async():
                ray.get([a.small_value.remote() for _ in range(n)])

            self.timeit("1_1_actor_calls_async", actor_async, n)
        finally:
            self._kill(a)

    def bench_one_one_actor_calls_concurrent(self):
        ray, r = self.ray, self.r
        n = self.cfg.batch
        a = r.Actor.options(max_concurrency=16).remote()
        try:

            def actor_concurrent():
                ray.get([a.small_value.remote() for _ in range(n)])

            self.timeit("1_1_actor_calls_concurrent", actor_concurrent, n)
        finally:
            self._kill(a)

    def bench_one_many_actor_calls_async(self):
        ray, r = self.ray, self.r
        n = self.cfg.multi_n * 2
        n_servers = max(1, self.cfg.num_cpus // 2)
        servers = [r.Actor.remote() for _ in range(n_servers)]
        client = r.Client.remote(servers)
        try:

            def actor_async_direct():
                ray.get(client.small_value_batch.remote(n))

            self.timeit("1_n_actor_calls_async", actor_async_direct, n * n_servers)
        finally:
            self._kill(client, *servers)

    def bench_many_many_actor_calls_async(self):
        ray, r = self.ray, self.r
        n, m = self.cfg.multi_n, self.cfg.multi_m
        n_actors = max(1, self.cfg.num_cpus // 2)
        actors = [r.Actor.remote() for _ in range(n_actors)]
        try:

            def actor_multi2():
                ray.get([r.work.remote(actors, n) for _ in range(m)])

            self.timeit("n_n_actor_calls_async", actor_multi2, m * n)
        finally:
            self._kill(*actors)

    def bench_one_one_async_actor_calls_sync(self):
        ray, r = self.ray, self.r
        a = r.AsyncActor.remote()
        try:

            def actor_sync():
                ray.get(a.small_value.remote())

            self.timeit("1_1_async_actor_calls_sync", actor_sync)
        finally:
            self._kill(a)

    def bench_one_one_async_actor_calls_async(self):
        ray, r = self.ray, self.r
        n = self.cfg.batch
        a = r.AsyncActor.remote()
        try:

            def async_actor():
                ray.get([a.small_value.remote() for _ in range(n)])

            self.timeit("1_1_async_actor_calls_async", async_actor, n)
        finally:
            self._kill(a)

    def bench_actor_creation(self):
        """Create N num_cpus=0 actors and wait until each answered one call.

        The rate is actors per second over the create+first-call span; the
        actors are killed (outside the timed span) after each round.
        """
        ray, r = self.ray, self.r
        cfg = self.cfg
        n = cfg.creation_n

        def one_round(k):
            t0 = time.perf_counter()
            actors = [r.Actor.remote() for _ in range(k)]
            ray.get([a.small_value.remote() for a in actors])
            dt = time.perf_counter() - t0
            self._kill(*actors)
            del actors
            gc.collect()
            time.sleep(0.2)  # let killed workers go away before the next round
            return k / dt

        one_round(max(1, n // 4))  # warm-up
        stats = []
        budget_start = time.perf_counter()
        while len(stats) < cfg.creation_rounds:
            stats.append(one_round(n))
            if len(stats) >= 2 and time.perf_counter() - budget_start > cfg.creation_budget_s:
                break
        self._record_rate("actor_creation", stats)
        self.results["actor_creation"]["actors_per_round"] = n


# ---------------------------------------------------------------------------
# Ray comparison.
# ---------------------------------------------------------------------------


def _python_has_ray(python):
    try:
        proc = subprocess.run(
            [python, "-c", "import ray"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def find_ray_python(explicit=None):
    """An interpreter that can ``import ray``, or None.

    Tried in order: ``--ray-python`` if given, the current interpreter, then
    the ``ZRAY_RAY_PYTHON`` environment variable.
    """
    candidates = []
    if explicit:
        candidates.append(explicit)
    candidates.append(sys.executable)
    env = os.environ.get("ZRAY_RAY_PYTHON")
    if env:
        candidates.append(env)
    for c in candidates:
        if _python_has_ray(c):
            return c
    return None


def run_ray_subprocess(python, args):
    cmd = [python, _THIS_FILE, "--backend", "ray", "--json"]
    if args.quick:
        cmd.append("--quick")
    if args.filter:
        cmd += ["--filter", args.filter]
    if args.num_cpus:
        cmd += ["--num-cpus", str(args.num_cpus)]
    # Progress and Ray's own logs go to our stderr; the JSON comes on stdout.
    proc = subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
        timeout=3600,
    )
    result = None
    for line in reversed(proc.stdout.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("backend") == "ray":
            result = obj
            break
    if result is None:
        raise RuntimeError(
            "Ray benchmark run failed (rc=%s); command: %s" % (proc.returncode, " ".join(cmd))
        )
    return result


def format_comparison(zres, rres):
    lines = []
    header = "%-30s %14s %14s %8s  %s" % ("metric", "zray", "ray", "ratio", "")
    lines.append("ratio > 1 means zray is better")
    lines.append(header)
    lines.append("-" * len(header))
    zm = zres.get("metrics", {})
    rm = rres.get("metrics", {}) if rres else {}
    names = [n for n in METRIC_NAMES if n in zm or n in rm]
    for name in names:
        z = zm.get(name, {}).get("value")
        r = rm.get(name, {}).get("value")
        if name in LOWER_IS_BETTER:
            unit = zm.get(name, rm.get(name, {})).get("unit", "")
            label = "%s [%s]" % (name, unit)
            ratio = (r / z) if (z and r is not None) else None
            note = "(ray/zray, lower is better)"
        else:
            label = name + " [/s]"
            ratio = (z / r) if (z is not None and r) else None
            note = "(zray/ray, higher is better)"
        lines.append(
            "%-30s %14s %14s %8s  %s"
            % (
                label,
                _fmt(z),
                _fmt(r),
                ("%.2fx" % ratio) if ratio is not None else "n/a",
                note,
            )
        )
    for label, res in (("zray", zres), ("ray", rres or {})):
        for name, err in sorted(res.get("errors", {}).items()):
            lines.append("%s error in %s: %s" % (label, name, err))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# CLI.
# ---------------------------------------------------------------------------


def _parser():
    p = argparse.ArgumentParser(
        prog="zray microbenchmark",
        description="Ray-style microbenchmarks for zray (or Ray).",
    )
    p.add_argument("--backend", choices=BACKENDS, default="zray")
    p.add_argument("--json", action="store_true", help="print one JSON object of results to stdout")
    p.add_argument("--filter", metavar="SUBSTR", default=None, help="only run metrics whose name contains SUBSTR")
    p.add_argument("--compare-ray", action="store_true", help="run zray here, then Ray in a subprocess, and compare")
    p.add_argument("--ray-python", default=None, help="python that can import ray (default: this one, else $ZRAY_RAY_PYTHON)")
    p.add_argument("--quick", action="store_true", help="shorten every metric (smoke test)")
    p.add_argument("--num-cpus", type=int, default=None, help="num_cpus for init (default: os.cpu_count())")
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    cfg = Config(quick=args.quick, num_cpus=args.num_cpus)

    if args.compare_ray:
        # zray in-process; human lines go to stderr when --json is given.
        out = sys.stderr if args.json else sys.stdout
        print("== zray ==", file=out, flush=True)
        zres = Runner("zray", cfg, args.filter, out=out).run()
        ray_python = find_ray_python(args.ray_python)
        rres = None
        if ray_python is None:
            print(
                "No Ray found: neither --ray-python, this interpreter (%s) nor "
                "$ZRAY_RAY_PYTHON can `import ray`; showing zray figures only."
                % sys.executable,
                file=out,
                flush=True,
            )
        else:
            print("== ray (%s) ==" % ray_python, file=out, flush=True)
            try:
                rres = run_ray_subprocess(ray_python, args)
            except Exception as e:  # noqa: BLE001
                print("Ray run failed: %s" % e, file=out, flush=True)
        if args.json:
            print(json.dumps({"zray": zres, "ray": rres}), flush=True)
        else:
            print("", flush=True)
            print(format_comparison(zres, rres), flush=True)
        return 0

    out = sys.stderr if args.json else sys.stdout
    res = Runner(args.backend, cfg, args.filter, out=out).run()
    if args.json:
        print(json.dumps(res), flush=True)
    else:
        for note in res["notes"]:
            print("note: " + note, flush=True)
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
