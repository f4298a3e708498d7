"""The public API against Ray Core's semantics, on real brokers and workers:
get, wait, put, ObjectRef, task options and errors, the runtime context,
resources and GPUs.

Every test takes `shared`, even those that need no cluster: the leak fixture shuts
zray down after any test without it, which would stop the module's cluster. Tests
that need a cluster of another shape (1 CPU, GPUs) or the driver's own output run
a driver script as a subprocess, checked for leftovers when it exits."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import zray
from conftest import leftovers, wait_gone, zray_pids
from zray.exceptions import GetTimeoutError, RayTaskError

SCRIPT_TIMEOUT = 60  # a driver subprocess that hangs fails its test instead of the run


@zray.remote
def echo(x):
    return x


@zray.remote
def fail(msg):
    raise ValueError(msg)


@zray.remote
def nap(seconds, value=None):
    time.sleep(seconds)
    return value


@zray.remote
def hold_until(path):
    while not os.path.exists(path):
        time.sleep(0.01)
    return "released"


def never_ready():
    """A ref that stays pending without taking a CPU: its task needs a resource no
    node has (the head keeps it queued until the cluster shuts down)."""
    return echo.options(resources={"zray_test_nowhere": 1}).remote(None)


def poll(predicate, timeout=10.0, what="condition"):
    """Wait for a condition reported asynchronously (resources, files written by tasks)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.02)


def run_driver(tmp_path, source, timeout=SCRIPT_TIMEOUT, cwd=None, name="driver.py"):
    """Run `source` as a driver script (`__main__`), returning the completed process.
    Fails if the driver's cluster outlives it (the module's own cluster is idle meanwhile)."""
    before_pids, before_files = zray_pids(), leftovers()
    script = tmp_path / name
    script.write_text(textwrap.dedent(source))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=timeout, cwd=str(cwd or tmp_path))
    assert proc.returncode == 0, f"driver failed:\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    pids, files = wait_gone(before_pids, before_files)
    assert not pids and not files, f"the driver left zray processes {pids} or files {files}"
    return proc


# -- get -----------------------------------------------------------------------------

def test_get_single_list_tuple(shared):
    refs = [echo.remote(i) for i in range(20)]
    assert zray.get(refs, timeout=30) == list(range(20))
    assert zray.get(refs[3], timeout=30) == 3
    assert zray.get(tuple(refs[:3]), timeout=30) == [0, 1, 2]
    assert zray.get([], timeout=30) == []


def test_get_keeps_order_when_later_refs_finish_first(shared):
    slow, fast = nap.remote(0.5, "slow"), echo.remote("fast")
    assert zray.get([slow, fast], timeout=30) == ["slow", "fast"]


def test_get_raises_as_soon_as_one_failed(shared, tmp_path):
    release = tmp_path / "release"
    slow = hold_until.remote(str(release))
    try:
        bad = fail.remote("early")
        start = time.monotonic()
        with pytest.raises(ValueError, match="early") as info:
            zray.get([slow, bad], timeout=20)
        assert time.monotonic() - start < 10, "get waited for the slow task before raising"
        assert isinstance(info.value, RayTaskError)
        assert zray.wait([slow], timeout=0)[0] == [], "the slow task finished: the test proves nothing"
    finally:
        release.touch()
    assert zray.get(slow, timeout=30) == "released"


def test_get_timeout_is_a_timeout_error(shared):
    assert issubclass(GetTimeoutError, TimeoutError)
    ref = never_ready()
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        zray.get(ref, timeout=0.3)
    elapsed = time.monotonic() - start
    assert 0.25 <= elapsed < 5
    with pytest.raises(GetTimeoutError):
        zray.get([echo.remote(1), ref], timeout=0)


@pytest.mark.parametrize("bad", [5, "ref", None, {"a": 1}])
def test_get_rejects_non_refs(shared, bad):
    with pytest.raises((TypeError, ValueError)):
        zray.get(bad, timeout=5)


def test_get_rejects_list_with_non_ref(shared):
    with pytest.raises(TypeError, match="item 1"):
        zray.get([zray.put(1), 2], timeout=5)


@pytest.mark.parametrize("timeout", [-1, -0.5, "1"])
def test_get_rejects_bad_timeout(shared, timeout):
    with pytest.raises(ValueError, match="timeout"):
        zray.get(zray.put(1), timeout=timeout)


# -- wait ----------------------------------------------------------------------------

def test_wait_keeps_input_order_and_caps_ready(shared):
    p1, r1, p2, r2, r3 = never_ready(), zray.put(1), never_ready(), zray.put(2), zray.put(3)
    refs = [p1, r1, p2, r2, r3]
    ready, not_ready = zray.wait(refs, num_returns=2, timeout=10)
    assert ready == [r1, r2]
    assert not_ready == [p1, p2, r3]
    ready, not_ready = zray.wait(refs, num_returns=3, timeout=10)
    assert ready == [r1, r2, r3]
    assert not_ready == [p1, p2]


def test_wait_default_returns_first_ready(shared):
    refs = [never_ready(), nap.remote(0.2, "x"), never_ready()]
    start = time.monotonic()
    ready, not_ready = zray.wait(refs, timeout=20)
    assert time.monotonic() - start < 10
    assert ready == [refs[1]] and not_ready == [refs[0], refs[2]]
    assert zray.get(ready[0], timeout=5) == "x"


def test_wait_timeout_returns_what_is_ready(shared):
    pending, done = never_ready(), echo.remote(7)
    zray.get(done, timeout=30)
    start = time.monotonic()
    ready, not_ready = zray.wait([pending, done], num_returns=2, timeout=0.3)
    elapsed = time.monotonic() - start
    assert ready == [done] and not_ready == [pending]
    assert 0.25 <= elapsed < 5


def test_wait_timeout_zero_does_not_block(shared):
    pending, done = never_ready(), zray.put("here")
    start = time.monotonic()
    ready, not_ready = zray.wait([pending, done], num_returns=2, timeout=0)
    assert time.monotonic() - start < 1
    assert ready == [done] and not_ready == [pending]
    ready, not_ready = zray.wait([pending], timeout=0)
    assert ready == [] and not_ready == [pending]


def test_wait_counts_failed_tasks_as_ready(shared):
    bad = fail.remote("x")
    ready, not_ready = zray.wait([bad], timeout=30)
    assert ready == [bad] and not_ready == []


def test_wait_rejects_bad_arguments(shared):
    r1, r2 = zray.put(1), zray.put(2)
    with pytest.raises(TypeError):
        zray.wait(r1)
    with pytest.raises(TypeError):
        zray.wait({r1, r2})
    with pytest.raises(ValueError, match="unique"):
        zray.wait([r1, r1])
    with pytest.raises(ValueError):
        zray.wait([r1, r2], num_returns=0)
    with pytest.raises(ValueError):
        zray.wait([r1, r2], num_returns=3)
    with pytest.raises(TypeError):
        zray.wait([r1, "r2"])
    with pytest.raises(ValueError, match="timeout"):
        zray.wait([r1], timeout=-1)


# -- put -----------------------------------------------------------------------------

def _point_class():
    # Defined in a function, so cloudpickle sends it by value: the workers cannot
    # import this test module (tests/ is on the driver's sys.path only).
    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __eq__(self, other):
            return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)
    return Point


Point = _point_class()


@pytest.mark.parametrize("value", [
    0, -1.5, "text", b"\x00bytes", None, True, (1, "a"), [1, [2, [3]]], {"k": {"n": [1, 2]}},
    {1, 2, 3}, Point(1, 2), 10**40, "x" * 300_000, b"\x01" * 300_000,
], ids=lambda v: type(v).__name__ + str(len(v) if isinstance(v, (str, bytes)) else ""))
def test_put_get_round_trip(shared, value):
    assert zray.get(zray.put(value), timeout=30) == value
    # And through a task, both as a resolved argument and as a return value.
    assert zray.get(echo.remote(zray.put(value)), timeout=30) == value


@pytest.mark.parametrize("shape,dtype", [((3,), np.int64), ((4, 5), np.float32),
                                          ((512, 512), np.float64), ((0,), np.uint8)])
def test_put_numpy(shared, shape, dtype):
    arr = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    out = zray.get(zray.put(arr), timeout=30)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    np.testing.assert_array_equal(zray.get(echo.remote(arr), timeout=30), arr)


def test_put_lambda_and_closure(shared):
    k = 10
    fn = zray.get(zray.put(lambda x: x + k), timeout=30)
    assert fn(1) == 11

    @zray.remote
    def apply(f, x):
        return f(x)

    assert zray.get(apply.remote(lambda x: x * k, 3), timeout=30) == 30


def test_put_object_ref_is_rejected(shared):
    ref = zray.put(1)
    with pytest.raises(TypeError, match="put"):
        zray.put(ref)
    # Wrapped in a list, it is allowed and comes back as a ref.
    inner = zray.get(zray.put([ref]), timeout=30)[0]
    assert inner == ref and zray.get(inner, timeout=30) == 1


def test_get_returns_a_fresh_copy(shared):
    ref = zray.put({"a": [1, 2]})
    first = zray.get(ref, timeout=30)
    first["a"].append(3)
    first["b"] = 0
    assert zray.get(ref, timeout=30) == {"a": [1, 2]}
    arr_ref = zray.put(np.zeros(4))
    arr = zray.get(arr_ref, timeout=30)
    if arr.flags.writeable:
        arr[0] = 99
    assert zray.get(arr_ref, timeout=30)[0] == 0


def test_put_unpicklable_is_a_type_error(shared):
    with pytest.raises(TypeError, match="put"):
        zray.put(threading.Lock())


# -- ObjectRef -----------------------------------------------------------------------

def test_object_ref_hash_eq_hex_repr(shared):
    a, b = zray.put(1), zray.put(1)
    assert a == a and a != b and a != a.hex()
    assert len({a, b, a}) == 2
    assert {a: "a", b: "b"}[a] == "a"
    h = a.hex()
    assert isinstance(h, str) and h and int(h, 16) >= 0 and h != b.hex()
    assert h in repr(a)
    # The same object met again (through a value) is equal and hashes the same.
    again = zray.get(zray.put([a]), timeout=30)[0]
    assert again is not a and again == a and hash(again) == hash(a)


def test_await_ref(shared):
    async def main():
        one = await echo.remote(1)
        many = await asyncio.gather(*[echo.remote(i) for i in range(5)])
        return one, many

    assert asyncio.run(asyncio.wait_for(main(), 30)) == (1, [0, 1, 2, 3, 4])


def test_await_failing_ref_raises(shared):
    async def main():
        return await fail.remote("awaited")

    with pytest.raises(ValueError, match="awaited"):
        asyncio.run(asyncio.wait_for(main(), 30))


def test_ref_future(shared):
    assert echo.remote(5).future().result(timeout=30) == 5
    assert zray.put("p").future().result(timeout=30) == "p"
    fut = fail.remote("via future").future()
    with pytest.raises(ValueError, match="via future") as info:
        fut.result(timeout=30)
    assert isinstance(info.value, RayTaskError)


# -- tasks: returns --------------------------------------------------------------------

def test_num_returns_zero(shared, tmp_path):
    @zray.remote(num_returns=0)
    def touch(path):
        with open(path, "w") as f:
            f.write("ran")

    marker = tmp_path / "ran"
    assert touch.remote(str(marker)) is None
    poll(marker.exists, what="the num_returns=0 task to run")


def test_num_returns_two(shared):
    @zray.remote(num_returns=2)
    def pair(x):
        return x, x * 2

    a, b = pair.remote(4)
    assert zray.get([b, a], timeout=30) == [8, 4]
    refs = echo.options(num_returns=3).remote([1, 2, 3])
    assert isinstance(refs, list) and len(refs) == 3
    assert zray.get(refs, timeout=30) == [1, 2, 3]


@pytest.mark.parametrize("value,got", [((1, 2, 3), "3 values"), (5, "non-sequence")])
def test_wrong_number_of_returns(shared, value, got):
    @zray.remote(num_returns=2)
    def two_promised(v):
        return v

    a, b = two_promised.remote(value)
    for ref in (a, b):
        with pytest.raises(Exception) as info:
            zray.get(ref, timeout=30)
        msg = str(info.value)
        assert "two_promised" in msg and "num_returns=2" in msg and got in msg


def test_task_returning_refs(shared):
    @zray.remote
    def make():
        return zray.put("inner"), echo.remote("child")

    put_ref, child_ref = zray.get(make.remote(), timeout=30)
    assert type(put_ref) is zray.ObjectRef and type(child_ref) is zray.ObjectRef
    assert zray.get([put_ref, child_ref], timeout=30) == ["inner", "child"]

    @zray.remote
    def forward():
        return echo.remote("direct")

    ref = zray.get(forward.remote(), timeout=30)
    assert zray.get(ref, timeout=30) == "direct"


def test_recursive_fan_out_on_one_cpu(shared, tmp_path):
    # A worker blocked in get() lends its CPU: 1 + 3 + 9 tasks wait on their
    # children on a 1-CPU node, and the 27 leaves still run.
    proc = run_driver(tmp_path, """
        import zray

        @zray.remote
        def tree(depth):
            if depth == 0:
                return 1
            return sum(zray.get([tree.remote(depth - 1) for _ in range(3)], timeout=60))

        zray.init(num_cpus=1)
        print("LEAVES", zray.get(tree.remote(3), timeout=60))
        zray.shutdown()
    """)
    assert "LEAVES 27" in proc.stdout


# -- tasks: retries ------------------------------------------------------------------

Flaky, Fatal = ConnectionError, PermissionError  # importable by the workers


@zray.remote
def flaky(path, fail_times, exc_type):
    with open(path, "a") as f:
        f.write("x")
    with open(path) as f:
        attempts = len(f.read())
    if attempts <= fail_times:
        raise exc_type(f"attempt {attempts}")
    return attempts


def attempts(path):
    return len(path.read_text()) if path.exists() else 0


def test_retry_exceptions_true(shared, tmp_path):
    path = tmp_path / "a"
    f = flaky.options(max_retries=3, retry_exceptions=True)
    assert zray.get(f.remote(str(path), 2, Flaky), timeout=30) == 3
    path2 = tmp_path / "b"
    with pytest.raises(Flaky, match="attempt 3"):
        zray.get(flaky.options(max_retries=2, retry_exceptions=True).remote(str(path2), 10, Flaky),
                 timeout=30)
    assert attempts(path2) == 3


def test_retry_exceptions_list(shared, tmp_path):
    f = flaky.options(max_retries=5, retry_exceptions=[Flaky])
    path = tmp_path / "a"
    assert zray.get(f.remote(str(path), 2, Flaky), timeout=30) == 3
    path2 = tmp_path / "b"
    with pytest.raises(Fatal):
        zray.get(f.remote(str(path2), 2, Fatal), timeout=30)
    assert attempts(path2) == 1


def test_no_retry_of_app_exceptions_by_default(shared, tmp_path):
    path = tmp_path / "a"
    with pytest.raises(Flaky):
        zray.get(flaky.options(max_retries=3).remote(str(path), 1, Flaky), timeout=30)
    assert attempts(path) == 1
    path2 = tmp_path / "b"
    with pytest.raises(Flaky):
        zray.get(flaky.remote(str(path2), 1, Flaky), timeout=30)
    assert attempts(path2) == 1


# -- tasks: misuse -------------------------------------------------------------------

def test_unknown_option_is_named(shared):
    with pytest.raises(ValueError, match="num_cpu"):
        @zray.remote(num_cpu=1)
        def f():
            pass
    with pytest.raises(ValueError, match="bogus_option"):
        echo.options(bogus_option=1)


@pytest.mark.parametrize("options", [
    {"num_cpus": -1}, {"num_cpus": "2"}, {"num_gpus": -0.5}, {"num_returns": -1},
    {"num_returns": 1.5}, {"num_returns": "2"}, {"max_retries": -2}, {"resources": {"CPU": 1}},
])
def test_bad_option_values(shared, options):
    with pytest.raises((ValueError, TypeError)):
        echo.options(**options)
    with pytest.raises((ValueError, TypeError)):
        zray.remote(**options)(lambda: None)


def test_calling_remote_function_directly(shared):
    with pytest.raises(TypeError, match=r"echo\.remote\(\)"):
        echo(1)


def test_wrong_signature_fails_at_remote(shared):
    with pytest.raises(TypeError, match="echo"):
        echo.remote(1, 2)
    with pytest.raises(TypeError, match="echo"):
        echo.remote(y=1)
    with pytest.raises(TypeError):
        echo.remote()


def test_unpicklable_argument(shared):
    with pytest.raises(TypeError, match="echo") as info:
        echo.remote(threading.Lock())
    assert "lock" in str(info.value).lower()
    with pytest.raises(TypeError, match="echo"):
        echo.remote([1, {"k": threading.Lock()}])
    assert zray.get(echo.remote("still works"), timeout=30) == "still works"


def test_unpicklable_closure(shared):
    lock = threading.Lock()

    @zray.remote
    def uses_lock():
        with lock:
            return 1

    with pytest.raises(TypeError, match="uses_lock"):
        uses_lock.remote()
    assert zray.get(echo.remote(1), timeout=30) == 1


def test_unpicklable_return_value(shared):
    @zray.remote
    def make_lock():
        return threading.Lock()

    with pytest.raises(TypeError) as info:
        zray.get(make_lock.remote(), timeout=30)
    msg = str(info.value)
    assert isinstance(info.value, RayTaskError)
    assert "return value of" in msg and "make_lock" in msg and "lock" in msg.split("return value")[1]
    assert zray.get(echo.remote("still works"), timeout=30) == "still works"
    assert zray.get([echo.remote(i) for i in range(4)], timeout=30) == [0, 1, 2, 3]


# -- __main__ drivers and worker output -------------------------------------------------

def test_main_script_functions_and_classes_by_value(shared, tmp_path):
    proc = run_driver(tmp_path, """
        import zray

        class Box:
            def __init__(self, v):
                self.v = v

        def helper(x):
            return x + 1

        @zray.remote
        def work(box):
            return Box(helper(box.v))

        @zray.remote
        class Acc:
            def __init__(self):
                self.total = 0
            def add(self, box):
                self.total += box.v
                return self.total

        zray.init(num_cpus=2)
        out = zray.get([work.remote(Box(i)) for i in range(3)], timeout=30)
        assert [b.v for b in out] == [1, 2, 3], out
        acc = Acc.remote()
        assert zray.get([acc.add.remote(b) for b in out], timeout=30) == [1, 3, 6]
        print("MAIN-OK")
        zray.shutdown()
    """)
    assert "MAIN-OK" in proc.stdout


def test_worker_print_reaches_driver_with_prefix(shared, tmp_path):
    proc = run_driver(tmp_path, """
        import os
        import sys
        import zray

        @zray.remote
        def shout(word):
            print("hello", word)
            print("oops", word, file=sys.stderr)
            print("no newline", end="")   # flushed when the task ends
            return os.getpid()

        zray.init(num_cpus=1)
        pid = zray.get(shout.remote("world"), timeout=30)
        # One worker: its next result comes after the output of the first task.
        assert zray.get(shout.options(name="again").remote("sync"), timeout=30) == pid
        print("WORKER-PID", pid, "DRIVER-PID", os.getpid())
        zray.shutdown()
    """)
    pid, driver_pid = (int(w) for w in proc.stdout.split("WORKER-PID")[1].split()[0:3:2])
    assert pid > 0 and pid != driver_pid
    assert f"(shout pid={pid}) hello world\n" in proc.stdout, proc.stdout
    assert f"(shout pid={pid}) no newline\n" in proc.stdout, proc.stdout
    assert f"(again pid={pid}) hello sync\n" in proc.stdout, proc.stdout
    assert f"(shout pid={pid}) oops world\n" in proc.stderr, proc.stderr
    assert "hello" not in proc.stderr and "oops" not in proc.stdout


def test_workers_import_modules_next_to_the_script(shared, tmp_path):
    # As in Ray, the driver script's directory is on the workers' sys.path, so the
    # classes of its sibling modules unpickle there, whatever the working directory.
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "zray_test_sibling.py").write_text(
        "class Box:\n    def __init__(self, v):\n        self.v = v\n\n"
        "def triple(x):\n    return 3 * x\n")
    proc = run_driver(project, """
        import zray
        from zray_test_sibling import Box, triple

        @zray.remote
        def unbox(box, fn):
            return Box(fn(box.v))

        zray.init(num_cpus=1)
        print("BOX", zray.get(unbox.remote(Box(2), triple), timeout=30).v)
        zray.shutdown()
    """, cwd=elsewhere)
    assert "BOX 6" in proc.stdout


# -- runtime context and resources ---------------------------------------------------

@zray.remote
def context_in_task():
    ctx = zray.get_runtime_context()
    return {"job": ctx.get_job_id(), "node": ctx.get_node_id(), "task": ctx.get_task_id(),
            "resources": ctx.get_assigned_resources(), "gpus": zray.get_gpu_ids()}


def test_runtime_context(shared):
    ctx = zray.get_runtime_context()
    job, node = ctx.get_job_id(), ctx.get_node_id()
    assert job and node
    driver_task = ctx.get_task_id()  # Ray: "shouldn't be used in a driver"; zray: None
    assert zray.get_gpu_ids() == []
    a, b = zray.get([context_in_task.remote(), context_in_task.remote()], timeout=30)
    assert a["task"] and b["task"] and a["task"] != b["task"]
    assert driver_task not in (a["task"], b["task"])
    assert a["node"] == b["node"] == node
    assert a["resources"] == {"CPU": 1.0}
    assert a["gpus"] == []
    big = zray.get(context_in_task.options(num_cpus=2).remote(), timeout=30)
    assert big["resources"] == {"CPU": 2.0}
    assert node in [n["NodeID"] for n in zray.nodes()]


def test_runtime_context_job_id_in_task(shared):
    job = zray.get_runtime_context().get_job_id()
    assert zray.get(context_in_task.remote(), timeout=30)["job"] == job


def test_nodes_and_cluster_resources(shared):
    nodes = zray.nodes()
    assert len(nodes) == 1
    node = nodes[0]
    for key in ("NodeID", "Alive", "alive", "NodeManagerAddress", "NodeManagerHostname",
                "NodeManagerPort", "ObjectManagerPort", "ObjectStoreSocketName",
                "RayletSocketName", "MetricsExportPort", "NodeName", "Resources"):
        assert key in node, key
    assert node["Alive"] is True and node["alive"] is True
    assert node["Resources"]["CPU"] == 2.0
    total = zray.cluster_resources()
    assert total["CPU"] == 2.0
    assert total["memory"] > 0 and total["object_store_memory"] > 0
    assert "GPU" not in total


def test_available_resources_follow_running_tasks(shared, tmp_path):
    def cpu():
        return zray.available_resources().get("CPU", 0.0)

    poll(lambda: cpu() == 2.0, what="2 CPUs available at start")
    release = tmp_path / "release"
    ref = hold_until.remote(str(release))
    poll(lambda: cpu() == 1.0, what="1 CPU available while the task runs")
    assert zray.cluster_resources()["CPU"] == 2.0
    release.touch()
    assert zray.get(ref, timeout=30) == "released"
    poll(lambda: cpu() == 2.0, what="the CPU back after the task")


# -- GPUs ----------------------------------------------------------------------------

def test_gpu_tasks_see_their_devices(shared, tmp_path):
    proc = run_driver(tmp_path, """
        import os
        import zray

        @zray.remote(num_gpus=1)
        def visible():
            ctx = zray.get_runtime_context()
            return (os.environ.get("CUDA_VISIBLE_DEVICES"), zray.get_gpu_ids(),
                    ctx.get_assigned_resources())

        @zray.remote
        def no_gpu():
            return zray.get_gpu_ids()

        zray.init(num_cpus=1, num_gpus=2)
        assert zray.cluster_resources()["GPU"] == 2.0, zray.cluster_resources()
        assert zray.get_gpu_ids() == []
        for _ in range(3):
            cvd, ids, res = zray.get(visible.remote(), timeout=30)
            assert cvd in ("0", "1") and ids == [int(cvd)], (cvd, ids)
            assert res == {"CPU": 1.0, "GPU": 1.0}, res
        cvd, ids, res = zray.get(visible.options(num_gpus=2).remote(), timeout=30)
        assert sorted(cvd.split(",")) == ["0", "1"] and sorted(ids) == [0, 1], (cvd, ids)
        assert zray.get(no_gpu.remote(), timeout=30) == []
        print("GPU-OK")
        zray.shutdown()
    """)
    assert "GPU-OK" in proc.stdout


def test_gpu_task_without_gpus_stays_pending_with_warning(shared, tmp_path):
    proc = run_driver(tmp_path, """
        import zray

        @zray.remote(num_gpus=1)
        def wants_gpu():
            return 1

        zray.init(num_cpus=1)
        ref = wants_gpu.remote()
        ready, not_ready = zray.wait([ref], timeout=3)
        assert ready == [] and not_ready == [ref], (ready, not_ready)
        assert zray.get(zray.put(2), timeout=10) == 2
        print("PENDING-OK")
        zray.shutdown()
    """)
    out = proc.stdout + proc.stderr
    assert "PENDING-OK" in proc.stdout
    warning = [line for line in out.splitlines() if "wants_gpu" in line]
    assert warning, out
    assert "GPU" in warning[0]
