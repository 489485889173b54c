"""Time hashing and comparing realistic images: ``python benchmarks/bench_imagecompare.py``.

Images are a seeded colour gradient plus Gaussian noise (so hashes and pixel statistics do
real work) and a copy perturbed by +-1 in random channels, like two CPU thread counts produce.
Target: compare_images (phash, with pixel metrics) on a 1024x1024 pair in under 20 ms.
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

# runnable from a checkout without installing the package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comfytest.compare.images import METHODS, compare_images, image_hash, pixel_metrics

TARGET_MS = 20.0


def make_pair(size: int, seed: int = 0) -> tuple[Image.Image, Image.Image]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) * (255.0 / size)
    base = np.stack([x, y, (x + y) / 2], axis=-1)
    noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    nudge = rng.integers(-1, 2, noisy.shape, dtype=np.int16)
    perturbed = np.clip(noisy.astype(np.int16) + nudge, 0, 255).astype(np.uint8)
    return Image.fromarray(noisy, "RGB"), Image.fromarray(perturbed, "RGB")


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float, float]:
    """(median, p90) wall time and median CPU time in milliseconds, after one warm-up call.

    CPU time is the figure to trust on a busy machine: other processes inflate wall time."""
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    wall.sort()
    p90 = wall[min(len(wall) - 1, int(0.9 * len(wall)))]
    return statistics.median(wall), p90, statistics.median(cpu)


def row(label: str, size: int, stats: tuple[float, float, float], note: str = "") -> str:
    return f"{label:<28} {size:>5}²  {stats[0]:>9.2f}  {stats[1]:>9.2f}  {stats[2]:>9.2f}  {note}"


def bench_size(size: int, repeat: int, methods: list[str]) -> list[str]:
    a, b = make_pair(size)
    lines = [  # both images are RGB already, as compare_images would leave them
        row("pixel metrics only", size, timed(lambda: pixel_metrics(a, b), repeat)),
        row("compare identical (phash)", size, timed(
            lambda: compare_images(a, a.copy()), repeat)),
    ]
    for method in methods:
        # whash and colorhash are an order of magnitude slower; fewer repetitions keep it short
        reps = repeat if method in ("phash", "dhash", "ahash") else max(5, repeat // 10)
        hash_stats = timed(functools.partial(image_hash, a, method), reps)
        total = timed(functools.partial(compare_images, a, b, method=method), reps)
        note = ""
        if method == "phash" and size == 1024:
            note = "PASS" if total[0] < TARGET_MS else "OVER TARGET"
            note += f" (target < {TARGET_MS:.0f} ms)"
        lines.append(row(f"hash one image ({method})", size, hash_stats))
        lines.append(row(f"compare pair ({method})", size, total, note))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = parser.parse_args()
    print(f"{platform.python_implementation()} {platform.python_version()} on "
          f"{platform.machine()}, Pillow {PIL.__version__}, numpy {np.__version__}")
    print("compare pair = hash both images + pixel metrics (max, mean, PSNR)")
    print(f"{'what':<28} {'size':>6}  {'median ms':>9}  {'p90 ms':>9}  {'cpu ms':>9}")
    for size in args.sizes:
        for line in bench_size(size, args.repeat, args.methods):
            print(line)


if __name__ == "__main__":
    main()
