"""Latent outputs (SaveLatent's ``.latent``, a safetensors file): shape and dtype exactly,
values within ``latent_tolerance`` (the largest absolute difference of any value).

Baseline: ``<node>_<index>.latent.txt`` (per tensor: dtype, shape, min/max/mean/std and a
sha256 of its values) and the ``.latent`` file itself, which the value comparison reads. In
hash-only mode only the record is kept: values then match when their sha256 is equal, or when
min, max, mean and std are each within the tolerance ("compared by summary statistics").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from comfytest.compare.baselines import (
    Artefacts,
    BaselineKey,
    BaselineStore,
    Mode,
    Outcome,
    run_lifecycle,
)
from comfytest.compare.mediacheck import MediaCheck, RecordKind, format_record, read_record, save_obtained, undecodable
from comfytest.errors import BaselineCorrupt
from comfytest.media import MediaSettings, Tensor, Undecodable, read_safetensors
from comfytest.outputs import OutputFile

STATS = ("min", "max", "mean", "std")


@dataclass(frozen=True)
class TensorSummary:
    dtype: str
    shape: tuple[int, ...]
    sha256: str
    stats: tuple[float, float, float, float]

    @classmethod
    def of(cls, t: Tensor) -> TensorSummary:
        v = t.values
        stats = (float(v.min()), float(v.max()), float(v.mean()), float(v.std())) if v.size else (0.0,) * 4
        return cls(t.dtype, t.shape, hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest(),
                   (stats[0], stats[1], stats[2], stats[3]))

    def line(self, name: str) -> str:
        shape = "x".join(map(str, self.shape)) or "scalar"
        return f"{name} {self.dtype} {shape} {self.sha256} " + " ".join(f"{s:.9g}" for s in self.stats)

    @classmethod
    def parse(cls, line: str) -> tuple[str, TensorSummary]:
        name, dtype, shape, sha, *stats = line.split()
        dims = () if shape == "scalar" else tuple(int(n) for n in shape.split("x"))
        if len(stats) != 4:
            raise ValueError(f"expected 4 statistics, found {len(stats)}")
        values = tuple(float(s) for s in stats)
        return name, cls(dtype, dims, sha, (values[0], values[1], values[2], values[3]))


@dataclass(frozen=True)
class LatentBaseline:
    summaries: dict[str, TensorSummary]
    tensors: dict[str, Tensor] | None  # None when only the record is kept


class LatentKind(RecordKind[LatentBaseline]):
    def __init__(self, store: BaselineStore, key: BaselineKey, file: OutputFile, settings: MediaSettings) -> None:
        super().__init__(store, key, file)
        self.settings = settings
        self.name, self.full_name = f"{key.stem}.latent.txt", f"{key.stem}.latent"
        self.tensors = read_safetensors(file.data)
        self.summaries = {n: TensorSummary.of(t) for n, t in self.tensors.items()}
        self.max_diff: float | None = None
        self.by_stats = False
        self.files: dict[str, Path | None] = {}

    def load(self) -> LatentBaseline | None:
        source = self.find_record()
        if source is None:
            return None
        rec = read_record(source, ("tensor",))
        try:
            summaries = dict(TensorSummary.parse(line) for line in rec["tensor"])
        except ValueError as exc:
            raise BaselineCorrupt(f"baseline record {source} is malformed ({exc}); rewrite it with "
                                  "--comfy-update-baselines") from exc
        full = source.parent / self.full_name
        tensors = None
        if full.is_file():
            self.store.mark_used(full)
            self.files["baseline_media"] = full
            try:
                tensors = read_safetensors(full.read_bytes())
            except Undecodable as exc:
                raise BaselineCorrupt(f"baseline latent {full} cannot be read: {exc}") from exc
        return LatentBaseline(summaries, tensors)

    def compare(self, baseline: LatentBaseline) -> Outcome:
        problems = self._structure(baseline.summaries)
        if problems:
            return Outcome(False, "; ".join(problems))
        tol = self.settings.latent_tolerance
        if baseline.tensors is None:
            return self._by_stats(baseline.summaries, tol)
        diffs = {n: float(np.abs(t.values - baseline.tensors[n].values).max(initial=0.0))
                 for n, t in self.tensors.items() if n in baseline.tensors}
        self.max_diff = max(diffs.values(), default=0.0)
        shapes = ", ".join(f"{n} {t.describe()}" for n, t in self.tensors.items())
        if self.max_diff <= tol:
            return Outcome(True, f"{shapes}: largest value difference {self.max_diff:.3g} <= tolerance {tol:g}")
        worst = max(diffs, key=lambda n: diffs[n])
        mean = float(np.abs(self.tensors[worst].values - baseline.tensors[worst].values).mean())
        return Outcome(False, f"{worst}: largest value difference {self.max_diff:.3g} > tolerance {tol:g} "
                       f"(mean {mean:.3g}; {shapes})")

    def _structure(self, base: dict[str, TensorSummary]) -> list[str]:
        problems = []
        if sorted(base) != sorted(self.summaries):
            problems.append(f"tensors {sorted(self.summaries)}, baseline has {sorted(base)}")
        for name, mine in self.summaries.items():
            theirs = base.get(name)
            if theirs is not None and (mine.dtype, mine.shape) != (theirs.dtype, theirs.shape):
                problems.append(f"{name} is {mine.dtype}[{'x'.join(map(str, mine.shape))}], baseline "
                                f"{theirs.dtype}[{'x'.join(map(str, theirs.shape))}]")
        return problems

    def _by_stats(self, base: dict[str, TensorSummary], tol: float) -> Outcome:
        self.by_stats = True
        worst = 0.0
        for name, mine in self.summaries.items():
            if mine.sha256 != base[name].sha256:
                worst = max(worst, *(abs(a - b) for a, b in zip(mine.stats, base[name].stats)))
        self.max_diff = worst
        op = "<=" if worst <= tol else ">"
        return Outcome(worst <= tol, f"summary statistics (hash-only baseline) differ by at most {worst:.3g} {op} "
                       f"tolerance {tol:g}")

    def _record(self) -> bytes:
        return format_record([("tensor", s.line(n)) for n, s in self.summaries.items()])

    def keeps_full_file(self) -> bool:
        return not self.settings.hash_only

    def artefacts(self, out_dir: Path, baseline: LatentBaseline | None) -> Artefacts:
        self.files["obtained_media"] = save_obtained(out_dir, self.file, self.key.stem)
        return Artefacts(self.files["obtained_media"])


def check_latent(store: BaselineStore, key: BaselineKey, file: OutputFile, *, mode: Mode,
                 results_dir: Path, settings: MediaSettings, node: str) -> MediaCheck:
    try:
        kind = LatentKind(store, key, file, settings)
    except Undecodable as exc:
        return undecodable(key, file, str(exc), results_dir, node)
    result = run_lifecycle(kind, mode, results_dir)
    metrics: dict[str, Any] = {"method": "max-abs-diff", "tensors": {n: {"dtype": s.dtype, "shape": list(s.shape)}
                                           for n, s in kind.summaries.items()}}
    if kind.max_diff is not None:
        metrics.update(distance=kind.max_diff, tolerance=settings.latent_tolerance)
    how = ("shape and dtype exactly, " + ("summary statistics (hash-only)" if kind.by_stats else "values")
           + f" within {settings.latent_tolerance:g}")
    return MediaCheck(result, "latent", how, metrics, kind.files)
