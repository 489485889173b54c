"""What every media kind shares (video, audio, latents, exact files): the record file format
(``name value`` lines that read well in a git diff; a name may repeat), ``MediaCheck`` (a lifecycle
result plus what was compared and how, and the files the reports show), saving the obtained file,
the failure for an output that cannot be decoded (a regression naming node, file and why), and
the labelled picture sheets the diff artefacts are drawn on.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image, ImageDraw, ImageFont

from comfytest.compare.baselines import (
    UPDATE_OPTION,
    BaselineKey,
    BaselineStore,
    CheckResult,
    Outcome,
    OutputKind,
    atomic_write,
)
from comfytest.errors import BaselineCorrupt
from comfytest.outputs import OutputFile

Record = dict[str, list[str]]
B = TypeVar("B")  # what a kind reads back from its baseline
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


def stacked(rows: list[tuple[str, Image.Image]]) -> Image.Image:
    width = max(img.width for _, img in rows)
    height = sum(img.height + 16 for _, img in rows)
    out = Image.new("RGB", (width, height), (40, 40, 40))
    draw, y = ImageDraw.Draw(out), 0
    for label, img in rows:
        draw.text((4, y + 2), label, fill=(230, 230, 230), font=ImageFont.load_default())
        out.paste(img, (0, y + 16))
        y += img.height + 16
    return out


def save_png(path: Path, img: Image.Image) -> None:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write(path, buf.getvalue())


class RecordKind(OutputKind[B]):
    """A media kind whose baseline is a record file (``name``) plus, unless the suite keeps
    hashes only, the output file itself (``full_name``) for the report to show. Subclasses give
    ``_record()`` (the record's bytes) and ``keeps_full_file()``."""

    full_name = ""

    def __init__(self, store: BaselineStore, key: BaselineKey, file: OutputFile) -> None:
        super().__init__(store, key)
        self.file = file

    def _record(self) -> bytes:
        raise NotImplementedError

    def keeps_full_file(self) -> bool:
        raise NotImplementedError

    def unchanged(self, outcome: Outcome) -> bool:
        assert self.source is not None
        full_ok = not self.keeps_full_file() or (self.source.parent / self.full_name).is_file()
        return self.source.read_bytes() == self._record() and full_ok

    def dump(self) -> None:
        atomic_write(self.target, self._record())
        self.store.mark_used(self.target)
        if self.keeps_full_file():
            full = self.target.parent / self.full_name
            atomic_write(full, self.file.data)
            self.store.mark_used(full)
