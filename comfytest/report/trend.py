"""Trends from the history file (``--comfy-history``): charts and a markdown table per test.

The history has one JSON line per session (``report_compare.append_history``): when and on
which commit it ran, and per test the server time and the memory figures. ``load_history``
reads it tolerantly: a line that is not a session (bad JSON, wrong shape) is named and skipped.

``render_page`` is a self-contained HTML page (inline CSS and SVG, no network, no JS needed to
draw) with one small chart per test: server time and peak memory across sessions, the x-axis
the sessions' commits (or times). ``trend_section`` is the same charts for ``report.html``;
``render_markdown`` the last N sessions as a table with the change per test.

Stable hooks: ``section#trends``, ``.trend[data-nodeid]``, ``svg.trend-chart[data-metric]
[data-points]`` (``server_ms`` or ``memory_bytes``), ``circle.point[data-value]``. After load
the page's script sets ``body[data-charts-drawn]`` to the number of charts with a drawn line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from comfytest.report.document import format_change, format_ms
from comfytest.report.memory import LABELS, format_bytes

#: the memory figure a chart shows: the first one the test has in any session
MEMORY_FIGURES = ("vram_used_peak_bytes", "rss_peak_bytes", "ram_used_peak_bytes")
WIDTH, HEIGHT, PAD_X, PAD_Y = 320, 110, 62, 14  # PAD_X: room for "1,989 ms" left of the first point
#: the y-axis spans at least this share of the value: the default timing threshold (20 %), about
#: the noise --comfy-compare ignores, so smaller wiggles draw flat
MIN_SPAN = 0.2

PAGE_CSS = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d1d1f;background:#fafafa}"
CSS = """
.trend{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:.8em 0}
.trend h3{font-size:1em;margin:0 0 .3em}.charts{display:flex;flex-wrap:wrap;gap:1.5em}
svg.trend-chart{background:#fcfcfc;border:1px solid #eee}
svg .line{fill:none;stroke-width:1.5}svg .axis{font-size:10px;fill:#555}
svg .time{stroke:#1565c0}svg .memory{stroke:#ef6c00}circle.point{stroke:none}
.skipped{color:#b71c1c}
"""

SCRIPT = """
(function(){
  var drawn = Array.prototype.filter.call(document.querySelectorAll('svg.trend-chart polyline'),
    function(line){ var box = line.getBBox(); return box.width > 0 || box.height > 0; });
  document.body.dataset.chartsDrawn = drawn.length;
})();
"""


@dataclass(frozen=True)
class History:
    """The sessions of a history file, oldest first, and the lines that were skipped."""

    entries: tuple[Mapping[str, Any], ...]
    skipped: tuple[str, ...] = ()

    def tests(self) -> list[str]:
        names: dict[str, None] = {}
        for entry in self.entries:
            names.update(dict.fromkeys(entry.get("tests") or {}))
            names.update(dict.fromkeys(entry.get("memory") or {}))
        return sorted(names)


def load_history(path: str | os.PathLike[str]) -> History:
    """Every session line of ``path``; bad lines are named (``file:line: why``) and skipped."""
    source = Path(path)
    entries: list[Mapping[str, Any]] = []
    skipped: list[str] = []
    for number, line in enumerate(source.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        problem, entry = _parse_line(line)
        if entry is None:
            skipped.append(f"{source}:{number}: {problem}; line skipped")
        else:
            entries.append(entry)
    return History(tuple(entries), tuple(skipped))


def _parse_line(line: str) -> tuple[str, Mapping[str, Any] | None]:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not a JSON line ({exc.msg})", None
    if not isinstance(entry, dict):
        return f"a JSON {type(entry).__name__}, not a session object", None
    if not isinstance(entry.get("tests"), dict) or not isinstance(entry.get("memory", {}), dict):
        return "no \"tests\" object: not a comfytest history line", None
    return "", entry


def session_label(entry: Mapping[str, Any]) -> str:
    """The x-axis label: the short commit (``*`` when dirty), else the date and time."""
    commit = entry.get("git_commit")
    if isinstance(commit, str) and commit:
        return commit[:7] + ("*" if entry.get("git_dirty") else "")
    created = str(entry.get("created") or "?")
    return created[:16].replace("T", " ")


def server_ms(entry: Mapping[str, Any], nodeid: str) -> float | None:
    value = (entry.get("tests") or {}).get(nodeid)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def memory_figure(history: History, nodeid: str) -> str | None:
    """Which memory figure the test's chart shows (peak VRAM, else RSS, else RAM)."""
    for name in MEMORY_FIGURES:
        if any(_memory(e, nodeid, name) is not None for e in history.entries):
            return name
    return None


def _memory(entry: Mapping[str, Any], nodeid: str, name: str) -> float | None:
    figures = (entry.get("memory") or {}).get(nodeid)
    value = figures.get(name) if isinstance(figures, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# --- HTML ------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def axis_range(values: Sequence[float], min_span: float = MIN_SPAN) -> tuple[float, float]:
    """The y-axis: the values' range, widened about its middle to at least ``min_span`` of the
    largest magnitude (never below 0 for values that are not), so that noise smaller than what
    ``--comfy-compare`` flags draws as a flat line rather than a cliff."""
    low, high = min(values), max(values)
    need = min_span * max(abs(low), abs(high), 1.0)
    if high - low < need:
        pad = (need - (high - low)) / 2
        low, high = low - pad, high + pad
        if low < 0 <= min(values):
            low, high = 0.0, high - low
    return low, high


Spread = Mapping[str, float]  # a history line's ``spread`` of one test: min, q1, median, q3, max, n


def chart(values: Sequence[float | None], labels: Sequence[str], *, metric: str, title: str, unit: str,
          spreads: Sequence[Spread | None] = ()) -> str:
    """One small SVG line chart; missing values leave a gap in the points (not in the line).
    ``spreads`` (repeated runs, e.g. ``--comfy-perf``) draw each session's band behind its point:
    a whisker from min to max and a box from the lower to the upper quartile."""
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    bands = [(i, s) for i, s in enumerate(spreads) if s is not None and i < len(values) and values[i] is not None]
    fmt = format_bytes if unit == "bytes" else (lambda v: f"{format_ms(v)} ms")
    css = "memory" if unit == "bytes" else "time"
    head = (f'<svg class="trend-chart" data-metric="{_e(metric)}" data-points="{len(points)}" '
            f'width="{WIDTH}" height="{HEIGHT + 28}" viewBox="0 0 {WIDTH} {HEIGHT + 28}" role="img">'
            f"<title>{_e(title)}</title>")
    if not points:
        return head + f'<text class="axis" x="{PAD_X}" y="{HEIGHT / 2}">no {_e(title)} recorded</text></svg>'
    low, high = axis_range([v for _, v in points] + [float(s[k]) for _, s in bands for k in ("min", "max")])
    span = high - low
    step = (WIDTH - PAD_X - 10) / max(len(values) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return PAD_X + i * step, PAD_Y + (HEIGHT - 2 * PAD_Y) * (1 - (v - low) / span)

    coords = [xy(i, v) for i, v in points]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    if len(coords) == 1:  # one session: a short flat stroke so the line still shows
        line = f"{coords[0][0] - 4:.1f},{coords[0][1]:.1f} {coords[0][0] + 4:.1f},{coords[0][1]:.1f}"
    dots = "".join(
        f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="currentColor" data-value="{v}">'
        f"<title>{_e(labels[i])}: {_e(fmt(v))}</title></circle>"
        for (x, y), (i, v) in zip(coords, points)
    )
    axis = (f'<text class="axis" x="2" y="{PAD_Y + 4}">{_e(fmt(high))}</text>'
            f'<text class="axis" x="2" y="{HEIGHT - PAD_Y + 4}">{_e(fmt(low))}</text>'
            f'<text class="axis" x="{PAD_X}" y="{HEIGHT + 14}">{_e(labels[0])}</text>'
            f'<text class="axis" x="{WIDTH - 6}" y="{HEIGHT + 14}" text-anchor="end">{_e(labels[-1])}</text>'
            f'<text class="axis" x="{PAD_X}" y="{HEIGHT + 26}">{_e(title)}</text>')
    color = "#ef6c00" if unit == "bytes" else "#1565c0"
    head = head.replace("<svg ", f'<svg data-bands="{len(bands)}" ', 1)
    return (head + _bands(bands, xy) + f'<polyline class="line {css}" points="{line}"/>'
            f'<g style="color:{color}">{dots}</g>{axis}</svg>')


def _bands(bands: Sequence[tuple[int, Spread]], xy: Any) -> str:
    parts = []
    for i, s in bands:
        x, top = xy(i, float(s["max"]))
        _, bottom = xy(i, float(s["min"]))
        _, q3 = xy(i, float(s["q3"]))
        _, q1 = xy(i, float(s["q1"]))
        parts.append(f'<g class="spread" data-n="{_e(s.get("n"))}"><line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" '
                     f'y2="{bottom:.1f}" stroke="#90caf9"/><rect class="iqr" x="{x - 3:.1f}" y="{q3:.1f}" width="6" '
                     f'height="{max(q1 - q3, 1):.1f}" fill="#bbdefb"/></g>')
    return "".join(parts)


def spread_of(entry: Mapping[str, Any], nodeid: str) -> Spread | None:
    """A history line's spread of one test's server totals (lines before ``spread`` have none)."""
    spread = (entry.get("spread") or {}).get(nodeid) if isinstance(entry.get("spread"), dict) else None
    if not isinstance(spread, dict) or not all(isinstance(spread.get(k), (int, float)) for k in ("min", "q1", "q3", "max")):
        return None
    return spread


def trend_block(history: History, nodeid: str) -> str:
    labels = [session_label(e) for e in history.entries]
    times = [server_ms(e, nodeid) for e in history.entries]
    spreads = [spread_of(e, nodeid) for e in history.entries]
    parts = [chart(times, labels, metric="server_ms", title="server time", unit="ms", spreads=spreads)]
    figure = memory_figure(history, nodeid)
    if figure is not None:
        memory = [_memory(e, nodeid, figure) for e in history.entries]
        parts.append(chart(memory, labels, metric="memory_bytes", title=LABELS[figure], unit="bytes"))
    return (f'<div class="trend" data-nodeid="{_e(nodeid)}"><h3>{_e(nodeid)}</h3>'
            f'<div class="charts">{"".join(parts)}</div></div>')


def trend_section(history: History) -> str:
    """The charts of every test, as a section of a page (``report.html`` includes it)."""
    skipped = "".join(f'<li class="skipped">{_e(s)}</li>' for s in history.skipped)
    body = "".join(trend_block(history, nodeid) for nodeid in history.tests())
    return (f'<section id="trends" data-sessions="{len(history.entries)}"><style>{CSS}</style>'
            f"<h2>Trends over {len(history.entries)} session(s)</h2>" + (f"<ul>{skipped}</ul>" if skipped else "")
            + (body or "<p>no test has a timing in the history yet</p>") + f"<script>{SCRIPT}</script></section>")


def render_page(history: History, source: str) -> str:
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>comfytest trends: {_e(source)}</title><style>{PAGE_CSS}</style></head><body>",
        f"<h1>comfytest trends</h1><p>from <code>{_e(source)}</code></p>",
        trend_section(history), "</body></html>",
    ])


# --- markdown --------------------------------------------------------------------------------


def render_markdown(history: History, last: int = 10) -> str:
    """The last ``last`` sessions: server time (ms) per test and session, then the change from
    the session before the newest, and the newest memory figure with its change."""
    entries = history.entries[-last:] if last > 0 else history.entries
    lines = [f"### comfytest trends: last {len(entries)} of {len(history.entries)} session(s)", ""]
    if not entries:
        return "\n".join([*lines, "no sessions recorded", ""])
    head = ["test", *(session_label(e) for e in entries), "change", "peak memory", "memory change"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for nodeid in History(tuple(entries)).tests():
        times = [server_ms(e, nodeid) for e in entries]
        figure = memory_figure(History(tuple(entries)), nodeid)
        memory = [_memory(e, nodeid, figure) for e in entries] if figure else []
        cells = [nodeid, *(format_ms(t) for t in times), _change(times, format_change) or "-",
                 _last_memory(memory, figure), _change(memory, _bytes_change) or "-"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += [*(f"\n{s}" for s in history.skipped), ""]
    return "\n".join(lines)


def _change(values: Sequence[float | None], describe: Any) -> str:
    present = [v for v in values if v is not None]
    return str(describe(present[-2], present[-1])) if len(present) >= 2 else ""


def _bytes_change(previous: float, current: float) -> str:
    delta = current - previous
    percent = f" ({delta / previous * 100:+.0f}%)" if previous > 0 else ""
    return f"{'+' if delta >= 0 else '-'}{format_bytes(abs(delta))}{percent}"


def _last_memory(values: Sequence[float | None], figure: str | None) -> str:
    present = [v for v in values if v is not None]
    return f"{format_bytes(present[-1])} {LABELS[figure]}" if present and figure else "-"
