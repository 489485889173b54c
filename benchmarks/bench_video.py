"""Time comparing a video output with its baseline: ``python benchmarks/bench_video.py``.

The video is 10 s of 512x512 at 24 fps (240 frames), H.264 in MP4 as ComfyUI's SaveVideo writes
it (yuv420p), made here with PyAV from a seeded moving pattern plus noise. Its baseline is
recorded once (``.video.txt`` + contact sheet); then the full check is timed: decode every
frame, scale it down and hash it, compare with the 240 baseline hashes, keep the obtained copy
for the report. Side by side in the same run: decoding alone, and the check with a 48-frame
sample. Target: the full check under 2 s on this machine.
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comfytest.compare.baselines import BaselineKey, BaselineStore
from comfytest.compare.video import check_video
from comfytest.media import MediaSettings, decode_video, kind_of
from comfytest.outputs import FileRef, OutputFile

TARGET_S = 2.0


def make_video(seconds: int = 10, size: int = 512, fps: int = 24, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("h264", rate=Fraction(fps))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(seconds * fps):
            wave = np.sin((xs + 3 * i) / 40.0) * np.cos((ys - 2 * i) / 55.0)
            rgb = np.stack([wave, np.roll(wave, i, axis=0), -wave], axis=-1)
            img = 127 + 100 * rgb + rng.normal(0, 8, rgb.shape)
            frame = av.VideoFrame.from_ndarray(img.clip(0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall and median CPU seconds, after one warm-up call."""
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = make_video()
    file = OutputFile("3", 0, FileRef("bench.mp4"), kind_of("bench.mp4"), data)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store, key = BaselineStore(root / "baselines"), BaselineKey("bench", "video", "3_0")

        sampled = BaselineKey("bench", "sampled", "3_0")

        def check(frames: int, mode: str = "compare") -> str:
            settings = MediaSettings(video_frames=frames)
            result = check_video(store, key if frames == 240 else sampled, file, mode=mode,  # type: ignore[arg-type]
                                 results_dir=root / "results", settings=settings, node="node 3 (SaveVideo)").result
            return result.status

        assert check(240, "update") == "created" and check(48, "update") == "created"
        assert check(240) == "passed" and check(48) == "passed"
        rows = [
            ("decode only (every frame, no hash)", timed(lambda: decode_video(data, lambda n: (), lambda i, f: None), args.repeat)),
            ("check, all 240 frames hashed", timed(lambda: check(240), args.repeat)),
            ("check, 48-frame sample", timed(lambda: check(48), args.repeat)),
        ]
    print(f"video 10 s 512x512 24 fps H.264, {len(data) / 1e6:.1f} MB; Python {platform.python_version()}, "
          f"PyAV {av.__version__}; median of {args.repeat} runs")
    print(f"{'':<38} {'wall s':>8} {'CPU s':>8}")
    for label, (wall, cpu) in rows:
        print(f"{label:<38} {wall:>8.2f} {cpu:>8.2f}")
    full = rows[1][1][0]
    print(f"target: full check < {TARGET_S:g} s -> {'met' if full < TARGET_S else 'NOT met'} ({full:.2f} s wall; "
          "CPU s is the figure to trust on a busy machine: other processes inflate wall time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
