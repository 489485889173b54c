"""Any output file compared exactly (3D meshes, unknown files), and what every media kind shares.

Baseline of a file output: ``<node>_<index>.file.txt``, a small record (sha256, size, and for GLB
the vertex and face counts read from its header) that reads well in a git diff; the file itself
is not kept. The comparison is exact, and says so: "compared exactly", never a perceptual check.

Shared by ``comparevideo``, ``compareaudio`` and ``comparelatent``: the record format (``name
value`` lines, a name may repeat), ``MediaCheck`` (a lifecycle result plus what was compared and
how, and the files the reports show), saving the obtained file, and the failure for an output
that cannot be decoded (a regression naming node, file and why).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from comfytest.baselines import (
    UPDATE_OPTION,
    Artefacts,
    BaselineKey,
    BaselineStore,
    CheckResult,
    Mode,
    Outcome,
    OutputKind,
    atomic_write,
    run_lifecycle,
)
from comfytest.errors import BaselineCorrupt
from comfytest.media import FileSummary, Undecodable, summarize_file
from comfytest.outputs import OutputFile

Record = dict[str, list[str]]
HEADER = "# comfytest baseline record; rewrite it with pytest " + UPDATE_OPTION


@dataclass(frozen=True)
class MediaCheck:
    """One output's lifecycle result, with what was compared and how, for every report."""

    result: CheckResult
    kind: str  # video | audio | latent | file
    compared: str  # how, in words: "compared exactly (sha256 ...)", "per-frame phash:8 ..."
    metrics: Mapping[str, Any] = field(default_factory=dict)
    files: Mapping[str, Path | None] = field(default_factory=dict)  # role -> path

    @property
    def ok(self) -> bool:
        return self.result.ok

    def to_json(self) -> dict[str, Any]:
        """Fields added to the report's comparison entry (see docs/report-schema.md)."""
        return {"kind": self.kind, "compared": self.compared, "metrics": dict(self.metrics),
                "media": {role: None if p is None else str(p) for role, p in self.files.items()},
                "baseline_files": [str(p) for p in self.baseline_files()]}

    def baseline_files(self) -> list[Path]:
        """Every baseline file of this output (record, sheet, kept media), for "unused" lists."""
        folder, stem = self.result.baseline_path.parent, self.result.key.stem
        return sorted(folder.glob(f"{stem}.*")) if folder.is_dir() else []


def format_record(lines: list[tuple[str, str]]) -> bytes:
    return ("\n".join([HEADER, *(f"{name} {value}" for name, value in lines)]) + "\n").encode()


def read_record(path: Path, required: tuple[str, ...]) -> Record:
    """``name value`` lines; BaselineCorrupt names the file and what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineCorrupt(f"baseline record {path} cannot be read ({exc})") from exc
    record: Record = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.strip().partition(" ")
            record.setdefault(name, []).append(value.strip())
    missing = [name for name in required if name not in record]
    if missing:
        raise BaselineCorrupt(
            f"baseline record {path} lacks {', '.join(missing)}; restore it from version control "
            f"or run pytest with {UPDATE_OPTION} to rewrite it")
    return record


def one(record: Record, name: str) -> str:
    return record[name][0]


def save_obtained(out_dir: Path, file: OutputFile, stem: str) -> Path:
    """The obtained file in the results folder, with its own extension."""
    path = out_dir / f"{stem}.obtained{file.suffix}"
    atomic_write(path, file.data)
    return path


def with_paths(result: CheckResult, paths: Mapping[str, Path | None]) -> CheckResult:
    """The failure message with more artefact paths, listed with the lifecycle's own."""
    extra = "".join(f"\n  {role.replace('_', ' ')}: {path}" for role, path in paths.items() if path)
    head, sep, tail = result.message.partition("\nIf the change is intended")
    return replace(result, message=head + extra + sep + tail)


def undecodable(key: BaselineKey, file: OutputFile, why: str, results_dir: Path, node: str) -> MediaCheck:
    """A failing check for an output comfytest cannot read: a regression, never infrastructure."""
    obtained = save_obtained(results_dir / key.relative_dir, file, key.stem)
    message = (
        f"{key.label()}: {node} produced {file.ref.filename} ({file.kind}, {len(file.data)} bytes), "
        f"which cannot be decoded: {why}. The file is kept in {obtained}. Fix the node that writes "
        "it (or its format/codec inputs); no baseline was read or written.")
    return MediaCheck(CheckResult(key, "mismatch", message, obtained, obtained_path=obtained),
                      file.kind, "not compared: undecodable", files={"obtained_media": obtained})


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
