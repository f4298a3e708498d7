"""A node's drivers, watched: a job ends when its driver says so (JOB_END, at
shutdown) or its process ends (a pidfd in the node's poller), and then its
non-detached actors and its queued tasks end on every node of the cluster (as in Ray:
an actor lives no longer than its job, unless lifetime="detached"). Likewise a process's
non-detached actors end when it dies (an actor lives no longer than its owner)."""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from .. import _protocol as P
from ._actions import FAIL, UNSCHEDULABLE


class Jobs:
    def __init__(self, node: Any) -> None:
        self.n = node
        self._fds: dict[int, bytes] = {}      # pidfd -> the driver's identity
        self._job: dict[bytes, bytes] = {}    # driver identity -> its job id
        self.ended: set[bytes] = set()        # job ids ended (a late message is no revival)

    def watch(self, ident: bytes, pid: Any, job_id: Any) -> None:
        """A driver said hello: its job ends with its process."""
        if type(job_id) is not bytes or not job_id or ident in self._job:
            return
        self._job[ident] = job_id
        try:
            fd = os.pidfd_open(pid) if type(pid) is int and pid > 0 else -1
        except OSError:   # gone already, or a pid of another pid namespace
            fd = -1
        if fd >= 0:
            self._fds[fd] = ident
            self.n.poller.register(fd, self.n.zmq.POLLIN)

    def handle_fd(self, fd: int) -> bool:
        """True if `fd` was a driver's (its process ended: its job ends)."""
        ident = self._fds.get(fd)
        if ident is None:
            return False
        self.driver_left(ident)
        return True

    def driver_left(self, ident: bytes) -> None:
        """The driver is gone (or said JOB_END): its job ends here and on the other nodes."""
        for fd in [fd for fd, who in self._fds.items() if who == ident]:
            del self._fds[fd]
            self.n.poller.unregister(fd)
            os.close(fd)
        job_id = self._job.pop(ident, None)
        self.n.clients.drivers.pop(ident, None)
        for wid in self.n.sched.leases_of(ident):   # (running its tasks, or idle)
            self.n._do(self.n.sched.unlease(wid, time.monotonic(), kill=True))
        self.n.objects.process_gone(ident)   # (what it borrowed is released)
        if job_id is None or job_id in self.ended:
            return
        self.n.cluster.to_other_nodes(ident, P.encode(P.JOB_END, job_id))
        self.end(job_id)

    def on_job_end(self, ident: bytes, f: list) -> None:
        """JOB_END from a driver of this node (it stops), or relayed by another node."""
        if type(f[0]) is not bytes:
            return
        if ident in self._job and not self.n.cluster.relayed:
            self.driver_left(ident)
        elif self.n.cluster.relayed:
            self.end(f[0])

    def end(self, job_id: bytes) -> None:
        """End the job's non-detached actors and queued tasks on this node."""
        self.ended.add(job_id)
        why = "its job ended (its driver exited)"
        mailboxes = self.n.sched.mailboxes
        for aid, actor in list(mailboxes.actors.items()):
            spec = actor.spec
            if not spec[P.A_DETACHED] and _job_of(spec[P.A_JOB]) == job_id:
                self.n._do(mailboxes.kill(aid, True, why))
        of_job: Callable[[list], bool] = lambda s: _job_of(s[P.T_JOB]) == job_id  # noqa: E731
        dropped = self.n.sched.tasks.drop_queued_specs(of_job)
        self.n._do([(FAIL, spec, UNSCHEDULABLE, why) for spec in dropped])
        self.n._do(self.n.sched.tasks.kill_running(of_job))   # (as Ray: not left running)

    def owner_gone(self, ident: bytes) -> None:
        """A process of this node died (`ident`): the non-detached actors it created end
        with it, here and on the other nodes (as in Ray, an actor lives no longer than
        its owner: an actor's children die with it)."""
        self.n.cluster.to_other_nodes(ident, P.encode(P.OWNER_GONE, ident))
        self._end_owned(ident)

    def on_owner_gone(self, ident: bytes, f: list) -> None:
        """OWNER_GONE relayed by another node (a client cannot send it itself)."""
        if self.n.cluster.relayed and type(f[0]) is bytes:
            self._end_owned(f[0])

    def _end_owned(self, owner: bytes) -> None:
        why = "its owner (the process that created it) died"
        mailboxes = self.n.sched.mailboxes
        for aid, actor in list(mailboxes.actors.items()):
            spec = actor.spec
            if spec[P.A_OWNER] == owner and not spec[P.A_DETACHED]:
                self.n._do(mailboxes.kill(aid, True, why))

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()


def _job_of(job: Any) -> Any:
    return job[0] if type(job) is list and job else None
