"""The client runtime of every zray process (driver or worker), in parts:

    transport.py  the I/O thread, its sockets, the outbox of typed commands (Op)
    owner.py      objects owned or borrowed here: futures, put/get/wait, freeing
    table.py      the futures table the owner keeps (pure bookkeeping, thread-safe)
    submit.py     arguments, dependency resolution, per-actor call order
    lanes.py      pure: node, lease or direct for each task and call; retries
    peers.py      the caller side of direct sockets (actors, leased workers)
    endpoint.py   the callee side: a worker's callers' socket
    runtime.py    the composition, and what the node broker sends
    worker.py, actor_host.py, execute.py, output.py: a worker process's main loop

docs/architecture.md follows one task through these parts.
"""
from .runtime import Runtime, current, set_current

__all__ = ["Runtime", "current", "set_current"]
