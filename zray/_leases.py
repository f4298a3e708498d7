"""Task leases: an owner that submits tasks of one shape one after another sends
them straight to a worker the node lent it (Ray's direct task transport), 2 hops
per task instead of 4. Runs on the runtime's I/O thread.

    owner --LEASE(shape)--> node --LEASED(worker, address)--> owner
    owner DEALER --SUBMIT(1 task)--> worker ROUTER --RESULTS--> owner DEALER
    owner --UNLEASE--> node          (idle for lease_linger_s, or a burst began)

Policy: a lease carries one task at a time and is used only while no other task of
that shape is in flight; a burst of submits goes through the node, which pipelines
it over every worker, and the lease is given back so as not to hold a worker idle.
A refused request is not repeated for lease_linger_s.
"""
from __future__ import annotations

import pickle
import time
from typing import Callable

import zmq

from . import _protocol as P
from ._config import CONFIG
from ._direct import recv_results
from .exceptions import TaskCancelledError, WorkerCrashedError


class _Lease:
    __slots__ = ("key", "wid", "sock", "task", "last_used", "refused_at", "funcs")

    def __init__(self, key: tuple) -> None:
        self.key = key
        self.wid: bytes | None = None     # None while requested or refused
        self.sock: zmq.Socket | None = None
        self.task: list | None = None     # the task sent on it, no result yet
        self.last_used = 0.0
        self.refused_at: float | None = None
        self.funcs: set[bytes] = set()    # function ids this worker was sent here


def shape_key(res: dict) -> tuple:
    return tuple(sorted(res.items()))


class TaskLeases:
    def __init__(self, ctx: zmq.Context, poller: zmq.Poller, ident: bytes, node: zmq.Socket,
                 on_result: Callable[[list], None], blobs: dict[bytes, bytes]) -> None:
        self.blobs = blobs    # func_id -> pickled function, of this process's functions
        self.ctx, self.poller, self.ident, self.node = ctx, poller, ident, node
        self.on_result = on_result
        self.leases: dict[tuple, _Lease] = {}
        self.by_sock: dict[zmq.Socket, _Lease] = {}
        self.by_wid: dict[bytes, _Lease] = {}
        self.node_inflight: dict[tuple, int] = {}   # tasks of a shape sent via the node
        self.task_key: dict[bytes, tuple] = {}       # node-path task -> its shape
        self.cancelled: set[bytes] = set()
        self.linger = CONFIG.lease_linger_s

    # -- sending -----------------------------------------------------------------
    def route(self, spec: list) -> bool:
        """Send `spec` on a lease if that is the right lane (True), else count it as
        going through the node (False)."""
        res = spec[P.T_RES]
        if res.get("GPU"):
            return False
        key = shape_key(res)
        lease = self.leases.get(key)
        busy = self.node_inflight.get(key, 0)
        if lease is not None and lease.sock is not None and lease.task is None and not busy:
            lease.task = spec
            fid = spec[P.T_FUNC]
            if fid in lease.funcs:
                lease.sock.send(P.encode(P.SUBMIT, [spec]))
            else:  # first use on this worker: the function goes along, once
                lease.funcs.add(fid)
                lease.sock.send(P.encode(P.TASKS, [spec], {fid: self.blobs[fid]}))
            return True
        self.node_inflight[key] = busy + 1
        self.task_key[spec[P.T_ID]] = key
        if lease is None:
            if not busy:
                self._request(key, res)
        elif lease.sock is not None and lease.task is None:
            self._give_back(lease)          # a burst: let the node use every worker
        elif lease.refused_at is not None and not busy and \
                time.monotonic() - lease.refused_at > self.linger:
            self._request(key, res)
        return False

    def _request(self, key: tuple, res: dict) -> None:
        lease = self.leases.get(key) or _Lease(key)
        lease.refused_at = None
        self.leases[key] = lease
        self.node.send(P.encode(P.LEASE, list(key), res))

    # -- events ------------------------------------------------------------------
    def on_node_result(self, task_id: bytes) -> None:
        key = self.task_key.pop(task_id, None)
        if key is not None:
            n = self.node_inflight[key] - 1
            if n:
                self.node_inflight[key] = n
            else:
                del self.node_inflight[key]

    def on_leased(self, key_list: list, wid: bytes, address: str) -> None:
        key = tuple(tuple(kv) for kv in key_list)
        lease = self.leases.get(key)
        if not address:
            if lease is not None and lease.sock is None:
                lease.refused_at = time.monotonic()
            return
        if lease is None or lease.sock is not None:  # not asked for (any more)
            self.node.send(P.encode(P.UNLEASE, wid, False))
            return
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, self.ident)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(address)
        self.poller.register(sock, zmq.POLLIN)
        lease.wid, lease.sock, lease.last_used = wid, sock, time.monotonic()
        self.by_sock[sock] = lease
        self.by_wid[wid] = lease

    def on_readable(self, sock: zmq.Socket) -> None:
        lease = self.by_sock.get(sock)
        if lease is None:
            return
        recv_results(sock, lambda results: self._on_results(lease, results))

    def _on_results(self, lease: _Lease, results: list) -> None:
        for r in results:
            if lease.task is not None and lease.task[P.T_ID] == r[P.R_TASK]:
                lease.task = None
                lease.last_used = time.monotonic()
            self.on_result(r)
        if lease.task is None and lease.sock is not None and self.node_inflight.get(lease.key):
            self._give_back(lease)

    def on_lost(self, wid: bytes) -> None:
        """The leased worker died: retry its task through the node, or fail it."""
        lease = self.by_wid.get(wid)
        if lease is None:
            return
        spec = lease.task
        self._close(lease)
        if spec is None:
            return
        if spec[P.T_ID] in self.cancelled:
            self.cancelled.discard(spec[P.T_ID])
            self._fail(spec, TaskCancelledError(spec[P.T_ID].hex()))
        elif P.spend_retry(spec):
            key = shape_key(spec[P.T_RES])
            self.node_inflight[key] = self.node_inflight.get(key, 0) + 1
            self.task_key[spec[P.T_ID]] = key
            self.node.send(P.encode(P.SUBMIT, [spec]))
        else:
            self._fail(spec, WorkerCrashedError(
                f"The worker running task {spec[P.T_NAME]} died unexpectedly and it has no "
                "retries left (max_retries)."))

    def cancel(self, task_id: bytes, force: bool) -> bool:
        for lease in self.leases.values():
            if lease.task is not None and lease.task[P.T_ID] == task_id and lease.sock is not None:
                if force:
                    self.cancelled.add(task_id)
                    self.node.send(P.encode(P.UNLEASE, lease.wid, True))
                else:
                    lease.sock.send(P.encode(P.CANCEL, task_id, False))
                return True
        return False

    def tick(self, now: float) -> float | None:
        """Give back leases idle for lease_linger_s; seconds until the next check."""
        nxt = None
        for lease in list(self.leases.values()):
            if lease.sock is None or lease.task is not None:
                continue
            left = lease.last_used + self.linger - now
            if left <= 0:
                self._give_back(lease)
            elif nxt is None or left < nxt:
                nxt = left
        return nxt

    # -- helpers -----------------------------------------------------------------
    def _give_back(self, lease: _Lease) -> None:
        self.node.send(P.encode(P.UNLEASE, lease.wid, False))
        self._close(lease)

    def _close(self, lease: _Lease) -> None:
        if lease.sock is not None:
            self.poller.unregister(lease.sock)
            self.by_sock.pop(lease.sock, None)
            lease.sock.close()
        self.by_wid.pop(lease.wid, None)
        self.leases.pop(lease.key, None)
        lease.sock, lease.wid = None, None

    def _fail(self, spec: list, exc: BaseException) -> None:
        self.on_result(P.error_result(spec, pickle.dumps(exc)))

    def close(self) -> None:
        for lease in list(self.leases.values()):
            self._close(lease)
