"""Which lane each outgoing task or actor call takes, decided apart from any socket:
through the node broker, on a worker the node leased to this process, or straight
to an actor's own socket. Pure state: events in, actions out (see ACTIONS).

    actor call -> DIRECT to the actor's address once the node told it (LOOKUP), queued
                  while it resolves or restarts, failed once it is dead
    task       -> LEASE: one at a time on a leased worker of its resource shape, while
                  no other task of that shape is in flight through the node;
                  NODE otherwise (a burst: the node pipelines it over every worker)

Retries after a lost worker or a restarting actor are charged with P.spend_retry.
"""
from __future__ import annotations

import pickle
from collections import deque

from .. import _protocol as P
from ..exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    TaskCancelledError,
    WorkerCrashedError,
)

# ACTIONS (tuples), carried out by the runtime's I/O thread (peers.py):
NODE = "node"      # (NODE, mtype, fields)             a message for the node broker
OPEN = "open"      # (OPEN, peer, address)             connect a socket to a peer
CLOSE = "close"    # (CLOSE, peer)                      close it
SEND = "send"      # (SEND, peer, mtype, fields)        a message on that socket
TASK = "task"      # (TASK, peer, spec, with_function)  a task for a leased worker (its
                   #                                    function's blob goes along once)
FAIL = "fail"      # (FAIL, spec, error blob)           the task fails here, now
ABANDON = "abandon"  # (ABANDON, spec)                   the call on a user thread's own
                     #   socket was taken back (retried or failed here): stop waiting on it
# A peer is ("actor", actor_id) or ("lease", worker_id).

RESOLVING, ALIVE, RESTARTING, DEAD, KILLED = "RESOLVING", "ALIVE", "RESTARTING", "DEAD", "KILLED"
LOST = "LOST"   # (a notice only) the node the actor lived on died


class ActorLane:
    """This process's view of one actor it calls."""
    __slots__ = ("state", "address", "queue", "inflight", "batch", "error", "release", "stale",
                 "sync", "via_node")

    def __init__(self) -> None:
        self.state = RESOLVING
        self.address = ""
        self.queue: deque = deque()            # calls waiting for an address
        self.inflight: dict[bytes, list] = {}  # task_id -> spec: sent, no result yet
        self.batch: list = []                  # calls to send at the next flush
        self.error: bytes | None = None
        self.release = False                   # the last handle is gone: end it after the queue
        self.stale = ""                        # the address of an instance killed from here
        self.sync: list | None = None          # the call a user thread sent on its own socket
        # The actor lives on another node (its address is ""): calls go through the
        # nodes, whose mailbox there keeps them and retries them, not this lane.
        self.via_node = False


class Lease:
    """A worker the node lent this process for tasks of one resource shape."""
    __slots__ = ("key", "wid", "open", "task", "last_used", "refused_at", "funcs", "address",
                 "sync")

    def __init__(self, key: tuple) -> None:
        self.key = key
        self.wid: bytes | None = None     # None while requested or refused
        self.open = False                 # a socket to the worker is connected
        self.task: list | None = None     # the task sent on it, no result yet
        self.last_used = 0.0
        self.refused_at: float | None = None
        self.funcs: set[bytes] = set()    # function ids this worker was sent here
        self.address = ""
        self.sync = False                 # the task is on a user thread's own socket


def shape_key(res: dict) -> tuple:
    return tuple(sorted(res.items()))


class Lanes:
    def __init__(self, linger_s: float) -> None:
        self.linger = linger_s
        self.actors: dict[bytes, ActorLane] = {}
        self.leases: dict[tuple, Lease] = {}
        self.lease_of: dict[bytes, Lease] = {}      # worker_id -> its lease
        self.node_inflight: dict[tuple, int] = {}   # tasks of a shape sent via the node
        self.task_key: dict[bytes, tuple] = {}      # node-path task -> its shape
        self.via_calls: dict[bytes, bytes] = {}     # call sent via the nodes -> its actor

    # -- actor calls -------------------------------------------------------------
    def _actor(self, aid: bytes, acts: list) -> ActorLane:
        a = self.actors.get(aid)
        if a is None:
            a = self.actors[aid] = ActorLane()
            acts.append((NODE, P.LOOKUP, (aid,)))
        return a

    def call(self, spec: list) -> list:
        """One call to send (at the next flush, so that calls batch)."""
        acts: list = []
        a = self._actor(spec[P.T_ACTOR], acts)
        if a.state == ALIVE and a.sync is None:
            a.batch.append(spec)
        elif a.state in (DEAD, KILLED):
            acts.append((FAIL, spec, a.error))
        else:
            a.queue.append(spec)
        return acts

    def flush(self) -> list:
        """SEND the calls batched since the last flush, one message per actor."""
        acts = []
        for aid, a in self.actors.items():
            if a.batch:
                acts.extend(self._send_calls(aid, a, a.batch))
                a.batch = []
        return acts

    def _send_calls(self, aid: bytes, a: ActorLane, specs: list) -> list:
        for spec in specs:
            a.inflight[spec[P.T_ID]] = spec
        if a.via_node:
            # (Kept until their results pass: if the actor's node dies, they are retried
            # or failed here; while it lives, its mailbox retries them.)
            for spec in specs:
                self.via_calls[spec[P.T_ID]] = aid
            return [(NODE, P.SUBMIT, (specs,))]
        return [(SEND, ("actor", aid), P.SUBMIT, (specs,))]

    def actor_address(self, aid: bytes, state: str, address: str, error: bytes | None) -> list:
        """The node says where the actor takes calls (ALIVE), or that it is RESTARTING
        or DEAD (with the error its calls fail with)."""
        a = self.actors.get(aid)
        if a is None:
            a = self.actors[aid] = ActorLane()
        if state == ALIVE:
            return self._alive(aid, a, address)
        if state == RESTARTING:
            return self._restarting(aid, a)
        if state == LOST:
            return self._lost(aid, a, error)
        return self._dead(aid, a, error)

    def _alive(self, aid: bytes, a: ActorLane, address: str) -> list:
        if a.state == KILLED or (a.stale and address == a.stale):
            return []   # news of the instance this process just killed
        acts: list = []
        peer = ("actor", aid)
        if a.state != ALIVE or a.address != address or a.via_node != (not address):
            if a.address:
                acts.append((CLOSE, peer))
            if address:
                acts.append((OPEN, peer, address))
            a.address, a.via_node = address, not address
        a.state = ALIVE
        if a.sync is None:   # else they stay behind the call on a user thread's socket
            acts.extend(self._send_queue(aid, a))
        return acts

    def _send_queue(self, aid: bytes, a: ActorLane) -> list:
        """The calls that waited, then the release if the last handle is gone."""
        acts = []
        if a.queue:
            specs = list(a.queue)
            a.queue.clear()
            acts.extend(self._send_calls(aid, a, specs))
        if a.release and not a.via_node:   # (via a node: the node's release follows the calls)
            acts.append((SEND, ("actor", aid), P.RELEASE_ACTOR, (aid, True)))
        return acts

    def _restarting(self, aid: bytes, a: ActorLane) -> list:
        """Calls in flight on the old instance: retried on the new one, in their order
        ahead of the calls made since, or failed when their budget is spent. (Via the
        nodes, the actor's mailbox retries them itself.)"""
        acts = self._close(aid, a)
        a.state = RESTARTING
        if a.via_node:
            a.queue.extendleft(reversed(a.batch))
            a.batch = []
            return acts
        retry = []
        for spec in self._inflight(a, acts):
            if P.spend_retry(spec):
                retry.append(spec)
            else:
                acts.append((FAIL, spec, pickle.dumps(ActorUnavailableError(
                    f"The actor {aid.hex()} died while running {spec[P.T_NAME]} and is "
                    "restarting; the call was not retried (max_task_retries=0).", aid.hex()))))
        a.inflight.clear()
        a.queue.extendleft(reversed(a.batch))
        a.batch = []
        a.queue.extendleft(reversed(retry))
        return acts

    def _lost(self, aid: bytes, a: ActorLane, error: bytes | None) -> list:
        """The node the actor lived on died (LOST, from this process's node): the calls
        in flight there are retried as far as their budget goes (else they fail with
        `error`), and the actor is looked up again: the head restarts it elsewhere if
        it may restart, or it is dead."""
        acts: list = []
        retry = []
        for spec in self._inflight(a, acts):
            self.via_calls.pop(spec[P.T_ID], None)
            if P.spend_retry(spec):
                retry.append(spec)
            else:
                acts.append((FAIL, spec, error))
        a.inflight.clear()
        a.queue.extendleft(reversed(a.batch))
        a.batch = []
        a.queue.extendleft(reversed(retry))
        a.state, a.via_node = RESOLVING, False
        acts.append((NODE, P.LOOKUP, (aid,)))
        return acts

    def _dead(self, aid: bytes, a: ActorLane, error: bytes | None) -> list:
        acts = self._close(aid, a)
        a.state, a.error = DEAD, error
        for spec in [*self._inflight(a, acts), *a.batch, *a.queue]:
            self.via_calls.pop(spec[P.T_ID], None)
            acts.append((FAIL, spec, error))
        a.inflight.clear()
        a.queue.clear()
        a.batch = []
        return acts

    @staticmethod
    def _inflight(a: ActorLane, acts: list) -> list:
        """The calls sent and not answered, in their order: the one on a user thread's
        socket (taken back: that thread stops waiting for it) came before the rest."""
        if a.sync is None:
            return list(a.inflight.values())
        calls = [a.sync, *a.inflight.values()]
        acts.append((ABANDON, a.sync))
        a.sync = None
        return calls

    @staticmethod
    def _close(aid: bytes, a: ActorLane) -> list:
        if not a.address:
            return []
        a.address = ""
        return [(CLOSE, ("actor", aid))]

    def call_result(self, aid: bytes, task_id: bytes) -> None:
        a = self.actors.get(aid)
        if a is not None:
            a.inflight.pop(task_id, None)

    def unreachable(self, peer: tuple, now: float) -> list:
        """The socket to `peer` could not be opened (this process is out of sockets or
        file descriptors): an actor's calls go through the node instead, whose mailbox
        forwards them (slower, never lost); a lease is given back, its tasks go through
        the node."""
        kind, key = peer
        if kind == "lease":
            lease = self.lease_of.pop(key, None)
            if lease is None:
                return []
            lease.open, lease.wid, lease.refused_at = False, None, now
            return [(NODE, P.UNLEASE, (key, False))]
        a = self.actors.get(key)
        if a is None or a.via_node:
            return []
        a.address, a.via_node = "", True
        calls = list(a.inflight.values())   # counted as sent on the socket never opened
        a.inflight.clear()
        acts = self._send_calls(key, a, calls) if calls else []
        if a.release:
            acts.append((NODE, P.RELEASE_ACTOR, (key, False)))
        return acts

    def killed(self, aid: bytes, no_restart: bool) -> list:
        """This process killed the actor: calls made from now on must not reach the old
        instance (they fail, or wait for the restart). Calls already sent fail or are
        retried when the node reports the death."""
        acts: list = []
        a = self.actors.get(aid)
        if a is None:
            if not no_restart:
                return []
            a = self._actor(aid, acts)   # to hear of the death, too
        acts.extend(self.flush())
        a.stale = a.address
        if no_restart:
            a.state = KILLED   # new calls fail; in-flight ones with the DEAD notice
            a.error = pickle.dumps(ActorDiedError(
                f"The actor {aid.hex()} was killed with zray.kill().", aid.hex()))
            acts.extend((FAIL, spec, a.error) for spec in a.queue)
            a.queue.clear()
        elif a.state == ALIVE:
            a.state = RESTARTING   # new calls wait for the restarted instance
        return acts

    def release(self, aid: bytes) -> tuple[bool, list]:
        """The last handle here is gone. (True, actions) if the release travels behind
        this process's calls on the actor's own socket; (False, []) if this process never
        called it (the node tells the actor then)."""
        a = self.actors.get(aid)
        if a is None or a.state == DEAD:
            return False, []
        a.release = True
        acts = self.flush()
        if a.via_node:   # the node's RELEASE_ACTOR travels behind the calls just flushed
            return False, acts
        if a.state == ALIVE and a.sync is None:   # else it follows that call (sync_call_done)
            acts.append((SEND, ("actor", aid), P.RELEASE_ACTOR, (aid, True)))
        return True, acts

    def cancel_call(self, task_id: bytes, force: bool) -> tuple[bool, list]:
        """Cancel a call made here: a queued one at once, a sent one by asking its actor.
        (False, []) if the task is not a call of this process."""
        for aid, a in self.actors.items():
            for pending in (a.queue, a.batch):
                for spec in pending:
                    if spec[P.T_ID] == task_id:
                        pending.remove(spec)
                        return True, [(FAIL, spec, pickle.dumps(TaskCancelledError(task_id.hex())))]
            sent = task_id in a.inflight or (a.sync is not None and a.sync[P.T_ID] == task_id)
            if sent and a.state == ALIVE:
                if a.via_node:   # its node (wherever it is) cancels it
                    return True, [(NODE, P.CANCEL, (task_id, force))]
                return True, [(SEND, ("actor", aid), P.CANCEL, (task_id, force))]
        return False, []

    # -- tasks: node or lease ----------------------------------------------------
    def route(self, spec: list, now: float) -> tuple[bool, list]:
        """(True, actions) if the task goes on a lease; else (False, actions) and the
        caller sends it through the node (in a batch with others)."""
        res = spec[P.T_RES]
        if res.get("GPU"):
            return False, []
        key = shape_key(res)
        lease = self.leases.get(key)
        busy = self.node_inflight.get(key, 0)
        if lease is not None and lease.open and lease.task is None and not busy:
            return True, self._send_task(lease, spec)
        self.node_inflight[key] = busy + 1
        self.task_key[spec[P.T_ID]] = key
        if lease is None:
            return False, ([] if busy else self._request(key, res))
        if lease.open and lease.task is None:
            return False, self._give_back(lease)   # a burst: let the node use every worker
        if lease.refused_at is not None and not busy and now - lease.refused_at > self.linger:
            return False, self._request(key, res)
        return False, []

    @staticmethod
    def _send_task(lease: Lease, spec: list) -> list:
        lease.task = spec
        fid = spec[P.T_FUNC]
        first = fid not in lease.funcs
        lease.funcs.add(fid)
        return [(TASK, ("lease", lease.wid), spec, first)]

    def _request(self, key: tuple, res: dict) -> list:
        lease = self.leases.get(key) or Lease(key)
        lease.refused_at = None
        self.leases[key] = lease
        return [(NODE, P.LEASE, (list(key), res))]

    def node_result(self, task_id: bytes) -> None:
        """A task (or a call via the nodes) that went through the node has its result."""
        if self.via_calls:
            aid = self.via_calls.pop(task_id, None)
            if aid is not None:
                self.call_result(aid, task_id)
                return
        key = self.task_key.pop(task_id, None)
        if key is not None:
            n = self.node_inflight[key] - 1
            if n:
                self.node_inflight[key] = n
            else:
                del self.node_inflight[key]

    def leased(self, key_list: list, wid: bytes, address: str, now: float) -> list:
        """The node's answer to a LEASE: a worker and its address, or none ("")."""
        key = tuple(tuple(kv) for kv in key_list)
        lease = self.leases.get(key)
        if not address:
            if lease is not None and not lease.open:
                lease.refused_at = now
            return []
        if lease is None or lease.open:   # not asked for (any more)
            return [(NODE, P.UNLEASE, (wid, False))]
        lease.wid, lease.open, lease.last_used, lease.address = wid, True, now, address
        self.lease_of[wid] = lease
        return [(OPEN, ("lease", wid), address)]

    def lease_result(self, wid: bytes, task_id: bytes, now: float) -> list:
        """The result of a task sent on a lease came back on it."""
        lease = self.lease_of.get(wid)
        if lease is None:
            return []
        if lease.task is not None and lease.task[P.T_ID] == task_id:
            lease.task = None
            lease.last_used = now
        if lease.task is None and self.node_inflight.get(lease.key):
            return self._give_back(lease)
        return []

    def lease_lost(self, wid: bytes) -> list:
        """The leased worker died: its task is retried through the node, or fails."""
        lease = self.lease_of.get(wid)
        if lease is None:
            return []
        spec = lease.task
        acts = self._drop(lease)
        if spec is None:
            return acts
        if lease.sync:
            lease.sync = False
            acts.append((ABANDON, spec))
        if P.spend_retry(spec):
            key = shape_key(spec[P.T_RES])
            self.node_inflight[key] = self.node_inflight.get(key, 0) + 1
            self.task_key[spec[P.T_ID]] = key
            acts.append((NODE, P.SUBMIT, ([spec],)))
        else:
            acts.append((FAIL, spec, pickle.dumps(WorkerCrashedError(
                f"The worker running task {spec[P.T_NAME]} died unexpectedly and it has no "
                "retries left (max_retries)."))))
        return acts

    def cancel_task(self, task_id: bytes, force: bool) -> tuple[bool, list]:
        """Cancel a task running on a lease; (False, []) if none is."""
        for lease in self.leases.values():
            if lease.task is not None and lease.task[P.T_ID] == task_id and lease.open:
                if not force:
                    return True, [(SEND, ("lease", lease.wid), P.CANCEL, (task_id, False))]
                # The node kills the worker: the task fails now, and the lease is gone
                # at once (a task sent on it before the worker's death is known would
                # die with it).
                spec = lease.task
                acts: list = [(NODE, P.UNLEASE, (lease.wid, True))]
                if lease.sync:
                    acts.append((ABANDON, spec))
                acts.extend(self._drop(lease))
                acts.append((FAIL, spec, pickle.dumps(TaskCancelledError(task_id.hex()))))
                return True, acts
        return False, []

    def tick(self, now: float) -> tuple[list, float | None]:
        """Give back leases idle for `linger` seconds: (actions, seconds to the next check)."""
        acts: list = []
        nxt = None
        for lease in list(self.leases.values()):
            if not lease.open or lease.task is not None:
                continue
            left = lease.last_used + self.linger - now
            if left <= 0:
                acts.extend(self._give_back(lease))
            elif nxt is None or left < nxt:
                nxt = left
        return acts, nxt

    def _give_back(self, lease: Lease) -> list:
        wid = lease.wid
        return [(NODE, P.UNLEASE, (wid, False)), *self._drop(lease)]

    def _drop(self, lease: Lease) -> list:
        acts = [(CLOSE, ("lease", lease.wid))] if lease.open else []
        if lease.wid is not None:   # None while requested or refused: in no lease_of
            self.lease_of.pop(lease.wid, None)
        self.leases.pop(lease.key, None)
        lease.open, lease.wid = False, None
        return acts

    # -- the sync lane: a user thread that blocks on a call's result sends it on its
    # own socket and reads the result there (no hand-off to the I/O thread either way).
    # It may, if nothing this process sent to that peer is still unanswered, so that
    # calls from one caller keep their order; calls made meanwhile wait behind it.
    def take_call(self, spec: list) -> str | None:
        """The actor's address if a user thread may send this call itself (then the
        call counts as sent, and later ones queue until sync_call_done); else None."""
        a = self.actors.get(spec[P.T_ACTOR])
        if a is None or a.state != ALIVE or a.via_node or a.sync is not None or a.inflight \
                or a.batch or a.queue or a.release:
            return None
        a.sync = spec
        return a.address

    def sync_call_done(self, spec: list) -> list:
        """The result of the user thread's call came back on its socket."""
        a = self.actors.get(spec[P.T_ACTOR])
        if a is None or a.sync is not spec:
            return []   # taken back meanwhile (restart, death): handled there
        a.sync = None
        return self._send_queue(spec[P.T_ACTOR], a) if a.state == ALIVE else []

    def take_task(self, spec: list) -> tuple[str, bytes, bool] | None:
        """(address, worker_id, with_function) of the lease a user thread may send this
        task on itself (then the lease is busy with it until sync_task_done); else None."""
        res = spec[P.T_RES]
        if res.get("GPU"):
            return None
        key = shape_key(res)
        lease = self.leases.get(key)
        if lease is None or not lease.open or lease.task is not None or self.node_inflight.get(key):
            return None
        wid = lease.wid
        if wid is None:   # never: an open lease has its worker (this narrows the type)
            return None
        lease.task, lease.sync = spec, True
        fid = spec[P.T_FUNC]
        first = fid not in lease.funcs
        lease.funcs.add(fid)
        return lease.address, wid, first

    def sync_task_done(self, wid: bytes, spec: list, now: float) -> list:
        lease = self.lease_of.get(wid)
        if lease is None or lease.task is not spec:
            return []   # taken back meanwhile (the worker died): handled there
        lease.sync = False
        return self.lease_result(wid, spec[P.T_ID], now)

    def untake(self, spec: list, wid: bytes | None, with_function: bool) -> list:
        """A user thread took this call or task (take_call / take_task) but could not
        open a socket to send it: the I/O thread sends it, ahead of what waited behind."""
        if wid is None:
            aid = spec[P.T_ACTOR]
            a = self.actors.get(aid)
            if a is None or a.sync is not spec:
                return []
            a.sync = None
            a.queue.appendleft(spec)
            return self._send_queue(aid, a) if a.state == ALIVE else []
        lease = self.lease_of.get(wid)
        if lease is None or lease.task is not spec:
            return []
        lease.sync = False
        return [(TASK, ("lease", wid), spec, with_function)]
