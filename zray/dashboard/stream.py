"""The task stream (as Dask's): an SVG Gantt chart of the tasks and actor calls of the
last minutes, one lane per worker process, one colour per function. Tasks of one
function that follow each other within a pixel are drawn as one bar (a lane of
10,000 tiny tasks is a few hundred rectangles, not 10,000), and the bar's tooltip
says how many it holds."""
from __future__ import annotations

import hashlib
from html import escape

__all__ = ["task_stream"]

WIDTH, LANE, LEFT, TOP = 1100, 18, 190, 24


def _colour(name: str) -> str:
    h = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=2).digest(), "big") % 360
    return f"hsl({h},62%,52%)"


def task_stream(records: list[tuple], actor_names: dict[bytes, str], now: float,
                window: float) -> str:
    t0 = now - window
    scale = (WIDTH - LEFT - 10) / window
    lanes: dict[tuple, list] = {}
    for rec in records:
        if rec[4] is None:
            continue
        lanes.setdefault((rec[7], rec[6]), []).append(rec)
    caption = (f'<p class="caption">The last {window:g} s, one lane per worker process '
               f'(<a href="/stream?window=60">1 min</a>, <a href="/stream?window=600">10 min</a>); '
               'tasks of one function less than a pixel apart are drawn as one bar.</p>')
    if not lanes:
        return caption + '<p class="empty">No task ran in this window.</p>'
    keys = sorted(lanes)
    height = TOP + LANE * len(keys) + 8
    parts = [f'<svg class="stream" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
             f'height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for i in range(6):   # the time axis: seconds before now
        x = LEFT + (WIDTH - LEFT - 10) * i / 5
        ago = window * (5 - i) / 5
        anchor = ' text-anchor="end"' if i == 5 else ""
        parts.append(f'<line x1="{x:.1f}" y1="{TOP - 6}" x2="{x:.1f}" y2="{height}" class="tick"/>'
                     f'<text x="{x:.1f}" y="{TOP - 10}" class="axis"{anchor}>'
                     f'{"now" if ago == 0 else f"-{ago:g} s"}</text>')
    used: dict[str, int] = {}
    for lane, key in enumerate(keys):
        node_id, pid = key
        y = TOP + lane * LANE
        recs = sorted(lanes[key], key=lambda r: r[4])
        actor = next((r[2] for r in recs if r[2]), None)
        label = (f"{actor_names.get(actor, 'actor')} {pid}" if actor else f"worker {pid}")
        parts.append(f'<text x="4" y="{y + 12}" class="lane"><title>node {escape(node_id)}'
                     f'</title>{escape(label)} · {escape(node_id[:6])}</text>')
        for name, x, w, n, state, busy in _bars(recs, t0, now, scale):
            used[name] = used.get(name, 0) + n
            tip = f"{name}: {n} task{'s' if n > 1 else ''}, {busy * 1000:,.1f} ms busy"
            cls = ' class="failed"' if state == "FAILED" else ""
            parts.append(f'<rect x="{LEFT + x:.1f}" y="{y + 2}" width="{w:.1f}" height="{LANE - 4}" '
                         f'fill="{_colour(name)}"{cls}><title>{escape(tip)}</title></rect>')
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{_colour(n)}"></i>{escape(n)} ({c:,})</span>'
                     for n, c in sorted(used.items(), key=lambda kv: -kv[1])[:16])
    return f'{caption}<div class="legend">{legend}</div><div class="stream-box">{"".join(parts)}</div>'


def _bars(recs: list[tuple], t0: float, now: float, scale: float) -> list[tuple]:
    """(name, x, width, count, state, busy seconds) per bar: the lane's tasks, with
    those of one function less than a pixel apart merged."""
    bars: list[list] = []
    for rec in recs:
        name, state, start = rec[1], rec[3], rec[4]
        end = rec[5] if rec[5] is not None else now
        x0 = max(0.0, (start - t0) * scale)
        x1 = max(x0, (end - t0) * scale)
        last = bars[-1] if bars else None
        if (last is not None and last[0] == name and x0 - last[2] < 1.0
                and (state == "FAILED") == (last[4] == "FAILED")):
            last[2] = max(last[2], x1)
            last[3] += 1
            last[5] += end - start
        else:
            bars.append([name, x0, x1, 1, state, end - start])
    return [(b[0], b[1], max(1.0, b[2] - b[1]), b[3], b[4], b[5]) for b in bars]
