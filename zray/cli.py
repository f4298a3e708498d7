"""The `zray` command, as Ray's: `zray start --head` / `zray start --address HOST:PORT`
run the brokers of a cluster as daemons, `zray stop` stops this user's, `zray status`
and `zray memory` show a running cluster, `zray timeline` and `zray logs` what it ran,
`zray microbenchmark` measures."""
from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["microbenchmark"]:  # its own parser takes every other argument
        from ._bench.main import main as microbenchmark
        return microbenchmark(argv[1:]) or 0
    args = _parser().parse_args(argv)
    if args.command in ("status", "memory"):
        return _inspect(args.command, args.address)
    if args.command in ("timeline", "logs"):
        from . import _views_cli
        return (_views_cli.timeline_command if args.command == "timeline"
                else _views_cli.logs_command)(args)
    if args.command == "stop":
        from ._daemons import stop
        lines = stop()
        print("\n".join(lines) if lines else "zray stop: no zray daemons of yours run here")
        return 0
    return _start(args)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="zray", description="zray: Ray Core's API on ZeroMQ brokers")
    sub = ap.add_subparsers(dest="command", required=True)
    mb = sub.add_parser("microbenchmark", help="run the microbenchmarks (Ray's metric names)",
                        add_help=False)
    mb.add_argument("rest", nargs=argparse.REMAINDER)
    st = sub.add_parser("start", help="start a cluster's head (--head) or join one (--address)")
    role = st.add_mutually_exclusive_group(required=True)
    role.add_argument("--head", action="store_true", help="start the head and its node here")
    role.add_argument("--address", help="HOST:PORT of the head to join")
    st.add_argument("--port", type=int, default=None,
                    help="the head's tcp port (default 6379; 0: any free one)")
    st.add_argument("--num-cpus", type=float, default=None)
    st.add_argument("--num-gpus", type=float, default=None)
    st.add_argument("--resources", default="{}", help='custom resources, JSON: \'{"disk": 4}\'')
    st.add_argument("--object-store-memory", type=int, default=None)
    st.add_argument("--node-port", type=int, default=0,
                    help="this node's tcp port for the other nodes (default: any free one; "
                         "set it for a firewall)")
    st.add_argument("--node-ip-address", default=None,
                    help="the address other machines reach this one at (default: guessed)")
    st.add_argument("--token", default=None,
                    help="the cluster's join token (or set ZRAY_TOKEN: a command line is "
                         "visible to every user of this machine)")
    st.add_argument("--insecure", action="store_true",
                    help="tcp without CurveZMQ: anyone who reaches the ports runs code as you")
    st.add_argument("--include-dashboard", type=_bool, default=True, metavar="{true,false}",
                    help="serve the dashboard from the head (default: true)")
    st.add_argument("--dashboard-host", default="127.0.0.1",
                    help="the dashboard's address (default 127.0.0.1: this machine only; it has "
                         "no authentication)")
    st.add_argument("--dashboard-port", type=int, default=None,
                    help="the dashboard's port (default 8265, else the next free one)")
    sub.add_parser("stop", help="stop the zray daemons this user started on this machine")
    for name, what in (("status", "nodes and resources"), ("memory", "objects and who holds them")):
        p = sub.add_parser(name, help=f"{what} of a running cluster")
        p.add_argument("--address", default="auto",
                       help="'auto' (your newest cluster here), HOST:PORT, or a session directory")
    from ._views_cli import add_parsers
    add_parsers(sub)
    return ap


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _start(args: argparse.Namespace) -> int:
    from . import _daemons, _node_resources
    try:
        resources = _node_resources.requested(args.num_cpus, args.num_gpus,
                                              json.loads(args.resources), args.object_store_memory)
        if args.head:
            port = _daemons.DEFAULT_PORT if args.port is None else args.port
            ip = args.node_ip_address or _daemons.default_ip()
            dashboard = (args.dashboard_host, args.dashboard_port) if args.include_dashboard else None
            info = _daemons.start_head(port, resources, ip, args.insecure, args.node_port,
                                       dashboard)
        else:
            token = args.token or os.environ.get("ZRAY_TOKEN")
            info = _daemons.start_node(args.address, token, resources, args.node_ip_address,
                                       args.insecure, args.node_port)
    except (ValueError, TypeError, OSError, TimeoutError, RuntimeError) as exc:
        print(f"zray start: {exc}", file=sys.stderr)
        return 1
    if args.head:
        _say_head(info, args.insecure)
    else:
        print(f"This node ({info['ip']}, node id {info['node_id'][:12]}) joined the cluster at "
              f"{args.address}.\nIts logs: {info['session']}/logs")
    return 0


def _say_head(info: dict, insecure: bool) -> None:
    join = f"zray start --address {info['address']}"
    join += " --insecure" if insecure else f" --token {info['token']}"
    print(f"The zray cluster's head is running at {info['address']}.\n"
          f"Its logs: {info['session']}/logs\n"
          + (f"Its dashboard: {info['dashboard_url']}\n" if info.get("dashboard_url") else "")
          + "\n"
          "To join another machine to it, run there:\n"
          f"{join}\n\n"
          "To connect a program on a machine of the cluster:\n"
          f"  zray.init(address=\"{info['address']}\")   (or address=\"auto\")\n"
          "To stop the daemons of this machine: zray stop")
    if not insecure:
        print("\nThe token lets whoever holds it run code on every node: keep it secret "
              "(ZRAY_TOKEN=... zray start --address ... keeps it off the command line).")


def _inspect(command: str, address: str) -> int:
    import zray
    try:
        zray.init(address=address, log_to_driver=False, logging_level="WARNING")   # (says nothing)
    except (ConnectionError, ValueError) as exc:
        print(f"zray {command}: {exc}", file=sys.stderr)
        return 1
    try:
        if command == "memory":
            from .util.state import memory_summary
            print(memory_summary())
        else:
            _status(zray)
    finally:
        zray.shutdown()
    return 0


def _status(zray) -> None:
    nodes = zray.nodes()
    print(f"{sum(n['Alive'] for n in nodes)} node(s) alive, {sum(not n['Alive'] for n in nodes)} dead")
    for node in nodes:
        state = "alive" if node["Alive"] else f"dead ({node['DeathReasonMessage']})"
        load = node.get("Load") or {}
        where = node["NodeManagerAddress"] + (f":{node['NodeManagerPort']}"
                                              if node["NodeManagerPort"] else "")
        print(f"node {node['NodeID'][:12]} {where:<21} {state}: "
              f"{load.get('queued', 0)} queued, {load.get('running', 0)} running, "
              f"{load.get('actors', 0)} actors")
    from ._resource_text import usage
    print("resources (used/total):")
    for line in usage(zray.cluster_resources(), zray.available_resources()):
        print(f" {line}")


if __name__ == "__main__":
    sys.exit(main())
