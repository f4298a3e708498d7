"""__main__ driver scripts and worker output, the runtime context, resources and GPUs
(driver scripts run as subprocesses, checked for leftovers when they exit; the other
tests use the module's cluster)."""
from __future__ import annotations

from helpers import T, hold_until, poll, run_driver

import zray

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


@zray.remote
def say(word):
    print("says", word)
    return True


def test_a_driver_sees_the_output_of_its_own_jobs_tasks_only(shared, tmp_path, capfd):
    """Two drivers on one cluster: each sees what its own tasks print, not the other's
    (as in Ray: worker output goes to the driver of its job)."""
    import subprocess
    import sys
    import textwrap

    from conftest import wait_until
    address = zray._runtime.current().node_info["session_dir"]
    ready, go = tmp_path / "ready", tmp_path / "go"
    script = tmp_path / "other.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, threading, time, zray

        class Seen:   # (the driver prints its tasks' lines through sys.stdout)
            def __init__(self, out):
                self.out, self.end = out, threading.Event()
            def write(self, text):
                if "other-job-end" in text:
                    self.end.set()
                return self.out.write(text)
            def __getattr__(self, name):
                return getattr(self.out, name)

        sys.stdout = seen = Seen(sys.stdout)
        zray.init(address={address!r})

        @zray.remote
        def say(word):
            print("says", word)
            return True

        assert zray.get(say.remote("other-job-line"), timeout=30)
        open({str(ready)!r}, "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert zray.get(say.remote("other-job-end"), timeout=30)
        # Its own last line has arrived: a stray line of the other job, sent before the
        # go, would be here by now (the node sends each line to every driver in turn).
        assert seen.end.wait(30)
        zray.shutdown()
    """))
    other = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(ready.exists, T), "the other driver did not start"
        assert zray.get(say.remote("this-job-line"), timeout=T)
        seen = ""

        def arrived():
            nonlocal seen
            seen += capfd.readouterr().out
            return "this-job-line" in seen
        assert wait_until(arrived, T), "this driver's own task output did not arrive"
        go.touch()
        out, err = other.communicate(timeout=60)
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
    assert other.returncode == 0, err
    assert "says other-job-line" in out and "says other-job-end" in out, out
    assert "this-job-line" not in out, "a task of another job printed in this driver"
    seen += capfd.readouterr().out
    assert "other-job" not in seen, "a task of another job printed in this driver"
