from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from comfytest.compare.images import (
    METHODS,
    HashValue,
    compare_animations,
    compare_images,
    compare_to_hash,
    diff_heatmap,
    frames,
    hash_distance,
    image_hash,
    pixel_metrics,
    side_by_side,
)
from comfytest.errors import ComparisonError, ConfigError


def scene(size: int = 128, seed: int = 0) -> Image.Image:
    """A seeded gradient with noise and a few shapes: enough structure for every hash."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) * (255.0 / size)
    base = np.stack([x, y, (x + y) / 2], axis=-1) + rng.normal(0, 6, (size, size, 3))
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    draw.ellipse((size // 4, size // 4, size // 2, size // 2), fill=(250, 30, 30))
    draw.rectangle((size // 2, size // 8, size - 8, size // 3), fill=(20, 20, 200))
    return img


def jitter(img: Image.Image, seed: int = 1) -> Image.Image:
    """+-1 in random channel values, like 1 vs 2 CPU threads produce."""
    rng = np.random.default_rng(seed)
    arr = np.asarray(img).astype(np.int16) + rng.integers(-1, 2, np.asarray(img).shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), img.mode)


def changed(img: Image.Image) -> Image.Image:
    """A real change: a different composition, like another seed would give."""
    out = img.transpose(Image.Transpose.ROTATE_90)
    ImageDraw.Draw(out).rectangle((0, 60, 127, 127), fill=(0, 220, 0))
    return out


def test_identical_images_have_distance_zero_and_infinite_psnr() -> None:
    img = scene()
    result = compare_images(img, img.copy())
    assert result.distance == 0 and result.passed
    assert result.max_abs_diff == 0 and result.mean_abs_diff == 0
    assert result.psnr == math.inf
    assert result.obtained_hash == result.baseline_hash
    assert "identical pixels" in result.describe()


def test_one_level_noise_keeps_phash_but_shows_in_pixel_metrics() -> None:
    img = scene(256)
    result = compare_images(jitter(img), img)
    assert result.distance == 0 and result.passed
    assert result.max_abs_diff == 1
    assert 0.3 < (result.mean_abs_diff or 0) < 0.9  # two thirds of values moved by 1
    assert result.psnr is not None and 45 < result.psnr < 55


def test_real_change_exceeds_tolerance_and_describe_says_by_how_much() -> None:
    img = scene()
    result = compare_images(changed(img), img, tolerance=2)
    assert result.distance > 2 and not result.passed
    text = result.describe()
    assert text.startswith(f"phash distance {result.distance} > tolerance 2 (max pixel diff ")
    assert "PSNR" in text and "dB" in text


def test_pixel_metrics_are_exact() -> None:
    a = Image.new("RGB", (2, 1), (10, 10, 10))
    b = Image.new("RGB", (2, 1), (10, 10, 10))
    b.putpixel((0, 0), (13, 10, 10))  # one channel off by 3 out of 6 values
    m = pixel_metrics(a, b)
    assert m.max_abs_diff == 3
    assert m.mean_abs_diff == pytest.approx(0.5)
    assert m.psnr == pytest.approx(10 * math.log10(255**2 / (9 / 6)))


def test_size_mismatch_fails_even_when_hashes_agree() -> None:
    img = scene(128)
    result = compare_images(img.resize((64, 64)), img)
    assert result.size_mismatch and not result.passed
    assert result.metrics is None
    assert result.describe().startswith("size 64x64 differs from baseline 128x128")


def test_mode_mismatch_is_reported_and_compared_as_rgb() -> None:
    img = scene()
    result = compare_images(img.convert("P"), img, tolerance=4)
    assert result.mode_mismatch and result.compared_as == "RGB"
    assert "mode P vs baseline RGB" in result.describe()
    assert result.passed  # a palette round trip is not a regression


def test_hidden_colour_under_transparency_is_ignored_but_alpha_changes_count() -> None:
    a = scene().convert("RGBA")
    alpha = Image.new("L", a.size, 255)
    alpha.paste(0, (0, 0, 64, 128))  # left half transparent
    a.putalpha(alpha)
    b = a.copy()
    ImageDraw.Draw(b).rectangle((0, 0, 63, 127), fill=(0, 255, 0, 0))  # other invisible colour
    same = compare_images(a, b)
    assert same.compared_as == "RGBA" and same.max_abs_diff == 0 and same.distance == 0
    revealed = a.copy()
    revealed.putalpha(255)
    differs = compare_images(revealed, a)
    assert differs.max_abs_diff == 255 and differs.distance > 2


def test_rgba_against_rgb_compares_as_rgba() -> None:
    img = scene()
    result = compare_images(img.convert("RGBA"), img)
    assert result.mode_mismatch and result.compared_as == "RGBA"
    assert result.max_abs_diff == 0 and result.passed


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("size", [4, 8, 16])
def test_every_method_round_trips_and_separates_images(method: str, size: int) -> None:
    if method == "colorhash":
        size = min(size, 8) // 2  # binbits
    img = scene()
    text = image_hash(img, method, size)
    assert text.startswith(f"{method}:{size}:")
    assert str(HashValue.parse(text)) == text
    assert hash_distance(text, text) == 0
    assert hash_distance(text, image_hash(img.copy(), method, size)) == 0
    if method != "colorhash":  # colour fractions barely move under a rotation
        assert hash_distance(text, image_hash(changed(img), method, size)) > 0


def test_hash_distance_counts_bits() -> None:
    assert hash_distance("phash:2:0", "phash:2:f") == 4
    assert hash_distance("ahash:8:" + "0" * 16, "ahash:8:" + "0" * 15 + "3") == 2


@pytest.mark.parametrize("other", ["dhash:8:" + "0" * 16, "phash:16:" + "0" * 64])
def test_hash_distance_refuses_different_methods_or_sizes(other: str) -> None:
    with pytest.raises(ComparisonError, match="cannot compare a phash:8 hash with"):
        hash_distance("phash:8:" + "0" * 16, other)


@pytest.mark.parametrize("bad", ["phash:8", "nohash:8:00", "phash:8:00", "phash:x:00",
                                 "phash:2:g"])
def test_malformed_hashes_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        HashValue.parse(bad)


@pytest.mark.parametrize(("method", "size"), [("nope", 8), ("phash", 1), ("whash", 6),
                                              ("colorhash", 9)])
def test_invalid_method_or_size_is_a_config_error(method: str, size: int) -> None:
    with pytest.raises(ConfigError):
        image_hash(scene(), method, size)


def test_compare_to_hash_has_no_pixel_metrics() -> None:
    img = scene()
    result = compare_to_hash(jitter(img), image_hash(img), baseline_size=img.size,
                             baseline_mode="RGB")
    assert result.passed and result.metrics is None
    assert "(hash only)" in result.describe()


def animation(colors: list[tuple[int, int, int]]) -> Image.Image:
    shots = [scene(64, seed=i) for i in range(len(colors))]
    for shot, color in zip(shots, colors):
        ImageDraw.Draw(shot).rectangle((0, 0, 20, 63), fill=color)
    buffer = io.BytesIO()
    shots[0].save(buffer, format="PNG", save_all=True, append_images=shots[1:])
    buffer.seek(0)
    return Image.open(buffer)


def test_frames_of_still_and_animated_images() -> None:
    img = scene()
    assert frames(img) == [img]
    anim = animation([(0, 0, 0), (255, 255, 255), (0, 255, 0)])
    got = frames(anim)
    assert len(got) == 3 and anim.tell() == 0
    assert got[0].tobytes() != got[1].tobytes()


def test_animation_frame_by_frame() -> None:
    colors = [(0, 0, 0), (255, 255, 255), (0, 255, 0)]
    same = compare_animations(animation(colors), animation(colors))
    assert same.passed and same.distance == 0 and len(same.frames) == 3
    assert same.describe() == "all 3 frames match (largest distance 0)"


def test_animation_frame_count_mismatch_fails() -> None:
    result = compare_animations(animation([(0, 0, 0)] * 3), animation([(0, 0, 0)] * 4))
    assert result.frame_count_mismatch and not result.passed
    assert all(f.passed for f in result.frames)
    assert result.describe().startswith("3 frames, baseline has 4")


def test_animation_changed_frame_is_named() -> None:
    base = frames(animation([(0, 0, 0)] * 3))
    obtained = [base[0], changed(base[1]), base[2]]
    result = compare_animations(obtained, base)
    assert not result.passed and result.first_failure == 1
    assert "frame 1:" in result.describe()


def test_diff_heatmap_is_black_where_equal_and_hot_where_not() -> None:
    a = Image.new("RGB", (10, 10), (50, 50, 50))
    b = a.copy()
    b.putpixel((3, 4), (52, 50, 50))  # a difference of 2 is stretched to full heat
    heat = diff_heatmap(a, b)
    assert heat.size == (10, 10) and heat.mode == "RGB"
    assert heat.getpixel((0, 0)) == (0, 0, 0)
    assert heat.getpixel((3, 4)) == (255, 255, 255)


def test_diff_heatmap_of_different_sizes_marks_uncovered_area() -> None:
    heat = diff_heatmap(Image.new("RGB", (4, 4)), Image.new("RGB", (6, 4)))
    assert heat.size == (6, 4)
    assert heat.getpixel((5, 0)) == (255, 255, 255) and heat.getpixel((0, 0)) == (0, 0, 0)


def test_side_by_side_has_room_for_three_panels_and_labels() -> None:
    a, b = scene(64), scene(64, seed=3).convert("RGBA")
    sheet = side_by_side(a, b, diff_heatmap(a, b))
    assert sheet.mode == "RGB"
    assert sheet.width >= 3 * 64 and sheet.height > 64
    label_strip = np.asarray(sheet.crop((0, 0, 64, 12)))
    assert label_strip.max() > 200  # the label text was drawn
