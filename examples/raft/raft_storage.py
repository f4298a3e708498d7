"""Raft's stable storage: one JSON file per server, replaced atomically on every change.

Raft needs currentTerm, votedFor and the log to survive a crash before a server
answers an RPC that depends on them. A killed actor is a killed process, not a lost
machine, so the page cache keeps what was written; a real deployment would fsync
(pass fsync=True) and keep the log in an append-only file rather than rewrite it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field


@dataclass
class PersistentState:
    term: int = 0
    voted_for: int | None = None
    log: list = field(default_factory=list)   # [term, command] pairs; Raft index i is log[i - 1]
    # Not part of Raft: [term, wall time] of each election this server won, kept so
    # that the tests can check "at most one leader per term" across crashes, and the
    # demo can print a timeline.
    led_terms: list = field(default_factory=list)


class Storage:
    """The file `directory/server-<id>.json`; load() gives a fresh state if it is absent."""

    def __init__(self, directory: str, server_id: int, fsync: bool = False) -> None:
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, f"server-{server_id}.json")
        self.fsync = fsync

    def load(self) -> PersistentState:
        try:
            with open(self.path) as f:
                raw = json.load(f)
        except FileNotFoundError:
            return PersistentState()
        return PersistentState(raw["term"], raw["voted_for"], raw["log"], raw["led_terms"])

    def save(self, state: PersistentState) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"term": state.term, "voted_for": state.voted_for, "log": state.log,
                       "led_terms": state.led_terms}, f)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self.path)   # a crash leaves the old file or the new one, never half
