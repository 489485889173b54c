"""The perceptual comparison: drift passes, each kind of visible change fails and is named in
words; the colour signature round-trips through hashes.txt; the stack decides strict criteria."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from comfytest.compare.baselines import same_stack
from comfytest.compare.criteria import Criteria, PixelLimits, for_baseline
from comfytest.compare.images import compare_images, compare_to_hash, image_hash
from comfytest.compare.perceptual import DEFAULT_LIMITS, ColourSignature, error_map, measure, signature_changes
from comfytest.compare.store import HashRecord, Stack, stack_of
from tests.pictures import scene

SCENE = scene()


def _noise(img: Image.Image, levels: int) -> Image.Image:
    a = np.asarray(img, dtype=np.int16) + np.random.default_rng(1).integers(-levels, levels + 1, (*img.size[::-1], 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def _jpeg(img: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _shift_right(img: Image.Image, dx: int) -> Image.Image:
    a = np.asarray(img)
    return Image.fromarray(np.concatenate([np.repeat(a[:, :1], dx, axis=1), a[:, :-dx]], axis=1), "RGB")


def _patch(img: Image.Image) -> Image.Image:
    out = img.copy()
    out.paste((128, 200, 128), (40, 20, 80, 60))
    return out


@pytest.mark.parametrize("drift", ["noise ±1", "noise ±2", "JPEG q95"])
def test_drift_shows_no_visible_change(drift: str) -> None:
    obtained = {"noise ±1": _noise(SCENE, 1), "noise ±2": _noise(SCENE, 2), "JPEG q95": _jpeg(SCENE)}[drift]
    assert measure(obtained, SCENE).changes() == []


CHANGES = {
    "brighter": (lambda img: ImageEnhance.Brightness(img).enhance(1.05), "brighter (+"),
    "darker": (lambda img: ImageEnhance.Brightness(img).enhance(0.95), "darker (-"),
    "less saturated": (lambda img: ImageEnhance.Color(img).enhance(0.8), "less saturated (-"),
    "less contrast": (lambda img: ImageEnhance.Contrast(img).enhance(0.85), "less contrast (-"),
    "blurred": (lambda img: img.filter(ImageFilter.GaussianBlur(1.5)), "blurred"),
    "sharpened": (lambda img: img.filter(ImageFilter.UnsharpMask(2, 80, 0)), "sharpened"),
    "shifted": (lambda img: _shift_right(img, 2), "shifted 2 px right"),
    "mirrored": (ImageOps.mirror, "mirrored horizontally"),
    "region": (_patch, "changed region at x="),
    "channel swap": (lambda img: Image.merge("RGB", img.split()[::-1]), "hue turned"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_each_visible_change_is_named(change: str) -> None:
    transform, words = CHANGES[change]
    seen = measure(transform(SCENE), SCENE).changes()
    assert any(words in w for w in seen), seen


def test_a_changed_region_is_located_in_the_image_pixels() -> None:
    seen = measure(_patch(SCENE), SCENE)
    assert seen.region is not None
    x, y, w, h = seen.region
    assert abs(x - 40) <= 4 and abs(y - 20) <= 4 and abs(w - 40) <= 8 and abs(h - 40) <= 8
    assert 5 < seen.region_pct < 20


def test_signature_round_trips_and_rejects_garbage() -> None:
    sig = ColourSignature.of(SCENE)
    again = ColourSignature.parse(str(sig))
    assert abs(again.gray - sig.gray) < 0.01 and abs(again.chroma - sig.chroma) < 0.01
    assert np.abs(again.grid_array() - sig.grid_array()).max() < 0.6  # quantised to bytes
    for bad in ("lab2:AAAA", "lab1:!!!", "lab1:AAAA"):
        with pytest.raises(ValueError):
            ColourSignature.parse(bad)


def test_signatures_alone_see_colour_and_tone_but_not_drift() -> None:
    base = ColourSignature.of(SCENE)
    assert signature_changes(ColourSignature.of(_noise(SCENE, 2)), base).changes() == []
    swapped = Image.merge("RGB", SCENE.split()[::-1])
    assert signature_changes(ColourSignature.of(swapped), base).changes()
    brighter = ImageEnhance.Brightness(SCENE).enhance(1.05)
    assert any("brighter" in w for w in signature_changes(ColourSignature.of(brighter), base).changes())


def test_hash_only_catches_a_colour_change_that_phash_misses() -> None:
    flat = Image.new("RGB", (64, 64), (0x33, 0x66, 0x99))
    swapped = Image.new("RGB", (64, 64), (0x99, 0x66, 0x33))
    criteria = for_baseline(2, PixelLimits(), same_device=False)
    old = compare_to_hash(swapped, image_hash(flat), baseline_size=(64, 64), baseline_mode="RGB", criteria=criteria)
    assert old.distance == 0 and old.passed  # an old line without a signature: the hash alone
    new = compare_to_hash(swapped, image_hash(flat), baseline_size=(64, 64), baseline_mode="RGB", criteria=criteria,
                          baseline_colour=str(ColourSignature.of(flat)))
    assert new.distance == 0 and not new.passed
    assert "hue turned" in new.describe() and "colour signature" in new.describe()


def test_the_criteria_say_why_in_a_failure() -> None:
    why = "baseline: NVIDIA_L4; this run: cpu — perceptual criteria"
    criteria = for_baseline(2, PixelLimits(), same_device=False, why=why)
    cmp = compare_images(ImageEnhance.Brightness(SCENE).enhance(1.05), SCENE, criteria=criteria)
    assert not cmp.passed and cmp.describe().startswith("brighter (+") and why in cmp.describe()
    assert compare_images(SCENE, SCENE, criteria=Criteria(2)).perceptual is None  # no limits: not measured


def test_error_map_is_dark_for_drift_and_bright_where_the_change_is() -> None:
    assert np.asarray(error_map(_noise(SCENE, 2), SCENE)).max() < 32  # near black
    heat = np.asarray(error_map(_patch(SCENE), SCENE).convert("L"))
    assert heat[30:50, 50:70].mean() > 100 and heat[100:, :30].mean() < 5


SYSTEM = {"system": {"comfyui_version": "0.3.75", "pytorch_version": "2.4.1+cpu",
                     "argv": ["main.py", "--cpu", "--fp16-vae", "--port", "8188", "--use-split-cross-attention"]},
          "devices": [{"type": "cpu", "name": "cpu"}]}


def test_the_stack_comes_from_system_stats() -> None:
    assert stack_of(SYSTEM) == Stack("cpu", "2.4.1+cpu", "0.3.75", "fp16-vae,use-split-cross-attention")
    plain = {**SYSTEM, "system": {**SYSTEM["system"], "argv": ["main.py", "--cpu"]}}
    assert stack_of(plain).precision == "none"


def test_strict_criteria_only_on_the_same_stack_and_old_lines_keep_working() -> None:
    here = Stack("cpu", "2.4.1", "0.3.75", "none")
    assert same_stack(here, here) == (True, "baseline made on this stack (cpu, torch 2.4.1, ComfyUI 0.3.75, "
                                      "precision none) — strict criteria")
    assert same_stack(Stack("cpu"), here)[0]  # a line that records only its device, as before
    same, why = same_stack(Stack("cpu", "2.4.1"), Stack("cpu", "2.5.0", "0.3.75", "none"))
    assert not same and why == "baseline: cpu, torch 2.4.1; this run: torch 2.5.0 — perceptual criteria"
    assert not same_stack(Stack(), here)[0]


def test_hash_lines_old_and_new_parse() -> None:
    stem, old = HashRecord.parse("9_0  phash:8:c3d1c3d1c3d1c3d1  64x64 RGB  device=cpu")
    assert stem == "9_0" and old.colour is None and old.stack == Stack("cpu")
    record = HashRecord.of(SCENE, "phash", 8, Stack("cpu", "2.4.1", "0.3.75", "none"))
    assert HashRecord.parse(record.line("9_0")) == ("9_0", record)
    assert "  device=cpu  torch=2.4.1  comfyui=0.3.75  precision=none  colour=lab1:" in record.line("9_0")
    with pytest.raises(ValueError):
        HashRecord.parse("9_0  phash:8:c3d1c3d1c3d1c3d1  64x64 RGB  colour=lab1:nope")


def test_default_limits_are_the_benchmarked_ones() -> None:
    # docs/baselines.md shows the benchmark at these values; change both together
    assert (DEFAULT_LIMITS.delta_e, DEFAULT_LIMITS.local_delta_e, DEFAULT_LIMITS.brightness_pct,
            DEFAULT_LIMITS.hue_deg, DEFAULT_LIMITS.sharpness_pct) == (1.6, 12.0, 1.5, 4.0, 10.0)


def test_perceptual_off_leaves_the_hash_and_pixel_limits(tmp_path: Path) -> None:
    from comfytest.compare.baselines import BaselineKey, BaselineStore, check_image

    key = BaselineKey("flow", "case", "9_0")
    brighter = ImageEnhance.Brightness(SCENE).enhance(1.05)
    for perceptual, status in ((True, "mismatch"), (False, "passed")):
        store = BaselineStore(tmp_path / str(perceptual), device="NVIDIA_L4", perceptual=perceptual)
        check_image(store, key, SCENE, mode="update", results_dir=tmp_path / "results")
        other = BaselineStore(tmp_path / str(perceptual), device="cpu", perceptual=perceptual)
        assert check_image(other, key, brighter, results_dir=tmp_path / "results").status == status
