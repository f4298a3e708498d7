"""init/shutdown, auto-init, and what a driver leaves behind when it ends: normally,
without shutdown(), or killed (SIGKILL) while tasks and an actor run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import leftovers, wait_until, zray_pids

import zray

DEADLINE_S = 10.0


@zray.remote
def plus_one(x):
    return x + 1


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def pids_of_session(session_dir: str) -> set[int]:
    """The zray processes (brokers, zygote, workers) of one session."""
    return {pid for pid in zray_pids() if session_dir.encode() in cmdline(pid)}


# -- init / shutdown in this process --------------------------------------------------

def test_init_starts_a_cluster_and_returns():
    before = zray_pids()
    assert not zray.is_initialized()
    ctx = zray.init(num_cpus=2)
    assert zray.is_initialized()
    session = ctx["session_dir"]
    assert os.path.isdir(session)
    assert os.stat(session).st_mode & 0o777 == 0o700
    assert ctx.address_info["session_dir"] == session
    # head, node, zygote and the 2 workers of the pool (workers may still be starting)
    assert wait_until(lambda: len(pids_of_session(session)) >= 5)
    assert pids_of_session(session) == zray_pids() - before
    assert zray.get(plus_one.remote(1)) == 2
    assert zray.cluster_resources()["CPU"] == 2


def test_second_init_raises_and_ignore_reinit_error_returns():
    ctx = zray.init(num_cpus=2)
    dirs = leftovers()
    with pytest.raises(RuntimeError, match="ignore_reinit_error"):
        zray.init(num_cpus=2)
    again = zray.init(num_cpus=2, ignore_reinit_error=True)
    assert again["session_dir"] == ctx["session_dir"]
    assert leftovers() == dirs, "a second init started another cluster"
    assert zray.get(plus_one.remote(41)) == 42


def test_shutdown_leaves_nothing_and_is_idempotent():
    before_pids, before_files = zray_pids(), leftovers()
    ctx = zray.init(num_cpus=2)
    session = ctx["session_dir"]
    ref = plus_one.remote(1)
    assert zray.get(ref) == 2
    brokers = set(zray._init._cluster.pids)
    zray.shutdown()
    assert not zray.is_initialized()
    # shutdown() waits for the brokers and removes the session dir before it returns.
    assert not os.path.exists(session)
    assert not brokers & zray_pids(), "a broker outlived shutdown()"
    assert leftovers() == before_files
    assert wait_until(lambda: not (zray_pids() - before_pids)), \
        f"processes left after shutdown: {sorted(zray_pids() - before_pids)}"
    zray.shutdown()
    zray.shutdown()
    assert not zray.is_initialized()


def test_shutdown_without_init_is_a_no_op():
    before_pids, before_files = zray_pids(), leftovers()
    zray.shutdown()
    assert not zray.is_initialized()
    assert zray_pids() == before_pids and leftovers() == before_files


def test_init_again_after_shutdown():
    first = zray.init(num_cpus=2)["session_dir"]
    assert zray.get(plus_one.remote(1)) == 2
    zray.shutdown()
    second = zray.init(num_cpus=2)["session_dir"]
    assert second != first and os.path.isdir(second) and not os.path.exists(first)
    assert zray.get(plus_one.remote(2)) == 3   # the function is sent again to the new cluster
    zray.shutdown()
    assert not os.path.exists(second)


def test_a_ref_dropped_after_shutdown_writes_to_no_reused_fd():
    """A notebook keeps refs in its globals past shutdown(); dropping one later wrote
    to the runtime's closed wake-up eventfd, whose number a zmq context of the kernel
    had reused, and libzmq aborted the kernel (mailbox.cpp:72)."""
    zray.init(num_cpus=1)
    ref = zray.put(1)
    wake_fd = zray._runtime.current().t._wake_fd
    zray.shutdown()
    fds = []
    try:
        while not fds or fds[-1] < wake_fd:   # new fds take the lowest free numbers
            fds.append(os.eventfd(0, os.EFD_NONBLOCK))
        assert fds[-1] == wake_fd
        del ref
        with pytest.raises(BlockingIOError):   # nothing was written to it
            os.eventfd_read(wake_fd)
    finally:
        for fd in fds:
            os.close(fd)


def test_init_as_context_manager_shuts_down():
    with zray.init(num_cpus=1) as ctx:
        session = ctx["session_dir"]
        assert zray.get(plus_one.remote(0)) == 1
    assert not zray.is_initialized()
    assert not os.path.exists(session)


@pytest.mark.parametrize("first_call", ["remote", "put", "get", "wait_on_put"])
def test_auto_init_on_first_use(first_call):
    assert not zray.is_initialized()
    if first_call == "remote":
        ref = plus_one.remote(1)
        assert zray.is_initialized()
        assert zray.get(ref) == 2
    elif first_call == "put":
        ref = zray.put("value")
        assert zray.is_initialized()
        assert zray.get(ref) == "value"
    elif first_call == "get":
        assert zray.get([]) == []
        assert zray.is_initialized()
    else:
        ref = zray.put(1)
        assert zray.wait([ref], timeout=5) == ([ref], [])
    assert os.path.isdir(zray._runtime.current().node_info["session_dir"])


@pytest.mark.parametrize("kwargs, error", [
    ({"no_such_option": 1}, TypeError),
    ({"num_cpus": 2, "num_cpu": 2}, TypeError),
    ({"num_cpus": -1}, ValueError),
    ({"num_cpus": "2"}, ValueError),
    ({"resources": ["CPU"]}, TypeError),
    ({"resources": {"CPU": 1}}, ValueError),
])
def test_bad_init_arguments_raise_and_start_nothing(kwargs, error):
    before_pids, before_files = zray_pids(), leftovers()
    with pytest.raises(error):
        zray.init(**kwargs)
    assert not zray.is_initialized()
    assert zray_pids() == before_pids and leftovers() == before_files


def test_ignored_ray_init_kwargs_are_accepted():
    zray.init(num_cpus=1, include_dashboard=False, logging_level="info", configure_logging=False)
    assert zray.get(plus_one.remote(1)) == 2


# -- drivers in subprocesses ------------------------------------------------------------

DRIVER = textwrap.dedent("""
    import os, sys, time
    import zray

    marks = sys.argv[1]
    ctx = zray.init(num_cpus=2)

    @zray.remote
    def hold(i, marks):
        import os, time
        open(os.path.join(marks, f"task{i}"), "w").close()
        time.sleep(60)

    @zray.remote
    class Actor:
        def pid(self):
            return os.getpid()
        def hold(self, marks):
            import os, time
            open(os.path.join(marks, "actor"), "w").close()
            time.sleep(60)

    actor = Actor.remote()
    zray.get(actor.pid.remote(), timeout=30)
    busy = actor.hold.remote(marks)
    refs = [hold.remote(i, marks) for i in range(4)]
    print(ctx["session_dir"], flush=True)
    TAIL
""")


def start_driver(tmp_path, tail: str) -> tuple[subprocess.Popen, str, str]:
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.replace("TAIL", tail))
    proc = subprocess.Popen([sys.executable, str(script), str(marks)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    session = proc.stdout.readline().strip()
    if not session:
        proc.kill()
        _out, err = proc.communicate(timeout=DEADLINE_S)
        pytest.fail(f"the driver failed to start: {err[-3000:]}")
    return proc, session, str(marks)


def assert_session_gone(session: str, pids: set[int]) -> None:
    gone = wait_until(lambda: not (pids & zray_pids()) and not pids_of_session(session)
                      and not os.path.exists(session))
    assert gone, (f"left behind after {DEADLINE_S} s: processes "
                  f"{sorted((pids & zray_pids()) | pids_of_session(session))}, "
                  f"session dir exists: {os.path.exists(session)}")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_driver_leaves_nothing_behind(tmp_path, sig):
    before = zray_pids()
    proc, session, marks = start_driver(tmp_path, "time.sleep(120)")
    try:
        # Both task workers and the actor are inside their calls.
        assert wait_until(lambda: len(os.listdir(marks)) >= 3), os.listdir(marks)
        assert "actor" in os.listdir(marks)
        pids = zray_pids() - before
        assert pids == pids_of_session(session) and len(pids) >= 6, \
            "expected head, node, zygote, 2 task workers and an actor worker"
        os.kill(proc.pid, sig)
        proc.wait(DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -sig
    assert_session_gone(session, pids)


@pytest.mark.parametrize("tail", [
    "pass",                                      # falls off the end, tasks still running
    "raise SystemExit(3)",
    "raise RuntimeError('driver bug')",
])
def test_driver_exiting_without_shutdown_leaves_nothing_behind(tmp_path, tail):
    before = zray_pids()
    proc, session, _marks = start_driver(tmp_path, tail)
    t0 = time.monotonic()
    try:
        pids = zray_pids() - before
        _, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    took = time.monotonic() - t0
    assert proc.returncode == {"pass": 0, "raise SystemExit(3)": 3}.get(tail, 1), err[-3000:]
    # atexit shutdown() stopped the cluster before the interpreter exited ...
    assert not os.path.exists(session)
    assert took < DEADLINE_S
    # ... and every process of the session.
    assert_session_gone(session, pids | pids_of_session(session))


COLD_START = textwrap.dedent("""
    import time
    t0 = time.perf_counter()
    import zray
    t1 = time.perf_counter()
    zray.init()
    t2 = time.perf_counter()

    @zray.remote
    def f():
        return 42

    assert zray.get(f.remote()) == 42
    t3 = time.perf_counter()
    zray.shutdown()
    t4 = time.perf_counter()
    print(f"import {t1 - t0:.3f} s, init {t2 - t1:.3f} s, first task {t3 - t2:.3f} s, "
          f"shutdown {t4 - t3:.3f} s")
""")


def test_cold_start_of_a_fresh_driver(capsys):
    before = zray_pids()
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", COLD_START], capture_output=True, text=True,
                         timeout=60)
    wall = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr[-3000:]
    with capsys.disabled():
        print(f"\ncold start: {wall:.3f} s in all ({out.stdout.strip()})")
    assert not (zray_pids() - before)
