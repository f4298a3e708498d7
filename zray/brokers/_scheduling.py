"""The node's decisions, apart from its I/O: LocalScheduler, the one object the node
broker talks to, composes resources, tasks (_tasks) and actors (_mailboxes), all pure
(events in, actions out, times passed in; see _actions), and runs their placement pass."""
from __future__ import annotations

# The action kinds and state enums, importable from here by the node broker and tests.
from ._actions import (  # noqa: F401
    ACTOR_DIED,
    ACTOR_STATE,
    CANCEL,
    CANCELLED,
    CRASHED,
    CREATE,
    DISPATCH,
    FAIL,
    FORWARD,
    KILL,
    RELEASE,
    SPAWN,
    SPILLBACK,
    WORKER_START,
)
from ._mailboxes import Actor, AState, Mailboxes
from ._resources import Resources, shape_of  # noqa: F401
from ._tasks import Tasks, WState  # noqa: F401


class LocalScheduler:
    """One node's resources, task queue, worker pool and actors.

    Worker ids are unique across tasks and actors; an event about a worker goes to
    whichever of the two started it."""

    def __init__(self, resources: dict, pool_size: int, max_workers: int, dispatch_batch: int = 1) -> None:
        self.res = Resources(resources)
        self._next = 0
        self.tasks = Tasks(self.res, self._new_worker_id, pool_size, max_workers, dispatch_batch)
        self.mailboxes = Mailboxes(self.res, self._new_worker_id)
        # One pass for both, after anything frees resources or adds work. Actors go
        # first: they wait in order for resources they hold for their whole life, and
        # tasks queued behind would keep taking them.
        self.tasks.schedule = self.mailboxes.schedule = self._schedule

    def _new_worker_id(self) -> bytes:
        self._next += 1
        return b"w%d" % self._next

    def _schedule(self) -> list:
        acts = self.mailboxes.place() if self.mailboxes.pending else []
        return acts + self.tasks.dispatch()

    # -- workers -----------------------------------------------------------------
    def start_pool(self) -> list:
        return self.tasks.start_pool()

    def worker_ready(self, wid: bytes, now: float) -> list:
        if wid in self.tasks.workers:
            return self.tasks.worker_ready(wid, now)
        return self.mailboxes.worker_ready(wid)

    def worker_died(self, wid: bytes) -> list:
        if wid in self.tasks.workers:
            return self.tasks.worker_died(wid)
        return self.mailboxes.worker_died(wid)

    def has_worker(self, wid: bytes | None) -> bool:
        """True from a worker's SPAWN until its death is reported (never for None: a
        HELLO that names no worker)."""
        return wid in self.tasks.workers or wid in self.mailboxes.by_worker

    def leased_to(self, wid: bytes) -> bytes | None:
        """The client a task worker is leased to, if it is."""
        w = self.tasks.workers.get(wid)
        return w.leased_to if w is not None else None

    def reap_idle(self, now: float, timeout: float) -> list:
        return self.tasks.reap_idle(now, timeout)

    # -- tasks -------------------------------------------------------------------
    def submit(self, specs: list, overflow: bool = True) -> list:
        return self.tasks.submit(specs, overflow)

    def result(self, wid: bytes, task_id: bytes, now: float) -> list:
        """A worker sent the result of a task or an actor call."""
        if self.tasks.running.get(task_id) == wid:
            return self.tasks.task_done(wid, task_id, now)
        self.mailboxes.call_done(wid, task_id)
        return []

    def blocked(self, wid: bytes, is_blocked: bool, returned: list | tuple = ()) -> list:
        return self.tasks.blocked(wid, is_blocked, returned)

    def cancel(self, task_id: bytes, force: bool) -> list:
        """A task here, else a call held by an actor here ([] if neither)."""
        return self.tasks.cancel(task_id, force) or self.mailboxes.cancel(task_id)

    def lease(self, client: bytes, res: dict) -> bytes | None:
        return self.tasks.lease(client, res)

    def unlease(self, wid: bytes, now: float, kill: bool = False) -> list:
        return self.tasks.unlease(wid, now, kill)

    def leases_of(self, client: bytes) -> list[bytes]:
        return self.tasks.leases_of(client)

    # -- actors ------------------------------------------------------------------
    def create_actor(self, spec: list) -> list:
        return self.mailboxes.create(spec)

    def forget_actor(self, aid: bytes) -> list:
        return self.mailboxes.forget(aid)

    def actor(self, aid: bytes) -> Actor | None:
        return self.mailboxes.actors.get(aid)

    def actor_ready(self, wid: bytes, state: int, message: str) -> list:
        return self.mailboxes.actor_ready(wid, state, message)

    def actor_call(self, spec: list) -> list:
        return self.mailboxes.call(spec)

    def kill_actor(self, aid: bytes, no_restart: bool) -> list:
        return self.mailboxes.kill(aid, no_restart)

    def release_actor(self, aid: bytes, sent_direct: bool = False) -> list:
        return self.mailboxes.release(aid, sent_direct)

    # -- introspection -----------------------------------------------------------
    @property
    def avail(self) -> dict:
        return self.res.avail

    def load(self) -> dict:
        return {"queued": self.tasks.queued, "running": len(self.tasks.running),
                "workers": len(self.tasks.workers) + len(self.mailboxes.by_worker),
                "actors": sum(1 for a in self.mailboxes.actors.values() if a.state != AState.DEAD)}
