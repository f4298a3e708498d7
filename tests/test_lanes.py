"""The caller's lanes (zray/_runtime/lanes.py) as a Hypothesis state machine: actor calls
made through the I/O thread and on the main thread's sync lane, actors that answer,
die, restart and are killed. Whatever happens, calls from this caller run in the order
they were made, none is lost, and none runs more often than its retries allow."""
from __future__ import annotations

import pickle

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from zray import _protocol as P
from zray._runtime import lanes as L

ACTORS = [b"A" * 20, b"B" * 20]
RETRIES = 1          # max_task_retries of every call
RESTARTS = 2         # max_restarts of every actor


class Actor:
    """The real actor behind a lane: its current instance and the calls it received."""

    def __init__(self) -> None:
        self.instance = 1
        self.alive = True
        self.restarts_left = RESTARTS
        # Calls received and not run yet, per connection: the I/O thread's socket and
        # the main thread's own. Nothing orders one connection against the other.
        self.fifo: list = []
        self.sync_fifo: list = []
        self.looked_up = False        # the caller asked where it lives (LOOKUP)
        self.told = 0                 # the instance the caller was last told of

    @property
    def address(self) -> str:
        return f"inst{self.instance}"


class LanesMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.lanes = L.Lanes(linger_s=0.02)
        self.actors = {aid: Actor() for aid in ACTORS}
        self.socks: dict[bytes, str] = {}        # actor -> address of the open socket
        self.made: dict[bytes, list] = {aid: [] for aid in ACTORS}
        self.runs: dict[bytes, int] = {}         # task id -> times an actor ran it
        self.outcome: dict[bytes, str] = {}      # task id -> first outcome
        self.first_runs: dict[bytes, list] = {aid: [] for aid in ACTORS}
        self.sync: dict[bytes, list] = {}        # actor -> the call on the sync socket
        self.n = 0

    # -- helpers ---------------------------------------------------------------------
    def new_call(self, aid: bytes) -> list:
        self.n += 1
        spec = P.task_spec(b"t%015d" % self.n, b"me", b"", b"", 1, {}, RETRIES, False,
                           "f", None, aid, "f")
        self.made[aid].append(spec[P.T_ID])
        return spec

    def do(self, acts: list) -> None:
        for act in acts:
            kind = act[0]
            if kind == L.NODE and act[1] == P.LOOKUP:
                self.actors[act[2][0]].looked_up = True
            elif kind == L.OPEN:
                self.socks[act[1][1]] = act[2]
            elif kind == L.CLOSE:
                self.socks.pop(act[1][1], None)
            elif kind == L.SEND:
                self.deliver(act[1][1], act[2], act[3])
            elif kind == L.FAIL:
                self.outcome.setdefault(act[1][P.T_ID], "failed")
            elif kind == L.ABANDON:
                aid = act[1][P.T_ACTOR]
                assert self.sync.get(aid) is act[1]
                del self.sync[aid]

    def deliver(self, aid: bytes, mtype: int, fields: tuple) -> None:
        a = self.actors[aid]
        assert self.socks.get(aid), "a message sent on a socket that is not open"
        if not a.alive or self.socks[aid] != a.address:
            return   # lost with a dead instance
        if mtype == P.SUBMIT:
            a.fifo.extend(fields[0])

    # -- the caller ----------------------------------------------------------------------
    @initialize()
    def warm(self):
        """Each actor called once and answered: the lanes know where it lives, so that
        the sync lane can take calls from the first step on."""
        for aid in ACTORS:
            self.call(aid)
            self.node_tells(aid)
            self.run_one(aid)

    @rule(aid=st.sampled_from(ACTORS))
    def call(self, aid):
        self.do(self.lanes.call(self.new_call(aid)))

    @rule()
    def flush(self):
        self.do(self.lanes.flush())

    @rule(aid=st.sampled_from(ACTORS))
    def sync_call(self, aid):
        """The main thread takes its new call to send it itself, if the lanes allow."""
        if self.sync:
            return   # one thread blocks on one call at a time
        spec = self.new_call(aid)
        address = self.lanes.take_call(spec)
        if address is None:
            self.do(self.lanes.call(spec))
            return
        self.sync[aid] = spec
        a = self.actors[aid]
        if a.alive and address == a.address:
            a.sync_fifo.append(spec)

    @rule(aid=st.sampled_from(ACTORS), no_restart=st.booleans())
    def kill(self, aid, no_restart):
        self.do(self.lanes.killed(aid, no_restart))
        self.crash(aid, allow_restart=not no_restart)

    # -- the actors and the node -----------------------------------------------------
    @rule(aid=st.sampled_from(ACTORS), via_sync=st.booleans())
    def run_one(self, aid, via_sync=False):
        """The actor runs the next call that arrived on one of its two connections."""
        a = self.actors[aid]
        fifo = a.sync_fifo if via_sync else a.fifo
        if not a.alive or not fifo:
            return
        spec = fifo.pop(0)
        tid = spec[P.T_ID]
        if tid not in self.runs:
            self.first_runs[aid].append(tid)
        self.runs[tid] = self.runs.get(tid, 0) + 1
        self.outcome.setdefault(tid, "answered")
        if via_sync:
            self.do(self.lanes.sync_call_done(spec))
            if self.sync.get(aid) is spec:
                del self.sync[aid]
        else:
            self.lanes.call_result(aid, tid)

    @rule(aid=st.sampled_from(ACTORS))
    def crash(self, aid, allow_restart=True):
        a = self.actors[aid]
        if not a.alive:
            return
        a.alive, a.fifo, a.sync_fifo = False, [], []
        if allow_restart and a.restarts_left > 0:
            a.restarts_left -= 1
            if a.looked_up:
                self.do(self.lanes.actor_address(aid, L.RESTARTING, "", None))
        elif a.looked_up:
            self.do(self.lanes.actor_address(aid, L.DEAD, "", pickle.dumps("dead")))
            a.restarts_left = -1

    @rule(aid=st.sampled_from(ACTORS))
    def restarted(self, aid):
        a = self.actors[aid]
        if a.alive or a.restarts_left < 0 or (a.restarts_left == RESTARTS and a.instance == 1):
            return
        a.instance += 1
        a.alive = True

    @rule(aid=st.sampled_from(ACTORS))
    def node_tells(self, aid):
        """The node tells a caller that looked the actor up where it lives now."""
        a = self.actors[aid]
        if a.looked_up and a.alive and a.told != a.instance:
            a.told = a.instance
            self.do(self.lanes.actor_address(aid, L.ALIVE, a.address, None))

    # -- invariants ----------------------------------------------------------------------
    @invariant()
    def calls_first_run_in_the_order_they_were_made(self):
        for aid in ACTORS:
            made = self.made[aid]
            order = [made.index(t) for t in self.first_runs[aid]]
            assert order == sorted(order), f"calls to {aid[:1]} ran out of order: {order}"

    @invariant()
    def no_call_runs_more_than_its_retries_allow(self):
        for tid, n in self.runs.items():
            assert n <= 1 + RETRIES, f"{tid} ran {n} times"

    @invariant()
    def one_sync_call_at_a_time_and_nothing_else_in_flight_with_it(self):
        for aid, spec in self.sync.items():
            lane = self.lanes.actors[aid]
            assert lane.sync is spec and not lane.inflight

    def teardown(self):
        """Quiescence: the node reports every live instance, the actors run every call
        they have, the caller flushes; then every call has an outcome."""
        for _ in range(50):
            for aid in ACTORS:
                if not self.actors[aid].alive:
                    self.restarted(aid)
                self.node_tells(aid)
            self.flush()
            for aid in ACTORS:
                a = self.actors[aid]
                while a.alive and (a.fifo or a.sync_fifo):
                    self.run_one(aid, via_sync=bool(a.sync_fifo))
        for aid in ACTORS:
            for tid in self.made[aid]:
                assert tid in self.outcome, f"call {tid} to {aid[:1]} was lost"


TestLanes = LanesMachine.TestCase
TestLanes.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


def test_a_sync_call_taken_back_at_a_restart_keeps_its_place():
    """A call on the sync lane, a call queued behind it, the actor restarts: the new
    instance gets the retried sync call first."""
    m = LanesMachine()
    aid = ACTORS[0]
    m.warm()
    m.sync_call(aid)
    m.call(aid)
    m.crash(aid)
    m.restarted(aid)
    m.node_tells(aid)
    first, second = (spec[P.T_ID] for spec in m.actors[aid].fifo)
    assert m.made[aid].index(first) < m.made[aid].index(second)
    m.teardown()
    m.calls_first_run_in_the_order_they_were_made()
