"""The Raft example (examples/raft) on a real embedded cluster: election, replication,
a leader's crash and a restarted server catching up, a partitioned minority that
cannot commit, and random crash/restart/partition schedules checked against Raft's
safety properties (Figure 3 of the paper) after every observation.

No sleeps drive the protocol: the servers run their own timers, and the tests poll
status() with a deadline until a condition holds.
"""
from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import zray

RAFT_DIR = str(Path(__file__).resolve().parent.parent / "examples" / "raft")
sys.path.insert(0, RAFT_DIR)
from raft import LEADER  # noqa: E402 (from the example's directory, put on the path above)
from raft_group import NotCommitted, RaftGroup  # noqa: E402

T = 30  # timeout of every direct get (s)


@pytest.fixture(autouse=True)
def raft_importable(monkeypatch):
    """The actors' workers import the example's modules: put them on their path (set
    before the `cluster` fixture starts the brokers, whose children inherit it)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [RAFT_DIR, os.environ.get("PYTHONPATH")])))


@pytest.fixture
def group(cluster, tmp_path):
    g = RaftGroup(5, str(tmp_path / "storage"))
    yield g
    g.shutdown()


# -- the safety properties ----------------------------------------------------------
class SafetyChecker:
    """Raft's safety properties over every status snapshot it is shown.

    It remembers every entry any server ever reported committed, with the smallest
    term of a server that reported it: the entry was committed in that term or
    earlier, so every leader of a later term must hold it (leader completeness).
    """

    def __init__(self) -> None:
        self.committed: dict[int, tuple] = {}   # index -> (entry, term it was seen committed by)
        self.snapshots = 0

    def check(self, group: RaftGroup, statuses: dict) -> None:
        self.snapshots += 1
        for i, s in statuses.items():
            assert not s["errors"], f"s{i}'s timer thread failed:\n{s['errors'][0]}"
            assert s["last_applied"] <= s["commit_index"] <= len(s["log"]), s
        self._election_safety(group, statuses)
        self._log_matching(statuses)
        self._state_machine_safety(statuses)
        self._leader_completeness(statuses)

    @staticmethod
    def _election_safety(group: RaftGroup, statuses: dict) -> None:
        for term, winners in group.elections.items():   # every win seen, across crashes
            assert len(winners) <= 1, f"two leaders in term {term}: {sorted(winners)}"
        leaders = [(s["term"], i) for i, s in statuses.items() if s["role"] == LEADER]
        terms = [t for t, _ in leaders]
        assert len(terms) == len(set(terms)), f"two leaders in one term: {leaders}"

    @staticmethod
    def _log_matching(statuses: dict) -> None:
        """Two logs with an entry of the same index and term are identical up to it."""
        for (a, sa), (b, sb) in itertools.combinations(statuses.items(), 2):
            la, lb = sa["log"], sb["log"]
            for n in range(min(len(la), len(lb)), 0, -1):
                if la[n - 1][0] == lb[n - 1][0]:
                    assert la[:n] == lb[:n], f"s{a} and s{b} agree on the term at {n} but not before"
                    break

    def _state_machine_safety(self, statuses: dict) -> None:
        """No two servers commit (so apply) different entries at one index, ever; each
        store is the replay of its applied entries."""
        for i, s in statuses.items():
            for n in range(1, s["commit_index"] + 1):
                entry = tuple(map(repr, s["log"][n - 1]))
                seen = self.committed.get(n)
                if seen is None:
                    self.committed[n] = (entry, s["term"])
                else:
                    assert seen[0] == entry, f"index {n} committed as {seen[0]} and as {entry} (s{i})"
                    self.committed[n] = (entry, min(seen[1], s["term"]))
            kv = {}
            for _term, command in s["log"][:s["last_applied"]]:
                if command[0] == "put":
                    kv[command[1]] = command[2]
            assert s["kv"] == kv, f"s{i}'s store {s['kv']} is not the replay of its log {kv}"

    def _leader_completeness(self, statuses: dict) -> None:
        for i, s in statuses.items():
            if s["role"] != LEADER:
                continue
            for n, (entry, term) in self.committed.items():
                if s["term"] > term:
                    assert n <= len(s["log"]) and tuple(map(repr, s["log"][n - 1])) == entry, \
                        f"leader s{i} of term {s['term']} lacks entry {n} committed by term {term}"


def observe(group: RaftGroup, checker: SafetyChecker) -> dict:
    statuses = group.statuses()
    checker.check(group, statuses)
    return statuses


def converged(statuses: dict) -> bool:
    """Every live server holds the leader's log and has applied all of it."""
    logs = [s["log"] for s in statuses.values()]
    return all(log == logs[0] for log in logs) and \
        all(s["last_applied"] == len(s["log"]) for s in statuses.values())


# -- the tests --------------------------------------------------------------------------
def test_one_leader_is_elected_and_followed(group):
    leader = group.wait_for_leader(timeout=10)
    st = group.wait_until(lambda st: all(s["leader"] == leader and s["term"] == st[leader]["term"]
                                         for s in st.values()))
    assert [i for i, s in st.items() if s["role"] == LEADER] == [leader]
    assert st[leader]["log"][-1][1] == ["noop"]   # a new leader's first entry
    SafetyChecker().check(group, st)


def test_writes_are_replicated_to_every_server(group):
    group.wait_for_leader(timeout=10)
    expected = {f"k{n}": n * n for n in range(20)}
    for key, value in expected.items():
        assert group.put(key, value) == value
    assert group.get("k7") == 49
    st = group.wait_until(converged)
    for s in st.values():
        assert s["kv"] == expected
        assert s["commit_index"] == len(s["log"])
    SafetyChecker().check(group, st)


def test_leader_crash_new_leader_and_restarted_server_catches_up(group):
    checker = SafetyChecker()
    old = group.wait_for_leader(timeout=10)
    for n in range(5):
        group.put(f"a{n}", n)
    before = observe(group, checker)[old]
    group.crash(old)

    new = group.wait_for_leader(timeout=10)
    st = observe(group, checker)
    assert new != old and st[new]["term"] > before["term"]
    assert [group.get(f"a{n}") for n in range(5)] == list(range(5))   # committed: not lost
    group.put("b", "after the crash")

    group.restart(old)
    restored = group.statuses()[old]
    # Stable storage: the restarted server starts from its term, vote and log on file.
    assert restored["term"] >= before["term"]
    assert restored["log"][:len(before["log"])] == before["log"]
    st = group.wait_until(converged)
    assert st[old]["kv"] == {**{f"a{n}": n for n in range(5)}, "b": "after the crash"}
    checker.check(group, st)


def test_partitioned_minority_cannot_commit(group):
    checker = SafetyChecker()
    old = group.wait_for_leader(timeout=10)
    group.put("x", "before")
    minority = [old, next(i for i in group.ids if i != old)]
    majority = [i for i in group.ids if i not in minority]
    group.partition(minority, majority)
    stuck = observe(group, checker)[old]

    # The old leader still takes the write but cannot get it to a majority.
    reply = zray.get(group.handles[old].submit.remote(["put", "x", "minority"], 0.5), timeout=T)
    assert reply["ok"] is False and "not committed" in reply["error"]
    # The majority elects a leader of its own and commits.
    new = group.wait_for_leader(among=majority, timeout=10)
    _, by, _ = group.submit(["put", "x", "majority"], via=majority[0])
    assert by in majority
    st = observe(group, checker)
    for i in minority:
        assert st[i]["commit_index"] <= stuck["commit_index"], f"s{i} committed in the minority"
        assert st[i]["kv"].get("x") == "before"

    group.heal()   # the old leader steps down; its uncommitted entry is overwritten
    st = group.wait_until(lambda st: converged(st) and st[old]["role"] != LEADER)
    assert all(s["kv"]["x"] == "majority" for s in st.values())
    assert not any(cmd == ["put", "x", "minority"] for _t, cmd in st[new]["log"])
    checker.check(group, st)


# -- random fault schedules -----------------------------------------------------------------
N = 5
# "leader" stands for the server that leads when the step runs: the faults that matter
# most hit the leader, and a random id would hit it one time in five.
_server = st.one_of(st.just("leader"), st.integers(1, N))
_step = st.one_of(
    st.tuples(st.just("crash"), _server),
    st.tuples(st.just("restart"), st.integers(0, N - 1)),   # the k-th dead server, if any
    st.tuples(st.just("partition"), st.frozensets(_server, min_size=1, max_size=2)),
    st.tuples(st.just("heal")),
    st.tuples(st.just("write"), st.integers(0, 2)),
)
# Each example starts 5 servers and runs up to 6 steps, each followed by a bounded wait
# for a leader on the majority side: ~2-4 s an example here, so 10 fit the time budget.
_schedules = settings(max_examples=25, deadline=None, database=None,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.mark.timeout(90)
def test_safety_under_random_crash_restart_partition_schedules(cluster, tmp_path):
    examples = itertools.count()

    @_schedules
    @given(schedule=st.lists(_step, min_size=1, max_size=12))
    # Always run: a minority left (3 crashes), then everyone down, with writes between.
    @example(schedule=[("write", 0), ("crash", "leader"), ("crash", "leader"), ("crash", "leader"),
                       ("write", 0), ("restart", 0), ("write", 1), ("restart", 0), ("write", 0)])
    @example(schedule=[("crash", i) for i in range(1, N + 1)] + [("write", 2), ("restart", 3)])
    def run(schedule):
        group = RaftGroup(N, str(tmp_path / f"example-{next(examples)}"))
        try:
            run_schedule(group, schedule)
        finally:
            group.shutdown()

    run()


def run_schedule(group: RaftGroup, schedule: list) -> None:
    checker = SafetyChecker()
    written: dict[str, list] = {}   # key -> values written, in order, and whether acknowledged
    for n, step in enumerate(schedule):
        step = _resolve_leader(group, step)
        kind = step[0]
        if kind == "crash" and step[1] in group.handles:
            group.statuses()            # note its elections before they die with it
            group.crash(step[1])
        elif kind == "restart" and len(group.handles) < N:
            dead = [i for i in group.ids if i not in group.handles]
            group.restart(dead[step[1] % len(dead)])
        elif kind == "partition":
            group.partition(sorted(step[1]), [i for i in group.ids if i not in step[1]])
        elif kind == "heal":
            group.heal()
        elif kind == "write":
            key, value = f"k{step[1]}", n
            try:
                group.submit(["put", key, value], timeout=0.6, via=_majority_member(group))
                written.setdefault(key, []).append((value, True))
            except NotCommitted:
                written.setdefault(key, []).append((value, False))
        settle(group, checker)

    # Liveness and durability once the faults end: all back, one leader, every
    # acknowledged write (or a later one) readable.
    group.heal()
    for i in group.ids:
        if i not in group.handles:
            group.restart(i)
    group.wait_for_leader(timeout=10)
    for key, values in written.items():
        acked = [k for k, (_v, ok) in enumerate(values) if ok]
        allowed = {v for v, _ok in values[acked[-1]:]} if acked else {v for v, _ok in values} | {None}
        assert group.get(key, timeout=10) in allowed, (key, values)
    checker.check(group, group.wait_until(converged, timeout=10))


def _resolve_leader(group: RaftGroup, step: tuple) -> tuple:
    """The step with "leader" replaced by the current leader's id (or server 1)."""
    leader = group.current_leader() or 1
    if step[0] == "crash" and step[1] == "leader":
        return (step[0], leader)
    if step[0] == "partition":
        return (step[0], frozenset(leader if i == "leader" else i for i in step[1]))
    return step


def _majority_member(group: RaftGroup) -> int | None:
    """A live server on a side with a majority of all servers, if there is one."""
    for i in group.handles:
        side = [j for j in group.side[i] if j in group.handles]
        if len(side) > N // 2:
            return i
    return None


def settle(group: RaftGroup, checker: SafetyChecker) -> None:
    """Observe (and check) the servers until a live majority that can talk has a
    leader: up to 1 s, or 0.3 s when no majority can talk. Not an assertion (Raft
    promises no bound on elections); the end of run_schedule checks liveness."""
    member = _majority_member(group)
    among = [j for j in group.side[member] if j in group.handles] if member is not None else None

    def elected(statuses: dict) -> bool:
        checker.check(group, statuses)
        return among is not None and group_has_leader(statuses, among)

    try:
        group.wait_until(elected, timeout=1.0 if among is not None else 0.3)
    except TimeoutError:
        pass


def group_has_leader(statuses: dict, among: list) -> bool:
    top = max(statuses[i]["term"] for i in among)
    return any(statuses[i]["role"] == LEADER and statuses[i]["term"] == top for i in among)
