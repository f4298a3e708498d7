"""Task events, apart from any socket: a worker's recorder (started/ended, batched
sends, RUNNING once), the node's relay (reports at most once a period, only when
something changed, its queue's snapshot), the head's history (a ring that stays the
same size over a million tasks, counts by state and function, failures with their
text, malformed rows skipped) and the Chrome trace made from it."""
from __future__ import annotations

import json
import os
import time
from collections import deque

import pytest

from zray import _protocol as P
from zray import _serialization as S
from zray._runtime.events import TaskEvents
from zray.brokers._events import PENDING_ROWS, EventRelay
from zray.brokers._history import OTHER, TaskHistory, chrome_trace


def spec(n: int, name: str = "f", actor: bytes | None = None) -> list:
    return P.task_spec(b"T" * 8 + n.to_bytes(8, "big"), b"owner", b"func", b"", 1, {"CPU": 1.0},
                       0, False, name, None, actor)


def row(n: int, state: str = "FINISHED", name: str = "f", start: float = 100.0,
        end: float | None = 100.5, error: str = "") -> list:
    return [b"T" * 8 + n.to_bytes(8, "big"), name, None, state, start, end, error]


def batch(rows: list, pid: int = 1, **info) -> list:
    """A batch as a worker sends it: its rows packed, and the counts of those that ended."""
    counts: dict = {}
    for r in rows:
        if r[3] in ("FINISHED", "FAILED"):
            counts.setdefault(r[1], [0, 0])[r[3] == "FAILED"] += 1
    return [{"pid": pid, "counts": counts, "rows": len(rows), **info}, P.pack_rows(rows)]


# -- the worker's recorder ---------------------------------------------------------------
def test_recorder_batches_rows_and_reports_running_once():
    sent = []
    ev = TaskEvents()
    ev.on = True                           # recording, without the sender thread
    ev._send = lambda *m: sent.append(m)
    ev._info = {"pid": 7, "actor_id": None}
    ev._pending = lambda: 3
    ev.started(spec(1))
    ev.ended(spec(1), P.ok_result(spec(1), [b"x"], None))
    ev.started(spec(2))                    # still running at the send
    blob = S.dumps_error(ValueError("no such thing"), "g", 7)
    ev.ended(spec(3, "g"), P.error_result(spec(3, "g"), blob))   # cancelled before it started
    ev.flush()
    (mtype, packed, info), = sent
    rows = P.unpack_rows(packed)
    assert mtype == P.TASK_EVENTS
    assert info == {"pid": 7, "actor_id": None, "pending": 3, "rows": 3,
                    "counts": {"f": [1, 0], "g": [0, 1]}}
    by_state = {r[3]: r for r in rows}
    assert set(by_state) == {"FINISHED", "FAILED", "RUNNING"}
    done = by_state["FINISHED"]
    assert done[1] == "f" and done[4] <= done[5]
    assert "no such thing" in by_state["FAILED"][6], "a failure carries its traceback's text"
    assert by_state["FAILED"][4] == by_state["FAILED"][5]
    assert by_state["RUNNING"][5] is None
    assert P.decode(P.encode(P.TASK_EVENTS, packed, info))[0] == P.TASK_EVENTS
    ev.flush()
    assert len(sent) == 1, "nothing new: nothing sent (RUNNING is told once)"
    ev.ended(spec(2), P.ok_result(spec(2), [b"x"], None))
    ev.flush()
    assert [r[3] for r in P.unpack_rows(sent[1][1])] == ["FINISHED"]


def test_recorder_off_records_nothing_and_costs_little():
    ev = TaskEvents()
    s = spec(1)
    ev.started(s)
    ev.ended(s, P.ok_result(s, [b"x"], None))
    assert not ev._running and not ev._done
    ev.on = True
    ev._armed = True                       # as if the sender were waiting: no wake-ups
    result = P.ok_result(s, [b"x"], None)
    n = 20_000
    t0 = time.perf_counter()
    for _ in range(n):
        ev.started(s)
        ev.ended(s, result)
    per_task = (time.perf_counter() - t0) / n
    assert per_task < 10e-6, f"recording a task costs {per_task * 1e6:.1f} us"


# -- the node's relay ----------------------------------------------------------------------
def test_relay_reports_once_a_period_and_only_changes():
    relay = EventRelay(limit=10_000)
    store = {"used": 0, "capacity": 10}
    assert relay.report(0.0, [], 0, store) is not None, "the first report says what the node has"
    assert relay.report(0.1, [], 0, store) is None, "not due yet"
    assert relay.report(5.0, [], 0, store) is None, "due, but nothing changed"
    relay.from_worker(P.pack_rows([row(1)]), {"pid": 5})
    relay.failed(spec(2), "its worker died")
    batches, node = relay.report(10.0, [], 0, store)
    assert batches[0] == [{"pid": 5}, P.pack_rows([row(1)])], "passed on as it came"
    assert batches[1][0] == {"pid": 0, "counts": {"f": [0, 1]}, "rows": 1}
    own, = P.unpack_rows(batches[1][1])
    assert own[3] == "FAILED" and own[6] == "its worker died" and own[4] is None
    assert relay.report(20.0, [], 0, store) is None
    queue = deque(spec(i) for i in range(PENDING_ROWS + 50))
    batches, node = relay.report(30.0, [queue], len(queue), store)
    assert node["queued"] == PENDING_ROWS + 50 and len(node["pending"]) == PENDING_ROWS
    assert all(r[3] == "PENDING" for r in node["pending"])
    with pytest.raises(Exception, match="TASK_EVENTS"):
        relay.from_worker([row(1)], {})
    relay.from_worker(P.pack_rows([row(i) for i in range(2000)]), {"pid": 5})   # over its limit
    assert relay.held == 0 and relay.dropped == 1


# -- the head's history --------------------------------------------------------------------
def test_history_ring_is_bounded_over_a_million_tasks():
    hist = TaskHistory(capacity=1000, max_functions=50)
    n = 1000
    rows = [row(i, name=f"fn{i % 100}") for i in range(n)]
    one = batch(rows)
    t0 = time.perf_counter()
    for _ in range(1000):       # a million tasks, in batches as nodes send them
        hist.add("n1", [one], {})
    per_task = (time.perf_counter() - t0) / 1_000_000
    assert hist.held <= 2 * 1000 and len(hist.batches) <= 2, "the ring holds ~capacity rows"
    assert hist.held_bytes <= 2 * len(one[1]) and hist.evicted >= 1_000_000 - 2000
    assert hist.totals["FINISHED"] == 1_000_000
    assert len(hist.by_function) == 51 and hist.by_function[OTHER][0] == 500_000
    assert per_task < 0.5e-6, f"the head spends {per_task * 1e6:.2f} us a task (no work per row)"
    assert len(hist.records(limit=10_000)) == 1000
    # A batch that claims fewer rows than it has is held to the ring's bytes.
    liar = batch([row(i, error="x" * 900) for i in range(5000)])
    liar[0]["rows"] = 1
    hist.add("n1", [liar, one], {})
    assert hist.held_bytes <= hist.max_bytes + len(one[1])


def test_history_states_failures_and_bad_rows():
    hist = TaskHistory(capacity=100)
    hist.add("n1", [batch([row(1, "RUNNING", end=None), row(2, "RUNNING", end=None)], pid=9)],
             {"queued": 4, "pending": [row(3, "PENDING", start=None, end=None)]})
    s = hist.summary()
    assert s["counts"] == {"PENDING": 4, "RUNNING": 2, "FINISHED": 0, "FAILED": 0}
    assert s["by_function"]["f"]["RUNNING"] == 2 and s["by_function"]["f"]["PENDING"] == 1
    # Task 1 ends; task 2's worker died: its node fails it (no start of its own).
    died = row(2, "FAILED", start=None, end=200.0, error="its worker process died")
    hist.add("n1", [batch([row(1)], pid=9), batch([died], pid=0)], {"queued": 0, "pending": []})
    recs = {r[0]: r for r in hist.records()}
    assert recs[row(1)[0]][3] == "FINISHED"
    failed = recs[row(2)[0]]
    assert failed[3] == "FAILED" and failed[4] == 100.0 and failed[6] == 9, \
        "a task its node failed keeps the start and pid its worker reported"
    assert hist.recent_failures()[0][8] == "its worker process died"
    assert hist.summary()["counts"] == {"PENDING": 0, "RUNNING": 0, "FINISHED": 1, "FAILED": 1}
    # Malformed rows, batches and counts are skipped (where they are read).
    hist.add("n1", [[{"pid": 9, "counts": {"f": [-1, 0], 3: [1, 1]}},
                     P.pack_rows([["junk"], row(5, "WHAT"), [b"x", 1, None, "FINISHED", 1.0, 2.0, ""],
                                  row(6, start="soon")])],
                    "not a batch", [{}, [row(7)]], [{"pid": 1}, b"\xc1 not msgpack"]], {})
    assert len(hist.records()) == 2 and hist.bad == 4
    assert hist.totals == {"FINISHED": 1, "FAILED": 1}
    with pytest.raises(ValueError):
        hist.add("n1", "not batches", {})
    assert [r[3] for r in hist.records(state="FAILED")] == ["FAILED"]
    assert hist.records(name="nope") == []


def test_chrome_trace_is_valid():
    hist = TaskHistory(capacity=100)
    actor = b"A" * 20
    rows = [row(1, start=10.0, end=10.25), row(2, "FAILED", name="g", start=10.5, end=11.0,
                                                error="boom"),
            [row(3)[0], "C.m", actor, "FINISHED", 10.0, 10.1, ""], row(4, "RUNNING", end=None)]
    hist.add("aa" * 16, [batch(rows[:2], pid=11), batch(rows[2:], pid=12, actor_id=actor)], {})
    events = chrome_trace(hist.window(0.0), {actor: "C"})
    json.loads(json.dumps(events))
    complete = [e for e in events if e["ph"] == "X"]
    meta = [e for e in events if e["ph"] == "M"]
    assert len(complete) == 3, "a task still running is not in the trace"
    for e in complete:
        assert set(e) >= {"name", "ph", "ts", "dur", "pid", "tid", "cat", "args"}
        assert isinstance(e["ts"], float) and e["dur"] >= 0
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
    f = next(e for e in complete if e["name"] == "f")
    assert f["ts"] == 10.0e6 and f["dur"] == 0.25e6 and f["tid"] == 11
    assert next(e for e in complete if e["name"] == "g")["args"]["error"] == "boom"
    assert next(e for e in complete if e["name"] == "C.m")["cat"] == "actor_call"
    names = {e["args"]["name"] for e in meta}
    assert "node " + ("aa" * 6) in names and "worker pid 11" in names and "actor C pid 12" in names


def test_history_window_keeps_running_tasks():
    hist = TaskHistory(capacity=10)
    now = time.time()
    hist.add("n", [batch([row(1, start=now - 500, end=now - 400),
                          row(2, "RUNNING", start=now - 300, end=None)], pid=os.getpid())], {})
    assert [r[3] for r in hist.window(now - 60)] == ["RUNNING"]
