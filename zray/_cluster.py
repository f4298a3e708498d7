"""The embedded local cluster that zray.init() starts: a head broker and a node
broker as child processes, in a 0700 session directory, tied to this process's
life by a pipe (if this process dies, even by SIGKILL, the pipe closes and the
brokers, then their workers, exit and remove the directory).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from ._config import CONFIG


class LocalCluster:
    def __init__(self, resources: dict, num_workers: int | None = None,
                 dashboard: tuple[str, int | None] | None = None) -> None:
        self.resources = resources
        self.num_workers = num_workers
        self.dashboard = dashboard      # (host, port or None: 8265 or the next free one)
        self.dashboard_url: str | None = None
        self.session_dir = tempfile.mkdtemp(prefix="zray-")   # mode 0700
        self.node_id = os.urandom(16)
        self.head_address = f"ipc://{self.session_dir}/head.sock"
        self.node_address = f"ipc://{self.session_dir}/node.sock"
        self._procs: list[subprocess.Popen] = []
        self._life_w: int | None = None

    def start(self) -> None:
        life_r, self._life_w = os.pipe()
        os.set_inheritable(self._life_w, False)
        env = broker_env()   # workers are forked from the node broker: they inherit it
        listener = None
        try:
            common = ["--session-dir", self.session_dir, "--parent-fd", str(life_r), "--cleanup-dir"]
            head_cmd, head_fds = [sys.executable, "-m", "zray.brokers.head", *common], [life_r]
            if self.dashboard is not None:
                # Bound here, served by the head: its address is known now, nothing waits.
                from . import dashboard
                listener = dashboard.bind(*self.dashboard)
                self.dashboard_url = dashboard.url_of(listener)
                head_cmd += ["--dashboard-fd", str(listener.fileno())]
                head_fds.append(listener.fileno())
            self._procs.append(subprocess.Popen(head_cmd, pass_fds=head_fds, env=env,
                                                stdin=subprocess.DEVNULL))
            node_cmd = [sys.executable, "-m", "zray.brokers.node", *common, "--head", self.head_address,
                        "--resources", json.dumps(self.resources), "--node-id", self.node_id.hex()]
            if self.num_workers is not None:
                node_cmd += ["--workers", str(self.num_workers)]
            self._procs.append(subprocess.Popen(node_cmd, pass_fds=[life_r], env=env,
                                                stdin=subprocess.DEVNULL))
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(life_r)
            if listener is not None:
                listener.close()   # the head has its own copy

    def stop(self) -> None:
        """Stop both brokers (and so every worker) and remove the session dir. Idempotent."""
        if self._life_w is not None:
            os.close(self._life_w)   # EOF on the life pipe: the brokers shut down
            self._life_w = None
        for proc in self._procs:
            try:
                proc.wait(CONFIG.stop_grace_s * 2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        shutil.rmtree(self.session_dir, ignore_errors=True)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]


def _script_directory() -> str | None:
    """The driver script's directory if it is on the driver's sys.path: as in Ray, the
    workers can then import the modules that sit next to the script (`from helpers
    import Box` in main.py). The working directory is on their path already."""
    argv0 = sys.argv[0] if sys.argv else ""
    if not argv0 or argv0 == "-c" or not os.path.exists(argv0):
        return None
    script_dir = os.path.dirname(os.path.realpath(argv0))
    on_path = {os.path.realpath(p or os.curdir) for p in sys.path}
    return script_dir if script_dir in on_path else None


# -- brokers of a cluster (zray start, zray.testing): the command lines -----------------
def head_argv(session_dir: str, host: str, port: int, keys_dir: str | None,
              *, ready_fd: int | None = None, parent_fd: int | None = None,
              dashboard_fd: int | None = None) -> list[str]:
    """The head broker of a tcp cluster listening at host:port (keys_dir None: insecure;
    port 0: any free port, written to ready_fd)."""
    argv = [sys.executable, "-m", "zray.brokers.head", "--session-dir", session_dir,
            "--host", host, "--port", str(port)]
    argv += ["--keys", keys_dir] if keys_dir else ["--insecure"]
    if ready_fd is not None:
        argv += ["--ready-fd", str(ready_fd)]
    if parent_fd is not None:
        argv += ["--parent-fd", str(parent_fd)]
    if dashboard_fd is not None:
        argv += ["--dashboard-fd", str(dashboard_fd)]
    return argv


def node_argv(session_dir: str, head: str, resources: dict, node_ip: str, keys_dir: str | None,
              *, head_node: bool = False, port: int = 0, parent_fd: int | None = None,
              ready_fd: int | None = None) -> list[str]:
    """A node broker joining the head at `head` (tcp://host:port), reachable at node_ip."""
    argv = [sys.executable, "-m", "zray.brokers.node", "--session-dir", session_dir,
            "--head", head, "--resources", json.dumps(resources), "--node-ip", node_ip,
            "--port", str(port)]
    argv += ["--keys", keys_dir] if keys_dir else ["--insecure"]
    if head_node:
        argv.append("--head-node")
    if parent_fd is not None:
        argv += ["--parent-fd", str(parent_fd)]
    if ready_fd is not None:
        argv += ["--ready-fd", str(ready_fd)]
    return argv


def broker_env() -> dict:
    """The environment brokers start with: the driver's, unbuffered, and with the driver
    script's directory on the path (see _script_directory)."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    code_dir = _script_directory()
    if code_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [code_dir, env.get("PYTHONPATH")]))
    return env
