"""The per-process runtime, composed of its parts: the transport (I/O thread and
sockets), the owner (objects, futures), the submitter (arguments, dependencies),
the lanes and peers (direct sockets to actors and leased workers), and for a worker
its callers' endpoint. This module wires them and handles what the node sends.
"""
from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import _context, _progress
from .. import _protocol as P
from .._config import CONFIG
from .._log import get_logger
from .._object_store import STORE
from ..exceptions import GetTimeoutError, LocalRayletDiedError, RaySystemError
from .endpoint import Endpoint
from .lanes import Lanes
from .owner import Owner
from .peers import Peers
from .room import RoomAsks
from .submit import Submitter
from .sync import SyncLane
from .transport import Claim, Op, Transport

_log = get_logger("runtime")


def current() -> Runtime:
    """This process's runtime; RaySystemError if zray is not initialised here."""
    rt = _context.runtime()
    if rt is None:
        raise RaySystemError("zray is not initialised in this process; call zray.init() first")
    return rt


def set_current(rt: Runtime | None) -> None:
    _context.set_runtime(rt)


class Runtime:
    """One per process (driver or worker): see the module docstring."""

    def __init__(self, address: str, kind: str, job_id: bytes, node_id: bytes,
                 info: dict | None = None, life_fd: int | None = None,
                 direct_address: str | None = None) -> None:
        self.address, self.kind = address, kind
        self.ids = P.IdSource()
        self.ident = P.client_ident(b"D" if kind == "driver" else b"W", node_id, self.ids.prefix)
        self.info = dict(info or {})
        self.namespace: str = self.info.get("namespace") or ""
        # [job_id, namespace] stamped on every task and actor this process submits;
        # a worker takes it over from the task or actor it runs.
        self.job_id = job_id
        self.job: list = [job_id, self.namespace]
        self.node_id: bytes = b""
        self.node_info: dict = {}
        self.t = Transport(address, self.ident, life_fd)
        self.owner = Owner(self.ident, self.t, self.ids)
        self.submitter = Submitter(self.owner, self.t)
        self.lanes = Lanes(CONFIG.lease_linger_s)
        self.peers = Peers(self.t, self.lanes, self.submitter.blobs, self._on_direct_result)
        self.peers.on_items = self.owner.streams.on_items
        self.sync = SyncLane(self.t, self.peers, self.owner)
        self.room = RoomAsks(self.t)   # a full /dev/shm: the node spills first
        self.direct_address = direct_address   # a task worker's callers' socket
        self.endpoint: Endpoint | None = None
        self._head_calls: dict[int, list] = {}
        self._head_seq = itertools.count(1)
        self._welcome = threading.Event()
        self._dead: BaseException | None = None
        self._job_ended = False
        # Worker hooks, called in the I/O thread.
        self.on_tasks: Callable[[list, dict], None] | None = None
        self.on_cancel: Callable[[bytes], None] | None = None
        self.on_shutdown: Callable[[], None] | None = None
        self.on_create_actor: Callable[[list], None] | None = None
        self.on_gen_ack: Callable[[list], None] | None = None   # a worker's (streams.py)
        self._wire()

    def _wire(self) -> None:
        t = self.t
        t.on_start, t.on_failure, t.on_close = self._on_start, self._on_failure, self._on_close
        t.on_message = self._on_message
        t.route_task = self.peers.route_task if CONFIG.lease_linger_s > 0 else self._through_node
        t.before_flush = self._before_flush
        t.after_flush = self._after_flush
        t.next_timeout = self._next_timeout
        t.ops = {Op.CALL: self.peers.call, Op.CANCEL: self.peers.cancel, Op.KILL: self.peers.kill,
                 Op.RELEASE: self.peers.release, Op.REPLY: self._reply, Op.OPEN: self._open,
                 Op.BARRIER: lambda event: event.set(), Op.LANES: self.peers.do,
                 Op.ADOPT: self.peers.adopt, Op.ITEM: self._reply_item}
        self._handlers = {
            P.RESULTS: self._on_results, P.OBJECT: self.owner.on_object,
            P.FETCH: self.owner.on_fetch, P.BORROW: self.owner.on_borrow,
            P.HEAD_REPLY: self._on_head_reply, P.LOG: self._on_log,
            P.WARN: lambda f: _log.warning(f[1]), P.STATS: self._on_stats,
            P.LEASED: self.peers.on_leased, P.LEASE_LOST: self.peers.on_lease_lost,
            P.ACTOR_ADDR: self.peers.on_actor_address, P.WELCOME: self._on_welcome,
            P.SHUTDOWN: self._on_node_shutdown, P.TASKS: self._on_tasks,
            P.ROOM_MADE: self.room.on_made, P.ITEMS: lambda f: self.owner.streams.on_items(f[0]),
            P.GEN_ACK: lambda f: self.on_gen_ack and self.on_gen_ack(f),
            P.CANCEL: lambda f: self.on_cancel and self.on_cancel(f[0]),
            P.CREATE_ACTOR: lambda f: self.on_create_actor and self.on_create_actor(f[0]),
        }

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float) -> None:
        self.t.start()
        if not self._welcome.wait(timeout):
            self.stop()
            raise RaySystemError(f"the node broker at {self.address} did not answer within {timeout:.1f} s")
        if self._dead is not None:
            raise RaySystemError(f"could not connect to the node broker: {self._dead}")

    def drain(self, timeout: float) -> None:
        """Send what is queued, then wait up to `timeout` s for every task and call this
        process made to answer (a driver at exit, as Ray's last tasks get to run)."""
        done = threading.Event()
        self.owner.on_idle = done.set
        try:
            if self.owner.busy() and self._dead is None:
                self.t.wake()
                done.wait(timeout)
        finally:
            self.owner.on_idle = None

    def stop(self, timeout: float = 2.0) -> None:
        """Flush what is queued, close the sockets, join the I/O thread. Idempotent."""
        if self.kind == "driver" and self.job_id and self._dead is None and not self._job_ended:
            # Its job ends: its non-detached actors and queued tasks, on every node.
            self._job_ended = True
            self.t.send(P.JOB_END, self.job_id)
            self.submitter.forget_all()   # and the node may drop its functions' blobs
        self.t.stop(timeout)
        if threading.get_ident() == self.t.main_tid:   # the sync lane's sockets are its own
            self.sync.close()

    def _on_start(self) -> None:
        if self.direct_address:   # bound before HELLO: the node hands the address out
            self._open(self.direct_address, None)
            self.info["direct"] = self.direct_address
        self.t.node.send(P.encode(P.HELLO, self.kind, os.getpid(), self.job_id, self.info))

    def _on_failure(self, exc: BaseException) -> None:
        self._dead = exc
        self._fail_everything(exc)

    def _on_close(self) -> None:
        self._welcome.set()
        self.peers.close()
        if self.endpoint is not None:
            self.endpoint.close()

    def _fail_everything(self, exc: BaseException) -> None:
        self.owner.fail_pending(LocalRayletDiedError(f"the connection to the node broker failed: {exc}"))
        for call in list(self._head_calls.values()):
            call[1], call[2] = False, RaySystemError(str(exc))
            call[0].set()

    # -- the I/O thread: flushing ----------------------------------------------------
    def _before_flush(self) -> None:
        # Refs dropped since the last flush first: what they free is told in this flush
        # (this thread frees it, and wakes nobody to flush again).
        self.owner.drain_released()
        if STORE.added or STORE.freed or STORE.touched:
            # The node keeps the store's account; it goes first, so that whatever
            # this flush sends through the node is handled after it.
            added, freed, touched = STORE.added, STORE.freed, STORE.touched
            news = [list(added.popleft()) for _ in range(len(added))]
            gone = [freed.popleft() for _ in range(len(freed))]
            used = [touched.popleft() for _ in range(len(touched))]
            self.t.node.send(P.encode(P.STORE, news, gone, used))

    def _next_timeout(self) -> float | None:
        """Seconds until the lanes or the submitter have something due (None: nothing)."""
        wait, free = self.peers.tick(), self.submitter.tick(time.monotonic())
        return wait if free is None else free if wait is None else min(wait, free)

    def _through_node(self, claim: Claim) -> list | None:
        """route_task with leases off (lease_linger_s 0): every task goes through the node."""
        with self.peers.lock:   # taken as Peers.route_task takes it (see Claim)
            spec, claim.spec = claim.spec, None
        return spec

    def _after_flush(self) -> None:
        self.peers.flush()
        if self.endpoint is not None:
            self.endpoint.flush()

    def _open(self, address: str, bound: threading.Event | None) -> None:
        """Bind the callers' endpoint of this worker on the I/O thread."""
        on_tasks, on_cancel, on_shutdown = self.on_tasks, self.on_cancel, self.on_shutdown
        # worker.main sets a worker's hooks before start(); this runs after, on the I/O thread.
        assert on_tasks is not None and on_cancel is not None and on_shutdown is not None, \
            "a worker's hooks are set before its endpoint opens"
        endpoint = self.endpoint = Endpoint(self.t.ctx, address, on_tasks, on_cancel, on_shutdown)
        self.t.register(endpoint.sock, endpoint.read)
        if bound is not None:
            bound.set()

    def _reply(self, to: bytes, result: list) -> None:
        endpoint = self.endpoint
        assert endpoint is not None, "REPLY answers a call that came through the endpoint"
        endpoint.reply(to, result)

    def _reply_item(self, to: bytes, row: list) -> None:
        endpoint = self.endpoint
        assert endpoint is not None, "ITEM answers a call that came through the endpoint"
        endpoint.send_items(to, [row])

    # -- the I/O thread: what the node sends -----------------------------------------
    def _on_message(self, mtype: int, fields: list) -> None:
        handler = self._handlers.get(mtype)
        if handler is None:
            raise P.ProtocolError(f"{P.NAMES[mtype]} is not a message for a client")
        handler(fields)

    def _on_results(self, f: list) -> None:
        for r in f[0]:
            self.peers.decide(self.lanes.node_result, r[P.R_TASK])
            self.owner.on_result(r)

    def _on_direct_result(self, r: list) -> None:
        self.owner.on_result(r, direct=True)

    def _on_tasks(self, f: list) -> None:
        if self.on_tasks is not None:
            self.on_tasks(f[0], f[1])

    def _on_welcome(self, f: list) -> None:
        self.node_id, self.node_info = f[0], f[1]
        STORE.configure(self.node_info.get("session_dir", ""),
                        int(self.node_info.get("store_capacity", 0)))
        STORE.on_change = self.t.wake
        STORE.make_room = self.room.ask
        if self.kind == "driver":
            self._watch_node(self.node_info.get("pid"))
        self._welcome.set()

    def _watch_node(self, pid: Any) -> None:
        """A driver learns of its node broker's death at once (a pidfd in the I/O
        thread's poller): what it waits for fails, and so does what it asks later.
        (A worker dies with its node: life_fd.)"""
        try:
            fd = os.pidfd_open(pid) if type(pid) is int and pid > 0 else -1
        except OSError:   # another pid namespace (a node on another host): not watched
            return
        if fd < 0:
            return

        def gone() -> None:
            self.t.unregister(fd)
            os.close(fd)
            err = LocalRayletDiedError(
                f"zray's node broker (pid {pid}) died: this driver cannot go on. Call "
                "zray.shutdown(), then zray.init() again (the node's log is in "
                f"{self.node_info.get('session_dir', 'its session directory')}).")
            self.owner.broken = err
            self._on_failure(err)
        self.t.register(fd, gone)

    def _on_node_shutdown(self, f: list) -> None:
        if self.on_shutdown is not None:
            self.on_shutdown()
        else:
            self._fail_everything(RuntimeError(f"the cluster shut down ({f[0]})"))

    def _on_log(self, f: list) -> None:
        if f[1].startswith(_progress.MAGIC) and _progress.on_line(f[0], f[1]):
            return   # a tqdm_ray bar's state, shown as a bar (zray/_progress.py)
        stream = sys.stderr if f[2] else sys.stdout
        try:
            with _progress.hidden():   # bars on a terminal make way (a no-op without bars)
                stream.write("".join(f"{f[0]} {line}\n" for line in f[1].splitlines()))
                stream.flush()
        except Exception:
            pass

    def _on_stats(self, f: list) -> None:
        self.t.send(P.STATS, f[0], self.owner.object_rows())

    def _on_head_reply(self, f: list) -> None:
        call = self._head_calls.pop(f[1], None)
        if call is not None:
            call[1], call[2] = f[2], f[3]
            call[0].set()

    # -- user threads --------------------------------------------------------------------
    def get(self, refs: list, timeout: float | None) -> list:
        """The values of `refs`. The main thread waiting on the task or call it just made
        runs it on its sync lane (sync.py)."""
        claim = self.t.last_claim
        if claim is not None and claim.spec is not None and len(refs) == 1 \
                and refs[0]._id[:16] == claim.spec[P.T_ID] and claim.spec[P.T_NRET] >= 0 \
                and threading.get_ident() == self.t.main_tid:
            deadline = None if timeout is None else time.monotonic() + timeout
            if not self.sync.try_get(claim, timeout) and deadline is not None:
                timeout = max(0.0, deadline - time.monotonic())
        return self.owner.get(refs, timeout)

    def send(self, mtype: int, *fields: Any) -> None:
        """Queue a message for the node broker (any thread)."""
        self.t.send(mtype, *fields)

    def cancel(self, task_id: bytes, force: bool) -> None:
        """Cancel a task (through the node or its lease) or an actor call (its actor)."""
        self.t.post(Op.CANCEL, task_id, force)

    def kill_actor(self, actor_id: bytes, no_restart: bool) -> None:
        """Kill an actor; this process's later calls to it fail at once (or wait for
        its restart), not only once the node has seen it die."""
        self.t.post(Op.KILL, actor_id, no_restart)

    def flush_sync(self, timeout: float = 10.0) -> None:
        """Return once everything queued so far has been sent (no wait if nothing is)."""
        if not self.t.outbox:
            return
        sent = threading.Event()
        self.t.post(Op.BARRIER, sent)
        sent.wait(timeout)

    def open_endpoint(self, address: str, timeout: float = 10.0) -> None:
        """Have the I/O thread bind and serve an actor's callers' socket."""
        bound = threading.Event()
        self.t.post(Op.OPEN, address, bound)
        if not bound.wait(timeout):
            raise RaySystemError(f"the I/O thread did not bind {address} in {timeout} s")

    def reply(self, to: bytes, result: list) -> None:
        """Send the result of a call that came straight from its caller back that way."""
        self.t.post(Op.REPLY, to, result)

    def reply_item(self, to: bytes, row: list) -> None:
        """reply() for an item a generator yielded (streams.py)."""
        self.t.post(Op.ITEM, to, row)

    def head_call(self, op: str, args: list, timeout: float | None = 10.0) -> Any:
        """A request to the head broker's control store, through the node."""
        seq = next(self._head_seq)
        call: list = [threading.Event(), None, None]   # event, ok, value or error
        self._head_calls[seq] = call
        self.t.send(P.HEAD_CALL, self.ident, seq, op, args)
        if not call[0].wait(timeout):
            self._head_calls.pop(seq, None)
            raise GetTimeoutError(f"the head broker did not answer {op!r} within {timeout} s")
        if not call[1]:
            if isinstance(call[2], BaseException):
                raise call[2]
            raise ValueError(call[2])
        return call[2]

