"""Any output file compared exactly (3D meshes, unknown files).

Baseline of a file output: ``<node>_<index>.file.txt``, a small record (sha256, size, and for GLB
the vertex and face counts read from its header) that reads well in a git diff; the file itself
is not kept. The comparison is exact, and says so: "compared exactly", never a perceptual check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comfytest.compare.baselines import (
    Artefacts,
    BaselineKey,
    BaselineStore,
    Mode,
    Outcome,
    OutputKind,
    atomic_write,
    run_lifecycle,
)
from comfytest.compare.mediacheck import MediaCheck, format_record, one, read_record, save_obtained, undecodable
from comfytest.errors import BaselineCorrupt
from comfytest.media import FileSummary, Undecodable, summarize_file
from comfytest.outputs import OutputFile


class FileKind(OutputKind[FileSummary]):
    """A content-hash record; the file itself is not kept in baselines."""

    def __init__(self, store: BaselineStore, key: BaselineKey, file: OutputFile) -> None:
        super().__init__(store, key)
        self.file, self.name = file, f"{key.stem}.file.txt"
        self.summary = summarize_file(file.ref.filename, file.data)
        self.obtained_path: Path | None = None

    def load(self) -> FileSummary | None:
        source = self.find_record()
        if source is None:
            return None
        rec = read_record(source, ("sha256", "size"))
        counts = [int(one(rec, n)) if n in rec else None for n in ("vertices", "faces")]
        try:
            return FileSummary(one(rec, "sha256"), int(one(rec, "size")), counts[0], counts[1],
                               " ".join(rec.get("digest_of", ["the whole file"])))
        except ValueError as exc:
            raise BaselineCorrupt(f"baseline record {source} has a bad size ({exc})") from exc

    def compare(self, baseline: FileSummary) -> Outcome:
        same = baseline.sha256 == self.summary.sha256
        if same:
            return Outcome(True, f"compared exactly: identical ({self.summary.describe()})")
        return Outcome(False, f"compared exactly: content differs; obtained {self.summary.describe()}, "
                       f"baseline {baseline.describe()}")

    def unchanged(self, outcome: Outcome) -> bool:
        return outcome.passed

    def dump(self) -> None:
        s = self.summary
        lines = [("sha256", s.sha256), ("size", str(s.size)),
                 ("digest_of", s.digest_of)]
        if s.vertices is not None:
            lines += [("vertices", str(s.vertices)), ("faces", str(s.faces))]
        atomic_write(self.target, format_record(lines))
        self.store.mark_used(self.target)

    def artefacts(self, out_dir: Path, baseline: FileSummary | None) -> Artefacts:
        self.obtained_path = save_obtained(out_dir, self.file, self.key.stem)
        return Artefacts(self.obtained_path)


def check_exact(store: BaselineStore, key: BaselineKey, file: OutputFile, *, mode: Mode,
                results_dir: Path, node: str) -> MediaCheck:
    """A file output by content hash (3D and anything comfytest has no perceptual check for)."""
    try:
        kind = FileKind(store, key, file)
    except Undecodable as exc:
        return undecodable(key, file, str(exc), results_dir, node)
    result = run_lifecycle(kind, mode, results_dir)
    s = kind.summary
    metrics: dict[str, Any] = {"method": "sha256", "size": s.size, "sha256": s.sha256}
    if s.vertices is not None:
        metrics.update(vertices=s.vertices, faces=s.faces)
    return MediaCheck(result, "file", f"compared exactly (sha256 of {s.digest_of})", metrics,
                      {"obtained_media": kind.obtained_path})
