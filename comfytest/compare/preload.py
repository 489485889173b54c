"""A case's baseline images read, decoded and hashed on a thread while the case runs (issue 26).

Decoding a baseline PNG and hashing it to check its ``hashes.txt`` line is most of what the
comparison of an unchanged output costs (~2 ms at 256x256, tens of ms at 1024x1024). Started
once the server has accepted the prompt (started before the POST, it slowed the POST by ~4 ms),
that work overlaps the server's execution, when the test's own thread only waits for events.

What the thread read is used only for the file it read, unchanged since (same inode, size and
modification time, checked when it is taken), and only when it decoded without an error;
anything else (a file changed meanwhile, a damaged PNG, an unreadable ``hashes.txt``) is read
again on the caller's thread exactly as without preloading, so results, failures and their
messages do not depend on it. One case is held at a time (``clear`` at its end): memory does
not grow with the suite.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from comfytest.compare import images as ic
from comfytest.compare.store import HASHES_FILE, TRACE_PICTURES, HashRecord, file_digest, read_hashes

#: pixels (all frames of all files) one case preloads at most; beyond, the caller decodes
MAX_PIXELS = 1 << 25

Stamp = tuple[int, int, int]


def stamp(path: Path) -> Stamp:
    """What tells one version of a file from another: inode, size, modification time (ns)."""
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def read_frames(path: Path, max_pixels: int | None = None, data: bytes | None = None) -> list[Image.Image]:
    """A baseline image's frames, decoded (Pillow's errors raised as they are); with
    ``max_pixels``, ``TooLarge`` before anything is decoded when its frames hold more.
    ``data``: the file's bytes, when the caller read them already."""
    with Image.open(path if data is None else io.BytesIO(data)) as img:
        if max_pixels is not None and img.width * img.height * getattr(img, "n_frames", 1) > max_pixels:
            raise TooLarge(path)
        img.load()
        return [f.copy() for f in ic.frames(img)]


class TooLarge(Exception):
    """More pixels than a preload may hold."""


@dataclass(frozen=True)
class Preloaded:
    """One baseline image as the thread found it."""

    stamp: Stamp
    frames: list[Image.Image]
    #: ``store.file_digest`` of the file's bytes (what ``hashes.txt``'s ``file=`` is checked against)
    digest: str
    #: the frames' hashes by the method and size of the file's ``hashes.txt`` line, keyed
    #: ``"<method>:<size>"``; empty when the line could not be read
    hashes: Mapping[str, tuple[str, ...]]


class Preloads:
    """One worker thread that reads the baseline images of the case about to run."""

    def __init__(self, max_pixels: int = MAX_PIXELS) -> None:
        self.max_pixels = max_pixels
        self._pool: ThreadPoolExecutor | None = None
        self._case: Future[dict[Path, Preloaded]] | None = None

    def start(self, folders: Sequence[Path]) -> None:
        """Read the PNGs of a case's baseline folders (most specific first: a file shadows one
        of the same name further on), replacing what an earlier case left."""
        self.clear()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="comfytest-preload")
        self._case = self._pool.submit(_read_case, tuple(folders), self.max_pixels)

    def take(self, path: Path) -> Preloaded | None:
        """What the thread read of ``path`` (waiting for it), if the file is still that one."""
        case = self._case
        if case is None:
            return None
        try:
            found = case.result().get(path)
            return found if found is not None and stamp(path) == found.stamp else None
        except Exception:  # whatever went wrong, the caller reads the file itself
            return None

    def clear(self) -> None:
        """Forget the current case (its images are released)."""
        if self._case is not None:
            self._case.cancel()
            self._case = None

    def close(self) -> None:
        self.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _read_case(folders: tuple[Path, ...], max_pixels: int) -> dict[Path, Preloaded]:
    found: dict[Path, Preloaded] = {}
    names: set[str] = set()
    budget = max_pixels
    for folder in folders:
        try:
            entries = sorted(e.name for e in os.scandir(folder) if e.name.endswith(".png"))
        except OSError:
            continue
        lines: dict[str, HashRecord] | None = None
        for name in entries:
            if name in names or name.startswith(".") or name == TRACE_PICTURES:
                continue
            names.add(name)
            path = folder / name
            try:
                before = stamp(path)
                data = path.read_bytes()
                frames = read_frames(path, budget, data)
            except TooLarge:
                return found  # the caller decodes the rest
            except Exception:  # the caller reads it again and says what is wrong
                continue
            budget -= sum(f.width * f.height for f in frames)
            if lines is None:
                try:
                    lines = read_hashes(folder / HASHES_FILE)
                except Exception:  # the caller's read raises the readable error
                    lines = {}
            try:
                if stamp(path) != before:
                    continue
                found[path] = Preloaded(before, frames, file_digest(data),
                                        _hashes(frames, lines.get(name[:-len(".png")])))
            except Exception:  # the caller reads it again
                continue
    return found


def _hashes(frames: list[Image.Image], record: HashRecord | None) -> dict[str, tuple[str, ...]]:
    """The frames' hashes the way ``store.check_line`` computes them for ``record``."""
    if record is None or not record.hashes:
        return {}
    first = ic.HashValue.parse(record.hashes[0])
    return {f"{first.method}:{first.size}": tuple(ic.image_hash(f, first.method, first.size) for f in frames)}


__all__ = ["MAX_PIXELS", "Preloaded", "Preloads", "read_frames", "stamp"]
