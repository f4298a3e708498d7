"""Raft on zray: 5 servers elect a leader, replicate writes, survive the leader's death.

    python examples/raft/main.py

Writes keys through the leader (a client that asks another server is redirected),
kills the leader with zray.kill, waits for a new leader, reads every committed key
back, restarts the dead server from its stable storage and shows it catch up, then
prints a timeline of terms and leaders.
"""
from __future__ import annotations

import tempfile
import time

from raft import Timing
from raft_group import RaftGroup

import zray as ray  # a Ray Core program: `import ray` runs it unchanged

FRUITS = {"apple": 1, "banana": 2, "cherry": 3, "date": 4, "elderberry": 5}


def main() -> None:
    t0 = time.time()
    events = []   # (wall time, what the driver did)

    def say(text: str) -> None:
        print(f"{time.time() - t0:6.2f} s  {text}")

    ray.init()
    timing = Timing()
    with tempfile.TemporaryDirectory(prefix="raft-") as storage:
        events.append((time.time(), "5 servers starting"))
        group = RaftGroup(5, storage, timing)
        say(f"5 Raft servers started as actors (election timeout {timing.election_min * 1000:.0f}-"
            f"{timing.election_max * 1000:.0f} ms, heartbeat {timing.heartbeat * 1000:.0f} ms)")
        leader = group.wait_for_leader()
        say(f"s{leader} is leader of term {group.statuses()[leader]['term']}")

        follower = next(i for i in group.ids if i != leader)
        for n, (key, value) in enumerate(FRUITS.items()):
            _, by, asked = group.submit(["put", key, value], via=follower if n == 0 else None)
            path = " -> ".join(f"s{i}" for i in asked)
            say(f"put {key}={value}: committed by s{by} (asked {path})")

        group.statuses()   # note the elections so far, before the leader's record dies with it
        ray.kill(group.handles.pop(leader))
        events.append((time.time(), f"s{leader} killed with zray.kill"))
        say(f"killed the leader s{leader} with zray.kill")
        killed_at = time.monotonic()
        new_leader = group.wait_for_leader()
        st = group.statuses()
        say(f"s{new_leader} is leader of term {st[new_leader]['term']}, "
            f"{(time.monotonic() - killed_at) * 1000:.0f} ms after the kill")

        values = {key: group.get(key) for key in FRUITS}
        assert values == FRUITS, values
        say(f"every committed key still readable through s{group.leader_hint}: {values}")
        group.put("fig", 6)
        say(f"put fig=6: committed by s{group.leader_hint}")

        group.restart(leader)
        events.append((time.time(), f"s{leader} restarted from its stable storage"))
        restarted_at = time.monotonic()
        st = group.wait_until(lambda st: st[leader]["last_applied"] >= st[new_leader]["commit_index"]
                              and st[leader]["kv"].get("fig") == 6)
        say(f"restarted s{leader} from its file: caught up to index {st[leader]['last_applied']} in "
            f"{(time.monotonic() - restarted_at) * 1000:.0f} ms, term {st[leader]['term']}, "
            f"store {st[leader]['kv']}")

        print("\ntimeline:")
        for at, text in sorted(events + _elections(group)):
            print(f"  {at - t0:6.2f} s  {text}")
        top = max(s["term"] for s in group.statuses().values())
        lost = [t for t in range(1, top + 1) if t not in group.elections]
        print(f"  {len(group.elections)} leaders in {top} terms" +
              (f"; no leader in term(s) {', '.join(map(str, lost))} (split vote)" if lost else ""))
        group.shutdown()
    ray.shutdown()


def _elections(group: RaftGroup) -> list:
    out = []
    for term, winners in sorted(group.elections.items()):
        for i, at in winners.items():
            out.append((at, f"term {term}: s{i} elected leader"))
    return out


if __name__ == "__main__":
    main()
