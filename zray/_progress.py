"""The driver's side of tqdm_ray: which bars there are and where each goes.

    worker: tqdm_ray.tqdm.update() --LOG "(f pid=N)" "__zray_tqdm__{json state}"--> node
        --> every driver: Runtime._on_log sees the prefix --> on_line() --> Manager.apply()
    driver: tqdm_ray.tqdm.update() ----------------------------------> Manager.apply()

A bar's state travels as one forwarded output line with a magic prefix (as Ray's log
monitor intercepts its tqdm lines); the driver shows it instead of printing it. Bars are
grouped by process, as in Ray: each process's bars take the rows `offset + position`,
its offset the rows the processes seen before it take, so bars of concurrent tasks never
draw over each other. Nothing here runs until a bar's first state arrives: a program
that uses no bar pays one prefix test per forwarded output line.
"""
from __future__ import annotations

import atexit
import builtins
import contextlib
import json
import numbers
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from ._config import CONFIG
from ._log import get_logger
from ._progress_views import Bar, LineView, TermView, TqdmView

__all__ = ["MAGIC", "hidden", "on_line", "safe_print", "show_local"]

MAGIC = "__zray_tqdm__"   # starts a forwarded line that carries a bar's state

_print = builtins.print
_manager: list = [None]
_manager_lock = threading.Lock()
_NOTHING = contextlib.nullcontext()
_failed: list = []   # the first failure to draw a bar (reported once)
_log = get_logger("tqdm_ray")


def _number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and x == x


_FIELDS = {   # a state's keys and what each must be: a bad line is printed, not shown
    "id": lambda v: isinstance(v, str),
    "n": _number,
    "total": lambda v: v is None or (_number(v) and v >= 0),
    "pos": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "desc": lambda v: isinstance(v, str),
    "unit": lambda v: isinstance(v, str),
    "pid": lambda v: isinstance(v, int),
    "node": lambda v: isinstance(v, str),
    "closed": lambda v: isinstance(v, bool),
    "t": lambda v: _number(v) and v >= 0,
}


def decode(text: str) -> dict | None:
    """The state a forwarded line carries, or None if it is not one."""
    try:
        state = json.loads(text[len(MAGIC):])
    except ValueError:
        return None
    if not isinstance(state, dict) or state.keys() != _FIELDS.keys():
        return None
    return state if all(check(state[k]) for k, check in _FIELDS.items()) else None


class Manager:
    """The bars shown in this driver, grouped by process, and the view that draws them."""

    def __init__(self, view: Any = None) -> None:
        self.lock = threading.RLock()   # the I/O thread's LOG lines and user threads' bars
        self._groups: dict[tuple, dict[str, Bar]] = {}   # in order of first appearance
        self._bars: dict[str, Bar] = {}
        self.closed = 0   # how many bars closed here so far
        self.view = view if view is not None else self._choose_view()

    def _choose_view(self) -> Any:
        try:
            tty = sys.stderr.isatty()
        except (AttributeError, ValueError):
            tty = False
        if tty or "ipykernel" in sys.modules:
            try:
                from tqdm.auto import tqdm
                return TqdmView(tqdm, self.live)
            except Exception:   # not installed (or broken): draw our own
                pass
        if tty:
            return TermView(self.live, self.lock, CONFIG.tqdm_redraw_s)
        return LineView(CONFIG.tqdm_line_interval_s)

    def live(self) -> list[Bar]:
        """The open bars, top row first."""
        return sorted(self._bars.values(), key=lambda b: b.slot)

    def apply(self, state: dict, prefix: str) -> None:
        """A bar's new state: a new bar appears, a known one changes or closes."""
        with self.lock:
            now = time.monotonic()
            bar = self._bars.get(state["id"])
            if bar is None:
                bar = Bar(state, prefix, now)
                self._bars[bar.id] = self._groups.setdefault(bar.group, {})[bar.id] = bar
                moved = self._place()
                self.view.opened(bar)
            else:
                bar.set(state, prefix, now)
                if not bar.closed:   # (a view's closed() shows the last state)
                    self.view.changed(bar)
                moved = []
            if bar.closed:
                self.closed += 1
                del self._bars[bar.id]
                group = self._groups[bar.group]
                del group[bar.id]
                if not group:
                    del self._groups[bar.group]
                moved = self._place()
                self.view.closed(bar)
            moved = [b for b in moved if b is not bar]
            if moved:
                self.view.moved(moved)

    def _place(self) -> list[Bar]:
        """Each bar's row; the bars whose row changed."""
        moved, offset = [], 0
        for group in self._groups.values():
            for bar in group.values():
                if bar.slot != offset + bar.pos:
                    bar.slot = offset + bar.pos
                    moved.append(bar)
            offset += 1 + max(b.pos for b in group.values())
        return moved

    @contextlib.contextmanager
    def hidden(self) -> Iterator[None]:
        """The bars step aside while other output is written."""
        with self.lock:
            self.view.hide()
            try:
                yield
            finally:
                self.view.show()

    def finish(self) -> None:
        """At exit: the last state of bars never closed, where a throttle held it back."""
        with self.lock:
            try:
                self.view.finish(self.live())
            except Exception:   # a closed stream at exit must not print a traceback
                pass


def instance() -> Manager:
    """This driver's bars (made at the first bar; print() then makes way for them)."""
    with _manager_lock:
        if _manager[0] is None:
            manager = _manager[0] = Manager()
            atexit.register(manager.finish)
            if manager.view.hides and CONFIG.tqdm_patch_print:
                builtins.print = safe_print   # as Ray: a driver's print() must not garble bars
        return _manager[0]


def on_line(prefix: str, text: str) -> bool:
    """A forwarded line that starts with MAGIC: shown as a bar if it is a bar's state
    (True); False for the caller to print it as the output it then is."""
    state = decode(text)
    if state is None:
        return False
    _show(state, prefix)
    return True


def show_local(state: dict) -> None:
    """A bar of this very process (a driver, or a task run in local mode)."""
    _show(state, "")


def _show(state: dict, prefix: str) -> None:
    try:
        instance().apply(state, prefix)
    except Exception as exc:   # a bar that fails to draw (a closed stream, a broken tqdm)
        if not _failed:        # must not stop the I/O thread, nor fail the user's loop
            _failed.append(exc)
            _log.warning("a tqdm_ray bar could not be drawn; later failures are not reported",
                         error=repr(exc))


def hidden() -> Any:
    """A context in which output can be written without garbling bars on a terminal
    (a no-op where no bar was ever shown)."""
    manager = _manager[0]
    if manager is None or not manager.view.hides:
        return _NOTHING
    return manager.hidden()


def safe_print(*args: Any, **kwargs: Any) -> None:
    """print(), with this driver's bars out of the way while it writes (as Ray's)."""
    if kwargs.get("file") not in (None, sys.stdout, sys.stderr):
        _print(*args, **kwargs)
        return
    with hidden():
        _print(*args, **kwargs)
        if _manager[0] is not None and _manager[0].view.hides:
            (kwargs.get("file") or sys.stdout).flush()
