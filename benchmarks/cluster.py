#!/usr/bin/env python
"""Cluster benchmarks: work and objects crossing nodes, zray and Ray side by side.

    python benchmarks/cluster.py                      # zray (nodes as separate hosts as root)
    /tmp/rayref/bin/python benchmarks/cluster.py --ray  # the same on Ray's cluster_utils
    python benchmarks/cluster.py --compare-ray /tmp/rayref/bin/python   # both, one table

Workloads (each the median of --rounds timed rounds after a warm-up):
  placed_tasks     no-op tasks that only another node can run (each placed by the head / GCS)
  spread_tasks     no-op tasks with scheduling_strategy="SPREAD" over 2 nodes
  remote_actor     calls to an actor on another node (async: submit all, then get)
  sleep_scaling_N  40 tasks of 50 ms, SPREAD over N nodes of 1 CPU (N = 1, 2, 4): tasks/s
  object_pull      a 100 MB array made on another node, read by the driver: GB/s
  object_pull_alone  the same, already made (put by an actor there): the pull alone, GB/s
Ray's nodes all share this machine's address (cluster_utils); zray's are network
namespaces (own address, own /dev/shm) reached over tcp with CurveZMQ.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _framework(use_ray: bool, secure: bool = True):
    if use_ray:
        import ray
        from ray.cluster_utils import Cluster
        return ray, lambda **kw: Cluster(initialize_head=True, head_node_args=kw)
    sys.path.insert(0, _ROOT)
    import zray
    from zray.testing import Cluster as ZCluster

    def start(**kw):
        return ZCluster(head_node_args=kw, secure=secure)
    return zray, start


def _timed(fn, rounds: int) -> float:
    fn()   # warm-up
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(use_ray: bool, rounds: int, secure: bool = True, only: str = "") -> dict:
    rt, start = _framework(use_ray, secure)
    import numpy as np
    out: dict = {}

    def want(name: str) -> bool:
        return only in name

    cluster = start(num_cpus=1)
    try:
        cluster.add_node(num_cpus=1, resources={"far": 1000})
        if hasattr(cluster, "wait_for_nodes"):
            cluster.wait_for_nodes()
        rt.init(address=cluster.address)

        @rt.remote
        def noop():
            return 0

        @rt.remote(resources={"far": 1})
        class Far:
            def call(self):
                return 0

            def make(self, n):
                return np.ones(n, dtype=np.uint8)

            def put(self, n):
                return [rt.put(np.ones(n, dtype=np.uint8))]

        n = 1000
        far = noop.options(resources={"far": 0.001})
        if want("placed_tasks"):
            out["placed_tasks"] = n / _timed(lambda: rt.get([far.remote() for _ in range(n)]),
                                             rounds)
        spread = noop.options(scheduling_strategy="SPREAD")
        if want("spread_tasks"):
            out["spread_tasks"] = n / _timed(lambda: rt.get([spread.remote() for _ in range(n)]),
                                             rounds)
        actor = Far.remote()
        rt.get(actor.call.remote())
        m = 2000
        if want("remote_actor"):
            out["remote_actor"] = m / _timed(
                lambda: rt.get([actor.call.remote() for _ in range(m)]), rounds)
        size = 100 * 1024 * 1024

        def pull():
            ref = actor.make.remote(size)
            rt.wait([ref], fetch_local=False)
            value = rt.get(ref)
            assert value.nbytes == size
            del value, ref
        # (The make on the far node is in the time; measured alone it is ~0.04 s here.)
        if want("object_pull"):
            out["object_pull"] = size / 1e9 / _timed(pull, rounds)
        if want("object_pull_alone"):
            out["object_pull_alone"] = size / 1e9 / _timed_pull(rt, actor, size, rounds)
    finally:
        rt.shutdown()
        cluster.shutdown()
    for nodes in (1, 2, 4):
        if want(f"sleep_scaling_{nodes}"):
            out[f"sleep_scaling_{nodes}"] = _scaling(rt, start, nodes, rounds)
    return out


def _timed_pull(rt, actor, size: int, rounds: int) -> float:
    """The median time of a get of `size` bytes an actor on another node put: the pull."""
    times = []
    for i in range(rounds + 1):           # (the first: a warm-up)
        [ref] = rt.get(actor.put.remote(size))
        t0 = time.perf_counter()
        value = rt.get(ref)
        if i:
            times.append(time.perf_counter() - t0)
        assert value.nbytes == size
        del value, ref
    return statistics.median(times)


def placement_rate(nodes: int = 100, batch: int = 10_000) -> tuple[float, float]:
    """The head's placement decisions/s over `nodes` simulated nodes, in one process:
    (place_batch in batches of `batch`, pick_node one at a time)."""
    import random
    sys.path.insert(0, _ROOT)
    from zray.brokers._placement import NodeView, pick_node, place_batch
    rnd = random.Random(1)
    views = [NodeView(os.urandom(16), {"CPU": 8.0}, {"CPU": float(rnd.randint(0, 8))},
                      rnd.randint(0, 20), rnd.randint(0, 8)) for _ in range(nodes)]
    demands = [{"CPU": 1.0}] * batch
    t0 = time.perf_counter()
    place_batch(demands, views)
    batched = batch / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for d in demands[:2000]:
        pick_node(d, views)
    return batched, 2000 / (time.perf_counter() - t0)


def _scaling(rt, start, nodes: int, rounds: int) -> float:
    cluster = start(num_cpus=1)
    try:
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=1)
        if hasattr(cluster, "wait_for_nodes"):
            cluster.wait_for_nodes()
        rt.init(address=cluster.address)

        @rt.remote
        def nap():
            time.sleep(0.05)

        nap_spread = nap.options(scheduling_strategy="SPREAD")
        k = 40
        return k / _timed(lambda: rt.get([nap_spread.remote() for _ in range(k)]), rounds)
    finally:
        rt.shutdown()
        cluster.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ray", action="store_true", help="run on Ray (in a Python that has it)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--insecure", action="store_true",
                    help="zray's nodes without CurveZMQ (as Ray's, which does not encrypt)")
    ap.add_argument("--compare-ray", metavar="RAY_PYTHON", default=None,
                    help="also run this script under RAY_PYTHON --ray and print both")
    ap.add_argument("--only", default="", metavar="TEXT",
                    help="only the workloads whose name contains TEXT (e.g. object_pull)")
    args = ap.parse_args()
    figures = run(args.ray, args.rounds, not args.insecure, args.only)
    if not args.ray and any(args.only in name for name in ("head_place_batch", "head_pick_node")):
        figures["head_place_batch"], figures["head_pick_node"] = placement_rate()
    if args.json:
        print(json.dumps(figures))
        return 0
    ray_figures: dict = {}
    if args.compare_ray:
        proc = subprocess.run([args.compare_ray, os.path.abspath(__file__), "--ray", "--json",
                               "--rounds", str(args.rounds), "--only", args.only],
                              capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr[-2000:], file=sys.stderr)
        else:
            ray_figures = json.loads(proc.stdout.strip().splitlines()[-1])
    unit = {"object_pull": "GB/s", "object_pull_alone": "GB/s"}
    print(f"{'workload':<18} {'zray' if not args.ray else 'ray':>12} {'Ray 2.60':>12} {'ratio':>7}")
    for key, value in figures.items():
        other = ray_figures.get(key)
        ratio = f"{value / other:.2f}x" if other else ""
        u = unit.get(key, "/s")
        theirs = f"{other:,.2f} {u}" if other else ""
        print(f"{key:<18} {value:>10,.2f} {u} {theirs:>12} {ratio:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
