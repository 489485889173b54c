"""Does the comparison tell device drift from a real change? Measured on real AI-generated images.

The images come from a package that ships them: the ComfyUI workflow-template media wheel
(``comfyui-workflow-templates-media-image``; none of its images is used by the tests). Each image
(reduced to at most --side pixels) is the baseline; a changed copy is the obtained output:

* drift (must pass): sensor-like noise, precision round trips (float16, bfloat16 pixel values),
  sub-pixel resampling, JPEG/WebP re-encoding at quality 95; and what a re-run on the same stack
  may bring (GPU non-determinism): dense ±1-2 noise, sparse ±1-2 noise on 2 % of the values,
  correlated ±1 patches (a rounding difference a sampler amplified into blotches);
* regressions (must fail): channel swap, hue, saturation, brightness, contrast and gamma of a few
  per cent, blur, sharpening, a 2-px shift, a crop of a few pixels, a changed region, banding,
  a mirror.

It prints, per transform, how many images each criterion flags, and the verdict at the defaults
in three regimes: baseline from this device and stack (strict: max diff 4 + no systematic
change within it + perceptual + the hash as a backstop, ``HASH_BACKSTOP`` × tolerance 2; its false
alarms are counted on the same-stack drift rows), baseline from another device (perceptual
limits + the hash as a backstop), and hash-only baselines from another device (hash at
tolerance 2 + colour signature); then the two cross-stack regimes for a range of hash limits
(what the hash adds where the perceptual criteria decide: the choice of ``HASH_BACKSTOP``). Usage::

    pip download --no-deps -d /tmp/media comfyui-workflow-templates-media-image
    unzip -q -o /tmp/media/*.whl -d /tmp/media/x
    python benchmarks/bench_detection.py /tmp/media/x --limit 60
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageEnhance, ImageFilter, ImageOps
from scipy import ndimage

from comfytest.compare import images as ic
from comfytest.compare import perceptual as pc
from comfytest.compare import systematic as sy
from comfytest.compare.criteria import HASH_BACKSTOP, SAME_DEVICE_MAX_DIFF, Criteria

Transform = Callable[[Image.Image, Image.Image], Image.Image]  # (image, another image) -> changed


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float32)


def _img(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "RGB")


def _noise(levels: int, seed: int = 1) -> Transform:
    def f(img: Image.Image, _: Image.Image) -> Image.Image:
        rng = np.random.default_rng(seed)
        return _img(_arr(img) + rng.integers(-levels, levels + 1, size=_arr(img).shape))
    return f


def _sparse(fraction: float, seed: int = 3) -> Transform:
    """±1 or ±2 on a random ``fraction`` of the values: a GPU's non-deterministic reductions."""
    def f(img: Image.Image, _: Image.Image) -> Image.Image:
        rng = np.random.default_rng(seed)
        a = _arr(img)
        hit = rng.random(a.shape) < fraction
        a[hit] += rng.choice([-2, -1, 1, 2], size=int(hit.sum()))
        return _img(a)
    return f


def _patches(sigma: float = 6.0, seed: int = 5) -> Transform:
    """±1 in blotches (a smooth random field past ±1.3 of its spread, 19 % of the values, each
    channel its own): a rounding difference that a sampler and the VAE spread over a region."""
    def f(img: Image.Image, _: Image.Image) -> Image.Image:
        rng = np.random.default_rng(seed)
        a = _arr(img)
        field = np.stack([ndimage.gaussian_filter(rng.normal(size=a.shape[:2]), sigma) for _ in range(3)], -1)
        field /= field.std()
        return _img(a + np.where(field > 1.3, 1, np.where(field < -1.3, -1, 0)))
    return f


def _fp16(img: Image.Image, _: Image.Image) -> Image.Image:
    return _img((_arr(img) / 255).astype(np.float16).astype(np.float32) * 255)


def _bf16(img: Image.Image, _: Image.Image) -> Image.Image:
    x = (_arr(img) / 255).astype(np.float32).view(np.uint32)
    rounded = ((x + 0x7FFF + ((x >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)  # round to nearest even
    return _img(rounded.view(np.float32) * 255)


def _subpixel(img: Image.Image, _: Image.Image) -> Image.Image:
    # resampled at a (0.3, 0.2) px offset; edge pixels replicated, as a resampling kernel does
    padded = _pad(img, 2)
    moved = padded.transform(padded.size, Image.Transform.AFFINE, (1, 0, 0.3, 0, 1, 0.2), Image.Resampling.BICUBIC)
    return moved.crop((2, 2, 2 + img.width, 2 + img.height))


def _pad(img: Image.Image, n: int) -> Image.Image:
    return Image.fromarray(np.pad(np.asarray(img), ((n, n), (n, n), (0, 0)), mode="edge"), "RGB")


def _encode(fmt: str, quality: int) -> Transform:
    def f(img: Image.Image, _: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, format=fmt, quality=quality)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return f


def _hue(degrees: float) -> Transform:
    def f(img: Image.Image, _: Image.Image) -> Image.Image:
        t = math.radians(degrees)  # rotation of the chroma plane in YIQ
        to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
        rot = np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])
        m = np.linalg.inv(to_yiq) @ rot @ to_yiq
        return _img(_arr(img) @ m.T)
    return f


def _enhance(kind: type[ImageEnhance._Enhance], factor: float) -> Transform:
    return lambda img, _: kind(img).enhance(factor)


def _gamma(g: float) -> Transform:
    lut = [round(255 * (v / 255) ** g) for v in range(256)] * 3
    return lambda img, _: img.point(lut)


def _shift(dx: int) -> Transform:
    def f(img: Image.Image, _: Image.Image) -> Image.Image:
        a = np.asarray(img)
        return Image.fromarray(np.concatenate([np.repeat(a[:, :1], dx, axis=1), a[:, :-dx]], axis=1), "RGB")
    return f


def _crop(n: int) -> Transform:
    return lambda img, _: img.crop((n, n, img.width - n, img.height - n)).resize(img.size, Image.Resampling.BICUBIC)


def _region(fraction: float) -> Transform:
    def f(img: Image.Image, other: Image.Image) -> Image.Image:
        side = round(math.sqrt(fraction * img.width * img.height))
        x, y = img.width // 3, img.height // 4
        out = img.copy()
        patch = other.resize(img.size).crop((x, y, x + side, y + side))
        out.paste(patch, (x, y))
        return out
    return f


DRIFT: dict[str, Transform] = {
    "noise ±1": _noise(1),
    "noise ±2": _noise(2),
    "float16 round trip": _fp16,
    "bfloat16 round trip": _bf16,
    "sub-pixel resampling (0.3, 0.2 px)": _subpixel,
    "JPEG q95": _encode("JPEG", 95),
    "WebP q95": _encode("WEBP", 95),
    "sparse ±1–2 (2 % of values)": _sparse(0.02),
    "±1 patches (19 % of values)": _patches(),
}
#: what a re-run on the baseline's own stack may bring: the strict regime's false alarms
SAME_STACK_DRIFT = ("noise ±1", "noise ±2", "sparse ±1–2 (2 % of values)", "±1 patches (19 % of values)",
                    "unchanged re-run")
#: hash tolerances tried where the perceptual criteria decide (another stack)
TOLERANCES = (2, 4, 6, 8, 12, 16, 24)
REGRESSIONS: dict[str, Transform] = {
    "channel swap RGB→BGR": lambda img, _: Image.merge("RGB", img.split()[::-1]),
    "hue +8°": _hue(8),
    "hue −12°": _hue(-12),
    "saturation −15 %": _enhance(ImageEnhance.Color, 0.85),
    "saturation −20 %": _enhance(ImageEnhance.Color, 0.80),
    "brightness +5 %": _enhance(ImageEnhance.Brightness, 1.05),
    "brightness −4 %": _enhance(ImageEnhance.Brightness, 0.96),
    "contrast −10 %": _enhance(ImageEnhance.Contrast, 0.90),
    "gamma 0.9": _gamma(0.9),
    "blur radius 1": lambda img, _: img.filter(ImageFilter.GaussianBlur(1)),
    "blur radius 1.5": lambda img, _: img.filter(ImageFilter.GaussianBlur(1.5)),
    "sharpening": lambda img, _: img.filter(ImageFilter.UnsharpMask(2, 60, 0)),
    "shift 2 px": _shift(2),
    "crop 4 px, resized back": _crop(4),
    "changed region (4 %)": _region(0.04),
    "changed region (12 %)": _region(0.12),
    "banding (posterise 5 bits)": lambda img, _: ImageOps.posterize(img, 5),
    "mirror": lambda img, _: ImageOps.mirror(img),
}


def load_images(root: Path, limit: int, side: int) -> list[Image.Image]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in {".webp", ".png", ".jpg", ".jpeg"})
    step = max(1, len(files) // limit)
    out = []
    for path in files[::step][:limit]:
        with Image.open(path) as img:
            img = img.convert("RGB")
            img.thumbnail((side, side), Image.Resampling.LANCZOS)
            out.append(img)
    return out


def judge(obtained: Image.Image, baseline: Image.Image, limits: pc.PerceptualLimits) -> tuple[dict[str, bool], int]:
    """Every criterion's verdict (True = flags a change) for one pair, and the phash distance."""
    cmp = ic.compare_images(obtained, baseline)
    metrics = cmp.metrics
    assert metrics is not None
    p = pc.measure(obtained, baseline, limits)
    broken = set(p.broken(limits))
    sig = pc.signature_changes(pc.ColourSignature.of(obtained), pc.ColourSignature.of(baseline))
    sig_broken = set(sig.broken(limits))
    within = 0 < metrics.max_abs_diff <= SAME_DEVICE_MAX_DIFF
    verdict = {"phash": cmp.distance > cmp.tolerance, "max diff": metrics.max_abs_diff > SAME_DEVICE_MAX_DIFF,
               "systematic": within and bool(sy.measure(obtained, baseline).broken())}
    verdict.update({name: name in broken for name in LIMITS})
    verdict["perceptual only"] = bool(broken)
    verdict["signature only"] = bool(sig_broken)
    backstop = cmp.distance > cmp.tolerance * HASH_BACKSTOP  # the hash where pixels are compared
    verdict["other device"] = backstop or bool(broken)
    verdict["this device"] = verdict["other device"] or verdict["max diff"] or verdict["systematic"]
    verdict["hash-only"] = verdict["phash"] or bool(sig_broken)
    return verdict, cmp.distance


LIMITS = ("delta_e", "local_delta_e", "brightness", "contrast", "saturation", "hue", "sharpness", "ssim", "shift",
          "mirror")
COLUMNS = ("phash", "max diff", "systematic", *LIMITS, "this device", "other device", "hash-only")
SHORT = {"systematic": "system.", "local_delta_e": "local ΔE", "delta_e": "ΔE", "brightness": "bright", "contrast": "contr",
         "saturation": "sat", "sharpness": "sharp", "this device": "**this device**",
         "other device": "**other device**", "hash-only": "**hash-only**"}


def _rounding_level(changed: Image.Image, img: Image.Image) -> bool:
    """No pixel moved by more than one level: a no-op here (a channel swap or a saturation
    change of a grey image), which no criterion could tell from rounding."""
    return max(high for _, high in ImageChops.difference(changed, img).getextrema()) <= 1


Table = dict[str, dict[str, int]]


def run(images: list[Image.Image], limits: pc.PerceptualLimits) -> Table:
    """Per transform: images tried (``pairs``), images each column flags, and for each hash
    tolerance T in ``TOLERANCES`` the cross-stack verdicts ``other device@T``, ``hash-only@T``."""
    table: Table = {}
    for name, transform in {**DRIFT, **REGRESSIONS, "unchanged re-run": lambda img, _: img.copy()}.items():
        counts = dict.fromkeys(COLUMNS, 0)
        counts["pairs"] = 0
        for i, img in enumerate(images):
            changed = transform(img, images[(i + 7) % len(images)])
            if name in REGRESSIONS and _rounding_level(changed, img):
                continue  # a no-op here (a channel swap of a grey image): nothing to catch
            counts["pairs"] += 1
            verdict, distance = judge(changed, img, limits)
            for column in COLUMNS:
                counts[column] += verdict[column]
            for t in TOLERANCES:
                for regime, seen in (("other device", "perceptual only"), ("hash-only", "signature only")):
                    key = f"{regime}@{t}"
                    counts[key] = counts.get(key, 0) + (distance > t or verdict[seen])
        table[name] = counts
    return table


def _counts(table: Table, regime: str, column: str) -> tuple[int, int, float]:
    """False alarms on the regime's drift rows, regressions caught, and the per cent caught."""
    drift = SAME_STACK_DRIFT if regime == "this device" else (*DRIFT, "unchanged re-run")
    total = sum(table[r]["pairs"] for r in REGRESSIONS)
    caught = sum(table[r][column] for r in REGRESSIONS)
    return sum(table[d][column] for d in drift), caught, 100 * caught / total


def _summary(table: Table, regime: str) -> str:
    alarms, caught, pct = _counts(table, regime, regime)
    drift = SAME_STACK_DRIFT if regime == "this device" else (*DRIFT, "unchanged re-run")
    what = "same-stack re-runs (noise, sparse noise, ±1 patches, unchanged)" if regime == "this device" \
        else "drifted/unchanged images"
    return (f"{alarms} false alarms in {sum(table[d]['pairs'] for d in drift)} {what}; "
            f"{caught} of {sum(table[r]['pairs'] for r in REGRESSIONS)} regressions caught ({pct:.1f} %)")


def markdown(table: Table) -> str:
    head = "| transform | images | " + " | ".join(SHORT.get(c, c) for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for group, names in (("drift (false alarms)", [*DRIFT, "unchanged re-run"]), ("regressions (caught)", REGRESSIONS)):
        lines.append(f"| *{group}* |" + " |" * (len(COLUMNS) + 1))
        for name in names:
            lines.append(f"| {name} | {table[name]['pairs']} | " + " | ".join(str(table[name][c]) for c in COLUMNS) + " |")
    lines.append("")
    for regime in ("this device", "other device", "hash-only"):
        lines.append(f"* {regime}: {_summary(table, regime)}")
    lines.append("\nhash limit where the perceptual criteria decide (another stack): false alarms, caught\n")
    lines.append("| hash limit | other device (pixels) | hash-only (signature) |")
    lines.append("|---|---|---|")
    for t in TOLERANCES:
        cells = [_counts(table, regime, f"{regime}@{t}") for regime in ("other device", "hash-only")]
        lines.append(f"| {t} | " + " | ".join(f"{alarms}, {caught} ({pct:.1f} %)" for alarms, caught, pct in cells) + " |")
    return "\n".join(lines)


def cost(images: list[Image.Image], repeat: int = 3) -> str:
    """Median seconds of one same-stack comparison of an image with ±1 noise (pixels differ, so
    every figure is measured): the strict criteria with and without the systematic check,
    alternately, side by side."""
    strict = Criteria(2, max_diff=SAME_DEVICE_MAX_DIFF, perceptual=pc.DEFAULT_LIMITS, systematic=sy.DEFAULT_SYSTEMATIC)
    without = Criteria(2, max_diff=SAME_DEVICE_MAX_DIFF, perceptual=pc.DEFAULT_LIMITS)
    times: dict[str, list[float]] = {"without": [], "with": []}
    for img in images:
        noisy = _noise(1)(img, img)
        for _ in range(repeat):
            for name, criteria in (("without", without), ("with", strict)):
                start = time.perf_counter()
                ic.compare_images(noisy, img, criteria=criteria)
                times[name].append(time.perf_counter() - start)
    a, b = (float(np.median(times[k])) for k in ("without", "with"))
    size = f"{images[0].width}x{images[0].height}"
    return (f"{len(images)} images (first {size}), {repeat} runs each: same-stack comparison "
            f"{a:.3f} s without the systematic check, {b:.3f} s with it (median; ratio {b / a:.2f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder holding the unzipped media wheel")
    parser.add_argument("--limit", type=int, default=60, help="number of images (default 60)")
    parser.add_argument("--side", type=int, default=384, help="largest side of each image (default 384)")
    parser.add_argument("--cost", action="store_true",
                        help="time the same-stack comparison with and without the systematic check instead")
    args = parser.parse_args(argv)
    images = load_images(args.root, args.limit, args.side)
    if not images:
        print(f"no images under {args.root}", file=sys.stderr)
        return 2
    if args.cost:
        print(cost(images))
        return 0
    start = time.perf_counter()
    table = run(images, pc.DEFAULT_LIMITS)
    print(f"{len(images)} images from {args.root}, at most {args.side} px; "
          f"{time.perf_counter() - start:.0f} s\n")
    print(markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
