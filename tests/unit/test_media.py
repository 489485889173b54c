"""Decoding and comparing video, audio, latent and other output files, without a server.

Media files are made here with PyAV (what ComfyUI writes them with) and numpy, then walked
through the same baseline lifecycle as images: missing → created → passed → changed → mismatch
(with artefacts) → an update that changes nothing rewrites nothing.
"""

from __future__ import annotations

import io
import json
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from comfytest.compare.baselines import BaselineKey, BaselineStore
from comfytest.compare.files import check_file
from comfytest.errors import ConfigError
from comfytest.media import (
    MediaSettings,
    Undecodable,
    decode_audio,
    kind_of,
    png_image_digest,
    read_safetensors,
    sample_indices,
    summarize_file,
)
from comfytest.outputs import FileRef, OutputFile
from comfytest.workflows.casefile import load_cases
from comfytest.workflows.workflow import load_workflow

WORKFLOWS = Path(__file__).parent.parent / "data" / "workflows"


def video(frames: int, seed: int = 0, size: int = 64, fps: int = 8, fmt: str = "mp4") -> bytes:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        stream = out.add_stream("h264" if fmt == "mp4" else "libvpx-vp9", rate=Fraction(fps))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            phase = rng.random() * 6
            img = (127 + 120 * np.sin(xs / (4 + i % 5) + phase) * np.cos(ys / 7.0))[..., None].repeat(3, 2)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img.clip(0, 255).astype(np.uint8), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def flac(freq: float, seconds: float = 0.5, rate: int = 16000, gain: float = 0.5) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    samples = (gain * np.sin(2 * np.pi * freq * t)).astype(np.float32)[None]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


def safetensors(tensors: dict[str, np.ndarray[Any, Any]], dtype: str = "F32") -> bytes:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    body, offset = b"", 0
    for name, value in tensors.items():
        raw = value.astype("<f4").tobytes() if dtype == "F32" else (value.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
        header[name] = {"dtype": dtype, "shape": list(value.shape), "data_offsets": [offset, offset + len(raw)]}
        body += raw
        offset += len(raw)
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + body


def output(name: str, data: bytes, problem: str | None = None) -> OutputFile:
    return OutputFile("9", 0, FileRef(name), kind_of(name), data, problem=problem)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Any]:
    return {"store": BaselineStore(tmp_path / "baselines"), "results": tmp_path / "results",
            "key": BaselineKey("flow", "case", "9_0")}


def check(env: dict[str, Any], file: OutputFile, mode: str = "compare", **settings: Any) -> Any:
    return check_file(env["store"], env["key"], file, mode=mode, results_dir=env["results"],  # type: ignore[arg-type]
                      settings=MediaSettings(**settings), node="node 9 'Save' (SaveVideo)")


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_kinds_are_told_by_file_name() -> None:
    assert [kind_of(n) for n in ("a.PNG", "v.mp4", "v.webm", "a.flac", "a.opus", "x.latent", "m.glb", "x")] == [
        "image", "video", "video", "audio", "audio", "latent", "file", "file"]


@pytest.mark.parametrize(("frames", "limit", "expected"), [
    (5, 240, (0, 1, 2, 3, 4)), (5, 0, (0, 1, 2, 3, 4)), (100, 5, (0, 25, 50, 74, 99)), (7, 1, (0,)),
])
def test_long_videos_are_sampled_evenly_first_and_last_included(frames: int, limit: int, expected: tuple[int, ...]) -> None:
    assert sample_indices(frames, limit) == expected


def test_video_lifecycle_names_first_and_worst_frame(env: dict[str, Any]) -> None:
    base = output("v.mp4", video(6, seed=1))
    missing = check(env, base)
    assert missing.result.status == "missing" and "Run pytest with --comfy-update-baselines" in missing.result.message
    assert check(env, base, "update").result.status == "created"
    root = env["store"].root
    assert sorted(files(root)) == ["flow/case/9_0.contact.png", "flow/case/9_0.video.txt"]
    recorded = files(root)
    passed = check(env, base)
    assert passed.result.status == "passed" and passed.metrics["distance"] == 0
    assert passed.metrics | {"fps": "8"} == passed.metrics and passed.metrics["frames"] == 6

    changed = check(env, output("v.mp4", video(6, seed=2)))
    assert changed.result.status == "mismatch"
    msg = changed.result.message
    worst = changed.metrics["worst_frame"]
    assert f"worst frame {worst} (distance {changed.metrics['distance']})" in msg and "first frame " in msg
    for name in ("9_0.obtained.mp4", "9_0.obtained.png", "9_0.diff.png", "9_0.side_by_side.png"):
        assert (env["results"] / "flow" / "case" / name).is_file(), name
    longer = check(env, output("v.mp4", video(7, seed=1)))
    assert "7 frames, baseline has 6" in longer.result.message
    assert check(env, base, "update").result.status == "unchanged" and files(root) == recorded


def test_video_keeps_the_full_file_only_when_asked_and_hash_only_keeps_no_sheet(env: dict[str, Any]) -> None:
    data = video(3)
    check(env, output("v.webm", data), "update", keep_video=True)
    assert sorted(files(env["store"].root)) == ["flow/case/9_0.contact.png", "flow/case/9_0.video.txt",
                                                 "flow/case/9_0.webm"]
    other = {**env, "store": BaselineStore(env["store"].root.parent / "hash-only")}
    check(other, output("v.mp4", data), "update", hash_only=True)
    assert sorted(files(other["store"].root)) == ["flow/case/9_0.video.txt"]
    assert check(other, output("v.mp4", data), hash_only=True).result.status == "passed"


def test_audio_compares_rate_channels_duration_and_log_mel(env: dict[str, Any]) -> None:
    tone = flac(440)
    assert decode_audio(tone).describe().startswith("0.500 s, 16000 Hz, 1 channel(s)")
    check(env, output("a.flac", tone), "update")
    assert sorted(files(env["store"].root)) == ["flow/case/9_0.audio.txt", "flow/case/9_0.flac"]
    ok = check(env, output("a.flac", tone))
    assert ok.result.status == "passed" and ok.metrics["distance"] == 0
    assert (env["results"] / "flow" / "case" / "9_0.waveform.png").is_file(), "the report shows it"
    quieter = check(env, output("a.flac", flac(440, gain=0.1)))
    assert quieter.result.status == "mismatch" and "log-mel distance" in quieter.result.message
    assert check(env, output("a.flac", flac(440, gain=0.1)), audio_distance=50).result.status == "passed"
    longer = check(env, output("a.flac", flac(440, seconds=0.6)), audio_distance=50)
    assert "duration 600.0 ms, baseline 500.0 ms (100.0 ms > tolerance 20 ms)" in longer.result.message
    other_rate = check(env, output("a.flac", flac(440, rate=8000)), audio_distance=50)
    assert "sample rate 8000 Hz, baseline 16000 Hz" in other_rate.result.message
    for name in ("9_0.obtained.flac", "9_0.waveform.png", "9_0.spectrogram.png"):
        assert str(env["results"] / "flow" / "case" / name) in quieter.result.message


def test_latents_shape_dtype_exactly_values_by_tolerance(env: dict[str, Any]) -> None:
    values = np.linspace(-1, 1, 2 * 4 * 8 * 8).reshape(2, 4, 8, 8)
    check(env, output("x.latent", safetensors({"latent_tensor": values})), "update")
    assert check(env, output("x.latent", safetensors({"latent_tensor": values + 1e-6}))).result.status == "passed"
    off = check(env, output("x.latent", safetensors({"latent_tensor": values + 0.01})))
    assert off.result.status == "mismatch" and "largest value difference 0.01 > tolerance 0.0001" in off.result.message
    shape = check(env, output("x.latent", safetensors({"latent_tensor": values.reshape(1, 8, 8, 8)})))
    assert "latent_tensor is F32[1x8x8x8], baseline F32[2x4x8x8]" in shape.result.message
    bf16 = read_safetensors(safetensors({"t": np.array([1.0, -2.5])}, "BF16"))["t"]
    assert bf16.dtype == "BF16" and bf16.values.tolist() == [1.0, -2.5]


def test_other_files_exactly_and_glb_counts(env: dict[str, Any]) -> None:
    check(env, output("notes.bin", b"abc"), "update")
    ok = check(env, output("notes.bin", b"abc"))
    assert ok.result.status == "passed" and ok.compared == "compared exactly (sha256 of the whole file)"
    assert "compared exactly: content differs" in check(env, output("notes.bin", b"abd")).result.message
    with pytest.raises(Undecodable, match="GLB header"):
        summarize_file("m.glb", b"nope")


@pytest.mark.parametrize("name", ["v.mp4", "a.flac", "x.latent", "m.glb", "i.png"])
def test_undecodable_output_fails_naming_node_file_and_why(env: dict[str, Any], name: str) -> None:
    problem = "Pillow cannot decode it" if name.endswith(".png") else None
    result = check(env, output(name, b"garbage bytes", problem), "update").result
    assert result.status == "mismatch" and not result.ok
    assert f"node 9 'Save' (SaveVideo) produced {name}" in result.message and "cannot be decoded" in result.message
    assert not env["store"].root.exists(), "nothing is recorded for an output that does not decode"


def test_media_table_in_the_settings_file(tmp_path: Path) -> None:
    wf = load_workflow(WORKFLOWS / "tiny_txt2img.json")
    path = tmp_path / "tiny_txt2img.toml"
    path.write_text("[media]\nvideo_frames = 16\n\n[cases.a]\nmedia = { audio_distance = 2.5 }\n")
    (case,) = load_cases(path, wf)
    assert dict(case.media) == {"video_frames": 16, "audio_distance": 2.5}
    path.write_text("[media]\nvideo_frame = 16\n")
    with pytest.raises(ConfigError, match=r"unknown key 'media\.video_frame' \(did you mean 'video_frames'\?\)"):
        load_cases(path, wf)
    path.write_text("[media]\nkeep_video = 1\n")
    with pytest.raises(ConfigError, match=r"'media\.keep_video' must be true or false"):
        load_cases(path, wf)


def test_calibration_sees_a_video_as_the_animation_of_its_hashed_frames() -> None:
    from comfytest.compare.video import HASH_SIDE, as_animation

    data = video(5, size=160)
    assert getattr(as_animation(data, 240), "n_frames", 1) == 5
    sampled = as_animation(data, 3)
    assert getattr(sampled, "n_frames", 1) == 3 and max(sampled.size) == HASH_SIDE


def test_profiles_read_the_common_baseline_and_write_their_own(env: dict[str, Any], tmp_path: Path) -> None:
    data = output("v.mp4", video(4, seed=3))
    check(env, data, "update")
    profiled = {**env, "store": BaselineStore(env["store"].root, profile="gpu-x")}
    assert check(profiled, data).result.status == "passed", "falls back to the common baseline"
    changed = output("v.mp4", video(4, seed=4))
    assert check(profiled, changed, "update").result.status == "updated"
    names = sorted(files(env["store"].root))
    assert "_profiles/gpu-x/flow/case/9_0.video.txt" in names and "flow/case/9_0.video.txt" in names
    assert check(profiled, changed).result.status == "passed"
    assert check(env, changed).result.status == "mismatch", "the common baseline is untouched"


def _comfy_video(frames: np.ndarray[Any, Any]) -> bytes:
    """Frames (0..1 floats) encoded as ComfyUI's SaveVideo does: truncated to bytes, yuv420p H.264."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("h264", rate=Fraction(8))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            img = np.clip(f * 255, 0, 255).astype(np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    return buf.getvalue()


def test_noise_video_passes_drift_of_another_cpu_and_fails_a_visible_change(env: dict[str, Any]) -> None:
    # the example suite's video_noise case: seeded noise frames, whose phash H.264 moves by up
    # to 8 bits when the pixels drift by ±1 level (another CPU's kernels) though nothing shows
    from comfytest.nodepack import noise_pixels

    frames = noise_pixels(64, 64, 3, 8).astype(np.float32)
    assert check(env, output("v.mp4", _comfy_video(frames)), "update").result.status == "created"
    assert "colour=" not in (env["store"].root / "flow/case/9_0.video.txt").read_text()  # frame lines instead
    assert " lab1:" in (env["store"].root / "flow/case/9_0.video.txt").read_text()
    for seed in range(3):
        drift = np.random.default_rng(seed).integers(-2, 3, frames.shape) / 255
        drifted = check(env, output("v.mp4", _comfy_video(frames + drift)))
        assert drifted.result.status == "passed", drifted.result.message
    brighter = check(env, output("v.mp4", _comfy_video(frames * 1.05)))
    assert brighter.result.status == "mismatch" and "brighter (+" in brighter.result.message
    swapped = check(env, output("v.mp4", _comfy_video(frames[..., ::-1].copy())))
    assert swapped.result.status == "mismatch"


# -- issue 26: the digest that lets an unchanged PNG output skip decoding


def _png(pixels: np.ndarray, text: str | None = None, level: int = 4) -> bytes:
    """As a save node writes it: the prompt in text chunks, a date in EXIF."""
    info = PngImagePlugin.PngInfo()
    exif = Image.Exif()
    if text is not None:
        info.add_text("prompt", text)
        info.add_itxt("workflow", text * 2, zip=True)
        exif[0x0132] = f"2026:12:06 {len(text) % 24:02d}:00:00"  # DateTime
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info, compress_level=level, exif=exif)
    return buffer.getvalue()


def test_png_image_digest_ignores_metadata_and_sees_every_pixel() -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    digest = png_image_digest(_png(pixels, "a prompt"))
    assert digest is not None and digest.startswith("sha256:") and len(digest) == 7 + 32
    assert png_image_digest(_png(pixels, "another prompt, longer")) == digest == png_image_digest(_png(pixels))
    one_off = pixels.copy()
    one_off[31, 47, 2] ^= 1
    assert png_image_digest(_png(one_off, "a prompt")) != digest
    # the same pixels from another encoder setting: another digest (never a wrong "same")
    assert png_image_digest(_png(pixels, "a prompt", level=9)) != digest


@pytest.mark.parametrize("damage", ["truncated", "trailing", "no IHDR first", "chunk past the end", "not a PNG"])
def test_png_image_digest_is_none_for_anything_but_a_whole_png(damage: str) -> None:
    data = _png(np.zeros((8, 8, 3), np.uint8), "x")
    broken = {
        "truncated": data[:-6], "trailing": data + b"\0",
        "no IHDR first": data[:8] + struct.pack(">I4s", 0, b"tIME") + struct.pack(">I", 0) + data[8:],
        "chunk past the end": data[:8] + struct.pack(">I", 1 << 30) + data[12:],
        "not a PNG": b"GIF89a" + data[6:],
    }[damage]
    assert png_image_digest(broken) is None
