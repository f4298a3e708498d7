"""Generator tasks (num_returns="streaming" / "dynamic"): both ends of the stream.

A task or actor method that yields sends each item to its caller as it is yielded
(ITEMS rows, on the path its result takes: the result never overtakes an item),
then its result row, which ends the stream. The caller keeps a Stream per generator
task: item i is the object (task_id, i + 1) (the task's own return, index 0, is the
generator's completed() ref). The stream always holds a ref to the next item before
it arrives (a pending entry of the object table), so next(), zray.wait([gen]) and
`await` wait on it as on any object; when the task ends that ref resolves to END,
after an error item if it failed.

    worker: for v in gen: ITEMS [task, owner, i, blob, ...] --> owner: item i READY,
            the ref to item i + 1 pending ... result row --> next item's ref: END

Backpressure (_generator_backpressure_num_objects=n): the worker pauses while n of
its items are not taken by next() yet; the caller tells it with GEN_ACK (through the
nodes, to the producer's identity that each item row carries).

Retries start the generator again: items the caller has (by index) are dropped.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from .. import _protocol as P
from .. import _serialization as S
from .._object_ref import ObjectRef
from .._object_store import STORE
from ..exceptions import ObjectStoreFullError
from .table import ERROR, PENDING, READY

NONE_BLOB = S.dumps(None)[0]   # a generator task's own return (its completed() value)
END = b"zray-end-of-stream"   # the data of the ref after the last item (never unpickled)


# -- the worker's side ---------------------------------------------------------------
class Producer:
    """One generator task running in this worker: how many items it sent, and how
    many its caller has taken (for backpressure)."""
    __slots__ = ("spec", "sent", "taken", "limit", "cond", "wake")

    def __init__(self, spec: list) -> None:
        self.spec = spec
        self.sent = 0
        self.taken = 0
        self.limit = P.backpressure_of(spec[P.T_NRET])
        self.cond = threading.Condition()
        self.wake: Callable[[], None] | None = None   # an async producer's waker

    def on_ack(self, taken: int) -> None:   # I/O thread
        with self.cond:
            self.taken = 1 << 62 if taken < 0 else max(self.taken, taken)
            self.cond.notify_all()
        if self.wake is not None:
            self.wake()

    def must_wait(self) -> bool:
        return self.limit > 0 and self.sent - self.taken >= self.limit


class Producers:
    """The generator tasks of a worker process, and how each item is sent."""

    def __init__(self, rt: Any, emit_item: Callable[[list, list], None]) -> None:
        self.rt = rt
        self.emit_item = emit_item
        self.running: dict[bytes, Producer] = {}

    def on_ack(self, f: list) -> None:   # I/O thread: GEN_ACK
        producer = self.running.get(f[1])
        if producer is not None and type(f[2]) is int:
            producer.on_ack(f[2])

    def start(self, spec: list) -> Producer:
        producer = self.running[spec[P.T_ID]] = Producer(spec)
        return producer

    def end(self, spec: list) -> None:
        self.running.pop(spec[P.T_ID], None)

    def run(self, spec: list, gen: Any) -> None:
        """Send what the generator yields; the caller's error handling sees what it
        raises (and error() then sends that as the next item)."""
        if hasattr(gen, "__anext__"):   # an async generator, with no loop (local mode)
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self.run_async(spec, gen))
            finally:
                loop.close()
            return
        if not hasattr(gen, "__next__"):
            raise TypeError(f"{spec[P.T_NAME]} has num_returns={_mode(spec)!r} but returned "
                            f"{type(gen).__name__}, not a generator (use `yield`).")
        producer = self.start(spec)
        for value in gen:
            self.send(producer, value)
            if producer.must_wait():
                with producer.cond:
                    producer.cond.wait_for(lambda: not producer.must_wait())

    async def run_async(self, spec: list, gen: Any) -> None:
        """run() for an async generator (an async actor's method)."""
        if not hasattr(gen, "__anext__"):
            self.run(spec, gen)
            return
        producer = self.start(spec)
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        def wake() -> None:
            loop.call_soon_threadsafe(event.set)
        producer.wake = wake
        async for value in gen:
            self.send(producer, value)
            while producer.must_wait():
                event.clear()
                if producer.must_wait():
                    await event.wait()

    def send(self, producer: Producer, value: Any) -> None:
        spec = producer.spec
        try:
            blob, refs = S.dumps(value)
        except ObjectStoreFullError:
            raise
        except Exception as exc:
            raise TypeError(S.describe_pickling_error(
                f"item {producer.sent} yielded by {spec[P.T_NAME]}", value, exc)) from exc
        contained = self.rt.owner.hold_pairs(refs) if refs else None
        self.emit_item(spec, [spec[P.T_ID], spec[P.T_OWNER], producer.sent, blob, contained,
                              self.rt.ident, False])
        producer.sent += 1

    def error(self, spec: list, blob: bytes) -> None:
        """The generator raised (for good: no retry left): its caller gets the error as
        the item after the last one sent."""
        producer = self.running.get(spec[P.T_ID])
        index = producer.sent if producer is not None else 0
        self.emit_item(spec, [spec[P.T_ID], spec[P.T_OWNER], index, blob, None, self.rt.ident,
                              True])


def _mode(spec: list) -> str:
    return "dynamic" if spec[P.T_NRET] == P.DYNAMIC else "streaming"


# -- the caller's side -----------------------------------------------------------------
class Stream:
    """The items of one generator task this process called, as they arrive. The I/O
    thread adds; the user's threads take (ObjectRefGenerator)."""
    __slots__ = ("task_id", "refs", "received", "ended", "failed", "dynamic", "producer",
                 "backpressure", "lock", "closed", "__weakref__")

    def __init__(self, task_id: bytes, nret: int) -> None:
        self.task_id = task_id
        self.refs: dict[int, Any] = {}   # index -> ObjectRef: arrived, or the next one
        self.received = 0                # items arrived (indices 0 .. received - 1)
        self.ended = False
        self.failed = False              # an error item arrived
        self.dynamic = nret == P.DYNAMIC
        self.backpressure = P.backpressure_of(nret)
        self.producer: bytes | None = None
        self.lock = threading.Lock()
        self.closed = False   # its generator was dropped: items are not kept


class Streams:
    """The caller's streams, kept by its Owner."""

    def __init__(self, owner: Any) -> None:
        self.owner = owner
        self.live: dict[bytes, Stream] = {}

    def open(self, task_id: bytes, nret: int) -> Stream:
        stream = self.live[task_id] = Stream(task_id, nret)
        self._expect(stream, 0)
        # Its return failing by any other way (an argument's error, the node's death)
        # ends it too.
        entry = self.owner.table.add_callback(P.object_id(task_id, 0), self._on_return)
        if entry is not None and entry.state == ERROR:
            self.end(task_id, entry.data)
        return stream

    def _on_return(self, oid: bytes, state: int, data: Any, entry: Any) -> None:
        if state == ERROR:
            self.end(oid[:16], data)

    def _expect(self, stream: Stream, index: int) -> None:
        """A pending ref to item `index`, before it arrives."""
        stream.refs[index] = self.owner.new_refs([P.object_id(stream.task_id, index + 1)])[0]

    def on_items(self, rows: list) -> None:   # I/O thread
        for row in rows:
            stream = self.live.get(row[P.ITEM_TASK])
            if stream is None or stream.ended or row[P.ITEM_INDEX] != stream.received:
                self._drop(row)   # a retry's repeat
                continue
            stream.producer = row[P.ITEM_PRODUCER]
            if stream.closed:   # nobody takes it: counted, not kept
                self._drop(row)
                stream.received += 1
                stream.failed = stream.failed or bool(row[P.ITEM_ERROR])
                continue
            self._add(stream, row[P.ITEM_BLOB], ERROR if row[P.ITEM_ERROR] else READY,
                      [tuple(p) for p in row[P.ITEM_CONTAINED]] if row[P.ITEM_CONTAINED] else None)

    def _add(self, stream: Stream, data: Any, state: int, contained: list | None) -> None:
        with stream.lock:
            index = stream.received
            stream.received = index + 1
            stream.failed = stream.failed or state == ERROR
            self._expect(stream, index + 1)
        self.owner.resolve(P.object_id(stream.task_id, index + 1), state, data, contained,
                           owned=True)

    def _drop(self, row: list) -> None:
        if row[P.ITEM_CONTAINED]:
            self.owner.release_pairs([tuple(p) for p in row[P.ITEM_CONTAINED]])
        if type(row[P.ITEM_BLOB]) is list:
            STORE.free(row[P.ITEM_BLOB])

    def end(self, task_id: bytes, error: Any = None) -> Stream | None:
        """The task ended (error: its error blob, if it failed): the ref after the
        last item resolves to END (after the error, as an item, if none came)."""
        stream = self.live.pop(task_id, None)
        if stream is None or stream.ended:
            return None
        if error is not None and not stream.failed and not stream.closed:
            self._add(stream, error, ERROR, None)
        with stream.lock:
            stream.ended = True
            last = stream.received
        if not stream.closed:
            self.owner.resolve(P.object_id(task_id, last + 1), READY, END, None, owned=True)
        return stream

    def end_all(self, error: Any) -> None:
        for task_id in list(self.live):
            self.end(task_id, error)

    def dynamic_value(self, stream: Stream) -> tuple[Any, list | None]:
        """The value of a dynamic generator task's return: its items' refs."""
        with stream.lock:
            refs = [stream.refs[i] for i in range(stream.received) if i in stream.refs]
        blob, pairs = S.dumps(DynamicObjectRefGenerator(refs))
        return blob, self.owner.hold_pairs(pairs) if pairs else None

    def close(self, stream: Stream) -> None:
        """Its generator is dropped (any thread): the items not taken are freed; what
        still comes is dropped, and the task's end still resolves completed()."""
        with stream.lock:
            if stream.closed or stream.ended:
                return
            stream.closed = True
            refs, stream.refs = stream.refs, {}
        del refs
        self.taken(stream, -1)

    def taken(self, stream: Stream, count: int) -> None:
        """The caller took `count` items (-1: dropped the generator): a paused producer
        hears of it."""
        if stream.backpressure and stream.producer is not None:
            self.owner.t.send(P.GEN_ACK, stream.producer, stream.task_id, count)


class DynamicObjectRefGenerator:
    """The value of a num_returns="dynamic" task's ref: the refs of what it yielded (the
    last one raises the error it raised, if it failed). Iterating takes them in order."""

    def __init__(self, refs: list[ObjectRef]) -> None:
        self._refs = list(refs)

    def __iter__(self) -> DynamicObjectRefGenerator:
        return self

    def __next__(self) -> ObjectRef:
        if not self._refs:
            raise StopIteration
        return self._refs.pop(0)

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self) -> str:
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"


def state_of(owner: Any, ref: Any) -> tuple[int, Any]:
    """(state, data) of a ref's entry (PENDING if unknown)."""
    entry = owner.table.entries.get(ref._id)
    if entry is None:
        return PENDING, None
    return entry.state, entry.data
