"""Every zray wire message: its type number, its fields, and encode/decode.

A message is ZeroMQ multipart: routing frames (added by ROUTER sockets), then one
header frame. The header is msgpack of a flat list [VERSION, TYPE, *fields]:
msgpack, not pickle, so that a broker never unpickles a byte (a malformed or
hostile frame decodes to an error, never to code). User values travel as
opaque pickle-5 blobs inside the fields and are unpickled only by the processes
that own or borrow them.
"""
from __future__ import annotations

from typing import Any

import msgpack

from .exceptions import ProtocolError  # noqa: F401 (re-exported for the socket loops)

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
BORROW = 11        # owner, [object_id, ...], delta               client -> node -> owner
CANCEL = 12        # task_id, force                               client -> node -> worker
KILL_ACTOR = 13    # actor_id, no_restart                         client -> node
RELEASE_ACTOR = 14  # actor_id, sent_direct                        owner -> node (-> actor)
                    # sent_direct: the owner sent it on to the actor itself, after
                    # its own calls (so the node must not end the actor first)
LOG = 15           # prefix, text, is_stderr                      worker -> node -> drivers
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
STATS = 28         # req_id, rows (None in the request)           node <-> client
                   # rows: the objects a process owns or borrows (zray memory)
                   # state: 1 alive, 0 __init__ failed, 2 exit_actor() called
# node broker <-> head broker
NODE_HELLO = 30    # node_id, address, resources{}, info{}        node -> head
HEARTBEAT = 31     # node_id, available{}, load                   node -> head
SPILLBACK = 32     # [task spec, ...]                             node -> head (tasks it cannot run)
PLACE = 33         # [task spec, ...]                             head -> node
ACTOR_EVENT = 34   # actor_id, state, info{}                      node -> head

_ARITY = {
    HELLO: 4, WELCOME: 2, SUBMIT: 1, FUNC: 2, TASKS: 2, RESULTS: 1, CREATE_ACTOR: 1,
    BLOCKED: 2, FETCH: 3, OBJECT: 5, BORROW: 3, CANCEL: 2, KILL_ACTOR: 2,
    RELEASE_ACTOR: 2, LOG: 3, WARN: 2, HEAD_CALL: 4, HEAD_REPLY: 4, SHUTDOWN: 1,
    ACTOR_READY: 3, LOOKUP: 1, ACTOR_ADDR: 4, LEASE: 2, LEASED: 3, UNLEASE: 2, LEASE_LOST: 1, STORE: 3, STATS: 2, NODE_HELLO: 4, HEARTBEAT: 3, SPILLBACK: 1, PLACE: 1, ACTOR_EVENT: 3,
}
NAMES = {number: name for name, number in globals().items()
         if isinstance(number, int) and number in _ARITY and name.isupper()}

# -- task spec: a flat list, indexed by these constants (cheap to build and pack) --
# T_ASSIGNED is filled by the node broker at dispatch: {"GPU": [ids], ...}.
# T_JOB is [job_id, namespace] of the driver the task descends from.
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
    """`spec` if it has the shape of a task spec, else ProtocolError.

    Every field a broker or worker acts on is checked on arrival: an unhashable
    function id leaked a worker's lease for good, a retry count that is not an int
    crashed the worker and then the node (on its death), negative resources inflated
    the node's free resources. (~0.2 us a task.)
    """
    if (type(spec) is not list or len(spec) != TASK_FIELDS or type(spec[T_ID]) is not bytes
            or type(spec[T_OWNER]) is not bytes or type(spec[T_FUNC]) is not bytes
            or (type(spec[T_ARGS]) is not bytes and type(spec[T_ARGS]) is not list)
            or type(spec[T_NRET]) is not int or spec[T_NRET] < 0
            or type(spec[T_RETRIES]) is not int or spec[T_RETRIES] < -1
            or (spec[T_ACTOR] is not None and type(spec[T_ACTOR]) is not bytes)
            or (spec[T_JOB] is not None and (type(spec[T_JOB]) is not list or len(spec[T_JOB]) != 2))
            or not resources_ok(spec[T_RES])):
        raise ProtocolError("malformed task spec")
    return spec


def resources_ok(res: Any) -> bool:
    """True if `res` is a resource request: a map of names to amounts >= 0."""
    if type(res) is not dict:
        return False
    for k, v in res.items():
        if type(k) is not str or (type(v) is not float and type(v) is not int) or not v >= 0:
            return False
    return True


def check_actor(spec: Any) -> list:
    """`spec` if it has the shape of an actor spec, else ProtocolError. (A restart
    count that is not an int crashed the node when the actor died.)"""
    if (type(spec) is not list or len(spec) != ACTOR_FIELDS or type(spec[A_ID]) is not bytes
            or type(spec[A_OWNER]) is not bytes or type(spec[A_CLASS]) is not bytes
            or type(spec[A_ARGS]) is not bytes
            or type(spec[A_MAX_RESTARTS]) is not int or spec[A_MAX_RESTARTS] < -1
            or type(spec[A_MAX_TASK_RETRIES]) is not int or spec[A_MAX_TASK_RETRIES] < -1
            or type(spec[A_MAX_CONCURRENCY]) is not int or spec[A_MAX_CONCURRENCY] < 1
            or (spec[A_JOB] is not None and (type(spec[A_JOB]) is not list or len(spec[A_JOB]) != 2))
            or not resources_ok(spec[A_RES])):
        raise ProtocolError("malformed actor spec")
    return spec
