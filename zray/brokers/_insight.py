"""The head's view of what the cluster does, beside its control store: the history of
tasks and actor calls the nodes report (TASK_EVENTS, _history), the control calls
that read it (timeline, dashboard_url), and the dashboard's HTTP server, which runs
on threads of its own and reads this object (zray/dashboard)."""
from __future__ import annotations

from typing import Any

from .. import dashboard
from .._log import get_logger
from . import _state_calls
from ._app_metrics import AppMetrics
from ._control import ControlStore
from ._history import TaskHistory, chrome_trace

__all__ = ["Insight"]


class Insight:
    def __init__(self, store: ControlStore, session_dir: str, dashboard_fd: int | None) -> None:
        self.store = store
        self.session_dir = session_dir
        self.history = TaskHistory()
        self.app_metrics = AppMetrics(session_dir)   # zray.util.metrics, for /metrics
        self.address = ""                 # the head's, once it serves
        self.dashboard_fd = dashboard_fd
        self.server: Any = None
        self.url = ""
        self._objects: Any = None
        self.log = get_logger("head")
        store.add_calls({"timeline": self._timeline, "dashboard_url": lambda args: self.url,
                         "tasks": self._tasks, "task_summary": lambda args: self.history.summary()})
        store.add_calls(_state_calls.calls(self))   # zray.util.state's get_actor, get_task...

    # -- the head's loop -------------------------------------------------------------
    def on_task_events(self, ident: bytes, f: list) -> None:
        node = self.store.by_ident.get(ident)
        if node is not None:   # (else a node that did not say hello: nothing to file it under)
            batches = self.app_metrics.take(node.node_id.hex(), node.ip, f[0])
            self.history.add(node.node_id.hex(), batches, f[1])

    def start(self, address: str) -> None:
        """The head serves at `address`: start the dashboard, if it has a socket."""
        self.address = address
        if self.dashboard_fd is None:
            return
        try:
            self.server = dashboard.serve(self, self.dashboard_fd)
            self.url = self.server.url
        except Exception as exc:   # the head runs on without its dashboard
            self.log.error("the dashboard did not start", error=repr(exc))

    def stop(self) -> None:
        if self.server is not None:
            self.server.server_close()
            self.server = None
        if self._objects is not None:
            self._objects.close()

    def _timeline(self, args: list) -> list:
        since = args[0] if args and type(args[0]) in (int, float) else 0.0
        return chrome_trace(self.history.window(since), self.actor_names())

    def _tasks(self, args: list) -> list:
        """The newest tasks of the history (zray.util.state.list_tasks): [limit]."""
        limit = args[0] if args and type(args[0]) is int and args[0] > 0 else 1000
        return [list(r) for r in self.history.records(limit)]

    # -- read by the dashboard's threads -------------------------------------------------
    def actor_names(self) -> dict[bytes, str]:
        return {aid: a.get("class_name") or "" for aid, a in list(self.store.actors.items())}

    @property
    def node_objects(self) -> Any:
        """Who asks the head's own node for its memory table (made on first use)."""
        if self._objects is None:
            from ..dashboard.objects import NodeObjects
            self._objects = NodeObjects(self.session_dir)
        return self._objects
