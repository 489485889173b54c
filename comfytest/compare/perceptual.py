"""Perceptual comparison: tell device drift from a change a person would see (pure, numpy/scipy).

Two measurements, both in CIELAB (ΔE below is ΔE*ab; about 1 to 2 is a just-noticeable
difference):

* ``ColourSignature``: a fingerprint small enough for a line of ``hashes.txt`` — global
  brightness, contrast, saturation, colour cast and sharpness, plus an 8x8 grid of CIELAB means.
  Hash-only baselines and video frames compare these (``signature_changes``).
* ``measure``: a baseline image against the obtained one, when the baseline pixels are kept:
  the signature's statistics plus a local ΔE map (changed regions), SSIM of lightness, the best
  small shift and a mirror test. ``Perceptual.changes`` turns the figures into words
  ("colour shift (mean ΔE 6.1)", "shifted 2 px right"); an empty list means "no visible change".

Everything is measured on blurred images at most ``ANALYSIS_SIDE`` pixels wide, so ±1-2 levels
of noise, precision round trips and re-encoding (drift) average out while colour, tone, blur
and geometry (regressions) stay. The limits (``PerceptualLimits``) were chosen with
``benchmarks/bench_detection.py`` on real AI-generated images (docs/baselines.md).
"""

from __future__ import annotations

import base64
import math
import re
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

ANALYSIS_SIDE = 512  # larger images are reduced (box filter) to at most this side first
GRID = 8  # the signature's grid: GRID x GRID cells of CIELAB means
_SIG_VERSION = 1
_HEADER = struct.Struct(">BHHHHhh")  # version, gray, contrast, chroma, sharpness, a, b (x100)
_SIG_BYTES = _HEADER.size + GRID * GRID * 3
#: what ``str(ColourSignature)`` writes: unpadded URL-safe base64 of exactly _SIG_BYTES bytes
_SIGNATURE_TEXT = re.compile("lab1:[A-Za-z0-9_-]{%s}%s" % (  # noqa: UP031 (regex braces)
    _SIG_BYTES // 3 * 4,
    # the last 1 or 2 bytes: 2 or 3 characters, the unused low bits of the last one zero
    {0: "", 1: "[A-Za-z0-9_-][AQgw]", 2: "[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048]"}[_SIG_BYTES % 3]))

F = np.ndarray  # float32 arrays throughout


def _srgb_to_linear(v: F) -> F:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]], dtype=np.float32)
_WHITE = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)  # D65


def lab(rgb: F) -> F:
    """sRGB (0..255, HxWx3) → CIELAB (L* 0..100, a*, b* about -100..100), D65.

    CIELAB's linear toe keeps near-black steps small (OKLab's cube root makes a one-level step
    of black a ΔE of 7, so noise on dark images would read as a change)."""
    xyz = _srgb_to_linear(rgb.astype(np.float32) / 255.0) @ _RGB_TO_XYZ.T / _WHITE
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
                    -1).astype(np.float32)


def analysis_rgb(img: Image.Image) -> F:
    """The image as compared: RGB over mid-grey for transparency, reduced to ``ANALYSIS_SIDE``."""
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", img.size, (128, 128, 128))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        img = flat
    elif img.mode != "RGB":
        img = img.convert("RGB")
    factor = math.ceil(max(img.size) / ANALYSIS_SIDE)
    if factor > 1:
        img = img.reduce(factor)
    return np.asarray(img, dtype=np.float32)


def _blur(x: F, sigma: float) -> F:
    if x.ndim == 3:
        return np.stack([_blur(x[..., c], sigma) for c in range(x.shape[2])], -1)
    out: F = ndimage.gaussian_filter(x, sigma, mode="nearest")
    return out


def _sharpness(light: F) -> float:
    """Mean band-pass detail of lightness (between blurs of 0.7 and 2 px): falls when an image
    is blurred, rises when it is sharpened; per-pixel noise sits above the band."""
    return float(np.abs(_blur(light, 0.7) - _blur(light, 2.0)).mean()) if light.size > 1 else 0.0


def _grid(lab: F) -> F:
    """GRID x GRID cell means (cells as even as the size allows)."""
    h, w = lab.shape[:2]
    ys = np.linspace(0, h, GRID + 1).astype(int)
    xs = np.linspace(0, w, GRID + 1).astype(int)
    out = np.zeros((GRID, GRID, 3), dtype=np.float32)
    for i in range(GRID):
        for j in range(GRID):
            cell = lab[ys[i]:max(ys[i + 1], ys[i] + 1), xs[j]:max(xs[j + 1], xs[j] + 1)]
            out[i, j] = cell.reshape(-1, 3).mean(axis=0)
    return out


@dataclass(frozen=True)
class ColourSignature:
    """Global tone and colour figures plus an 8x8 CIELAB grid; ``str()`` is the ``hashes.txt``
    form (``lab1:<base64>``)."""

    gray: float  # mean of R, G, B (0..255)
    contrast: float  # standard deviation of L
    chroma: float  # mean chroma (saturation)
    sharpness: float  # mean gradient of L
    a: float  # mean a (green-red cast)
    b: float  # mean b (blue-yellow cast)
    grid: tuple[float, ...]  # GRID*GRID*3 values: L, a, b per cell, row by row

    @classmethod
    def of(cls, img: Image.Image) -> ColourSignature:
        return signature_of(analysis_rgb(img))

    def grid_array(self) -> F:
        return np.asarray(self.grid, dtype=np.float32).reshape(GRID, GRID, 3)

    def __str__(self) -> str:
        q = [round(self.gray * 100), round(self.contrast * 100), round(self.chroma * 100),
             round(self.sharpness * 100), round(self.a * 100), round(self.b * 100)]
        head = _HEADER.pack(_SIG_VERSION, *(min(65535, max(0, v)) for v in q[:4]),
                            *(min(32767, max(-32768, v)) for v in q[4:]))
        g = self.grid_array()
        cells = np.stack([g[..., 0] * 2.55, g[..., 1] + 128, g[..., 2] + 128], -1)
        body = np.clip(np.round(cells), 0, 255).astype(np.uint8).tobytes()
        return "lab1:" + base64.urlsafe_b64encode(head + body).decode().rstrip("=")

    @classmethod
    def check(cls, text: str) -> None:
        """ValueError unless ``parse`` would read ``text`` (without decoding it: ~1 µs, where
        ``parse`` takes ~0.1 ms; a ``hashes.txt`` is checked whole, each line it reads)."""
        if _SIGNATURE_TEXT.fullmatch(text) is None:
            cls.parse(text)  # raises, saying what is wrong
            raise ValueError(f"colour signature is not canonical base64: {text[:20]!r}")

    @classmethod
    def parse(cls, text: str) -> ColourSignature:
        if not text.startswith("lab1:"):
            raise ValueError(f"not a colour signature ('lab1:...'): {text[:20]!r}")
        try:
            raw = base64.urlsafe_b64decode(text[5:] + "=" * (-len(text[5:]) % 4))
        except ValueError:
            raise ValueError("colour signature is not base64") from None
        if len(raw) != _HEADER.size + GRID * GRID * 3:
            raise ValueError(f"colour signature has {len(raw)} bytes, not {_HEADER.size + GRID * GRID * 3}")
        _, gray, contrast, chroma, sharp, a, b = _HEADER.unpack(raw[:_HEADER.size])
        cells = np.frombuffer(raw[_HEADER.size:], dtype=np.uint8).astype(np.float32).reshape(GRID, GRID, 3)
        grid = np.stack([cells[..., 0] / 2.55, cells[..., 1] - 128, cells[..., 2] - 128], -1)
        return cls(gray / 100, contrast / 100, chroma / 100, sharp / 100, a / 100, b / 100,
                   tuple(float(v) for v in grid.reshape(-1)))


def signature_of(rgb: F) -> ColourSignature:
    return _signature(rgb, lab(rgb))


def _signature(rgb: F, image_lab: F) -> ColourSignature:
    smooth = _blur(image_lab, 1.0)  # tone and colour statistics without per-pixel noise
    chroma = np.hypot(smooth[..., 1], smooth[..., 2])
    return ColourSignature(
        float(rgb.mean()), float(smooth[..., 0].std()), float(chroma.mean()), _sharpness(image_lab[..., 0]),
        float(smooth[..., 1].mean()), float(smooth[..., 2].mean()),
        tuple(float(v) for v in _grid(image_lab).reshape(-1)))


@dataclass(frozen=True)
class PerceptualLimits:
    """How far the obtained image may move from its baseline before a person would call it a
    change. Defaults chosen by benchmarks/bench_detection.py (docs/baselines.md)."""

    delta_e: float = 1.6  # mean ΔE*ab of the blurred images (signatures: of the grid cells)
    local_delta_e: float = 12.0  # ΔE of the worst 1 % of the blurred ΔE map (a changed region)
    brightness_pct: float = 1.5  # mean level change, per cent
    contrast_pct: float = 5.0  # change of the lightness spread, per cent
    saturation_pct: float = 6.0  # change of mean chroma, per cent
    hue_deg: float = 4.0  # chroma-weighted hue turn, degrees
    sharpness_pct: float = 10.0  # change of band-pass lightness detail, per cent
    min_ssim: float = 0.9  # SSIM of blurred lightness
    grid_delta_e: float = 3.0  # signatures only: largest ΔE of one grid cell


DEFAULT_LIMITS = PerceptualLimits()


#: below these a relative change is measured against the floor (a black image that gains half
#: a level is not "10 % brighter"): mean level, lightness spread, chroma, detail
_FLOORS = {"gray": 48.0, "contrast": 8.0, "chroma": 8.0, "sharpness": 1.0}


def _pct(new: float, old: float, floor: float) -> float:
    return 100.0 * (new - old) / max(old, floor)


def _hue_turn(obtained: F, baseline: F, chroma: float) -> float:
    """Degrees the colours turned, pixel by pixel (or cell by cell), weighted by chroma: the
    angle of the sum of z_obtained * conj(z_baseline) with z = a* + i b*. Noise turns pixels
    both ways and cancels; a hue change turns them all one way. 0 for images too grey (mean
    chroma under 2) for a hue to mean anything."""
    za = obtained[..., 1] + 1j * obtained[..., 2]
    zb = baseline[..., 1] + 1j * baseline[..., 2]
    total = complex(np.sum(za * np.conj(zb)))
    return 0.0 if chroma < 2 or abs(total) < 1e-9 else math.degrees(float(np.angle(total)))


@dataclass(frozen=True)
class Perceptual:
    """The perceptual figures of one comparison (obtained against baseline)."""

    delta_e: float
    local_delta_e: float
    brightness_pct: float
    contrast_pct: float
    saturation_pct: float
    sharpness_pct: float
    hue_deg: float
    ssim: float | None = None  # None: signatures only (no baseline pixels)
    shift: tuple[int, int] = (0, 0)  # best small shift of the obtained image (dx, dy)
    mirrored: str | None = None  # "horizontally" / "vertically"
    region: tuple[int, int, int, int] | None = None  # x, y, w, h in the image's pixels
    region_pct: float = 0.0

    def broken(self, limits: PerceptualLimits = DEFAULT_LIMITS) -> list[str]:
        """Names of the limits these figures break (the benchmark counts them one by one)."""
        checks = {
            "delta_e": self.delta_e > limits.delta_e,
            "local_delta_e": self.local_delta_e > (limits.grid_delta_e if self.ssim is None else limits.local_delta_e),
            "brightness": abs(self.brightness_pct) > limits.brightness_pct,
            "contrast": abs(self.contrast_pct) > limits.contrast_pct,
            "saturation": abs(self.saturation_pct) > limits.saturation_pct,
            "hue": abs(self.hue_deg) > limits.hue_deg,
            "sharpness": abs(self.sharpness_pct) > limits.sharpness_pct,
            "ssim": self.ssim is not None and self.ssim < limits.min_ssim,
            "shift": self.shift != (0, 0),
            "mirror": self.mirrored is not None,
        }
        return [name for name, hit in checks.items() if hit]

    def changes(self, limits: PerceptualLimits = DEFAULT_LIMITS) -> list[str]:
        """What changed, in words a reviewer can act on; empty when nothing visible did."""
        broken = self.broken(limits)
        if not broken:
            return []
        words = []
        if self.mirrored:
            return [f"mirrored {self.mirrored}"]
        if "shift" in broken:
            words.append(_shift_words(self.shift))
        if "brightness" in broken:
            words.append(f"{'brighter' if self.brightness_pct > 0 else 'darker'} ({self.brightness_pct:+.1f} %)")
        if "contrast" in broken:
            words.append(f"{'more' if self.contrast_pct > 0 else 'less'} contrast ({self.contrast_pct:+.1f} %)")
        if "saturation" in broken:
            words.append(f"{'more' if self.saturation_pct > 0 else 'less'} saturated ({self.saturation_pct:+.1f} %)")
        if "hue" in broken:
            words.append(f"hue turned {self.hue_deg:+.1f}°")
        if "sharpness" in broken and "shift" not in broken:
            words.append(f"{'sharpened' if self.sharpness_pct > 0 else 'blurred'} "
                         f"(edge strength {self.sharpness_pct:+.0f} %)")
        if "delta_e" in broken and not words:
            words.append(f"colour shift (mean ΔE {self.delta_e:.1f})")
        if "local_delta_e" in broken and self.region is not None and (self.region_pct < 50 or not words):
            x, y, w, h = self.region
            words.append(f"changed region at x={x} y={y} w={w} h={h} ({self.region_pct:.0f} % of the image, "
                         f"ΔE {self.local_delta_e:.1f})")
        if "ssim" in broken and not words:
            words.append(f"structure changed (SSIM {self.ssim:.3f})")
        return words or [f"changed (mean ΔE {self.delta_e:.1f}, local ΔE {self.local_delta_e:.1f})"]

    def describe(self) -> str:
        """The figures, for a passing comparison's message."""
        ssim = f", SSIM {self.ssim:.3f}" if self.ssim is not None else ""
        return f"mean ΔE {self.delta_e:.2f}, local ΔE {self.local_delta_e:.1f}{ssim}"


def _shift_words(shift: tuple[int, int]) -> str:
    dx, dy = shift
    parts = []
    if dx:
        parts.append(f"{abs(dx)} px {'right' if dx > 0 else 'left'}")
    if dy:
        parts.append(f"{abs(dy)} px {'down' if dy > 0 else 'up'}")
    return "shifted " + " and ".join(parts)


def _global(sa: ColourSignature, sb: ColourSignature) -> tuple[float, float, float, float]:
    """Brightness, contrast, saturation and sharpness changes, per cent."""
    return (_pct(sa.gray, sb.gray, _FLOORS["gray"]), _pct(sa.contrast, sb.contrast, _FLOORS["contrast"]),
            _pct(sa.chroma, sb.chroma, _FLOORS["chroma"]), _pct(sa.sharpness, sb.sharpness, _FLOORS["sharpness"]))


def signature_changes(obtained: ColourSignature, baseline: ColourSignature,
                      size: tuple[int, int] = (GRID, GRID)) -> Perceptual:
    """Figures from two signatures alone (hash-only baselines, video frames): no SSIM, shift
    or mirror test; the local ΔE is the worst grid cell's, whose box is in ``size``'s pixels."""
    ga, gb = obtained.grid_array(), baseline.grid_array()
    cell_de = np.linalg.norm(ga - gb, axis=-1)
    worst = np.unravel_index(int(np.argmax(cell_de)), cell_de.shape)
    row, col = int(worst[0]), int(worst[1])
    cw, ch = size[0] / GRID, size[1] / GRID
    box = (round(col * cw), round(row * ch), round(cw), round(ch))
    return Perceptual(float(cell_de.mean()), float(cell_de.max()), *_global(obtained, baseline),
                      hue_deg=_hue_turn(ga, gb, baseline.chroma),
                      region=box, region_pct=100 / (GRID * GRID))


def ssim(x: F, y: F, sigma: float = 1.5) -> F:
    """SSIM map of two lightness images (0..100), Gaussian window."""
    c1, c2 = (0.01 * 100) ** 2, (0.03 * 100) ** 2
    mx, my = _blur(x, sigma), _blur(y, sigma)
    vx = _blur(x * x, sigma) - mx * mx
    vy = _blur(y * y, sigma) - my * my
    cov = _blur(x * y, sigma) - mx * my
    out: F = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return out


def _best_shift(a: F, b: F, reach: int = 3) -> tuple[int, int]:
    """The whole-pixel shift (dx, dy) of ``a`` against ``b`` that explains the difference,
    when it explains it clearly; else (0, 0)."""
    h, w = a.shape
    if h <= 4 * reach or w <= 4 * reach:
        return (0, 0)
    core = b[reach:h - reach, reach:w - reach]

    def err(dx: int, dy: int) -> float:
        return float(np.abs(a[reach + dy:h - reach + dy, reach + dx:w - reach + dx] - core).mean())

    here = err(0, 0)
    if here <= 0.5:  # nothing a shift could explain (drift, identical pixels): skip the search
        return (0, 0)
    best = min((err(dx, dy), (dx, dy)) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1))
    return best[1] if best[0] < 0.5 * here and here > 0.5 else (0, 0)


def _mirror(a: F, b: F) -> str | None:
    here = float(np.abs(a - b).mean())
    if here <= 2:
        return None
    for how, flipped in (("horizontally", b[:, ::-1]), ("vertically", b[::-1, :])):
        there = float(np.abs(a - flipped).mean())
        if there < 0.5 * here:
            return how
    return None


def _region(de_map: F, threshold: float, scale: float) -> tuple[tuple[int, int, int, int] | None, float]:
    """The bounding box (in the original image's pixels) of the largest area over ``threshold``."""
    mask = de_map > threshold
    if not mask.any():
        return None, 0.0
    labels, count = ndimage.label(mask)
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    biggest = int(np.argmax(sizes)) + 1
    ys, xs = np.nonzero(labels == biggest)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    box = (round(x0 * scale), round(y0 * scale), round((x1 - x0) * scale), round((y1 - y0) * scale))
    return box, 100.0 * float(sizes[biggest - 1]) / mask.size


def measure(obtained: Image.Image, baseline: Image.Image, limits: PerceptualLimits = DEFAULT_LIMITS) -> Perceptual:
    """Every perceptual figure of two same-size images."""
    ra, rb = analysis_rgb(obtained), analysis_rgb(baseline)
    scale = obtained.width / ra.shape[1]
    la, lb = lab(ra), lab(rb)
    sa, sb = _signature(ra, la), _signature(rb, lb)
    ba, bb = _blur(la, 1.5), _blur(lb, 1.5)
    de = np.linalg.norm(ba - bb, axis=-1)
    local = float(np.quantile(de, 0.99)) if de.size else 0.0
    La, Lb = _blur(la[..., 0], 0.7), _blur(lb[..., 0], 0.7)
    region, region_pct = _region(_blur(de, 2.0), limits.local_delta_e, scale) if local > limits.local_delta_e \
        else (None, 0.0)
    return Perceptual(
        float(de.mean()), local, *_global(sa, sb), hue_deg=_hue_turn(ba, bb, sb.chroma),
        ssim=float(ssim(La, Lb).mean()), shift=_best_shift(La, Lb), mirrored=_mirror(La, Lb),
        region=region, region_pct=region_pct)


def _heat_lut() -> list[int]:
    red = [min(255, 3 * v) for v in range(256)]
    green = [min(255, max(0, 3 * v - 255)) for v in range(256)]
    blue = [min(255, max(0, 3 * v - 510)) for v in range(256)]
    return red + green + blue


def error_map(obtained: Image.Image, baseline: Image.Image, full_scale: float = 20.0) -> Image.Image:
    """Where a person would see the change: ΔE of the blurred images, ``full_scale`` ΔE = white,
    black below a just-noticeable 1, at the obtained image's size (RGB)."""
    ra, rb = analysis_rgb(obtained), analysis_rgb(baseline)
    de = np.linalg.norm(_blur(lab(ra), 1.5) - _blur(lab(rb), 1.5), axis=-1)
    level = np.clip((de - 1.0) / (full_scale - 1.0), 0, 1) * 255
    grey = Image.fromarray(level.astype(np.uint8), "L").resize(obtained.size, Image.Resampling.NEAREST)
    return Image.merge("RGB", [grey.point(_heat_lut()[i * 256:(i + 1) * 256]) for i in range(3)])


__all__ = [
    "DEFAULT_LIMITS",
    "ColourSignature",
    "Perceptual",
    "PerceptualLimits",
    "error_map",
    "lab",
    "measure",
    "signature_changes",
    "ssim",
]
