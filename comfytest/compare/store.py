"""The baselines folder on disk: layout, safe names, the hashes file, atomic and locked writes.

Layout under the root (see ``baselines`` for the lifecycle that uses it)::

    <workflow>/<case>/<node>_<index>.png      baseline image (an APNG for animations)
    <workflow>/<case>/<node>_<index>.txt      baseline text output
    <workflow>/<case>/hashes.txt              "<key>  <hash>[,<hash>...]  <W>x<H> <MODE>", sorted
    <workflow>/<case>/trace.txt               the trace of intermediate outputs (``compare.trace``)
    <workflow>/<case>/trace.png               its image outputs' pictures, one 64 px cell each
    _profiles/<profile>/<workflow>/<case>/... the same files, overriding the common ones
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from comfytest.compare import images as ic
from comfytest.compare.perceptual import ColourSignature
from comfytest.errors import BaselineCorrupt, clip

try:
    import fcntl
except ImportError:  # Windows: no flock; xdist workers there must not update one case at once
    fcntl = None  # type: ignore[assignment]

UPDATE_OPTION = "--comfy-update-baselines"
HASHES_FILE = "hashes.txt"
TRACE_FILE = "trace.txt"  # issue 23: the case's trace of intermediate outputs (compare.trace), no output's
TRACE_PICTURES = "trace.png"  # ... and the pictures of its image outputs
PROFILES_DIR = "_profiles"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")
#: files a baseline folder holds: images and records, plus kept media (audio, latents, videos)
BASELINE_SUFFIXES = frozenset({".png", ".txt", ".latent", ".flac", ".wav", ".mp3", ".opus", ".ogg",
                               ".m4a", ".aac", ".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"})
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


#: what made a baseline, in the order a line of ``hashes.txt`` writes it
STACK_FIELDS = ("device", "torch", "comfyui", "precision")
#: launch flags that change what a model computes (precision, attention, determinism)
_PRECISION_FLAG = re.compile(r"^--(.*(fp8|fp16|bf16|fp32|fp64|upcast|attention|deterministic|precision).*)$")


@dataclass(frozen=True)
class Stack:
    """What made (or runs) a baseline: the device profile, torch and ComfyUI versions and the
    precision flags ComfyUI was started with; ``None``: not known (lines written before it was
    kept record the device alone)."""

    device: str | None = None
    torch: str | None = None
    comfyui: str | None = None
    precision: str | None = None  # "fp16-vae,bf16-unet"; "none" for none

    def items(self) -> list[tuple[str, str]]:
        return [(name, value) for name in STACK_FIELDS if (value := getattr(self, name)) is not None]

    def label(self, names: tuple[str, ...] = STACK_FIELDS) -> str:
        """``cpu, torch 2.4.1, ComfyUI 0.3.75, precision fp16-vae`` (the named fields only)."""
        words = {"device": "", "torch": "torch ", "comfyui": "ComfyUI ", "precision": "precision "}
        return ", ".join(f"{words[k]}{v}" for k, v in self.items() if k in names) or "unknown"

    def differences(self, other: Stack) -> tuple[str, ...]:
        """Fields both know and that differ; a device is required on both sides to be "same"."""
        if self.device is None or other.device is None:
            return ("device",)
        return tuple(k for k in STACK_FIELDS
                     if getattr(self, k) is not None and getattr(other, k) is not None
                     and getattr(self, k) != getattr(other, k))


def _field(value: object) -> str | None:
    return re.sub(r"\s+", "_", str(value)) if value not in (None, "") else None


def stack_of(system_stats: Mapping[str, Any]) -> Stack:
    """The stack a server reports in /system_stats: device, versions, precision flags of argv."""
    system = system_stats.get("system") if isinstance(system_stats.get("system"), Mapping) else {}
    assert isinstance(system, Mapping)
    argv = system.get("argv") if isinstance(system.get("argv"), list) else None
    flags = None if argv is None else ",".join(
        m.group(1) for a in argv if isinstance(a, str) and (m := _PRECISION_FLAG.match(a))) or "none"
    device = device_profile(system_stats)
    return Stack(safe_name(device) if device else None, _field(system.get("pytorch_version")),
                 _field(system.get("comfyui_version")), flags)


@dataclass(frozen=True)
class HashRecord:
    """One line of ``hashes.txt``: a hash per frame, the size and mode of the image, the stack
    that made it (``device=cpu torch=2.4.1 comfyui=0.3.75 precision=none``; lines written
    before the stack was kept have the device alone, older ones nothing) and a colour
    signature per frame (``colour=lab1:...``; absent in older lines, which then compare by the
    hash alone). ``served`` is ``media.png_image_digest`` of the PNG the server sent when the line
    was written, and ``file`` the digest of the baseline PNG itself (``file_digest``): an output
    the server sends with the same image data, beside a baseline file that is still the one the
    line was written with, holds the same pixels and passes without being decoded. Both are
    absent in older lines, for outputs that are not PNGs, and where the PNG written did not
    decode to the obtained pixels exactly."""

    hashes: tuple[str, ...]
    size: tuple[int, int]
    mode: str
    device: str | None = None
    torch: str | None = None
    comfyui: str | None = None
    precision: str | None = None
    colour: tuple[str, ...] | None = None
    served: str | None = None
    file: str | None = None

    @property
    def stack(self) -> Stack:
        return Stack(self.device, self.torch, self.comfyui, self.precision)

    def line(self, stem: str) -> str:
        extra = "".join(f"  {k}={v}" for k, v in self.stack.items())
        if self.colour:
            extra += f"  colour={','.join(self.colour)}"
        extra += "".join(f"  {k}={v}" for k, v in (("served", self.served), ("file", self.file)) if v)
        return f"{stem}  {','.join(self.hashes)}  {self.size[0]}x{self.size[1]} {self.mode}{extra}"

    @classmethod
    def parse(cls, line: str) -> tuple[str, HashRecord]:
        stem, hashes, wxh, mode, *extra = line.split()
        w, h = wxh.split("x")
        fields = dict(item.split("=", 1) for item in extra)
        unknown = set(fields) - {*STACK_FIELDS, "colour", "served", "file"}
        if unknown:
            raise ValueError(f"unknown field {sorted(unknown)[0]!r}")
        colour = tuple(fields["colour"].split(",")) if "colour" in fields else None
        for name in ("served", "file"):
            if name in fields and not _DIGEST.fullmatch(fields[name]):
                raise ValueError(f"{name}= is not sha256: and 32 hex digits")
        record = cls(tuple(hashes.split(",")), (int(w), int(h)), mode, fields.get("device"), fields.get("torch"),
                     fields.get("comfyui"), fields.get("precision"), colour, fields.get("served"), fields.get("file"))
        for value in record.hashes:
            ic.HashValue.parse(value)
        for value in colour or ():
            ColourSignature.check(value)
        return stem, record

    @classmethod
    def of(cls, obtained: Image.Image, method: str, hash_size: int,
           device: str | Stack | None = None, *, served: str | None = None, file: str | None = None) -> HashRecord:
        frames = ic.frames(obtained)
        hashes = tuple(ic.image_hash(f, method, hash_size) for f in frames)
        colour = tuple(str(ColourSignature.of(f)) for f in frames)
        stack = device if isinstance(device, Stack) else Stack(device)
        return cls(hashes, frames[0].size, obtained.mode, stack.device, stack.torch, stack.comfyui,
                   stack.precision, colour, served, file)


_DIGEST = re.compile(r"sha256:[0-9a-f]{32}")


def file_digest(data: bytes) -> str:
    """The ``file=`` digest of a baseline PNG: sha256 of its bytes, 128 bits, as ``sha256:<hex>``."""
    return f"sha256:{hashlib.sha256(data).hexdigest()[:32]}"


def device_profile(system_stats: Mapping[str, Any]) -> str | None:
    """``cpu``, or the GPU's name (``NVIDIA H100 80GB HBM3``) from /system_stats, made safe
    for a file name and a ``hashes.txt`` field."""
    devices = system_stats.get("devices") or []
    if not devices or not isinstance(devices[0], Mapping):
        return None
    dev = devices[0]
    if dev.get("type") == "cpu":
        return "cpu"
    name = str(dev.get("name") or "")
    name = name.split(" : ")[0]
    return name.split(" ", 1)[1] if name.startswith("cuda:") and " " in name else name or None


#: how a damaged record is repaired; named by every message about one
REPAIR = (f"restore it from version control, or run pytest with {UPDATE_OPTION} to rewrite it (a line is "
          "recomputed from an image the run reproduces; an image the run does not reproduce is replaced)")
_MARKERS = ("<<<<<<<", "|||||||", "=======", ">>>>>>>")


def _is_marker(line: str) -> bool:
    return line.startswith(_MARKERS)


def _parses(line: str) -> bool:
    try:
        HashRecord.parse(line)
    except ValueError:
        return False
    return True


def _lines(first: int, last: int) -> str:
    return "no line is" if last < first else f"line {first} is" if first == last else f"lines {first}-{last} are"


def _conflict(path: Path, lines: list[str]) -> BaselineCorrupt | None:
    """A git merge conflict left in the file, with which side is which."""
    marks = [(n, ln) for n, ln in enumerate(lines, 1) if _is_marker(ln)]
    if not marks:
        return None
    first, ours = marks[0]
    theirs = next((ln for _, ln in marks if ln.startswith(">>>>>>>")), ">>>>>>> (missing)")
    mid = next((n for n, ln in marks if ln.startswith("=======")), first)
    end = next((n for n, ln in marks if ln.startswith(">>>>>>>")), len(lines))
    return BaselineCorrupt(
        f"{path}:{first}: unresolved git merge conflict: {_lines(first + 1, mid - 1)} one side "
        f"({ours.strip()!r}: ours, the branch you were on; in a rebase, the branch you rebase onto), "
        f"{_lines(mid + 1, end - 1)} the other ({theirs.strip()!r}: theirs, the branch being merged). "
        f"Keep one side's line per output and delete the marker lines, or {REPAIR}")


def read_hashes(path: Path) -> dict[str, HashRecord]:
    """All records of a hashes file; BaselineCorrupt names the file and line it cannot read.

    A merge conflict, bytes that are not UTF-8, a last line without its newline (a file cut
    short: the cut may leave a line that still parses) and a second line for one output are
    damage, never skipped: a dropped line would drop its device and the pixel limits with it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise BaselineCorrupt(f"cannot read baseline hash file {path}: {exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = data[:exc.start].count(b"\n") + 1
        raise BaselineCorrupt(f"{path}:{where}: not text (byte {exc.start} is not UTF-8): the file is "
                              f"damaged; {REPAIR}") from exc
    lines = text.splitlines()
    conflict = _conflict(path, lines)
    if conflict is not None:
        raise conflict
    if text and not text.endswith("\n"):
        raise BaselineCorrupt(f"{path}:{len(lines)}: the last line has no newline: the file was cut short "
                              f"(truncated) and that line may have lost its end; {REPAIR}")
    records: dict[str, HashRecord] = {}
    first: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            stem, record = HashRecord.parse(line)
        except ValueError as exc:
            raise BaselineCorrupt(
                f"{path}:{number}: malformed line {clip(line)!r} ({exc}); fix or delete it, or run "
                f"pytest with {UPDATE_OPTION} to rewrite it") from exc
        if stem in records:
            raise BaselineCorrupt(f"{path}:{number}: a second line for {stem} (the first is line "
                                  f"{first[stem]}); delete one, or {REPAIR}")
        records[stem], first[stem] = record, number
    return records


def line_number(path: Path, stem: str) -> int:
    """The line of ``stem`` in a hashes file that ``read_hashes`` read (0 when absent)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return next((n for n, ln in enumerate(lines, 1) if ln.split()[:1] == [stem]), 0)


def check_line(hashes: Path, stem: str, record: HashRecord | None, image: Path,
               frames: list[Image.Image], known: Mapping[str, tuple[str, ...]] | None = None) -> tuple[str, ...]:
    """BaselineCorrupt unless ``record`` (the line of ``hashes``) describes ``image``'s pixels:
    a missing file or line, or a line made from other pixels (an update interrupted between the
    two files, an image copied by hand) would otherwise drop the device and its pixel limits.
    Returns the frames' hashes it computed (the record's method and size), for the comparison.
    ``known``: these frames' hashes already computed, by ``"<method>:<size>"`` (``preload``)."""
    if record is None:
        why = (f"{hashes} is missing" if not hashes.exists() else
               f"{hashes} is empty" if not hashes.read_text(encoding="utf-8").strip() else
               f"{hashes} has no line for {stem}")
        raise BaselineCorrupt(f"baseline image {image} has no hash line: {why}; the line records the "
                              f"device that made the image. {REPAIR}")
    first = ic.HashValue.parse(record.hashes[0])
    method, size = first.method, first.size
    computed = (known or {}).get(f"{method}:{size}")
    actual = HashRecord(computed or tuple(ic.image_hash(f, method, size) for f in frames), frames[0].size,
                        frames[0].mode, record.device)
    if (actual.hashes, actual.size) != (record.hashes, record.size):
        raise BaselineCorrupt(
            f"{hashes}:{line_number(hashes, stem)}: the line for {stem} does not match {image} (line: "
            f"{record.size[0]}x{record.size[1]}, {','.join(record.hashes)[:40]}; image: {actual.size[0]}x"
            f"{actual.size[1]}, {','.join(actual.hashes)[:40]}): one of the two was changed without the "
            f"other (an interrupted update, a hand-copied image); {REPAIR}")
    return actual.hashes


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


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Ctrl-C and SIGTERM held back until the block ends, then delivered: a baseline image and
    its ``hashes.txt`` line are written together or not at all (a SIGKILL can still part them;
    reading names that). Only the main thread can hold signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: held.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for signum in dict.fromkeys(held):
            signal.raise_signal(signum)


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
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:  # a write that failed (a full disk) names no file: name ours
            raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def upsert_hash(path: Path, stem: str, record: HashRecord) -> bool:
    """Set one line of a hashes file under its lock; True when the file changed.

    Other outputs' lines are kept; lines that do not parse (git conflict markers, garbage) go:
    every compare run failed on them naming this update as the repair, and each output's update
    writes its own line again."""
    with _dir_lock(path.parent):
        old = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []
        kept = [ln for ln in old if ln.strip() and ln.split()[0] != stem and _parses(ln)]
        new = sorted([*kept, record.line(stem)])
        if new == old:
            return False
        atomic_write(path, ("\n".join(new) + "\n").encode())
        return True


def remove_hash(path: Path, stem: str) -> bool:
    """Drop one line of a hashes file under its lock (the file goes when it empties)."""
    with _dir_lock(path.parent):
        old = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        kept = [ln for ln in old if ln.strip() and ln.split()[0] != stem]
        if kept == [ln for ln in old if ln.strip()]:
            return False
        if kept:
            atomic_write(path, ("\n".join(kept) + "\n").encode())
        else:
            path.unlink()
        return True


class BaselineStore:
    """The baselines root, the active profile, and which baseline files this process used."""

    def __init__(self, root: Path, profile: str | None = None, device: str | None = None,
                 stack: Stack | None = None, perceptual: bool = True) -> None:
        self.root = Path(root)
        self.profile = profile
        #: the server's device profile (``cpu``, a GPU name), recorded with each baseline made
        self.device = safe_name(device) if device else None
        #: the server's whole stack (device, versions, precision flags), recorded likewise
        self.stack = stack if stack is not None else Stack(self.device)
        #: whether comparisons apply the perceptual criteria (``--comfy-perceptual``)
        self.perceptual = perceptual
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
        for directory in self.read_dirs(key):
            path = directory / name
            if path.is_file():
                return path
            if path.exists():  # a folder (or a socket...) where the baseline file belongs
                raise BaselineCorrupt(
                    f"baseline {path} is a {'directory' if path.is_dir() else 'special file'}, not a "
                    "file; move it away (comfytest never deletes it), then run pytest again "
                    f"({UPDATE_OPTION} to record the baseline)")
        return None

    def case_baselines(self, key: BaselineKey) -> dict[str, list[Path]]:
        """Every baseline of one case, by output stem: files (``<stem>.<ext>``) and
        ``hashes.txt`` lines, in the profile and the common directory (a profile's file
        shadows the common one of the same name)."""
        found: dict[str, list[Path]] = {}
        seen_names: set[str] = set()
        for directory in self.read_dirs(key):
            if not directory.is_dir():
                continue
            for path in sorted(directory.iterdir()):
                if not path.is_file() or path.name.startswith(".") or path.name in seen_names or path.name in (TRACE_FILE, TRACE_PICTURES):
                    continue
                seen_names.add(path.name)
                if path.name == HASHES_FILE:
                    try:
                        stems = list(read_hashes(path))
                    except BaselineCorrupt:
                        stems = []  # the output's own check names the bad line
                    for stem in stems:
                        found.setdefault(stem, []).append(path)
                else:
                    found.setdefault(path.name.split(".", 1)[0], []).append(path)
        return found

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
        if (path.is_file() and path.suffix.lower() in BASELINE_SUFFIXES and not other_profile
                and not any(p.startswith(".") for p in rel.parts)
                and Path(os.path.abspath(path)) not in seen):
            out.append(path)
    return out
