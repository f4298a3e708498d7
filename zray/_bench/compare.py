"""The Ray comparison: finding an interpreter that has Ray, running the same
workloads there in a subprocess, and the zray-vs-Ray table."""

import json
import os
import subprocess
import sys

from .harness import LOWER_IS_BETTER, METRIC_NAMES, fmt

# What the Ray side runs: this directory's __main__.py as a plain script, which
# imports neither zray nor its dependencies (see __main__.py).
_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__main__.py")
# `import ray` takes a few seconds; far longer means the interpreter is broken.
_IMPORT_CHECK_TIMEOUT_S = 120
# A whole full run on Ray takes minutes; an hour means it hangs.
_RAY_RUN_TIMEOUT_S = 3600
# A line of the table: metric, zray, ray, ratio, which way is better.
_LINE = "{:<30} {:>14} {:>14} {:>8}  {}"


def _python_has_ray(python):
    try:
        done = subprocess.run(
            [python, "-c", "import ray"],
            check=False,  # a failure means "no Ray here"
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=_IMPORT_CHECK_TIMEOUT_S,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


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


def _ray_command(python, args):
    cmd = [python, _SCRIPT, "--backend", "ray", "--json"]
    if args.quick:
        cmd.append("--quick")
    if args.filter:
        cmd += ["--filter", args.filter]
    if args.num_cpus:
        cmd += ["--num-cpus", str(args.num_cpus)]
    return cmd


def _ray_result(stdout):
    """The Ray side's JSON results: the last JSON line of ``stdout``, or None."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("backend") == "ray":
            return obj
    return None


def run_ray_subprocess(python, args):
    """Run the workloads selected by ``args`` on Ray under ``python``; its results."""
    cmd = _ray_command(python, args)
    # Progress and Ray's own logs go to our stderr; the JSON comes on stdout.
    done = subprocess.run(
        cmd,
        check=False,  # a failed run is reported below, with its command
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
        timeout=_RAY_RUN_TIMEOUT_S,
    )
    result = _ray_result(done.stdout)
    if result is None:
        raise RuntimeError(
            f"Ray benchmark run failed (rc={done.returncode}); command: {' '.join(cmd)}"
        )
    return result


def _row(name, zm, rm):
    """One line of the table: label, both values, ratio (above 1: zray is better)."""
    z = zm.get(name, {}).get("value")
    r = rm.get(name, {}).get("value")
    if name in LOWER_IS_BETTER:
        unit = zm.get(name, rm.get(name, {})).get("unit", "")
        label = f"{name} [{unit}]"
        ratio = (r / z) if (z and r is not None) else None
        note = "(ray/zray, lower is better)"
    else:
        label = name + (" [GB/s]" if name.endswith("_gigabytes") else " [/s]")
        ratio = (z / r) if (z is not None and r) else None
        note = "(zray/ray, higher is better)"
    shown_ratio = f"{ratio:.2f}x" if ratio is not None else "n/a"
    return _LINE.format(label, fmt(z), fmt(r), shown_ratio, note)


def format_comparison(zres, rres):
    """The comparison table of zray's results and Ray's (None if Ray did not run)."""
    lines = []
    header = _LINE.format("metric", "zray", "ray", "ratio", "")
    lines.append("ratio > 1 means zray is better")
    lines.append(header)
    lines.append("-" * len(header))
    zm = zres.get("metrics", {})
    rm = rres.get("metrics", {}) if rres else {}
    for name in METRIC_NAMES:
        if name in zm or name in rm:
            lines.append(_row(name, zm, rm))
    for label, res in (("zray", zres), ("ray", rres or {})):
        for name, err in sorted(res.get("errors", {}).items()):
            lines.append(f"{label} error in {name}: {err}")
    return "\n".join(lines)
