"""zray.experimental.tqdm_ray: bars made in tasks, actors and the driver, drawn by the
driver (driver scripts run as subprocesses, their output read; on a pipe, and on a
pseudo-terminal replayed through a small terminal model), and bad arguments."""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time

import pytest
from conftest import leftovers, wait_gone, zray_pids
from helpers import SCRIPT_TIMEOUT, run_driver

from zray import _progress
from zray._progress_views import LineView, TermView
from zray.experimental import tqdm_ray

MAGIC = _progress.MAGIC
# One bar's whole line, as the driver prints it: "(who pid=N) desc:  40%|####  | 4/10 [...]"
BAR_LINE = r"(\(\S+ pid=\d+\) )?{desc}: +\d+%\|[^|]*\| {n}/{total} \[\d\d:\d\d<[^,\]]+, [^\]]+\]"


def bar_lines(text: str, desc: str, n: str = r"\d+", total: str = r"\d+") -> list[str]:
    pattern = re.compile(BAR_LINE.format(desc=re.escape(desc), n=n, total=total))
    return [line for line in text.splitlines() if pattern.fullmatch(line.rstrip())]


def no_state_leaked(*outputs: str) -> None:
    for out in outputs:
        assert MAGIC not in out and '"closed":' not in out, f"a bar's state leaked:\n{out}"


# -- tasks and actors, the driver's output on a pipe --------------------------------------

PRELUDE = textwrap.dedent("""
    import asyncio
    import os
    import time
    import zray
    from zray import _progress
    from zray.experimental import tqdm_ray

    def settle(n):
        # A bar's state travels through the node while a result may come straight
        # from its worker: before it shuts down, the driver waits for n closed bars.
        deadline = time.monotonic() + 30
        while _progress._manager[0] is None or _progress._manager[0].closed < n:
            assert time.monotonic() < deadline, "the bars' last states never came"
            time.sleep(0.01)

    @zray.remote
    class Barrier:   # its waiters all go on once n of them wait (so their tasks overlap)
        def __init__(self, n):
            self.n, self.event = n, asyncio.Event()
        async def wait(self):
            self.n -= 1
            if self.n == 0:
                self.event.set()
            await self.event.wait()
""")


def driver(tmp_path, body: str):
    """Run PRELUDE + `body` as a driver script; the completed process."""
    return run_driver(tmp_path, PRELUDE + textwrap.dedent(body))


def test_task_and_actor_bars_show_in_the_driver(tmp_path):
    proc = driver(tmp_path, """
        @zray.remote
        def work(n):
            bar = tqdm_ray.tqdm(total=n, desc="task bar")
            for _ in range(n):
                bar.update(1)
            print("task printed")
            bar.close()
            return n

        @zray.remote
        class Loader:
            def load(self, items):
                return sum(x for x in tqdm_ray.tqdm(items, desc="actor bar", unit="rows"))

        zray.init(num_cpus=2)
        assert zray.get(work.remote(5), timeout=30) == 5
        assert zray.get(Loader.remote().load.remote(list(range(4))), timeout=30) == 6
        settle(2)
        zray.shutdown()
    """)
    assert bar_lines(proc.stderr, "task bar", "5", "5"), proc.stderr
    actor = [line for line in proc.stderr.splitlines() if "actor bar" in line]
    assert actor[-1].startswith("(Loader pid=") and "| 4/4 [" in actor[-1] and "rows/s" in actor[-1], actor
    assert re.search(r"^\(work pid=\d+\) task printed$", proc.stdout, re.M), proc.stdout
    no_state_leaked(proc.stdout, proc.stderr)


def test_bars_of_concurrent_tasks_stay_apart(tmp_path):
    proc = driver(tmp_path, """
        @zray.remote
        def step(i, n, barrier):
            for k in tqdm_ray.tqdm(range(n), desc=f"bar-{i}", flush_interval_s=0):
                if k == n // 2:   # every bar is open and half way at once
                    zray.get(barrier.wait.remote(), timeout=30)
                print(f"line of {i}")
            return os.getpid()

        zray.init(num_cpus=4)
        barrier = Barrier.remote(4)
        pids = zray.get([step.remote(i, 60, barrier) for i in range(4)], timeout=30)
        assert len(set(pids)) == 4, pids
        settle(4)
        zray.shutdown()
    """)
    lines = [line for line in proc.stderr.splitlines() if "bar-" in line]
    for i in range(4):   # every bar ends at its own total
        assert bar_lines(proc.stderr, f"bar-{i}", "60", "60"), proc.stderr
    garbled = [line for line in lines if not re.fullmatch(BAR_LINE.format(
        desc=r"bar-\d", n=r"\d+", total="60"), line)]
    assert not garbled, garbled
    assert len(lines) < 4 * 60, "a line per update: the driver's throttle did not hold"
    assert proc.stdout.count("line of ") == 240
    no_state_leaked(proc.stdout, proc.stderr)


def test_close_context_manager_and_break(tmp_path):
    proc = driver(tmp_path, """
        @zray.remote
        def work():
            with tqdm_ray.tqdm(total=3, desc="with-bar") as bar:
                bar.update(2)
                bar.update()
            closed = tqdm_ray.tqdm(total=10, desc="closed-bar")
            closed.update(4)
            closed.close()
            closed.close()      # idempotent
            closed.update(5)    # ignored once closed, as tqdm
            for i in tqdm_ray.tqdm(range(10), desc="break-bar"):
                if i == 3:
                    break
            bar = tqdm_ray.tqdm(desc="no-total", unit="files")
            bar.update(7)
            bar.close()
            return closed.n

        zray.init(num_cpus=1)
        assert zray.get(work.remote(), timeout=30) == 4
        settle(4)
        zray.shutdown()
    """)
    assert bar_lines(proc.stderr, "with-bar", "3", "3"), proc.stderr
    assert bar_lines(proc.stderr, "closed-bar", "4", "10"), proc.stderr
    assert not re.search(r"closed-bar.*\| 9/10", proc.stderr), proc.stderr
    assert bar_lines(proc.stderr, "break-bar", "3", "10"), proc.stderr
    assert re.search(r"\) no-total: 7files \[\d\d:\d\d, ", proc.stderr), proc.stderr
    no_state_leaked(proc.stdout, proc.stderr)


def test_throttled_updates_and_a_malformed_state_line(tmp_path):
    proc = driver(tmp_path, """
        @zray.remote
        def work():
            print(_progress.MAGIC + "{not a bar")   # printed by a user: stays output
            bar = tqdm_ray.tqdm(total=100_000, desc="many")
            for _ in range(100_000):
                bar.update(1)   # at most one state a second reaches the driver
            bar.close()

        zray.init(num_cpus=1)
        zray.get(work.remote(), timeout=30)
        settle(1)
        zray.shutdown()
    """)
    assert MAGIC + "{not a bar" in proc.stdout, proc.stdout
    many = [line for line in proc.stderr.splitlines() if "many" in line]
    assert len(many) <= 5 and bar_lines(proc.stderr, "many", "100000", "100000"), many


def test_bars_in_the_driver_draw_directly(tmp_path):
    proc = driver(tmp_path, """
        for _ in tqdm_ray.tqdm(range(3), desc="before init"):
            pass
        zray.init(num_cpus=1)
        with tqdm_ray.tqdm(total=2, desc="in driver", position=1) as bar:
            bar.update(2)
            tqdm_ray.safe_print("printed safely")
        zray.shutdown()
    """)
    assert bar_lines(proc.stderr, "before init", "3", "3"), proc.stderr
    assert bar_lines(proc.stderr, "in driver", "2", "2"), proc.stderr
    assert "(" not in "".join(bar_lines(proc.stderr, "in driver")), "the driver's own bars need no prefix"
    assert "printed safely" in proc.stdout


# -- on a terminal ---------------------------------------------------------------------

def terminal(raw: str, watch: str, columns: int = 100) -> tuple[list[str], int]:
    """The lines a terminal shows after `raw` (a model of the controls bars use: CR, LF,
    cursor up and down, erase to the end of the line or of the screen; colours ignored),
    and the most lines matching `watch` it showed at any one time."""
    rows: list[list[str]] = [[]]
    row = col = most = 0
    pattern = re.compile(watch)
    for m in re.finditer(r"\x1b\[[?]?(\d*)([A-Za-z])|\r|\n|[^\x1b\r\n]", raw):
        token, (count, op) = m.group(), m.groups()
        while len(rows) <= row:
            rows.append([])
        if op is None and token not in "\r\n":
            if col >= columns:   # (a wrapped line: not expected from bars sized to the terminal)
                row, col = row + 1, 0
                continue
            line = rows[row]
            line.extend(" " * (col + 1 - len(line)))
            line[col] = token
            col += 1
            continue
        most = max(most, sum(1 for r in rows if pattern.search("".join(r))))
        if token == "\r":
            col = 0
        elif token == "\n":
            row += 1
        elif op == "A":
            row = max(0, row - int(count or 1))
        elif op == "B":
            row += int(count or 1)
        elif op == "K":
            del rows[row][col:]
        elif op == "J":
            del rows[row][col:]
            del rows[row + 1:]
    return ["".join(r).rstrip() for r in rows], most


def run_on_terminal(tmp_path, body: str, block_tqdm: bool) -> str:
    """Run PRELUDE + `body` as a driver script with its stdout and stderr on a
    pseudo-terminal (100 columns): what it wrote there."""
    before_pids, before_files = zray_pids(), leftovers()
    script = tmp_path / "driver.py"
    head = "import sys\nsys.modules['tqdm'] = None   # as if not installed\n" if block_tqdm else ""
    script.write_text(head + PRELUDE + textwrap.dedent(body))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, cwd=str(tmp_path))
    os.close(slave)
    raw, deadline = b"", time.monotonic() + SCRIPT_TIMEOUT
    try:
        while time.monotonic() < deadline:   # until every holder of the terminal is gone
            if select.select([master], [], [], 1.0)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:   # EIO: the terminal's last holder closed it
                    break
                if not chunk:
                    break
                raw += chunk
        assert proc.wait(timeout=10) == 0, raw.decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    pids, files = wait_gone(before_pids, before_files)
    assert not pids and not files, f"the driver left zray processes {pids} or files {files}"
    return raw.decode(errors="replace")


TERMINAL_DRIVER = """
    @zray.remote
    def work(i, barrier):
        bar = tqdm_ray.tqdm(total=20, desc=f"tty-{i}", flush_interval_s=0)
        for k in range(20):
            bar.update(1)
            if k == 10:
                print(f"halfway {i}")
                zray.get(barrier.wait.remote(), timeout=30)
        bar.close()
        return os.getpid()

    zray.init(num_cpus=3)
    barrier = Barrier.remote(3)
    assert len(set(zray.get([work.remote(i, barrier) for i in range(3)], timeout=30))) == 3
    settle(3)
    print("driver printed")
    for _ in tqdm_ray.tqdm(range(5), desc="tty-driver"):
        pass
    zray.shutdown()
"""


@pytest.mark.parametrize("with_tqdm", [False, True], ids=["own-bars", "tqdm-package"])
def test_terminal_shows_each_bar_once_whole(tmp_path, with_tqdm):
    if with_tqdm:
        pytest.importorskip("tqdm")
    raw = run_on_terminal(tmp_path, TERMINAL_DRIVER, block_tqdm=not with_tqdm)
    screen, most = terminal(raw, watch=r"tty-\d: .*\| 11/20 \[")
    assert most == 3, f"the 3 open bars were never all on screen at once:\n{raw!r}"
    shown = "\n".join(line for line in screen if line)
    for i in range(3):   # each bar's last line, once, whole; each print, once, whole
        assert len(bar_lines(shown, f"tty-{i}", "20", "20")) == 1, shown
        assert shown.count(f"tty-{i}") == 1, shown
        assert len(re.findall(rf"^\(work pid=\d+\) halfway {i}$", shown, re.M)) == 1, shown
    assert len(bar_lines(shown, "tty-driver", "5", "5")) == 1, shown
    assert "\ndriver printed\n" in shown, shown
    no_state_leaked(raw)


# -- in this process: arguments, rows, throttling ----------------------------------------

class Recorder:
    """A view that records what the manager asks of it."""
    hides = False

    def __init__(self):
        self.events = []

    def __getattr__(self, name):
        return lambda arg=None: self.events.append((name, arg))


@pytest.fixture
def recorded():
    """This process's bars go to a Recorder (no output, no print() patched)."""
    saved = _progress._manager[0]
    _progress._manager[0] = manager = _progress.Manager(view=Recorder())
    yield manager
    _progress._manager[0] = saved


def state(bar_id, pid, pos=0, n=0, closed=False, total=10):
    return {"id": bar_id, "n": n, "total": total, "pos": pos, "desc": bar_id, "unit": "it",
            "pid": pid, "node": "n1", "closed": closed, "t": 0.5}


def test_each_process_gets_rows_of_its_own(recorded):
    recorded.apply(state("a0", pid=1), "(f pid=1)")
    recorded.apply(state("a1", pid=1, pos=1), "(f pid=1)")
    recorded.apply(state("b0", pid=2), "(f pid=2)")
    recorded.apply(state("c2", pid=3, pos=2), "(g pid=3)")
    assert [(b.id, b.slot) for b in recorded.live()] == [("a0", 0), ("a1", 1), ("b0", 2), ("c2", 5)]
    recorded.apply(state("a1", pid=1, pos=1, n=10, closed=True), "(f pid=1)")
    recorded.apply(state("a0", pid=1, n=3, closed=True), "(f pid=1)")
    assert [(b.id, b.slot) for b in recorded.live()] == [("b0", 0), ("c2", 3)]
    moved = [arg for name, arg in recorded.view.events if name == "moved"]
    assert [[b.id for b in m] for m in moved] == [["b0", "c2"], ["b0", "c2"]]
    assert recorded.live()[0].label == "(f pid=2) b0"


def test_a_state_line_must_be_whole(recorded):
    good = MAGIC + '{"id":"x","n":1,"total":null,"pos":0,"desc":"d","unit":"it","pid":5,' \
        '"node":"","closed":false,"t":0.1}'
    assert _progress.on_line("(f pid=5)", good)
    for bad in (MAGIC, MAGIC + "[]", MAGIC + "{", good.replace('"pos":0', '"pos":-1'),
                good.replace('"n":1', '"n":"1"'), good.replace(',"t":0.1', "")):
        assert not _progress.on_line("(f pid=5)", bad), bad
    assert [b.id for b in recorded.live()] == ["x"]


def test_lines_off_a_terminal_are_throttled(capsys):
    now = [100.0]
    view = LineView(interval_s=1.0, clock=lambda: now[0])
    manager = _progress.Manager(view=view)
    manager.apply(state("a", pid=1), "")
    for n in range(1, 6):   # within the interval: held back
        now[0] += 0.1
        manager.apply(state("a", pid=1, n=n), "")
    now[0] += 1.0
    manager.apply(state("a", pid=1, n=8), "")
    manager.apply(state("a", pid=1, n=9), "")
    manager.finish()   # never closed: its last state at exit
    err = capsys.readouterr().err
    assert [re.search(r"\| (\d+)/10", line).group(1) for line in err.splitlines()] == ["0", "8", "9"]


def test_a_paused_bar_is_drawn_at_its_last_state(capsys):
    manager = _progress.Manager(view=None)
    manager.view = TermView(manager.live, manager.lock, redraw_s=0.2)
    manager.apply(state("a", pid=1, n=1), "")
    manager.apply(state("a", pid=1, n=2), "")   # within redraw_s of the first: put off
    seen, deadline = "", time.monotonic() + 10
    while "| 2/10 [" not in seen:   # drawn once redraw_s has passed, with no new state
        assert time.monotonic() < deadline, seen
        time.sleep(0.02)
        seen += capsys.readouterr().err
    assert seen.count("| 1/10 [") == 1


def test_bad_arguments_are_named(recorded):
    cases = [
        (dict(total="10"), TypeError, "total must be a number or None, not str"),
        (dict(total=-1), ValueError, "total must be >= 0"),
        (dict(total=float("nan")), ValueError, "total"),
        (dict(desc=3), TypeError, "desc must be a str or None, not int"),
        (dict(unit=b"it"), TypeError, "unit must be a str"),
        (dict(position=1.5), TypeError, "position must be an int or None"),
        (dict(position=-1), ValueError, "position must be >= 0"),
        (dict(flush_interval_s="1"), TypeError, "flush_interval_s"),
        (dict(flush_interval_s=-0.5), ValueError, "flush_interval_s must be >= 0"),
        (dict(iterable=5), TypeError, "iterable must be iterable or None, not int"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=re.escape(message)):
            tqdm_ray.tqdm(**kwargs)
    assert recorded.live() == [], "a refused bar must not be shown"
    bar = tqdm_ray.tqdm(total=3)
    with pytest.raises(TypeError, match=r"update\(n\) must be a number, not str"):
        bar.update("1")
    with pytest.raises(ValueError, match="no iterable to iterate over"):
        iter(bar)
    with pytest.raises(TypeError, match="total must be a number"):
        bar.total = "5"
    bar.update(2)
    bar.n = 1
    bar.total = 4
    assert (bar.n, bar.total) == (1, 4)
    bar.close()
    assert recorded.live() == []


def test_public_names():
    import zray
    import zray.experimental
    assert zray.experimental.tqdm_ray is tqdm_ray
    assert zray.experimental.__all__ == ["tqdm_ray"]
    assert sorted(tqdm_ray.__all__) == ["safe_print", "tqdm"]
    assert tqdm_ray.tqdm.DEFAULT_FLUSH_INTERVAL_SECONDS == 1.0
