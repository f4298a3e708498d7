"""Ownership: the objects this process owns or borrows, their values as they arrive,
and when each is freed (Ray's ownership model). put/get/wait read it from user
threads; results, fetches and borrows reach it from the I/O thread.

    owner submits a task -> its returns are PENDING entries here -> RESULTS resolve them
    a ref pickled into a value -> the holder BORROWs (+1) -> ... -> BORROW -1 -> freed
    a borrower's get -> FETCH (node -> owner) -> OBJECT (owner -> node -> borrower)
"""
from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

from .. import _protocol as P
from .. import _serialization as S
from .._log import get_logger
from .._object_ref import ObjectRef
from .._object_store import STORE
from ..exceptions import GetTimeoutError, ObjectLostError, ObjectStoreFullError
from .streams import NONE_BLOB, Streams
from .table import ERROR, PENDING, READY, ObjectTable, Waiter
from .transport import Op, Transport

_log = get_logger("owner")


def _wire(state: int) -> int:
    """A table state as an OBJECT message's status (P.OK / P.ERROR)."""
    return P.ERROR if state == ERROR else P.OK


class Owner:
    def __init__(self, ident: bytes, transport: Transport, ids: Any) -> None:
        self.ident = ident
        self.t = transport
        self.ids = ids
        self.table = ObjectTable(ident)
        # The node broker died (runtime._node_gone): what is still pending, or made
        # since, fails with this at the next get or wait instead of waiting forever.
        self.broken: BaseException | None = None
        self._inflight: dict[bytes, list] = {}       # task_id -> holds its args keep
        self._arg_segments: dict[bytes, list] = {}   # task_id -> its args' segment
        self._kept: dict[bytes, Any] = {}            # task_id -> what lives until its result
        # Set by a task worker while it runs a task: get()/wait() call it with True
        # before blocking and False after, so that the node can lend the task's CPU
        # and take back the tasks queued behind it.
        self.block_hook: Callable[[bool], None] | None = None
        self.on_direct_result: Callable[[bytes], None] = lambda task_id: None
        # Called when no task or call of this process is left unanswered (set while a
        # driver waits for that at exit: Runtime.drain).
        self.on_idle: Callable[[], None] | None = None
        self.streams = Streams(self)   # the generator tasks this process called

    # -- refs (any thread) ---------------------------------------------------------
    def new_refs(self, oids: list[bytes]) -> list[ObjectRef]:
        self.table.new_owned(oids)
        return [ObjectRef(oid, self.ident, self) for oid in oids]

    def adopt_ref(self, oid: bytes, owner: bytes) -> ObjectRef:
        """An ObjectRef for `oid` met in an unpickled value."""
        if self.table.adopt(oid, owner):
            self.t.send(P.BORROW, owner, [oid], 1, True)
        return ObjectRef(oid, owner, self)

    def owner_of(self, oid: bytes) -> bytes | None:
        """Who owns `oid`, if this process knows the object (owns or borrows it)."""
        entry = self.table.entries.get(oid)
        return entry.owner if entry is not None else None

    def count_out_of_band(self, oid: bytes, owner: bytes) -> Owner:
        """Count a ref rebuilt from its binary() (ObjectRef(binary)) as an unpickled one;
        an object this process owned and has freed resolves to ObjectLostError."""
        if owner == self.ident:
            self.drain_released()   # (refs dropped before this are gone, not pending)
        freed = owner == self.ident and oid not in self.table.entries
        if self.table.adopt(oid, owner):
            self.t.send(P.BORROW, owner, [oid], 1, True)
        if freed:
            self.resolve(oid, ERROR, S.dumps_system_error(ObjectLostError(
                oid.hex(), f"Object {oid.hex()} was freed by its owner (this process) before "
                "ObjectRef() rebuilt a ref to it")), None)
        return self

    def on_ref_deleted(self, oid: bytes) -> None:
        # Freeing can wait a moment (a loop dropping a ref per call must not wake the
        # I/O thread per call).
        self.table.released.append(oid)
        self.t.nudge()

    def new_actor_token(self, actor_id: bytes, ends_actor: bool) -> ObjectRef:
        """The ref an actor's handles share: when the last one anywhere is gone, the
        actor ends (ends_actor: this process created it and it is not detached)."""
        token = self.new_refs([actor_id])[0]
        entry = self.table.entries[actor_id]
        entry.actor = ends_actor
        entry.state, entry.data = READY, None
        return token

    def disown_actor_token(self, actor_id: bytes) -> None:
        """The actor's handle turned out to be another's (get_if_exists): dropping it
        must not end that actor."""
        self.table.entries[actor_id].actor = False

    def hold_pairs(self, pairs: list) -> list:
        """Make these (object_id, owner) pairs held by a blob about to be sent."""
        for oid, owner in self.table.hold(pairs):
            self.t.send(P.BORROW, owner, [oid], 1, False)
        return [(oid, owner) for oid, owner in pairs]

    def release_pairs(self, pairs: list, via_node: bool = False) -> None:
        """Drop the holds a stored value or a finished task had on these objects.
        via_node: also the holds on objects owned here go out as BORROW messages
        through the node and come back (see on_result)."""
        for oid, owner in pairs:
            if owner == self.ident and not via_node:
                entry = self.table.borrow_delta(oid, -1)
                if entry is not None:
                    self._free(oid, entry)
            else:
                self.t.send(P.BORROW, owner, [oid], -1, False)

    def track(self, task_id: bytes, held: list, args: Any) -> None:
        """A submitted task keeps its args' holds and segment until its result."""
        if held:
            self._inflight[task_id] = held
        if type(args) is list:
            self._arg_segments[task_id] = args

    def keep(self, task_id: bytes, obj: Any) -> None:
        """Keep `obj` alive until the task's result is in (before the task is submitted):
        an actor call keeps its actor's lifetime token, so that an actor whose handles
        are all gone ends after the calls made to it, as in Ray, not before them."""
        self._kept[task_id] = obj

    def busy(self) -> bool:
        """True while a task or call this process made has not answered."""
        return bool(self._kept)

    def untrack(self, task_id: bytes, via_node: bool = False) -> None:
        if self._kept:
            self._kept.pop(task_id, None)
            if not self._kept and self.on_idle is not None:
                self.on_idle()
        held = self._inflight.pop(task_id, None)
        if held:
            self.release_pairs(held, via_node)
        args = self._arg_segments.pop(task_id, None)
        if args is not None:
            STORE.free(args)

    # -- the I/O thread (and the main thread's sync lane) ----------------------------
    def drain_released(self) -> None:
        """Free what the refs dropped since the last call no longer keep alive (any
        thread: the messages it queues leave with the I/O thread's next flush)."""
        released = self.table.released
        queued = False
        while released:
            oid = released.popleft()
            entry, tell_owner = self.table.release_local(oid)
            if entry is None:
                continue
            if tell_owner:
                # Unnumbered (0): no claim waits for it to be handled.
                self.t.outbox.append((Op.NODE, (P.BORROW, (entry.owner, [oid], -1, True)), 0))
            queued = self._free(oid, entry) or tell_owner or queued
        if queued:
            self.t.nudge()

    def _free(self, oid: bytes, entry: Any) -> bool:
        """Free an entry's value; True if that queued a message for the I/O thread."""
        if type(entry.data) is list:   # a shared-memory segment
            if entry.owned:
                STORE.free(entry.data)
            else:
                STORE.forget(entry.data[1])
        if entry.contained:
            self.release_pairs(entry.contained)
        if entry.actor and entry.owned:
            self.t.outbox.append((Op.RELEASE, (oid,), 0))
            return True
        return False

    def on_result(self, r: list, direct: bool = False) -> None:
        task_id = r[P.R_TASK]
        # A worker that kept a ref from the args registered as a borrower with a BORROW
        # sent through the node before its result. A result that came straight from the
        # worker can overtake that BORROW, so the holds of a direct call are dropped
        # through the node too, behind it.
        self.untrack(task_id, via_node=direct)
        if self.streams.live and task_id in self.streams.live and self._stream_result(r):
            return
        if r[P.R_STATUS] == P.OK:
            contained = r[P.R_CONTAINED] or []
            for i, blob in enumerate(r[P.R_PAYLOAD]):
                pairs = [tuple(p) for p in contained[i]] if i < len(contained) and contained[i] else None
                self.resolve(P.object_id(task_id, i), READY, blob, pairs, owned=True)
        else:
            for i in range(P.error_returns(r)):
                self.resolve(P.object_id(task_id, i), ERROR, r[P.R_PAYLOAD], None)

    def _stream_result(self, r: list) -> bool:
        """A generator task's result ends its stream; True if that resolved its return
        too (a dynamic generator's: its items' refs)."""
        task_id, ok = r[P.R_TASK], r[P.R_STATUS] == P.OK
        stream = self.streams.live[task_id]
        user_error = stream.failed   # the generator raised (an item), or the system failed
        self.streams.end(task_id, None if ok else r[P.R_PAYLOAD])
        if not (ok or user_error):
            return False
        if not stream.dynamic:   # its completed(): None once it ran, raised or not (as Ray)
            if ok:
                return False
            self.resolve(P.object_id(task_id, 0), READY, NONE_BLOB, None, owned=True)
            return True
        blob, held = self.streams.dynamic_value(stream)
        self.resolve(P.object_id(task_id, 0), READY, blob, held, owned=True)
        return True

    def resolve(self, oid: bytes, state: int, data: Any, contained: list | None,
                owned: bool = False) -> None:
        acts = self.table.resolve(oid, state, data, contained)
        if acts is None:  # nobody holds the object any more
            if contained:
                self.release_pairs(contained)
            if owned and type(data) is list:
                STORE.free(data)
            return
        callbacks, remote = acts
        if remote:
            for requester in remote:
                self.t.send(P.OBJECT, oid, requester, _wire(state), data, None)
        if callbacks:
            entry = self.table.entries.get(oid)
            for fn in callbacks:
                try:
                    fn(oid, state, data, entry)
                except Exception:
                    _log.exception("object callback failed")

    def fail_returns(self, oids: list[bytes], exc: BaseException) -> None:
        blob = S.dumps_system_error(exc)
        for oid in oids:
            self.resolve(oid, ERROR, blob, None)

    def fail_pending(self, exc: BaseException) -> None:
        """Every object still pending fails with `exc` (the node broker is gone)."""
        blob = S.dumps_system_error(exc)
        self.streams.end_all(blob)
        for oid, entry in list(self.table.entries.items()):
            if entry.state == PENDING:
                self.resolve(oid, ERROR, blob, None)

    def on_object(self, f: list) -> None:
        """The value of an object this process borrows, fetched from its owner."""
        oid, _requester, status, blob, _contained = f
        self.resolve(oid, ERROR if status == P.ERROR else READY, blob, None)

    def on_fetch(self, f: list) -> None:
        """A borrower asks for the value of an object owned here."""
        oid, requester = f[0], f[2]
        entry = self.table.add_remote_waiter(oid, requester)
        if entry is not None:
            self.t.send(P.OBJECT, oid, requester, _wire(entry.state), entry.data, None)
        elif oid not in self.table.entries:
            err = S.dumps_system_error(ObjectLostError(
                oid.hex(), f"Object {oid.hex()} was freed by its owner"))
            self.t.send(P.OBJECT, oid, requester, P.ERROR, err, None)

    def on_borrow(self, f: list) -> None:
        for oid in f[1]:
            entry = self.table.borrow_delta(oid, f[2])
            if entry is not None:
                self._free(oid, entry)

    def object_rows(self) -> list:
        """One row per object this process owns or borrows, for zray memory."""
        rows = []
        with self.table.lock:
            items = list(self.table.entries.items())
        for oid, e in items:
            if e.actor:
                continue
            data = e.data
            stored = type(data) is list
            rows.append([oid.hex(), e.owned, e.owner.hex(), ("PENDING", "READY", "ERROR")[e.state],
                         data[2] if stored else (len(data) if data is not None else 0),
                         data[1] if stored else "", e.refs, e.borrowers,
                         len(e.contained) if e.contained else 0])
        return rows

    # -- put / get / wait (user threads) -------------------------------------------
    def put(self, value: Any) -> ObjectRef:
        try:
            blob, refs = S.dumps(value)
        except ObjectStoreFullError:
            raise
        except Exception as exc:
            raise TypeError(S.describe_pickling_error("the value given to put()", value, exc)) from exc
        oid = P.object_id(self.ids.task_id(), 0)
        ref = self.new_refs([oid])[0]
        held = self.hold_pairs(refs) if refs else None
        self.resolve(oid, READY, blob, held)
        return ref

    def _ensure_fetch(self, oid: bytes, entry: Any) -> None:
        if not entry.owned and entry.state == PENDING and not entry.fetched:
            entry.fetched = True
            self.t.send(P.FETCH, oid, entry.owner, self.ident)

    def _entries(self, refs: list[ObjectRef]) -> list:
        if self.broken is not None:
            self.fail_pending(self.broken)
        entries = []
        for ref in refs:
            entry = self.table.entries.get(ref._id)
            if entry is None:  # cannot happen while the ref lives; be safe
                raise ObjectLostError(ref.hex())
            self._ensure_fetch(ref._id, entry)
            entries.append(entry)
        return entries

    def get(self, refs: list[ObjectRef], timeout: float | None) -> list:
        entries = self._entries(refs)
        if any(e.state != READY for e in entries):
            self._wait_for(entries, len(entries), True, timeout, refs)
            # Woken by an error while other objects are still pending: raise it now.
            for e in entries:
                if e.state == ERROR:
                    raise S.loads(e.data)
        return [S.loads(e.data) for e in entries]

    def _wait_for(self, entries: list, count: int, stop_on_error: bool, timeout: float | None,
                  refs: list) -> None:
        waiter = Waiter(count, stop_on_error)
        if not self.table.register_waiter(entries, waiter):
            return
        self.t.hurry()   # what it waits for may still be in the outbox
        hook = self.block_hook
        if hook is not None:
            hook(True)
        try:
            if not waiter.event.wait(timeout) and stop_on_error:
                pending = [r for r, e in zip(refs, entries, strict=False) if e.state == PENDING]
                raise GetTimeoutError(
                    f"get() timed out after {timeout} s; {len(pending)} of {len(refs)} objects "
                    f"not ready (first: {pending[0] if pending else None})")
        finally:
            self.table.unregister_waiter(entries, waiter)
            if hook is not None:
                hook(False)

    def wait(self, refs: list[ObjectRef], num_returns: int, timeout: float | None) -> tuple[list, list]:
        # One pass when enough are ready already (a loop of wait(num_returns=1) over a
        # long list is O(n) per call; keep that n cheap).
        ready, not_ready = self._split(refs, num_returns)
        if len(ready) >= num_returns or timeout == 0:
            if timeout == 0:
                self._entries(not_ready)   # start fetching what is borrowed
            return ready, not_ready
        self._wait_for(self._entries(refs), num_returns, False, timeout, refs)
        return self._split(refs, num_returns)

    def _split(self, refs: list[ObjectRef], num_returns: int) -> tuple[list, list]:
        """(ready, not ready), in input order; stops looking once num_returns are ready
        (a loop of wait(num_returns=1) over a long list looks at a few refs a call)."""
        lookup = self.table.entries.get
        ready: list[ObjectRef] = []
        not_ready: list[ObjectRef] = []
        for i, ref in enumerate(refs):
            if len(ready) == num_returns:
                not_ready.extend(refs[i:])
                break
            e = lookup(ref._id)
            if e is None:
                raise ObjectLostError(ref.hex())
            (ready if e.state != PENDING else not_ready).append(ref)
        return ready, not_ready

    def future_of(self, ref: ObjectRef) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        keep = [ref]  # the ref must live until the value is in

        def done(_oid, state, data, _entry):
            try:
                value = S.loads(data)
            except Exception as exc:
                fut.set_exception(exc)
                return
            if state == ERROR:
                fut.set_exception(value)
            else:
                fut.set_result(value)
            keep.clear()

        self.when_resolved(ref, done)
        self.t.hurry()   # someone will wait on it (await ref): what makes it must leave now
        return fut

    def when_resolved(self, ref: ObjectRef, done: Any) -> None:
        """Call done(oid, state, data, entry) once `ref` has a value or an error:
        now if it has, else on the I/O thread when it arrives (fetched if borrowed)."""
        entry = self.table.entries.get(ref._id)
        if entry is not None:
            self._ensure_fetch(ref._id, entry)
        entry = self.table.add_callback(ref._id, done)
        if entry is not None:
            done(ref._id, entry.state, entry.data, entry)
