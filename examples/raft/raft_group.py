"""The driver's side of a Raft cluster: start the servers, find the leader, send client
commands (following redirects to the leader), and crash, restart or partition servers.

Used by main.py and by the tests. Every wait is bounded: a status poll with a deadline.
"""
from __future__ import annotations

import itertools
import time

from raft import LEADER, RaftServer, Timing

import zray as ray  # only Ray Core's API is used: `import ray` runs this unchanged

CALL_TIMEOUT = 10.0   # every get() of a control call (s): a hang fails loudly instead


class NotCommitted(Exception):
    """A client command found no leader that committed it within its timeout."""


class RaftGroup:
    """`n` Raft servers with ids 1..n, their stable storage under `storage_dir`."""

    def __init__(self, n: int, storage_dir: str, timing: Timing | None = None) -> None:
        self.ids = list(range(1, n + 1))
        self.storage_dir = storage_dir
        self.timing = timing or Timing()
        self.handles: dict = {i: self._create(i) for i in self.ids}
        self.side = {i: set(self.ids) for i in self.ids}   # whom each server may talk to
        self.leader_hint: int | None = None
        self.elections: dict = {}   # term -> {id: wall time}: every win statuses() has seen
        self._rotation = itertools.cycle(self.ids)
        ray.get([h.connect.remote(self.handles) for h in self.handles.values()], timeout=CALL_TIMEOUT)

    def _create(self, i: int):
        return self._create_with(i)

    def _create_with(self, i: int, **options):
        """Server i's actor, with actor options (e.g. where it runs in a cluster)."""
        cls = RaftServer.options(**options) if options else RaftServer  # type: ignore[attr-defined]
        return cls.remote(i, self.ids, self.storage_dir, self.timing)

    # -- faults ------------------------------------------------------------------------
    def crash(self, i: int) -> None:
        """Kill server i's actor (its stable storage stays)."""
        ray.kill(self.handles.pop(i))

    def restart(self, i: int) -> None:
        """A fresh actor for server i that recovers its stable storage and rejoins."""
        h = self.handles[i] = self._create(i)
        calls = [h.connect.remote(self.handles), h.set_reachable.remote(sorted(self.side[i]))]
        calls += [other.connect.remote({i: h}) for j, other in self.handles.items() if j != i]
        ray.get(calls, timeout=CALL_TIMEOUT)

    def partition(self, *groups) -> None:
        """Split the servers into `groups` (iterables of ids) that cannot talk to each other."""
        for group in groups:
            for i in group:
                self.side[i] = set(group)
        self._tell_sides()

    def heal(self) -> None:
        """Let every server talk to every other again."""
        self.side = {i: set(self.ids) for i in self.ids}
        self._tell_sides()

    def _tell_sides(self) -> None:
        ray.get([h.set_reachable.remote(sorted(self.side[i])) for i, h in self.handles.items()],
                timeout=CALL_TIMEOUT)

    def shutdown(self) -> None:
        """Kill every server."""
        for i in list(self.handles):
            self.crash(i)

    # -- observation -------------------------------------------------------------------
    def statuses(self) -> dict:
        """{id: status()} of the live servers."""
        ids = list(self.handles)
        values = ray.get([self.handles[i].status.remote() for i in ids], timeout=CALL_TIMEOUT)
        for i, status in zip(ids, values, strict=True):
            for term, at in status["led_terms"]:
                self.elections.setdefault(term, {}).setdefault(i, at)
        return dict(zip(ids, values, strict=True))

    def current_leader(self, among=None) -> int | None:
        """The leader that the live servers in `among` (default: all) follow now: a
        leader of the highest term among them, or None (an election is on)."""
        st = {i: s for i, s in self.statuses().items() if among is None or i in among}
        if not st:
            return None
        top = max(s["term"] for s in st.values())
        leaders = [i for i, s in st.items() if s["role"] == LEADER and s["term"] == top]
        return leaders[0] if leaders else None

    def wait_for_leader(self, among=None, timeout: float = 10.0) -> int:
        """Poll until current_leader(among) names one; TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            leader = self.current_leader(among)
            if leader is not None:
                return leader
            if time.monotonic() > deadline:
                raise TimeoutError(f"no leader among {among or self.ids} within {timeout} s")
            time.sleep(0.02)

    def wait_until(self, predicate, timeout: float = 10.0) -> dict:
        """Poll statuses() until predicate(statuses) holds; TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.statuses()
            if predicate(st):
                return st
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            time.sleep(0.02)

    # -- the client --------------------------------------------------------------------
    def submit(self, command: list, timeout: float = 5.0, via: int | None = None) -> tuple:
        """Run `command` through the log; (result, id of the leader that committed it,
        the servers asked on the way). Starts at `via` (default: the last leader) and
        follows redirects; NotCommitted after `timeout` s."""
        deadline = time.monotonic() + timeout
        target = via if via is not None else self.leader_hint
        asked: list[int] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotCommitted(f"{command} not committed within {timeout} s (asked {asked})")
            if not self.handles:
                raise NotCommitted(f"{command}: every server is down")
            if target is None or target not in self.handles:
                target = next(i for i in self._rotation if i in self.handles)
            asked.append(target)
            call = self.handles[target].submit.remote(command, min(remaining, 1.0))
            try:
                reply = ray.get(call, timeout=remaining + CALL_TIMEOUT)
            except ray.exceptions.RayActorError:   # crashed meanwhile: ask another
                reply = {"ok": False, "leader": None}
            if reply["ok"]:
                self.leader_hint = target
                return reply["result"], target, asked
            if reply.get("leader") not in (None, target):
                target = reply["leader"]              # redirected to the leader it knows
            else:
                target = None                         # no leader known: an election is on
                time.sleep(min(self.timing.heartbeat, max(0.0, deadline - time.monotonic())))

    def put(self, key: str, value, timeout: float = 5.0):
        return self.submit(["put", key, value], timeout)[0]

    def get(self, key: str, timeout: float = 5.0):
        return self.submit(["get", key], timeout)[0]
