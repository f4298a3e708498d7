"""The node broker: one per machine, the local scheduler. A thin loop (poll, decode,
decide with LocalScheduler, send) around one ROUTER socket that every local driver
and worker connects to, and one DEALER to the head broker.

Run as `python -m zray.brokers.node` (by zray.init() or `zray start`).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import signal
import sys
import time
from collections import defaultdict

from .. import _protocol as P
from .._config import CONFIG
from .._log import get_logger
from .._object_store import NodeStore, session_tag, sweep
from ..exceptions import (
    ActorDiedError,
    OwnerDiedError,
    ProtocolError,
    RaySystemError,
    TaskCancelledError,
    WorkerCrashedError,
)
from . import _scheduling as S
from . import _zygote


def _worker_entry(address: str, life_fd: int):
    def run(wid: bytes, actor_id: bytes | None, gpus: list) -> None:
        from .. import _worker
        _worker.main(address, wid, actor_id, gpus, life_fd)
    return run


class NodeBroker:
    def __init__(self, session_dir: str, head_address: str, resources: dict, pool_size: int,
                 node_id: bytes, parent_fd: int | None, cleanup_dir: bool) -> None:
        self.session_dir = session_dir
        self.address = f"ipc://{session_dir}/node.sock"
        self.head_address = head_address
        self.node_id = node_id
        self.parent_fd = parent_fd
        self.cleanup_dir = cleanup_dir
        self.log = get_logger("node", node=node_id.hex()[:8])
        self.sched = S.LocalScheduler(resources, pool_size, CONFIG.max_workers_per_node,
                                      CONFIG.dispatch_batch)
        self.resources = resources
        capacity = int(resources.get("object_store_memory", 0)) or (2 << 30)
        self.store = NodeStore(session_dir, capacity, self.log)
        self.store_prefix = f"zray-{session_tag(session_dir)}-"
        # The life pipe: workers hold the read end and exit when this process dies.
        self.life_r, self.life_w = os.pipe()
        os.set_inheritable(self.life_w, False)
        self.zygote = _zygote.start(_worker_entry(self.address, self.life_r), [self.life_r])
        os.close(self.life_r)
        self.funcs: dict[bytes, bytes] = {}
        self.known: dict[bytes, set] = defaultdict(set)       # worker_id -> func ids it has
        self.ident_of: dict[bytes, bytes] = {}                 # worker_id -> socket identity
        self.wid_of: dict[bytes, bytes] = {}                   # socket identity -> worker_id
        self.pid_of: dict[bytes, int] = {}                     # worker_id -> pid
        self.direct_of: dict[bytes, str] = {}                  # worker_id -> its own socket
        self.pidfds: dict[int, bytes] = {}                     # pidfd -> worker_id
        self.drivers: dict[bytes, dict] = {}                   # identity -> hello info
        self.clients: set[bytes] = set()
        self.running = True
        self._actor_fail_blob: dict[bytes, bytes] = {}   # actor_id -> why its calls fail
        self._subscribers: dict[bytes, set] = defaultdict(set)  # actor_id -> callers to tell
        self.fetching: dict[bytes, set] = defaultdict(set)      # owner -> {(oid, requester)}
        self._stats: dict[int, dict] = {}                       # zray memory requests
        self._stats_seq = 0
        self._last_sent_avail: dict = {}
        self._last_update = 0.0
        self._last_beat = 0.0

    # -- sockets -----------------------------------------------------------------
    def serve(self) -> None:
        import zmq
        self.zmq = zmq
        ctx = zmq.Context()
        self.front = ctx.socket(zmq.ROUTER)
        self.front.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.front.setsockopt(zmq.SNDHWM, 0)
        self.front.setsockopt(zmq.RCVHWM, 0)
        self.front.setsockopt(zmq.LINGER, 0)
        self.front.bind(self.address)
        self.head = ctx.socket(zmq.DEALER)
        self.head.setsockopt(zmq.ROUTING_ID, b"N" + self.node_id)
        self.head.setsockopt(zmq.LINGER, 0)
        self.head.setsockopt(zmq.RECONNECT_IVL, 20)
        self.head.connect(self.head_address)
        self.head.send(P.encode(P.NODE_HELLO, self.node_id, self.address, self.resources,
                                {"pid": os.getpid(), "session_dir": self.session_dir}))
        self.poller = zmq.Poller()
        self.poller.register(self.front, zmq.POLLIN)
        self.poller.register(self.head, zmq.POLLIN)
        self.poller.register(self.zygote.reply_fd, zmq.POLLIN)
        if self.parent_fd is not None:
            self.poller.register(self.parent_fd, zmq.POLLIN)
        self._do(self.sched.start_pool())
        try:
            self._loop()
        finally:
            self._shutdown()
            self.front.close()
            self.head.close()
            ctx.term()
            sweep(session_tag(self.session_dir))   # segments nobody freed (owners died)
            if self.cleanup_dir:
                shutil.rmtree(self.session_dir, ignore_errors=True)

    def _loop(self) -> None:
        while self.running:
            events = dict(self.poller.poll(self._timeout_ms()))
            if self.front in events:
                P.drain(self.front, self._on_client, self.log, routed=True)
            if self.head in events:
                P.drain(self.head, self._on_head, self.log, routed=False)
            for fd in events:
                if isinstance(fd, int):
                    self._on_fd(fd)
            self._timers()

    def _send(self, ident: bytes, mtype: int, *fields) -> bool:
        try:
            self.front.send_multipart([ident, P.encode(mtype, *fields)])
            return True
        except self.zmq.ZMQError:  # that peer is gone (ROUTER_MANDATORY)
            return False

    def _to_head(self, mtype: int, *fields) -> None:
        try:
            self.head.send(P.encode(mtype, *fields), self.zmq.NOBLOCK)
        except self.zmq.ZMQError:
            self.log.warning("could not reach the head broker", message=P.NAMES.get(mtype))

    # -- timers --------------------------------------------------------------------
    def _timeout_ms(self) -> int:
        return int(CONFIG.heartbeat_s * 1000 / 2)

    def _timers(self) -> None:
        now = time.monotonic()
        for req in [r for r, p in self._stats.items() if now > p["deadline"]]:
            self._finish_stats(req, force=True)
        if now - self._last_beat >= CONFIG.heartbeat_s:
            self._last_beat = now
            self._to_head(P.HEARTBEAT, self.node_id, self.sched.avail, self.sched.load())
            self._last_sent_avail = dict(self.sched.avail)
            self._do(self.sched.reap_idle(now, CONFIG.idle_worker_timeout_s))
        elif (self.sched.avail != self._last_sent_avail
              and now - self._last_update >= CONFIG.resource_update_s):
            self._last_update = now
            self._last_sent_avail = dict(self.sched.avail)
            self._to_head(P.HEARTBEAT, self.node_id, self.sched.avail, self.sched.load())

    # -- file descriptors: zygote replies, worker exits, parent exit ---------------
    def _on_fd(self, fd: int) -> None:
        if fd == self.zygote.reply_fd:
            try:
                replies = self.zygote.read_replies()
            except EOFError:
                self.log.error("the zygote died; stopping")
                self.running = False
                return
            for wid, pid in replies:
                self._watch(wid, pid)
        elif fd == self.parent_fd:
            self.running = False
        elif fd in self.pidfds:
            wid = self.pidfds.pop(fd)
            self.poller.unregister(fd)
            os.close(fd)
            self._worker_gone(wid)

    def _watch(self, wid: bytes, pid: int) -> None:
        if not self.sched.has_worker(wid):  # killed before it even started
            self._kill_pid(pid)
            return
        self.pid_of[wid] = pid
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._worker_gone(wid)
            return
        self.pidfds[fd] = wid
        self.poller.register(fd, self.zmq.POLLIN)

    def _worker_gone(self, wid: bytes) -> None:
        self.pid_of.pop(wid, None)
        self.direct_of.pop(wid, None)
        ident = self.ident_of.pop(wid, None)
        if ident is not None:
            self.wid_of.pop(ident, None)
            # Leases the dead worker held (it was an owner too) go back to the pool,
            # and whoever waits for an object it owned learns that it is lost.
            for leased in self.sched.leases_of(ident):
                self._do(self.sched.unlease(leased, time.monotonic()))
            for oid, requester in self.fetching.pop(ident, ()):
                self._owner_died(oid, requester)
        self.known.pop(wid, None)
        client = self.sched.leased_to(wid)
        if client is not None:
            self._send(client, P.LEASE_LOST, wid)
        self._do(self.sched.worker_died(wid))

    @staticmethod
    def _kill_pid(pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # -- clients -------------------------------------------------------------------
    def _on_client(self, ident: bytes, mtype: int, f: list) -> None:
        if mtype == P.SUBMIT:
            calls, tasks = [], []
            for spec in f[0]:
                try:
                    P.check_task(spec)
                except ProtocolError:  # this one only, not the whole batch
                    self._reject_task(spec)
                    continue
                (calls if spec[P.T_ACTOR] is not None else tasks).append(spec)
            if tasks:
                self._do(self.sched.submit(tasks))
            for spec in calls:
                self._do(self.sched.actor_call(spec))
        elif mtype == P.RESULTS:
            self._on_results(ident, f[0])
        elif mtype == P.BORROW:
            self._send(f[0], P.BORROW, f[0], f[1], f[2])
        elif mtype == P.FETCH:
            oid, owner, requester = f
            if self._send(owner, P.FETCH, oid, owner, requester):
                self.fetching[owner].add((oid, requester))   # failed if the owner dies
            else:
                self._owner_died(oid, requester)
        elif mtype == P.OBJECT:
            self.fetching.get(ident, set()).discard((f[0], f[1]))
            self._send(f[1], P.OBJECT, *f)
        elif mtype == P.FUNC:
            if not isinstance(f[0], bytes) or not isinstance(f[1], bytes):
                raise ProtocolError("FUNC wants (bytes, bytes)")
            self.funcs[f[0]] = f[1]
        elif mtype == P.BLOCKED:
            wid = self.wid_of.get(ident)
            if wid is not None:
                self._do(self.sched.blocked(wid, bool(f[0]), f[1] or ()))
        elif mtype == P.CREATE_ACTOR:
            self._do(self.sched.create_actor(P.check_actor(f[0])))
        elif mtype == P.ACTOR_READY:
            wid = self.wid_of.get(ident)
            if wid is not None:
                if f[1] != 1 and isinstance(f[2], bytes):
                    self._actor_fail_blob[f[0]] = f[2]
                address = f[2] if f[1] == 1 and isinstance(f[2], str) else ""
                self._do(self.sched.actor_ready(wid, f[1], address))
        elif mtype == P.LOOKUP:
            self._lookup(ident, f[0])
        elif mtype == P.STORE:
            for item in f[0]:
                if type(item) is not list or len(item) != 2 or type(item[0]) is not str \
                        or type(item[1]) is not int or item[1] < 0:
                    raise ProtocolError("STORE wants [[name, size], ...]")
                if item[0].startswith(self.store_prefix):
                    self.store.added(item[0], item[1])
            for name in f[1]:
                if type(name) is str:
                    self.store.freed(name)
            for name in f[2]:
                if type(name) is str:
                    self.store.touched(name)
            self.store.enforce()
        elif mtype == P.LEASE:
            if not P.resources_ok(f[1]):
                raise ProtocolError("LEASE wants a resource map")
            wid = self.sched.lease(ident, f[1])
            address = self.direct_of.get(wid, "") if wid is not None else ""
            if wid is not None and not address:
                self._do(self.sched.unlease(wid, time.monotonic()))
                wid = None
            self._send(ident, P.LEASED, f[0], wid or b"", address)
        elif mtype == P.UNLEASE:
            if self.sched.leased_to(f[0]) == ident:
                if f[1]:
                    self._do([(S.KILL, f[0])])
                else:
                    self._do(self.sched.unlease(f[0], time.monotonic()))
        elif mtype == P.CANCEL:
            self._do(self.sched.cancel(f[0], bool(f[1])))
        elif mtype == P.KILL_ACTOR:
            self._do(self.sched.kill_actor(f[0], bool(f[1])))
        elif mtype == P.RELEASE_ACTOR:
            self._do(self.sched.release_actor(f[0], bool(f[1])))
        elif mtype == P.LOG:
            for d, info in self.drivers.items():
                if info.get("log_to_driver", True):
                    self._send(d, P.LOG, *f)
        elif mtype == P.HEAD_CALL:
            if f[2] == "node.list_objects":
                self._start_stats(ident, f[1])
            else:
                self._to_head(P.HEAD_CALL, ident, f[1], f[2], f[3])
        elif mtype == P.STATS:
            self._on_stats(ident, f[0], f[1])
        elif mtype == P.HELLO:
            self._on_hello(ident, f)
        elif mtype == P.SHUTDOWN:
            if ident in self.drivers:
                self.running = False
        else:
            raise ProtocolError(f"{P.NAMES[mtype]} is not a client message")

    def _on_hello(self, ident: bytes, f: list) -> None:
        kind, pid, job_id, info = f
        if not isinstance(info, dict):
            raise ProtocolError("HELLO info must be a map")
        self.clients.add(ident)
        if kind == "driver":
            self.drivers[ident] = dict(info, pid=pid)
        elif kind == "worker":
            wid = info.get("worker_id")
            if not self.sched.has_worker(wid):
                self._send(ident, P.SHUTDOWN, "unknown worker")
                return
            self.ident_of[wid] = ident
            self.wid_of[ident] = wid
            if isinstance(info.get("direct"), str):
                self.direct_of[wid] = info["direct"]
        self._send(ident, P.WELCOME, self.node_id, {
            "node_id": self.node_id.hex(), "session_dir": self.session_dir,
            "resources": self.resources, "address": self.address,
            "store_capacity": self.store.capacity})
        if kind == "worker":
            self._do(self.sched.worker_ready(info["worker_id"], time.monotonic()))

    def _on_results(self, ident: bytes, results: list) -> None:
        wid = self.wid_of.get(ident)
        by_owner: dict[bytes, list] = defaultdict(list)
        acts: list = []
        now = time.monotonic()
        for r in results:
            if wid is not None:
                acts.extend(self.sched.result(wid, r[P.R_TASK], now))
            by_owner[r[P.R_OWNER]].append(r)
        for owner, rs in by_owner.items():
            self._send(owner, P.RESULTS, rs)
        self._do(acts)

    # -- the head ------------------------------------------------------------------
    def _on_head(self, mtype: int, f: list) -> None:
        if mtype == P.HEAD_REPLY or mtype == P.WARN:
            self._send(f[0], mtype, *f)
        elif mtype == P.PLACE:
            for spec in f[0]:
                if len(spec) == P.ACTOR_FIELDS:
                    self._do(self.sched.create_actor(P.check_actor(spec)))
                else:
                    self._do(self.sched.submit([P.check_task(spec)]))
        elif mtype == P.SHUTDOWN:
            self.running = False

    # -- actions -------------------------------------------------------------------
    def _do(self, acts: list) -> None:
        for act in acts:
            kind = act[0]
            if kind == S.DISPATCH:
                self._dispatch(act[1], act[2])
            elif kind == S.FORWARD:
                ident = self.ident_of.get(act[1])
                if ident is not None:
                    self._send(ident, P.TASKS, act[2], {})
            elif kind == S.SPAWN:
                self.zygote.spawn(act[1], act[2], act[3])
            elif kind == S.KILL:
                pid = self.pid_of.get(act[1])
                if pid is not None:
                    self._kill_pid(pid)
            elif kind == S.FAIL:
                self._fail(act[1], act[2], act[3])
            elif kind == S.CREATE:
                spec = act[2]
                ident = self.ident_of.get(act[1])
                blob = self.funcs.get(spec[P.A_CLASS])
                if ident is not None:
                    self._send(ident, P.TASKS, [], {spec[P.A_CLASS]: blob} if blob else {})
                    self._send(ident, P.CREATE_ACTOR, spec)
            elif kind == S.RELEASE:
                ident = self.ident_of.get(act[1])
                if ident is not None:
                    self._send(ident, P.SHUTDOWN, "released")
            elif kind == S.CANCEL:
                ident = self.ident_of.get(act[1])
                if ident is not None:
                    self._send(ident, P.CANCEL, act[2], False)
            elif kind == S.SPILLBACK:
                self._to_head(P.SPILLBACK, act[1])
            elif kind == S.ACTOR_STATE:
                self._to_head(P.ACTOR_EVENT, act[1], act[2], act[3])
                self._tell_callers(act[1], act[2], act[3])

    # -- direct actor calls: callers learn where an actor lives, and each change ----
    # -- zray memory: every local process lists its objects ----------------------
    def _start_stats(self, requester: bytes, seq: int) -> None:
        self._stats_seq += 1
        req = self._stats_seq
        waiting = set()
        for ident in list(self.drivers) + list(self.wid_of):
            if self._send(ident, P.STATS, req, None):
                waiting.add(ident)
        self._stats[req] = {"requester": requester, "seq": seq, "waiting": waiting, "rows": [],
                            "deadline": time.monotonic() + 2.0}
        self._finish_stats(req)

    def _on_stats(self, ident: bytes, req: int, rows: list) -> None:
        pending = self._stats.get(req)
        if pending is None or ident not in pending["waiting"] or type(rows) is not list:
            return
        pending["waiting"].discard(ident)
        pid = self.pid_of.get(self.wid_of.get(ident, b""), None) or \
            self.drivers.get(ident, {}).get("pid")
        kind = "WORKER" if ident in self.wid_of else "DRIVER"
        for row in rows:
            if type(row) is list and len(row) == 9:
                pending["rows"].append(row + [kind, pid, self._location(row[5])])
        self._finish_stats(req)

    def _location(self, name: str) -> str:
        if not name:
            return "INLINE"
        return "SPILLED" if name in self.store.spilled else "SHARED_MEMORY"

    def _finish_stats(self, req: int, force: bool = False) -> None:
        pending = self._stats.get(req)
        if pending is None or (pending["waiting"] and not force):
            return
        del self._stats[req]
        result = {"node_id": self.node_id.hex(), "rows": pending["rows"], "store": self.store.stats(),
                  "unanswered": len(pending["waiting"])}
        self._send(pending["requester"], P.HEAD_REPLY, pending["requester"], pending["seq"], True, result)

    def _owner_died(self, oid: bytes, requester: bytes) -> None:
        err = pickle.dumps(OwnerDiedError(
            oid.hex(), f"The object {oid.hex()} is lost: the process that owned it (the "
            "worker that created it with put() or that submitted the task returning it) died."))
        self._send(requester, P.OBJECT, oid, requester, P.ERROR, err, None)

    def _lookup(self, ident: bytes, actor_id: bytes) -> None:
        actor = self.sched.actor(actor_id)
        if actor is None or actor.state == S.AState.DEAD:
            why = actor.death if actor is not None else "it is not known on this node"
            self._send(ident, P.ACTOR_ADDR, actor_id, "DEAD", "", self._death_blob(actor_id, why))
            return
        self._subscribers[actor_id].add(ident)
        if actor.state == S.AState.ALIVE:
            self._send(ident, P.ACTOR_ADDR, actor_id, "ALIVE", actor.address, None)

    def _tell_callers(self, actor_id: bytes, state: str, info: dict) -> None:
        subs = self._subscribers.get(actor_id)
        if not subs:
            return
        if state == "DEAD":
            blob = self._death_blob(actor_id, info.get("reason", ""))
            for ident in self._subscribers.pop(actor_id):
                self._send(ident, P.ACTOR_ADDR, actor_id, "DEAD", "", blob)
            return
        for ident in list(subs):
            if not self._send(ident, P.ACTOR_ADDR, actor_id, state, info.get("address", ""), None):
                subs.discard(ident)

    def _death_blob(self, actor_id: bytes, why: str) -> bytes:
        blob = self._actor_fail_blob.get(actor_id)
        if blob is None:
            blob = pickle.dumps(ActorDiedError(f"The actor {actor_id.hex()} is dead ({why}).",
                                               actor_id.hex()))
        return blob

    def _dispatch(self, wid: bytes, specs: list) -> None:
        ident = self.ident_of[wid]
        known = self.known[wid]
        funcs = {}
        for spec in specs:
            fid = spec[P.T_FUNC]
            if fid not in known:
                blob = self.funcs.get(fid)
                if blob is not None:
                    funcs[fid] = blob
                    known.add(fid)
        if not self._send(ident, P.TASKS, specs, funcs):
            self.log.warning("a worker vanished before its dispatch", worker=wid)

    def _fail(self, spec: list, kind: str, why: str) -> None:
        if len(spec) == P.ACTOR_FIELDS:
            return  # an actor creation: its calls fail through the actor's state
        name = spec[P.T_NAME]
        if kind == S.CANCELLED:
            err = TaskCancelledError(spec[P.T_ID].hex())
        elif kind == S.ACTOR_DIED:
            blob = self._actor_fail_blob.get(spec[P.T_ACTOR])
            if blob is not None:
                self._send(spec[P.T_OWNER], P.RESULTS, [P.error_result(spec, blob)])
                return
            err = ActorDiedError(f"The actor {spec[P.T_ACTOR].hex()} is dead ({why}); "
                                 f"the call {name} cannot run.", spec[P.T_ACTOR].hex())
        else:
            err = WorkerCrashedError(f"The worker running task {name} died unexpectedly ({why}) "
                                     "and it has no retries left (max_retries).")
        self._send(spec[P.T_OWNER], P.RESULTS, [P.error_result(spec, pickle.dumps(err))])

    def _reject_task(self, spec) -> None:
        """A malformed task spec: its owner gets an error if the spec says which task
        and whose (else it would wait forever), and the spec is dropped."""
        self.log.warning("dropped a malformed task spec", spec=repr(spec)[:300])
        if (type(spec) is list and len(spec) == P.TASK_FIELDS and type(spec[P.T_ID]) is bytes
                and type(spec[P.T_OWNER]) is bytes):
            err = RaySystemError(f"The node broker dropped task {spec[P.T_NAME]!r}: its spec is "
                                 "malformed (a bug in zray, or a client of another version).")
            self._send(spec[P.T_OWNER], P.RESULTS, [P.error_result(spec, pickle.dumps(err))])

    # -- shutdown ------------------------------------------------------------------
    def _shutdown(self) -> None:
        for d in list(self.drivers):
            self._send(d, P.SHUTDOWN, "the node broker is stopping")
        for pid in list(self.pid_of.values()):
            self._kill_pid(pid)
        deadline = time.monotonic() + CONFIG.stop_grace_s
        import select
        fds = list(self.pidfds)
        while fds and time.monotonic() < deadline:
            ready, _, _ = select.select(fds, [], [], max(0.0, deadline - time.monotonic()))
            for fd in ready:
                fds.remove(fd)
        for fd in self.pidfds:
            os.close(fd)
        os.close(self.life_w)
        self.zygote.stop(CONFIG.stop_grace_s)


def _exit_on_signal(signum, frame):
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m zray.brokers.node", description="zray node broker")
    ap.add_argument("--session-dir", required=True)
    ap.add_argument("--head", required=True, help="the head broker's address")
    ap.add_argument("--resources", default="{}", help="JSON map of resources")
    ap.add_argument("--workers", type=int, default=None, help="worker pool size (default: CPUs)")
    ap.add_argument("--node-id", default=None)
    ap.add_argument("--parent-fd", type=int, default=None,
                    help="stop when this fd reaches EOF (the starter's life pipe)")
    ap.add_argument("--cleanup-dir", action="store_true", help="remove the session dir on exit")
    args = ap.parse_args(argv)
    resources = json.loads(args.resources)
    pool = args.workers if args.workers is not None else max(1, int(resources.get("CPU", 1)))
    node_id = bytes.fromhex(args.node_id) if args.node_id else os.urandom(16)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver's Ctrl-C is not ours
    signal.signal(signal.SIGTERM, _exit_on_signal)
    broker = NodeBroker(args.session_dir, args.head, resources, pool, node_id, args.parent_fd,
                        args.cleanup_dir)
    try:
        broker.serve()
    except SystemExit:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
