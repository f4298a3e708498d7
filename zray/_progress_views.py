"""How tqdm_ray's bars look in a driver (zray/_progress.py keeps which bars there are):
one bar's line, and three ways to show bars. On a terminal or in a notebook, real
`tqdm` bars if the package is there, else a block of lines redrawn in place at the
bottom of the terminal; where stderr is no terminal (a file, a pipe, captured output),
a plain line per bar when it appears, now and then while it moves, and at its end."""
from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_BLOCKS = " ▏▎▍▌▋▊▉█"   # eighths of a cell, as tqdm draws on a UTF-8 stream
_PLAIN_CELLS = 10   # a bar's width where there is no terminal to fill (tqdm's too)


class Bar:
    """A bar as the driver knows it: the last state its tqdm sent, and where it is shown."""
    __slots__ = ("closed", "group", "handle", "id", "label", "n", "pos", "printed", "printed_at",
                 "seen", "slot", "t", "total", "unit")

    def __init__(self, state: dict, prefix: str, now: float) -> None:
        self.id: str = state["id"]
        self.group = (state["node"], state["pid"])   # one process's bars stay together
        self.slot = 0          # its row among all bars: its process's offset + its position
        self.handle: Any = None            # a TqdmView's tqdm object
        self.printed: tuple | None = None  # a LineView's last printed (label, n, total)
        self.printed_at = -math.inf
        self.set(state, prefix, now)

    def set(self, state: dict, prefix: str, now: float) -> None:
        self.pos, self.n, self.total = state["pos"], state["n"], state["total"]
        self.unit, self.closed, self.t, self.seen = state["unit"], state["closed"], state["t"], now
        desc = " ".join(state["desc"].splitlines())   # one bar, one line
        self.label = f"{prefix} {desc}" if prefix and desc else prefix or desc

    def elapsed(self, now: float) -> float:
        """Seconds since its tqdm was made (the sender's clock: no skew between hosts)."""
        return self.t if self.closed else self.t + max(0.0, now - self.seen)

    def snapshot(self) -> tuple:
        return (self.label, self.n, self.total)


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


def line(bar: Bar, now: float, width: int | None = None, unicode: bool = True) -> str:
    """`desc: 40%|####      | 4/10 [00:02<00:03, 1.98it/s]`, as tqdm formats it; with
    no total, `desc: 4it [00:02, 1.98it/s]`. `width`: the terminal's, for the bar to fill."""
    elapsed, unit = bar.elapsed(now), bar.unit
    rate = bar.n / elapsed if elapsed > 0 else 0.0
    speed = "?" + unit + "/s" if rate <= 0 else f"{rate:.2f}{unit}/s" if rate >= 1 \
        else f"{1 / rate:.2f}s/{unit}"
    label = bar.label + ": " if bar.label else ""
    if not bar.total:
        return f"{label}{_num(bar.n)}{unit} [{_clock(elapsed)}, {speed}]"
    done = min(1.0, max(0.0, bar.n / bar.total))
    left = "00:00" if bar.n >= bar.total else _clock((bar.total - bar.n) / rate) if rate > 0 else "?"
    head = f"{label}{done * 100:3.0f}%|"
    tail = f"| {_num(bar.n)}/{_num(bar.total)} [{_clock(elapsed)}<{left}, {speed}]"
    cells = _PLAIN_CELLS if width is None else max(_PLAIN_CELLS, width - len(head) - len(tail) - 1)
    if unicode:
        full, part = divmod(int(done * cells * 8), 8)
        body = _BLOCKS[-1] * full + (_BLOCKS[part] if full < cells else "")
    else:
        body = "#" * int(done * cells)
    return head + body.ljust(cells) + tail


def _utf8(stream: Any) -> bool:
    return (getattr(stream, "encoding", None) or "").lower().replace("-", "") == "utf8"


class LineView:
    """No terminal: a line per bar when it appears, at most every `interval_s` while it
    moves, and its last state at its end (or at the driver's exit, if it never closed)."""
    hides = False   # nothing is redrawn: other output needs no room made

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval, self._clock = interval_s, clock

    def _print(self, bar: Bar) -> None:
        out = sys.stderr
        now = self._clock()
        out.write(line(bar, now, None, _utf8(out)) + "\n")
        out.flush()
        bar.printed, bar.printed_at = bar.snapshot(), now

    def opened(self, bar: Bar) -> None:
        self._print(bar)

    def changed(self, bar: Bar) -> None:
        if self._clock() - bar.printed_at >= self._interval and bar.snapshot() != bar.printed:
            self._print(bar)

    def closed(self, bar: Bar) -> None:
        if bar.snapshot() != bar.printed:
            self._print(bar)

    def moved(self, bars: list) -> None:
        pass

    def hide(self) -> None:
        pass

    def show(self) -> None:
        pass

    def finish(self, live: list) -> None:
        for bar in live:
            self.closed(bar)


class TermView:
    """A terminal without the tqdm package: the open bars as a block of lines at the
    bottom, redrawn in place (at most every `redraw_s` while they only move); a bar that
    closes leaves its last line above the block, as tqdm's do."""
    hides = True

    def __init__(self, live: Callable[[], list], lock: Any, redraw_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._live, self._lock, self._redraw, self._clock = live, lock, redraw_s, clock
        self._lines = 0      # how many lines the block takes now (the cursor is below it)
        self._hidden = False
        self._drawn_at = -math.inf
        self._later: threading.Timer | None = None   # a redraw the throttle put off

    def _size(self) -> tuple[int, int]:
        try:
            size = os.get_terminal_size(sys.stderr.fileno())
            return size.columns, size.lines
        except (OSError, ValueError, AttributeError):
            return 80, 24

    def _up(self) -> str:
        """Back to the block's first line."""
        return f"\r\x1b[{self._lines}A" if self._lines else "\r"

    def _draw(self, above: str = "") -> None:
        if self._hidden:
            return
        now = self._clock()
        columns, rows = self._size()
        bars = self._live()
        room = max(1, rows - 2)   # a block taller than the screen would scroll: cursor-up breaks
        texts = [line(b, now, columns, _utf8(sys.stderr))[: columns - 1] for b in bars[:room]]
        if len(bars) > room:
            texts[-1] = f"... and {len(bars) - room + 1} more bars"
        out = self._up() + "".join(f"\x1b[K{t}\n" for t in [above, *texts] if t) + "\x1b[J"
        sys.stderr.write(out)
        sys.stderr.flush()
        self._lines, self._drawn_at = len(texts), now

    def opened(self, bar: Bar) -> None:
        self._draw()

    def changed(self, bar: Bar) -> None:
        wait = self._drawn_at + self._redraw - self._clock()
        if wait <= 0:
            self._draw()
        elif self._later is None:   # a bar that pauses now must not stay drawn a state behind
            self._later = threading.Timer(wait, self._draw_later)
            self._later.daemon = True
            self._later.start()

    def _draw_later(self) -> None:
        with self._lock:
            self._later = None
            self._draw()

    def closed(self, bar: Bar) -> None:
        columns, _ = self._size()
        self._draw(above=line(bar, self._clock(), columns, _utf8(sys.stderr))[: columns - 1])

    def moved(self, bars: list) -> None:
        pass   # opened() and closed() redraw the whole block

    def hide(self) -> None:
        if self._lines:
            sys.stderr.write(self._up() + "\x1b[J")
            sys.stderr.flush()
        self._lines, self._hidden = 0, True

    def show(self) -> None:
        self._hidden = False
        self._draw()

    def finish(self, live: list) -> None:
        self._draw()   # the last states, where the throttle held some back


class TqdmView:
    """The `tqdm` package's bars (tqdm.auto: widgets in a notebook), one per bar, each at
    its slot (tqdm's `position`), moved when bars above it close."""
    hides = True

    def __init__(self, tqdm_class: Any, live: Callable[[], list],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._tqdm, self._live, self._clock = tqdm_class, live, clock

    def opened(self, bar: Bar) -> None:
        t = self._tqdm(desc=bar.label, total=bar.total or None, unit=bar.unit, position=bar.slot,
                       dynamic_ncols=True, leave=True)
        t.start_t -= bar.elapsed(self._clock())   # it started in the task, not now
        if bar.n:
            t.update(bar.n)
        bar.handle, bar.printed = t, bar.snapshot()

    def changed(self, bar: Bar) -> None:
        t, (label, n, total) = bar.handle, bar.printed or ("", 0, None)
        if bar.label != label:
            t.set_description(bar.label, refresh=False)
        if bar.total != total:
            t.total = bar.total or None
        if bar.n != n:
            t.update(bar.n - n)
        t.refresh()
        bar.printed = bar.snapshot()

    def closed(self, bar: Bar) -> None:
        self.changed(bar)
        self.hide()   # the others step aside while it prints its last line
        bar.handle.close()
        self.show()

    def moved(self, bars: list) -> None:
        for bar in bars:
            bar.handle.clear()
            bar.handle.pos = -bar.slot   # tqdm's mark of a position given, not picked
            bar.handle.refresh()

    def hide(self) -> None:
        for bar in self._live():
            bar.handle.clear()

    def show(self) -> None:
        for bar in self._live():
            bar.handle.refresh()

    def finish(self, live: list) -> None:
        for bar in live:
            self.changed(bar)
