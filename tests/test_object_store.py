"""The shared-memory object store: large values written once, read zero-copy,
freed with their last ref, and never left behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import wait_gone, zray_pids
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import zray
from zray import _runtime
from zray._config import CONFIG
from zray._object_store import SHM_DIR, session_tag

T = 30
BIG = CONFIG.inline_threshold // 8 + 1000   # float64 items: just over the inline limit


def segments() -> list[str]:
    tag = session_tag(_runtime.current().node_info["session_dir"])
    return sorted(n for n in os.listdir(SHM_DIR) if n.startswith(f"zray-{tag}-"))


@zray.remote
def _noop():
    return None


def settle() -> None:
    """A task round trip: frees queued by dropped refs have been carried out after it
    (the runtime's I/O thread handles released refs before it sends the next submit)."""
    zray.get(_noop.remote(), timeout=T)


def test_get_is_zero_copy_and_read_only(shared):
    a = np.arange(BIG, dtype=np.float64)
    ref = zray.put(a)
    x, y = zray.get(ref), zray.get(ref)
    assert np.array_equal(x, a)
    assert np.shares_memory(x, y), "two gets of one stored array share its memory"
    assert not x.flags.writeable
    with pytest.raises(ValueError):
        x[0] = 1.0


def test_small_values_stay_inline(shared):
    settle()   # the segments of earlier tests' dropped refs are gone
    before = segments()
    ref = zray.put(np.arange(10))
    assert zray.get(ref).tolist() == list(range(10))
    assert segments() == before


def test_task_gets_large_argument_from_the_store(shared):
    @zray.remote
    def inspect(arr):
        return float(arr.sum()), arr.flags.writeable

    a = np.ones(BIG)
    assert zray.get(inspect.remote(a), timeout=T) == (float(BIG), False)
    assert zray.get(inspect.remote(zray.put(a)), timeout=T) == (float(BIG), False)


def test_large_task_return_and_nested_structures(shared):
    @zray.remote
    def make(n):
        return {"a": np.full(n, 7, dtype=np.int32), "l": [np.zeros((n, 2)), "x"], "s": "tail"}

    out = zray.get(make.remote(BIG), timeout=T)
    assert out["a"].dtype == np.int32 and out["a"].sum() == 7 * BIG
    assert out["l"][0].shape == (BIG, 2) and out["l"][1] == "x" and out["s"] == "tail"


def test_freed_when_last_ref_is_gone(shared):
    settle()
    before = segments()
    refs = [zray.put(np.ones(BIG)) for _ in range(5)]
    assert len(segments()) == len(before) + 5
    del refs
    settle()
    assert segments() == before  # the owner unlinks when its last ref drops


def test_task_results_and_arguments_are_freed(shared):
    settle()
    @zray.remote
    def echo(a):
        return a

    before = segments()
    for _ in range(20):
        assert zray.get(echo.remote(np.ones(BIG)), timeout=T).shape == (BIG,)
    # The argument's segment is freed with the task's result; the result's with
    # its ref (a temporary here), so nothing accumulates over the loop.
    settle()
    assert segments() == before


def test_many_puts_keep_the_store_flat(shared):
    settle()
    before = segments()
    for _ in range(300):
        ref = zray.put(np.ones(BIG))
        del ref
    settle()
    assert segments() == before


arrays = hnp.arrays(
    dtype=st.one_of(hnp.integer_dtypes(), hnp.floating_dtypes(), hnp.complex_number_dtypes(),
                    hnp.unsigned_integer_dtypes(), hnp.boolean_dtypes()),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=40))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrays, st.integers(min_value=1, max_value=3), st.booleans())
def test_roundtrip_nested_arrays(shared, arr, reps, transpose):
    # Tiled up past the inline limit sometimes; transposed views are non-contiguous.
    big = np.tile(arr, (reps, 1) if arr.ndim else reps)
    if transpose and big.ndim > 1:
        big = big.T
    padding = np.zeros(BIG) if reps == 3 else None
    value = {"big": big, "nested": [arr, (big, "s")], "pad": padding}
    out = zray.get(zray.put(value))
    assert out["big"].dtype == big.dtype and out["big"].shape == big.shape
    np.testing.assert_array_equal(out["big"], big)
    np.testing.assert_array_equal(out["nested"][0], arr)
    np.testing.assert_array_equal(out["nested"][1][0], big)
    assert out["nested"][1][1] == "s"


def test_nothing_left_after_driver_is_killed(tmp_path):
    before_pids = zray_pids()
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent("""
        import sys, numpy as np, zray
        zray.init(num_cpus=1)
        refs = [zray.put(np.ones(200_000)) for _ in range(3)]
        @zray.remote
        def make(): return np.ones(200_000)
        keep = zray.get(make.remote())
        from zray import _runtime
        print("READY", _runtime.current().node_info["session_dir"], flush=True)
        sys.stdin.read()
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        ready, session_dir = proc.stdout.readline().split()
        assert ready == "READY"
        prefix = f"zray-{session_tag(session_dir)}-"
        during = [n for n in os.listdir(SHM_DIR) if n.startswith(prefix)]
        assert len(during) >= 3
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(T)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    pids, _ = wait_gone(before_pids, set())
    assert not pids
    left = [n for n in os.listdir(SHM_DIR) if n.startswith(prefix)]
    assert not left, f"segments left after SIGKILL of the driver: {left}"
