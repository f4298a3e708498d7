"""Bad frames and hostile specs sent straight to the node and head brokers (fixed
lists and Hypothesis' random frames): the brokers must drop them and keep serving."""
from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import time

import msgpack
import pytest
import zmq
from conftest import wait_until
from helpers import TIMEOUT, assert_pool_works, meet, plus_one
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import zray
from zray import _protocol as P
from zray.exceptions import RaySystemError


@contextlib.contextmanager
def raw_dealer(address: str, identity: bytes | None = None):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if identity is not None:
        sock.setsockopt(zmq.ROUTING_ID, identity)
    sock.connect(address)
    try:
        yield sock
    finally:
        sock.close()
        ctx.term()


_seq = itertools.count(1_000_000)


def probe(sock, timeout: float = 10.0) -> dict:
    """A head call over `sock`: answered only if the broker (and, through a node, the
    head) processed everything sent before it on this socket and is still alive."""
    seq = next(_seq)
    sock.send(P.encode(P.HEAD_CALL, b"", seq, "cluster_resources", []))
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0 and sock.poll(int(left * 1000)), "the broker stopped answering"
        try:
            mtype, f = P.decode(sock.recv())
        except Exception:
            continue
        if mtype == P.HEAD_REPLY and f[1] == seq:
            assert f[2] is True, f
            return f[3]


def node_address() -> str:
    return zray._runtime.current().address


def head_address() -> str:
    return f"ipc://{zray._runtime.current().node_info['session_dir']}/head.sock"


def send_all(sock, messages: list) -> None:
    for frames in messages:
        sock.send_multipart(frames)


def spec(**changes) -> list:
    """A well-formed task spec for a function nobody registered, with `changes`."""
    s = [None] * P.TASK_FIELDS
    fields = dict(T_ID=os.urandom(16), T_OWNER=b"nobody", T_FUNC=b"\x02" * 20, T_ARGS=b"", T_NRET=1,
                  T_RES={"CPU": 1.0}, T_RETRIES=0, T_RETRY_EXC=False, T_NAME="spec")
    for k, v in {**fields, **changes}.items():
        s[getattr(P, k)] = v
    return s


def header(*items) -> list[bytes]:
    return [msgpack.packb(list(items), use_bin_type=True)]


def framing_garbage() -> list[list[bytes]]:
    valid = P.encode(P.SUBMIT, [spec()])
    return [
        [b""],
        [b"\x00garbage\xff\xfe"],
        [os.urandom(64)],
        [valid[:len(valid) // 2]],                      # truncated
        [valid[:-1]],
        [valid + b"\x00"],                              # trailing byte
        header(P.VERSION + 1, P.SUBMIT, []),            # wrong version
        header(0, P.HELLO, "driver", 1, b"", {}),
        header(P.VERSION, 99, 1),                       # unknown type
        header(P.VERSION, -5),
        header(P.VERSION, "SUBMIT", []),
        header(P.VERSION, P.SUBMIT),                    # wrong arity
        header(P.VERSION, P.SUBMIT, [], []),
        header(P.VERSION, P.HELLO, "x"),
        header({"version": 1}),
        header(),
        [msgpack.packb(7)],
        [b"a", b"b", b"c"],                             # multi-frame garbage
        [valid, valid],
        [valid, b""],
        [b"", valid],
        [os.urandom(10) for _ in range(5)],
    ]


def test_node_broker_survives_framing_garbage(cluster, tmp_path):
    with raw_dealer(node_address()) as sock:
        send_all(sock, framing_garbage())
        probe(sock)
    assert_pool_works(tmp_path)


def node_field_garbage() -> list[list[bytes]]:
    e = P.encode
    return [
        [e(P.SUBMIT, 5)], [e(P.SUBMIT, [5])], [e(P.SUBMIT, [[1, 2, 3]])], [e(P.SUBMIT, "x")],
        [e(P.SUBMIT, [spec(), 7])],
        [e(P.HELLO, "client", "pid", None, [])],
        [e(P.HELLO, "worker", 1, b"", {"worker_id": [1]})],
        [e(P.HELLO, "worker", 1, b"", {"worker_id": b"not-a-worker"})],
        [e(P.FUNC, 1, 2)], [e(P.FUNC, [1], b"")],
        [e(P.CANCEL, [1], 0)], [e(P.CANCEL, b"no-such-task", True)],
        [e(P.KILL_ACTOR, b"no-such-actor", True)], [e(P.KILL_ACTOR, {}, 0)],
        [e(P.RELEASE_ACTOR, [])],
        [e(P.BORROW, b"nobody", [b"x"], 1, True)], [e(P.BORROW, 5, 5, 5, True)],
        [e(P.FETCH, b"x", b"nobody", b"nobody")], [e(P.FETCH, 1, 2, 3)],
        [e(P.OBJECT, b"x", b"nobody", 0, b"", None)], [e(P.OBJECT, 1, [], 0, 0, 0)],
        [e(P.RESULTS, 5)], [e(P.RESULTS, [[b"t", b"nobody", 0, [], None]])],
        [e(P.RESULTS, [[b"t", [], 0, [], None]])], [e(P.RESULTS, [5])],
        [e(P.BLOCKED, 1, [b"x"])], [e(P.BLOCKED, "yes", 5)],
        [e(P.ACTOR_READY, b"x", 1, None)],
        [e(P.CREATE_ACTOR, [1, 2])], [e(P.CREATE_ACTOR, 5)],
        [e(P.HEAD_CALL, b"", 1, "no_such_op", [])], [e(P.HEAD_CALL, b"", 2, 5, 5)],
        [e(P.HEAD_CALL, b"", 3, "register_actor", [1, 2])],
        [e(P.HEAD_CALL, b"", 4, "get_actor", [[], []])],
        [e(P.SHUTDOWN, "from a stranger")],              # only drivers may stop a node
        [e(P.WELCOME, b"", {})], [e(P.TASKS, [], {})],   # messages a client never sends
        [e(P.NODE_HELLO, b"", "", {}, {})], [e(P.HEARTBEAT, b"", {}, {})],
        [e(P.PLACE, [spec()], {})], [e(P.SPILLBACK, [spec()], {})], [e(P.HEAD_REPLY, b"", 1, True, 1)],
    ]


def test_node_broker_survives_bad_fields(cluster, tmp_path):
    with raw_dealer(node_address()) as sock:
        send_all(sock, node_field_garbage())
        probe(sock)
    assert_pool_works(tmp_path)


# Well-formed frames, hostile task specs: none may crash a worker or the node, leak a
# worker's lease (a stuck worker fails assert_pool_works), or corrupt the accounting.
HOSTILE_SPECS = {
    "retries not an int": spec(T_RETRIES="x", T_RETRY_EXC=True),
    "retries a float": spec(T_RETRIES=1.5, T_RETRY_EXC=True),
    "num_returns not an int": spec(T_NRET="x"),
    "num_returns negative": spec(T_NRET=-3),
    "func id unhashable": spec(T_FUNC=[1, 2]),
    "func id an int": spec(T_FUNC=5),
    "negative resources": spec(T_RES={"CPU": -8.0}),
    "NaN resources": spec(T_RES={"CPU": float("nan")}),
    "string resources": spec(T_RES={"CPU": "1"}),
    "non-string resource name": spec(T_RES={5: 1.0}),
    "actor id not bytes": spec(T_ACTOR="actor"),
    "args not bytes": spec(T_ARGS=[1, 2]),
    "slots garbage": spec(T_SLOTS=[[0]]),
    "name not a string": spec(T_NAME=[1]),
    "assigned garbage": spec(T_ASSIGNED=5),
    "job not a list": spec(T_JOB=5, T_RETRIES=-1),
    "job too short": spec(T_JOB=[b"j"], T_RETRIES=-1),
}


@pytest.mark.parametrize("what", sorted(HOSTILE_SPECS))
def test_node_broker_survives_hostile_task_specs(cluster, tmp_path, what):
    with raw_dealer(node_address()) as sock:
        for _ in range(3):  # more than the pool: a leaked lease per spec would show
            s = list(HOSTILE_SPECS[what])
            s[P.T_ID] = os.urandom(16)
            sock.send(P.encode(P.SUBMIT, [s]))
        probe(sock)
        assert_pool_works(tmp_path)
        probe(sock)
    assert wait_until(lambda: zray.available_resources().get("CPU") == 2), zray.available_resources()


def recv_until(sock, want, timeout: float = 10.0):
    """The fields of the first message on `sock` for which want(type, fields) holds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0 and sock.poll(int(left * 1000)), "no such message came"
        try:
            mtype, f = P.decode(sock.recv())
        except Exception:
            continue
        if want(mtype, f):
            return f


def test_a_malformed_spec_fails_to_its_owner_and_spares_its_batch(cluster):
    """A spec the node cannot take is answered with an error (its owner would wait
    forever otherwise), and the good specs sent with it still run."""
    me = b"Draw-" + os.urandom(4)
    bad = spec(T_OWNER=me, T_RETRIES=None, T_NRET=2)
    good = spec(T_OWNER=me)   # a function nobody registered: the worker says so
    with raw_dealer(node_address(), me) as sock:
        sock.send(P.encode(P.SUBMIT, [bad, good]))
        got = {}
        while len(got) < 2:
            results = recv_until(sock, lambda t, f: t == P.RESULTS)[0]
            got.update({r[P.R_TASK]: r for r in results})
        assert got.keys() == {bad[P.T_ID], good[P.T_ID]}
        r = got[bad[P.T_ID]]
        assert r[P.R_STATUS] == P.ERROR and r[P.R_CONTAINED] == 2   # both returns fail
        err = pickle.loads(r[P.R_PAYLOAD])
        assert isinstance(err, RaySystemError) and "malformed" in str(err)
        assert got[good[P.T_ID]][P.R_STATUS] == P.ERROR   # it ran, and failed on its own
        probe(sock)


def actor_spec(**changes) -> list:
    """A well-formed actor spec of a class nobody registered (its __init__ fails)."""
    s = [None] * P.ACTOR_FIELDS
    fields = dict(A_ID=os.urandom(16), A_OWNER=b"nobody", A_CLASS=b"\x03" * 20, A_ARGS=b"", A_RES={},
                  A_MAX_RESTARTS=0, A_MAX_TASK_RETRIES=0, A_MAX_CONCURRENCY=1, A_NAMESPACE="",
                  A_DETACHED=False, A_ASYNC=False, A_CLASS_NAME="Hostile", A_GET_IF_EXISTS=False)
    for k, v in {**fields, **changes}.items():
        s[getattr(P, k)] = v
    return s


@pytest.mark.parametrize("changes", [
    {},
    {"A_MAX_RESTARTS": "x"},          # compared with 0 when the actor dies
    {"A_MAX_RESTARTS": None},
    {"A_MAX_RESTARTS": 2},
    {"A_MAX_CONCURRENCY": "many"},
    {"A_RES": {"CPU": -1.0}},
    {"A_CLASS": [1]},
    {"A_JOB": 7},
], ids=["well-formed", "restarts-str", "restarts-none", "restarts-2", "concurrency-str",
        "negative-res", "class-unhashable", "job-int"])
def test_node_survives_hostile_actor_specs(cluster, tmp_path, changes):
    """An actor whose class was never registered dies in __init__ (a process is
    started for it); a malformed spec is dropped. Either way the node says it is
    dead when asked, and keeps serving."""
    s = actor_spec(**changes)
    with raw_dealer(node_address()) as sock:
        sock.send(P.encode(P.CREATE_ACTOR, s))
        sock.send(P.encode(P.LOOKUP, s[P.A_ID]))
        recv_until(sock, lambda t, f: t == P.ACTOR_ADDR and f[0] == s[P.A_ID] and f[1] == "DEAD")
        probe(sock)
    assert_pool_works(tmp_path)


# Frames for the Hypothesis tests: raw bytes, random msgpack, and well-formed headers
# of every message type with random fields, biased towards the shapes the handlers
# expect (else nearly all of them stop at the first type check).
_int = st.integers(-(2 ** 63), 2 ** 64 - 1)   # what msgpack can carry
_leaf = (st.none() | st.booleans() | _int | st.floats() | st.text(max_size=10)
         | st.binary(max_size=20))
_value = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=6) | st.binary(max_size=6) | _int,
                                        inner, max_size=4), max_leaves=12)
_id = st.binary(max_size=4) | st.binary(min_size=16, max_size=16) | _int | st.text(max_size=3)
_amounts = st.dictionaries(st.sampled_from(["CPU", "GPU", "memory", "x"]) | st.text(max_size=3) | _int,
                           st.floats() | st.integers(-3, 3) | _leaf, max_size=3)
_small = _leaf | _id | st.lists(_leaf, max_size=2) | st.dictionaries(st.text(max_size=3), _leaf, max_size=2)
_spec_like = st.builds(   # cheap fields: nested ones made most specs overrun and be discarded
    lambda fields, res, ident: [ident, b"nobody"] + fields[2:P.T_RES] + [res] + fields[P.T_RES + 1:],
    st.sampled_from([P.TASK_FIELDS] * 4 + [P.ACTOR_FIELDS] * 2 + [P.T_RES + 1, P.TASK_FIELDS - 1]).flatmap(
        lambda n: st.lists(_small, min_size=n, max_size=n)),
    _amounts, st.binary(min_size=16, max_size=16) | _id)
_FIELDS = {   # per type, what each field is drawn from (the rest: any value)
    P.SUBMIT: [st.lists(_spec_like, min_size=1, max_size=3)],
    P.SPILLBACK: [st.lists(_spec_like, min_size=1, max_size=3), st.just({})],
    P.PLACE: [st.lists(_spec_like, min_size=1, max_size=3), st.just({})],
    P.CREATE_ACTOR: [_spec_like],
    P.NODE_HELLO: [_id, st.text(max_size=8) | _value, _amounts | _value,
                   st.dictionaries(st.text(max_size=4), _value, max_size=2) | _value],
    P.HEARTBEAT: [_id, _amounts | _value, st.dictionaries(st.text(max_size=4), _value) | _value],
    P.ACTOR_EVENT: [_id, st.sampled_from(["ALIVE", "DEAD", "RESTARTING"]) | _value,
                    st.dictionaries(st.sampled_from(["reason"]), _value) | _value],
    P.HEAD_CALL: [_id, _int, st.sampled_from(["register_actor", "get_actor", "list_named_actors",
                                              "nodes", "cluster_resources", "available_resources"])
                  | _value, st.lists(_value | _id, max_size=6) | _value],
    P.CANCEL: [_id, _value], P.KILL_ACTOR: [_id, _value], P.RELEASE_ACTOR: [_id],
    P.BLOCKED: [_value, st.lists(_id, max_size=3) | _value],
}


@st.composite
def _typed_header(draw, types):
    mtype = draw(st.sampled_from(types) | st.sampled_from(sorted(P._ARITY)))
    kinds = _FIELDS.get(mtype, [])
    fields = [draw(kinds[i] if i < len(kinds) else _value) for i in range(P._ARITY[mtype])]
    return [msgpack.packb([P.VERSION, mtype, *fields], use_bin_type=True)]


@st.composite
def _message(draw, types):
    """Raw frames (1 in 5), a random msgpack list (1 in 5), or a typed header."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.lists(st.binary(max_size=100), min_size=1, max_size=3))
    if kind == 1:
        return [msgpack.packb(draw(st.lists(_value, max_size=6)), use_bin_type=True)]
    return draw(_typed_header(types))


def _frames(types):
    return st.lists(_message(types), min_size=1, max_size=3)


# The client messages the node handles (a HELLO as a driver is left out: it would let
# the stranger stop the node with SHUTDOWN, as drivers may), and the head's messages.
_NODE_TYPES = [P.SUBMIT] * 4 + [P.CREATE_ACTOR] * 2 + [
    P.RESULTS, P.BORROW, P.FETCH, P.OBJECT, P.FUNC, P.BLOCKED, P.ACTOR_READY, P.LOOKUP, P.CANCEL,
    P.KILL_ACTOR, P.RELEASE_ACTOR, P.HEAD_CALL, P.SHUTDOWN]
_HEAD_TYPES = [P.NODE_HELLO] * 2 + [P.SPILLBACK] * 2 + [P.HEARTBEAT, P.HEAD_CALL, P.ACTOR_EVENT]

# One cluster takes every example: the brokers must survive the whole stream (so a
# failure may come from an earlier example than the one reported, and shrinking, which
# replays examples against a cluster in another state, is skipped). The @given test
# runs inside a plain test, which checks the cluster once more after the last example.
_fuzz = settings(max_examples=100, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
                 suppress_health_check=[HealthCheck.too_slow], database=None)


def test_node_broker_survives_random_frames(cluster, tmp_path):
    @_fuzz
    @given(messages=_frames(_NODE_TYPES))
    def fuzz(messages):
        with raw_dealer(node_address()) as sock:
            send_all(sock, messages)
            probe(sock)
        # Both workers still free (no lease leaked by a bad spec), the node serving.
        d = tmp_path / f"meet-{time.monotonic_ns()}"
        d.mkdir()
        assert zray.get([meet.remote(str(d), i, 2, 5.0) for i in range(2)], timeout=TIMEOUT) == [True] * 2

    fuzz()
    assert_pool_works(tmp_path)


@pytest.fixture
def quick_head(monkeypatch):
    """A cluster whose head declares a node dead after 0.6 s without heartbeats and
    warns of infeasible tasks after 0.1 s, so that what it does on those timers
    (after the message that set them up was taken) can be checked quickly."""
    monkeypatch.setenv("ZRAY_HEARTBEAT_S", "0.2")
    monkeypatch.setenv("ZRAY_HEARTBEAT_MISSES", "3")
    monkeypatch.setenv("ZRAY_INFEASIBLE_WARNING_S", "0.1")
    zray.init(num_cpus=2)
    yield zray
    zray.shutdown()


def head_field_garbage() -> list[list[bytes]]:
    e = P.encode
    return [
        [e(P.NODE_HELLO, [1], "x", {}, {})], [e(P.NODE_HELLO, b"n", "x", 5, {})],
        [e(P.NODE_HELLO, b"n", "x", {"CPU": "many"}, {})],
        [e(P.HEARTBEAT, b"no-such-node", {}, {})], [e(P.HEARTBEAT, [1], 1, 1)],
        [e(P.SPILLBACK, 5, {})], [e(P.SPILLBACK, [5], {})], [e(P.SPILLBACK, [[1, 2]], {})],
        [e(P.ACTOR_EVENT, [1], "DEAD", {})], [e(P.ACTOR_EVENT, b"a", "DEAD", 5)],
        [e(P.HEAD_CALL, b"", 1, "nope", [])], [e(P.HEAD_CALL, b"", 2, "register_actor", 5)],
        [e(P.HEAD_CALL, b"", 3, "get_actor", [1])], [e(P.HEAD_CALL, b"", 4, "nodes", [])],
        [e(P.SUBMIT, [])], [e(P.SHUTDOWN, "x")], [e(P.PLACE, [], {})], [e(P.RESULTS, [])],
    ]


def test_head_broker_survives_bad_frames(quick_head, tmp_path):
    with raw_dealer(head_address()) as sock:
        send_all(sock, framing_garbage() + head_field_garbage())
        probe(sock)
    assert_pool_works(tmp_path)
    assert len(zray.nodes()) == 1 and zray.cluster_resources()["CPU"] == 2


def _infeasible_probe(name: str) -> list:
    return spec(T_RES={"no-such-resource": 1.0}, T_NAME=name)


def wait_for_warning(sock, name: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0 and sock.poll(int(left * 1000)), \
            f"the head never warned about {name} (did it die on its timer?)"
        try:
            mtype, f = P.decode(sock.recv())
        except Exception:
            continue
        if mtype == P.WARN and name in f[1]:
            return


@pytest.mark.parametrize("bad", [
    [0, 0, 0, 0, 0, 0, {"x": 1}],                                  # too short to name
    spec(T_RES={"x": "1"}),
    spec(T_RES={5: 1}),
    spec(T_RES={"x": 1}, T_NAME=b"\xff"),
    [0] * P.ACTOR_FIELDS,
    [0] * (P.A_RES) + [{"x": 1}] + [0] * (P.ACTOR_FIELDS - P.A_RES - 1),
], ids=["short", "str-amount", "int-name", "bytes-name", "actor-zeros", "actor-short-fields"])
def test_head_survives_bad_spillback_on_its_timer(quick_head, bad):
    """A spilled task no node fits waits at the head, which warns its owner later (on
    a timer, outside the message handler): a malformed one must not kill it then."""
    with raw_dealer(head_address()) as sock:
        sock.send(P.encode(P.SPILLBACK, [bad], {}))
        sock.send(P.encode(P.SPILLBACK, [_infeasible_probe("after-the-bad-one")], {}))
        wait_for_warning(sock, "after-the-bad-one")
        probe(sock)
    assert zray.cluster_resources()["CPU"] == 2


@pytest.mark.parametrize("node_id, resources, info", [
    (12345, {}, {}),
    ("node", {"CPU": 1}, {}),
    (b"fake", {"CPU": 1}, 5),
    (b"fake", {"CPU": 1}, {"pid": [1]}),
], ids=["int-id", "str-id", "int-info", "list-pid"])
def test_head_survives_a_fake_node_dying(quick_head, node_id, resources, info):
    """A node that said hello and then went silent is declared dead on a timer; a
    malformed hello must neither kill the head then nor break nodes()."""
    with raw_dealer(head_address()) as sock:
        sock.send(P.encode(P.NODE_HELLO, node_id, "ipc:///nowhere", resources, info))
        sock.send(P.encode(P.NODE_HELLO, b"silent", "ipc:///nowhere", {"CPU": 1}, {}))
        probe(sock)

        def silent_node_dead():
            nodes = zray.nodes()
            return any(n["NodeID"] == b"silent".hex() and not n["Alive"] for n in nodes)
        assert wait_until(silent_node_dead, 10), "the silent node was never declared dead"
        probe(sock)
    assert zray.get(plus_one.remote(1), timeout=TIMEOUT) == 2
    assert zray.cluster_resources()["CPU"] == 2


def test_head_broker_survives_random_frames(quick_head):
    @_fuzz
    @given(messages=_frames(_HEAD_TYPES))
    def fuzz(messages):
        with raw_dealer(head_address()) as sock:
            send_all(sock, messages)
            probe(sock)
        assert zray.get(plus_one.remote(1), timeout=TIMEOUT) == 2

    fuzz()
    # What the head does on its timers, with what the last examples left it: declare
    # silent nodes dead (this one last), warn about infeasible tasks.
    with raw_dealer(head_address()) as sock:
        sock.send(P.encode(P.NODE_HELLO, b"silent", "ipc:///nowhere", {"CPU": 1}, {}))
        sock.send(P.encode(P.SPILLBACK, [_infeasible_probe("the-last-one")], {}))
        wait_for_warning(sock, "the-last-one")
        assert wait_until(lambda: any(n["NodeID"] == b"silent".hex() and not n["Alive"]
                                      for n in zray.nodes()), 10)
        probe(sock)
    assert zray.get(plus_one.remote(1), timeout=TIMEOUT) == 2
    zray.cluster_resources()
    zray.available_resources()
