"""Same stack: is a small pixel difference noise, or a systematic change? (pure, numpy/scipy)

On the stack that made a baseline, the strict criteria let each value move by up to
``SAME_DEVICE_MAX_DIFF`` levels: the rounding that thread counts, CPU kernels and a GPU's
non-deterministic reductions cause. That noise may be sparse or dense, but it is zero-mean and
has nothing to do with the picture. A regression that moves no value by more than that limit (a
nearly black image brightened by 5 %, blurred or sharpened; a grey image's hue turned) is
neither: its values move one way, or in step with the picture's own detail or colour.
``measure`` fits the signed difference, by least squares, to such explanations:

* a shift of each channel by a constant, or by a gain on its smoothed values (brighter,
  darker, a colour cast);
* the fine detail of the baseline's grey level (its high-pass; a negative fit is a blur, a
  positive one sharpening);
* the baseline's CIELAB chroma turned by 90° (a hue turn), or scaled (more or less saturated);

and an explanation counts when it is **significant** (8 standard errors from 0; the
benchmark's noise reaches 6.3 at most), **large enough to matter** and **spread over the
picture** (``SystematicLimits``). The standard errors are clustered by tiles, so noise that
comes in patches widens them instead of reading as a change; the floors keep a tiny but
significant shift of a large image from counting. Values at 0-1 or 254-255 in the baseline are
left out: noise there can only move one way. ``benchmarks/bench_detection.py`` measured both sides (docs/baselines.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from comfytest.compare.perceptual import lab

F = np.ndarray
_CHANNELS = "RGB"
TILE = 32  # the standard errors' clusters: squares of this many pixels
PER_SIDE = 8  # ... or smaller, so that a small image has at least this many per side
#: larger images are measured on bands of tile rows spread evenly over them, this many pixels in
#: all (the cost of a 512x512 image; a systematic change shows in every band)
MAX_PIXELS = 512 * 512


@dataclass(frozen=True)
class SystematicLimits:
    """When a fit counts as a change: ``z`` standard errors from 0 and at least the floor."""

    z: float = 8.0
    mean_levels: float = 0.1  # mean shift of a channel, in levels (0..255)
    gain_pct: float = 1.0  # growth of a channel's values, per cent
    detail_pct: float = 3.0  # change of the fine detail, per cent
    hue_deg: float = 1.0  # hue turn, degrees
    saturation_pct: float = 3.0  # change of chroma, per cent
    #: a fit resting on fewer tiles (the colour of one small spot) has too few samples of the
    #: noise for its standard error to hold
    tiles: float = 8.0


DEFAULT_SYSTEMATIC = SystematicLimits()


@dataclass(frozen=True)
class Fit:
    """One explanation's least-squares fit: its size and how many standard errors from 0."""

    value: float
    z: float
    #: over how many tiles' worth of the picture the fit rests (its leverage, spread evenly)
    tiles: float = 0.0

    def counts(self, floor: float, limits: SystematicLimits) -> bool:
        return abs(self.value) >= floor and abs(self.z) >= limits.z and self.tiles >= limits.tiles


NO_FIT = Fit(0.0, 0.0)


@dataclass(frozen=True)
class Systematic:
    """The fits of one same-stack comparison (obtained against baseline)."""

    mean: tuple[Fit, Fit, Fit]  # levels added to each channel R, G, B
    gain: tuple[Fit, Fit, Fit]  # per cent each channel's values grew by
    detail: Fit  # per cent of the baseline's fine detail (of its grey level)
    hue: Fit  # degrees
    saturation: Fit = NO_FIT  # per cent of the baseline's chroma

    def broken(self, limits: SystematicLimits = DEFAULT_SYSTEMATIC) -> list[str]:
        """Which explanations count: ``mean``, ``gain``, ``detail``, ``hue``, ``saturation``."""
        checks = {
            "mean": any(f.counts(limits.mean_levels, limits) for f in self.mean),
            "gain": any(f.counts(limits.gain_pct, limits) for f in self.gain),
            "detail": self.detail.counts(limits.detail_pct, limits),
            "hue": self.hue.counts(limits.hue_deg, limits),
            "saturation": self.saturation.counts(limits.saturation_pct, limits),
        }
        return [name for name, hit in checks.items() if hit]

    def changes(self, limits: SystematicLimits = DEFAULT_SYSTEMATIC) -> list[str]:
        """What changed, in words; empty when the difference looks like noise."""
        broken = self.broken(limits)
        if not broken:
            return []
        words = {}  # explanation -> words
        tone = "gain" if "gain" in broken else "mean" if "mean" in broken else None
        if tone is not None:
            fits = self.gain if tone == "gain" else self.mean
            words[tone] = _tone_words(fits, "%", "% of each value") if tone == "gain" else \
                _tone_words(fits, "", "levels on average")
        if "detail" in broken:
            verb = "sharpened" if self.detail.value > 0 else "blurred"
            # a fit past -100 % is a blur wider than the detail band: "all of it gone"
            words["detail"] = f"{verb} (fine detail {max(self.detail.value, -100):+.0f} %)"
        if "hue" in broken:
            words["hue"] = f"hue turned {self.hue.value:+.1f}°"
        if "saturation" in broken and not (tone and _follows_tone(self.saturation, self._fits(tone))):
            more = "more" if self.saturation.value > 0 else "less"
            words["saturation"] = f"{more} saturated ({self.saturation.value:+.1f} %)"
        strength = {name: max(abs(f.z) for f in self._fits(name)) for name in words}
        order = sorted(words, key=lambda name: -strength[name])  # the strongest first
        first = f"{words[order[0]]}: small but systematic, not noise (z {strength[order[0]]:.0f})"
        return [first] + [words[name] for name in order[1:]]

    def _fits(self, name: str) -> tuple[Fit, ...]:
        return {"mean": self.mean, "gain": self.gain, "detail": (self.detail,), "hue": (self.hue,),
                "saturation": (self.saturation,)}[name]


def _follows_tone(saturation: Fit, tone: tuple[Fit, ...]) -> bool:
    """A brighter dark colour is also more saturated in CIELAB (and a darker one less): a
    saturation change of the tone's sign, with every channel moving that way, is the tone's."""
    return len({math.copysign(1, f.value) for f in (saturation, *tone)}) == 1 and bool(tone[0].value)


def _tone_words(fits: tuple[Fit, Fit, Fit], unit: str, what: str) -> str:
    """``brighter by 0.24 levels on average (R +0.30, ...)``, or a colour cast when the
    channels moved different ways."""
    each = ", ".join(f"{c} {f.value:+.2f}{unit}" for c, f in zip(_CHANNELS, fits))
    if len({math.copysign(1, f.value) for f in fits}) > 1:
        return f"colour cast ({each}; {what})"
    average = sum(f.value for f in fits) / 3
    return f"{'brighter' if average > 0 else 'darker'} by {abs(average):.2f} {what} ({each})"


def _fit(d: F, x: F, tiles: F) -> Fit:
    """Least squares d ≈ value·x (no intercept) and the value's z against noise, with the
    standard error clustered by ``tiles`` (each value's tile number): noise correlated within a
    tile (blotches of ±1 where a sampler amplified a rounding difference) widens the error
    instead of reading as a systematic change."""
    sxx = float(np.dot(x, x))
    count = int(tiles.max()) + 1 if tiles.size else 0
    if d.size < 3 or sxx <= 1e-12 or count < 2:
        return NO_FIT
    value = float(np.dot(d, x)) / sxx
    per_tile = np.bincount(tiles, weights=(d - value * x) * x, minlength=count)
    leverage = np.bincount(tiles, weights=x * x, minlength=count)
    effective = sxx * sxx / float(np.dot(leverage, leverage))
    spread = float(np.dot(per_tile, per_tile)) * count / (count - 1)
    if spread <= 0:  # an exact fit: the difference is nothing but this explanation
        return Fit(value, math.inf if value else 0.0, effective)
    return Fit(value, value * sxx / math.sqrt(spread), effective)


def tile_numbers(height: int, width: int) -> F:
    """Each pixel's tile: squares of ``TILE`` pixels (smaller on small images, 8 per side at least)."""
    side = max(2, min(TILE, min(height, width) // PER_SIDE))
    ys, xs = np.mgrid[0:height, 0:width]
    out: F = ((ys // side) * (-(-width // side)) + xs // side).astype(np.int32)
    return out


def measure(obtained: Image.Image, baseline: Image.Image) -> Systematic:
    """The fits of two same-size images (RGB channels; alpha is the pixel limits' concern)."""
    a, b = _bands(np.asarray(obtained.convert("RGB")), np.asarray(baseline.convert("RGB")))
    d = a - b
    free = (b >= 2) & (b <= 253)  # where noise can move a value both ways
    tiles = np.repeat(tile_numbers(*b.shape[:2])[..., None], 3, axis=-1)
    mean = _per_channel(d, np.ones_like(b), free, tiles)
    gain = _per_channel(d, _smooth(b, 2.0), free, tiles)  # smooth: a blur would read as a loss of gain
    every = free.all(-1)
    # detail of the grey level: a desaturation pulls each channel's detail toward it, a blur does not
    grey = b.mean(-1)
    high = grey - ndimage.gaussian_filter(grey, 0.7, mode="nearest")
    detail = _fit(d.mean(-1)[every], high[every], tiles[..., 0][every])
    hue, saturation = _chroma(a[every], b[every], tiles[..., 0][every])
    return Systematic(mean, (_scaled(gain[0], 100), _scaled(gain[1], 100), _scaled(gain[2], 100)),
                      _scaled(detail, 100), hue, saturation)


def _bands(a: F, b: F) -> tuple[F, F]:
    """Both images as float32, large ones cut to every k-th band of ``TILE`` rows, stacked."""
    height, width = b.shape[:2]
    step = math.ceil(height * width / MAX_PIXELS)
    if step > 1 and height > TILE:
        rows = np.concatenate([np.arange(top, min(top + TILE, height)) for top in range(0, height, TILE * step)])
        a, b = a[rows], b[rows]
    return a.astype(np.float32), b.astype(np.float32)


def _smooth(x: F, sigma: float) -> F:
    return np.stack([ndimage.gaussian_filter(x[..., c], sigma, mode="nearest") for c in range(3)], -1)


def _per_channel(d: F, x: F, free: F, tiles: F) -> tuple[Fit, Fit, Fit]:
    r, g, b = (_fit(d[..., c][free[..., c]], x[..., c][free[..., c]], tiles[..., c][free[..., c]]) for c in range(3))
    return r, g, b


def _scaled(fit: Fit, factor: float) -> Fit:
    return Fit(fit.value * factor, fit.z, fit.tiles)


def _chroma(a: F, b: F, tiles: F) -> tuple[Fit, Fit]:
    """Hue and saturation: a turn of the chroma plane by t moves (a*, b*) by about t·(-b*, a*);
    a saturation change by s, by s·(a*, b*)."""
    la, lb = lab(a), lab(b)
    moved = np.concatenate([la[:, 1] - lb[:, 1], la[:, 2] - lb[:, 2]])
    both = np.concatenate([tiles, tiles])
    turn = _fit(moved, np.concatenate([-lb[:, 2], lb[:, 1]]), both)
    scale = _fit(moved, np.concatenate([lb[:, 1], lb[:, 2]]), both)
    return _scaled(turn, math.degrees(1)), _scaled(scale, 100)


__all__ = ["DEFAULT_SYSTEMATIC", "Fit", "Systematic", "SystematicLimits", "measure"]
