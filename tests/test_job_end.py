"""What runs for a job or a placement group that ends does not run on (as in Ray): a
driver's running tasks are killed when it exits (also those on workers it leased), a
removed placement group's running tasks are killed. Before, they ran to their end
(forever, for a loop), holding their CPUs."""
from __future__ import annotations

import os

import pytest
from conftest import pid_alive, wait_until
from helpers import T, run_driver

import zray
from zray.util.placement_group import placement_group, remove_placement_group
from zray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


@zray.remote
def spin(path):
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    while True:
        pass


def _pid_in(path):
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    return int(text) if text else None


@pytest.mark.parametrize("burst", [False, True], ids=["leased", "through_the_node"])
def test_a_drivers_running_tasks_end_with_it(shared, tmp_path, burst):
    address = zray._runtime.current().node_info["session_dir"]
    paths = [str(tmp_path / f"pid{i}") for i in range(2 if burst else 1)]
    run_driver(tmp_path, f"""
        import os, time, zray
        zray.init(address={address!r})

        @zray.remote
        def spin(path):
            with open(path, "w") as f:
                f.write(str(os.getpid()))
            while True:
                pass

        refs = [spin.remote(p) for p in {paths!r}]
        deadline = time.monotonic() + 30
        while not all(os.path.exists(p) and os.path.getsize(p) for p in {paths!r}):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        zray.shutdown()
    """)
    pids = [_pid_in(p) for p in paths]
    assert all(pids)
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), T), \
        "a task of a driver that exited is still running"
    # Its CPUs are free again: two tasks of this driver run at once.
    assert zray.get([zray.remote(lambda: 1).remote() for _ in range(2)], timeout=T) == [1, 1]


def test_a_removed_placement_groups_running_task_is_killed(shared, tmp_path):
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(T)
    path = str(tmp_path / "pid")
    ref = spin.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg)).remote(path)
    assert wait_until(lambda: _pid_in(path), T)
    pid = _pid_in(path)
    remove_placement_group(pg)
    with pytest.raises(zray.exceptions.RayError):
        zray.get(ref, timeout=T)
    assert wait_until(lambda: not pid_alive(pid), T), "the group's task runs on"
