"""zray's errors: one base class, ZrayError, and Ray's names for every one of them.

`import zray as ray` programs catch `ray.exceptions.RayTaskError` and friends
unchanged: each Ray name below is an alias of (or the same as) zray's own class.
"""
from __future__ import annotations

from typing import Any


class ZrayError(Exception):
    """Base class of every error zray raises on purpose."""


RayError = ZrayError


class RaySystemError(ZrayError):
    """The cluster itself failed (a broker died or answered nonsense). Restart it."""


class RayTaskError(ZrayError):
    """A task or actor method raised; `get` re-raises it on the caller.

    The instance `get` raises is also an instance of the original exception's type,
    so `except ValueError` still works. `cause` (and `__cause__`) is the original
    exception; `traceback_str` holds the remote traceback, which is part of str().
    """

    def __init__(
        self,
        function_name: str = "",
        traceback_str: str = "",
        cause: BaseException | None = None,
        pid: int = 0,
        where: str = "",
    ) -> None:
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.pid = pid
        self.where = where
        super().__init__(self._message())

    def _message(self) -> str:
        where = f", {self.where}" if self.where else ""
        return f"zray::{self.function_name} (pid={self.pid}{where})\n{self.traceback_str.rstrip()}"

    def __str__(self) -> str:
        return self._message()

    def as_instanceof_cause(self) -> RayTaskError:
        """This error as an instance of both RayTaskError and the cause's type."""
        cause_cls = type(self.cause) if self.cause is not None else None
        # (Ray's rule: a cause that RayTaskError already is an instance of, such as a
        # ZrayError or a bare Exception, needs no second class.)
        if cause_cls is None or issubclass(RayTaskError, cause_cls) \
                or isinstance(self.cause, RayTaskError):
            return self
        try:
            cls = _dual_class(cause_cls)
            err = cls.__new__(cls)
            err.args = getattr(self.cause, "args", ())
            err.function_name, err.traceback_str = self.function_name, self.traceback_str
            err.cause, err.pid, err.where = self.cause, self.pid, self.where
            err.__dict__.update(_safe_dict(self.cause))
            err.__cause__ = self.cause
            return err
        except TypeError:  # the cause's type cannot be subclassed (e.g. a final class)
            return self

    def __reduce__(self):
        return (_rebuild_task_error,
                (self.function_name, self.traceback_str, self.cause, self.pid, self.where))


def _safe_dict(obj: Any) -> dict:
    try:
        return {k: v for k, v in vars(obj).items() if k not in ("args",)}
    except TypeError:
        return {}


_DUAL_CLASSES: dict[type, type[RayTaskError]] = {}


def _dual_class(cause_cls: type) -> type[RayTaskError]:
    cls = _DUAL_CLASSES.get(cause_cls)
    if cls is None:
        name = f"RayTaskError({cause_cls.__name__})"
        cls = type(name, (RayTaskError, cause_cls), {
            "__init__": RayTaskError.__init__,
            "__str__": RayTaskError.__str__,
            "__reduce__": RayTaskError.__reduce__,
            "__module__": __name__,
        })
        _DUAL_CLASSES[cause_cls] = cls
    return cls


def _rebuild_task_error(function_name, traceback_str, cause, pid, where="") -> RayTaskError:
    return RayTaskError(function_name, traceback_str, cause, pid, where).as_instanceof_cause()


class UnserializableException(ZrayError):
    """A task raised an exception that could not be rebuilt where get() runs (its class
    pickles but does not unpickle: typically an __init__ whose arguments differ from
    the `args` it passes to Exception.__init__). str() holds the original error's text
    and traceback. Give the class a __reduce__ (or matching args) to get it back whole.
    """


class RayActorError(ZrayError):
    """An actor method could not run because its actor is dead or unreachable.

    Raised by `get` on the result of a call to an actor that died (its process
    exited, it was killed, or its __init__ raised). Restart it or create a new one;
    `max_restarts` and `max_task_retries` make zray do it for you.
    """

    def __init__(self, message: str = "The actor died unexpectedly.", actor_id: str = "") -> None:
        self.actor_id = actor_id
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (str(self), self.actor_id))


class ActorAlreadyExistsError(ZrayError, ValueError):
    """An actor was created with a name (in its namespace) that a live actor has.
    Pick another name, or pass get_if_exists=True to get the existing actor."""


class ActorClassInheritanceException(ZrayError, TypeError):
    """A class was defined with an actor class (a @remote class) as its base. Inherit
    from the plain class instead and make the subclass remote with @remote."""


class ActorDiedError(RayActorError):
    """The actor is dead for good: killed, exited, out of restarts, or its __init__ raised."""


class ActorUnavailableError(RayActorError):
    """The actor is restarting; the call may succeed if tried again."""


class GetTimeoutError(ZrayError, TimeoutError):
    """`get` (or `wait` helpers) did not finish within `timeout`. The work goes on."""


class TaskCancelledError(ZrayError):
    """The task was cancelled with `zray.cancel` before it finished."""

    def __init__(self, task_id: str = "", message: str = "") -> None:
        self.task_id = task_id
        super().__init__(message or f"Task {task_id} was cancelled.")

    def __reduce__(self):
        return (type(self), (self.task_id, str(self)))


class WorkerCrashedError(ZrayError):
    """The worker process running the task died (killed, segfault, os._exit) and
    the task had no retries left (`max_retries`, default 3)."""


class NodeDiedError(ZrayError):
    """The node running the task or holding the object stopped answering."""


class LocalRayletDiedError(NodeDiedError):
    """This process's own node broker died; the process cannot go on. Restart zray."""


class ObjectLostError(ZrayError):
    """The object is gone: freed, or its owner or node died. Re-create it."""

    def __init__(self, object_id: str = "", message: str = "") -> None:
        self.object_id = object_id
        super().__init__(message or f"Object {object_id} is lost.")

    def __reduce__(self):
        return (type(self), (self.object_id, str(self)))


class OwnerDiedError(ObjectLostError):
    """The process that created the object (its owner) died, and the object with it."""


class ObjectReconstructionFailedError(ObjectLostError):
    """The object was lost and re-running the task that made it failed or was not allowed."""


class ObjectStoreFullError(ZrayError):
    """Neither /dev/shm nor the disk of the node's spill directory has room for a value
    (a value that does not fit /dev/shm is spilled or written to disk first). Free refs
    or make room on that disk."""


class OutOfMemoryError(ZrayError):
    """The node ran out of memory and killed the task's worker."""


class RuntimeEnvSetupError(ZrayError):
    """The task's runtime environment could not be set up."""


class PendingCallsLimitExceeded(ZrayError):
    """Too many calls are queued on the actor (`max_pending_calls`)."""


class ObjectFetchTimedOutError(ObjectLostError):
    """Fetching the object from another node took too long."""


class CrossLanguageError(ZrayError):
    """Never raised by zray (Python only); present so Ray programs import unchanged."""


class ActorPlacementGroupRemoved(RayActorError):
    """The placement group the actor was in was removed."""


class TaskPlacementGroupRemoved(ZrayError):
    """The placement group the task was in was removed."""


class TaskUnschedulableError(ZrayError):
    """The task can never run where its scheduling_strategy says (a hard node affinity
    to a node that is dead, unknown or too small)."""


class ActorUnschedulableError(RayActorError):
    """The actor can never be placed where its scheduling_strategy says."""


# Ray 2.60's other names, so that programs that import or catch them run unchanged.
# zray raises none of them today (each docstring says what it stands for in Ray).
class AsyncioActorExit(ZrayError):
    """Ray raises it in an async actor that called exit_actor(); zray ends such an
    actor without it (exit_actor() works the same for every kind of actor)."""


class ActorHandleNotFoundError(ZrayError, ValueError):
    """Ray: kill() of an actor handle this process does not know."""


class ObjectFreedError(ObjectLostError):
    """Ray: the object was freed explicitly (ray._private.internal_api.free)."""


class ReferenceCountingAssertionError(ObjectLostError, AssertionError):
    """Ray: an object was deleted while a reference to it was still alive (a bug)."""


class ObjectRefStreamEndOfStreamError(ZrayError):
    """Ray: a streaming generator has no more refs (zray's generators raise
    StopIteration / StopAsyncIteration, as Ray's public iteration does)."""


class OufOfBandObjectRefSerializationException(ZrayError):
    """Ray: an ObjectRef was pickled out of band while that is disallowed (zray allows
    it: ObjectRef(ref.binary()) works while the owner holds the object)."""


class OutOfDiskError(ZrayError):
    """Ray: the node's disk is full (zray raises ObjectStoreFullError when neither
    /dev/shm nor the spill directory's disk has room)."""


class PlasmaObjectNotAvailable(ZrayError):
    """Ray: an object was not available in the object store in time."""


class AuthenticationError(ZrayError):
    """Ray: a token was missing or wrong (zray's tcp peers without the cluster key are
    refused inside libzmq, before any message)."""


class RpcError(ZrayError):
    """Ray: an error of its RPC layer."""


class UserCodeException(ZrayError):
    """Ray: an exception raised by user code (zray wraps them in RayTaskError)."""


class RayChannelError(RaySystemError):
    """Ray's compiled graphs: a channel failed (zray has no compiled graphs)."""


class RayChannelTimeoutError(RayChannelError, TimeoutError):
    """Ray's compiled graphs: a channel operation timed out."""


class RayCgraphCapacityExceeded(RaySystemError):
    """Ray's compiled graphs: a channel's buffer is full."""


class RayDirectTransportError(RaySystemError):
    """Ray: a direct (GPU) transport transfer failed."""


class StreamingGeneratorReplayInconsistentError(RaySystemError):
    """Ray: a retried streaming generator yielded other items than its first run."""


class ProtocolError(ZrayError):
    """A message did not follow zray's wire protocol (bad frame, version or type).

    Brokers drop such messages and log them; a client seeing it talks to a
    broker of another zray version.
    """


__all__ = [name for name, value in dict(globals()).items()
           if isinstance(value, type) and issubclass(value, BaseException)]
