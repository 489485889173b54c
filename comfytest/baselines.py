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
import hashlib
import io
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Literal, TypeVar

from PIL import Image

from comfytest import imagecompare as ic
from comfytest.errors import BaselineCorrupt, BaselineMissing, ComparisonError, ImageMismatch

try:
    import fcntl
except ImportError:  # Windows: no flock; xdist workers there must not update one case at once
    fcntl = None  # type: ignore[assignment]

Mode = Literal["compare", "update"]
Status = Literal["passed", "missing", "mismatch", "updated", "created", "unchanged"]
Comparison = ic.ImageComparison | ic.AnimationComparison
UPDATE_OPTION = "--comfy-update-baselines"
HASHES_FILE = "hashes.txt"
PROFILES_DIR = "_profiles"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)),
             *(f"LPT{i}" for i in range(10))}


def safe_name(name: str) -> str:
    """``name`` when it is a safe path component, else a cleaned name plus a short hash.

    The hash of the original keeps distinct names distinct (``a/b`` vs ``a_b``, ``x[1]`` vs
    ``x(1)``) and stable across runs. Leading ``.``/``_`` are unsafe: dotfiles are temporary
    files here and ``_profiles`` is reserved; Windows device names are unsafe too.
    """
    cleaned = _UNSAFE.sub("_", name).strip("._")[:60]
    if name and cleaned == name and name.split(".")[0].upper() not in _RESERVED:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{cleaned}-{digest}" if cleaned else digest


@dataclass(frozen=True)
class BaselineKey:
    workflow: str  # "/" separates directories
    case: str
    output_key: str  # "<node>_<index>"

    @property
    def relative_dir(self) -> Path:
        return Path(*(safe_name(p) for p in self.workflow.split("/") if p), safe_name(self.case))

    @property
    def stem(self) -> str:
        return safe_name(self.output_key)

    def label(self) -> str:
        return f"output {self.output_key} of {self.workflow}[{self.case}]"


@dataclass(frozen=True)
class HashRecord:
    """One line of ``hashes.txt``: a hash per frame, the size and mode of the image."""

    hashes: tuple[str, ...]
    size: tuple[int, int]
    mode: str

    def line(self, stem: str) -> str:
        return f"{stem}  {','.join(self.hashes)}  {self.size[0]}x{self.size[1]} {self.mode}"

    @classmethod
    def parse(cls, line: str) -> tuple[str, HashRecord]:
        stem, hashes, wxh, mode = line.split()
        w, h = wxh.split("x")
        record = cls(tuple(hashes.split(",")), (int(w), int(h)), mode)
        for value in record.hashes:
            ic.HashValue.parse(value)
        return stem, record

    @classmethod
    def of(cls, obtained: Image.Image, method: str, hash_size: int) -> HashRecord:
        frames = ic.frames(obtained)
        hashes = tuple(ic.image_hash(f, method, hash_size) for f in frames)
        return cls(hashes, frames[0].size, obtained.mode)


def read_hashes(path: Path) -> dict[str, HashRecord]:
    """All records of a hashes file; BaselineCorrupt names the file and line it cannot read."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineCorrupt(f"cannot read baseline hash file {path}: {exc}") from exc
    records = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            stem, record = HashRecord.parse(line)
        except ValueError as exc:
            raise BaselineCorrupt(
                f"{path}:{number}: malformed line {line!r} ({exc}); fix or delete it, or run "
                f"pytest with {UPDATE_OPTION} to rewrite it") from exc
        records[stem] = record
    return records


@contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    # flock on the directory itself: the same exclusion as a lock file, without leaving a
    # stray file in the baselines tree for git to report
    directory.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory and ``os.replace``: readers (and a
    crash) see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would surprise a CI cache or another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def upsert_hash(path: Path, stem: str, record: HashRecord) -> bool:
    """Set one line of a hashes file under its lock; True when the file changed.

    Lines this call cannot parse are kept verbatim: they belong to other outputs."""
    with _dir_lock(path.parent):
        old = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        kept = [ln for ln in old if ln.strip() and ln.split()[0] != stem]
        new = sorted([*kept, record.line(stem)])
        if new == old:
            return False
        atomic_write(path, ("\n".join(new) + "\n").encode())
        return True


class BaselineStore:
    """The baselines root, the active profile, and which baseline files this process used."""

    def __init__(self, root: Path, profile: str | None = None) -> None:
        self.root = Path(root)
        self.profile = profile
        self._used: set[Path] = set()

    @property
    def used(self) -> frozenset[Path]:
        return frozenset(self._used)

    def mark_used(self, path: Path) -> None:
        self._used.add(Path(os.path.abspath(path)))

    def profile_root(self) -> Path | None:
        return self.root / PROFILES_DIR / safe_name(self.profile) if self.profile else None

    def read_dirs(self, key: BaselineKey) -> list[Path]:
        """Directories to look in, most specific first."""
        proot = self.profile_root()
        common = self.root / key.relative_dir
        return [proot / key.relative_dir, common] if proot else [common]

    def write_dir(self, key: BaselineKey) -> Path:
        return self.read_dirs(key)[0]

    def find_file(self, key: BaselineKey, name: str) -> Path | None:
        return next((d / name for d in self.read_dirs(key) if (d / name).is_file()), None)

    def find_hash(self, key: BaselineKey) -> tuple[Path, HashRecord] | None:
        for directory in self.read_dirs(key):
            record = read_hashes(directory / HASHES_FILE).get(key.stem)
            if record is not None:
                return directory / HASHES_FILE, record
        return None


def unused_baselines(store: BaselineStore, used: Iterable[Path]) -> list[Path]:
    """Baseline files of the common tree and the active profile that no check touched.

    ``used`` is the union of ``store.used`` over all processes (xdist workers)."""
    seen = {Path(os.path.abspath(p)) for p in used}
    proot = store.profile_root()
    out = []
    for path in sorted(store.root.rglob("*")):
        rel = path.relative_to(store.root)
        other_profile = rel.parts[0] == PROFILES_DIR and (
            proot is None or not path.is_relative_to(proot))
        if (path.is_file() and path.suffix in (".png", ".txt") and not other_profile
                and not any(p.startswith(".") for p in rel.parts)
                and Path(os.path.abspath(path)) not in seen):
            out.append(path)
    return out


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

    @property
    def ok(self) -> bool:
        return self.status not in ("missing", "mismatch")

    def error(self) -> ComparisonError | None:
        """The exception the test should fail with, or None."""
        if self.status == "missing":
            return BaselineMissing(self.message)
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

    def __init__(self, store: BaselineStore, key: BaselineKey) -> None:
        self.store, self.key = store, key
        self.source: Path | None = None  # the file the baseline was read from

    @property
    @abstractmethod
    def target(self) -> Path: ...

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


def _save_png(path: Path, frames: list[Image.Image]) -> None:
    # no duration: Pillow's APNG writer merges identical frames only when one is given
    extra = {"save_all": True, "append_images": frames[1:]} if len(frames) > 1 else {}
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", **extra)
    atomic_write(path, buffer.getvalue())


@dataclass(frozen=True)
class _HashParams:
    method: str
    hash_size: int
    tolerance: int


class _ImageKind(_Kind[list[Image.Image]]):
    """PNG baselines, compared by decoded pixels; their hash line is kept beside them."""

    def __init__(self, store: BaselineStore, key: BaselineKey, obtained: Image.Image,
                 params: _HashParams) -> None:
        super().__init__(store, key)
        self.obtained, self.frames, self.params = obtained, ic.frames(obtained), params
        self.name = f"{key.stem}.png"
        self.pixels_same = False
        self.stored: HashRecord | None = None  # hash-only mode's baseline
        self.cmp: Comparison | None = None

    @property
    def target(self) -> Path:
        # identical pixels with a stale hash line: the line is fixed beside the existing PNG
        if self.pixels_same and self.source:
            return self.source
        return self.store.write_dir(self.key) / self.name

    def load(self) -> list[Image.Image] | None:
        self.source = self.store.find_file(self.key, self.name)
        if self.source is None:
            return None
        self.store.mark_used(self.source)
        if (self.source.parent / HASHES_FILE).exists():
            self.store.mark_used(self.source.parent / HASHES_FILE)
        return _read_png(self.source)

    def compare(self, baseline: list[Image.Image]) -> _Outcome:
        p = self.params
        cmp: Comparison = (
            ic.compare_images(self.frames[0], baseline[0], method=p.method,
                              hash_size=p.hash_size, tolerance=p.tolerance)
            if len(self.frames) == len(baseline) == 1 else
            ic.compare_animations(self.frames, baseline, method=p.method,
                                  hash_size=p.hash_size, tolerance=p.tolerance))
        self.cmp = cmp
        frames = cmp.frames if isinstance(cmp, ic.AnimationComparison) else (cmp,)
        self.pixels_same = len(self.frames) == len(baseline) and all(
            f.max_abs_diff == 0 and not f.mode_mismatch for f in frames)
        return _Outcome(cmp.passed, cmp.describe(), cmp)

    def _record(self) -> HashRecord:
        return HashRecord.of(self.obtained, self.params.method, self.params.hash_size)

    def unchanged(self, outcome: _Outcome) -> bool:
        assert self.source is not None
        try:
            stored = read_hashes(self.source.parent / HASHES_FILE).get(self.key.stem)
        except BaselineCorrupt:
            return False  # dump() rewrites our line and keeps the others verbatim
        return self.pixels_same and stored == self._record()

    def dump(self) -> None:
        if not self.pixels_same:
            _save_png(self.target, self.frames)
        upsert_hash(self.target.parent / HASHES_FILE, self.key.stem, self._record())
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
        diff = ic.diff_heatmap(self.frames[index], baseline[index])
        paths = _Artefacts(obtained, out_dir / f"{self.key.stem}.diff.png",
                           out_dir / f"{self.key.stem}.side_by_side.png")
        assert paths.diff and paths.side_by_side
        _save_png(paths.diff, [diff])
        _save_png(paths.side_by_side, [ic.side_by_side(baseline[index], self.frames[index], diff)])
        return paths


def _read_png(path: Path) -> list[Image.Image]:
    try:
        with Image.open(path) as img:
            img.load()
            return [f.copy() for f in ic.frames(img)]
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BaselineCorrupt(
            f"baseline image {path} cannot be decoded ({exc}); restore it from version control "
            f"or run pytest with {UPDATE_OPTION} to replace it") from exc


class _HashOnlyKind(_ImageKind):
    """Hash-only baselines: a line of hashes.txt, compared by hash distance alone."""

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
        try:
            frames = tuple(ic.compare_to_hash(
                f, h, baseline_size=stored.size, baseline_mode=stored.mode, method=p.method,
                hash_size=p.hash_size, tolerance=p.tolerance)
                for f, h in zip(self.frames, stored.hashes))
        except ComparisonError as exc:
            raise ComparisonError(f"{self.key.label()}, baseline {self.source}: {exc}; run pytest "
                                  f"with {UPDATE_OPTION} to re-hash it") from exc
        cmp: Comparison = frames[0] if len(self.frames) == len(stored.hashes) == 1 else \
            ic.AnimationComparison(p.tolerance, len(self.frames), len(stored.hashes), frames)
        return _Outcome(cmp.passed, cmp.describe(), cmp)

    def unchanged(self, outcome: _Outcome) -> bool:
        return self.stored == self._record()

    def dump(self) -> None:
        upsert_hash(self.target, self.key.stem, self._record())
        self.store.mark_used(self.target)

    def artefacts(self, out_dir: Path, baseline: list[Image.Image] | None) -> _Artefacts:
        return super().artefacts(out_dir, None)  # nothing to diff against


def check_image(store: BaselineStore, key: BaselineKey, obtained: Image.Image, *,
                mode: Mode = "compare", method: str = "phash", hash_size: int = 8,
                tolerance: int = 2, results_dir: Path, hash_only: bool = False) -> CheckResult:
    """Compare (or in update mode, record) one output image against its baseline."""
    ic.check_method(method, hash_size)
    params = _HashParams(method, hash_size, tolerance)
    kind = (_HashOnlyKind if hash_only else _ImageKind)(store, key, obtained, params)
    return _run(kind, mode, results_dir)


class _TextKind(_Kind[str]):
    """Text baselines, compared exactly; the failure shows a unified diff."""

    def __init__(self, store: BaselineStore, key: BaselineKey, obtained: str) -> None:
        super().__init__(store, key)
        self.obtained, self.name = obtained, f"{key.stem}.txt"

    @property
    def target(self) -> Path:
        return self.store.write_dir(self.key) / self.name

    def load(self) -> str | None:
        self.source = self.store.find_file(self.key, self.name)
        if self.source is None:
            return None
        self.store.mark_used(self.source)
        try:
            return self.source.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BaselineCorrupt(f"baseline text {self.source} cannot be read ({exc})") from exc

    def compare(self, baseline: str) -> _Outcome:
        if baseline == self.obtained:
            return _Outcome(True, "identical text")
        diff = "".join(difflib.unified_diff(
            baseline.splitlines(keepends=True), self.obtained.splitlines(keepends=True),
            "baseline", "obtained"))
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
    return _run(_TextKind(store, key, obtained), mode, results_dir)
