"""`zray start` and `zray stop`: the head broker and node brokers as long-lived daemons
of this user on this machine, each session in its own 0700 directory:

    /tmp/zray-XXXXXXXX/daemons.json    {"head": pid, "node": pid}: what `zray stop` stops
                        logs/head.log, logs/node.log    the brokers' structured logs
                        keys/          the cluster's key (the head's machine; a joined
                                       node's copy, from its token)
"""
from __future__ import annotations

import glob
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from . import _cluster, _keys, _session
from . import dashboard as _dashboard

DAEMONS = "daemons.json"
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
DEFAULT_PORT = 6379   # Ray's


def default_ip(toward: str | None = None) -> str:
    """The address of this machine that other machines reach it at: the one its route to
    `toward` (the head) leaves from, else the one of its default route, else loopback.
    (A UDP connect only picks a route: it sends nothing.)"""
    for target in ([toward] if toward else []) + ["10.255.255.255"]:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((target, 1))
                return s.getsockname()[0]
        except OSError:
            continue
    return "127.0.0.1"


def start_head(port: int, resources: dict, ip: str, insecure: bool, node_port: int = 0,
               dashboard: tuple[str, int | None] | None = None) -> dict:
    """Start the head broker and the head's node; {address, token, session, dashboard_url}.
    dashboard: (host, port) the head serves its dashboard at (port None: 8265 or the
    next free one), None for none."""
    session = tempfile.mkdtemp(prefix=_session.PREFIX)
    keys_dir = None if insecure else os.path.join(session, "keys")
    token = ""
    if keys_dir is not None:
        token = _keys.token(_keys.create(keys_dir))
    listener = _dashboard.bind(*dashboard) if dashboard is not None else None
    try:
        head_pid, address = _spawn(session, "head", lambda fd: _cluster.head_argv(
            session, ip, port, keys_dir, ready_fd=fd,
            dashboard_fd=listener.fileno() if listener else None),
            extra_fds=[listener.fileno()] if listener else [])
        url = _dashboard.url_of(listener) if listener else None
    finally:
        if listener is not None:
            listener.close()   # the head has its own
    node_pid, _node = _spawn(session, "node", lambda fd: _cluster.node_argv(
        session, address, resources, ip, keys_dir, head_node=True, port=node_port, ready_fd=fd))
    _record(session, {"head": head_pid, "node": node_pid})
    return {"address": address.removeprefix("tcp://"), "token": token, "session": session,
            "dashboard_url": url}


def start_node(address: str, token: str | None, resources: dict, ip: str | None,
               insecure: bool, node_port: int = 0) -> dict:
    """Join this machine to the cluster whose head listens at `address` (host:port)."""
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--address must be HOST:PORT, got {address!r}")
    session = tempfile.mkdtemp(prefix=_session.PREFIX)
    keys_dir = None
    if not insecure:
        if not token:
            raise ValueError("joining a cluster needs its token (--token, or ZRAY_TOKEN; "
                             "`zray start --head` printed it), or --insecure for a cluster "
                             "started --insecure")
        keys_dir = os.path.join(session, "keys")
        os.mkdir(keys_dir, 0o700)
        _keys.save(keys_dir, _keys.from_token(token))
    ip = ip or default_ip(host)
    node_pid, node_id = _spawn(session, "node", lambda fd: _cluster.node_argv(
        session, f"tcp://{host}:{port}", resources, ip, keys_dir, port=node_port, ready_fd=fd))
    _record(session, {"node": node_pid})
    return {"node_id": node_id, "session": session, "ip": ip}


def _spawn(session: str, name: str, argv_for, extra_fds: list | None = None) -> tuple[int, str]:
    """Start a broker as a daemon (its own session, logs in the session dir) and wait
    for the line it writes once it serves; (pid, that line)."""
    logs = os.path.join(session, "logs")
    os.makedirs(logs, mode=0o700, exist_ok=True)
    ready_r, ready_w = os.pipe()
    try:
        with open(os.path.join(logs, f"{name}.log"), "ab") as log:
            proc = subprocess.Popen(argv_for(ready_w), pass_fds=[ready_w, *(extra_fds or [])],
                                    env=_cluster.broker_env(),
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)
        os.close(ready_w)
        ready_w = -1
        return proc.pid, _session.read_ready(ready_r, START_TIMEOUT_S,
                                    f"the {name} broker (its log: {logs}/{name}.log)")
    finally:
        if ready_w >= 0:
            os.close(ready_w)
        os.close(ready_r)


def _record(session: str, pids: dict) -> None:
    path = os.path.join(session, DAEMONS)
    with open(path, "w") as f:
        json.dump(pids, f)
    os.chmod(path, 0o600)


def stop() -> list[str]:
    """Stop every daemon this user started on this machine (SIGTERM, then SIGKILL after a
    grace period) and remove their session directories; a line for each session."""
    done = []
    pattern = os.path.join(tempfile.gettempdir(), _session.PREFIX + "*")
    for path in sorted(glob.glob(pattern)):
        record = os.path.join(path, DAEMONS)
        if _session.owned_private_dir(path) is not None or not os.path.isfile(record):
            continue
        try:
            with open(record) as f:
                pids = {k: int(v) for k, v in json.load(f).items()}
        except (OSError, ValueError, TypeError, AttributeError):
            pids = {}
        _terminate(list(pids.values()))
        shutil.rmtree(path, ignore_errors=True)
        done.append(f"stopped {', '.join(sorted(pids)) or 'nothing'} of {path}")
    return done


def _terminate(pids: list[int]) -> None:
    fds = []
    for pid in pids:
        try:
            fds.append((pid, os.pidfd_open(pid)))
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + STOP_GRACE_S
    for pid, fd in fds:
        left = max(0.0, deadline - time.monotonic())
        if not select.select([fd], [], [], left)[0]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            select.select([fd], [], [], STOP_GRACE_S)
        os.close(fd)
