"""Every tunable of zray in one frozen dataclass, each overridable by ZRAY_<NAME>."""
from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class Config:
    # Values whose pickle is at most this many bytes travel inside messages.
    inline_threshold: int = 100 * 1024
    # A batch message carries at most this many tasks or results (one syscall each
    # side instead of one per task: 20x on async submit, see DESIGN.md section 5).
    max_batch: int = 512
    # A receive loop handles at most this many messages of one socket before it looks
    # at its other sockets (one flooding peer must not starve the rest).
    drain_limit: int = 4096
    # A worker is given up to this many tasks of one shape at a time, run in order
    # under one lease (fewer messages per task; a worker that blocks in get() hands
    # back the ones it has not started).
    dispatch_batch: int = 16
    # An owner keeps a leased worker this long after its last task on it (a loop of
    # sync tasks reuses it: 2 hops a task instead of 4). 0 turns leases off.
    lease_linger_s: float = 0.02
    # A sync actor serves its callers' socket on the thread that runs its calls (two
    # thread hand-offs fewer per call); off: the I/O thread serves it.
    sync_actor_own_socket: bool = True
    # Callers send actor calls straight to the actor's socket (2 hops, not 4).
    direct_actor_calls: bool = True
    # Work that need not leave at once (dropped refs; the main thread's last call, which
    # its get() may still send itself) wakes the I/O thread at most this late, instead
    # of now: each wake costs the caller ~40 us (the GIL goes to the I/O thread).
    lazy_wake_s: float = 0.002
    # The main thread keeps at most this many sockets of its own to actors and leased
    # workers it calls synchronously (the least recently used is closed past it).
    sync_lane_sockets: int = 64
    # The main thread polls for a sync call's result without sleeping for up to this
    # long (when the last one came back faster than twice this), as a sleeping thread
    # takes ~70 us to wake on this VM: a sync actor call 183 -> 105 us. 0: never spin.
    sync_spin_s: float = 0.00015
    # Node broker -> head broker heartbeat period, and how many missed beats kill a node.
    heartbeat_s: float = 0.5
    heartbeat_misses: int = 10
    # A node's link to the head retries its connection this often (ms).
    reconnect_ms: int = 20
    # A starting node whose handshakes with the head fail this many times in a row (and
    # that the head never answered) has the wrong cluster key: it stops and says so.
    head_handshake_failures: int = 3
    # A node asked about an actor it does not know asks the head where it lives; the
    # head answers once the actor is reported, or after this long with none.
    actor_locate_timeout_s: float = 5.0
    # Resource updates to the head are coalesced to at most one per this period.
    resource_update_s: float = 0.02
    # Extra workers (started while others block in get) idle this long are stopped.
    idle_worker_timeout_s: float = 5.0
    # A node's shared-memory store holds this many bytes before it spills to disk,
    # unless the node is given object_store_memory.
    object_store_bytes: int = 2 << 30
    # The store leaves this much of /dev/shm free (a small /dev/shm: Docker gives 64 MiB):
    # past it the node spills, and a writer asks its node for room (waiting at most
    # spill_wait_s) before it writes its value straight to the spill directory.
    shm_reserve_bytes: int = 4 << 20
    spill_wait_s: float = 10.0
    # A node pulls a segment another node holds in chunks of this many bytes, this many
    # in flight (the link stays busy while each chunk is written out), and gives up on a
    # pull that made no progress for transfer_timeout_s (its reader gets ObjectLostError).
    transfer_chunk_bytes: int = 4 << 20
    transfer_in_flight: int = 4
    # Over CurveZMQ a chunk travels in frames of this many bytes: libzmq encrypts and
    # decrypts each frame as a whole, so small frames let the sender's encryption, the
    # wire and the receiver's decryption overlap: 100 MB between two nodes of this
    # 2-core machine moves ~13% faster (4-24%) than in 4 MiB frames (benchmarks/RESULTS.md).
    transfer_frame_bytes: int = 256 << 10
    transfer_timeout_s: float = 30.0
    # Cap on task workers per node, counting those blocked in get() (each level of nested
    # get() holds one). 0: as many as the node's available memory allows at
    # worker_memory_bytes each, at least 64, at most 1024. When the cap holds queued
    # work back while workers block, the node warns their owners, naming this knob.
    max_workers_per_node: int = 0
    worker_memory_bytes: int = 64 << 20
    # How long init() waits for the brokers to come up.
    start_timeout_s: float = 15.0
    # How long shutdown waits for a process to exit before it kills it.
    stop_grace_s: float = 2.0
    # A driver that exits (interpreter exit, no shutdown() call) first waits this long
    # at most for the tasks and calls it made to finish: as in Ray, where a script's
    # last f.remote() still runs (a fire-and-forget script depends on it); Ray's own
    # teardown gives them about half a second.
    exit_grace_s: float = 1.0
    # A task whose resources no node can ever provide is reported after this long.
    infeasible_warning_s: float = 0.5
    # In a cluster, a node's queue past this many tasks per CPU overflows to nodes with
    # room (through the head); 0: never. A node that got its overflow back waits
    # overflow_backoff_s before it tries again.
    overflow_queue_per_cpu: float = 2.0
    overflow_backoff_s: float = 1.0
    # `zray memory` waits this long for every local process to list its objects, then
    # answers with the rows it has (a busy or hung process must not hang the command).
    memory_stats_timeout_s: float = 2.0
    # Async actors run at most this many calls at once unless max_concurrency says.
    async_actor_max_concurrency: int = 1000
    # Workers that die as they start (before their hello): after worker_start_free of
    # them in a row, the next fork waits worker_start_backoff_s, doubling up to
    # worker_start_backoff_max_s; after worker_start_failures in a row, the tasks that
    # wait for a worker fail with WorkerCrashedError (else they would wait forever).
    worker_start_free: int = 2
    worker_start_backoff_s: float = 0.1
    worker_start_backoff_max_s: float = 10.0
    worker_start_failures: int = 5
    # A remote function or actor class that pickles to more than this many bytes is
    # warned about (naming its biggest captured global), past the error size refused
    # (as Ray: 10 MB and 100 MB); put large values with zray.put() instead.
    function_size_warn_bytes: int = 10_000_000
    function_size_error_bytes: int = 100_000_000
    # A remote function garbage-collected in its process (its tasks done) has its blob
    # dropped by the node this much later, unless it is defined again meanwhile.
    function_free_delay_s: float = 1.0
    # A runtime_env's working_dir or py_module is refused past this many bytes of files
    # (each is zipped once and shipped to the workers through the object store).
    runtime_env_max_bytes: int = 100 << 20
    # Workers record each task and actor call they run (name, state, start, end) and
    # send the records in batches at most every task_events_s, through their node, to
    # the head, which keeps the last task_history of them (the dashboard, timeline()).
    task_events: bool = True
    task_events_s: float = 1.0
    task_history: int = 10_000
    # The head keeps at most this many series of application metrics (zray.util.metrics:
    # one per process, metric and tag values); past it the least recently updated go.
    app_metrics_series: int = 20_000
    # tqdm_ray bars in a driver (zray/_progress.py): where stderr is not a terminal, a
    # bar's line is printed at most every tqdm_line_interval_s (and at its end); on a
    # terminal without the tqdm package, the bars are redrawn at most every tqdm_redraw_s
    # (tqdm's own mininterval); print() makes way for them unless tqdm_patch_print is off
    # (Ray's RAY_TQDM_PATCH_PRINT).
    tqdm_line_interval_s: float = 0.5
    tqdm_redraw_s: float = 0.1
    tqdm_patch_print: bool = True

    @classmethod
    def from_env(cls) -> Config:
        """The defaults, overridden by ZRAY_<FIELD> environment variables."""
        values = {}
        for field in dataclasses.fields(cls):
            raw = os.environ.get("ZRAY_" + field.name.upper())
            if raw is None:
                continue
            kind: type = type(field.default)
            try:
                if kind is bool:
                    values[field.name] = raw.strip().lower() in ("1", "true", "yes", "on")
                    continue
                values[field.name] = kind(raw)
            except ValueError as exc:
                raise ValueError(
                    f"environment variable ZRAY_{field.name.upper()}={raw!r} is not a valid "
                    f"{kind.__name__}"
                ) from exc
        return cls(**values)


CONFIG = Config.from_env()
