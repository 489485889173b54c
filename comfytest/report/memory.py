"""Memory in the report: figures of a record, repeated-run statistics, renderings, comparisons.

A record's ``memory`` is the first measured run's ``RunMemory`` (``resources``) as JSON,
``memory_runs`` every measured run's when ``--comfy-runs N > 1`` and ``memory_stats`` their
min/median/max per figure. The figures (bytes):

* ``vram_used_peak_bytes``: the device's VRAM in use at its highest (every process on the GPU);
* ``torch_vram_used_peak_bytes``: what torch in the ComfyUI process held in use at its highest;
* ``ram_used_peak_bytes`` / ``ram_rise_bytes``: the machine's RAM in use at its highest, and
  that minus the idle figure (taken just before queueing);
* ``rss_peak_bytes`` / ``rss_rise_bytes``: the same for the ComfyUI process's resident memory.

Comparison (``compare_memory``) is like the timing one, on ``COMPARED``: *grew*/*shrank* need
both ``|delta| > abs_threshold_bytes`` (128 MiB) and ``|delta| / previous > rel_threshold``
(10 %), and with repeated runs on both sides disjoint ranges. System RAM is compared by its rise
only: its absolute figure counts every other process on the machine.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

MIB = 1024 * 1024
FIGURES = (
    "vram_used_peak_bytes", "torch_vram_used_peak_bytes", "ram_used_peak_bytes",
    "ram_rise_bytes", "rss_peak_bytes", "rss_rise_bytes",
)
#: figures judged by ``compare_memory`` (absolute system RAM is other processes' too)
COMPARED = ("vram_used_peak_bytes", "torch_vram_used_peak_bytes", "rss_peak_bytes", "ram_rise_bytes")
LABELS = {
    "vram_used_peak_bytes": "peak VRAM", "torch_vram_used_peak_bytes": "peak torch VRAM",
    "ram_used_peak_bytes": "peak RAM", "ram_rise_bytes": "RAM rise",
    "rss_peak_bytes": "peak RSS", "rss_rise_bytes": "RSS rise",
}
HOST_DEVICE_NOTE = ("CPU device: ComfyUI reports system RAM as the device's memory, so there are no "
                    "VRAM figures; RAM is the machine's (all processes), RSS the ComfyUI process's")

MemoryVerdict = Literal["ok", "grew", "shrank"]


def figures(memory: Mapping[str, Any] | None) -> dict[str, int | None]:
    """The figures of one run's memory JSON (None where not measured)."""
    m = memory or {}
    return {
        "vram_used_peak_bytes": _int(m.get("vram_used_peak_bytes")),
        "torch_vram_used_peak_bytes": _int(m.get("torch_vram_used_peak_bytes")),
        "ram_used_peak_bytes": _int(m.get("ram_used_peak_bytes")),
        "ram_rise_bytes": _rise(m.get("ram_used_peak_bytes"), m.get("ram_used_idle_bytes")),
        "rss_peak_bytes": _int(m.get("rss_peak_bytes")),
        "rss_rise_bytes": _rise(m.get("rss_peak_bytes"), m.get("rss_idle_bytes")),
    }


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _rise(peak: Any, idle: Any) -> int | None:
    p, i = _int(peak), _int(idle)
    return None if p is None or i is None else p - i


def summarize_memory(runs: Sequence[Mapping[str, Any] | None]) -> dict[str, dict[str, float]] | None:
    """``memory_stats``: ``{figure: {min, median, max}}`` over the runs that measured it."""
    stats: dict[str, dict[str, float]] = {}
    for name in FIGURES:
        values = [v for v in (figures(r)[name] for r in runs if r) if v is not None]
        if values:
            stats[name] = {"min": min(values), "median": float(statistics.median(values)), "max": max(values)}
    return stats or None


def record_figure(record: Mapping[str, Any], name: str) -> float | None:
    """A figure of a test: the median of repeated runs, else the one run's."""
    stats = record.get("memory_stats") or {}
    if name in stats:
        return float(stats[name]["median"])
    value = figures(record.get("memory"))[name]
    return None if value is None else float(value)


def headline(record: Mapping[str, Any]) -> tuple[str, float] | None:
    """The one figure a table shows: peak VRAM on a GPU, else the server's peak RSS, else RAM."""
    for name in ("vram_used_peak_bytes", "rss_peak_bytes", "ram_used_peak_bytes"):
        value = record_figure(record, name)
        if value is not None:
            return {"vram_used_peak_bytes": "VRAM", "rss_peak_bytes": "RSS", "ram_used_peak_bytes": "RAM"}[name], value
    return None


def format_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1024 * MIB:
        return f"{value / (1024 * MIB):.2f} GiB"
    return f"{value / MIB:,.0f} MiB"


def memory_cell(record: Mapping[str, Any]) -> str:
    """``1.21 GiB RSS (+500 MiB)``: the headline figure and, for RSS/RAM, its rise in the run."""
    found = headline(record)
    if found is None:
        return "-"
    kind, value = found
    rise = record_figure(record, {"RSS": "rss_rise_bytes", "RAM": "ram_rise_bytes"}.get(kind, ""))
    extra = f" (+{format_bytes(rise)})" if rise is not None and rise >= MIB / 2 else ""  # never "+0 MiB"
    return f"{format_bytes(value)} {kind}{extra}"


def memory_lines(record: Mapping[str, Any]) -> list[str]:
    """Every measured figure of a test as ``label: value`` lines (HTML, markdown details)."""
    memory = record.get("memory")
    if not memory:
        return []
    stats = record.get("memory_stats") or {}
    lines = []
    for name in FIGURES:
        value = record_figure(record, name)
        if value is None:
            continue
        text = f"{LABELS[name]}: {format_bytes(value)}"
        if name in stats and stats[name]["min"] != stats[name]["max"]:
            text += f" (min {format_bytes(stats[name]['min'])}, max {format_bytes(stats[name]['max'])})"
        lines.append(text)
    lines.append(f"{memory.get('samples')} samples every {memory.get('interval_ms')} ms")
    if memory.get("device_type") in ("cpu", "mps"):
        lines.append(HOST_DEVICE_NOTE)
    return lines


def memory_properties(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """JUnit ``<property>`` pairs: ``comfy_<figure>`` in bytes, and the sample count."""
    memory = record.get("memory")
    if not memory:
        return []
    props = [(f"comfy_{name}", str(int(value))) for name in FIGURES
             if (value := record_figure(record, name)) is not None]
    return [*props, ("comfy_memory_samples", str(memory.get("samples")))]


def history_memory(doc: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Per test the figures a trend chart can show, for the history line of a session."""
    found = {}
    for record in doc.get("tests") or []:
        values = {name: v for name in HISTORY_FIGURES if (v := record_figure(record, name)) is not None}
        if values:
            found[str(record.get("nodeid"))] = values
    return found


HISTORY_FIGURES = ("vram_used_peak_bytes", "torch_vram_used_peak_bytes", "rss_peak_bytes", "ram_used_peak_bytes", "ram_rise_bytes")


# --- comparison -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryChange:
    """One compared figure of one test."""

    nodeid: str
    figure: str
    previous: float
    current: float
    verdict: MemoryVerdict

    @property
    def delta(self) -> float:
        return self.current - self.previous

    @property
    def is_regression(self) -> bool:
        return self.verdict == "grew"

    def describe(self) -> str:
        """``x.json::default peak RSS: grew +500 MiB (+45%, 1.10 GiB → 1.59 GiB)``."""
        percent = f"{self.delta / self.previous * 100:+.0f}%, " if self.previous > 0 else ""
        sign = "+" if self.delta >= 0 else "-"
        return (f"{self.nodeid} {LABELS[self.figure]}: {self.verdict} {sign}{format_bytes(abs(self.delta))} "
                f"({percent}{format_bytes(self.previous)} → {format_bytes(self.current)})")


@dataclass(frozen=True)
class _Range:
    value: float
    low: float
    high: float
    repeated: bool


def compare_memory(
    previous_doc: Mapping[str, Any], current_doc: Mapping[str, Any], *,
    rel_threshold: float = 0.1, abs_threshold_bytes: float = 128 * MIB,
) -> list[MemoryChange]:
    """Every ``COMPARED`` figure measured on both sides, judged (module docstring)."""
    before = {str(t.get("nodeid")): t for t in previous_doc.get("tests") or []}
    changes = []
    for record in current_doc.get("tests") or []:
        old = before.get(str(record.get("nodeid")))
        if old is None:
            continue
        for name in COMPARED:
            a, b = _range(old, name), _range(record, name)
            if a is not None and b is not None:
                verdict = _verdict(a, b, rel_threshold, abs_threshold_bytes)
                changes.append(MemoryChange(str(record.get("nodeid")), name, a.value, b.value, verdict))
    return changes


def memory_regressions(changes: Sequence[MemoryChange]) -> list[MemoryChange]:
    return [c for c in changes if c.is_regression]


def _range(record: Mapping[str, Any], name: str) -> _Range | None:
    stats = (record.get("memory_stats") or {}).get(name)
    runs = len(record.get("memory_runs") or [])
    if stats:
        return _Range(float(stats["median"]), float(stats["min"]), float(stats["max"]), runs >= 2)
    value = figures(record.get("memory"))[name]
    return None if value is None else _Range(float(value), float(value), float(value), False)


def _verdict(previous: _Range, current: _Range, rel: float, abs_bytes: float) -> MemoryVerdict:
    delta = current.value - previous.value
    relative = abs(delta) / previous.value if previous.value > 0 else float("inf")
    if abs(delta) <= abs_bytes or relative <= rel:
        return "ok"
    if previous.repeated and current.repeated:
        if (delta > 0 and current.low <= previous.high) or (delta < 0 and current.high >= previous.low):
            return "ok"
    return "grew" if delta > 0 else "shrank"
