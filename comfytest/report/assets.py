"""The files report.html shows, and how the page refers to them.

A passing image output is shown as a small JPEG thumbnail written beside the case's other
results as the test finishes (from the image already decoded for the comparison: nothing is
read back later); its full-size obtained copy is kept only with ``--comfy-keep-passed``. A
failing one keeps every artefact at full size (written by the baseline lifecycle).

The page refers to files in one of two ways (``--comfy-html``): ``linked`` (default) by a path
relative to the report's folder, so the page stays small however many tests there are and the
results folder opens as it is; ``self-contained`` embeds each file as a ``data:`` URI, one file
to attach anywhere (fine for a handful of failures, large for a big suite).
"""

from __future__ import annotations

import base64
import math
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from PIL import Image

HTML_MODES = ("linked", "self-contained")
#: the longest side of a passing output's thumbnail, in pixels
THUMB_PX = 128
THUMB_SUFFIX = ".thumb.jpg"
#: larger files are never embedded (self-contained mode links them instead)
MAX_EMBED_BYTES = 16 * 1024 * 1024


def write_thumbnail(image: Image.Image, folder: Path, stem: str) -> Path:
    """``folder/<stem>.thumb.jpg``: the image (its first frame) shrunk by a whole factor to at
    most ``THUMB_PX`` a side (a box filter: ~0.05 ms for 256x256, where a resampling resize takes
    ~0.4 ms), or a small one enlarged by a whole factor with crisp pixels to at least
    ``THUMB_PX / 2``; a few KB of JPEG."""
    alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    # a converted copy of the first frame (any mode, 16-bit too); the caller's image stays as it was
    thumb = image.convert("RGBA" if alpha else "RGB")
    longest = max(thumb.size)
    if longest > THUMB_PX:
        thumb = thumb.reduce(math.ceil(longest / THUMB_PX))
    elif 0 < longest < THUMB_PX // 2:
        factor = THUMB_PX // longest
        thumb = thumb.resize((thumb.width * factor, thumb.height * factor), Image.Resampling.NEAREST)
    if alpha:
        thumb = _flatten(thumb)
    folder.mkdir(parents=True, exist_ok=True)
    path = thumbnail_path(folder, stem)
    thumb.save(path, format="JPEG", quality=80)
    return path


def thumbnail_path(folder: Path, stem: str) -> Path:
    """Where ``write_thumbnail`` writes the thumbnail of output ``stem``."""
    return folder / f"{stem}{THUMB_SUFFIX}"


def _flatten(rgba: Image.Image) -> Image.Image:
    """RGB for JPEG: transparency over white."""
    canvas = Image.new("RGB", rgba.size, (255, 255, 255))
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas


def save_obtained(image: Image.Image, folder: Path, stem: str) -> Path:
    """``--comfy-keep-passed``: the full obtained image of a passing output, as PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.obtained.png"
    frames = getattr(image, "n_frames", 1)
    image.save(path, format="PNG", **({"save_all": True} if frames > 1 else {}))
    return path


@dataclass(frozen=True)
class Assets:
    """How the page at ``base_dir/report.html`` refers to a file: a relative URL (linked) or
    a data URI (self-contained); relative paths in the document are taken from ``base_dir``."""

    base_dir: Path
    embed: bool = False

    def full(self, path: str | Path) -> Path:
        p = Path(str(path))
        return p if p.is_absolute() else self.base_dir / p

    def src(self, path: str | Path, kinds: tuple[str, ...] = ("image/",)) -> str | None:
        """The page's reference to the file; None when it is missing, unreadable or not of ``kinds``."""
        full = self.full(path)
        mime = mimetypes.guess_type(full.name)[0] or ""
        if not mime.startswith(kinds):
            return None
        try:
            size = full.stat().st_size  # one call: missing files show "not available"
            if not self.embed or size > MAX_EMBED_BYTES:
                return relative_url(full, self.base_dir)
            data = full.read_bytes()
        except OSError:
            return None
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"

    def link(self, path: str | Path) -> str:
        """A relative URL of the file (for ``<a href>``), whether or not images are embedded."""
        return relative_url(self.full(path), self.base_dir)

    def width(self, path: str | Path) -> int | None:
        """The image's width from its header (nothing decoded); None when unreadable."""
        try:
            with Image.open(self.full(path)) as img:
                return int(img.width)
        except (OSError, ValueError, Image.DecompressionBombError):
            return None


def relative_url(path: Path, base_dir: Path) -> str:
    """``path`` relative to ``base_dir`` as a URL path (``../baselines/a/9_0.png``); an absolute
    ``file:`` URL when no relative path exists (another drive). Lexical (no file system calls:
    a thousand thumbnails), so both are taken as given, links not followed."""
    full = os.path.abspath(path)
    try:
        rel = os.path.relpath(full, os.path.abspath(base_dir))
    except ValueError:
        return Path(full).as_uri()
    return quote(Path(rel).as_posix())
