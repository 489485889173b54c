"""Calibration: how far a case's outputs drift between runs of the same inputs.

A baseline tolerance must sit above a case's *intrinsic spread* (what identical inputs give on
one server from run to run: thread scheduling, non-deterministic kernels) and below the
distance of a real change. ``--comfy-calibrate N`` runs every collected case N times, with
the server's execution cache cleared before each run so that every node really executes,
and reports for each image output the perceptual-hash distance between every pair of runs
and the largest per-channel pixel difference. No baseline is read or written.

It also suggests a pixel limit, ``max_diff``: 0 (``exact``) when every run gave identical
pixels, else the largest difference plus half again (at least one more).

The suggested tolerance is ``max + max(1, ceil(max / 2))``: the largest distance observed,
plus half of it again as headroom, and at least one bit more. A case that never drifts gets 1.
It is a floor measured on one machine: baselines shared between machines (other CPUs, thread
counts or GPUs) need the cross-machine margin on top; see docs/baselines.md.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from comfytest.compare import images as ic
from comfytest.compare.criteria import suggest_max_diff
from comfytest.errors import ComparisonError

#: one run's images by output key (``<node>_<index>``)
RunImages = Mapping[str, Image.Image]
RULE = "suggested tolerance = max + max(1, ceil(max / 2))"
HEADERS = ("test", "output", "hash", "runs", "min", "median", "max", "max px diff", "tolerance", "suggested",
           "suggested max_diff")


def suggest_tolerance(max_distance: int) -> int:
    """The tolerance calibration suggests for a largest observed distance (see module doc)."""
    return max_distance + max(1, math.ceil(max_distance / 2))


@dataclass(frozen=True)
class OutputSpread:
    """The spread of one output over N runs: one distance per pair of runs."""

    output: str
    method: str
    hash_size: int
    runs: int
    distances: tuple[int, ...]
    max_abs_diff: int | None  # None when some pair differed in size (no pixel metrics)

    @property
    def min(self) -> int:
        return min(self.distances, default=0)

    @property
    def median(self) -> float:
        return statistics.median(self.distances) if self.distances else 0.0

    @property
    def max(self) -> int:
        return max(self.distances, default=0)

    @property
    def suggested_tolerance(self) -> int:
        return suggest_tolerance(self.max)

    @property
    def suggested_max_diff(self) -> int | None:
        """0 (exact) when every run gave the same pixels; None without pixel metrics."""
        return None if self.max_abs_diff is None else suggest_max_diff(self.max_abs_diff)

    def to_json(self, tolerance: int | None = None) -> dict[str, Any]:
        """The report record's ``calibration`` entry; ``tolerance`` is the case's current one."""
        return {
            "output": self.output, "method": self.method, "hash_size": self.hash_size,
            "runs": self.runs, "distances": list(self.distances), "min": self.min,
            "median": self.median, "max": self.max, "max_abs_diff": self.max_abs_diff,
            "tolerance": tolerance, "suggested_tolerance": self.suggested_tolerance,
            "suggested_max_diff": self.suggested_max_diff,
        }


def measure_spread(output: str, images: Sequence[Image.Image], *, method: str = "phash",
                   hash_size: int = 8) -> OutputSpread:
    """Compare every pair of ``images`` (one per run; animations frame by frame)."""
    comparisons = [ic.compare_animations(a, b, method=method, hash_size=hash_size, tolerance=0)
                   for a, b in itertools.combinations(images, 2)]
    diffs = [f.max_abs_diff for c in comparisons for f in c.frames]
    return OutputSpread(
        output, method, hash_size, len(images), tuple(c.distance for c in comparisons),
        None if None in diffs else max((d for d in diffs if d is not None), default=0),
    )


def measure_runs(runs: Sequence[RunImages], *, method: str = "phash",
                 hash_size: int = 8) -> list[OutputSpread]:
    """The spread of every output; an output that only some runs produced is an error."""
    keys = sorted(runs[0]) if runs else []
    for index, run in enumerate(runs):
        if sorted(run) != keys:
            raise ComparisonError(
                f"run {index + 1} produced outputs {sorted(run)}, run 1 produced {keys}: "
                "the workflow does not produce the same outputs on every run")
    return [measure_spread(k, [run[k] for run in runs], method=method, hash_size=hash_size)
            for k in keys]


def repeat(run: Callable[[int], RunImages], times: int) -> list[RunImages]:
    """Call ``run(index)`` ``times`` times and keep what each call produced."""
    return [run(index) for index in range(times)]


# --------------------------------------------------------------- rendering


def table_rows(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """One row per calibrated output of the report records, in ``HEADERS`` order."""
    return [_row(_label(r), entry) for r in records for entry in r.get("calibration") or []]


def _label(record: Mapping[str, Any]) -> str:
    workflow, case = record.get("workflow"), record.get("case")
    return f"{workflow} [{case}]" if workflow and case else str(record.get("nodeid"))


def _row(label: str, entry: Mapping[str, Any]) -> tuple[str, ...]:
    tolerance = entry.get("tolerance")
    verdict = "" if tolerance is None or tolerance >= entry["suggested_tolerance"] else " (raise it)"
    diff = entry.get("max_abs_diff")
    return (
        label, str(entry["output"]), f"{entry['method']}:{entry['hash_size']}", str(entry["runs"]), str(entry["min"]),
        f"{entry['median']:g}", str(entry["max"]), "-" if diff is None else str(diff),
        "-" if tolerance is None else f"{tolerance}{verdict}", str(entry["suggested_tolerance"]),
        _max_diff_label(entry.get("suggested_max_diff")),
    )


def _max_diff_label(value: int | None) -> str:
    return "-" if value is None else "0 (exact)" if value == 0 else str(value)


def render_table(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The terminal lines of the calibration table; empty when nothing was calibrated."""
    rows = table_rows(records)
    if not rows:
        return []
    head = f"calibration: hash distances between every pair of runs, cache cleared before each; {RULE}"
    widths = [max(len(row[i]) for row in (HEADERS, *rows)) for i in range(len(HEADERS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in (HEADERS, *rows)]
    return [head, *lines]


__all__ = [
    "RULE",
    "OutputSpread",
    "measure_runs",
    "measure_spread",
    "render_table",
    "repeat",
    "suggest_tolerance",
]
