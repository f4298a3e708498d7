"""The `zray` command: `zray microbenchmark` today; start/stop/status come with the
multi-node work (see README, "Not done yet")."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["microbenchmark"]:  # its own parser takes every other argument
        from . import _microbenchmark
        return _microbenchmark.main(argv[1:]) or 0
    ap = argparse.ArgumentParser(prog="zray", description="zray: Ray Core's API on ZeroMQ brokers")
    sub = ap.add_subparsers(dest="command", required=True)
    mb = sub.add_parser("microbenchmark", help="run the microbenchmarks (Ray's metric names)",
                        add_help=False)
    mb.add_argument("rest", nargs=argparse.REMAINDER)
    for name in ("start", "stop", "status"):
        sub.add_parser(name, help=f"{name} a long-lived cluster (not implemented yet)")
    args = ap.parse_args(argv)
    print(f"zray {args.command}: long-lived clusters are not implemented yet; zray.init() starts "
          "an embedded cluster for the calling process.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
