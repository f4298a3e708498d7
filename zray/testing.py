"""zray.testing: a cluster of several nodes in one call, for tests and for trying a
cluster on one machine (as Ray's ray.cluster_utils.Cluster).

    cluster = zray.testing.Cluster(head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=2, resources={"gpu_box": 1})
    zray.init(address=cluster.address)          # joins the head's node
    ...
    cluster.shutdown()

The head broker and the head's node run in this machine's own network; every added node
runs as a separate host when it can (root, `ip netns`: zray._netns), in its own network
namespace (its own address on a private bridge) with its own /dev/shm and temp dir, so
nodes share nothing but tcp. Otherwise they run on 127.0.0.1, each in its own session
directory. The cluster has its own CurveZMQ keys (secure=False: insecure tcp).
Everything it starts dies with it, or with this process.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import zmq

from . import _cluster, _keys, _netns, _node_resources, _session
from . import _protocol as P

__all__ = ["Cluster", "ClusterNode"]

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.05   # between head queries while waiting for nodes to register


@dataclass
class ClusterNode:
    """One node of a Cluster: its broker process and where it runs."""
    address: str                        # its IP
    process: subprocess.Popen
    session_dir: str
    host: Any = None                    # its _netns.Host, if it is a separate host
    resources: dict = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class Cluster:
    def __init__(self, initialize_head: bool = True, head_node_args: dict | None = None, *,
                 separate_hosts: bool | None = None, secure: bool = True) -> None:
        if separate_hosts is None:
            separate_hosts = _netns.available()
        elif separate_hosts and not _netns.available():
            raise RuntimeError(f"separate hosts are not available here: {_netns.why_unavailable()}")
        self.net = _netns.Network.create() if separate_hosts else None
        self.ip = self.net.address if self.net is not None else "127.0.0.1"
        self.root = tempfile.mkdtemp(prefix="zray-")            # 0700: the head's session
        self.keys_dir = os.path.join(self.root, "keys") if secure else None
        if self.keys_dir:
            _keys.create(self.keys_dir)
        self.head_process: subprocess.Popen | None = None
        self.head_address = ""
        self.head_node: ClusterNode | None = None
        self.nodes: list[ClusterNode] = []
        self._life_r, self._life_w = os.pipe()   # brokers stop when it closes
        os.set_inheritable(self._life_w, False)
        if initialize_head:
            try:
                self.add_node(**(head_node_args or {}))
            except BaseException:
                self.shutdown()
                raise

    @property
    def address(self) -> str:
        """"host:port" of the head, for zray.init(address=...) on this machine."""
        return self.head_address.removeprefix("tcp://")

    # -- nodes ---------------------------------------------------------------------
    def add_node(self, num_cpus: float = 1, num_gpus: float = 0, resources: dict | None = None,
                 object_store_memory: int | None = None, wait: bool = True) -> ClusterNode:
        """Start a node (the first one is the head's, with the head broker)."""
        res = _node_resources.requested(num_cpus, num_gpus, resources, object_store_memory)
        if self.head_process is None:
            self._start_head()
            node = self._start_node(res, None, head_node=True)
            self.head_node = node
        else:
            node = self._start_node(res, self.net.host() if self.net is not None else None)
        self.nodes.append(node)
        if wait:
            self.wait_for_nodes()
        return node

    def remove_node(self, node: ClusterNode, allow_graceful: bool = False) -> None:
        """Stop a node's broker: SIGKILL (a crash) unless allow_graceful (SIGTERM). Its
        workers die with it; the head notices the silence."""
        if node.alive:
            node.process.send_signal(signal.SIGTERM if allow_graceful else signal.SIGKILL)
            node.process.wait(STOP_TIMEOUT_S)
        if node in self.nodes:
            self.nodes.remove(node)

    def wait_for_nodes(self, timeout: float = START_TIMEOUT_S) -> None:
        """Return once the head lists every node of this cluster alive."""
        deadline = time.monotonic() + timeout
        want = sum(1 for n in self.nodes if n.alive)
        while True:
            alive = sum(1 for n in self._head_call("nodes") if n["Alive"])
            if alive >= want:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{alive} of {want} nodes registered within {timeout} s")
            time.sleep(POLL_S)

    # -- processes -------------------------------------------------------------------
    def _start_head(self) -> None:
        ready_r, ready_w = os.pipe()
        try:
            argv = _cluster.head_argv(self.root, self.ip, 0, self.keys_dir, ready_fd=ready_w,
                                      parent_fd=self._life_r)
            self.head_process = subprocess.Popen(argv, pass_fds=[ready_w, self._life_r],
                                                 env=_cluster.broker_env(),
                                                 stdin=subprocess.DEVNULL)
        finally:
            os.close(ready_w)
        try:
            self.head_address = _session.read_ready(ready_r, START_TIMEOUT_S, "the head broker")
        finally:
            os.close(ready_r)

    def _start_node(self, res: dict, host: Any, head_node: bool = False) -> ClusterNode:
        if host is None:
            # The others' sessions inside the head's: a driver joining the cluster on this
            # machine then finds the head's node, not the last one added.
            # (A random name: it tags the node's segments, which other sessions share /dev/shm with.)
            session = self.root if head_node else os.path.join(self.root, _session_name())
            ip = self.ip
        else:   # inside the host's own temp dir, which only that host sees
            session = os.path.join(host.tmpdir, _session_name())
            ip = host.address
        argv = _cluster.node_argv(session, self.head_address, res, ip, self.keys_dir,
                                  head_node=head_node, parent_fd=self._life_r)
        start = host.popen if host is not None else subprocess.Popen
        proc = start(argv, env=_cluster.broker_env(), pass_fds=[self._life_r],
                     stdin=subprocess.DEVNULL)
        return ClusterNode(ip, proc, session, host, res)

    def _head_call(self, op: str, args: list | None = None) -> Any:
        """A control call to the head, as a node would make it (with the cluster's keys)."""
        ctx: zmq.Context = zmq.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            if self.keys_dir:
                _keys.connect_as_client(sock, _keys.load(self.keys_dir))
            sock.connect(self.head_address)
            sock.send(P.encode(P.HEAD_CALL, b"", 1, op, args or []))
            if not sock.poll(int(START_TIMEOUT_S * 1000)):
                raise TimeoutError(f"the head did not answer {op!r}")
            _mtype, fields = P.decode(sock.recv())
            return fields[3]
        finally:
            sock.close()

    def shutdown(self) -> None:
        """Stop every broker (and so every worker) and remove what the cluster made.
        Idempotent; also safe after a failed start."""
        if self._life_w >= 0:
            os.close(self._life_w)   # EOF: every broker stops
            self._life_w = -1
        for proc in [n.process for n in self.nodes] + [self.head_process]:
            if proc is not None:
                try:
                    proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.nodes.clear()
        if self._life_r >= 0:
            os.close(self._life_r)
            self._life_r = -1
        if self.net is not None:
            self.net.destroy()
            self.net = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _session_name() -> str:
    return "zray-" + os.urandom(4).hex()
