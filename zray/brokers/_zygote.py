"""The fork server: a copy of the node broker made before it opened any socket,
which forks worker processes on request (a fork is ~2 ms; a fresh interpreter
that imports zray is ~80 ms, and actor creation is bounded by it).

    node broker --"wid actor_id gpus\\n"--> zygote --fork--> worker
    node broker <--------"wid pid\\n"------ zygote

The zygote exits when the node closes the command pipe (also when the node dies).
Children are reaped automatically (SIGCHLD ignored); the node watches each worker
through a pidfd.
"""
from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable


class Zygote:
    """The node's handle on its fork server."""

    def __init__(self, pid: int, cmd_fd: int, reply_fd: int) -> None:
        self.pid = pid
        self.cmd_fd = cmd_fd
        self.reply_fd = reply_fd
        self._buf = b""

    def spawn(self, wid: bytes, actor_id: bytes | None, gpus: list) -> None:
        line = b"%s %s %s\n" % (wid, actor_id.hex().encode() if actor_id else b"-",
                                ",".join(map(str, gpus)).encode() or b"-")
        os.write(self.cmd_fd, line)

    def read_replies(self) -> list[tuple[bytes, int]]:
        """(worker_id, pid) pairs the zygote has reported; [] and closed at EOF."""
        data = os.read(self.reply_fd, 65536)
        if not data:
            raise EOFError("the zygote exited")
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        out = []
        for line in lines:
            wid, pid = line.split()
            out.append((wid, int(pid)))
        return out

    def stop(self, timeout: float) -> None:
        for fd in (self.cmd_fd, self.reply_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        _wait_pid(self.pid, timeout)


def _wait_pid(pid: int, timeout: float) -> None:
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        fd = None
    if fd is not None:
        import select
        waiting = select.poll()   # (not select(): the fd may be past its range of 1,023)
        waiting.register(fd, select.POLLIN)
        ready = waiting.poll(timeout * 1000)
        os.close(fd)
        if not ready:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def start(worker_main: Callable[[bytes, bytes | None, list], None], keep_fds: list[int]) -> Zygote:
    """Fork the zygote now (before any zmq context exists in this process)."""
    cmd_r, cmd_w = os.pipe()
    rep_r, rep_w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(cmd_r)
        os.close(rep_w)
        os.set_inheritable(cmd_w, False)
        os.set_inheritable(rep_r, False)
        return Zygote(pid, cmd_w, rep_r)
    # -- in the zygote --
    os.close(cmd_w)
    os.close(rep_r)
    # Keep only what workers need. An inherited write end of the node's life pipe
    # kept that pipe open in every worker, so a worker forked as the node stopped
    # never saw EOF and lingered (30 s, until its own start timeout).
    keep = {0, 1, 2, cmd_r, rep_w, *keep_fds}
    for fd in [int(name) for name in os.listdir("/proc/self/fd")]:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    try:
        _serve(cmd_r, rep_w, worker_main, keep_fds)
    finally:
        os._exit(0)


def _serve(cmd_r: int, rep_w: int, worker_main: Callable, keep_fds: list[int]) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # warm the imports every worker needs, once, here
        import cloudpickle  # noqa: F401

        from .._runtime import worker  # noqa: F401
    except Exception:
        pass
    buf = b""
    while True:
        data = os.read(cmd_r, 65536)
        if not data:
            return
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            wid, actor_hex, gpus = line.split()
            actor_id = None if actor_hex == b"-" else bytes.fromhex(actor_hex.decode())
            gpu_ids = [] if gpus == b"-" else [int(g) for g in gpus.split(b",")]
            pid = os.fork()
            if pid == 0:
                os.close(cmd_r)
                os.close(rep_w)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                code = 0
                try:
                    worker_main(wid, actor_id, gpu_ids)
                except BaseException:
                    import traceback
                    traceback.print_exc()
                    code = 1
                finally:
                    sys.stdout.flush()
                    os._exit(code)
            os.write(rep_w, b"%s %d\n" % (wid, pid))
