"""The head's placement (zray.brokers._placement), pure, with Hypothesis: the node it
picks is always one that can run the work, prefers nodes it fits now, then the
arguments' locality, then the least load; None exactly when no node could."""
from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from zray.brokers._placement import NodeView, Spread, feasible, fits, load_per_cpu, pick_node

IDS = [b"n%d" % i for i in range(6)]
_amount = st.sampled_from([0, 0.5, 1, 2, 4])


@st.composite
def node_views(draw) -> list[NodeView]:
    ids = draw(st.lists(st.sampled_from(IDS), unique=True, max_size=len(IDS)))
    nodes = []
    for node_id in ids:
        total = {"CPU": draw(_amount), "GPU": draw(st.sampled_from([0, 1, 2]))}
        if draw(st.booleans()):
            total["x"] = 1.0
        # Free now: anything up to the total; CPU below 0 when blocked workers lent theirs.
        available = {k: draw(st.sampled_from([-1, 0, 0.5, 1, 2, 4])) for k in total}
        available = {k: min(v, total[k]) for k, v in available.items()}
        nodes.append(NodeView(node_id, total, available, draw(st.integers(0, 20)),
                              draw(st.integers(0, 8)), draw(st.booleans() | st.just(True))))
    return nodes


demands = st.fixed_dictionaries({}, optional={"CPU": _amount, "GPU": st.sampled_from([0, 1, 2]),
                                              "x": st.sampled_from([0, 1]), "y": st.just(1)})
locality = st.dictionaries(st.sampled_from(IDS), st.integers(0, 3).map(lambda i: i * (1 << 20)),
                           max_size=4)
excludes = st.lists(st.sampled_from(IDS), max_size=2)


def _possible(demand, nodes, exclude) -> list[NodeView]:
    return [n for n in nodes if n.alive and n.node_id not in exclude and feasible(demand, n.total)]


@settings(max_examples=400, deadline=None)
@given(demands, node_views(), locality, excludes)
def test_pick_node_chooses_a_node_that_can_run_it(demand, nodes, local, exclude):
    chosen = pick_node(demand, nodes, local, exclude)
    possible = _possible(demand, nodes, exclude)
    assert (chosen is None) == (not possible), "None exactly when no live node could ever run it"
    if chosen is None:
        return
    node = {n.node_id: n for n in nodes}[chosen]
    assert node.alive and chosen not in exclude and feasible(demand, node.total)
    now = [n for n in possible if fits(demand, n.available)]
    if now:
        assert fits(demand, node.available), "a node it fits now was passed over"
    rivals = now or possible
    # Locality first: no rival holds more of its arguments; among those holding as
    # much, none is less loaded.
    most = max(local.get(n.node_id, 0) for n in rivals)
    assert local.get(chosen, 0) == most
    same = [n for n in rivals if local.get(n.node_id, 0) == most]
    assert load_per_cpu(node) == min(load_per_cpu(n) for n in same)


@settings(max_examples=200, deadline=None)
@given(demands, node_views(), locality, excludes, st.randoms(use_true_random=False))
def test_pick_node_is_deterministic(demand, nodes, local, exclude, rnd):
    chosen = pick_node(demand, nodes, local, exclude)
    shuffled = list(nodes)
    rnd.shuffle(shuffled)
    assert pick_node(demand, shuffled, dict(local), list(reversed(exclude))) == chosen
    assert pick_node(demand, iter(shuffled), local, iter(exclude)) == chosen


def test_locality_wins_over_load_when_both_fit():
    busy = NodeView(b"a", {"CPU": 4}, {"CPU": 1}, queued=40, running=4)
    idle = NodeView(b"b", {"CPU": 4}, {"CPU": 4})
    assert pick_node({"CPU": 1}, [busy, idle]) == b"b"
    assert pick_node({"CPU": 1}, [busy, idle], {b"a": 10 << 20}) == b"a"
    # ... but not over fitting now: arguments are worth moving rather than waiting.
    full = NodeView(b"a", {"CPU": 4}, {"CPU": 0})
    assert pick_node({"CPU": 1}, [full, idle], {b"a": 10 << 20}) == b"b"


def test_no_node_fits_now_still_places_on_a_feasible_one():
    nodes = [NodeView(b"a", {"CPU": 2}, {"CPU": 0}, queued=5), NodeView(b"b", {"CPU": 2}, {"CPU": -1}),
             NodeView(b"c", {"CPU": 1}, {"CPU": 1})]
    assert pick_node({"CPU": 2}, nodes) == b"b"          # the least loaded of the two that could
    assert pick_node({"CPU": 2}, nodes, exclude=[b"a", b"b"]) is None
    assert pick_node({"CPU": 1}, [NodeView(b"a", {"CPU": 1}, {"CPU": 1}, alive=False)]) is None


@settings(max_examples=200, deadline=None)
@given(demands, node_views(), excludes, st.integers(1, 12))
def test_spread_takes_turns_among_the_least_loaded(demand, nodes, exclude, rounds):
    spread = Spread()
    possible = _possible(demand, nodes, exclude)
    picks = [spread.pick(demand, nodes, exclude) for _ in range(rounds)]
    if not possible:
        assert picks == [None] * rounds
        return
    pool = [n for n in possible if fits(demand, n.available)] or possible
    least = min(load_per_cpu(n) for n in pool)
    ties = sorted(n.node_id for n in pool if load_per_cpu(n) == least)
    # Round robin by node id over the equally (least) loaded nodes.
    assert picks == [ties[i % len(ties)] for i in range(rounds)]


def test_spread_follows_the_load():
    spread = Spread()
    a, b = NodeView(b"a", {"CPU": 2}, {"CPU": 2}), NodeView(b"b", {"CPU": 2}, {"CPU": 2})
    assert [spread.pick({"CPU": 1}, [a, b]) for _ in range(3)] == [b"a", b"b", b"a"]
    loaded = NodeView(b"a", {"CPU": 2}, {"CPU": 2}, queued=3)
    assert spread.pick({"CPU": 1}, [loaded, b]) == b"b"
    assert spread.pick({"CPU": 1}, [loaded, b]) == b"b"


def test_a_random_cluster_spreads_a_burst():
    """With the head's optimistic accounting (NodeRecord.took), repeated default
    placements of one shape spread over equal nodes instead of piling on one."""
    from zray.brokers._control import NodeRecord
    rnd = random.Random(7)
    records = [NodeRecord(b"n%d" % i, b"N%d" % i, "ipc://x", {"CPU": 2}, {}, 0.0) for i in range(3)]
    rnd.shuffle(records)
    placed = []
    for _ in range(6):
        chosen = pick_node({"CPU": 1}, [r.view() for r in records])
        placed.append(chosen)
        next(r for r in records if r.node_id == chosen).took({"CPU": 1})
    assert sorted(placed) == sorted([b"n0", b"n1", b"n2"] * 2)


# -- the head broker, with real sockets: decode, place by the policy above, send -------
def test_head_places_spilled_work_by_the_policy(cluster):
    """Three fake nodes join the head of a real cluster; what one of them spills goes
    to the least loaded other one that fits, then (that one now full) to the next;
    what none can run is held, with a warning to its owner."""
    import zmq
    from helpers import recv
    from test_bad_frames import head_address, probe, raw_dealer, spec

    from zray import _protocol as P
    with raw_dealer(head_address(), b"Nfa") as a, raw_dealer(head_address(), b"Nfb") as b, \
            raw_dealer(head_address(), b"Nfc") as c:
        for sock, node_id, queued in ((a, b"fa", 0), (b, b"fb", 10), (c, b"fc", 0)):
            sock.send(P.encode(P.NODE_HELLO, node_id, "ipc:///nowhere", {"CPU": 8, "big": 1}, {}))
            sock.send(P.encode(P.HEARTBEAT, node_id, {"CPU": 8, "big": 1},
                               {"queued": queued, "running": 0}))
            probe(sock)
        first, second = spec(T_RES={"big": 1}, T_NAME="first"), spec(T_RES={"big": 1}, T_NAME="second")
        a.send(P.encode(P.SPILLBACK, [first], {}))
        assert recv(c, P.PLACE)[0][0][P.T_NAME] == "first"      # not back to a; c idles
        a.send(P.encode(P.SPILLBACK, [second], {}))
        assert recv(b, P.PLACE)[0][0][P.T_NAME] == "second"     # c's "big" is taken now
        a.send(P.encode(P.SPILLBACK, [spec(T_RES={"huge": 1}, T_OWNER=b"me", T_NAME="huge")], {}))
        target, message = recv(a, P.WARN)
        assert target == b"me" and "huge" in message
        assert not c.poll(100, zmq.POLLIN) and not b.poll(0, zmq.POLLIN)


# -- place_batch: pick_node's choices, one heap per shape --------------------------------
from dataclasses import replace as _replace  # noqa: E402

from zray.brokers._placement import place_batch  # noqa: E402


def _one_by_one(demands, nodes):
    """pick_node per task, updating the chosen node's free resources and load."""
    views = {n.node_id: n for n in nodes}
    out = []
    for d in demands:
        nid = pick_node(d, list(views.values()))
        out.append(nid)
        if nid is not None:
            n = views[nid]
            avail = dict(n.available)
            for k, v in d.items():
                if v:
                    avail[k] = avail.get(k, 0.0) - v
            views[nid] = _replace(n, available=avail, queued=n.queued + 1)
    return out


@settings(max_examples=200, deadline=None)
@given(node_views(), st.lists(demands, min_size=1, max_size=30))
def test_place_batch_chooses_as_pick_node_one_by_one(nodes, ds):
    assert place_batch(ds, nodes) == _one_by_one(ds, nodes)
