"""A node's actors: each one's placement (pending until its resources are free), its
worker, its mailbox of calls (forwarded in order once it is alive), and its life:
start, ready, kill, release, death and restart. Pure: events in, actions out."""
from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable

from .. import _protocol as P
from ._actions import (
    ACTOR_DIED,
    ACTOR_STATE,
    CANCEL,
    CANCELLED,
    CREATE,
    FAIL,
    FORWARD,
    KILL,
    RELEASE,
    SPAWN,
    SPILLBACK,
)
from ._resources import Resources, actor_demand, actor_holds

# ACTOR_READY states (see _protocol.py)
READY_ALIVE, READY_INIT_FAILED, READY_EXITED = 1, 0, 2


class AState(enum.Enum):
    PENDING = 1      # waiting for resources
    STARTING = 2     # worker started, __init__ not done
    ALIVE = 3
    RESTARTING = 4
    DEAD = 5


class Actor:
    __slots__ = ("spec", "state", "worker", "worker_up", "mailbox", "inflight", "restarts_left",
                 "no_restart", "death", "held", "released", "gpus", "address")

    def __init__(self, spec: list) -> None:
        self.spec = spec
        self.state = AState.PENDING
        self.worker: bytes | None = None
        self.worker_up = False   # its worker said hello (and was sent the creation)
        # Calls wait here until the actor is alive, in the order they came.
        self.mailbox: deque = deque()
        self.inflight: dict[bytes, list] = {}   # forwarded, no result yet (in order)
        restarts = spec[P.A_MAX_RESTARTS]
        self.restarts_left = float("inf") if restarts == -1 else restarts
        self.no_restart = False
        self.death = ""
        self.held: dict = {}
        self.released: bool | str = False
        self.gpus: list = []
        self.address = ""   # where callers send calls directly while it is ALIVE


class Mailboxes:
    """One node's actors.

    `schedule` is the node's whole placement pass (see Tasks.schedule); alone, it
    is place()."""

    def __init__(self, res: Resources, new_worker_id: Callable[[], bytes]) -> None:
        self.res = res
        self._new_worker_id = new_worker_id
        self.schedule: Callable[[], list] = self.place
        self.actors: dict[bytes, Actor] = {}
        self.pending: deque = deque()            # actor ids waiting for resources, in order
        self.by_worker: dict[bytes, bytes] = {}  # worker id -> its actor's id

    # -- creation and placement --------------------------------------------------
    def create(self, spec: list) -> list:
        aid = spec[P.A_ID]
        if aid in self.actors:
            return []
        self.actors[aid] = Actor(spec)
        if not self.res.feasible(actor_demand(spec[P.A_RES])):
            return [(SPILLBACK, [spec])]
        self.pending.append(aid)
        return self.schedule()

    def keep(self, aid: bytes, res: dict) -> list:
        """An actor this node spilled back runs here after all (its strategy chose this
        node): it waits here for `res` (its request without the strategy's markers)."""
        actor = self.actors.get(aid)
        if actor is None or actor.state != AState.PENDING or aid in self.pending:
            return []
        actor.spec[P.A_RES] = res
        self.pending.append(aid)
        return self.schedule()

    def unplaceable(self, aid: bytes, why: str) -> list:
        """An actor spilled back from here can never be placed where its strategy says:
        it is dead, and so are the calls waiting for it."""
        actor = self.actors.get(aid)
        if actor is None or actor.state != AState.PENDING:
            return []
        actor.no_restart = True
        actor.death = why
        return self._died(actor, why)

    def forget(self, aid: bytes) -> list:
        """An actor spilled back from here now lives on another node: drop its record
        (it holds nothing here) and return the calls its mailbox held, in order."""
        actor = self.actors.get(aid)
        if actor is None or actor.state != AState.PENDING or actor.worker is not None:
            return []
        del self.actors[aid]
        calls = list(actor.mailbox)
        actor.mailbox.clear()
        return calls

    def place(self) -> list:
        """Start pending actors, in order, while the first one's resources fit."""
        acts = []
        while self.pending:
            actor = self.actors.get(self.pending[0])
            if actor is None or actor.state != AState.PENDING:
                self.pending.popleft()
                continue
            if not self.res.fits(actor_demand(actor.spec[P.A_RES])):
                break
            self.pending.popleft()
            held = actor_holds(actor.spec[P.A_RES])
            actor.gpus = self.res.take(held)
            actor.held = held
            acts.extend(self._start(actor))
        return acts

    def _start(self, actor: Actor) -> list:
        wid = self._new_worker_id()
        self.by_worker[wid] = actor.spec[P.A_ID]
        actor.worker, actor.worker_up = wid, False
        if actor.state == AState.PENDING:
            actor.state = AState.STARTING
        return [(SPAWN, wid, actor.spec[P.A_ID], actor.gpus)]

    def worker_ready(self, wid: bytes) -> list:
        aid = self.by_worker.get(wid)
        if aid is None:
            return []
        actor = self.actors.get(aid)
        if actor is None or actor.state == AState.DEAD:
            return [(KILL, wid)]
        if actor.worker != wid or actor.worker_up:
            return []
        actor.worker_up = True
        return [(CREATE, wid, actor.spec)]

    def actor_ready(self, wid: bytes, state: int, message: str) -> list:
        """The actor's __init__ ended: alive (message: its direct address), failed, or
        the actor called exit_actor() in it."""
        actor = self.actors.get(self.by_worker.get(wid, b""))
        if actor is None or actor.worker != wid:
            return []
        if state == READY_ALIVE:
            return self._alive(actor, message)
        actor.no_restart = True
        actor.death = message or ("the actor called exit_actor()" if state == READY_EXITED
                                  else "its __init__ raised")
        return [] if state == READY_EXITED else [(KILL, wid)]

    def _alive(self, actor: Actor, address: str) -> list:
        actor.state = AState.ALIVE
        actor.address = address
        acts: list = [(ACTOR_STATE, actor.spec[P.A_ID], "ALIVE", {"address": address})]
        if actor.mailbox:
            calls = list(actor.mailbox)
            actor.mailbox.clear()
            for c in calls:
                actor.inflight[c[P.T_ID]] = c
            acts.append((FORWARD, actor.worker, calls))
        if actor.released is True:
            acts.append((RELEASE, actor.worker))
        return acts

    # -- calls -------------------------------------------------------------------
    def call(self, spec: list) -> list:
        actor = self.actors.get(spec[P.T_ACTOR])
        if actor is None or actor.state == AState.DEAD:
            why = actor.death if actor is not None else "it is not known on this node"
            return [(FAIL, spec, ACTOR_DIED, why)]
        if actor.state == AState.ALIVE:
            actor.inflight[spec[P.T_ID]] = spec
            return [(FORWARD, actor.worker, [spec])]
        actor.mailbox.append(spec)
        return []

    def call_done(self, wid: bytes, task_id: bytes) -> None:
        actor = self.actors.get(self.by_worker.get(wid, b""))
        if actor is not None:
            actor.inflight.pop(task_id, None)

    # -- the end -----------------------------------------------------------------
    def cancel(self, task_id: bytes) -> list:
        """Cancel a call held here: one still in its actor's mailbox fails now; one
        forwarded to the actor is asked to stop (a running sync call runs on, as in
        Ray). [] if no actor here holds it."""
        for actor in self.actors.values():
            for spec in actor.mailbox:
                if spec[P.T_ID] == task_id:
                    actor.mailbox.remove(spec)
                    return [(FAIL, spec, CANCELLED, "")]
            if task_id in actor.inflight and actor.worker is not None:
                return [(CANCEL, actor.worker, task_id)]
        return []

    def kill(self, aid: bytes, no_restart: bool, why: str = "it was killed with zray.kill()") -> list:
        actor = self.actors.get(aid)
        if actor is None or actor.state == AState.DEAD:
            return []
        if no_restart:
            actor.no_restart = True
            actor.death = why
        if actor.worker is not None and actor.worker in self.by_worker:
            return [(KILL, actor.worker)]
        return self._died(actor, actor.death or "it was killed")

    def release(self, aid: bytes, sent_direct: bool = False) -> list:
        """The last handle is gone: end the actor once its queued calls are done.
        With sent_direct the owner told the actor itself (behind its own calls)."""
        actor = self.actors.get(aid)
        if actor is None or actor.state == AState.DEAD or actor.spec[P.A_DETACHED]:
            return []
        actor.released = "direct" if sent_direct else True
        actor.no_restart = True
        actor.death = "all handles to it went out of scope"
        if sent_direct and actor.state != AState.PENDING:
            return []
        if actor.state == AState.ALIVE:
            return [(RELEASE, actor.worker)]
        if actor.state == AState.PENDING:
            return self._died(actor, actor.death)
        return []

    def worker_died(self, wid: bytes) -> list:
        aid = self.by_worker.pop(wid, None)
        actor = self.actors.get(aid) if aid is not None else None
        if actor is None or actor.worker != wid:
            return []
        return self._died(actor, "its worker process died")

    def _died(self, actor: Actor, why: str) -> list:
        if actor.worker is not None:
            self.by_worker.pop(actor.worker, None)
        actor.worker = None
        inflight = list(actor.inflight.values())
        actor.inflight.clear()
        why = actor.death or why
        if actor.restarts_left > 0 and not actor.no_restart:
            return self._restart(actor, inflight, why)
        actor.state = AState.DEAD
        actor.death = why
        self.res.give(actor.held, actor.gpus)
        actor.held, actor.gpus = {}, []
        acts: list = [(FAIL, c, ACTOR_DIED, why) for c in inflight + list(actor.mailbox)]
        actor.mailbox.clear()
        acts.append((ACTOR_STATE, actor.spec[P.A_ID], "DEAD", {"reason": why}))
        return acts + self.schedule()

    def _restart(self, actor: Actor, inflight: list, why: str) -> list:
        """Start the actor again (it keeps its resources); the calls it was running that
        may run again go back to the front of its mailbox, in their order."""
        actor.restarts_left -= 1
        retry = [c for c in inflight if P.spend_retry(c)]
        for c in reversed(retry):
            actor.mailbox.appendleft(c)
        acts: list = [(FAIL, c, ACTOR_DIED, f"the actor died ({why}) while running this call")
                      for c in inflight if c not in retry]
        acts.append((ACTOR_STATE, actor.spec[P.A_ID], "RESTARTING", {}))
        if actor.state == AState.PENDING:
            # Killed before it was placed (waiting for resources, or spilled back): there
            # is no worker to replace, and none may start before its resources are
            # free; it keeps waiting where it was (a worker started here ran it past them).
            return acts
        actor.state = AState.RESTARTING
        return acts + self._start(actor)
