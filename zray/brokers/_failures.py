"""The errors a node broker sends owners instead of results: pickled here (pickling
is safe; a broker never unpickles), one function per way a task, call or fetch fails."""
from __future__ import annotations

import pickle

from .. import _protocol as P
from ..exceptions import (
    ActorDiedError,
    NodeDiedError,
    OwnerDiedError,
    RaySystemError,
    TaskCancelledError,
    TaskUnschedulableError,
    WorkerCrashedError,
    ZrayError,
)
from ._actions import ACTOR_DIED, CANCELLED, NODE_DIED, UNSCHEDULABLE, WORKER_START


def failed_result(spec: list, kind: str, why: str, actor_blob: bytes | None) -> list:
    """The error result of a task or call the scheduler FAILed (kind: _actions' error
    kinds). actor_blob: the error a dead actor's calls raise, if its worker said."""
    name = spec[P.T_NAME]
    err: ZrayError
    if kind == CANCELLED:
        err = TaskCancelledError(spec[P.T_ID].hex())
    elif kind == ACTOR_DIED:
        if actor_blob is not None:
            return P.error_result(spec, actor_blob)
        err = ActorDiedError(f"The actor {spec[P.T_ACTOR].hex()} is dead ({why}); "
                             f"the call {name} cannot run.", spec[P.T_ACTOR].hex())
    elif kind == NODE_DIED:
        err = NodeDiedError(f"The task {name} was lost: {why}")
    elif kind == WORKER_START:
        err = WorkerCrashedError(f"The task {name} cannot run: {why}.")
    elif kind == UNSCHEDULABLE:
        err = TaskUnschedulableError(f"The task {name} is not schedulable: {why}")
    else:
        err = WorkerCrashedError(f"The worker running task {name} died unexpectedly ({why}) "
                                 "and it has no retries left (max_retries).")
    return P.error_result(spec, pickle.dumps(err))


def rejected_result(spec, why: str = "") -> list | None:
    """The error result of a malformed task spec, if the spec says which task and
    whose (else None: nobody to tell). why: what is wrong with it (P.check_task's
    message, which names the field)."""
    if (type(spec) is list and len(spec) == P.TASK_FIELDS and type(spec[P.T_ID]) is bytes
            and type(spec[P.T_OWNER]) is bytes):
        err = RaySystemError(f"The node broker dropped task {spec[P.T_NAME]!r}: "
                             f"{why or 'its spec is malformed'} (a bug in zray, or a client "
                             "of another version).")
        return P.error_result(spec, pickle.dumps(err))
    return None


def rejected_actor(spec, why: str) -> list:
    """The ACTOR_ADDR fields that tell the creator of a malformed actor spec that the
    actor is dead and why ([] if the spec names no actor)."""
    aid = spec[P.A_ID] if type(spec) is list and spec else None
    if type(aid) is not bytes:
        return []
    blob = pickle.dumps(ActorDiedError(
        f"The actor {aid.hex()} was never created: the node broker refused its spec: {why} "
        "(a bug in zray, or a client of another version).", aid.hex()))
    return [(aid, "DEAD", "", blob)]


def owner_died_blob(oid: bytes) -> bytes:
    """What a borrower of `oid` gets when its owner died before sending it."""
    return pickle.dumps(OwnerDiedError(
        oid.hex(), f"The object {oid.hex()} is lost: the process that owned it (the "
        "worker that created it with put() or that submitted the task returning it) died."))
