"""Progress bars for tasks and actors, shown by the driver (Ray's `ray.experimental.tqdm_ray`).

    from zray.experimental import tqdm_ray

    @zray.remote
    def work(items):
        for item in tqdm_ray.tqdm(items, desc="work"):
            ...

Each bar of each task or actor is one bar in the driver's output, prefixed with the
process it runs in; the driver keeps them apart (each process's bars in rows of their
own), so bars of concurrent tasks never draw over each other. A bar sends its state at
most every `flush_interval_s` (1 s) and when it closes. The driver draws with the
`tqdm` package when it has it (on a terminal or in a notebook), else with plain text
bars; where its stderr is no terminal (a file, a pipe) it prints a line per bar now and
then and at its end. In the driver itself a bar is drawn directly.
"""
from __future__ import annotations

import json
import numbers
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from .. import _context, _progress
from .. import _protocol as P

__all__ = ["safe_print", "tqdm"]

safe_print = _progress.safe_print


def _check_number(what: str, value: Any, none_ok: bool = True, negative_ok: bool = False) -> Any:
    """`value` as a plain int or float (numpy numbers too); TypeError/ValueError naming it."""
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"tqdm_ray.tqdm: {what} must be a number{' or None' if none_ok else ''}, "
                        f"not {type(value).__name__} {value!r}")
    plain = int(value) if isinstance(value, numbers.Integral) else float(value)
    if plain != plain or (not negative_ok and plain < 0):
        raise ValueError(f"tqdm_ray.tqdm: {what} must be {'a number' if negative_ok else '>= 0'}, "
                         f"not {value!r}")
    return plain


def _check_str(what: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"tqdm_ray.tqdm: {what} must be a str or None, not {type(value).__name__} "
                        f"{value!r}")
    return value


def _send(state: dict) -> None:
    """To the driver: from a worker, as a forwarded output line it will show as a bar."""
    rt = _context.runtime()
    if _context.worker_host() is None or rt is None:
        _progress.show_local(state)   # this is the driver (or a task in local mode)
        return
    ctx = _context.current_context()
    who = ctx.prefix_name if ctx is not None else "worker"
    state["node"] = rt.node_id.hex()[:12]
    rt.send(P.LOG, f"({who} pid={state['pid']})",
            _progress.MAGIC + json.dumps(state, separators=(",", ":")), False, rt.job_id or b"")


class tqdm:
    """A tqdm-like progress bar usable in tasks and actors; the driver draws it.

    Takes a subset of tqdm's arguments, as Ray's: `iterable`, `desc`, `total` (default:
    `len(iterable)` when it has one), `unit` ("it"), `position` (the row among this
    process's bars, from 0) and `flush_interval_s` (the least time between two states
    sent to the driver; a close is always sent). Iterating over it, or leaving a `with`
    block, closes it; so does close().
    """

    DEFAULT_FLUSH_INTERVAL_SECONDS = 1.0

    def __init__(self, iterable: Iterable | None = None, desc: str | None = None,
                 total: float | None = None, unit: str | None = None, position: int | None = None,
                 flush_interval_s: float | None = None) -> None:
        if iterable is not None and not (hasattr(iterable, "__iter__") or hasattr(iterable, "__getitem__")):
            raise TypeError(f"tqdm_ray.tqdm: iterable must be iterable or None, not "
                            f"{type(iterable).__name__} {iterable!r}")
        if position is not None and (isinstance(position, bool)
                                     or not isinstance(position, numbers.Integral)):
            raise TypeError(f"tqdm_ray.tqdm: position must be an int or None, not "
                            f"{type(position).__name__} {position!r}")
        total = _check_number("total", total)
        if total is None and iterable is not None:
            try:
                total = len(iterable)   # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        self._iterable = iterable
        self._desc = _check_str("desc", desc)
        self._total = total
        self._unit = _check_str("unit", unit) or "it"
        self._pos = _check_number("position", position) or 0
        interval = _check_number("flush_interval_s", flush_interval_s)
        self._flush_interval_s = self.DEFAULT_FLUSH_INTERVAL_SECONDS if interval is None else interval
        self._x: float = 0
        self._closed = False
        self._id = os.urandom(8).hex()
        self._made = time.monotonic()
        self._flushed_at = self._made
        self._send()   # the bar shows at once, at 0

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        """Change the bar's description (sent with the next state, at most every
        flush_interval_s)."""
        self._desc = _check_str("desc", desc)
        if refresh:
            self._flush()

    def update(self, n: float = 1) -> None:
        """Advance the bar by `n` (negative goes back); ignored once closed, as tqdm."""
        if type(n) is not int:   # (update(1) in a loop: no check beyond this one)
            n = _check_number("update(n)", n, none_ok=False, negative_ok=True)
        if self._closed:
            return
        self._x += n
        self._flush()

    def refresh(self) -> None:
        """Send the bar's state now."""
        if not self._closed:
            self._send()

    def close(self) -> None:
        """End the bar: its last state is sent and the driver leaves it drawn. Idempotent."""
        if not self._closed:
            self._closed = True
            self._send()

    @property
    def total(self) -> float | None:
        return self._total

    @total.setter
    def total(self, total: float | None) -> None:
        self._total = _check_number("total", total)

    @property
    def n(self) -> float:
        return self._x

    @n.setter
    def n(self, n: float) -> None:
        self._x = _check_number("n", n, none_ok=False, negative_ok=True)

    def __iter__(self) -> Iterator:
        if self._iterable is None:
            raise ValueError("tqdm_ray.tqdm: no iterable to iterate over; pass one, "
                             "tqdm(iterable, ...), or call update() instead")
        return self._iterate(self._iterable)

    def _iterate(self, iterable: Iterable) -> Iterator:
        try:
            for item in iterable:
                yield item
                self.update(1)
        finally:   # the loop ended, broke or raised: the bar shows where it stopped
            self.close()

    def __enter__(self) -> tqdm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        total = "?" if self._total is None else self._total
        return f"<tqdm_ray.tqdm {self._desc!r} {self._x}/{total}{' closed' if self._closed else ''}>"

    def _flush(self) -> None:
        now = time.monotonic()
        if now - self._flushed_at >= self._flush_interval_s:
            self._send(now)

    def _send(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._flushed_at = now
        _send({"id": self._id, "n": self._x, "total": self._total, "pos": self._pos,
               "desc": self._desc, "unit": self._unit, "pid": os.getpid(), "node": "",
               "closed": self._closed, "t": now - self._made})
