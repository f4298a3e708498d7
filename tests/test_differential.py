"""Differential tests: small Ray programs that once behaved differently under zray.

Each program is a driver script written against `ray` (run as `import zray as ray`) that
prints what it observed on lines starting with "OUT". The expected lines, written into
each test, are Ray 2.60's behaviour: the zray run must print exactly them. With
ZRAY_RAY_PYTHON set to a Python that has Ray (e.g. /tmp/rayref/bin/python), the same
program also runs under Ray and must print the same lines (so the expectation is
checked against Ray itself); without it those runs are skipped, the zray ones are not.
"""
from __future__ import annotations

import os
import subprocess
import textwrap

from helpers import SCRIPT_TIMEOUT, run_driver

RAY_PYTHON = os.environ.get("ZRAY_RAY_PYTHON")

_PRELUDE = '''
import os
import sys
import time
IMPORT_LINE


def out(*args):
    print("OUT", *args, flush=True)


def outcome(fn):
    """'ok <repr>' if fn() returns, else the name of the exception's type."""
    try:
        return "ok " + repr(fn())
    except BaseException as exc:
        return type(exc).__name__


def until(predicate, timeout=30.0):
    """Poll predicate() (a file another process writes, an actor's death) until it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def error_of(ref):
    try:
        ray.get(ref, timeout=60)
    except BaseException as exc:
        return exc
    return None

'''


def _script(body: str, import_line: str, work_dir: str) -> str:
    return (_PRELUDE.replace("IMPORT_LINE", import_line)
            + textwrap.dedent(body).replace("@DIR@", work_dir))


def _out_lines(stdout: str) -> list[str]:
    return [line[4:] for line in stdout.splitlines() if line.startswith("OUT ")]


def differential(tmp_path, body: str, expected: list[str]) -> None:
    """Run `body` under zray (and Ray, if given): each must print `expected`."""
    zdir = tmp_path / "zray"
    zdir.mkdir()
    proc = run_driver(zdir, _script(body, "import zray as ray", str(zdir)))
    got = _out_lines(proc.stdout)
    assert got == expected, f"zray printed:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    if RAY_PYTHON:
        rdir = tmp_path / "ray"
        rdir.mkdir()
        script = rdir / "driver.py"
        script.write_text(_script(body, "import ray", str(rdir)))
        # Ray's socket paths must stay short: its session goes under /tmp, not the
        # tests' temp root.
        env = {**os.environ, "TMPDIR": "/tmp", "RAY_DEDUP_LOGS": "0"}
        ray_proc = subprocess.run([RAY_PYTHON, str(script)], capture_output=True, text=True,
                                  timeout=SCRIPT_TIMEOUT * 3, cwd=str(rdir), env=env)
        ray_got = _out_lines(ray_proc.stdout)
        assert ray_got == got, (f"Ray printed {ray_got}, zray {got}\n"
                                f"Ray's stderr:\n{ray_proc.stderr[-3000:]}")


# -- (a) the last tasks of a script that exits without get() still run ------------------

def test_fire_and_forget_tasks_run_when_the_script_exits(tmp_path):
    differential(tmp_path, """
        ray.init(num_cpus=2)

        @ray.remote
        def touch(path):
            with open(path, "w") as f:
                f.write("ran")

        for i in range(2):
            touch.remote(os.path.join("@DIR@", f"done-{i}"))
        out("submitted")
        # no get(), no shutdown(): the interpreter exits here (Ray's teardown leaves the
        # tasks about half a second; zray waits up to exit_grace_s for them)
    """, ["submitted"])
    for i in range(2):
        assert (tmp_path / "zray" / f"done-{i}").read_text() == "ran"
        if RAY_PYTHON:
            assert (tmp_path / "ray" / f"done-{i}").read_text() == "ran"


# -- (b) an actor's children die with it ------------------------------------------------

def test_actors_created_by_an_actor_die_with_it(tmp_path):
    differential(tmp_path, """
        ray.init(num_cpus=2)

        @ray.remote(num_cpus=0)
        class Child:
            def ping(self):
                return "pong"

        @ray.remote(num_cpus=0)
        class Parent:
            def __init__(self):
                self.child = Child.remote()

            def children(self):
                return [self.child]

            def bye(self):
                ray.actor.exit_actor()

        @ray.remote
        def make_child():
            return [Child.remote()]

        def dies(child):
            def dead():
                try:
                    ray.get(child.ping.remote(), timeout=30)
                    return False
                except ray.exceptions.RayActorError:
                    return True
            return until(dead)

        killed = Parent.remote()
        child = ray.get(killed.children.remote())[0]
        out("alive:", ray.get(child.ping.remote()))
        ray.kill(killed)
        out("parent killed, child dies:", dies(child))

        exited = Parent.remote()
        child = ray.get(exited.children.remote())[0]
        ray.get(child.ping.remote())
        exited.bye.remote()
        out("parent exited, child dies:", dies(child))

        # A task's worker lives on after the task: the actor it made lives on too.
        made = ray.get(make_child.remote())[0]
        out("made by a task:", ray.get(made.ping.remote()))
        ray.shutdown()
    """, ["alive: pong", "parent killed, child dies: True", "parent exited, child dies: True",
          "made by a task: pong"])


# -- (c) exceptions that do not pickle, or do not unpickle -------------------------------

def test_an_exception_that_does_not_pickle_keeps_its_text(tmp_path):
    differential(tmp_path, """
        import threading
        ray.init(num_cpus=2)

        class Locked(Exception):
            def __init__(self, msg):
                super().__init__(msg)
                self.lock = threading.Lock()

        class TwoArgs(Exception):
            def __init__(self, a, b):   # pickles, but cannot be rebuilt from its args
                super().__init__(a)

        @ray.remote
        def locked():
            raise Locked("boom")

        @ray.remote
        def two_args():
            raise TwoArgs("first", "second")

        e = error_of(locked.remote())
        out(type(e).__name__, isinstance(e, ray.exceptions.RayError), "boom" in str(e))
        out("cause:", isinstance(e.cause, ray.exceptions.RayError),
            "isn't serializable" in str(e.cause), "Locked" in str(e.cause))
        e = error_of(two_args.remote())
        out(type(e).__name__, isinstance(e, ray.exceptions.RayError),
            "TwoArgs: first" in str(e))
        ray.shutdown()
    """, ["RayTaskError True True", "cause: True True True",
          "UnserializableException True True"])


# -- (d) a task whose argument failed ---------------------------------------------------

def test_a_failed_argument_is_reported_by_the_task_that_needed_it(tmp_path):
    differential(tmp_path, """
        ray.init(num_cpus=2)

        @ray.remote
        def bad():
            raise ValueError("upstream")

        @ray.remote
        def down(x):
            return x

        @ray.remote
        def nested(refs):
            return ray.get(refs[0])

        @ray.remote
        class Keeper:
            def __init__(self, x):
                self.x = x

            def get(self, y=None):
                return self.x

        NOTE = "At least one of the input arguments for this task could not be computed"

        def show(label, e):
            out(label, type(e).__name__, type(e.cause).__name__, isinstance(e, ValueError),
                NOTE in str(e))

        show("task:", error_of(down.remote(bad.remote())))
        e = error_of(down.remote(down.remote(bad.remote())))
        show("chain:", e)
        out("chain notes:", str(e).count(NOTE))
        show("actor call:", error_of(Keeper.remote(1).get.remote(bad.remote())))
        e = error_of(nested.remote([bad.remote()]))
        out("nested get:", type(e).__name__, type(e.cause).__name__, NOTE in str(e))
        e = error_of(Keeper.remote(bad.remote()).get.remote())
        out("constructor:", type(e).__name__, NOTE in str(e))

        @ray.remote
        class Doomed:
            def m(self):
                return 1

        doomed = Doomed.remote()
        ray.kill(doomed)
        e = error_of(down.remote(doomed.m.remote()))
        out("dead actor:", type(e).__name__, isinstance(e, ray.exceptions.ActorDiedError))
        ray.shutdown()
    """, ["task: RayTaskError(ValueError) ValueError True True",
          "chain: RayTaskError(ValueError) ValueError True True", "chain notes: 2",
          "actor call: RayTaskError(ValueError) ValueError True True",
          "nested get: RayTaskError(ValueError) ValueError False",
          "constructor: ActorDiedError True",
          "dead actor: RayTaskError(ActorDiedError) True"])


def test_a_remote_traceback_shows_the_users_frames_only(tmp_path):
    differential(tmp_path, """
        ray.init(num_cpus=2)

        @ray.remote
        def fails():
            raise KeyError("k")

        e = error_of(fails.remote())
        out("frames:", "in fails" in str(e), "execute.py" in str(e), "_raylet" in str(e))
        ray.shutdown()
    """, ["frames: True False False"])


# -- (e) the core API's edges -----------------------------------------------------------

def test_empty_and_odd_inputs_of_get_wait_put(tmp_path):
    differential(tmp_path, """
        ray.init(num_cpus=2)

        @ray.remote
        def one():
            return 1

        r = one.remote()
        ray.get(r)
        out("get([])", outcome(lambda: ray.get([])))
        out("wait([])", outcome(lambda: ray.wait([])))
        out("wait([], 0)", outcome(lambda: ray.wait([], num_returns=0)))
        out("wait over", outcome(lambda: ray.wait([r], num_returns=2)))
        out("wait 0", outcome(lambda: ray.wait([r], num_returns=0)))
        out("wait dup", outcome(lambda: ray.wait([r, r])))
        out("wait ref", outcome(lambda: ray.wait(r)))
        out("wait int", outcome(lambda: ray.wait([r, 1])))
        out("wait -1", outcome(lambda: ray.wait([r], timeout=-1)))
        out("get int", outcome(lambda: ray.get(1)))
        out("get None", outcome(lambda: ray.get(None)))
        out("get dict", outcome(lambda: ray.get({"a": r})))
        out("get [int]", outcome(lambda: ray.get([r, 1])))
        out("get -1", outcome(lambda: ray.get(r, timeout=-1)))
        out("put ref", outcome(lambda: ray.put(r)))
        out("put [ref]", outcome(lambda: type(ray.put([r])).__name__))
        out("nret 0", outcome(lambda: one.options(num_returns=0).remote()))
        out("cancel int", outcome(lambda: ray.cancel(1)))
        out("kill int", outcome(lambda: ray.kill(1)))
        ray.shutdown()
    """, ["get([]) ok []", "wait([]) ok ([], [])", "wait([], 0) ok ([], [])",
          "wait over ValueError", "wait 0 ValueError", "wait dup ValueError", "wait ref TypeError",
          "wait int TypeError", "wait -1 ValueError", "get int ValueError", "get None ValueError",
          "get dict ValueError", "get [int] TypeError", "get -1 ok 1", "put ref TypeError",
          "put [ref] ok 'ObjectRef'", "nret 0 ok None", "cancel int TypeError",
          "kill int ValueError"])


def test_invalid_options_raise_rays_error_types(tmp_path):
    differential(tmp_path, """
        ray.init(num_cpus=2)

        def task():
            return 1

        class Actor:
            def m(self):
                return 1

        for opts in [dict(num_cpus=-1), dict(num_cpus="1"), dict(num_gpus=-1), dict(memory=-1),
                     dict(foo=1), dict(num_returns=-1), dict(max_retries="x"),
                     dict(max_retries=-2), dict(max_calls=-1), dict(retry_exceptions="x"),
                     dict(resources={"CPU": 1}), dict(resources=[1]), dict(name=1),
                     dict(runtime_env=1), dict(max_restarts=1), dict(lifetime="detached")]:
            out("task", sorted(opts), outcome(lambda: ray.remote(**opts)(task)))
        for opts in [dict(max_restarts="x"), dict(max_restarts=-2), dict(max_task_retries=-2),
                     dict(max_concurrency="x"), dict(lifetime="bad"), dict(name=""),
                     dict(namespace=1), dict(get_if_exists=True), dict(num_returns=2),
                     dict(max_retries=1)]:
            out("actor", sorted(opts), outcome(lambda: ray.remote(**opts)(Actor).remote()))
        f = ray.remote(task)
        out("options foo", outcome(lambda: f.options(foo=1)))
        out("options -1", outcome(lambda: f.options(num_cpus=-1)))
        out("options positional", outcome(lambda: f.options(1)))
        ray.shutdown()
    """, ["task ['num_cpus'] ValueError", "task ['num_cpus'] TypeError",
          "task ['num_gpus'] ValueError", "task ['memory'] ValueError", "task ['foo'] ValueError",
          "task ['num_returns'] ValueError", "task ['max_retries'] TypeError",
          "task ['max_retries'] ValueError", "task ['max_calls'] ValueError",
          "task ['retry_exceptions'] TypeError", "task ['resources'] ValueError",
          "task ['resources'] TypeError", "task ['name'] TypeError",
          "task ['runtime_env'] TypeError", "task ['max_restarts'] ValueError",
          "task ['lifetime'] ValueError",
          "actor ['max_restarts'] TypeError", "actor ['max_restarts'] ValueError",
          "actor ['max_task_retries'] ValueError", "actor ['max_concurrency'] TypeError",
          "actor ['lifetime'] ValueError", "actor ['name'] ValueError",
          "actor ['namespace'] TypeError", "actor ['get_if_exists'] ValueError",
          "actor ['num_returns'] ValueError", "actor ['max_retries'] ValueError",
          "options foo ValueError", "options -1 ValueError", "options positional TypeError"])


def test_what_remote_accepts_and_direct_calls(tmp_path):
    differential(tmp_path, """
        import functools
        ray.init(num_cpus=2)

        async def coroutine():
            return 1

        def plain(x=1):
            return x

        out("lambda", outcome(lambda: ray.get(ray.remote(lambda x: x + 1).remote(1))))
        out("builtin", outcome(lambda: ray.remote(len)))
        out("partial", outcome(lambda: ray.remote(functools.partial(plain, 2))))
        out("async def", outcome(lambda: ray.remote(coroutine)))
        f = ray.remote(plain)
        out("plain still plain", plain(3))
        try:
            f(1)
        except TypeError as e:
            out("direct call:", "'__main__.plain.remote()'" in str(e))
        out("bad args", outcome(lambda: f.remote(1, 2)))
        ray.shutdown()
    """, ["lambda ok 2", "builtin TypeError", "partial TypeError", "async def ValueError",
          "plain still plain 3", "direct call: True", "bad args TypeError"])


def test_actor_classes_methods_and_inheritance(tmp_path):
    differential(tmp_path, """
        ray.init(num_cpus=2)

        class Base:
            def base(self):
                return "base"

            def over(self):
                return "base-over"

        @ray.remote
        class Derived(Base):
            def over(self):
                return "derived-over"

            def _private(self):
                return "private"

            def __call__(self, x):
                return x * 2

            def __len__(self):
                return 3

        d = Derived.remote()
        out("inherited", ray.get([d.base.remote(), d.over.remote()]))
        out("private", ray.get(d._private.remote()))
        out("dunders", ray.get([d.__call__.remote(2), d.__len__.remote()]))
        out("missing private", outcome(lambda: d._nope))

        def subclass():
            class Sub(Derived):
                pass
            return Sub

        out("subclass", outcome(subclass))
        try:
            subclass()
        except TypeError as e:
            out("is a TypeError", True)

        @ray.remote
        class NoInit:
            def m(self):
                return 1

        out("args to no __init__", outcome(lambda: NoInit.remote(1)))
        named = NoInit.options(name="taken").remote()
        ray.get(named.m.remote())
        e = outcome(lambda: NoInit.options(name="taken").remote())
        out("name taken", e)
        try:
            NoInit.options(name="taken").remote()
        except ValueError:
            out("is a ValueError", True)
        ray.shutdown()
    """, ["inherited ['base', 'derived-over']", "private private", "dunders [4, 3]",
          "missing private AttributeError", "subclass ActorClassInheritanceException",
          "is a TypeError True", "args to no __init__ TypeError",
          "name taken ActorAlreadyExistsError", "is a ValueError True"])


def test_tasks_raising_base_exceptions(tmp_path):
    differential(tmp_path, """
        ray.init(num_cpus=2)

        class Stop(BaseException):
            pass

        @ray.remote(max_retries=0)
        def raise_base():
            raise Stop("b")

        @ray.remote(max_retries=0)
        def interrupted():
            raise KeyboardInterrupt()

        e = error_of(raise_base.remote())
        out(type(e).__name__, isinstance(e, Stop))
        e = error_of(interrupted.remote())
        out(type(e).__name__, isinstance(e, ray.exceptions.TaskCancelledError))
        ray.shutdown()
    """, ["RayTaskError(Stop) True", "RayTaskError(TaskCancelledError) True"])


def test_cancel_reaches_the_children_a_task_waits_on(tmp_path):
    differential(tmp_path, """
        ray.init(num_cpus=2)
        ticks = os.path.join("@DIR@", "ticks")

        @ray.remote
        def child():
            for _ in range(1200):   # a minute of ticks, unless cancelled
                with open(ticks, "a") as f:
                    f.write("x")
                time.sleep(0.05)

        @ray.remote
        def parent():
            return ray.get(child.remote())

        def stopped():
            # It stopped once its file no longer grows (10 ticks a 0.5 s): a thing that
            # does not happen can only be watched for a while.
            deadline, last = time.monotonic() + 10, -1
            while time.monotonic() < deadline:
                size = os.path.getsize(ticks)
                if size == last:
                    return True
                last = size
                time.sleep(0.5)
            return False

        p = parent.remote()
        out("child started:", until(lambda: os.path.exists(ticks)))
        ray.cancel(p)   # recursive=True: its children too
        e = error_of(p)
        out("parent:", isinstance(e, ray.exceptions.TaskCancelledError))
        out("child stopped:", stopped())
        ray.shutdown()
    """, ["child started: True", "parent: True", "child stopped: True"])


# -- generators (issue 10 item 2), the same program on both ---------------------------

def test_generators_behave_as_rays(tmp_path):
    differential(tmp_path, """
        import asyncio
        ray.init(num_cpus=2)

        @ray.remote
        def count(n, fail):
            for i in range(n):   # (Ray 2.60 fails `yield from range(n)` in a task)
                yield i
            if fail:
                raise ValueError("boom")

        gen = count.remote(3, False)
        out(type(gen).__name__, [ray.get(r) for r in gen])
        refs = list(count.remote(2, True))
        out(len(refs), ray.get(refs[:2]), outcome(lambda: ray.get(refs[2])))
        out(outcome(lambda: ray.get(count.remote(1, True).completed())))

        dyn = count.options(num_returns="dynamic").remote(2, False)
        value = ray.get(dyn)
        out(type(dyn).__name__, type(value).__name__, [ray.get(r) for r in value])

        gen = count.remote(1, False)
        ready, _ = ray.wait([gen], timeout=30)
        out(ready == [gen], ray.get(next(gen)), outcome(lambda: next(gen)))
        out(ray.wait([gen], timeout=30)[0] == [gen], gen.is_finished())
        out(ray.get(gen.completed()), ray.get(gen) is gen)

        @ray.remote
        class Actor:
            def items(self, n):
                for i in range(n):
                    yield i

            async def aitems(self, n):
                for i in range(n):
                    await asyncio.sleep(0)
                    yield i * 10

        @ray.remote
        class AsyncActor:
            async def aitems(self, n):
                for i in range(n):
                    yield i * 10

        out(ray.get(list(Actor.remote().items.remote(2))))
        out(ray.get(list(AsyncActor.remote().aitems.remote(2))))

        async def consume():
            return [await r async for r in count.remote(3, False)]
        out(asyncio.run(consume()))

        @ray.remote(num_returns=2)
        def two():
            yield 1
            yield 2
        out(ray.get(two.remote()))
        try:
            ray.remote(num_returns="streaming")(lambda: 1)
        except ValueError:
            out("streaming needs a generator")
    """, ["ObjectRefGenerator [0, 1, 2]", "3 [0, 1] RayTaskError(ValueError)", "ok None",
          "ObjectRef DynamicObjectRefGenerator [0, 1]", "True 0 StopIteration", "True True",
          "None True", "[0, 1]", "[0, 10]", "[0, 1, 2]", "[1, 2]", "streaming needs a generator"])
