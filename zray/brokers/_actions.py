"""What the node's schedulers ask the node broker to do: the kinds of the action
tuples their methods return, and why a FAIL fails. Shared by _tasks, _mailboxes
and _scheduling; the broker carries each kind out (node.py, one method per kind)."""
from __future__ import annotations

# ACTION KINDS
DISPATCH = "dispatch"      # (DISPATCH, worker_id, [task specs])
SPAWN = "spawn"            # (SPAWN, worker_id, actor_id | None, [GPU ids])
KILL = "kill"              # (KILL, worker_id)
FAIL = "fail"              # (FAIL, spec, error_kind, message)  error_kind below
SPILLBACK = "spillback"    # (SPILLBACK, [task specs])      tasks no resource here can fit
CREATE = "create"          # (CREATE, worker_id, actor spec)
FORWARD = "forward"        # (FORWARD, worker_id, [call specs])   calls to a live actor
RELEASE = "release"        # (RELEASE, worker_id)           end the actor after its queued calls
CANCEL = "cancel"          # (CANCEL, worker_id, task_id)
ACTOR_STATE = "actor"      # (ACTOR_STATE, actor_id, state name, info)

# error kinds for FAIL
CRASHED, CANCELLED, ACTOR_DIED = "crashed", "cancelled", "actor_died"
UNSCHEDULABLE = "unschedulable"   # its strategy names a node that cannot run it
NODE_DIED = "node_died"           # the node it ran on died (no retries left)
WORKER_START = "worker_start"     # no worker can start on the node (they die at start)
