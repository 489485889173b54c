"""Pixel criteria beside the hash: the image rows of issue 14's table, made with numpy on a
seeded image, fail with the same-device defaults; rounding noise and other devices pass."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from comfytest.compare.criteria import (
    HASH_BACKSTOP,
    SAME_DEVICE_MAX_DIFF,
    Criteria,
    PixelLimits,
    fmt,
    for_baseline,
    suggest_max_diff,
)
from comfytest.compare.images import compare_images
from comfytest.compare.perceptual import DEFAULT_LIMITS
from comfytest.nodepack import noise_pixels

BASE = (noise_pixels(64, 64, 7, 1)[0] * 255).round().astype(np.uint8)


def _img(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "RGB")


def _grey(weights: tuple[float, float, float]) -> Image.Image:
    grey = (BASE.astype(np.float32) * np.asarray(weights)).sum(axis=2).round()
    return _img(np.repeat(grey[:, :, None], 3, axis=2))


def _shadow(offset: int) -> Image.Image:
    out = BASE.copy()
    out[20:28, 10 + offset:40 + offset] = 10  # a dark shadow bar under a label
    return _img(out)


CHANGES = {
    "channels in BGR order": (_img(BASE), _img(BASE[:, :, ::-1])),
    "blur kernel off by two": (_img(BASE).filter(ImageFilter.BoxBlur(1)), _img(BASE).filter(ImageFilter.BoxBlur(2))),
    "desaturate weights in BGR order": (_grey((0.299, 0.587, 0.114)), _grey((0.114, 0.587, 0.299))),
    "shadow moved 1 px": (_shadow(0), _shadow(1)),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_each_image_change_fails_with_the_same_device_defaults(change: str) -> None:
    baseline, obtained = CHANGES[change]
    cmp = compare_images(obtained, baseline, criteria=for_baseline(2, PixelLimits(), same_device=True))
    assert not cmp.passed
    assert f"max pixel diff {cmp.max_abs_diff} > {SAME_DEVICE_MAX_DIFF}" in cmp.describe()


def test_rounding_noise_passes_and_another_device_is_judged_by_the_hash() -> None:
    noisy = BASE.astype(np.int16) + np.random.default_rng(0).integers(-1, 2, BASE.shape)
    same = compare_images(_img(noisy), _img(BASE), criteria=for_baseline(2, PixelLimits(), same_device=True))
    assert same.passed and same.max_abs_diff == 1
    baseline, obtained = CHANGES["shadow moved 1 px"]
    other = compare_images(obtained, baseline, criteria=for_baseline(2, PixelLimits(), same_device=False))
    assert other.passed and other.criteria == Criteria(2, perceptual=DEFAULT_LIMITS, hash_factor=HASH_BACKSTOP)
    assert f"passed on the hash alone although pixels differ by up to {other.max_abs_diff}" in other.describe()


def test_configured_limits_apply_on_every_device_and_every_limit_must_hold() -> None:
    baseline, obtained = CHANGES["channels in BGR order"]
    limits = PixelLimits(max_diff=255, mean_diff=5.0, min_psnr=30.0)
    cmp = compare_images(obtained, baseline, criteria=for_baseline(64, limits, same_device=False))
    text = cmp.describe()
    assert not cmp.passed and "max pixel diff" not in text.split("(")[0]
    assert "mean pixel diff" in text and "dB < 30 dB" in text
    exact = compare_images(obtained, baseline, criteria=Criteria(64, max_diff=0))
    assert exact.failures == ["pixels differ (exact match required)"]


def test_the_hash_is_a_backstop_where_the_perceptual_criteria_compare_pixels() -> None:
    assert for_baseline(2, PixelLimits(), same_device=False).hash_limit == 2 * HASH_BACKSTOP
    assert for_baseline(2, PixelLimits(), same_device=True).hash_limit == 2 * HASH_BACKSTOP
    assert for_baseline(2, PixelLimits(), same_device=False, pixels=False).hash_limit == 2  # hash-only line
    assert for_baseline(2, PixelLimits(), same_device=False, perceptual=None).hash_limit == 2  # perceptual off
    assert for_baseline(0, PixelLimits(), same_device=False).hash_limit == 0  # "must match exactly" stays
    backstop = for_baseline(2, PixelLimits(), same_device=False)
    assert backstop.failures(2 * HASH_BACKSTOP, None, "phash") == []
    assert backstop.failures(2 * HASH_BACKSTOP + 1, None, "phash") == [
        f"phash distance {2 * HASH_BACKSTOP + 1} > tolerance {2 * HASH_BACKSTOP} "
        f"({HASH_BACKSTOP} × 2: a backstop where the baseline's pixels are compared)"]
    assert backstop.describe().startswith(f"tolerance 2 × {HASH_BACKSTOP}, perceptual limits")


@pytest.mark.parametrize(("observed", "suggested"), [(0, 0), (1, 2), (2, 3), (10, 15)])
def test_calibration_suggests_exact_for_no_spread(observed: int, suggested: int) -> None:
    assert suggest_max_diff(observed) == suggested


@pytest.mark.parametrize(("value", "text"), [(34.0, "34"), (0.12345, "0.123"), (float("inf"), "inf"), (184970.4, "184970")])
def test_numbers_are_rounded_for_people(value: float, text: str) -> None:
    assert fmt(value) == text
