"""Same stack: differences within max diff 4 pass when they look like noise (dense, sparse or
in patches) and fail, named, when they are systematic (a dark image brightened, blurred or
sharpened; a colour cast; a hue turn), which the max diff alone lets through."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageEnhance, ImageFilter
from scipy import ndimage

from comfytest.compare.criteria import PixelLimits, for_baseline
from comfytest.compare.images import compare_images
from comfytest.compare.systematic import DEFAULT_SYSTEMATIC, MAX_PIXELS, measure, tile_numbers
from tests.pictures import scene

DARK = scene(160, scale=0.1, blur=0.8)


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float32)


def _img(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "RGB")


def _dense(img: Image.Image, levels: int) -> Image.Image:
    return _img(_arr(img) + np.random.default_rng(1).integers(-levels, levels + 1, _arr(img).shape))


def _sparse(img: Image.Image) -> Image.Image:
    rng = np.random.default_rng(2)
    a = _arr(img)
    hit = rng.random(a.shape) < 0.02
    a[hit] += rng.choice([-2, -1, 1, 2], size=int(hit.sum()))
    return _img(a)


def _patches(img: Image.Image) -> Image.Image:
    rng = np.random.default_rng(5)
    a = _arr(img)
    field = np.stack([ndimage.gaussian_filter(rng.normal(size=a.shape[:2]), 6) for _ in range(3)], -1)
    field /= field.std()
    return _img(a + np.where(field > 1.3, 1, np.where(field < -1.3, -1, 0)))


def _hue(img: Image.Image, degrees: float) -> Image.Image:
    t = math.radians(degrees)
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    rot = np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])
    return _img(_arr(img) @ (np.linalg.inv(to_yiq) @ rot @ to_yiq).T)


def _desaturate(img: Image.Image, keep: float) -> Image.Image:
    a = _arr(img)
    grey = (a @ np.array([0.299, 0.587, 0.114]))[..., None]
    return _img(grey + keep * (a - grey))


def _max_diff(a: Image.Image, b: Image.Image) -> int:
    return max(high for _, high in ImageChops.difference(a, b).getextrema())


NOISE = {"dense ±1": lambda img: _dense(img, 1), "dense ±2": lambda img: _dense(img, 2),
         "sparse ±1-2": _sparse, "±1 patches": _patches}
CHANGES = {
    "brighter": lambda img: _img(_arr(img) * 1.05),
    "darker": lambda img: _img(_arr(img) * 0.95),
    "blurred": lambda img: img.filter(ImageFilter.GaussianBlur(1)),
    "sharpened": lambda img: img.filter(ImageFilter.UnsharpMask(2, 60, 0)),
    "colour cast": lambda img: _img(_arr(img) + np.array([1.0, 0.0, -1.0])),
    "hue turned": lambda img: _hue(img, -8),
    "less saturated": lambda img: _desaturate(img, 0.8),
}


@pytest.mark.parametrize("noise", NOISE)
def test_noise_within_the_max_diff_is_not_systematic(noise: str) -> None:
    obtained = NOISE[noise](DARK)
    assert _max_diff(obtained, DARK) <= 4
    found = measure(obtained, DARK)
    assert found.broken() == [], found
    criteria = for_baseline(2, PixelLimits(), same_device=True)
    assert compare_images(obtained, DARK, criteria=criteria).passed


@pytest.mark.parametrize("change", CHANGES)
def test_a_systematic_change_within_the_max_diff_fails_and_is_named(change: str) -> None:
    obtained = CHANGES[change](DARK)
    assert 0 < _max_diff(obtained, DARK) <= 4, "the max diff alone would pass this change"
    words = measure(obtained, DARK).changes()
    assert words and words[0].startswith(change) and "small but systematic, not noise (z " in words[0], words
    cmp = compare_images(obtained, DARK, criteria=for_baseline(2, PixelLimits(), same_device=True))
    assert not cmp.passed and words[0] in cmp.failures, cmp.failures
    assert "max pixel diff" not in " ".join(cmp.failures)


def test_the_words_give_the_figures() -> None:
    words = measure(CHANGES["brighter"](DARK), DARK).changes()
    assert words[0].startswith("brighter by ") and " (R +" in words[0], words
    cast = measure(CHANGES["colour cast"](DARK), DARK).changes()
    assert cast[0].startswith("colour cast (R +") and "B -" in cast[0], cast


def test_only_the_built_in_same_stack_limit_checks_it() -> None:
    obtained = CHANGES["blurred"](DARK)
    another_stack = for_baseline(2, PixelLimits(), same_device=False, perceptual=None)
    configured = for_baseline(2, PixelLimits(max_diff=4), same_device=True, perceptual=None)
    assert another_stack.systematic is None and configured.systematic is None
    assert compare_images(obtained, DARK, criteria=another_stack).passed
    assert compare_images(obtained, DARK, criteria=configured).passed
    strict = for_baseline(2, PixelLimits(), same_device=True)
    assert strict.systematic == DEFAULT_SYSTEMATIC and "no systematic change" in strict.describe()


def test_a_change_beyond_the_max_diff_is_left_to_the_other_criteria() -> None:
    obtained = ImageEnhance.Brightness(DARK).enhance(1.5)
    cmp = compare_images(obtained, DARK, criteria=for_baseline(2, PixelLimits(), same_device=True))
    assert cmp.systematic is None and not cmp.passed and any("max pixel diff" in f for f in cmp.failures)


def test_values_that_noise_can_move_only_one_way_are_left_out() -> None:
    black = Image.new("RGB", (64, 64), (0, 0, 0))
    lifted = _dense(black, 1)  # clipped at 0: only +1 survives, a mean of +1/3
    assert measure(lifted, black).broken() == []


def test_tiles_are_32_px_or_smaller_with_at_least_eight_per_side() -> None:
    assert tile_numbers(64, 64).max() + 1 == 8 * 8
    assert tile_numbers(512, 320).max() + 1 == 16 * 10
    assert tile_numbers(8, 8).max() + 1 == 4 * 4  # 2 px at least


def test_a_fit_resting_on_a_few_tiles_does_not_count() -> None:
    grey = Image.new("RGB", (64, 64), (120, 120, 120))
    spot = grey.copy()
    spot.paste((140, 110, 100), (0, 0, 6, 6))  # the only colour: one spot in one tile
    turned = _hue(spot, 30)
    found = measure(turned, spot)
    assert abs(found.hue.z) > DEFAULT_SYSTEMATIC.z, "significant by the standard error alone"
    assert found.hue.tiles < DEFAULT_SYSTEMATIC.tiles and "hue" not in found.broken()


def test_a_large_image_is_measured_on_bands_and_still_caught() -> None:
    large = DARK.resize((1100, 1100), Image.Resampling.BICUBIC)  # 1.2 MP: over MAX_PIXELS
    assert large.width * large.height > MAX_PIXELS
    assert "gain" in measure(CHANGES["brighter"](large), large).broken()
    assert measure(_sparse(large), large).broken() == []
