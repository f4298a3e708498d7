"""The runtime's I/O thread: the only thread that touches the socket to the node
broker and the direct sockets it opens, fed by an outbox of typed commands.

    user threads --post(Op, ...) + eventfd wake--> outbox --I/O thread--> sockets
    sockets --poll--> I/O thread --> handlers (owner, lanes, worker hooks)

A loop of 10,000 .remote() calls becomes a few SUBMIT messages, not 10,000: the I/O
thread drains the whole outbox at each wake and batches consecutive tasks and results.
"""
from __future__ import annotations

import ctypes
import enum
import os
import select
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from .. import _protocol as P
from .._config import CONFIG
from .._limits import new_context
from .._log import get_logger

_log = get_logger("transport")


class Op(enum.IntEnum):
    """What a user thread asks the I/O thread to do (the outbox's commands)."""
    NODE = 1      # mtype, fields: a message for the node broker
    TASK = 2      # spec: a task to run (on a lease, or through the node)
    CALL = 3      # spec: an actor call (to the actor's socket)
    CANCEL = 4    # task_id, force
    KILL = 5      # actor_id, no_restart
    RELEASE = 6   # actor_id: the last handle to an actor this process owns is gone
    REPLY = 7     # reply_to, result: a direct call's result, back on the callers' endpoint
    OPEN = 8      # address, event: bind an actor's callers' endpoint on the I/O thread
    BARRIER = 9   # event: set once everything posted before it is sent
    LANES = 10    # actions: lanes' decisions a user thread made, for the I/O thread
    ADOPT = 11    # socket, spec, worker_id: a user thread's socket with a call in flight
                  #   (its get() timed out): the I/O thread reads the result and closes it
    ITEM = 12     # reply_to, item row: a generator's item, back on the callers' endpoint


class Claim:
    """A task or actor call on its way to the I/O thread, which the main thread may
    still take to send on its own socket when it blocks on the result (sync.py).
    Whoever takes it sets spec to None, under the lanes lock. seq is its place in the
    outbox: the main thread takes it only once everything posted before it has been
    handled (a kill, a cancel or an earlier call must not be overtaken)."""
    __slots__ = ("spec", "seq")

    def __init__(self, spec: list) -> None:
        self.spec: list | None = spec
        self.seq = 0


# -- a one-shot timer as a file descriptor (Linux timerfd), so that a thread can make
# the I/O thread wake a little later without waking it now (Python 3.11 has no
# os.timerfd_create; ctypes costs ~1 us a call).
_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.timerfd_settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec),
                                  ctypes.c_void_p]


class Timer:
    """arm(seconds): the fd becomes readable once, that long from now (re-arming moves
    the deadline); clear() after it fired. Thread-safe (the kernel keeps the state)."""

    def __init__(self) -> None:
        fd = _libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self.fd = fd

    def arm(self, seconds: float) -> None:
        spec = _Itimerspec()
        spec.it_value.tv_sec = int(seconds)
        spec.it_value.tv_nsec = max(1, int((seconds - int(seconds)) * 1e9))
        _libc.timerfd_settime(self.fd, 0, ctypes.byref(spec), None)

    def clear(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Transport:
    """The I/O thread, its sockets and its outbox. What it does with messages and
    commands is given to it (handlers); it only moves bytes and calls them."""

    # Made by the I/O thread when it starts (_main), and used by it alone: a socket
    # belongs to the thread that created it. Nothing touches them before start().
    ctx: zmq.Context
    node: zmq.Socket

    def __init__(self, address: str, ident: bytes, life_fd: int | None) -> None:
        self.address = address
        self.ident = ident
        self.life_fd = life_fd
        self.outbox: deque = deque()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._wake_pending = False
        self._timer = Timer()       # a wake-up a little later (nudge)
        self._timer_armed = False
        self._readers: dict[Any, Callable[[], None]] = {}
        self._stopping = False
        self._tid = 0
        self.main_tid = threading.main_thread().ident
        self.last_claim: Claim | None = None   # the main thread's latest task or call
        # Every queued command is numbered as it is queued; `handled` is the number of
        # the last one the I/O thread has carried out (or the main thread took).
        self._post_lock = threading.Lock()
        self._seq = 0
        self.handled = 0
        self.thread: threading.Thread | None = None
        self.poller = zmq.Poller()
        # Set by the runtime before start():
        self.on_message: Callable[[int, list], None] = lambda mtype, fields: None
        self.on_start: Callable[[], None] = lambda: None
        self.on_failure: Callable[[BaseException], None] = lambda exc: None
        self.route_task: Callable[[Claim], list | None] = lambda claim: claim.spec
        self.ops: dict[Op, Callable[..., None]] = {}
        self.before_flush: Callable[[], None] = lambda: None
        self.after_flush: Callable[[], None] = lambda: None
        self.next_timeout: Callable[[], float | None] = lambda: None
        self.on_close: Callable[[], None] = lambda: None

    # -- any thread ----------------------------------------------------------------
    def _put(self, op: Op, args: tuple) -> int:
        with self._post_lock:   # numbers in outbox order
            self._seq += 1
            self.outbox.append((op, args, self._seq))
            return self._seq

    def post(self, op: Op, *args: Any) -> None:
        """Queue a command for the I/O thread and wake it."""
        self._put(op, args)
        self.wake()

    def post_task(self, spec: list) -> None:
        """Queue a task (lease or node) that the main thread may still claim."""
        claim = Claim(spec)
        claim.seq = self._put(Op.TASK, (claim,))
        self._wake_or_wait(claim)

    def post_call(self, spec: list) -> None:
        """Queue an actor call (to the actor's socket) that the main thread may still claim."""
        claim = Claim(spec)
        claim.seq = self._put(Op.CALL, (claim,))
        self._wake_or_wait(claim)

    def _wake_or_wait(self, claim: Claim) -> None:
        """The main thread's call may be taken back by its get() right after (sync.py):
        the I/O thread is only nudged for it. A second one in a row is a burst: wake."""
        if threading.get_ident() != self.main_tid:
            self.wake()
            return
        previous, self.last_claim = self.last_claim, claim
        if previous is not None and previous.spec is not None:
            self.wake()
        else:
            self.nudge()

    def send(self, mtype: int, *fields: Any) -> None:
        """Queue a message for the node broker."""
        self._put(Op.NODE, (mtype, fields))
        self.wake()

    def wake(self) -> None:
        # The I/O thread itself never needs waking: it flushes until the outbox is empty.
        if not self._wake_pending and threading.get_ident() != self._tid:
            self._wake_pending = True
            try:
                os.eventfd_write(self._wake_fd, 1)
            except OSError:
                pass

    def nudge(self) -> None:
        """Make the I/O thread wake within CONFIG.lazy_wake_s, not now: for work that
        can wait that long (it saves the caller the GIL hand-off of a wake)."""
        if not self._wake_pending and not self._timer_armed and threading.get_ident() != self._tid:
            self._timer_armed = True
            self._timer.arm(CONFIG.lazy_wake_s)

    def hurry(self) -> None:
        """Wake the I/O thread now if anything waits in the outbox (before blocking)."""
        if self.outbox:
            self.wake()

    def start(self) -> None:
        self.thread = threading.Thread(target=self._main, name="zray-io", daemon=True)
        self.thread.start()

    def stop(self, timeout: float) -> None:
        """Send what is queued, close every socket, join the I/O thread. Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        self.wake()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)
        # Refs that outlive shutdown() still wake this fd when dropped: a write to its
        # number, reused by then (by a new zmq context's own eventfd, as in a notebook
        # kernel), made libzmq abort (mailbox.cpp:72). No wake-up after this.
        self._wake_pending = True
        fd, self._wake_fd = self._wake_fd, -1
        try:
            os.close(fd)
        except OSError:
            pass
        self._timer_armed = True   # no more arming either
        self._timer.close()

    # -- the I/O thread ------------------------------------------------------------
    def register(self, sock: Any, on_readable: Callable[[], None]) -> None:
        """Poll `sock` (a socket of this thread, or an fd) and call on_readable."""
        self.poller.register(sock, zmq.POLLIN)
        self._readers[sock] = on_readable

    def unregister(self, sock: Any) -> None:
        self.poller.unregister(sock)
        self._readers.pop(sock, None)

    def socket(self, kind: int) -> zmq.Socket:
        """A socket of this thread's context, with zray's options: no high-water mark
        (flow is bounded by the owners' outstanding work), no linger on close."""
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        return sock

    def _main(self) -> None:
        self._tid = threading.get_ident()
        self.ctx = new_context()   # MAX_SOCKETS from the fd limit: zmq's 1,023 lost calls
        node = self.node = self.socket(zmq.DEALER)
        node.setsockopt(zmq.ROUTING_ID, self.ident)
        node.setsockopt(zmq.LINGER, int(CONFIG.stop_grace_s * 1000))
        try:
            node.connect(self.address)
            self.poller.register(node, zmq.POLLIN)
            self.poller.register(self._wake_fd, zmq.POLLIN)
            self.poller.register(self._timer.fd, zmq.POLLIN)
            if self.life_fd is not None:
                self.poller.register(self.life_fd, zmq.POLLIN)
            self.on_start()
            self._loop(node)
        except Exception as exc:  # a bug here would hang every get(): make it loud
            if self._node_stopping():
                os._exit(1)   # (as at the life pipe's end below): nobody to tell, nothing to say
            _log.exception("runtime I/O thread failed")
            self.on_failure(exc)
        finally:
            self.on_close()
            node.close()
            self.ctx.term()

    def _node_stopping(self) -> bool:
        """This worker's I/O thread failed: True if its node is stopping (the life pipe
        ends within the node's stop time). A driver that exits right after starting
        actors stops its node while their workers start: the session directory, where a
        worker binds its socket, was gone, and each such worker printed two tracebacks."""
        if self.life_fd is None:
            return False
        ends = select.poll()
        ends.register(self.life_fd, select.POLLIN)
        return bool(ends.poll(CONFIG.stop_grace_s * 2 * 1000))

    def _loop(self, node: zmq.Socket) -> None:
        timeout = None
        while True:
            events = dict(self.poller.poll(timeout))
            if self._wake_fd in events:
                # Read first, then clear: a wake written between the two would
                # otherwise be swallowed with the flag left set (a lost wake-up).
                try:
                    os.eventfd_read(self._wake_fd)
                except BlockingIOError:
                    pass
                self._wake_pending = False
            if self._timer.fd in events:   # cleared before the flush, as the wake flag
                self._timer.clear()
                self._timer_armed = False
            if node in events:
                P.drain(node, self.on_message, _log, routed=False)
            if self.life_fd is not None and self.life_fd in events:
                os._exit(1)  # the node broker died: nobody is left to talk to
            if len(events) > 1 or node not in events:
                for sock in events:
                    reader = self._readers.get(sock)
                    if reader is not None:
                        reader()
            wait = self.next_timeout()   # timers first: what they queue is flushed now
            self.flush()
            timeout = None if wait is None else max(1, int(wait * 1000) + 1)
            if self._stopping:
                return

    def flush(self) -> None:
        """Carry out every queued command, and those they queue in turn."""
        self.before_flush()
        while True:
            self._flush_outbox()
            self.after_flush()
            if not self.outbox:
                return

    def _flush_outbox(self) -> None:
        """Send what is queued, batching tasks and results for the node."""
        out, node, route = self.outbox, self.node, self.route_task
        tasks: list = []
        while out:
            op, args, seq = out.popleft()
            if op is Op.TASK:   # (peers.route_task counts claims as handled)
                spec = route(args[0])
                if spec is not None:   # through the node
                    tasks.append(spec)
                    if len(tasks) >= CONFIG.max_batch:
                        node.send(P.encode(P.SUBMIT, tasks))
                        tasks = []
                continue
            if tasks:   # what came before this command leaves first
                node.send(P.encode(P.SUBMIT, tasks))
                tasks = []
            if op is Op.NODE:
                mtype, fields = args
                if mtype == P.RESULTS:
                    fields, seq = self._merge_results(fields, seq)
                node.send(P.encode(mtype, *fields))
            else:
                self.ops[op](*args)
            if seq and op is not Op.CALL:   # (peers.call counts claims as handled)
                self.handled = seq
        if tasks:
            node.send(P.encode(P.SUBMIT, tasks))

    def _merge_results(self, fields: tuple, seq: int) -> tuple[tuple, int]:
        """Consecutive RESULTS messages as one; the number of the last one merged."""
        out = self.outbox
        items = list(fields[0])
        while out and out[0][0] is Op.NODE and out[0][1][0] == P.RESULTS \
                and len(items) < CONFIG.max_batch:
            _op, args, seq = out.popleft()
            items.extend(args[1][0])
        return (items,), seq
