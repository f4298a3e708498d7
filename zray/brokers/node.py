"""The node broker, one per machine: a thin loop (poll, decode, decide with
LocalScheduler, carry out its actions) around the ROUTER every local process connects
to, a DEALER to the head, and in a cluster its links to the other nodes (_links).
Run as `python -m zray.brokers.node`."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from collections import defaultdict
from typing import Any

from .. import _protocol as P
from .. import _strategies as ST
from .._config import CONFIG
from .._keys import ZapHandler, connect_as_client, warn_insecure
from .._keys import load as load_keys
from .._limits import raise_fd_limit, worker_cap
from .._log import get_logger
from .._node_resources import with_defaults
from .._object_store import session_tag, sweep
from .._session import tell_ready, write_node_info
from ..exceptions import ProtocolError
from . import _node_views
from . import _scheduling as S
from ._clients import Clients
from ._directory import ActorDirectory
from ._events import EventRelay
from ._failures import failed_result, rejected_actor, rejected_result
from ._jobs import Jobs
from ._links import NodeLinks
from ._memstats import MemoryStats
from ._node_cluster import NodeCluster
from ._objects import ObjectRelay
from ._pressure import Pressure
from ._procs import WorkerProcesses
from ._store import NodeStore


class NodeBroker:
    def __init__(self, session_dir: str, head_address: str, resources: dict, pool_size: int,
                 node_id: bytes, parent_fd: int | None, cleanup_dir: bool,
                 keys: Any = None, node_ip: str = "127.0.0.1", port: int = 0,
                 ready_fd: int | None = None) -> None:
        self.session_dir = session_dir
        self.address = f"ipc://{session_dir}/node.sock"
        self.head_address = head_address
        # A cluster node (its head on tcp) opens a public port for the other nodes.
        self.clustered = head_address.startswith("tcp://")
        self.keys, self.node_ip, self.port = keys, node_ip, port
        self.ready_fd = ready_fd   # told the node's id once it serves, then closed
        self.node_id = node_id
        self.parent_fd = parent_fd
        self.cleanup_dir = cleanup_dir
        self.log = get_logger("node", node=node_id.hex()[:8])
        self.sched = S.LocalScheduler(resources, pool_size, worker_cap(
            CONFIG.max_workers_per_node, CONFIG.worker_memory_bytes), CONFIG.dispatch_batch)
        self.resources = resources
        capacity = int(resources.get("object_store_memory", 0)) or CONFIG.object_store_bytes
        self.store = NodeStore(session_dir, capacity, self.log)
        self.procs = WorkerProcesses(self.address, node_id)   # forks the zygote: before any socket
        self.clients = Clients()
        self.pressure = Pressure(self.sched.tasks, self._send, lambda: self.clients.drivers, self.log)
        self.running = True
        self.directory = ActorDirectory(self._send, lambda ident: self.links.is_local(ident))
        self.stats = MemoryStats(self._send, node_id, self.store)
        self.store_prefix = f"zray-{session_tag(session_dir)}-"   # of the segments made here
        self.objects = ObjectRelay(self._send, self.store, self.store_prefix)
        self.cluster = NodeCluster(self)
        self.jobs = Jobs(self)          # its drivers: a job ends with its driver, on every node
        self.events = EventRelay()   # what its workers ran, for the head (dashboard, timeline)
        self._last_sent_avail: dict = {}
        self._last_update = 0.0
        self._last_beat = 0.0
        self._client_handlers = {
            P.SUBMIT: self._on_submit, P.RESULTS: self._on_results, P.FUNC: self.clients.on_func,
            P.FUNC_FREE: self.clients.on_func_free,
            P.BORROW: self.objects.on_borrow, P.FETCH: self.objects.on_fetch,
            P.OBJECT: self.objects.on_object, P.STORE: self._on_store, P.ROOM: self.objects.on_room,
            P.BLOCKED: self._on_blocked, P.CREATE_ACTOR: self._on_create_actor,
            P.ACTOR_READY: self._on_actor_ready, P.LOOKUP: self._on_lookup,
            P.LEASE: self._on_lease, P.UNLEASE: self._on_unlease, P.CANCEL: self._on_cancel,
            P.KILL_ACTOR: self._on_kill_actor, P.RELEASE_ACTOR: self._on_release_actor,
            P.LOG: self._on_log, P.HEAD_CALL: self._on_head_call, P.STATS: self._on_stats,
            P.HELLO: self._on_hello, P.SHUTDOWN: self._on_shutdown, P.OWNER_GONE: self.jobs.on_owner_gone,
            P.TASK_EVENTS: self._on_task_events, P.JOB_END: self.jobs.on_job_end,
            P.ITEMS: self.objects.on_items, P.GEN_ACK: self.objects.on_gen_ack,
        }
        self._head_handlers = {
            P.HEAD_REPLY: self.cluster.on_head_reply, P.WARN: self._relay, P.PLACE: self._on_place,
            P.SHUTDOWN: self._on_head_shutdown, P.NODES: self.cluster.on_nodes,
            P.PLACED: self.cluster.on_placed, P.UNPLACEABLE: self.cluster.on_unplaceable,
            P.RESERVE: self.cluster.on_reserve, P.UNRESERVE: self.cluster.on_unreserve,
        }
        self._action_handlers = {
            S.DISPATCH: self._act_dispatch, S.FORWARD: self._act_forward, S.SPAWN: self._act_spawn,
            S.KILL: self._act_kill, S.FAIL: self._act_fail, S.CREATE: self._act_create,
            S.RELEASE: self._act_release, S.CANCEL: self._act_cancel,
            S.SPILLBACK: self._act_spillback, S.ACTOR_STATE: self._act_actor_state,
        }

    # -- sockets -----------------------------------------------------------------
    def serve(self) -> None:
        import zmq
        self.zmq = zmq
        ctx = zmq.Context()
        self.zap = ZapHandler(ctx, self.keys, self.log) if self.keys is not None else None
        self.links = NodeLinks(ctx, self.node_id, self.keys, self.log)
        public = self.links.bind(self.node_ip, self.port) if self.clustered else ""
        self.front = ctx.socket(zmq.ROUTER)
        for option, value in ((zmq.ROUTER_MANDATORY, 1), (zmq.SNDHWM, 0), (zmq.RCVHWM, 0),
                              (zmq.LINGER, 0)):
            self.front.setsockopt(option, value)
        # node.json first: a driver that finds the socket also finds who to connect as.
        write_node_info(self.session_dir, self.node_id, self.head_address, public)
        self.front.bind(self.address)
        self.head = ctx.socket(zmq.DEALER)
        self.head.setsockopt(zmq.ROUTING_ID, b"N" + self.node_id)
        self.head.setsockopt(zmq.LINGER, 0)
        self.head.setsockopt(zmq.RECONNECT_IVL, CONFIG.reconnect_ms)
        if self.keys is not None:
            connect_as_client(self.head, self.keys)
        self.head.connect(self.head_address)
        self.head.send(P.encode(P.NODE_HELLO, self.node_id, self.address, self.resources,
                                {"pid": os.getpid(), "session_dir": self.session_dir,
                                 "public": public, "ip": self.node_ip,
                                 "store": self.store_prefix}))
        self.poller = zmq.Poller()
        self.poller.register(self.front, zmq.POLLIN)
        self.poller.register(self.head, zmq.POLLIN)
        for extra in (self.links.public, self.zap.sock if self.zap is not None else None):
            if extra is not None:
                self.poller.register(extra, zmq.POLLIN)
        self.procs.attach(self.poller, zmq.POLLIN, self.sched.has_worker, self._worker_gone)
        self.store.attach(self.poller, zmq.POLLIN)   # its spill thread's wake-ups
        if self.parent_fd is not None:
            self.poller.register(self.parent_fd, zmq.POLLIN)
        self._do(self.sched.start_pool())
        # In a cluster, ready once the head answered (NODES): a wrong key is told then.
        if self.clustered:
            self.cluster.watch_head(zmq)
        elif self.ready_fd is not None:
            tell_ready(self.ready_fd, self.node_id.hex())
            self.ready_fd = None
        try:
            self._loop()
        finally:
            self.cluster.stop_head_monitor()
            self._shutdown()
            self.front.close()
            self.head.close()
            self.links.close()
            if self.zap is not None:
                self.zap.close()
            ctx.term()
            self.store.close()
            sweep(session_tag(self.session_dir))   # segments nobody freed (owners died)
            self.cluster.transfers.sweep()          # and the copies pulled from other nodes
            if self.cleanup_dir:
                shutil.rmtree(self.session_dir, ignore_errors=True)

    def _loop(self) -> None:
        while self.running:
            events = dict(self.poller.poll(int(CONFIG.heartbeat_s * 1000 / 2)))
            if self.front in events:
                P.drain(self.front, self._on_client, self.log, routed=True)
            if self.head in events:
                P.drain(self.head, self._on_head, self.log, routed=False)
            if self.links.public is not None and self.links.public in events:
                self.links.read(self.cluster.deliver_relayed, self.cluster.on_peer)
            if self.zap is not None and self.zap.sock in events:
                self.zap.handle()
            if self.cluster.head_monitor is not None and self.cluster.head_monitor in events:
                self.cluster.on_head_monitor()
            for fd in events:
                if isinstance(fd, int):
                    self._on_fd(fd)
            self._timers()

    def _send(self, ident: bytes, mtype: int, *fields) -> bool:
        """Send to a client: of this node through the front socket, of another node over
        the link to it. False if it is gone (ROUTER_MANDATORY) or its node unknown."""
        header = P.encode(mtype, *fields)
        if not self.links.is_local(ident):
            return self.links.to_client(ident, header)
        try:
            self.front.send_multipart([ident, header])
            return True
        except self.zmq.ZMQError:
            return False

    def _to_head(self, mtype: int, *fields) -> None:
        try:
            self.head.send(P.encode(mtype, *fields), self.zmq.NOBLOCK)
        except self.zmq.ZMQError:
            self.log.warning("could not reach the head broker", message=P.NAMES.get(mtype))

    def _timers(self) -> None:
        now = time.monotonic()
        self.stats.expire(now)
        self.cluster.transfers.expire(now)
        self.cluster.resume_overflow(now)
        self.procs.tick(now)
        if now >= self.events.next_report:
            self._report_events(now)
        if now - self._last_beat >= CONFIG.heartbeat_s:
            self._last_beat = now
            self._heartbeat()
            self._do(self.sched.reap_idle(now, CONFIG.idle_worker_timeout_s))
            self.pressure.heartbeat()
        elif (self.sched.avail != self._last_sent_avail
              and now - self._last_update >= CONFIG.resource_update_s):
            self._last_update = now
            self._heartbeat()

    def _heartbeat(self) -> None:
        load = self.sched.load()
        if self.cluster.done_placed:
            load["done"] = self.cluster.take_done()
        self._to_head(P.HEARTBEAT, self.node_id, self.sched.avail, load)
        self._last_sent_avail = dict(self.sched.avail)

    def _report_events(self, now: float) -> None:
        report = self.events.report(now, self.sched.tasks.queues.values(), self.sched.tasks.queued,
                                    self.store.stats())
        if report is not None:
            self._to_head(P.TASK_EVENTS, *report)

    def _on_task_events(self, ident: bytes, f: list) -> None:
        if ident in self.clients.wid_of or ident in self.clients.drivers:   # (drivers: metrics)
            self.events.from_worker(f[0], f[1])

    # -- file descriptors: zygote replies, worker exits, parent exit ---------------
    def _on_fd(self, fd: int) -> None:
        if fd == self.parent_fd:
            self.running = False
            return
        if self.jobs.handle_fd(fd) or self.store.handle_fd(fd):
            return
        try:
            self.procs.handle_fd(fd)
        except EOFError:
            self.log.error("the zygote died; stopping")
            self.running = False

    def _worker_gone(self, wid: bytes) -> None:
        ident = self.clients.worker_gone(wid)
        if ident is not None:
            # Leases the dead worker held (it was an owner too) go back to the pool,
            # and whoever waits for an object it owned learns that it is lost.
            for leased in self.sched.leases_of(ident):
                self._do(self.sched.unlease(leased, time.monotonic()))
            self.objects.process_gone(ident)
            self.jobs.owner_gone(ident)
        client = self.sched.leased_to(wid)
        if client is not None:
            self._send(client, P.LEASE_LOST, wid)
        self._do(self.sched.worker_died(wid))
        self.pressure.start_failed(self.procs.start_failures)

    # -- clients: one handler per message type ------------------------------------
    def _on_client(self, ident: bytes, mtype: int, f: list) -> None:
        handler = self._client_handlers.get(mtype)
        if handler is None:
            raise ProtocolError(f"{P.NAMES[mtype]} is not a client message")
        handler(ident, f)

    def _on_submit(self, ident: bytes, f: list) -> None:
        calls: list = []
        tasks: list = []
        for spec in f[0]:
            try:
                P.check_task(spec)
            except ProtocolError as exc:  # this one only, not the whole batch
                self._reject_task(spec, str(exc))
                continue
            (calls if spec[P.T_ACTOR] is not None else tasks).append(spec)
        if tasks:
            self._do(self.sched.submit(tasks))
        for spec in calls:
            if self.cluster.elsewhere(ident, spec[P.T_ACTOR], P.SUBMIT, [spec]):
                continue
            self._do(self.sched.actor_call(spec))

    def _reject_task(self, spec, why: str = "") -> None:
        """A malformed task spec: its owner gets an error if the spec says which task
        and whose (else it would wait forever), and the spec is dropped."""
        self.log.warning("dropped a malformed task spec", error=why, spec=repr(spec)[:300])
        result = rejected_result(spec, why)
        if result is not None:
            self._send(spec[P.T_OWNER], P.RESULTS, [result])

    def _on_results(self, ident: bytes, f: list) -> None:
        wid = self.clients.wid_of.get(ident)
        by_owner: dict[bytes, list] = defaultdict(list)
        acts: list = []
        now = time.monotonic()
        placed = self.cluster.placed_tasks
        for r in f[0]:
            if wid is not None:
                acts.extend(self.sched.result(wid, r[P.R_TASK], now))
            if placed:
                self.cluster.finished(r[P.R_TASK])
            by_owner[r[P.R_OWNER]].append(r)
        for owner, rs in by_owner.items():
            self._send(owner, P.RESULTS, rs)
        self._do(acts)

    def _on_store(self, ident: bytes, f: list) -> None:
        self.objects.on_store(ident, f)
        for name in f[1]:
            if type(name) is str:
                self.cluster.transfers.freed(name)   # its copies on other nodes go too

    def _on_blocked(self, ident: bytes, f: list) -> None:
        wid = self.clients.wid_of.get(ident)
        if wid is not None:
            self._do(self.sched.blocked(wid, bool(f[0]), f[1] or ()))

    def _on_create_actor(self, ident: bytes, f: list) -> None:
        try:
            spec = P.check_actor(f[0])
        except ProtocolError as exc:   # its creator hears why (else its calls would hang)
            self.log.warning("dropped a malformed actor spec", error=str(exc))
            for fields in rejected_actor(f[0], str(exc)):
                self._send(ident, P.ACTOR_ADDR, *fields)
            return
        self._created(spec)

    def _created(self, spec: list) -> None:
        # The head hears of it at once (not only once it is alive), so that a node asked
        # about it by a client that got its handle early can find it.
        aid = spec[P.A_ID]
        self._to_head(P.ACTOR_EVENT, aid, "PENDING", {"class_name": spec[P.A_CLASS_NAME],
                                                      **_node_views.actor_facts(spec)})
        self._do(self.sched.create_actor(spec))
        # It lives here now: what other nodes sent about it ahead of it is for it.
        self.cluster.arrived(aid)

    def _on_actor_ready(self, ident: bytes, f: list) -> None:
        wid = self.clients.wid_of.get(ident)
        if wid is None:
            return
        if f[1] != 1 and isinstance(f[2], bytes):
            self.directory.failed(f[0], f[2])
        address = f[2] if f[1] == 1 and isinstance(f[2], str) else ""
        self._do(self.sched.actor_ready(wid, f[1], address))

    def _on_lookup(self, ident: bytes, f: list) -> None:
        if not self.cluster.elsewhere(ident, f[0], P.LOOKUP, f[0]):
            self.directory.lookup(ident, f[0], self.sched.actor(f[0]))

    def _on_lease(self, ident: bytes, f: list) -> None:
        if not P.resources_ok(f[1]):
            raise ProtocolError("LEASE wants a resource map")
        wid = self.sched.lease(ident, f[1])
        address = self.clients.direct_of.get(wid, "") if wid is not None else ""
        if wid is not None and not address:
            self._do(self.sched.unlease(wid, time.monotonic()))
            wid = None
        self._send(ident, P.LEASED, f[0], wid or b"", address)

    def _on_unlease(self, ident: bytes, f: list) -> None:
        if self.sched.leased_to(f[0]) == ident:
            self._do(self.sched.unlease(f[0], time.monotonic(), kill=bool(f[1])))

    def _on_cancel(self, ident: bytes, f: list) -> None:
        acts = self.sched.cancel(f[0], bool(f[1]))
        if acts or self.cluster.relayed:
            self._do(acts)
        else:   # a call to an actor on another node, perhaps: its node cancels it
            self.cluster.to_other_nodes(ident, P.encode(P.CANCEL, f[0], bool(f[1])))

    def _on_kill_actor(self, ident: bytes, f: list) -> None:
        if not self.cluster.elsewhere(ident, f[0], P.KILL_ACTOR, *f):
            self._do(self.sched.kill_actor(f[0], bool(f[1])))

    def _on_release_actor(self, ident: bytes, f: list) -> None:
        if not self.cluster.elsewhere(ident, f[0], P.RELEASE_ACTOR, *f):
            self._do(self.sched.release_actor(f[0], bool(f[1])))

    def _on_log(self, ident: bytes, f: list) -> None:
        """A worker's output: to this node's drivers of its job, and (once) to the other
        nodes' (a driver sees what its tasks print wherever they run, and only that)."""
        job = f[3]
        for d, info in self.clients.drivers.items():
            if info.get("log_to_driver", True) and (not job or info.get("job_id") == job):
                self._send(d, P.LOG, *f)
        if not self.cluster.relayed:
            self.cluster.to_other_nodes(b"", P.encode(P.LOG, *f))

    def _on_head_call(self, ident: bytes, f: list) -> None:
        if f[2] == "node.list_objects":
            self.stats.start(ident, f[1], self.clients.processes(), time.monotonic(),
                             CONFIG.memory_stats_timeout_s)
        elif f[2] == "node.list_workers":   # (zray.util.state.list_workers, list_jobs)
            self._send(ident, P.HEAD_REPLY, ident, f[1], True, _node_views.workers(self))
        else:
            self._to_head(P.HEAD_CALL, ident, f[1], f[2], f[3])

    def _on_stats(self, ident: bytes, f: list) -> None:
        wid = self.clients.wid_of.get(ident)
        pid = self.procs.pid_of.get(wid) if wid is not None else \
            self.clients.drivers.get(ident, {}).get("pid")
        kind = "WORKER" if wid is not None else "DRIVER"
        self.stats.reply(ident, f[0], f[1], kind, pid)

    def _on_hello(self, ident: bytes, f: list) -> None:
        kind, pid, _job_id, info = f
        if not isinstance(info, dict):
            raise ProtocolError("HELLO info must be a map")
        if kind == "driver":
            self.clients.driver(ident, pid, {**info, "job_id": _job_id})
            self.jobs.watch(ident, pid, _job_id)
        elif kind == "worker":
            if not self.sched.has_worker(info.get("worker_id")):
                self._send(ident, P.SHUTDOWN, "unknown worker")
                return
            self.clients.worker(ident, info["worker_id"], info)
        self._send(ident, P.WELCOME, self.node_id, {
            "node_id": self.node_id.hex(), "session_dir": self.session_dir, "pid": os.getpid(),
            "resources": self.resources, "address": self.address,
            "store_capacity": self.store.capacity, "ip": self.node_ip})
        if kind == "worker":
            self.procs.started(info["worker_id"])
            self._do(self.sched.worker_ready(info["worker_id"], time.monotonic()))

    def _on_shutdown(self, ident: bytes, f: list) -> None:
        if ident in self.clients.drivers:
            self.running = False

    # -- the head ------------------------------------------------------------------
    def _on_head(self, mtype: int, f: list) -> None:
        handler = self._head_handlers.get(mtype)
        if handler is None:
            return    # not for a node (as before: ignored)
        handler(mtype, f)

    def _relay(self, mtype: int, f: list) -> None:
        self._send(f[0], mtype, *f)

    def _on_place(self, mtype: int, f: list) -> None:
        self.clients.add_funcs(f[1])   # what it needs, from the node that spilled it
        for spec in f[0]:
            # The head chose this node: a strategy's markers are spent.
            if len(spec) == P.ACTOR_FIELDS:
                spec = P.check_actor(spec)
                spec[P.A_RES] = ST.stripped(spec[P.A_RES])
                self.cluster.placed_here(spec, self._placed_actor)
            else:
                spec = P.check_task(spec)
                if ST.OVERFLOW in spec[P.T_RES]:   # its own overflow, back: no room elsewhere
                    self.cluster.bounced(time.monotonic())
                spec[P.T_RES] = ST.stripped(spec[P.T_RES])
                self.cluster.placed_here(spec, lambda spec: self._do(
                    self.sched.submit([spec], overflow=False)))

    def _placed_actor(self, spec: list) -> None:
        if self.sched.actor(spec[P.A_ID]) is not None:   # spilled from here, back again
            self._do(self.sched.mailboxes.keep(spec[P.A_ID], spec[P.A_RES]))
        else:
            self._created(spec)

    def _on_head_shutdown(self, mtype: int, f: list) -> None:
        self.running = False

    # -- actions: one method per kind the scheduler returns ----------------------------
    def _do(self, acts: list) -> None:
        handlers = self._action_handlers
        for act in acts:
            handlers[act[0]](act)

    def _act_dispatch(self, act: tuple) -> None:
        _, wid, specs = act
        funcs = self.clients.funcs_for(wid, specs)
        if not self._send(self.clients.ident_of[wid], P.TASKS, specs, funcs):
            self.log.warning("a worker vanished before its dispatch", worker=wid)

    def _to_worker(self, wid: bytes, mtype: int, *fields) -> None:
        ident = self.clients.ident_of.get(wid)
        if ident is not None:   # else it has not said hello, or is gone
            self._send(ident, mtype, *fields)

    def _act_forward(self, act: tuple) -> None:
        self._to_worker(act[1], P.TASKS, act[2], {})

    def _act_spawn(self, act: tuple) -> None:
        self.procs.spawn(act[1], act[2], act[3])

    def _act_kill(self, act: tuple) -> None:
        self.procs.kill(act[1])

    def _act_fail(self, act: tuple) -> None:
        _, spec, kind, why = act
        if len(spec) == P.ACTOR_FIELDS:
            return  # an actor creation: its calls fail through the actor's state
        self.events.failed(spec, why)
        blob = self.directory.fail_blob(spec[P.T_ACTOR]) if kind == S.ACTOR_DIED else None
        self.cluster.finished(spec[P.T_ID])
        self._send(spec[P.T_OWNER], P.RESULTS, [failed_result(spec, kind, why, blob)])

    def _act_create(self, act: tuple) -> None:
        spec = act[2]
        blob = self.clients.funcs.get(spec[P.A_CLASS])
        self._to_worker(act[1], P.TASKS, [], {spec[P.A_CLASS]: blob} if blob else {})
        self._to_worker(act[1], P.CREATE_ACTOR, spec)

    def _act_release(self, act: tuple) -> None:
        self._to_worker(act[1], P.SHUTDOWN, "released")

    def _act_cancel(self, act: tuple) -> None:
        self._to_worker(act[1], P.CANCEL, act[2], False)

    def _act_spillback(self, act: tuple) -> None:
        specs = self.cluster.spill_or_keep(act[1])
        if specs:
            self._to_head(P.SPILLBACK, specs, self.clients.funcs_of(specs))

    def _act_actor_state(self, act: tuple) -> None:
        info, actor = act[3], self.sched.actor(act[1]) if act[2] == "ALIVE" else None
        if actor is not None and actor.worker is not None:   # its pid, for the dashboard
            info = {**info, "pid": self.procs.pid_of.get(actor.worker, 0)}
        self._to_head(P.ACTOR_EVENT, act[1], act[2], info)
        self.directory.changed(act[1], act[2], act[3])

    # -- shutdown ------------------------------------------------------------------
    def _shutdown(self) -> None:
        self._to_head(P.NODE_BYE, self.node_id)
        self.jobs.close()
        for d in list(self.clients.drivers):
            self._send(d, P.SHUTDOWN, "the node broker is stopping")
        self.procs.stop(CONFIG.stop_grace_s)


def _cluster_keys(args: argparse.Namespace, log: Any) -> Any:
    """The cluster's keys for a tcp cluster; None for ipc only, or when run --insecure."""
    if not args.head.startswith("tcp://"):
        return None
    if args.insecure:
        warn_insecure(log)
        return None
    if not args.keys:
        raise SystemExit("a node of a tcp cluster needs --keys (the cluster's key directory) "
                         "or, knowingly, --insecure")
    return load_keys(args.keys)


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
    ap.add_argument("--node-ip", default="127.0.0.1", help="the address other nodes reach it at")
    ap.add_argument("--port", type=int, default=0, help="its tcp port for other nodes (0: any)")
    ap.add_argument("--keys", default=None, help="the directory of the cluster's keys")
    ap.add_argument("--insecure", action="store_true", help="tcp without CurveZMQ (warns)")
    ap.add_argument("--head-node", action="store_true", help="the node on the head's machine")
    ap.add_argument("--ready-fd", type=int, default=None,
                    help="write the node's id to this fd once it serves")
    args = ap.parse_args(argv)
    raise_fd_limit()   # a worker and its pidfd per actor: past 1,024 of them (workers inherit it)
    resources = json.loads(args.resources)
    if args.head.startswith("tcp://"):   # a cluster node: what it adds by itself, measured here
        resources = with_defaults(resources, args.node_ip, args.head_node)
    os.makedirs(args.session_dir, mode=0o700, exist_ok=True)
    pool = args.workers if args.workers is not None else max(1, int(resources.get("CPU", 1)))
    node_id = bytes.fromhex(args.node_id) if args.node_id else os.urandom(16)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver's Ctrl-C is not ours
    signal.signal(signal.SIGTERM, _exit_on_signal)
    broker = NodeBroker(args.session_dir, args.head, resources, pool, node_id, args.parent_fd,
                        args.cleanup_dir, _cluster_keys(args, get_logger("node")), args.node_ip,
                        args.port, args.ready_fd)
    try:
        broker.serve()
    except SystemExit:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
