"""`zray timeline` and `zray logs`: the recent tasks as a Chrome trace, and the worker
log files of this machine's session (listed, or one worker's, actor's or task's
output). Their parsers are added to `zray`'s by add_parsers()."""
from __future__ import annotations

import argparse
import os
import sys
import time

from . import _logs, _session

__all__ = ["add_parsers", "logs_command", "timeline_command"]

_ADDRESS_HELP = "'auto' (your newest cluster here), HOST:PORT, or a session directory"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    tl = sub.add_parser("timeline", help="write the recent tasks as a Chrome trace (Perfetto)")
    tl.add_argument("--address", default="auto", help=_ADDRESS_HELP)
    tl.add_argument("-o", "--output", default=None,
                    help="the file to write (default: zray-timeline-<time>.json here)")
    lg = sub.add_parser("logs", help="list the worker log files, or print a worker's, actor's "
                                     "or task's output")
    lg.add_argument("name", nargs="?", default=None, help="a log file's name (from the list)")
    lg.add_argument("--address", default="auto", help=_ADDRESS_HELP)
    lg.add_argument("--pid", type=int, default=None, help="the worker with this pid")
    lg.add_argument("--actor", default=None, help="the actor whose id starts with this")
    lg.add_argument("--task", default=None,
                    help="the task whose id (as /api/tasks shows it) starts with this")
    lg.add_argument("--tail", type=int, default=1000, help="print at most the last N lines")


def timeline_command(args: argparse.Namespace) -> int:
    import zray
    try:
        zray.init(address=args.address, log_to_driver=False, logging_level="WARNING")
    except (ConnectionError, ValueError) as exc:
        print(f"zray timeline: {exc}", file=sys.stderr)
        return 1
    try:
        events = zray.timeline() or []
    finally:
        zray.shutdown()
    path = args.output or time.strftime("zray-timeline-%Y-%m-%d_%H-%M-%S.json")
    import json
    with open(path, "w") as f:
        json.dump(events, f)
    tasks = len([e for e in events if e.get("ph") == "X"])
    print(f"Wrote {tasks} tasks and actor calls to {path}: open it in Perfetto "
          "(ui.perfetto.dev) or chrome://tracing.")
    return 0


def logs_command(args: argparse.Namespace) -> int:
    try:
        session = _session.find(args.address).session_dir
    except (ConnectionError, ValueError) as exc:
        print(f"zray logs: {exc}", file=sys.stderr)
        return 1
    if args.tail < 0:
        print("zray logs: --tail must be >= 0", file=sys.stderr)
        return 2
    chosen = args.name is not None or args.pid is not None or args.actor or args.task
    found = _logs.find(session, pid=args.pid, actor=args.actor, task=args.task, name=args.name)
    if not chosen:
        _print_list(session, found)
        return 0
    if not found:
        print(f"zray logs: no worker log file in {_logs.log_dir(session)} matches", file=sys.stderr)
        return 1
    for f in found:
        path = os.path.join(_logs.log_dir(session), f["name"])
        if args.task:
            lines = _logs.task_lines(path, args.task)[-args.tail:] if args.tail else []
        else:
            lines = [x for x in _logs.read_tail(path, args.tail) if not x.startswith(_logs.MARKER)]
        if len(found) > 1:
            print(f"==> {f['name']} <==")
        print("\n".join(lines))
    return 0


def _print_list(session: str, found: list[dict]) -> None:
    print(f"Worker log files in {_logs.log_dir(session)} (newest first):")
    if not found:
        print("  none yet: a worker's file appears when it first prints")
        return
    for f in found:
        actor = f"actor {f['actor_id'][:32]}" if f["actor_id"] else ""
        print(f"  {f['name']:<64} {f['size']:>10,} bytes  pid {f['pid']:<8} {actor}")
    print("Print one with: zray logs NAME, zray logs --pid PID, --actor ID or --task ID")
