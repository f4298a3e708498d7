"""Every zray wire message: its type number, its fields, and encode/decode.

A message is ZeroMQ multipart: routing frames (added by ROUTER sockets), then one
header frame. The header is msgpack of a flat list [VERSION, TYPE, *fields]:
msgpack, not pickle, so that a broker never unpickles a byte (a malformed or
hostile frame decodes to an error, never to code). User values travel as
opaque pickle-5 blobs inside the fields and are unpickled only by the processes
that own or borrow them.
"""
from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Callable
from typing import Any

import msgpack
import zmq

from ._config import CONFIG
from .exceptions import ProtocolError

VERSION = 1

# -- message types: (number, name, number of fields) ---------------------------
# client (driver or worker) <-> node broker
HELLO = 1          # kind, pid, job_id, info{}                    client -> node
WELCOME = 2        # node_id, info{}                              node -> client
SUBMIT = 3         # [task spec, ...]                             client -> node
FUNC = 4           # func_id, blob                                client -> node
TASKS = 5          # [task spec, ...], {func_id: blob}            node -> worker
RESULTS = 6        # [result, ...]                                worker -> node -> owner
CREATE_ACTOR = 7   # actor spec                                   client -> node
BLOCKED = 8        # is_blocked, [task ids handed back]           worker -> node
FETCH = 9          # object_id, owner, requester                  borrower -> node -> owner
OBJECT = 10        # object_id, requester, status, blob, contained owner -> node -> borrower
BORROW = 11        # owner, [object_id, ...], delta, own          client -> node -> owner
                   # own: a ref of the sender itself (not a hold of a value it
                   # sent): its node releases what is left of it when the sender dies
CANCEL = 12        # task_id, force                               client -> node -> worker
KILL_ACTOR = 13    # actor_id, no_restart                         client -> node
RELEASE_ACTOR = 14  # actor_id, sent_direct                        owner -> node (-> actor)
                    # sent_direct: the owner sent it on to the actor itself, after
                    # its own calls (so the node must not end the actor first)
LOG = 15           # prefix, text, is_stderr, job_id              worker -> node -> drivers
                   # (to the drivers of job_id only, as Ray; b"": to every driver)
WARN = 16          # target, message                              node/head -> owner
HEAD_CALL = 17     # client, req_id, op, args                     client -> node -> head
HEAD_REPLY = 18    # client, req_id, ok, result                   head -> node -> client
SHUTDOWN = 19      # reason                                       anyone -> broker / worker
ACTOR_READY = 20   # actor_id, state, blob                        worker -> node
                   # (state 1: blob is the actor's direct address; else its error)
LOOKUP = 21        # actor_id                                     client -> node
ACTOR_ADDR = 22    # actor_id, state, address, error_blob         node -> client
                   # where an actor takes calls directly, and each later change:
                   # state "ALIVE" (address), "RESTARTING", or "DEAD" (error_blob)
LEASE = 23         # lease_key, resources{}                       client -> node
LEASED = 24        # lease_key, worker_id, address                node -> client
                   # a task worker the client may send tasks of that shape to
                   # directly, one at a time (address "": none free now)
UNLEASE = 25       # worker_id, kill                              client -> node
LEASE_LOST = 26    # worker_id                                    node -> client
STORE = 27         # made [[name, size]], freed [name], used [name] client -> node
                   # (made [name, size, 1]: written straight to the spill directory)
STATS = 28         # req_id, rows (None in the request)           node <-> client
                   # rows: the objects a process owns or borrows (zray memory)
                   # state: 1 alive, 0 __init__ failed, 2 exit_actor() called
# node broker <-> head broker
NODE_HELLO = 30    # node_id, address, resources{}, info{}        node -> head
HEARTBEAT = 31     # node_id, available{}, load                   node -> head
SPILLBACK = 32     # [spec, ...], {func_id: blob}                 node -> head (work it cannot run)
PLACE = 33         # [spec, ...], {func_id: blob}                 head -> node
                   # (the functions and classes they need go along: the node that runs
                   # them may never have seen them)
ACTOR_EVENT = 34   # actor_id, state, info{}                      node -> head
NODES = 35         # [[node_id, public address, alive, store], ...] head -> node (each change)
                   # store: the prefix of the names of the segments the node makes
PLACED = 36        # actor_id, node_id                            head -> node that spilled it
RELAY = 37         # client, header                               node -> node
                   # a client's message its node passed on to the node that handles it
                   # (the node where the actor it names lives), handled there as if the
                   # client had sent it itself; replies are routed back by identity
CHUNK_REQ = 38     # name, offset, length                         node -> node holding it
CHUNK = 39         # name, offset, size, error  (+ the bytes, in frames)  node -> node that asked
DROP = 40          # name                                         node -> node
                   # a stored value between nodes (brokers/_transfer): a node pulls a
                   # segment another node made, chunk by chunk, into its own /dev/shm;
                   # DROP: the copy there was freed, so the copies elsewhere go too
                   # (a CHUNK's bytes: frames of transfer_frame_bytes, _transfer.MAX_FRAMES at most)
UNPLACEABLE = 41   # spec, reason, kind                           head -> node that spilled it
                   # it fails: no node can run it where its scheduling_strategy says
                   # (kind "unschedulable"), or its node died, no retries left ("node_died")
RESERVE = 42       # pg_id, [[index, bundle{}], ...]               head -> node
RESERVED = 43      # pg_id, ok                                    node -> head
UNRESERVE = 44     # pg_id                                        head -> node
                   # a placement group's bundles: a node sets their resources aside
                   # (renamed, _strategies.bundle_resources) if they fit now, or says no
NODE_BYE = 45      # node_id                                      node -> head
                   # the node is stopping: dead now, not after its missed heartbeats
JOB_END = 46       # job_id                                       driver -> node -> nodes
                   # the driver stops (or its node saw its process end): its job's
                   # non-detached actors and queued tasks end on every node

_ARITY = {
    HELLO: 4, WELCOME: 2, SUBMIT: 1, FUNC: 2, TASKS: 2, RESULTS: 1, CREATE_ACTOR: 1,
    BLOCKED: 2, FETCH: 3, OBJECT: 5, BORROW: 4, CANCEL: 2, KILL_ACTOR: 2,
    RELEASE_ACTOR: 2, LOG: 4, WARN: 2, HEAD_CALL: 4, HEAD_REPLY: 4, SHUTDOWN: 1,
    ACTOR_READY: 3, LOOKUP: 1, ACTOR_ADDR: 4, LEASE: 2, LEASED: 3, UNLEASE: 2, LEASE_LOST: 1,
    STORE: 3, STATS: 2, NODE_HELLO: 4, HEARTBEAT: 3, SPILLBACK: 2, PLACE: 2, ACTOR_EVENT: 3,
    NODES: 1, PLACED: 2, RELAY: 2, CHUNK_REQ: 3, CHUNK: 4, DROP: 1, UNPLACEABLE: 3,
    RESERVE: 2, RESERVED: 2, UNRESERVE: 1, NODE_BYE: 1,
    JOB_END: 1,
}
# what the cluster is doing (the dashboard, zray.timeline): types 60-69
TASK_EVENTS = 60   # rows, info{}                                 worker -> node -> head
                   # worker -> node: pack_rows([[task_id, name, actor_id, state, start, end,
                   # error], ...]) and {pid, actor_id, pending, rows, counts}; node -> head:
                   # [[info, packed rows], ...] (as the workers sent them: nobody on the way
                   # unpacks a row) and the node's {store, queued, pending}. ~1/s each
_ARITY[TASK_EVENTS] = 2
# reliability: types 50-59
FUNC_FREE = 50     # [func_id, ...]                               client -> node
                   # the client no longer needs these functions (registered with FUNC):
                   # the node drops a blob once no client that registered it needs it
_ARITY[FUNC_FREE] = 1
# generators (num_returns="streaming" / "dynamic"): types 47-49
ITEMS = 47         # [item row, ...]                              worker -> node -> owner
                   # what a generator task yielded so far (ITEM_* below), on the path
                   # its result takes (so the result never overtakes an item)
GEN_ACK = 48       # producer, task_id, consumed                  owner -> node -> worker
                   # the caller has taken `consumed` items (-1: it dropped the
                   # generator): a task paused by _generator_backpressure_num_objects
                   # goes on
_ARITY[ITEMS] = 1
_ARITY[GEN_ACK] = 3
# the object store under pressure: types 80-89
ROOM = 80          # req_id, size                                 client -> node
ROOM_MADE = 81     # req_id                                       node -> client
                   # a writer finds /dev/shm too full for `size` bytes: the node spills
                   # older objects (on its spill thread), then answers; the writer then
                   # writes into /dev/shm if it has room, else into the spill directory
_ARITY[ROOM] = 2
_ARITY[ROOM_MADE] = 1
# Ray's semantics kept where they differed: types 94-99
OWNER_GONE = 94    # owner                                        node -> nodes (in RELAY)
                   # the process `owner` (a client identity) died: the non-detached
                   # actors it created die with it on every node (as in Ray)
_ARITY[OWNER_GONE] = 1
NAMES = {number: name for name, number in globals().items()
         if isinstance(number, int) and number in _ARITY and name.isupper()}

# -- ids: short random bytes plus counters -----------------------------------------
# A task id is 16 bytes: 8 random bytes per process, then a counter. An object id is
# the task id of the task that returns it plus a 4-byte return index.
_pack_q = struct.Struct(">Q").pack
_pack_i = struct.Struct(">I").pack


class IdSource:
    """Makes fresh task ids for one process (thread-safe: itertools.count is atomic)."""

    def __init__(self) -> None:
        self.prefix = os.urandom(8)
        self._count = itertools.count(1)

    def task_id(self) -> bytes:
        return self.prefix + _pack_q(next(self._count))


# A client's socket identity: its kind (b"D" driver, b"W" worker), the first NODE_TAG
# bytes of its node's id, then its process's random id prefix. Any node broker can
# tell from an identity which node the client is attached to, and route to it.
NODE_TAG = 6


def client_ident(kind: bytes, node_id: bytes, prefix: bytes) -> bytes:
    return kind + node_id[:NODE_TAG] + prefix


def node_tag(ident: bytes) -> bytes:
    """The node tag in a client identity (see client_ident)."""
    return ident[1:1 + NODE_TAG]


def pack_rows(rows: list) -> bytes:
    """Task event rows as one msgpack blob (TASK_EVENTS carries them packed)."""
    return _packb(rows)


def unpack_rows(blob: Any) -> list:
    """The rows of a pack_rows() blob; ProtocolError if it is not one."""
    try:
        rows = msgpack.unpackb(blob, raw=False, strict_map_key=False, use_list=True)
    except Exception as exc:   # msgpack raises several unrelated types on garbage
        raise ProtocolError(f"undecodable task event rows: {exc}") from None
    if type(rows) is not list:
        raise ProtocolError("task event rows are not a list")
    return rows


def object_id(task_id: bytes, index: int) -> bytes:
    """The id of return value `index` (0-based) of task `task_id`."""
    return task_id + _pack_i(index)




# -- task spec: a flat list, indexed by these constants (cheap to build and pack) --
# T_ASSIGNED is filled by the node broker at dispatch: {"GPU": [ids], ...}.
# T_JOB is [job_id, namespace] of the driver the task descends from, or [job_id,
# namespace, env]: env the task's runtime_env (a map only workers read: _runtime_env.py).
T_ID, T_OWNER, T_FUNC, T_ARGS, T_SLOTS, T_NRET, T_RES, T_RETRIES, T_RETRY_EXC, T_NAME, \
    T_ACTOR, T_METHOD, T_ASSIGNED, T_JOB = range(14)
TASK_FIELDS = 14

# -- actor spec -----------------------------------------------------------------
(A_ID, A_OWNER, A_CLASS, A_ARGS, A_SLOTS, A_RES, A_MAX_RESTARTS, A_MAX_TASK_RETRIES,
 A_MAX_CONCURRENCY, A_NAME, A_NAMESPACE, A_DETACHED, A_ASYNC, A_CLASS_NAME, A_GET_IF_EXISTS,
 A_JOB) = range(16)
ACTOR_FIELDS = 16

# -- result: [task_id, owner, status, payload, contained] ------------------------
# status OK: payload is a list of return blobs; ERROR: payload is one error blob
# (the error of every return). contained: [[object_id, owner], ...] refs held by it.
R_TASK, R_OWNER, R_STATUS, R_PAYLOAD, R_CONTAINED = range(5)
OK, ERROR = 0, 1

# -- generators: T_NRET < 0. STREAMING: items reach the caller as they are yielded;
# DYNAMIC - n: streaming, the task pausing while n items are not taken yet
# (backpressure); DYNAMIC: the caller gets them all at the end, in one return.
STREAMING, DYNAMIC = -1, -2

# -- item: [task_id, owner, index, blob, contained, producer, is_error] -------------
# One value a generator yielded (index from 0), or (is_error) the error it raised
# there; producer: the identity of the process that runs it (GEN_ACK goes there).
# ITEM_BLOB is R_PAYLOAD's place: code that looks for stored values in a row finds it.
ITEM_TASK, ITEM_OWNER, ITEM_INDEX, ITEM_BLOB, ITEM_CONTAINED, ITEM_PRODUCER, ITEM_ERROR = range(7)


def stream_nret(mode: str, backpressure: int) -> int:
    """T_NRET of a generator task: mode "streaming" or "dynamic"; backpressure > 0:
    at most that many items not yet taken by the caller."""
    if mode == "dynamic":
        return DYNAMIC
    return STREAMING if backpressure <= 0 else DYNAMIC - backpressure


def backpressure_of(nret: int) -> int:
    """The backpressure of a generator task's T_NRET (0: none)."""
    return DYNAMIC - nret if nret < DYNAMIC else 0


_packb = msgpack.Packer(use_bin_type=True).pack


def encode(mtype: int, *fields: Any) -> bytes:
    """The header frame of a message of type `mtype` with `fields`."""
    return _packb([VERSION, mtype, *fields])


def decode(frame: bytes | memoryview) -> tuple[int, list]:
    """(type, fields) of a header frame; ProtocolError if it is not a valid one."""
    try:
        msg = msgpack.unpackb(frame, raw=False, strict_map_key=False, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ProtocolError(f"undecodable header frame ({len(frame)} bytes): {exc}") from None
    if not isinstance(msg, list) or len(msg) < 2:
        raise ProtocolError("header frame is not a [version, type, ...] list")
    version, mtype = msg[0], msg[1]
    if version != VERSION:
        raise ProtocolError(f"protocol version {version!r}, expected {VERSION}")
    arity = _ARITY.get(mtype) if isinstance(mtype, int) else None
    if arity is None:
        raise ProtocolError(f"unknown message type {mtype!r}")
    if len(msg) - 2 != arity:
        raise ProtocolError(f"{NAMES[mtype]} carries {len(msg) - 2} fields, expected {arity}")
    return mtype, msg[2:]


def check_task(spec: Any) -> list:
    """`spec` if it has the shape of a task spec, else ProtocolError naming the first
    field at fault.

    Every field a broker or worker acts on is checked on arrival: an unhashable
    function id leaked a worker's lease for good, a retry count that is not an int
    crashed the worker and then the node (on its death), negative resources inflated
    the node's free resources, a retry_exceptions of the wrong type crash-looped the
    workers (about 7,000 forks in 70 s). (~0.3 us a task; the fault is named only when
    there is one.)
    """
    if (type(spec) is not list or len(spec) != TASK_FIELDS or type(spec[T_ID]) is not bytes
            or type(spec[T_OWNER]) is not bytes or type(spec[T_FUNC]) is not bytes
            or (type(spec[T_ARGS]) is not bytes and type(spec[T_ARGS]) is not list)
            or (spec[T_SLOTS] is not None and type(spec[T_SLOTS]) is not list)
            or type(spec[T_NRET]) is not int
            or type(spec[T_RETRIES]) is not int or spec[T_RETRIES] < -1
            or (spec[T_RETRY_EXC] is not False and spec[T_RETRY_EXC] is not True
                and type(spec[T_RETRY_EXC]) is not bytes)
            or type(spec[T_NAME]) is not str
            or (spec[T_METHOD] is not None if spec[T_ACTOR] is None
                else type(spec[T_ACTOR]) is not bytes or type(spec[T_METHOD]) is not str)
            or (spec[T_ASSIGNED] is not None and type(spec[T_ASSIGNED]) is not dict)
            or (spec[T_JOB] is not None and not _job_ok(spec[T_JOB]))
            or not resources_ok(spec[T_RES])):
        why = _fault(spec, TASK_FIELDS, _TASK_CHECKS) or (
            "fields actor_id and method disagree (an actor call names both, a task neither)")
        raise ProtocolError(f"malformed task spec: {why}")
    return spec


def _job_ok(job: Any) -> bool:
    return (type(job) is list and (len(job) == 2 or (len(job) == 3 and type(job[2]) is dict))
            and type(job[0]) is bytes and type(job[1]) is str)


def _maybe(kind: type) -> Callable[[Any], bool]:
    return lambda v: v is None or type(v) is kind


def _fault(spec: Any, n: int, checks: tuple) -> str | None:
    """Which field of a spec is wrong (None: each one is right by itself)."""
    if type(spec) is not list or len(spec) != n:
        return f"not a list of {n} fields"
    for index, name, ok, want in checks:
        if not ok(spec[index]):
            return f"field {name} is {_short(spec[index])}, expected {want}"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


_TASK_CHECKS = (
    (T_ID, "task_id", lambda v: type(v) is bytes, "bytes"),
    (T_OWNER, "owner", lambda v: type(v) is bytes, "bytes"),
    (T_FUNC, "function_id", lambda v: type(v) is bytes, "bytes"),
    (T_ARGS, "args", lambda v: type(v) is bytes or type(v) is list, "bytes or a stored object"),
    (T_SLOTS, "slots", _maybe(list), "None or a list"),
    (T_NRET, "num_returns", lambda v: type(v) is int, "an int (< 0: a generator, see STREAMING)"),
    (T_RES, "resources", lambda v: resources_ok(v), "a map of names to amounts >= 0"),
    (T_RETRIES, "max_retries", lambda v: type(v) is int and v >= -1, "an int >= -1"),
    (T_RETRY_EXC, "retry_exceptions", lambda v: v is True or v is False or type(v) is bytes,
     "a bool or pickled exception types"),
    (T_NAME, "name", lambda v: type(v) is str, "a str"),
    (T_ACTOR, "actor_id", _maybe(bytes), "None or bytes"),
    (T_METHOD, "method", _maybe(str), "None or a str"),
    (T_ASSIGNED, "assigned", _maybe(dict), "None (the node fills it)"),
    (T_JOB, "job", lambda v: v is None or _job_ok(v), "None or [job_id bytes, namespace str(, env map)]"),
)


def resources_ok(res: Any) -> bool:
    """True if `res` is a resource request: a map of names to amounts >= 0."""
    if type(res) is not dict:
        return False
    for k, v in res.items():
        if type(k) is not str or (type(v) is not float and type(v) is not int) or not v >= 0:
            return False
    return True


def check_actor(spec: Any) -> list:
    """`spec` if it has the shape of an actor spec, else ProtocolError naming the first
    field at fault. (A restart count that is not an int crashed the node when the actor
    died; constructor arguments in a stored object were refused as malformed.)"""
    fault = _fault(spec, ACTOR_FIELDS, _ACTOR_CHECKS)
    if fault is not None:
        raise ProtocolError(f"malformed actor spec: {fault}")
    return spec


def _int_at_least(low: int) -> Callable[[Any], bool]:
    return lambda v: type(v) is int and v >= low


_ACTOR_CHECKS = (
    (A_ID, "actor_id", lambda v: type(v) is bytes, "bytes"),
    (A_OWNER, "owner", lambda v: type(v) is bytes, "bytes"),
    (A_CLASS, "class_id", lambda v: type(v) is bytes, "bytes"),
    (A_ARGS, "args", lambda v: type(v) is bytes or type(v) is list, "bytes or a stored object"),
    (A_SLOTS, "slots", _maybe(list), "None or a list"),
    (A_RES, "resources", lambda v: resources_ok(v), "a map of names to amounts >= 0"),
    (A_MAX_RESTARTS, "max_restarts", _int_at_least(-1), "an int >= -1"),
    (A_MAX_TASK_RETRIES, "max_task_retries", _int_at_least(-1), "an int >= -1"),
    (A_MAX_CONCURRENCY, "max_concurrency", _int_at_least(1), "an int >= 1"),
    (A_NAME, "name", _maybe(str), "None or a str"),
    (A_NAMESPACE, "namespace", lambda v: type(v) is str, "a str"),
    (A_DETACHED, "detached", lambda v: type(v) is bool, "a bool"),
    (A_ASYNC, "is_async", lambda v: type(v) is bool, "a bool"),
    (A_CLASS_NAME, "class_name", lambda v: type(v) is str, "a str"),
    (A_GET_IF_EXISTS, "get_if_exists", lambda v: type(v) is bool, "a bool"),
    (A_JOB, "job", lambda v: v is None or _job_ok(v), "None or [job_id bytes, namespace str(, env map)]"),
)

# -- constructors: the only places a spec or a result row is put together ------
def task_spec(task_id: bytes, owner: bytes, func_id: bytes, args: bytes | list, nret: int,
              resources: dict, retries: int, retry_exc: Any, name: str, job: list | None,
              actor_id: bytes | None = None, method: str | None = None) -> list:
    """A task (or, with actor_id and method, an actor call). T_SLOTS is filled by the
    owner when top-level ref arguments resolve; T_ASSIGNED on the way to its worker."""
    return [task_id, owner, func_id, args, None, nret, resources, retries, retry_exc, name,
            actor_id, method, None, job]


def actor_spec(actor_id: bytes, owner: bytes, class_id: bytes, args: bytes | list,
               resources: dict, max_restarts: int, max_task_retries: int, max_concurrency: int,
               name: str | None, namespace: str, detached: bool, is_async: bool,
               class_name: str, get_if_exists: bool, job: list | None) -> list:
    """An actor's creation: its class, constructor arguments and lifetime options."""
    return [actor_id, owner, class_id, args, None, resources, max_restarts, max_task_retries,
            max_concurrency, name, namespace, detached, is_async, class_name, get_if_exists, job]


def ok_result(spec: list, blobs: list, contained: list | None) -> list:
    """The result of a task that returned: one blob per return value, and per return
    the [object_id, owner] pairs of the refs inside it (None if no return holds any)."""
    return [spec[T_ID], spec[T_OWNER], OK, blobs, contained]


def error_result(spec: list, blob: bytes) -> list:
    """The result of a task that failed: every one of its returns (at least one, also
    for num_returns=0, whose owner still waits for the task to end) raises `blob`.
    Works on a spec that failed check_task too, as long as it names its task and owner."""
    nret = spec[T_NRET] if type(spec[T_NRET]) is int and spec[T_NRET] > 0 else 1
    return [spec[T_ID], spec[T_OWNER], ERROR, blob, nret]


def error_returns(result: list) -> int:
    """How many returns an error result fails (stored where an OK result keeps its
    contained refs)."""
    n = result[R_CONTAINED]
    return n if type(n) is int and n > 0 else 1


def spend_retry(spec: list) -> bool:
    """Charge one retry to a task or actor call that may run again (its worker or actor
    died, or it raised an exception its retry_exceptions names); False when its budget
    (max_retries / max_task_retries; -1: no limit) is spent. Every process that retries
    a task calls this, so that no task runs more often than its budget allows."""
    n = spec[T_RETRIES]
    if n == 0:
        return False
    if n > 0:
        spec[T_RETRIES] = n - 1
    return True


# -- receiving -----------------------------------------------------------------
def drain(sock: Any, handle: Callable[..., Any], log: Any, *, routed: bool = False,
          frames: int | tuple | None = None, raw: bool = False, limit: int | None = None,
          payload_at: int = 1 << 30) -> None:
    """Receive and handle what is waiting on `sock`, at most `limit` messages (so that one
    busy peer cannot starve the other sockets of a loop). routed: a ROUTER socket, whose
    messages are [identity, header] and go to handle(identity, type, fields); else a DEALER
    (one frame) and handle(type, fields). frames: messages of that many frames, the last
    the header (handle(*other frames, type, fields)); a tuple of counts: any of them;
    raw: the header is not decoded
    (handle(*frames)), for messages only relayed; payload_at: the frames from that index on
    come as zmq.Frame (not copied: large bytes to write on). A malformed message, or one its handler
    fails on, is dropped and logged: no process dies of what a peer sent."""
    frames_wanted = (frames if type(frames) is tuple
                     else (frames or (2 if routed else 1),))
    for _ in range(limit or CONFIG.drain_limit):
        # Asked first, not found out by a failed recv: its zmq.Again costs ~6 us, and
        # a sync round trip ends two drains with one (flags as ints: pyzmq's enums
        # cost a little each time).
        if sock.closed or not sock.getsockopt(_EVENTS) & _POLLIN:
            return   # (closed: a handler gave a lease back)
        try:
            parts = [sock.recv(_NOBLOCK)]
            while sock.getsockopt(_RCVMORE):
                parts.append(sock.recv(_NOBLOCK, copy=len(parts) < payload_at))
        except zmq.Again:
            return
        try:
            if len(parts) not in frames_wanted:
                raise ProtocolError(f"expected {' or '.join(map(str, frames_wanted))} frames, "
                                    f"got {len(parts)}")
            if raw:
                handle(*parts)
                continue
            mtype, fields = decode(parts[-1])
            handle(*parts[:-1], mtype, fields)
        except Exception as exc:  # never die of a message
            log.warning("dropped a bad message", error=repr(exc)[:300])


_EVENTS, _POLLIN, _NOBLOCK, _RCVMORE = (int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK),
                                        int(zmq.RCVMORE))


def expect(mtype: int, allowed: tuple) -> None:
    """ProtocolError unless a message of type `mtype` is one of `allowed` here."""
    if mtype not in allowed:
        raise ProtocolError(f"{NAMES[mtype]} is not expected here")
