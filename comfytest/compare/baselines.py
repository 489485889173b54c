"""Where baselines live, and the one lifecycle that checks, reports and updates them.

Layout under the store root, meant to read well in a git diff::

    <workflow>/<case>/<node>_<index>.png      baseline image (an APNG for animations)
    <workflow>/<case>/<node>_<index>.txt      baseline text output, compared exactly
    <workflow>/<case>/hashes.txt              "<key>  <hash>[,<hash>...]  <W>x<H> <MODE>", sorted
    _profiles/<profile>/<workflow>/<case>/... the same files, overriding the common ones

Every component goes through ``safe_name``; ``/`` in a workflow name makes subdirectories.
With a profile, a baseline is read from the profile directory when it is there and from the
common one otherwise; updates write into the profile directory, and only what differs.
In hash-only mode images are kept only as lines of ``hashes.txt`` (text stays a file).

The lifecycle (``_run``): compare mode never writes under the root; a missing baseline or a
mismatch fails and leaves the obtained output (plus diff and side-by-side images) in
``results_dir/<workflow>/<case>/``. Update mode writes new and changed baselines and leaves
baselines whose decoded pixels (or text, or hash line) are identical untouched, so the bytes
on disk stay stable. Writes are atomic; ``hashes.txt`` is read-modified-written under an
exclusive ``flock`` on its directory so pytest-xdist workers can update one case together.
"""

from __future__ import annotations

import difflib
import errno
import io
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Generic, Literal, TypeVar

from PIL import Image

from comfytest.compare import images as ic
from comfytest.compare import perceptual as pc
from comfytest.compare.criteria import NO_LIMITS, Criteria, PixelLimits, for_baseline
from comfytest.compare.preload import Preloaded, Preloads, read_frames
from comfytest.compare.store import (
    HASHES_FILE,
    PROFILES_DIR,
    UPDATE_OPTION,
    BaselineKey,
    BaselineStore,
    HashRecord,
    Stack,
    atomic_write,
    check_line,
    file_digest,
    read_hashes,
    remove_hash,
    safe_name,
    uninterrupted,
    unused_baselines,
    upsert_hash,
)
from comfytest.errors import BaselineCorrupt, BaselineMissing, ComparisonError, ImageMismatch, StorageError
from comfytest.outputs import OutputImage

__all__ = [  # the file layer is re-exported: callers need only this module
    "HASHES_FILE",
    "PROFILES_DIR",
    "UPDATE_OPTION",
    "BaselineKey",
    "BaselineStore",
    "CheckResult",
    "HashRecord",
    "Mode",
    "Stack",
    "Status",
    "atomic_write",
    "check_image",
    "check_not_produced",
    "check_text",
    "read_hashes",
    "safe_name",
    "unused_baselines",
    "upsert_hash",
]

Mode = Literal["compare", "update"]
Status = Literal["passed", "missing", "mismatch", "updated", "created", "unchanged",
                 "not_produced", "removed"]
FAILED: frozenset[str] = frozenset({"missing", "mismatch", "not_produced"})
Comparison = ic.ImageComparison | ic.AnimationComparison


@dataclass(frozen=True)
class CheckResult:
    key: BaselineKey
    status: Status
    message: str  # what, where, by how much, how to fix
    baseline_path: Path
    comparison: Comparison | None = None
    obtained_path: Path | None = None
    diff_path: Path | None = None
    side_by_side_path: Path | None = None
    text_diff: str | None = field(default=None, repr=False)
    #: text outputs: (baseline text or None, obtained text), for reports
    texts: tuple[str | None, str] | None = field(default=None, repr=False)
    #: an image output that passed without being decoded (``same_source``) where its pixels were
    #: at hand anyway: the baseline's, read while the case ran (for its thumbnail)
    pixels: Image.Image | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.status not in FAILED

    def error(self) -> ComparisonError | None:
        """The exception the test should fail with, or None."""
        if self.status == "missing":
            return BaselineMissing(self.message)
        if self.status == "not_produced":
            return ComparisonError(self.message)
        if self.status == "mismatch":
            return ImageMismatch(self.message) if self.text_diff is None \
                else ComparisonError(self.message)
        return None


@dataclass(frozen=True)
class _Outcome:
    passed: bool
    detail: str
    comparison: Comparison | None = None
    text_diff: str | None = None


@dataclass(frozen=True)
class _Artefacts:
    obtained: Path | None = None
    diff: Path | None = None
    side_by_side: Path | None = None


B = TypeVar("B")


class _Kind(ABC, Generic[B]):
    """What one kind of output supplies to the lifecycle: load, compare, dump, artefacts."""

    #: the baseline record's file name, for kinds that keep one record per output
    name = ""

    def __init__(self, store: BaselineStore, key: BaselineKey) -> None:
        self.store, self.key = store, key
        self.source: Path | None = None  # the file the baseline was read from

    @property
    def target(self) -> Path:
        """Where an update writes the baseline record."""
        return self.store.write_dir(self.key) / self.name

    def find_record(self) -> Path | None:
        """The baseline record (the device profile's first), marked as used; None when missing."""
        self.source = self.store.find_file(self.key, self.name)
        if self.source is not None:
            self.store.mark_used(self.source)
        return self.source

    @abstractmethod
    def load(self) -> B | None: ...

    @abstractmethod
    def compare(self, baseline: B) -> _Outcome: ...

    @abstractmethod
    def unchanged(self, outcome: _Outcome) -> bool:
        """Update mode: whether the baseline already holds exactly this output."""

    @abstractmethod
    def dump(self) -> None: ...

    @abstractmethod
    def artefacts(self, out_dir: Path, baseline: B | None) -> _Artefacts: ...


def _run(kind: _Kind[B], mode: Mode, results_dir: Path) -> CheckResult:
    """The one baseline lifecycle shared by every output kind."""
    try:
        return _lifecycle(kind, mode, results_dir)
    except OSError as exc:  # read-only folder, a directory where a file belongs, disk full
        where = exc.filename2 or exc.filename or kind.target  # os.replace: (temporary file, target)
        what = "baseline" if Path(where).is_relative_to(kind.store.root) else "result"
        folder = "baselines folder" if what == "baseline" else "results folder (--comfy-results)"
        fix = (f"Free space on the disk of the {folder}" if exc.errno == errno.ENOSPC else
               f"Make the {folder} writable" + (" (or move the obstacle away)" if what == "baseline" else ""))
        raise StorageError(
            f"cannot write the {what} file for {kind.key.label()}: {where}: {exc.strerror or exc}. "
            f"{fix} and run again.") from None


def _lifecycle(kind: _Kind[B], mode: Mode, results_dir: Path) -> CheckResult:
    key, label = kind.key, kind.key.label()
    try:
        baseline = kind.load()
    except BaselineCorrupt as exc:
        if mode != "update":
            art = kind.artefacts(results_dir / key.relative_dir, None)
            raise BaselineCorrupt(f"{exc}\nThe obtained output is in {art.obtained}.") from exc
        kind.dump()
        return CheckResult(key, "updated", f"replaced unreadable baseline for {label}: {exc}",
                           kind.target)
    if baseline is None:
        if mode == "update":
            kind.dump()
            return CheckResult(key, "created", f"created baseline {kind.target} for {label}",
                               kind.target)
        art = kind.artefacts(results_dir / key.relative_dir, None)
        return CheckResult(key, "missing", (
            f"no baseline for {label}: {kind.target} does not exist; the obtained output is in "
            f"{art.obtained}. Run pytest with {UPDATE_OPTION} to create the baseline."),
            kind.target, obtained_path=art.obtained)
    outcome = kind.compare(baseline)
    source = kind.source or kind.target
    if mode == "update":
        if kind.unchanged(outcome):
            return CheckResult(key, "unchanged", f"baseline {source} for {label} is unchanged",
                               source, outcome.comparison)
        kind.dump()
        return CheckResult(key, "updated", f"updated baseline for {label}: {outcome.detail}",
                           kind.target, outcome.comparison)
    if outcome.passed:
        return CheckResult(key, "passed", f"{label} matches its baseline: {outcome.detail}",
                           source, outcome.comparison, text_diff=outcome.text_diff)
    art = kind.artefacts(results_dir / key.relative_dir, baseline)
    where = "".join(f"\n  {name}: {path}" for name, path in (
        ("baseline", source), ("obtained", art.obtained), ("diff", art.diff),
        ("side by side", art.side_by_side)) if path is not None)
    return CheckResult(key, "mismatch", (
        f"{label} differs from its baseline: {outcome.detail}{where}\n"
        f"If the change is intended, run pytest with {UPDATE_OPTION} to accept it."),
        source, outcome.comparison, art.obtained, art.diff, art.side_by_side, outcome.text_diff)


def _save_png(path: Path, frames: list[Image.Image]) -> bytes:
    # no duration: Pillow's APNG writer merges identical frames only when one is given
    extra = {"save_all": True, "append_images": frames[1:]} if len(frames) > 1 else {}
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", **extra)
    atomic_write(path, buffer.getvalue())
    return buffer.getvalue()


def _decode_png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@dataclass(frozen=True)
class _HashParams:
    method: str
    hash_size: int
    tolerance: int
    limits: PixelLimits = NO_LIMITS


class _ImageKind(_Kind[list[Image.Image]]):
    """PNG baselines, compared by decoded pixels; their hash line is kept beside them."""

    keeps_pixels = True  # the perceptual criteria judge pixels: the hash is a backstop (HASH_BACKSTOP)

    def __init__(self, store: BaselineStore, key: BaselineKey, obtained: Image.Image | OutputImage,
                 params: _HashParams, preloads: Preloads | None = None, *, compare: bool = True) -> None:
        super().__init__(store, key)
        self._obtained, self.params = obtained, params
        #: the served PNG's image-data digest (``media.png_image_digest``); with ``compare`` (not an
        #: update) an output whose digest is its baseline line's ``served=`` is never decoded
        self.served = obtained.digest if isinstance(obtained, OutputImage) else None
        self.shortcut = compare and self.served is not None
        self.same_source = False  # the shortcut held: same image data as the baseline's source
        self.pixels: Image.Image | None = None  # then, the baseline's decoded pixels if preloaded
        self.preloads = preloads  # the case's baselines, read while it ran (``preload``)
        self.name = f"{key.stem}.png"
        self.pixels_same = False
        self.stored: HashRecord | None = None  # the baseline's hashes.txt line
        self.loaded: list[Image.Image] | None = None  # the baseline's frames, once decoded
        self.baseline_hashes: tuple[str, ...] = ()  # their hashes, computed to check the line
        self.cmp: Comparison | None = None

    @cached_property
    def obtained(self) -> Image.Image:
        """The obtained image, decoded on first use (``Undecodable`` when it cannot be)."""
        return self._obtained.image if isinstance(self._obtained, OutputImage) else self._obtained

    @cached_property
    def frames(self) -> list[Image.Image]:
        return ic.frames(self.obtained)

    def criteria(self) -> Criteria:
        """The limits for this output: the strict pixel default only where the baseline's stack
        (device, torch, ComfyUI, precision flags, as far as its line records them) is ours."""
        same, why = same_stack(self.stored.stack if self.stored else Stack(), self.store.stack)
        return for_baseline(self.params.tolerance, self.params.limits, same, why,
                            pc.DEFAULT_LIMITS if self.store.perceptual else None, pixels=self.keeps_pixels)

    @property
    def target(self) -> Path:
        # identical pixels with a stale hash line: the line is fixed beside the existing PNG
        if self.pixels_same and self.source:
            return self.source
        return self.store.write_dir(self.key) / self.name

    def load(self) -> list[Image.Image] | None:
        source = self.find_record()
        if source is None:
            return None
        # the PNG is the baseline; its line says which device made it (and so whether the pixel
        # limits apply): a line that is damaged, missing or made from other pixels is never skipped
        early = self.preloads.take(source) if self.preloads is not None else None
        hashes = source.parent / HASHES_FILE
        self.store.mark_used(hashes)
        if self.shortcut:
            self.stored = read_hashes(hashes).get(self.key.stem)
            if self._same_source(source, early):
                self.same_source = self.pixels_same = True
                self.pixels = early.frames[0] if early is not None else None
                return []  # nothing decoded: compare() says why it passes
        self.loaded = early.frames if early is not None else _read_png(source)
        if not self.shortcut:
            self.stored = read_hashes(hashes).get(self.key.stem)
        self.baseline_hashes = check_line(hashes, self.key.stem, self.stored, source, self.loaded,
                                          early.hashes if early is not None else None)
        return self.loaded

    def _same_source(self, source: Path, early: Preloaded | None) -> bool:
        """Whether the server sent the image data this baseline was made from (the line's
        ``served=``), and the PNG beside the line is still the one written with it (``file=``):
        then the output's pixels are the baseline's, exactly. Single images of the modes whose
        comparison needs no decoding to describe (an animation, a palette image: compared)."""
        line = self.stored
        if line is None or line.file is None or not self._served_from(line):
            return False
        try:
            digest = early.digest if early is not None else file_digest(source.read_bytes())
        except OSError:
            return False  # the normal read says what is wrong
        return digest == line.file

    def _served_from(self, line: HashRecord) -> bool:
        """Whether ``line`` was written from the image data this output was served with, and is a
        single image of a mode whose comparison needs no decoding to describe, hashed the way
        this run hashes (an animation, a palette image, another hash: compared in full)."""
        p = self.params
        return (self.served is not None and line.served == self.served and len(line.hashes) == 1
                and line.mode in _PLAIN_MODES and line.hashes[0].startswith(f"{p.method}:{p.hash_size}:"))

    def _same_source_outcome(self) -> _Outcome:
        line = self.stored
        assert line is not None
        cmp = ic.ImageComparison.of_same_source(line.hashes[0], line.size, line.mode, self.criteria(),
                                             pixels=self.keeps_pixels)
        self.cmp = cmp
        return _Outcome(cmp.passed, cmp.describe(), cmp)

    def compare(self, baseline: list[Image.Image]) -> _Outcome:
        if self.same_source:
            return self._same_source_outcome()
        p, criteria = self.params, self.criteria()
        # load() hashed the baseline to check its line: reused when this run hashes the same way
        known = self.baseline_hashes if self.baseline_hashes and all(
            h.startswith(f"{p.method}:{p.hash_size}:") for h in self.baseline_hashes) else None
        cmp: Comparison = (
            ic.compare_images(self.frames[0], baseline[0], method=p.method, hash_size=p.hash_size,
                              criteria=criteria, baseline_hash=known[0] if known else None)
            if len(self.frames) == len(baseline) == 1 else
            ic.compare_animations(self.frames, baseline, method=p.method,
                                  hash_size=p.hash_size, criteria=criteria, baseline_hashes=known))
        self.cmp = cmp
        frames = cmp.frames if isinstance(cmp, ic.AnimationComparison) else (cmp,)
        self.pixels_same = len(self.frames) == len(baseline) and all(
            f.max_abs_diff == 0 and not f.mode_mismatch for f in frames)
        return _Outcome(cmp.passed, cmp.describe(), cmp)

    def _stack(self) -> Stack:
        # identical pixels keep the device that made them: an update on another device
        # that changes nothing must not move every line
        keep = self.pixels_same and self.stored is not None and self.stored.device
        return self.stored.stack if keep and self.stored else self.store.stack

    def _record(self, file: str | None = None) -> HashRecord:
        stack = self._stack()
        # a PNG baseline: ``served`` only beside a file (``file``) that holds the served pixels
        # exactly; a hash-only line describes the served pixels themselves
        exact = file is not None and self.pixels_same if self.keeps_pixels else True
        served = self.served if exact else None
        return HashRecord.of(self.obtained, self.params.method, self.params.hash_size, stack,
                             served=served, file=file if served and self.keeps_pixels else None)

    @cached_property
    def _source_digest(self) -> str | None:
        """``file=`` for the baseline PNG an unchanged output keeps (None for another format);
        read once (an update asks ``unchanged`` and then ``dump``)."""
        if self.served is None or self.source is None:
            return None
        return file_digest(self.source.read_bytes())

    def unchanged(self, outcome: _Outcome) -> bool:
        assert self.source is not None
        try:
            stored = read_hashes(self.source.parent / HASHES_FILE).get(self.key.stem)
        except BaselineCorrupt:
            return False  # dump() rewrites our line and keeps the others verbatim
        # the digests alone do not make an update rewrite a line (an older line without them, a
        # server whose PNG encoder changed): only the shortcut is lost, never a comparison
        return self.pixels_same and stored is not None and _without_digests(stored) == _without_digests(
            self._record(self._source_digest))

    def dump(self) -> None:
        if self.cmp is None and self.loaded is not None:  # a damaged line: keep a reproduced image
            self.pixels_same = _same_pixels(self.frames, self.loaded)
            self.stored = None
        with uninterrupted():  # the image and its line: both or neither
            if self.pixels_same:
                record = self._record(self._source_digest)
            else:
                written = _save_png(self.target, self.frames)
                # the line describes the bytes on disk, decoded again, not the image in memory;
                # ``served`` only where those bytes hold the served pixels exactly
                decoded = _decode_png(written)
                exact = self.served is not None and _same_pixels(self.frames, ic.frames(decoded))
                record = HashRecord.of(decoded, self.params.method, self.params.hash_size, self._stack(),
                                       served=self.served if exact else None,
                                       file=file_digest(written) if exact else None)
            upsert_hash(self.target.parent / HASHES_FILE, self.key.stem, record)
        self.store.mark_used(self.target)
        self.store.mark_used(self.target.parent / HASHES_FILE)

    def artefacts(self, out_dir: Path, baseline: list[Image.Image] | None) -> _Artefacts:
        obtained = out_dir / f"{self.key.stem}.obtained.png"
        _save_png(obtained, self.frames)
        if baseline is None:
            return _Artefacts(obtained)
        # the first failing frame of an animation, else the last one both have
        failing = self.cmp.first_failure if isinstance(self.cmp, ic.AnimationComparison) else None
        index = min(len(self.frames), len(baseline)) - 1 if failing is None else failing
        a, b = self.frames[index], baseline[index]
        diff = pc.error_map(a, b) if a.size == b.size else ic.diff_heatmap(a, b)
        paths = _Artefacts(obtained, out_dir / f"{self.key.stem}.diff.png",
                           out_dir / f"{self.key.stem}.side_by_side.png")
        assert paths.diff and paths.side_by_side
        _save_png(paths.diff, [diff])
        _save_png(paths.side_by_side, [ic.side_by_side(baseline[index], self.frames[index], diff)])
        return paths


def _without_digests(record: HashRecord) -> HashRecord:
    return replace(record, served=None, file=None)


#: modes whose comparison needs no decoding to describe: RGB(A) or grey, no palette
_PLAIN_MODES = frozenset({"RGB", "RGBA", "L", "LA"})


def _same_pixels(a: list[Image.Image], b: list[Image.Image]) -> bool:
    return len(a) == len(b) and all(
        x.mode == y.mode and x.size == y.size and x.tobytes() == y.tobytes() for x, y in zip(a, b))


def _read_png(path: Path) -> list[Image.Image]:
    try:
        return read_frames(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BaselineCorrupt(
            f"baseline image {path} cannot be decoded ({exc}); restore it from version control "
            f"or run pytest with {UPDATE_OPTION} to replace it") from exc


class _HashOnlyKind(_ImageKind):
    """Hash-only baselines: a line of hashes.txt, compared by hash distance alone."""

    keeps_pixels = False

    @property
    def target(self) -> Path:
        return self.store.write_dir(self.key) / HASHES_FILE

    def load(self) -> list[Image.Image] | None:
        found = self.store.find_hash(self.key)
        if found is None:
            return None
        self.source, self.stored = found
        self.store.mark_used(self.source)
        return []  # no pixels: compare() uses self.stored

    def compare(self, baseline: list[Image.Image]) -> _Outcome:
        p, stored = self.params, self.stored
        assert stored is not None, "load() found the record"
        if self.shortcut and self._served_from(stored):
            self.same_source = True  # the line was written from this image data: nothing to decode
            return self._same_source_outcome()
        try:
            frames = tuple(ic.compare_to_hash(
                f, h, baseline_size=stored.size, baseline_mode=stored.mode, method=p.method,
                hash_size=p.hash_size, criteria=self.criteria(), baseline_colour=c)
                for f, h, c in zip(self.frames, stored.hashes, stored.colour or [None] * len(stored.hashes)))
        except ComparisonError as exc:
            raise ComparisonError(f"{self.key.label()}, baseline {self.source}: {exc}; run pytest "
                                  f"with {UPDATE_OPTION} to re-hash it") from exc
        cmp: Comparison = frames[0] if len(self.frames) == len(stored.hashes) == 1 else \
            ic.AnimationComparison(p.tolerance, len(self.frames), len(stored.hashes), frames)
        return _Outcome(cmp.passed, cmp.describe(), cmp)

    def unchanged(self, outcome: _Outcome) -> bool:
        return self.stored is not None and _without_digests(self.stored) == _without_digests(self._record())

    def dump(self) -> None:
        upsert_hash(self.target, self.key.stem, self._record())
        self.store.mark_used(self.target)

    def artefacts(self, out_dir: Path, baseline: list[Image.Image] | None) -> _Artefacts:
        return super().artefacts(out_dir, None)  # nothing to diff against


def same_stack(baseline: Stack, current: Stack) -> tuple[bool, str]:
    """Whether strict criteria apply, and why, in words for the failure message."""
    if baseline.device is None:
        return False, "baseline: device not recorded — perceptual criteria"
    differs = baseline.differences(current)
    if not differs:
        return True, f"baseline made on this stack ({baseline.label()}) — strict criteria"
    return False, (f"baseline: {baseline.label()}; this run: {current.label(differs)} — perceptual criteria")


def check_image(store: BaselineStore, key: BaselineKey, obtained: Image.Image | OutputImage, *,
                mode: Mode = "compare", method: str = "phash", hash_size: int = 8,
                tolerance: int = 2, results_dir: Path, hash_only: bool = False,
                limits: PixelLimits = NO_LIMITS, preloads: Preloads | None = None) -> CheckResult:
    """Compare (or in update mode, record) one output image against its baseline: by the
    hash ``tolerance`` and the pixel ``limits`` (plus the same-device default; see criteria).
    ``obtained`` as served (an ``OutputImage``): decoded only if it is not the image data the
    baseline was made from (``Undecodable`` when it cannot be). ``preloads``: the case's
    baseline images if a thread read them already (``preload``)."""
    ic.check_method(method, hash_size)
    params = _HashParams(method, hash_size, tolerance, limits)
    kind = (_HashOnlyKind if hash_only else _ImageKind)(store, key, obtained, params, preloads,
                                                         compare=mode == "compare")
    result = _run(kind, mode, results_dir)
    return replace(result, pixels=kind.pixels) if kind.pixels is not None and result.ok else result


class _TextKind(_Kind[str]):
    """Text baselines, compared exactly; the failure shows a unified diff."""

    def __init__(self, store: BaselineStore, key: BaselineKey, obtained: str) -> None:
        super().__init__(store, key)
        self.obtained, self.name = obtained, f"{key.stem}.txt"
        self.baseline: str | None = None

    def load(self) -> str | None:
        source = self.find_record()
        if source is None:
            return None
        try:
            return source.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BaselineCorrupt(f"baseline text {source} cannot be read ({exc})") from exc

    def compare(self, baseline: str) -> _Outcome:
        self.baseline = baseline
        if baseline == self.obtained:
            return _Outcome(True, "identical text")
        diff = text_diff(baseline, self.obtained)
        return _Outcome(False, f"text differs:\n{diff}", text_diff=diff)

    def unchanged(self, outcome: _Outcome) -> bool:
        return outcome.passed

    def dump(self) -> None:
        atomic_write(self.target, self.obtained.encode("utf-8"))
        self.store.mark_used(self.target)

    def artefacts(self, out_dir: Path, baseline: str | None) -> _Artefacts:
        path = out_dir / f"{self.key.stem}.obtained.txt"
        atomic_write(path, self.obtained.encode("utf-8"))
        return _Artefacts(path)


def check_text(store: BaselineStore, key: BaselineKey, obtained: str, *,
               mode: Mode = "compare", results_dir: Path) -> CheckResult:
    """Compare (or in update mode, record) one text output against its baseline file."""
    kind = _TextKind(store, key, obtained)
    return replace(_run(kind, mode, results_dir), texts=(kind.baseline, obtained))


def text_diff(baseline: str, obtained: str) -> str:
    """One line per side for one-line texts (``2730.666…`` vs ``2730``), else a unified diff."""
    if "\n" not in baseline.strip("\n") and "\n" not in obtained.strip("\n"):
        return f"  baseline: {baseline!r}\n  obtained: {obtained!r}\n"
    return "".join(difflib.unified_diff(
        baseline.splitlines(keepends=True), obtained.splitlines(keepends=True),
        "baseline", "obtained"))


def check_not_produced(store: BaselineStore, case: BaselineKey, produced: set[str], *,
                       mode: Mode = "compare",
                       nodes: tuple[str, ...] | None = None) -> list[CheckResult]:
    """Baselines of this case for outputs the run did not produce (a dropped frame, a node
    that stopped returning text): each one fails; update mode deletes them (only from the
    directory it writes to, so a profile run never deletes the common baselines).

    ``case`` is the case's key with an empty output; ``produced`` holds the output stems the
    run produced; ``nodes`` (the settings file's ``outputs``) limits the check to those nodes.
    """
    results = []
    wanted = None if nodes is None else {safe_name(n) for n in nodes}
    for stem, paths in sorted(store.case_baselines(case).items()):
        node = stem.rsplit("_", 1)[0]
        if stem in produced or (wanted is not None and node not in wanted):
            continue
        key = BaselineKey(case.workflow, case.case, stem)
        for path in paths:
            store.mark_used(path)
        writable = [p for p in paths if p.parent == store.write_dir(key)]
        if mode == "update" and writable:
            for path in writable:
                remove_hash(path, stem) if path.name == HASHES_FILE else path.unlink()
            results.append(CheckResult(key, "removed", (
                f"removed the baseline of {key.label()}, which the run no longer produces: "
                + ", ".join(str(p) for p in writable)), writable[0]))
            continue
        fix = (f"If the output was dropped on purpose, run pytest with {UPDATE_OPTION} to "
               "delete its baseline" if mode != "update" else
               "Delete it by hand: it is outside the profile this run updates")
        results.append(CheckResult(key, "not_produced", (
            f"{key.label()} has a baseline but the run did not produce it: "
            + ", ".join(f"{p}" + (f" (line {stem})" if p.name == HASHES_FILE else "")
                        for p in paths) + f". {fix}."), paths[0]))
    return results


# --- the same lifecycle for the other output kinds (comparefile, comparevideo, compareaudio,
# comparelatent): each supplies an OutputKind; these names are their public entry points
OutputKind = _Kind
Outcome = _Outcome
Artefacts = _Artefacts
run_lifecycle = _run
