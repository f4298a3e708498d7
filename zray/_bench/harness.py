"""The harness: Config, the metric table, and the Runner (backend import,
init/shutdown, timing and recording of rates, the run loop, the results)."""

import contextlib
import gc
import os
import platform
import statistics
import sys
import time

from . import actors, objects, proc, startup, tasks
from .remotes import build_remotes

# The repository root (the directory that holds the ``zray`` package), where a
# plain script run from a checkout finds zray if it is not installed.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BACKENDS = ("zray", "ray")

# Metrics where a smaller number is better (for the comparison table).
LOWER_IS_BETTER = ("cold_start", "idle_rss_mb")

# Order in which metrics run (and are printed).  The workloads follow Ray's own
# ``ray microbenchmark`` (``ray/_private/ray_perf.py``) and use the metric
# names of Ray's release tests; ``actor_creation``, ``cold_start`` and
# ``idle_rss_mb`` are not in Ray's script.  Other differences are documented
# next to the workloads (objects.py, actors.py, tasks.py).
METRIC_NAMES = (
    "cold_start",
    "idle_rss_mb",
    "single_client_get_calls",
    "single_client_put_calls",
    "single_client_wait_1k_refs",
    "single_client_tasks_sync",
    "single_client_tasks_async",
    "multi_client_tasks_async",
    "generator_items",
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

# Metric name -> function(runner) that measures it and records the result.
_BENCHES = {**startup.METRICS, **objects.METRICS, **tasks.METRICS, **actors.METRICS}
assert set(_BENCHES) == set(METRIC_NAMES), "every metric needs a place in METRIC_NAMES"


def fmt(x):
    """A rate as printed in progress lines and the comparison table."""
    return f"{x:.2f}" if x is not None else "n/a"


class Config:
    """Timing and size parameters; ``quick`` shrinks everything.

    The full sizes are Ray's scaled down so that each metric takes roughly
    2-4 s and a whole run 1-2 minutes on a small (2-core) machine.
    """

    def __init__(self, quick=False, num_cpus=None):
        self.quick = quick
        # os.cpu_count() may be None; 2 is the smallest machine this targets.
        self.num_cpus = num_cpus or os.cpu_count() or 2
        # Untimed calls before the first round, at least: one on each worker a metric
        # may use (a one-at-a-time task's first call goes through the node while its
        # lease is asked for: 2 workers). A worker's first call can cost 100x a later
        # one (task_100mb_ref_arg: the worker imports numpy, 70-200 ms); --quick's
        # 0.05 s warm-up was one such call, and a timed round got the other: 7.9/s.
        self.warmup_calls = self.num_cpus + 1
        if quick:  # same meanings as below, just enough to smoke-test each metric
            self.warmup_s = 0.05
            self.rounds = 2
            self.round_s = 0.1
            self.batch = 100
            self.multi_n = 50
            self.multi_m = 2
            self.cold_runs = 1
            self.idle_s = 0.5
            self.creation_n = 2
            self.creation_rounds = 1
            self.creation_budget_s = 0.5
        else:
            self.warmup_s = 0.5  # untimed calls before the first round
            self.rounds = 4  # timed rounds; a rate is their mean +- sd
            self.round_s = 0.6  # minimum length of a round
            self.batch = 1000  # refs/tasks/calls per "async" iteration
            self.multi_n = 500  # calls per client, multi_client / 1:n / n:n
            self.multi_m = 4  # number of clients
            self.cold_runs = 5  # fresh interpreters; cold_start is their median
            self.idle_s = 2.0  # settling time before idle_rss_mb reads RSS
            self.creation_n = 8  # actors created per actor_creation round
            self.creation_rounds = 3  # timed rounds at most: stops after 2 ...
            self.creation_budget_s = 3.0  # ... if those took longer than this


class Runner:
    """Runs the wanted metrics on one backend and collects their results.

    The backend is imported in :meth:`run`, never at module level, so that
    Ray's interpreter, which cannot import zray, can run this code too.
    """

    def __init__(self, backend, cfg, filter_substr=None, out=None):
        self.backend = backend
        self.cfg = cfg
        self.filter = filter_substr
        self.out = out or sys.stdout
        self.results = {}
        self.errors = {}
        self.notes = []
        self.ray = None
        self.r = None  # the remotes (see remotes.py), built by init()
        self.pre_existing_ray_pids = set()
        self.initialized = False

    # -- output -----------------------------------------------------------

    def say(self, line):
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
        calls = 0
        while True:
            fn()
            calls += 1
            if perf() - start >= cfg.warmup_s and calls >= cfg.warmup_calls:
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
        self.record_rate(name, stats)

    def record_rate(self, name, stats):
        """Record and print the mean +- (population) sd of per-round rates."""
        mean = statistics.fmean(stats)
        sd = statistics.pstdev(stats) if len(stats) > 1 else 0.0
        self.results[name] = {
            "value": mean,
            "mean": mean,
            "sd": sd,
            "unit": "per second",
            "rounds": stats,
        }
        self.say(f"{name} per second {fmt(mean)} +- {fmt(sd)}")

    # -- backend ------------------------------------------------------------

    def import_backend(self):
        if self.backend == "zray":
            try:
                import zray as ray
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
            self.pre_existing_ray_pids = set(proc.ray_like_pids())
        self.ray.init(num_cpus=self.cfg.num_cpus)
        self.initialized = True
        self.r = build_remotes(self.ray)

    def shutdown(self):
        if self.initialized:
            self.initialized = False
            self.ray.shutdown()

    def kill(self, *handles):
        """Kill actors, best effort (a backend without ``kill`` keeps them)."""
        kill = getattr(self.ray, "kill", None)
        for h in handles:
            if kill is None:
                break
            with contextlib.suppress(Exception):  # best effort cleanup
                kill(h)

    # -- driver -------------------------------------------------------------

    def run(self):
        self.import_backend()
        ran_any = False
        try:
            # cold_start spawns fresh interpreters; run it before this process
            # starts its own cluster so that the two do not compete.
            if self._wanted("cold_start"):
                self._guard("cold_start")
                ran_any = True
            rest = [n for n in METRIC_NAMES if n != "cold_start" and self._wanted(n)]
            if rest:
                self.init()
                for name in rest:
                    self._guard(name)
                    gc.collect()
                ran_any = True
        finally:
            self.shutdown()
        if not ran_any:
            self.say(f"no metric matches filter {self.filter!r}")
        return self.as_dict()

    def _guard(self, name):
        """Run one metric; an error is recorded and printed, the run goes on."""
        try:
            _BENCHES[name](self)
        except KeyboardInterrupt:
            raise
        except Exception as e:
            msg = f"{type(e).__name__}: {e}"
            self.errors[name] = msg
            self.say(f"{name} ERROR {msg}")

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
