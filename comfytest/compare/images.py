"""Perceptual hashes, distances and pixel metrics between decoded images; pure and pytest-free.

Hashes are written as ``"<method>:<size>:<hex>"`` (``"phash:8:c3d1..."``) so that a hash file
says how each value was made and a comparison between incompatible hashes fails loudly.
``size`` is imagehash's ``hash_size`` (``binbits`` for colorhash).

Images with transparency are flattened onto mid-grey before hashing, so colours hidden under
alpha 0 (which PNG encoders are free to keep or drop) do not move the hash; pixel metrics compare
the flattened colour plus the alpha channel, so a change of transparency still shows.
Only decoded pixels are compared, never file bytes: ComfyUI's PNGs embed the prompt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import reduce

import imagehash
import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageSequence

from comfytest.compare import perceptual as pc
from comfytest.compare import systematic as sy
from comfytest.compare.criteria import NOTABLE_DIFF, Criteria, fmt
from comfytest.errors import ComparisonError, ConfigError

Hasher = Callable[[Image.Image, int], imagehash.ImageHash]

_HASHERS: dict[str, Hasher] = {
    "phash": lambda img, n: imagehash.phash(img, hash_size=n),
    "dhash": lambda img, n: imagehash.dhash(img, hash_size=n),
    "ahash": lambda img, n: imagehash.average_hash(img, hash_size=n),
    "whash": lambda img, n: imagehash.whash(img, hash_size=n),
    "colorhash": lambda img, n: imagehash.colorhash(img, binbits=n),
}
METHODS: tuple[str, ...] = tuple(_HASHERS)
_GREY = (128, 128, 128)
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


@dataclass(frozen=True)
class HashValue:
    """A parsed ``"<method>:<size>:<hex>"`` hash."""

    method: str
    size: int
    bits: int

    @property
    def nbits(self) -> int:
        # colorhash has 14 bins of ``binbits`` bits; the others are square bit matrices
        return 14 * self.size if self.method == "colorhash" else self.size * self.size

    def __str__(self) -> str:
        return f"{self.method}:{self.size}:{self.bits:0{math.ceil(self.nbits / 4)}x}"

    @classmethod
    def parse(cls, text: str) -> HashValue:
        parts = text.strip().split(":")
        if len(parts) != 3 or parts[0] not in _HASHERS or not parts[1].isdigit():
            raise ValueError(f"not a hash of the form '<method>:<size>:<hex>': {text!r}")
        value = cls(parts[0], int(parts[1]), 0)
        if len(parts[2]) != math.ceil(value.nbits / 4):
            raise ValueError(f"hash {text!r} should have {math.ceil(value.nbits / 4)} hex digits")
        try:
            return cls(value.method, value.size, int(parts[2], 16))
        except ValueError:
            raise ValueError(f"hash {text!r} has a value that is not hexadecimal") from None


def check_method(method: str, hash_size: int) -> None:
    """Raise ConfigError for a method/size pair imagehash would reject (or assert on)."""
    if method not in _HASHERS:
        raise ConfigError(f"unknown hash method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "colorhash" and not 1 <= hash_size <= 8:
        raise ConfigError(f"colorhash needs a hash size (binbits) of 1 to 8, not {hash_size}")
    if method != "colorhash" and hash_size < 2:
        raise ConfigError(f"{method} needs a hash size of at least 2, not {hash_size}")
    if method == "whash" and hash_size & (hash_size - 1):
        raise ConfigError(f"whash needs a hash size that is a power of 2, not {hash_size}")


def has_alpha(img: Image.Image) -> bool:
    return img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info)


def _flatten(img: Image.Image) -> Image.Image:
    """Colour composited over mid-grey, as RGB (what a viewer would show on grey)."""
    rgba = img.convert("RGBA")
    out = Image.new("RGB", img.size, _GREY)
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def _hash_source(img: Image.Image) -> Image.Image:
    return _flatten(img) if has_alpha(img) else img


def image_hash(img: Image.Image, method: str = "phash", hash_size: int = 8) -> str:
    """The perceptual hash of one (first) frame as ``"<method>:<size>:<hex>"``."""
    check_method(method, hash_size)
    return _hash_prepared(_hash_source(img), method, hash_size)


def _hash_prepared(img: Image.Image, method: str, hash_size: int) -> str:
    return f"{method}:{hash_size}:{_HASHERS[method](img, hash_size)}"


def hash_distance(a: str, b: str) -> int:
    """Number of differing bits; ComparisonError when the hashes were made differently."""
    ha, hb = HashValue.parse(a), HashValue.parse(b)
    if (ha.method, ha.size) != (hb.method, hb.size):
        raise ComparisonError(
            f"cannot compare a {ha.method}:{ha.size} hash with a {hb.method}:{hb.size} hash; "
            "the baseline was made with another hash method or size"
        )
    return (ha.bits ^ hb.bits).bit_count()


@dataclass(frozen=True)
class PixelMetrics:
    max_abs_diff: int
    mean_abs_diff: float
    psnr: float  # inf when identical


@dataclass(frozen=True)
class ImageComparison:
    """Result of comparing one obtained image with one baseline image (or baseline hash)."""

    method: str
    hash_size: int
    tolerance: int
    distance: int
    obtained_hash: str
    baseline_hash: str
    obtained_size: tuple[int, int]
    baseline_size: tuple[int, int]
    obtained_mode: str
    baseline_mode: str
    compared_as: str  # the mode pixel metrics used: "RGB" or "RGBA"
    metrics: PixelMetrics | None  # None for hash-only comparisons and size mismatches
    #: every limit the comparison must hold; None: the hash tolerance alone
    criteria: Criteria | None = None
    #: perceptual figures (against the baseline's pixels, or its colour signature)
    perceptual: pc.Perceptual | None = None
    #: same stack: how systematic the differences within the max diff are
    systematic: sy.Systematic | None = None
    #: decided without decoding: the server sent the image data the baseline was made from
    same_source: bool = False

    @classmethod
    def of_same_source(cls, hash_value: str, size: tuple[int, int], mode: str, criteria: Criteria, *,
                       pixels: bool) -> ImageComparison:
        """The comparison of an output whose image data is the baseline's source: identical
        pixels (``pixels``: the baseline keeps pixels; a hash-only line has no pixel figures)."""
        value = HashValue.parse(hash_value)
        return cls(value.method, value.size, criteria.hash_limit, 0, hash_value, hash_value, size, size, mode,
                   mode, "RGBA" if mode in _ALPHA_MODES else "RGB",
                   PixelMetrics(0, 0.0, math.inf) if pixels else None, criteria, same_source=True)

    @property
    def failures(self) -> list[str]:
        """The limits this comparison broke, in words (empty when it passed): what kind of
        change first ("colour shift (mean ΔE 6.1)"), then the pixel limits."""
        if self.size_mismatch:
            return [f"size {_wxh(self.obtained_size)} differs from baseline {_wxh(self.baseline_size)}"]
        criteria = self.criteria or Criteria(self.tolerance)
        seen = self.perceptual.changes(criteria.perceptual) \
            if self.perceptual is not None and criteria.perceptual is not None else []
        if self.systematic is not None and criteria.systematic is not None:
            seen += self.systematic.changes(criteria.systematic)
        return seen + criteria.failures(self.distance, self.metrics, self.method)

    @property
    def size_mismatch(self) -> bool:
        return self.obtained_size != self.baseline_size

    @property
    def mode_mismatch(self) -> bool:
        return self.obtained_mode != self.baseline_mode

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def max_abs_diff(self) -> int | None:
        return self.metrics.max_abs_diff if self.metrics else None

    @property
    def mean_abs_diff(self) -> float | None:
        return self.metrics.mean_abs_diff if self.metrics else None

    @property
    def psnr(self) -> float | None:
        return self.metrics.psnr if self.metrics else None

    def describe(self) -> str:
        """One line: what differs and by how much."""
        if self.size_mismatch:
            text = (f"size {_wxh(self.obtained_size)} differs from baseline "
                    f"{_wxh(self.baseline_size)} ({self.method} distance {self.distance})")
        else:
            broken = self.failures
            if broken:
                hash_ok = self.distance <= self.tolerance
                evidence = f"{self.method} distance {self.distance}, " if hash_ok else ""
                text = "; ".join(broken) + f" ({evidence}{_describe_metrics(self.metrics, self.perceptual)})"
                if self.criteria and self.criteria.why:
                    text += f" [{self.criteria.why}]"
            elif self.same_source:
                text = (f"{self.method} distance 0 <= tolerance {self.tolerance} (identical pixels: the "
                        "server sent the image data the baseline was made from)")
            else:
                text = f"{self.method} distance {self.distance} <= tolerance {self.tolerance}"
                text += f" ({_describe_metrics(self.metrics, self.perceptual)})"
                if self.metrics and self.metrics.max_abs_diff > NOTABLE_DIFF and not (
                        self.criteria and self.criteria.checks_pixels):
                    text += (f"; passed on the hash alone although pixels differ by up to "
                             f"{self.metrics.max_abs_diff}")
        if self.mode_mismatch:
            text += (f"; mode {self.obtained_mode} vs baseline {self.baseline_mode} "
                     f"(pixels compared as {self.compared_as})")
        return text


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _describe_metrics(m: PixelMetrics | None, p: pc.Perceptual | None = None) -> str:
    seen = f", {p.describe()}" if p is not None else ""
    if m is None:
        return "hash only" + (f" + colour signature{seen}" if p is not None else "")
    if m.max_abs_diff == 0:
        return "identical pixels"
    return (f"max pixel diff {m.max_abs_diff}, mean {fmt(m.mean_abs_diff)}, "
            f"PSNR {m.psnr:.1f} dB{seen}")


def _normalise_pair(a: Image.Image, b: Image.Image) -> tuple[Image.Image, Image.Image, str]:
    """Both images in one mode for pixel maths: RGBA if either is transparent, else RGB."""
    if has_alpha(a) or has_alpha(b):
        return _flat_rgba(a), _flat_rgba(b), "RGBA"
    return _as_rgb(a), _as_rgb(b), "RGB"


def _as_rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


def _flat_rgba(img: Image.Image) -> Image.Image:
    alpha = img.convert("RGBA").getchannel("A")
    return Image.merge("RGBA", (*_flatten(img).split(), alpha))


def pixel_metrics(a: Image.Image, b: Image.Image) -> PixelMetrics:
    """Exact per-channel statistics of |a - b| for two same-size, same-mode images.

    Pillow's C difference plus a 256-bin histogram per band is ~5x faster than numpy int16
    arithmetic on a 1024x1024 RGB image, and the sums from the histogram are exact.
    """
    hist = ImageChops.difference(a, b).histogram()
    counts = np.asarray(hist, dtype=np.int64).reshape(-1, 256).sum(axis=0)
    values = np.arange(256, dtype=np.int64)
    total = int(counts.sum())
    nonzero = np.flatnonzero(counts)
    mse = float((counts * values * values).sum()) / total
    return PixelMetrics(
        max_abs_diff=int(nonzero[-1]) if nonzero.size else 0,
        mean_abs_diff=float((counts * values).sum()) / total,
        psnr=math.inf if mse == 0 else 10 * math.log10(255 * 255 / mse),
    )


def compare_images(obtained: Image.Image, baseline: Image.Image, *, method: str = "phash",
                   hash_size: int = 8, tolerance: int = 2,
                   criteria: Criteria | None = None, baseline_hash: str | None = None) -> ImageComparison:
    """Hash both images, measure pixel differences, and say whether they match: by the hash
    ``tolerance`` alone, or by every limit of ``criteria`` (whose hash limit then counts).
    ``baseline_hash``: the baseline's hash by this method and size when the caller has it
    already (computed from these pixels), so it is not computed again."""
    check_method(method, hash_size)
    tolerance = criteria.hash_limit if criteria else tolerance
    a, b, compared_as = _normalise_pair(obtained, baseline)
    metrics = pixel_metrics(a, b) if a.size == b.size else None
    # identical pixels hash identically: one hash serves both sides (none when the baseline's is given)
    identical = metrics is not None and metrics.max_abs_diff == 0
    if baseline_hash is not None and identical:
        a_hash = baseline_hash
    else:
        a_hash = _hash_prepared(_hash_source(obtained), method, hash_size)
    b_hash = baseline_hash or (a_hash if identical else _hash_prepared(_hash_source(baseline), method, hash_size))
    seen = None
    if criteria is not None and criteria.perceptual is not None and metrics is not None and not identical:
        seen = pc.measure(obtained, baseline, criteria.perceptual)
    return ImageComparison(
        method, hash_size, tolerance, hash_distance(a_hash, b_hash), a_hash, b_hash,
        obtained.size, baseline.size, obtained.mode, baseline.mode, compared_as, metrics, criteria, seen,
        _systematic(a, b, metrics, criteria),
    )


def _systematic(a: Image.Image, b: Image.Image, metrics: PixelMetrics | None,
                criteria: Criteria | None) -> sy.Systematic | None:
    """Same stack: are differences the max diff lets through noise? (Beyond it, the comparison
    fails anyway and the perceptual figures say how.)"""
    if criteria is None or criteria.systematic is None or metrics is None or metrics.max_abs_diff == 0:
        return None
    if criteria.max_diff is not None and metrics.max_abs_diff > criteria.max_diff:
        return None
    return sy.measure(a, b)


def compare_to_hash(obtained: Image.Image, baseline_hash: str, *, baseline_size: tuple[int, int],
                    baseline_mode: str, method: str = "phash", hash_size: int = 8,
                    tolerance: int = 2, criteria: Criteria | None = None,
                    baseline_colour: str | None = None) -> ImageComparison:
    """Compare with a stored hash only (no baseline pixels, so no pixel metrics), and with the
    stored colour signature when the baseline line has one (lines written before it do not)."""
    a_hash = image_hash(obtained, method, hash_size)
    tolerance = criteria.hash_limit if criteria else tolerance
    compared_as = "RGBA" if has_alpha(obtained) else "RGB"
    seen = None
    if baseline_colour is not None and criteria is not None and criteria.perceptual is not None:
        seen = pc.signature_changes(pc.ColourSignature.of(obtained), pc.ColourSignature.parse(baseline_colour),
                                    obtained.size)
    return ImageComparison(
        method, hash_size, tolerance, hash_distance(a_hash, baseline_hash), a_hash,
        baseline_hash, obtained.size, baseline_size, obtained.mode, baseline_mode,
        compared_as, None, criteria, seen,
    )


def frames(img: Image.Image) -> list[Image.Image]:
    """Every frame of an animated image as an independent copy; ``[img]`` for a still."""
    if getattr(img, "n_frames", 1) <= 1:
        return [img]
    out = [frame.copy() for frame in ImageSequence.Iterator(img)]
    img.seek(0)
    return out


@dataclass(frozen=True)
class AnimationComparison:
    """Frame-by-frame comparison; frames beyond the shorter sequence are not compared."""

    tolerance: int
    obtained_frames: int
    baseline_frames: int
    frames: tuple[ImageComparison, ...]

    @property
    def frame_count_mismatch(self) -> bool:
        return self.obtained_frames != self.baseline_frames

    @property
    def passed(self) -> bool:
        return not self.frame_count_mismatch and all(f.passed for f in self.frames)

    @property
    def distance(self) -> int:
        return max((f.distance for f in self.frames), default=0)

    @property
    def first_failure(self) -> int | None:
        return next((i for i, f in enumerate(self.frames) if not f.passed), None)

    def describe(self) -> str:
        if self.frame_count_mismatch:
            return (f"{self.obtained_frames} frames, baseline has {self.baseline_frames} "
                    f"(largest distance over the first {len(self.frames)}: {self.distance})")
        bad = self.first_failure
        if bad is None:
            return f"all {len(self.frames)} frames match (largest distance {self.distance})"
        fails = sum(not f.passed for f in self.frames)
        return (f"{fails} of {len(self.frames)} frames differ; frame {bad}: "
                f"{self.frames[bad].describe()}")


Frames = Image.Image | Sequence[Image.Image]


def _frame_list(value: Frames) -> list[Image.Image]:
    return frames(value) if isinstance(value, Image.Image) else list(value)


def compare_animations(obtained: Frames, baseline: Frames, *, method: str = "phash",
                       hash_size: int = 8, tolerance: int = 2, criteria: Criteria | None = None,
                       baseline_hashes: Sequence[str] | None = None) -> AnimationComparison:
    """compare_images on each pair of frames; a differing frame count fails."""
    a, b = _frame_list(obtained), _frame_list(baseline)
    known = list(baseline_hashes) if baseline_hashes is not None and len(baseline_hashes) == len(b) else [None] * len(b)
    tolerance = criteria.hash_limit if criteria else tolerance
    return AnimationComparison(tolerance, len(a), len(b), tuple(
        compare_images(x, y, method=method, hash_size=hash_size, tolerance=tolerance,
                       criteria=criteria, baseline_hash=h)
        for x, y, h in zip(a, b, known)
    ))


def _hot_luts() -> tuple[list[int], list[int], list[int]]:
    """black -> red -> yellow -> white, so small differences stay visible on dark."""
    red = [min(255, 3 * v) for v in range(256)]
    green = [min(255, max(0, 3 * v - 255)) for v in range(256)]
    blue = [min(255, max(0, 3 * v - 510)) for v in range(256)]
    return red, green, blue


def diff_heatmap(a: Image.Image, b: Image.Image) -> Image.Image:
    """|a - b| (largest channel) stretched to full range and colour-mapped, RGB.

    Different sizes give a heatmap of the larger extent; area only one image covers is hot.
    """
    pa, pb, _ = _normalise_pair(a, b)
    w, h = min(a.width, b.width), min(a.height, b.height)
    diff = ImageChops.difference(pa.crop((0, 0, w, h)), pb.crop((0, 0, w, h)))
    grey = reduce(ImageChops.lighter, diff.split())
    canvas = Image.new("L", (max(a.width, b.width), max(a.height, b.height)), 255)
    canvas.paste(grey, (0, 0))
    peak = canvas.getextrema()[1]
    assert isinstance(peak, (int, float))
    # stretch so that even +-1 noise becomes visible; a zero diff stays black
    stretched = canvas.point([min(255, v * 255 // int(peak)) for v in range(256)]) \
        if peak else canvas
    return Image.merge("RGB", tuple(stretched.point(lut) for lut in _hot_luts()))


def side_by_side(baseline: Image.Image, obtained: Image.Image, diff: Image.Image) -> Image.Image:
    """The three images in a row, each under a small label, on dark grey."""
    panels = [("baseline", baseline), ("obtained", obtained), ("diff", diff)]
    font = ImageFont.load_default()
    label_h, gap = 14, 4
    width = sum(img.width for _, img in panels) + gap * (len(panels) + 1)
    height = max(img.height for _, img in panels) + label_h + 2 * gap
    sheet = Image.new("RGB", (width, height), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    x = gap
    for label, img in panels:
        draw.text((x, gap // 2), label, fill=(230, 230, 230), font=font)
        sheet.paste(_flatten(img) if has_alpha(img) else _as_rgb(img), (x, label_h + gap))
        x += img.width + gap
    return sheet
