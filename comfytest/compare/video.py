"""Video outputs (mp4, webm, mov...): frame count, size and frame rate exactly, frames by hash.

Every frame is decoded with PyAV; every frame, or an even sample of ``video_frames`` frames of a
longer video (first and last included), is scaled down in FFmpeg to at most ``HASH_SIDE`` pixels
and hashed with the case's perceptual hash, compared with the case's tolerance. A mismatch names
the first and the worst frame.

Baseline, small enough for a repository::

    <node>_<index>.video.txt      size, fps, frame count, codec, one hash line per hashed frame
    <node>_<index>.contact.png    a contact sheet of up to 16 frames, to review (not in hash-only)
    <node>_<index>.mp4            the full file, only with ``keep_video = true`` in ``[media]``

Artefacts of a mismatch: the obtained file and contact sheet, a diff contact sheet (a heatmap
per sheet frame against the baseline's sheet) and a side-by-side (baseline, obtained, diff).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from comfytest.compare import images as ic
from comfytest.compare import perceptual as pc
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
from comfytest.compare.mediacheck import (
    MediaCheck,
    format_record,
    one,
    read_record,
    save_obtained,
    save_png,
    stacked,
    undecodable,
    with_paths,
)
from comfytest.errors import BaselineCorrupt
from comfytest.media import MediaSettings, Undecodable, VideoInfo, decode_video, fps_text, sample_indices
from comfytest.outputs import OutputFile

HASH_SIDE = 128  # frames are hashed (and shown in sheets) at this size: 10x faster than full size
SHEET_FRAMES = 16
SHEET_COLUMNS = 4
_GAP, _LABEL = 2, 12


@dataclass(frozen=True)
class VideoSignature:
    """What a video baseline keeps: its properties and one hash per hashed frame."""

    width: int
    height: int
    fps: Fraction
    frames: int
    codec: str
    hashes: tuple[tuple[int, str], ...]
    sheet: tuple[int, ...]
    #: a colour signature per hashed frame (``frame <i> <hash> <lab1:...>``); empty in records
    #: written before they were kept, which then compare by the hash alone
    colours: tuple[tuple[int, str], ...] = ()

    def describe(self) -> str:
        return f"{self.frames} frames {self.width}x{self.height} at {fps_text(self.fps)} fps"

    def lines(self, filename: str) -> list[tuple[str, str]]:
        colours = dict(self.colours)
        return [("size", f"{self.width}x{self.height}"), ("fps", str(self.fps)),
                ("frames", str(self.frames)), ("codec", self.codec),
                ("sheet", ",".join(map(str, self.sheet))),
                *(("frame", f"{i} {h}" + (f" {colours[i]}" if i in colours else "")) for i, h in self.hashes)]

    @classmethod
    def parse(cls, path: Path) -> VideoSignature:
        rec = read_record(path, ("size", "fps", "frames", "frame"))
        try:
            w, h = one(rec, "size").split("x")
            hashes, colours = [], []
            for line in rec["frame"]:
                index, value, *colour = line.split()
                ic.HashValue.parse(value)
                hashes.append((int(index), value))
                if colour:
                    pc.ColourSignature.parse(colour[0])
                    colours.append((int(index), colour[0]))
            sheet = tuple(int(i) for i in one(rec, "sheet").split(",") if i) if "sheet" in rec else ()
            return cls(int(w), int(h), Fraction(one(rec, "fps")), int(one(rec, "frames")),
                       rec.get("codec", ["?"])[0], tuple(hashes), sheet, tuple(colours))
        except (ValueError, ZeroDivisionError) as exc:
            raise BaselineCorrupt(f"baseline record {path} is malformed ({exc}); restore it from "
                                  "version control or rewrite it with --comfy-update-baselines") from exc


#: with colour signatures, a frame's hash may move this many times the tolerance before the
#: hash alone fails it: H.264 turns ±1 level of drift in a noise-like frame into 8 bits of
#: phash (measured on the example suite's video, see docs/baselines.md) while nothing visible
#: changes; the signature judges colour, tone and layout instead
HASH_SLACK = 8
#: an encoded frame drifts more than a PNG: ±2 levels before H.264 moved a noise frame's
#: 8x8 grid by up to 2.2 ΔE on average and 7.8 in one cell; tone, hue and detail stay as strict
FRAME_LIMITS = replace(pc.DEFAULT_LIMITS, delta_e=3.5, grid_delta_e=12.0)


@dataclass(frozen=True)
class VideoComparison:
    tolerance: int
    obtained: VideoSignature
    baseline: VideoSignature
    distances: tuple[tuple[int, int], ...]  # (frame, distance) for frames both hashed
    #: (frame, what changed in words) for frames both have colour signatures of
    changes: tuple[tuple[int, tuple[str, ...]], ...] = ()

    @property
    def property_problems(self) -> list[str]:
        a, b = self.obtained, self.baseline
        problems = []
        if a.frames != b.frames:
            problems.append(f"{a.frames} frames, baseline has {b.frames}")
        if (a.width, a.height) != (b.width, b.height):
            problems.append(f"size {a.width}x{a.height}, baseline {b.width}x{b.height}")
        if a.fps != b.fps:
            problems.append(f"{fps_text(a.fps)} fps, baseline {fps_text(b.fps)} fps")
        return problems

    def limit(self, frame: int) -> int:
        """The hash tolerance of one frame: wider where a colour signature also judges it."""
        return self.tolerance * HASH_SLACK if frame in dict(self.changes) else self.tolerance

    @property
    def failing(self) -> list[int]:
        seen = dict(self.changes)
        return [i for i, d in self.distances if d > self.limit(i) or seen.get(i)]

    @property
    def worst(self) -> tuple[int, int] | None:
        return max(self.distances, key=lambda x: (x[1], -x[0]), default=None)

    @property
    def distance(self) -> int:
        worst = self.worst
        return worst[1] if worst else 0

    @property
    def passed(self) -> bool:
        return not self.property_problems and not self.failing

    def describe(self, method: str) -> str:
        parts = self.property_problems
        n, worst = len(self.distances), self.worst
        fails = self.failing
        if fails and worst is not None:
            first, seen = fails[0], dict(self.changes)
            words = "; ".join(seen.get(first) or ()) or f"distance {dict(self.distances)[first]} > {self.limit(first)}"
            parts.append(f"{len(fails)} of {n} hashed frames differ: first frame {first} ({words}; {method} "
                         f"distance {dict(self.distances)[first]}), worst frame {worst[0]} (distance {worst[1]})")
        if parts:
            return "; ".join(parts)
        where = f", largest distance {worst[1]} at frame {worst[0]}" if worst else ""
        how = (f"colour signatures and {method} within {self.tolerance * HASH_SLACK}" if self.changes
               else f"{method} within tolerance {self.tolerance}")
        return f"{self.obtained.describe()}, all {n} hashed frames match ({how}{where})"


def signature(data: bytes, method: str, hash_size: int, limit: int,
              hashed: tuple[int, ...] | None = None, sheet: tuple[int, ...] | None = None,
              ) -> tuple[VideoSignature, dict[int, Image.Image]]:
    """Decode once: hashes of the sampled frames and the contact sheet's thumbnails."""
    chosen: dict[str, set[int]] = {}
    hashes: dict[int, str] = {}
    colours: dict[int, str] = {}
    thumbs: dict[int, Image.Image] = {}

    def wanted(count: int) -> set[int]:
        chosen["hash"] = set(hashed if hashed is not None else sample_indices(count, limit))
        chosen["sheet"] = set(sheet if sheet is not None else sample_indices(count, SHEET_FRAMES))
        return chosen["hash"] | chosen["sheet"]

    def visit(index: int, img: Image.Image) -> None:
        if index in chosen["hash"]:
            hashes[index] = ic.image_hash(img, method, hash_size)
            colours[index] = str(pc.ColourSignature.of(img))
        if index in chosen["sheet"]:
            thumbs[index] = img

    info: VideoInfo = decode_video(data, wanted, visit, max_side=HASH_SIDE)
    sig = VideoSignature(info.width, info.height, info.fps, info.frames, info.codec,
                         tuple(sorted(hashes.items())), tuple(sorted(thumbs)), tuple(sorted(colours.items())))
    return sig, thumbs


def _cell(thumb: tuple[int, int], index: int) -> tuple[int, int]:
    col, row = index % SHEET_COLUMNS, index // SHEET_COLUMNS
    return _GAP + col * (thumb[0] + _GAP), _GAP + row * (thumb[1] + _LABEL + _GAP)


def contact_sheet(frames: dict[int, Image.Image], labels: dict[int, str] | None = None) -> Image.Image:
    """The frames in a grid, each labelled with its index (or ``labels``), on dark grey."""
    order = sorted(frames)
    thumb = frames[order[0]].size
    cols = min(SHEET_COLUMNS, len(order))
    rows = (len(order) + SHEET_COLUMNS - 1) // SHEET_COLUMNS
    sheet = Image.new("RGB", (_GAP + cols * (thumb[0] + _GAP), _GAP + rows * (thumb[1] + _LABEL + _GAP)), (40, 40, 40))
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default()
    for n, index in enumerate(order):
        x, y = _cell(thumb, n)
        sheet.paste(frames[index].convert("RGB").resize(thumb), (x, y))
        draw.text((x, y + thumb[1]), (labels or {}).get(index, f"frame {index}"), fill=(230, 230, 230), font=font)
    return sheet


def sheet_frames(sheet: Image.Image, indices: tuple[int, ...], thumb: tuple[int, int]) -> dict[int, Image.Image]:
    """The thumbnails back out of a contact sheet written by ``contact_sheet``."""
    out = {}
    for n, index in enumerate(indices):
        x, y = _cell(thumb, n)
        out[index] = sheet.crop((x, y, x + thumb[0], y + thumb[1]))
    return out


class VideoKind(OutputKind[VideoSignature]):
    def __init__(self, store: BaselineStore, key: BaselineKey, file: OutputFile, settings: MediaSettings) -> None:
        super().__init__(store, key)
        self.file, self.settings = file, settings
        self.name, self.sheet_name = f"{key.stem}.video.txt", f"{key.stem}.contact.png"
        self.full_name = f"{key.stem}{file.suffix}"
        self.sig, self.thumbs = signature(file.data, settings.method, settings.hash_size, settings.video_frames)
        self.cmp: VideoComparison | None = None
        self.files: dict[str, Path | None] = {}

    def load(self) -> VideoSignature | None:
        source = self.find_record()
        if source is None:
            return None
        for name, role in ((self.sheet_name, "baseline"), (self.full_name, "baseline_media")):
            if (source.parent / name).is_file():
                self.store.mark_used(source.parent / name)
                self.files[role] = source.parent / name
        return VideoSignature.parse(source)

    def compare(self, baseline: VideoSignature) -> Outcome:
        s = self.settings
        if (baseline.hashes and [i for i, _ in baseline.hashes] != [i for i, _ in self.sig.hashes]) \
                or (baseline.sheet and baseline.sheet != self.sig.sheet):
            # another sample (a changed video_frames, or another frame count): hash those frames
            self.sig, self.thumbs = signature(self.file.data, s.method, s.hash_size, s.video_frames,
                                              tuple(i for i, _ in baseline.hashes), baseline.sheet or None)
        mine = dict(self.sig.hashes)
        try:
            distances = tuple((i, ic.hash_distance(mine[i], h)) for i, h in baseline.hashes if i in mine)
        except Exception as exc:
            raise BaselineCorrupt(f"{self.key.label()}, baseline {self.source}: {exc}; run pytest with "
                                  "--comfy-update-baselines to re-hash it") from exc
        mine_c = dict(self.sig.colours)
        changes = tuple((i, tuple(pc.signature_changes(pc.ColourSignature.parse(mine_c[i]), pc.ColourSignature.parse(c),
                                                       (self.sig.width, self.sig.height)).changes(FRAME_LIMITS)))
                        for i, c in baseline.colours if i in mine_c and self.store.perceptual)
        self.cmp = VideoComparison(s.tolerance, self.sig, baseline, distances, changes)
        return Outcome(self.cmp.passed, self.cmp.describe(f"{s.method}:{s.hash_size}"))

    def unchanged(self, outcome: Outcome) -> bool:
        assert self.source is not None
        return (self.source.read_bytes() == self._record() and self._extras_present(self.source.parent))

    def _extras_present(self, folder: Path) -> bool:
        sheet_ok = self.settings.hash_only or (folder / self.sheet_name).is_file()
        full_ok = not self.settings.keep_video or (folder / self.full_name).is_file()
        return sheet_ok and full_ok

    def _record(self) -> bytes:
        return format_record(self.sig.lines(self.file.ref.filename))

    def dump(self) -> None:
        folder = self.target.parent
        atomic_write(self.target, self._record())
        self.store.mark_used(self.target)
        if not self.settings.hash_only and self.thumbs:
            save_png(folder / self.sheet_name, contact_sheet(self.thumbs))
            self.store.mark_used(folder / self.sheet_name)
        if self.settings.keep_video:
            atomic_write(folder / self.full_name, self.file.data)
            self.store.mark_used(folder / self.full_name)

    def artefacts(self, out_dir: Path, baseline: VideoSignature | None) -> Artefacts:
        self.files["obtained_media"] = save_obtained(out_dir, self.file, self.key.stem)
        if not self.thumbs:
            return Artefacts(self.files["obtained_media"])
        obtained_sheet = out_dir / f"{self.key.stem}.obtained.png"
        save_png(obtained_sheet, contact_sheet(self.thumbs))
        sheet_path = self.files.get("baseline")
        if baseline is None or sheet_path is None or not baseline.sheet:
            return Artefacts(obtained_sheet)
        try:
            with Image.open(sheet_path) as img:
                base = sheet_frames(img.convert("RGB"), baseline.sheet, next(iter(self.thumbs.values())).size)
        except OSError:
            return Artefacts(obtained_sheet)
        common = [i for i in baseline.sheet if i in self.thumbs]
        if not common:
            return Artefacts(obtained_sheet)
        dist = dict(self.cmp.distances) if self.cmp else {}
        heat = {i: pc.error_map(self.thumbs[i], base[i]) for i in common}
        labels = {i: f"frame {i}" + (f" d={dist[i]}" if i in dist else "") for i in common}
        diff_sheet = contact_sheet(heat, labels)
        diff, side = out_dir / f"{self.key.stem}.diff.png", out_dir / f"{self.key.stem}.side_by_side.png"
        save_png(diff, diff_sheet)
        save_png(side, stacked([("baseline", contact_sheet({i: base[i] for i in common})),
                             ("obtained", contact_sheet({i: self.thumbs[i] for i in common})),
                             ("diff", diff_sheet)]))
        return Artefacts(obtained_sheet, diff, side)


def check_video(store: BaselineStore, key: BaselineKey, file: OutputFile, *, mode: Mode,
                results_dir: Path, settings: MediaSettings, node: str) -> MediaCheck:
    try:
        kind = VideoKind(store, key, file, settings)
    except Undecodable as exc:
        return undecodable(key, file, str(exc), results_dir, node)
    result = run_lifecycle(kind, mode, results_dir)
    if "obtained_media" not in kind.files:  # the report plays the video even when it passed
        kind.files["obtained_media"] = save_obtained(results_dir / key.relative_dir, file, key.stem)
    elif not result.ok:
        result = with_paths(result, {"obtained video": kind.files["obtained_media"]})
    sig, cmp = kind.sig, kind.cmp
    metrics: dict[str, Any] = {"method": settings.method, "frames": sig.frames, "width": sig.width, "height": sig.height,
                               "fps": fps_text(sig.fps), "codec": sig.codec, "hashed_frames": len(sig.hashes)}
    if cmp is not None:
        metrics.update(distance=cmp.distance, tolerance=cmp.limit(cmp.changes[0][0]) if cmp.changes else cmp.tolerance, failing_frames=len(cmp.failing),
                       first_failing_frame=cmp.failing[0] if cmp.failing else None,
                       worst_frame=cmp.worst[0] if cmp.worst else None)
    how = (f"frame count, size and fps exactly; {len(sig.hashes)} of {sig.frames} frames by "
           f"{settings.method}:{settings.hash_size} hash, tolerance {settings.tolerance}")
    if cmp is not None and cmp.changes:
        how = (f"frame count, size and fps exactly; {len(sig.hashes)} of {sig.frames} frames by colour signature "
               f"(perceptual limits) and {settings.method}:{settings.hash_size} hash within {cmp.limit(cmp.changes[0][0])}")
    return MediaCheck(result, "video", how, metrics, kind.files)


def as_animation(data: bytes, limit: int) -> Image.Image:
    """The hashed frames (as compared: scaled to ``HASH_SIDE``) as one animated image, so the
    calibration of images measures a video's frame-to-frame spread the same way."""
    import io

    frames: dict[int, Image.Image] = {}
    decode_video(data, lambda count: sample_indices(count, limit), frames.__setitem__, max_side=HASH_SIDE)
    ordered = [frames[i] for i in sorted(frames)]
    buf = io.BytesIO()
    ordered[0].save(buf, format="PNG", save_all=True, append_images=ordered[1:], duration=1)
    buf.seek(0)
    img = Image.open(buf)
    img.load()
    return img
