"""Seeded picture-like test images for the comparison's unit tests: colour gradients, a few
coloured shapes and fine texture, the content the perceptual criteria are made for."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def scene(size: int = 128, *, scale: float = 1.0, blur: float = 0.6) -> Image.Image:
    """The scene at ``size`` px; ``scale`` < 1 darkens it (0.1: a nearly black picture, mean
    level about 11, whose visible changes move no value by more than a few levels)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    rgb = np.stack([200 * x + 30, 150 * y + 50, 180 * (1 - x) * (1 - y) + 40], -1)
    for cx, cy, r, colour in ((0.3, 0.3, 0.15, (220, 60, 40)), (0.7, 0.6, 0.2, (40, 90, 200)),
                              (0.5, 0.8, 0.1, (240, 220, 60))):
        rgb[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = colour
    texture = np.random.default_rng(3).normal(0, 12, (size, size, 1))
    img = Image.fromarray(np.clip((rgb + texture) * scale, 0, 255).astype(np.uint8), "RGB")
    return img.filter(ImageFilter.GaussianBlur(blur))
