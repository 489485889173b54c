"""What an image comparison must satisfy: a hash tolerance plus pixel-level limits (pure).

``Criteria`` is one frozen value; ``Criteria.failures(distance, metrics)`` says which limits a
comparison broke, in words. A comparison passes only when every configured limit holds.
Per-frame comparisons (animations, video) apply the same value to each frame.

* ``tolerance``: perceptual-hash distance in bits (tolerant of GPU drift between devices);
* ``max_diff``: the largest per-channel difference (0..255); 0 means "exact";
* ``mean_diff``: the mean per-channel difference;
* ``min_psnr``: the lowest PSNR in dB (identical images have infinite PSNR).

* ``perceptual``: the perceptual limits (colour, tone, blur, geometry, changed regions; see
  ``perceptual``), which tell device drift from a change a person would see.

The defaults (``for_baseline``) depend on what made the baseline. On the same stack (device,
torch, ComfyUI, precision flags) a node pack's output is normally bit-exact (or within ±1 of
rounding across thread counts), so the built-in ``SAME_DEVICE_MAX_DIFF`` applies on top of the
perceptual limits: it catches a swapped channel order, a blur kernel off by two, a one-pixel
shift; and the differences it lets through must look like noise (``systematic``): a change
that moves no value by more than 4 levels but moves them all one way, or in step with the
picture's detail or colour, is a change. On any other stack the hash tolerance and the perceptual limits apply, plus pixel limits
the user configured (those apply everywhere). ``why`` says which, for messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol

from comfytest.compare.perceptual import DEFAULT_LIMITS, PerceptualLimits
from comfytest.compare.systematic import DEFAULT_SYSTEMATIC, SystematicLimits
from comfytest.errors import ConfigError

#: the largest channel difference allowed by default when the baseline's device is this one
SAME_DEVICE_MAX_DIFF = 4
#: a passing comparison whose pixels differ by more than this says so in its message
NOTABLE_DIFF = 16
#: where the perceptual criteria compare the baseline's pixels, the hash may move this many times
#: the tolerance: there it is a backstop (phash flips bits on noise over dark or smooth content,
#: and what it would see, they see); chosen by benchmarks/bench_detection.py (docs/baselines.md).
#: A tolerance of 0 stays 0.
HASH_BACKSTOP = 4


class Metrics(Protocol):
    @property
    def max_abs_diff(self) -> int: ...

    @property
    def mean_abs_diff(self) -> float: ...

    @property
    def psnr(self) -> float: ...


@dataclass(frozen=True)
class Criteria:
    """Limits a comparison must stay within; ``None`` means "not checked"."""

    tolerance: int = 2
    max_diff: int | None = None
    mean_diff: float | None = None
    min_psnr: float | None = None
    perceptual: PerceptualLimits | None = None
    #: same stack, built-in max diff: differences within it must not be systematic (see systematic)
    systematic: SystematicLimits | None = None
    #: which criteria and why ("baseline: cpu, torch 2.4.1; this run: torch 2.5.0 — perceptual criteria")
    why: str | None = None
    #: the hash limit is ``tolerance`` times this (``HASH_BACKSTOP`` where pixels are compared)
    hash_factor: int = 1

    def __post_init__(self) -> None:
        # the settings parsers refuse these with the option or key named; this guards the
        # library's own callers: a NaN limit compares false with everything (passes anything)
        for name in ("tolerance", "max_diff", "mean_diff", "min_psnr", "hash_factor"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ConfigError(f"comparison limit {name} = {value!r}: expected a finite number >= 0")

    @property
    def hash_limit(self) -> int:
        """The largest hash distance that passes."""
        return self.tolerance * self.hash_factor

    @property
    def exact(self) -> bool:
        return self.max_diff == 0

    @property
    def checks_pixels(self) -> bool:
        return self.max_diff is not None or self.mean_diff is not None or self.min_psnr is not None

    def failures(self, distance: int, metrics: Metrics | None, method: str = "hash") -> list[str]:
        """The limits broken, e.g. ``["max pixel diff 35 > 4"]``; empty when all hold.

        Without pixel metrics (hash-only baselines) only the hash tolerance is checked."""
        broken = []
        if distance > self.hash_limit:
            slack = f" ({self.hash_factor} × {self.tolerance}: a backstop where the baseline's pixels are compared)" \
                if self.hash_factor != 1 else ""
            broken.append(f"{method} distance {distance} > tolerance {self.hash_limit}{slack}")
        if metrics is None:
            return broken
        if self.max_diff is not None and metrics.max_abs_diff > self.max_diff:
            broken.append("pixels differ (exact match required)" if self.exact else
                          f"max pixel diff {metrics.max_abs_diff} > {self.max_diff}")
        if self.mean_diff is not None and metrics.mean_abs_diff > self.mean_diff:
            broken.append(f"mean pixel diff {fmt(metrics.mean_abs_diff)} > {fmt(self.mean_diff)}")
        if self.min_psnr is not None and metrics.psnr < self.min_psnr:
            broken.append(f"PSNR {fmt(metrics.psnr)} dB < {fmt(self.min_psnr)} dB")
        return broken

    def describe(self) -> str:
        """``tolerance 2, max diff 4``: the limits in force, for messages and reports."""
        parts = [f"tolerance {self.tolerance}" + (f" × {self.hash_factor}" if self.hash_factor != 1 else "")]
        if self.exact:
            parts.append("exact pixels")
        elif self.max_diff is not None:
            parts.append(f"max diff {self.max_diff}")
        if self.systematic is not None and not self.exact:
            parts.append("no systematic change")
        if self.mean_diff is not None:
            parts.append(f"mean diff {fmt(self.mean_diff)}")
        if self.min_psnr is not None:
            parts.append(f"min PSNR {fmt(self.min_psnr)} dB")
        if self.perceptual is not None:
            parts.append("perceptual limits")
        return ", ".join(parts) + (f" ({self.why})" if self.why else "")


@dataclass(frozen=True)
class PixelLimits:
    """What the user configured (CLI, ini, settings file); ``None``: not configured."""

    max_diff: int | None = None
    mean_diff: float | None = None
    min_psnr: float | None = None

    def over(self, low: PixelLimits) -> PixelLimits:
        """These limits, with what they leave unset taken from ``low``."""
        return PixelLimits(
            self.max_diff if self.max_diff is not None else low.max_diff,
            self.mean_diff if self.mean_diff is not None else low.mean_diff,
            self.min_psnr if self.min_psnr is not None else low.min_psnr,
        )


NO_LIMITS = PixelLimits()


def for_baseline(tolerance: int, configured: PixelLimits, same_device: bool, why: str | None = None,
                 perceptual: PerceptualLimits | None = DEFAULT_LIMITS, pixels: bool = True) -> Criteria:
    """The criteria for one comparison: configured and perceptual limits always apply; the
    built-in pixel default (max diff 4, and no systematic change within it) only when the
    baseline was made on this stack (``same_device``) and no max diff is configured. Where the
    perceptual limits judge the baseline's ``pixels`` (not a hash-only line), the hash limit is
    ``HASH_BACKSTOP`` times the tolerance."""
    limits, systematic = configured, None
    if same_device and limits.max_diff is None:
        limits, systematic = replace(limits, max_diff=SAME_DEVICE_MAX_DIFF), DEFAULT_SYSTEMATIC
    factor = HASH_BACKSTOP if perceptual is not None and pixels else 1
    return Criteria(tolerance, limits.max_diff, limits.mean_diff, limits.min_psnr, perceptual, systematic, why,
                    factor)


def suggest_max_diff(observed: int) -> int:
    """Calibration: 0 (exact) when runs never differ, else the spread plus half again, at least +1."""
    return 0 if observed == 0 else observed + max(1, math.ceil(observed / 2))


def fmt(value: float) -> str:
    """Numbers people read: 3 significant digits, no float noise (``0.0012``, ``34.2``, ``inf``)."""
    if math.isinf(value):
        return "inf"
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


__all__ = ["HASH_BACKSTOP", "NOTABLE_DIFF", "NO_LIMITS", "SAME_DEVICE_MAX_DIFF", "Criteria", "PixelLimits", "fmt", "for_baseline",
           "suggest_max_diff"]
