"""Task options against Ray Core's semantics: num_returns and returned refs, retries
of application errors, and misuse of options and arguments (on the module's cluster;
tests needing another cluster shape run a driver script)."""
from __future__ import annotations

import threading

import pytest
from helpers import echo, poll, run_driver

import zray
from zray.exceptions import RayTaskError

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
