"""More of Ray's names that programs import: zray.util.get_node_ip_address,
inspect_serializability, register_serializer / deregister_serializer (per process, as
Ray's), zray.job_config.JobConfig in init(), and every exception name of Ray 2.60's
ray.exceptions with Ray's base classes."""
from __future__ import annotations

import io
import threading

import pytest
from helpers import run_driver

import zray
from zray import exceptions as E
from zray.job_config import JobConfig
from zray.util import (
    get_node_ip_address,
    inspect_serializability,
)

T = 30

# dir(ray.exceptions) of Ray 2.60: each exception class and its bases' names.
RAY_EXCEPTIONS = {
    "ActorAlreadyExistsError": ("ValueError", "RayError"), "ActorDiedError": ("RayActorError",),
    "ActorHandleNotFoundError": ("ValueError", "RayError"),
    "ActorPlacementGroupRemoved": ("RayError",), "ActorUnavailableError": ("RayActorError",),
    "ActorUnschedulableError": ("RayError",), "AsyncioActorExit": ("RayError",),
    "AuthenticationError": ("RayError",), "CrossLanguageError": ("RayError",),
    "GetTimeoutError": ("RayError", "TimeoutError"), "LocalRayletDiedError": ("RayError",),
    "NodeDiedError": ("RayError",), "ObjectFetchTimedOutError": ("ObjectLostError",),
    "ObjectFreedError": ("ObjectLostError",), "ObjectLostError": ("RayError",),
    "ObjectReconstructionFailedError": ("ObjectLostError",),
    "ObjectRefStreamEndOfStreamError": ("RayError",), "ObjectStoreFullError": ("RayError",),
    "OufOfBandObjectRefSerializationException": ("RayError",), "OutOfDiskError": ("RayError",),
    "OutOfMemoryError": ("RayError",), "OwnerDiedError": ("ObjectLostError",),
    "PendingCallsLimitExceeded": ("RayError",), "PlasmaObjectNotAvailable": ("RayError",),
    "RayActorError": ("RayError",), "RayCgraphCapacityExceeded": ("RaySystemError",),
    "RayChannelError": ("RaySystemError",), "RayChannelTimeoutError": ("RayChannelError", "TimeoutError"),
    "RayDirectTransportError": ("RaySystemError",), "RayError": ("Exception",),
    "RaySystemError": ("RayError",), "RayTaskError": ("RayError",),
    "ReferenceCountingAssertionError": ("ObjectLostError", "AssertionError"),
    "RpcError": ("RayError",), "RuntimeEnvSetupError": ("RayError",),
    "StreamingGeneratorReplayInconsistentError": ("RaySystemError",),
    "TaskCancelledError": ("RayError",), "TaskPlacementGroupRemoved": ("RayError",),
    "TaskUnschedulableError": ("RayError",), "UnserializableException": ("RayError",),
    "UserCodeException": ("RayError",), "WorkerCrashedError": ("RayError",),
}


def test_every_ray_exception_name_with_its_bases():
    for name, bases in RAY_EXCEPTIONS.items():
        cls = getattr(E, name)
        assert name in E.__all__ and issubclass(cls, E.RayError), name
        for base in bases:   # (zray's may sit lower: ActorUnschedulableError is a RayActorError)
            assert issubclass(cls, getattr(E, base, None) or __builtins__[base]), (name, base)
        assert cls.__doc__, name
    with pytest.raises(TimeoutError):
        raise E.RayChannelTimeoutError("channel")


# -- get_node_ip_address --------------------------------------------------------------

@zray.remote
def ip_here():
    return get_node_ip_address()


def test_node_ip_address_is_the_nodes(shared):
    node_ip = zray.nodes()[0]["NodeManagerAddress"]
    assert get_node_ip_address() == node_ip == zray.get(ip_here.remote(), timeout=T)


def test_node_ip_address_before_init_is_this_machines(shared, tmp_path):
    proc = run_driver(tmp_path, """
        import ipaddress, zray
        from zray.util import get_node_ip_address
        ipaddress.ip_address(get_node_ip_address())   # (the default route's address)
        try:
            get_node_ip_address(6379)
        except TypeError as exc:
            print("host:port" in str(exc))
        print(zray.is_initialized(), get_node_ip_address("127.0.0.1:6379"))
    """)
    assert proc.stdout.split() == ["True", "False", "127.0.0.1"], proc.stdout


# -- inspect_serializability ------------------------------------------------------------

LOCK = threading.Lock()


def closing_over(value):
    def uses():   # (nested: pickled by value, with what it closes over)
        return value
    return uses


class Holder:
    def __init__(self):
        self.fine = 1
        self.lock = threading.Lock()


class Outer:
    def __init__(self):
        self.inner = Holder()


def test_inspect_serializability_finds_the_members_that_fail(shared):
    out = io.StringIO()
    assert inspect_serializability([1, "a"], print_file=out) == (True, set())
    cases = [(LOCK, "lock", ("lock",)), (closing_over(LOCK), "f", ("f", "value")),
             (Holder(), "h", ("h", "lock")), (Outer(), "o", ("o", "inner", "lock")),
             ({"k": [1, LOCK]}, "d", ("d", "['k']", "[1]"))]
    for obj, name, path in cases:
        ok, failures = inspect_serializability(obj, name=name, print_file=out)
        assert not ok and [f.path for f in failures] == [path], (name, failures)
        (failure,) = failures
        assert failure.obj is LOCK or isinstance(failure.obj, type(LOCK))
        assert failure.name == path[-1] and f"path={' -> '.join(path)}" in repr(failure)
    ok, failures = inspect_serializability(Outer(), name="o", depth=1, print_file=out)
    (failure,) = failures
    assert failure.path == ("o", "inner") and isinstance(failure.obj, Holder)
    assert "FAIL serialization" in out.getvalue()
    with pytest.raises(ValueError, match="depth"):
        inspect_serializability(1, depth=-1)


# -- register_serializer ----------------------------------------------------------------

def test_register_serializer_applies_in_the_process_that_registers(shared, tmp_path):
    proc = run_driver(tmp_path, """
        import os, threading, zray
        from zray.util import deregister_serializer, register_serializer

        class Conn:   # does not pickle by itself: it holds a lock
            def __init__(self, url):
                self.url, self.lock = url, threading.Lock()

        def conn_out(c):
            return {"url": c.url}

        def conn_in(d):
            return Conn(d["url"] + "!")

        @zray.remote
        def url_of(c):
            return c.url

        @zray.remote
        def make(register):
            if register:   # (a registration is the process's own: the worker's here)
                register_serializer(Conn, serializer=conn_out, deserializer=conn_in)
            return Conn("w")

        def attempt(fn):
            try:
                return fn()
            except TypeError as exc:
                return "pickle" in str(exc) and "TypeError"

        zray.init(num_cpus=1, include_dashboard=False)
        print(attempt(lambda: zray.get(url_of.remote(Conn("a")), timeout=30)))
        register_serializer(Conn, serializer=conn_out, deserializer=conn_in)
        print(attempt(lambda: zray.get(url_of.remote(Conn("a")), timeout=30)),
              attempt(lambda: zray.get(zray.put(Conn("p")), timeout=30).url),
              attempt(lambda: zray.get(make.remote(False), timeout=30)),
              attempt(lambda: zray.get(make.remote(True), timeout=30).url),
              attempt(lambda: zray.get(url_of.remote(type("Sub", (Conn,), {})("s")), timeout=30)))
        deregister_serializer(Conn)
        deregister_serializer(Conn)   # twice: nothing happens
        print(attempt(lambda: zray.get(url_of.remote(Conn("a")), timeout=30)))
        for args in ((5, conn_out, conn_in), (Conn, 1, conn_in)):
            try:
                register_serializer(args[0], serializer=args[1], deserializer=args[2])
            except TypeError as exc:
                print(str(exc).split(",")[0].replace(" ", "_"))
        zray.shutdown()
    """)
    # Subclasses are not covered (as Ray's: the reducer is looked up by exact type).
    assert proc.stdout.split() == ["TypeError", "a!", "p!", "TypeError", "w!", "TypeError",
                                   "TypeError", "register_serializer_wants_a_class",
                                   "serializer_must_be_callable"], proc.stdout


# -- JobConfig ------------------------------------------------------------------------

def test_job_config_fields_and_checks(shared):
    jc = JobConfig(metadata={"team": "search"}, runtime_env={"env_vars": {"A": "1"}},
                   ray_namespace="ns")
    assert (jc.metadata, jc.runtime_env, jc.ray_namespace, jc.default_actor_lifetime) == \
        ({"team": "search"}, {"env_vars": {"A": "1"}}, "ns", "non_detached")
    jc.set_metadata("owner", "me")
    assert jc.metadata == {"team": "search", "owner": "me"}
    with pytest.raises(ValueError, match="Default actor lifetime"):
        JobConfig(default_actor_lifetime="forever")
    with pytest.raises(TypeError, match="code search path"):
        JobConfig(code_search_path="abc")
    with pytest.raises(TypeError, match="str to str"):
        JobConfig(metadata={"n": 1})
    assert JobConfig.from_json({"metadata": {"a": "b"}}).metadata == {"a": "b"}


def test_init_with_a_job_config(shared, tmp_path):
    proc = run_driver(tmp_path, """
        import os, zray
        from zray.job_config import JobConfig
        from zray.util.state import get_actor, list_jobs
        for bad in ({"a": 1}, JobConfig(code_search_path=["/x"])):
            try:
                zray.init(job_config=bad)
            except (TypeError, ValueError) as exc:
                print(type(exc).__name__)
        jc = JobConfig(runtime_env={"env_vars": {"ZX": "7"}}, ray_namespace="jobs",
                       metadata={"team": "search"}, default_actor_lifetime="detached")
        zray.init(num_cpus=1, include_dashboard=False, job_config=jc)
        @zray.remote
        def env():
            return os.environ.get("ZX")
        @zray.remote
        class A:
            def ping(self):
                return 1
        a = A.remote()
        zray.get(a.ping.remote())
        (job,) = list_jobs()
        print(zray.get(env.remote()), zray.get_runtime_context().namespace,
              get_actor(a._actor_id.hex()).is_detached, job.metadata["team"])
        zray.shutdown()
        zray.init(num_cpus=1, include_dashboard=False, namespace="own",
                  runtime_env={"env_vars": {"ZX": "8"}}, job_config=jc)
        print(zray.get(env.remote()), zray.get_runtime_context().namespace)
        zray.shutdown()
    """)
    assert proc.stdout.split() == ["TypeError", "ValueError", "7", "jobs", "True", "search",
                                   "8", "own"], proc.stdout
