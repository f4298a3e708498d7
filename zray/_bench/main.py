"""The command line: the argument parser and main(), behind ``zray
microbenchmark``, ``python -m zray._bench`` and ``benchmarks/microbenchmark.py``."""

import argparse
import json
import sys

from . import compare
from .harness import BACKENDS, Config, Runner


def _parser():
    p = argparse.ArgumentParser(
        prog="zray microbenchmark",
        description="Ray-style microbenchmarks for zray (or Ray).",
    )
    p.add_argument("--backend", choices=BACKENDS, default="zray")
    p.add_argument("--json", action="store_true", help="print one JSON object of results to stdout")
    p.add_argument("--filter", metavar="SUBSTR", default=None,
                   help="only run metrics whose name contains SUBSTR")
    p.add_argument("--compare-ray", action="store_true",
                   help="run zray here, then Ray in a subprocess, and compare")
    p.add_argument("--ray-python", default=None,
                   help="python that can import ray (default: this one, else $ZRAY_RAY_PYTHON)")
    p.add_argument("--quick", action="store_true", help="shorten every metric (smoke test)")
    p.add_argument("--num-cpus", type=int, default=None, help="num_cpus for init (default: os.cpu_count())")
    return p


def _compare_with_ray(args, cfg):
    """zray in this process, then Ray in a subprocess; the table or one JSON object."""
    # Human lines go to stderr when --json is given: stdout is for the JSON.
    out = sys.stderr if args.json else sys.stdout
    print("== zray ==", file=out, flush=True)
    zres = Runner("zray", cfg, args.filter, out=out).run()
    ray_python = compare.find_ray_python(args.ray_python)
    rres = None
    if ray_python is None:
        print(
            f"No Ray found: neither --ray-python, this interpreter ({sys.executable}) nor "
            "$ZRAY_RAY_PYTHON can `import ray`; showing zray figures only.",
            file=out,
            flush=True,
        )
    else:
        print(f"== ray ({ray_python}) ==", file=out, flush=True)
        try:
            rres = compare.run_ray_subprocess(ray_python, args)
        except Exception as e:
            print(f"Ray run failed: {e}", file=out, flush=True)
    if args.json:
        print(json.dumps({"zray": zres, "ray": rres}), flush=True)
    else:
        print(flush=True)
        print(compare.format_comparison(zres, rres), flush=True)
    return 0


def main(argv=None):
    args = _parser().parse_args(argv)
    cfg = Config(quick=args.quick, num_cpus=args.num_cpus)
    if args.compare_ray:
        return _compare_with_ray(args, cfg)
    out = sys.stderr if args.json else sys.stdout
    res = Runner(args.backend, cfg, args.filter, out=out).run()
    if args.json:
        print(json.dumps(res), flush=True)
    else:
        for note in res["notes"]:
            print("note: " + note, flush=True)
    return 1 if res["errors"] else 0
