"""A Raft server as a zray actor (Ongaro and Ousterhout, "In Search of an Understandable
Consensus Algorithm", 2014): leader election, log replication and commitment, and a
replicated key-value store as the state machine.

Two kinds of threads run in one server's process:
  - the actor's call threads (max_concurrency) run the RPC handlers, request_vote and
    append_entries, and the client's submit(): a server answers its peers while it
    is itself waiting on them, so elections never stall;
  - one timer thread: as follower or candidate it starts an election when its
    randomized timeout expires; as leader it sends append_entries to every peer
    each heartbeat, at once when a client submits a command.
One lock guards all of Raft's state; no thread holds it while it waits on peers.
A network partition is simulated by the set of peers a server may talk to: it sends
nothing to the others and drops what they send (the RPC answers None).
"""
from __future__ import annotations

import random
import threading
import time
import traceback
from dataclasses import dataclass

from raft_storage import PersistentState, Storage

import zray as ray  # only Ray Core's API is used: `import ray` runs this unchanged

FOLLOWER, CANDIDATE, LEADER = "follower", "candidate", "leader"


@dataclass(frozen=True)
class Timing:
    """The protocol's clocks (seconds). Heartbeats must come well within the shortest
    election timeout; the timeouts are randomized so that split votes are rare."""
    election_min: float = 0.15
    election_max: float = 0.30
    heartbeat: float = 0.05
    max_entries: int = 64      # log entries per append_entries


@ray.remote(max_concurrency=16)
class RaftServer:
    """One Raft server. Create it, then connect() it to its peers' handles.

    Its persistent state (term, vote, log) lives in `storage_dir`; a server created
    again with the same id and directory recovers it, as after a crash.
    """

    def __init__(self, server_id: int, server_ids: list, storage_dir: str,
                 timing: Timing | None = None) -> None:
        self.id = server_id
        self.ids = list(server_ids)
        self.majority = len(self.ids) // 2 + 1
        self.timing = timing or Timing()
        self.storage = Storage(storage_dir, server_id)
        self.p: PersistentState = self.storage.load()
        self.lock = threading.Condition()      # guards everything below; notified on apply
        self.role = FOLLOWER
        self.leader_id: int | None = None
        self.commit_index = 0
        self.last_applied = 0
        self.kv: dict = {}
        self.waiting: set[int] = set()          # indexes a submit() waits for, as leader
        self.results: dict[int, object] = {}    # index -> its result, for that submit()
        self.next_index: dict[int, int] = {}
        self.match_index: dict[int, int] = {}
        self.peers: dict = {}                   # id -> handle
        self.reachable = set(self.ids)          # the partition this server is in
        self.errors: list[str] = []             # tracebacks of the timer thread (tests: none)
        self.deadline = self._new_deadline()
        self.wake = threading.Event()           # a leader sends at once (new command)
        threading.Thread(target=self._timer_loop, name=f"raft-{server_id}", daemon=True).start()

    # -- set-up and fault injection (called by the driver) --------------------------
    def connect(self, peers: dict) -> None:
        """Learn (or relearn, after a peer restarted) the handles of peers: {id: handle}."""
        with self.lock:
            self.peers.update({i: h for i, h in peers.items() if i != self.id})

    def set_reachable(self, ids: list) -> None:
        """Talk only to these servers from now on (a partition); all ids heal it."""
        with self.lock:
            self.reachable = set(ids) | {self.id}

    def status(self) -> dict:
        """A snapshot of this server's state, for clients, the demo and the tests."""
        with self.lock:
            return {"id": self.id, "term": self.p.term, "role": self.role, "leader": self.leader_id,
                    "voted_for": self.p.voted_for, "log": [list(e) for e in self.p.log],
                    "commit_index": self.commit_index, "last_applied": self.last_applied,
                    "kv": dict(self.kv), "led_terms": list(self.p.led_terms),
                    "errors": list(self.errors),
                    "node_id": ray.get_runtime_context().get_node_id()}

    # -- the client's entry point -------------------------------------------------------
    def submit(self, command: list, timeout: float = 2.0) -> dict:
        """Run `command` (["put", key, value] or ["get", key]) through the log.

        Returns {"ok": True, "result": ...} once it is committed and applied here;
        {"ok": False, "leader": id or None} if this server is not the leader (the
        client retries there); {"ok": False, "error": ...} if it was not committed in
        `timeout` s (e.g. this leader is cut off from the majority) or leadership was
        lost: it may still commit later, so a client retries only idempotent commands.
        """
        deadline = time.monotonic() + timeout
        with self.lock:
            if self.role != LEADER:
                return {"ok": False, "leader": self.leader_id}
            term = self.p.term
            self.p.log.append([term, list(command)])
            index = len(self.p.log)
            self._persist()
            self.wake.set()
            self.waiting.add(index)
            try:
                while self.last_applied < index:
                    if self.p.term != term:
                        return {"ok": False, "leader": self.leader_id, "error": "lost leadership"}
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return {"ok": False, "leader": self.leader_id, "error": "not committed in time"}
                    self.lock.wait(remaining)
                if self.p.log[index - 1][0] != term:   # another leader's entry was applied there
                    return {"ok": False, "leader": self.leader_id, "error": "lost leadership"}
                return {"ok": True, "result": self.results.pop(index, None)}
            finally:
                self.waiting.discard(index)
                self.results.pop(index, None)

    # -- RPCs from peers ----------------------------------------------------------------
    def request_vote(self, term: int, candidate: int, last_index: int, last_term: int):
        """RequestVote (Figure 2): (term, granted), or None when dropped by a partition."""
        with self.lock:
            if candidate not in self.reachable:
                return None
            if term > self.p.term:
                self._become_follower(term)
            my_last_term = self.p.log[-1][0] if self.p.log else 0
            up_to_date = (last_term, last_index) >= (my_last_term, len(self.p.log))
            granted = (term == self.p.term and self.p.voted_for in (None, candidate) and up_to_date)
            if granted:
                self.p.voted_for = candidate
                self._persist()
                self.deadline = self._new_deadline()
            return self.p.term, granted

    def append_entries(self, term: int, leader: int, prev_index: int, prev_term: int,
                       entries: list, leader_commit: int):
        """AppendEntries (Figure 2): (term, success, index), or None when dropped.

        On success `index` is the last index now known to match the leader's log; on a
        mismatch it is where the leader should retry from (the first index of the
        conflicting term, or just past this log's end), so it backs up a term at a time.
        """
        with self.lock:
            if leader not in self.reachable:
                return None
            if term < self.p.term:
                return self.p.term, False, 0
            if term > self.p.term or self.role != FOLLOWER:
                self._become_follower(term)
            self.leader_id = leader
            self.deadline = self._new_deadline()
            log = self.p.log
            if prev_index > len(log):
                return self.p.term, False, len(log) + 1
            if prev_index > 0 and log[prev_index - 1][0] != prev_term:
                conflict = log[prev_index - 1][0]
                first = prev_index
                while first > 1 and log[first - 2][0] == conflict:
                    first -= 1
                return self.p.term, False, first
            changed = False
            for k, entry in enumerate(entries):
                index = prev_index + 1 + k
                if index <= len(log) and log[index - 1][0] != entry[0]:
                    del log[index - 1:]   # a conflict: drop it and everything after it
                    changed = True
                if index > len(log):
                    log.append(entry)
                    changed = True
            if changed:
                self._persist()
            last_new = prev_index + len(entries)
            if leader_commit > self.commit_index:
                self._commit(min(leader_commit, last_new))
            return self.p.term, True, last_new

    # -- the timer thread -------------------------------------------------------------------
    def _timer_loop(self) -> None:
        while True:
            try:
                with self.lock:
                    while self.role != LEADER and time.monotonic() < self.deadline:
                        self.lock.wait(self.deadline - time.monotonic())
                    leading = self.role == LEADER
                if leading:
                    # Heartbeats keep their period however long a round waits for replies.
                    start = time.monotonic()
                    again = self.send_append_entries()
                    if not again:
                        self.wake.wait(max(0.0, start + self.timing.heartbeat - time.monotonic()))
                    self.wake.clear()
                else:
                    self.start_election()
            except Exception:
                with self.lock:
                    self.errors.append(traceback.format_exc())
                time.sleep(self.timing.heartbeat)

    def start_election(self) -> None:
        """Become candidate for the next term and ask every peer for its vote; win on
        a majority within one election timeout, step down on a newer term."""
        with self.lock:
            self.role, self.leader_id = CANDIDATE, None
            self.p.term += 1
            self.p.voted_for = self.id
            self._persist()
            term = self.p.term
            timeout = random.uniform(self.timing.election_min, self.timing.election_max)
            self.deadline = time.monotonic() + timeout
            last_term = self.p.log[-1][0] if self.p.log else 0
            args = (term, self.id, len(self.p.log), last_term)
            peers = self._reachable_peers()
        votes = [peer.request_vote.remote(*args) for peer in peers.values()]
        granted, pending = 1, votes
        while granted < self.majority and pending:
            with self.lock:
                if self.role != CANDIDATE or self.p.term != term:
                    return   # a leader of this term spoke, or a newer term began
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                break
            need = min(self.majority - granted, len(pending))
            ready, pending = ray.wait(pending, num_returns=need, timeout=remaining)
            for ref in ready:
                reply = _answer(ref)
                if reply is None:
                    continue
                with self.lock:
                    if reply[0] > self.p.term:
                        self._become_follower(reply[0])
                        return
                granted += bool(reply[1])
        with self.lock:
            if self.role == CANDIDATE and self.p.term == term and granted >= self.majority:
                self._become_leader()

    def send_append_entries(self) -> bool:
        """One round of AppendEntries to every reachable peer (heartbeat and replication);
        True if a peer answered and still lags (send the next batch at once)."""
        with self.lock:
            if self.role != LEADER:
                return False
            term = self.p.term
            sent = {}
            for pid, peer in self._reachable_peers().items():
                prev = self.next_index[pid] - 1
                prev_term = self.p.log[prev - 1][0] if prev > 0 else 0
                entries = self.p.log[prev:prev + self.timing.max_entries]
                ref = peer.append_entries.remote(term, self.id, prev, prev_term, entries,
                                                 self.commit_index)
                sent[ref] = pid
        if not sent:
            return False
        ready, _late = ray.wait(list(sent), num_returns=len(sent), timeout=self.timing.heartbeat)
        again = False
        for ref in ready:
            reply = _answer(ref)
            pid = sent[ref]
            with self.lock:
                if reply is None or pid not in self.reachable:
                    continue
                reply_term, success, index = reply
                if reply_term > self.p.term:
                    self._become_follower(reply_term)
                    return False
                if self.role != LEADER or self.p.term != term:
                    return False
                if success:
                    self.match_index[pid] = max(self.match_index[pid], index)
                    self.next_index[pid] = self.match_index[pid] + 1
                else:
                    self.next_index[pid] = max(1, min(self.next_index[pid] - 1, index))
                again |= self.next_index[pid] <= len(self.p.log)
        with self.lock:
            if self.role == LEADER and self.p.term == term:
                self._advance_commit()
        return again

    # -- state changes (called with the lock held) -------------------------------------------
    def _become_follower(self, term: int) -> None:
        if term > self.p.term:
            self.p.term, self.p.voted_for = term, None
            self._persist()
            self.leader_id = None
        self.role = FOLLOWER
        self.deadline = self._new_deadline()
        self.lock.notify_all()   # wakes submit() calls waiting as leader

    def _become_leader(self) -> None:
        self.role, self.leader_id = LEADER, self.id
        self.next_index = {i: len(self.p.log) + 1 for i in self.ids if i != self.id}
        self.match_index = {i: 0 for i in self.ids if i != self.id}
        # A no-op of its own term lets the leader commit (and so apply) every entry of
        # earlier terms at once (Raft section 8): a read after a failover sees them.
        self.p.log.append([self.p.term, ["noop"]])
        self.p.led_terms.append([self.p.term, time.time()])
        self._persist()
        self.wake.set()

    def _advance_commit(self) -> None:
        """Commit the highest index of this term that a majority stores (Figure 2:
        only entries of the current term are committed by counting replicas)."""
        for n in range(len(self.p.log), self.commit_index, -1):
            if self.p.log[n - 1][0] != self.p.term:
                break
            if 1 + sum(m >= n for m in self.match_index.values()) >= self.majority:
                self._commit(n)
                break

    def _commit(self, index: int) -> None:
        self.commit_index = max(self.commit_index, index)
        while self.last_applied < self.commit_index:
            self.last_applied += 1
            command = self.p.log[self.last_applied - 1][1]
            result = self._apply(command)
            if self.last_applied in self.waiting:
                self.results[self.last_applied] = result
        self.lock.notify_all()

    def _apply(self, command: list):
        """The state machine: a key-value store."""
        if command[0] == "put":
            self.kv[command[1]] = command[2]
            return command[2]
        if command[0] == "get":
            return self.kv.get(command[1])
        return None   # noop

    def _persist(self) -> None:
        self.storage.save(self.p)

    def _reachable_peers(self) -> dict:
        return {i: h for i, h in self.peers.items() if i in self.reachable}

    def _new_deadline(self) -> float:
        return time.monotonic() + random.uniform(self.timing.election_min, self.timing.election_max)


def _answer(ref):
    """The reply of a finished RPC, or None if the peer died (a lost message)."""
    try:
        return ray.get(ref, timeout=0)
    except ray.exceptions.RayActorError:
        return None
