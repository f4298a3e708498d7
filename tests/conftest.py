"""Fixtures: a real embedded cluster per test (or per module), and leak checks that
fail a test leaving a zray process, session directory or /dev/shm segment behind."""
from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time

import pytest

import zray

# This test session's own temp root (session dirs are made there, by this process and
# by driver subprocesses, which inherit TMPDIR): the leak checks then see only this
# session's processes and files, not those of another test run or benchmark on the
# same machine (which made them fail or wait their full timeout). Removed at exit.
_TMP_ROOT = tempfile.mkdtemp(prefix="zraytests-")
os.environ["TMPDIR"] = _TMP_ROOT
tempfile.tempdir = _TMP_ROOT


def pytest_unconfigure(config):
    shutil.rmtree(_TMP_ROOT, ignore_errors=True)


def zray_pids(skip_session: str | None = None) -> set[int]:
    """Pids of live zray processes (brokers, zygotes, workers) of this test session:
    their command line names zray.brokers and a session dir under this session's
    temp root. skip_session: not those of that session (a cluster that keeps running,
    whose pool may still be starting: its workers are not another test's leak)."""
    me = os.getpid()
    root = _TMP_ROOT.encode()
    skip = skip_session.encode() if skip_session else None
    pids = set()
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as f:
                cmd = f.read()
            pid = int(path.split("/")[2])
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            continue
        if pid != me and state != "Z" and b"zray.brokers" in cmd and root in cmd \
                and (skip is None or skip not in cmd):
            pids.add(pid)
    return pids


def pid_alive(pid: int) -> bool:
    """True if `pid` runs (a zombie counts as gone: it has exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_until(predicate, timeout: float = 10.0) -> bool:
    """Poll `predicate` until it holds or `timeout` passes: for process exits and
    other states of other processes that this one has no event to wait on."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def leftovers() -> set[str]:
    tmp = tempfile.gettempdir()
    return set(glob.glob(os.path.join(tmp, "zray-*"))) | set(glob.glob("/dev/shm/zray*"))


def wait_gone(before_pids: set[int], before_files: set[str], timeout: float = 10.0,
              skip_session: str | None = None) -> tuple[set, set]:
    """New zray processes and files still there after `timeout` (exit is asynchronous
    only for processes already told to stop; shutdown() itself waits for them)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = zray_pids(skip_session) - before_pids
        files = leftovers() - before_files
        if (not pids and not files) or time.monotonic() > deadline:
            return pids, files
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def no_leaks(request):
    """Fail the test if it leaves a zray process or file behind (checked after the
    function-scoped cluster is shut down; module clusters are checked at module end)."""
    if "shared" in request.fixturenames or request.node.get_closest_marker("module_cluster"):
        yield   # the module's cluster is checked when it stops
        return
    before_pids, before_files = zray_pids(), leftovers()
    yield
    zray.shutdown()
    pids, files = wait_gone(before_pids, before_files)
    assert not pids, f"test leaked zray processes: {sorted(pids)}"
    assert not files, f"test leaked files: {sorted(files)}"


@pytest.fixture
def cluster():
    """A fresh embedded cluster with 2 CPUs for this test."""
    zray.init(num_cpus=2)
    yield zray
    zray.shutdown()


@pytest.fixture(scope="module")
def shared_cluster():
    before_pids, before_files = zray_pids(), leftovers()
    zray.init(num_cpus=2)
    yield zray
    zray.shutdown()
    pids, files = wait_gone(before_pids, before_files)
    assert not pids, f"module leaked zray processes: {sorted(pids)}"
    assert not files, f"module leaked files: {sorted(files)}"


@pytest.fixture
def shared(shared_cluster):
    """The module's cluster (for tests that do not change the cluster's state)."""
    return shared_cluster
