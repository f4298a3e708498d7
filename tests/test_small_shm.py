"""A small /dev/shm (Docker gives 64 MiB): puts and task returns never fail while the
spill directory's disk has room. What does not fit spills older objects first (on the
node's spill thread) or goes straight to disk, and reads back either way.

Each test runs a driver in a mount namespace of its own (`unshare -m`) with a small
tmpfs on /dev/shm: its brokers and workers inherit it, and it goes with them."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import zmq
from conftest import leftovers, wait_gone, wait_until, zray_pids

from zray._object_store import SHM_DIR
from zray.brokers._store import NodeStore

MB = 2**20
T = 30


def _can_unshare() -> str:
    """Why a mount namespace with its own /dev/shm cannot be made here ("" if it can)."""
    if os.geteuid() != 0:
        return "needs root (a mount namespace with its own /dev/shm)"
    if shutil.which("unshare") is None:
        return "needs unshare(1)"
    probe = subprocess.run(["unshare", "-m", "sh", "-c",
                            "mount -t tmpfs -o size=1m zray-probe /dev/shm"],
                           capture_output=True, text=True, timeout=10)
    return "" if probe.returncode == 0 else f"cannot mount a tmpfs in a mount namespace: {probe.stderr}"


_WHY = _can_unshare()
needs_unshare = pytest.mark.skipif(bool(_WHY), reason=_WHY)


def run_small_shm(tmp_path, source: str, shm: str, tmp: str | None = None) -> str:
    """Run `source` as a driver with a tmpfs of size `shm` on /dev/shm (and, with
    `tmp`, one of that size as its temp dir: the session and spill directories);
    its stdout. Fails if it fails or leaves a zray process or file behind."""
    before_pids, before_files = zray_pids(), leftovers()
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(source))
    mounts = f"mount -t tmpfs -o size={shm},mode=1777 zray-shm /dev/shm"
    env = dict(os.environ)
    if tmp is not None:
        small_tmp = tmp_path / "tmp"
        small_tmp.mkdir()
        mounts += f" && mount -t tmpfs -o size={tmp},mode=1777 zray-tmp {small_tmp}"
        env["TMPDIR"] = str(small_tmp)
    proc = subprocess.Popen(["unshare", "-m", "sh", "-c", f'{mounts} && exec "$0" "$1"',
                             sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=str(tmp_path),
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=T)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)   # its own group: the driver, its brokers, workers
        out, err = proc.communicate()
        pytest.fail(f"the driver hung:\nstdout:\n{out}\nstderr:\n{err}")
    assert proc.returncode == 0, f"driver failed:\nstdout:\n{out}\nstderr:\n{err}"
    pids, files = wait_gone(before_pids, before_files)
    assert not pids and not files, f"the driver left zray processes {pids} or files {files}"
    return out


PUTS_AND_RETURNS = """
    import os, numpy as np, zray
    MB = 2**20
    zray.init(num_cpus=1, include_dashboard=False)

    @zray.remote
    def make(i):
        return np.full(40 * MB // 8, i, dtype=np.float64)

    @zray.remote
    def first(*arrays):
        return [float(a[0]) for a in arrays]

    # 5 puts and 4 task returns of 40 MB (or 5 returns, then 4 puts), all held, in a
    # 160 MB /dev/shm.
    if RETURNS_FIRST:
        refs = [make.remote(i) for i in range(5)]
        assert [zray.get(r, timeout=30)[0] for r in refs] == list(range(5))
        refs += [zray.put(np.full(40 * MB // 8, i, dtype=np.float64)) for i in range(5, 9)]
    else:
        refs = [zray.put(np.full(40 * MB // 8, i, dtype=np.float64)) for i in range(5)]
        refs += [make.remote(i) for i in range(5, 9)]
        zray.wait(refs, num_returns=len(refs), timeout=30)
    for i, ref in enumerate(refs):
        value = zray.get(ref, timeout=30)
        assert value.shape == (40 * MB // 8,) and value[0] == i and value[-1] == i, i
        del value
    assert zray.get(first.remote(*refs), timeout=30) == [float(i) for i in range(9)]
    spill = os.path.join(zray._runtime.current().node_info["session_dir"], "spill")
    print("spilled", len(os.listdir(spill)))
    zray.shutdown()
"""


@needs_unshare
@pytest.mark.parametrize("returns_first", [False, True], ids=["puts_first", "returns_first"])
def test_puts_and_returns_past_a_small_shm_spill(tmp_path, returns_first):
    """360 MB of values held at once with 160 MB of /dev/shm: nothing fails (the 4th put,
    or task return, raised ObjectStoreFullError: /dev/shm was full before the node
    spilled anything)."""
    source = f"RETURNS_FIRST = {returns_first}\n" + textwrap.dedent(PUTS_AND_RETURNS)
    out = run_small_shm(tmp_path, source, shm="160m")
    assert int(out.split("spilled ")[1].split()[0]) >= 5   # at least 200 MB on disk


LARGER_THAN_SHM = """
    import os, numpy as np, zray
    MB = 2**20
    zray.init(num_cpus=1, include_dashboard=False)

    @zray.remote
    def make():
        return np.full(100 * MB // 8, 2.0)

    small = zray.put(np.full(10 * MB // 8, 1.0))
    big = zray.put(np.full(100 * MB // 8, 3.0))
    assert zray.get(big, timeout=30)[-1] == 3.0
    assert zray.get(make.remote(), timeout=30)[-1] == 2.0
    assert zray.get(small, timeout=30)[0] == 1.0
    seg = zray._runtime.current().owner.table.entries[big._id].data[1]
    session = zray._runtime.current().node_info["session_dir"]
    assert os.path.exists(os.path.join(session, "spill", seg))
    print("ok")
    zray.shutdown()
"""


@needs_unshare
def test_a_value_larger_than_shm_goes_to_disk(tmp_path):
    """100 MB values (a put and a task's return) with a 64 MB /dev/shm: written straight
    to the spill directory by their writers, read back from there."""
    assert run_small_shm(tmp_path, LARGER_THAN_SHM, shm="64m").strip().endswith("ok")


DISK_FULL = """
    import numpy as np, zray
    from zray.exceptions import ObjectStoreFullError
    MB = 2**20
    zray.init(num_cpus=1, include_dashboard=False)
    try:
        zray.put(np.ones(100 * MB // 8))
    except ObjectStoreFullError as exc:
        print("full:", exc)
    assert zray.get(zray.put(np.ones(MB)), timeout=30).sum() == MB   # it goes on
    zray.shutdown()
"""


@needs_unshare
def test_full_only_when_the_spill_disk_is_full_too(tmp_path):
    out = run_small_shm(tmp_path, DISK_FULL, shm="64m", tmp="48m")
    assert "full:" in out and "spill directory" in out and "104,857" in out


# -- the node's store, on its own: the loop decides, the spill thread copies --------------

@pytest.fixture
def segments(tmp_path):
    """A function making a segment file of `size` bytes in /dev/shm; removes them all."""
    made: list[str] = []

    def make(size: int) -> str:
        name = f"zray-smallshmtest{os.getpid()}-{len(made)}"
        with open(os.path.join(SHM_DIR, name), "wb") as f:
            f.truncate(size)
        made.append(name)
        return name

    yield make
    for name in made:
        for path in (os.path.join(SHM_DIR, name), tmp_path / "spill" / name):
            if os.path.exists(path):
                os.unlink(path)


class _Log:
    def warning(self, *args, **kwargs):
        raise AssertionError(f"unexpected warning: {args} {kwargs}")


def _settle(store: NodeStore, poller: zmq.Poller, until) -> None:
    """Run the loop's side (the spiller's wake-ups) until `until()` holds."""
    deadline = time.monotonic() + T
    while not until():
        assert time.monotonic() < deadline, "the spiller did not finish"
        for fd, _ in poller.poll(100):
            assert store.handle_fd(fd)


def test_node_store_spills_on_its_thread_and_answers_room(tmp_path, segments):
    store = NodeStore(str(tmp_path), 3 * MB, _Log())
    poller = zmq.Poller()
    store.attach(poller, zmq.POLLIN)
    try:
        names = [segments(MB) for _ in range(5)]
        for name in names:
            store.added(name, MB)
        store.touched(names[0])           # the most recently used now
        store.enforce()                   # returns at once: the copying is the thread's
        assert set(store.spilling) == {names[1], names[2]}
        _settle(store, poller, lambda: not store.spilling)
        assert set(store.spilled) == {names[1], names[2]} and store.used == 3 * MB
        assert sorted(os.listdir(tmp_path / "spill")) == sorted(names[1:3])
        answered: list[int] = []
        store.make_room(2 * MB, lambda: answered.append(1))   # the capacity says: 2 more out
        assert not answered and set(store.spilling) == {names[3], names[4]}
        store.freed(names[4])             # freed on its way out: nothing of it stays
        _settle(store, poller, lambda: answered)
        assert store.used == MB and list(store.in_shm) == [names[0]]
        assert wait_until(lambda: sorted(os.listdir(tmp_path / "spill")) == sorted(names[1:4]), T)
        store.make_room(0, lambda: answered.append(2))   # nothing to spill: answered at once
        assert answered == [1, 2]
    finally:
        store.close()
