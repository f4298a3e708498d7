"""The `zray` command: `zray microbenchmark` today; start/stop/status come with the
multi-node work (see README, "Not done yet")."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["microbenchmark"]:  # its own parser takes every other argument
        from ._bench.main import main as microbenchmark
        return microbenchmark(argv[1:]) or 0
    ap = argparse.ArgumentParser(prog="zray", description="zray: Ray Core's API on ZeroMQ brokers")
    sub = ap.add_subparsers(dest="command", required=True)
    mb = sub.add_parser("microbenchmark", help="run the microbenchmarks (Ray's metric names)",
                        add_help=False)
    mb.add_argument("rest", nargs=argparse.REMAINDER)
    for name in ("start", "stop"):
        sub.add_parser(name, help=f"{name} a long-lived cluster (not implemented yet)")
    for name, what in (("status", "nodes and resources"), ("memory", "objects and who holds them")):
        p = sub.add_parser(name, help=f"{what} of a running cluster on this machine")
        p.add_argument("--address", default="auto",
                       help="'auto' (the newest cluster here) or a session directory")
    args = ap.parse_args(argv)
    if args.command in ("status", "memory"):
        return _inspect(args.command, args.address)
    print(f"zray {args.command}: long-lived clusters are not implemented yet; zray.init() starts "
          "an embedded cluster for the calling process.", file=sys.stderr)
    return 2


def _inspect(command: str, address: str) -> int:
    import zray
    try:
        zray.init(address=address, log_to_driver=False)
    except (ConnectionError, ValueError) as exc:
        print(f"zray {command}: {exc}", file=sys.stderr)
        return 1
    try:
        if command == "memory":
            from .util.state import memory_summary
            print(memory_summary())
        else:
            for node in zray.nodes():
                state = "alive" if node["Alive"] else "dead"
                print(f"node {node['NodeID'][:12]} ({state}) {node['NodeManagerAddress']}")
            total, free = zray.cluster_resources(), zray.available_resources()
            for key in sorted(total):
                if not key.startswith("node:"):
                    print(f"  {key:<22} {free.get(key, 0.0):>16,.1f} / {total[key]:,.1f} available")
    finally:
        zray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
