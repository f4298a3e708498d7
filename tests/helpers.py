"""Helpers and remote definitions shared by several test modules (imported as
`from helpers import ...`; pytest puts tests/ on sys.path, as for conftest)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

from conftest import leftovers, pid_alive, wait_gone, wait_until, zray_pids

import zray
from zray import _protocol as _P

# -- the public API (test_api, test_task_options, test_drivers) ------------------------

SCRIPT_TIMEOUT = 60  # a driver subprocess that hangs fails its test instead of the run


@zray.remote
def echo(x):
    return x


@zray.remote
def hold_until(path):
    while not os.path.exists(path):
        time.sleep(0.01)
    return "released"


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
    # The module's own cluster keeps running (its pool may still be forking workers
    # when the first test starts): only the driver's sessions count.
    running = zray._runtime.current().node_info.get("session_dir") if zray.is_initialized() else None
    before_pids, before_files = zray_pids(running), leftovers()
    script = tmp_path / name
    script.write_text(textwrap.dedent(source))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=timeout, cwd=str(cwd or tmp_path))
    assert proc.returncode == 0, f"driver failed:\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    pids, files = wait_gone(before_pids, before_files, skip_session=running)
    assert not pids and not files, f"the driver left zray processes {pids} or files {files}"
    return proc


# -- actors (test_actors, test_actor_names, test_actor_lifetime) ----------------------

T = 30  # timeout of every get (s): generous, a hang fails instead of blocking the suite


def wait_exit(pid: int, timeout: float = 10.0) -> bool:
    """Poll until `pid` has exited; False if it still runs after `timeout`."""
    return wait_until(lambda: not pid_alive(pid), timeout)


@zray.remote
class Counter:
    def __init__(self, start=0):
        self.n = start
        self.items = []

    def incr(self, by=1):
        self.n += by
        return self.n

    def value(self):
        return self.n

    def append(self, x):
        self.items.append(x)

    def items_(self):
        return list(self.items)

    def pid(self):
        return os.getpid()

    def die(self):
        os._exit(1)

    def bye(self):
        zray.actor.exit_actor()


@zray.remote
class Holder:
    """Holds a handle to another actor and calls it."""

    def __init__(self, other=None):
        self.other = other

    def hold(self, handles):
        self.other = handles[0]

    def call_other(self, by):
        return zray.get(self.other.incr.remote(by), timeout=T)

    def other_pid(self):
        return zray.get(self.other.pid.remote(), timeout=T)


@zray.remote
def use_handle(h, by):
    return zray.get(h.incr.remote(by), timeout=T)


# -- faults (test_faults, test_bad_frames) ---------------------------------------------

TIMEOUT = 20.0   # bound on a fault test's get(): a hang fails the test, it does not stall it


def recv(sock, mtype: int, timeout: float = TIMEOUT) -> list:
    """The fields of the next message of type `mtype` on `sock`."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0 and sock.poll(int(left * 1000)), f"no {_P.NAMES[mtype]} came"
        got, fields = _P.decode(sock.recv())
        if got == mtype:
            return fields



@zray.remote
def plus_one(x):
    return x + 1


@zray.remote
def meet(dirname, i, n, timeout=TIMEOUT):
    """Returns once `n` of these run at the same time (each on its own worker), or
    False after `timeout`: proves the node has `n` live workers with free CPUs."""
    import os
    import time
    open(os.path.join(dirname, f"meet{i}"), "w").close()
    deadline = time.monotonic() + timeout
    while sum(name.startswith("meet") for name in os.listdir(dirname)) < n:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def assert_pool_works(tmp_path, n: int = 2) -> None:
    d = tmp_path / f"meet-{time.monotonic_ns()}"
    d.mkdir()
    assert zray.get([meet.remote(str(d), i, n) for i in range(n)], timeout=TIMEOUT) == [True] * n
    assert zray.get([plus_one.remote(i) for i in range(50)], timeout=TIMEOUT) == list(range(1, 51))
