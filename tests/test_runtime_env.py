"""runtime_env: env_vars, working_dir and py_modules per job and per task or actor,
merged over the parent's; set around each task in a reused worker and undone after;
clear errors for what zray does not support. The expected values were observed on
Ray 2.60 with the same programs (Ray ships local directories per job only: zray also
per task, which has no Ray result to compare with)."""
from __future__ import annotations

import dataclasses
import os

import pytest
from conftest import leftovers, wait_gone, zray_pids

import zray
from zray import _runtime_env
from zray.runtime_env import RuntimeEnv

pytestmark = pytest.mark.module_cluster
T = 30
JOB_ENV = {"env_vars": {"JOBVAR": "job", "BOTH": "job"}}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """The module's cluster: one CPU (so one worker runs every task: reuse is tested),
    and a job-level runtime_env."""
    before_pids, before_files = zray_pids(), leftovers()
    zray.init(num_cpus=1, runtime_env=JOB_ENV, include_dashboard=False)
    yield tmp_path_factory.mktemp("renv")
    zray.shutdown()
    pids, files = wait_gone(before_pids, before_files)
    assert not pids and not files, f"module leaked {pids} {files}"


@zray.remote
def env(*names):
    return os.getpid(), {n: os.environ.get(n) for n in names}


@zray.remote
def nested():
    return zray.get(env.remote("JOBVAR", "BOTH", "TASKVAR"), timeout=T)[1]


@zray.remote
def where():
    import sys
    return os.getcwd(), list(sys.path), sorted(sys.modules)


@zray.remote
def in_working_dir():
    import wdmod
    with open("data.txt") as f:
        return f.read(), wdmod.VALUE, os.path.exists("skip/big.bin"), os.path.exists("sub/x.txt")


@zray.remote
def use_modules():
    import mypkg
    import single
    return mypkg.NAME, single.SINGLE


@zray.remote
def context_env():
    return zray.get_runtime_context().runtime_env


@zray.remote
class Holder:
    def env(self, *names):
        return {n: os.environ.get(n) for n in names}

    def child(self):
        return zray.get(env.remote("JOBVAR", "ACTORVAR"), timeout=T)[1]

    def cwd_has(self, name):
        return os.path.exists(name)


def _tree(root):
    (root / "wd" / "sub").mkdir(parents=True)
    (root / "wd" / "skip").mkdir()
    (root / "wd" / "data.txt").write_text("WD_DATA")
    (root / "wd" / "wdmod.py").write_text("VALUE = 'from wd module'\n")
    (root / "wd" / "sub" / "x.txt").write_text("x")
    (root / "wd" / "skip" / "big.bin").write_bytes(b"\0" * 1000)
    (root / "mods" / "mypkg").mkdir(parents=True)
    (root / "mods" / "mypkg" / "__init__.py").write_text("NAME = 'mypkg here'\n")
    (root / "mods" / "single.py").write_text("SINGLE = 'single file'\n")
    return root / "wd", root / "mods"


def test_env_vars_of_the_job_and_the_task(job):
    pid, base = zray.get(env.remote("JOBVAR", "BOTH", "TASKVAR"), timeout=T)
    assert base == {"JOBVAR": "job", "BOTH": "job", "TASKVAR": None}
    task_env = {"env_vars": {"TASKVAR": "task", "BOTH": "task"}}
    pid2, merged = zray.get(env.options(runtime_env=task_env).remote("JOBVAR", "BOTH", "TASKVAR"),
                            timeout=T)
    assert merged == {"JOBVAR": "job", "BOTH": "task", "TASKVAR": "task"}
    # The same worker (one CPU) ran both and the next: the task's env was undone.
    pid3, after = zray.get(env.remote("JOBVAR", "BOTH", "TASKVAR"), timeout=T)
    assert pid == pid2 == pid3
    assert after == base
    assert os.environ.get("JOBVAR") is None   # not the driver's
    # A task's children inherit its env.
    child = nested.options(runtime_env={"env_vars": {"TASKVAR": "t2"}}).remote()
    assert zray.get(child, timeout=T) == {"JOBVAR": "job", "BOTH": "job", "TASKVAR": "t2"}
    assert zray.get(context_env.remote(), timeout=T) == JOB_ENV
    assert zray.get_runtime_context().runtime_env == JOB_ENV


def test_an_actor_keeps_its_env(job):
    a = Holder.options(runtime_env=RuntimeEnv(env_vars={"ACTORVAR": "actor"})).remote()
    assert zray.get(a.env.remote("JOBVAR", "ACTORVAR"), timeout=T) == {
        "JOBVAR": "job", "ACTORVAR": "actor"}
    assert zray.get(a.child.remote(), timeout=T) == {"JOBVAR": "job", "ACTORVAR": "actor"}
    assert zray.get(a.env.remote("ACTORVAR"), timeout=T) == {"ACTORVAR": "actor"}


def test_working_dir_and_py_modules(job):
    wd, mods = _tree(job)
    before_cwd, before_path, _before_modules = zray.get(where.remote(), timeout=T)
    renv = {"working_dir": str(wd), "excludes": ["skip"]}
    data, value, big, sub = zray.get(in_working_dir.options(runtime_env=renv).remote(), timeout=T)
    assert (data, value, big, sub) == ("WD_DATA", "from wd module", False, True)
    # Undone: the directory, sys.path, and what the task imported from the env.
    cwd, path, modules = zray.get(where.remote(), timeout=T)
    assert (cwd, path) == (before_cwd, before_path) and "wdmod" not in modules
    with pytest.raises(zray.exceptions.RayTaskError, match="wdmod"):
        zray.get(in_working_dir.remote(), timeout=T)
    mod_env = {"py_modules": [str(mods / "mypkg"), str(mods / "single.py")]}
    assert zray.get(use_modules.options(runtime_env=mod_env).remote(), timeout=T) == (
        "mypkg here", "single file")
    a = Holder.options(runtime_env={"working_dir": str(wd)}).remote()
    assert zray.get(a.cwd_has.remote("data.txt"), timeout=T) is True
    shown = zray.get(context_env.options(runtime_env=renv).remote(), timeout=T)
    assert shown["env_vars"] == JOB_ENV["env_vars"]
    assert shown["working_dir"].startswith("zray://_zray_pkg_")


def test_the_same_files_ship_once(job):
    wd, _mods = _tree(job / "again")
    one = _runtime_env.zip_path(str(wd), [], False)
    (wd / "data.txt").write_text("WD_DATA")   # rewritten, the same bytes: the same zip
    assert _runtime_env.zip_path(str(wd), [], False) == one
    (wd / "data.txt").write_text("changed")
    assert _runtime_env.zip_path(str(wd), [], False) != one


def test_a_working_dir_too_large(job, monkeypatch):
    wd, _mods = _tree(job / "large")
    small = dataclasses.replace(_runtime_env.CONFIG, runtime_env_max_bytes=500)
    monkeypatch.setattr(_runtime_env, "CONFIG", small)
    with pytest.raises(ValueError, match=r"more than 0 MiB.*excludes"):
        env.options(runtime_env={"working_dir": str(wd)}).remote("X")
    # Left out, the large file does not count.
    ok = env.options(runtime_env={"working_dir": str(wd), "excludes": ["skip/*"]}).remote("X")
    assert zray.get(ok, timeout=T)[1] == {"X": None}


@pytest.mark.parametrize("key", ["pip", "conda", "container", "uv", "image_uri"])
def test_keys_zray_lacks_are_refused(key):
    with pytest.raises(ValueError, match=f"'{key}' is not supported by zray"):
        env.options(runtime_env={key: ["requests"]})
    with pytest.raises(ValueError, match=f"'{key}' is not supported by zray"):
        zray.init(runtime_env={key: ["requests"]})   # (before it starts anything)


def test_bad_runtime_envs_are_refused(tmp_path):
    # (Ray accepts an unknown key silently, and takes local directories per job only.)
    with pytest.raises(ValueError, match="unknown runtime_env key 'foo'"):
        env.options(runtime_env={"foo": 1})
    with pytest.raises(TypeError, match="dict of str to str"):   # as Ray's TypeError
        env.options(runtime_env={"env_vars": {"A": 1}})
    with pytest.raises(ValueError, match="not an existing local directory"):
        Holder.options(runtime_env={"working_dir": str(tmp_path / "nothing")})
    with pytest.raises(ValueError, match="not URIs"):
        env.options(runtime_env={"working_dir": "s3://bucket/wd.zip"})
    with pytest.raises(TypeError, match="must be a dict"):
        env.options(runtime_env=["env_vars"])
    with pytest.raises(ValueError, match=r"not an existing local directory or \.py file"):
        env.options(runtime_env={"py_modules": [str(tmp_path / "missing.py")]})


def test_the_job_field_may_carry_an_env():
    from zray import _protocol as P
    spec = P.task_spec(b"t" * 16, b"o", b"f", b"", 1, {}, 0, False, "f", [b"j", "ns", {"id": "x"}])
    assert P.check_task(spec) is spec
    spec[P.T_JOB] = [b"j", "ns", "not a map"]
    with pytest.raises(P.ProtocolError, match="field job"):
        P.check_task(spec)
