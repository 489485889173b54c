"""Decoding output files of every kind into values; pure, no baselines, no pytest.

``kind_of`` says what a file is from its name (ComfyUI reports SaveVideo's ``.mp4`` under
``images`` with ``animated: [true]``, so the output key alone cannot tell). Videos and audio
are decoded with PyAV, the library ComfyUI itself writes them with; it is the optional extra
``comfytest[media]`` and is imported only when a video or audio output is met. Latents are
safetensors files, read here with numpy alone; GLB files are summarised from their header.

Every decoder raises ``Undecodable`` with the reason in words; the comparison modules turn it
into a failure that names the node and the file (a regression, never an infrastructure error).
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

IMAGE_EXT = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".apng"})
VIDEO_EXT = frozenset({".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"})
AUDIO_EXT = frozenset({".flac", ".wav", ".mp3", ".opus", ".ogg", ".m4a", ".aac"})
LATENT_EXT = frozenset({".latent"})
MESH_EXT = frozenset({".glb", ".gltf", ".obj", ".fbx", ".stl", ".ply", ".usdz"})
KINDS = ("image", "video", "audio", "latent", "file")
INSTALL_HINT = "install PyAV with: pip install 'comfytest[media]'"


class Undecodable(Exception):
    """The bytes cannot be read as the kind of file they claim to be."""


def kind_of(filename: str) -> str:
    """``image``, ``video``, ``audio``, ``latent`` or ``file`` (compared exactly)."""
    ext = PurePosixPath(filename.lower()).suffix
    for kind, exts in (("image", IMAGE_EXT), ("video", VIDEO_EXT), ("audio", AUDIO_EXT), ("latent", LATENT_EXT)):
        if ext in exts:
            return kind
    return "file"


def _av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise Undecodable(f"PyAV is not installed ({exc}); {INSTALL_HINT}") from None
    return av


def _open(data: bytes) -> Any:
    av = _av()
    try:
        return av.open(io.BytesIO(data), mode="r")
    except Exception as exc:  # PyAV raises a family of FFmpeg errors
        raise Undecodable(f"FFmpeg cannot open it: {exc}") from None


# ----------------------------------------------------------------------------- video


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    frames: int
    codec: str
    has_audio: bool

    @property
    def duration_s(self) -> float:
        return float(self.frames / self.fps) if self.fps else 0.0

    def describe(self) -> str:
        return f"{self.frames} frames {self.width}x{self.height} at {fps_text(self.fps)} fps ({self.codec})"


def fps_text(fps: Fraction) -> str:
    return str(fps.numerator) if fps.denominator == 1 else f"{float(fps):.3f}".rstrip("0").rstrip(".")


def parse_fps(text: str) -> Fraction:
    return Fraction(text)


def video_info(data: bytes) -> VideoInfo:
    """Size, frame rate and frame count (counted from the packets, not the header)."""
    with _open(data) as container:
        stream = _video_stream(container)
        frames = sum(1 for p in container.demux(stream) if p.size)
        return _info(stream, frames, container)


def _video_stream(container: Any) -> Any:
    if not container.streams.video:
        raise Undecodable("it has no video stream")
    return container.streams.video[0]


def _info(stream: Any, frames: int, container: Any) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return VideoInfo(int(stream.codec_context.width), int(stream.codec_context.height),
                     Fraction(rate) if rate else Fraction(0), frames, str(stream.codec_context.name),
                     bool(container.streams.audio))


def decode_video(data: bytes, wanted: Callable[[int], Collection[int]],
                 visit: Callable[[int, Image.Image], None], max_side: int | None = None) -> VideoInfo:
    """Decode every frame (codecs need their references) and pass the wanted ones, as RGB,
    to ``visit``; ``wanted(frame_count)`` picks them from the count the packets give.
    With ``max_side`` frames are first scaled down (area average, in FFmpeg) to fit it.

    The returned info carries the exact number of decoded frames."""
    with _open(data) as container:
        stream = _video_stream(container)
        packets = sum(1 for p in container.demux(stream) if p.size)
        keep = set(wanted(packets))
        container.seek(0)
        stream.thread_type = "FRAME"
        size = _fit(stream.codec_context.width, stream.codec_context.height, max_side)
        count = 0
        try:
            for frame in container.decode(stream):
                if count in keep:
                    small = frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA")
                    visit(count, small.to_image())
                count += 1
        except Exception as exc:
            raise Undecodable(f"decoding stopped after frame {count}: {exc}") from None
        if count == 0:
            raise Undecodable("it has a video stream but no frame decodes")
        return _info(stream, count, container)


def _fit(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def sample_indices(frames: int, limit: int) -> tuple[int, ...]:
    """All frames, or ``limit`` evenly spread ones (first and last included); 0 = all."""
    if limit <= 0 or frames <= limit:
        return tuple(range(frames))
    if limit == 1:
        return (0,)
    return tuple(sorted({round(i * (frames - 1) / (limit - 1)) for i in range(limit)}))


# ----------------------------------------------------------------------------- audio


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray[Any, Any]  # float32 [channels, n]
    sample_rate: int
    codec: str

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_ms(self) -> float:
        return self.samples.shape[1] * 1000.0 / self.sample_rate if self.sample_rate else 0.0

    def describe(self) -> str:
        return f"{self.duration_ms / 1000:.3f} s, {self.sample_rate} Hz, {self.channels} channel(s) ({self.codec})"


def decode_audio(data: bytes) -> Audio:
    """The first audio stream as float32 samples, one row per channel."""
    av = _av()
    with _open(data) as container:
        if not container.streams.audio:
            raise Undecodable("it has no audio stream")
        stream = container.streams.audio[0]
        channels = stream.codec_context.channels or 1
        rate = stream.codec_context.sample_rate or stream.rate
        resampler = av.AudioResampler(format="fltp", layout=stream.codec_context.layout, rate=rate)
        chunks: list[np.ndarray[Any, Any]] = []
        try:
            for frame in container.decode(stream):
                chunks.extend(f.to_ndarray() for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray() for f in resampler.resample(None))
        except Exception as exc:
            raise Undecodable(f"audio decoding failed: {exc}") from None
        if not chunks:
            raise Undecodable("it has an audio stream but no sample decodes")
        samples = np.concatenate(chunks, axis=1).astype(np.float32).reshape(channels, -1)
        return Audio(samples, int(rate), str(stream.codec_context.name))


# ----------------------------------------------------------------------------- latents

_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
           "I8": "i1", "U8": "u1", "BOOL": "?"}


@dataclass(frozen=True)
class Tensor:
    dtype: str  # safetensors' name: F32, F16, BF16...
    shape: tuple[int, ...]
    values: np.ndarray[Any, Any] = field(repr=False, compare=False)  # float64, for comparison

    def describe(self) -> str:
        return f"{self.dtype}[{'x'.join(map(str, self.shape))}]"


def read_safetensors(data: bytes) -> dict[str, Tensor]:
    """Every tensor of a safetensors file (``.latent``), values widened to float64."""
    if len(data) < 8:
        raise Undecodable(f"{len(data)} bytes is too short for a safetensors file")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise Undecodable(f"its header claims {size} bytes but the file has {len(data)}")
    try:
        header = json.loads(data[8:8 + size])
    except ValueError as exc:
        raise Undecodable(f"its safetensors header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise Undecodable("its safetensors header is not a JSON object")
    body = data[8 + size:]
    return {name: _tensor(name, spec, body) for name, spec in sorted(header.items()) if name != "__metadata__"}


def _tensor(name: str, spec: Any, body: bytes) -> Tensor:
    try:
        dtype, shape, (start, end) = spec["dtype"], tuple(int(n) for n in spec["shape"]), spec["data_offsets"]
    except (KeyError, TypeError, ValueError) as exc:
        raise Undecodable(f"tensor {name!r} has a malformed header entry ({exc})") from None
    raw = body[start:end]
    if dtype == "BF16":
        values = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
    elif dtype in _DTYPES:
        values = np.frombuffer(raw, _DTYPES[dtype])
    else:
        raise Undecodable(f"tensor {name!r} has dtype {dtype}, which comfytest cannot read")
    if values.size != int(np.prod(shape)):
        raise Undecodable(f"tensor {name!r} should hold {int(np.prod(shape))} values, its data holds {values.size}")
    return Tensor(str(dtype), shape, values.astype(np.float64).reshape(shape))


# ----------------------------------------------------------------------------- files


@dataclass(frozen=True)
class FileSummary:
    """What an exact comparison keeps of a file: its digest, size and (GLB) mesh counts."""

    sha256: str
    size: int
    vertices: int | None = None
    faces: int | None = None
    digest_of: str = "the whole file"

    def describe(self) -> str:
        mesh = f", {self.vertices} vertices, {self.faces} faces" if self.vertices is not None else ""
        return f"{self.size} bytes{mesh}, sha256 {self.sha256[:12]} of {self.digest_of}"


def summarize_file(filename: str, data: bytes) -> FileSummary:
    if filename.lower().endswith(".glb"):
        return _glb(data)
    return FileSummary(hashlib.sha256(data).hexdigest(), len(data))


def _glb(data: bytes) -> FileSummary:
    """Counts from the JSON chunk; the digest skips ``asset.extras`` (ComfyUI writes the
    prompt there, so the same mesh from an edited workflow would otherwise differ)."""
    if len(data) < 20 or data[:4] != b"glTF":
        raise Undecodable("it does not start with a GLB header ('glTF' magic)")
    (json_len, json_type) = struct.unpack("<II", data[12:20])
    if json_type != 0x4E4F534A or 20 + json_len > len(data):
        raise Undecodable("its first chunk is not a complete JSON chunk")
    try:
        gltf = json.loads(data[20:20 + json_len])
    except ValueError as exc:
        raise Undecodable(f"its JSON chunk is not JSON: {exc}") from None
    vertices, faces = _mesh_counts(gltf)
    if isinstance(gltf.get("asset"), dict):
        gltf["asset"].pop("extras", None)
    digest = hashlib.sha256(json.dumps(gltf, sort_keys=True).encode() + data[20 + json_len:])
    return FileSummary(digest.hexdigest(), len(data), vertices, faces, "the mesh (metadata ignored)")


def _mesh_counts(gltf: Mapping[str, Any]) -> tuple[int, int]:
    accessors = gltf.get("accessors") or []
    vertices = faces = 0
    try:
        for mesh in gltf.get("meshes") or []:
            for prim in mesh.get("primitives") or []:
                vertices += int(accessors[prim["attributes"]["POSITION"]]["count"])
                if "indices" in prim:
                    faces += int(accessors[prim["indices"]]["count"]) // 3
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise Undecodable(f"its meshes reference accessors that are not there ({exc})") from None
    return vertices, faces


#: the PNG signature, and the chunks that say nothing about the decoded pixels: text (ComfyUI's
#: SaveImage writes the prompt and the workflow there), the modification time and EXIF (save
#: nodes of other packs write dates there; Pillow does not apply its orientation when decoding)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_METADATA = frozenset({b"tEXt", b"zTXt", b"iTXt", b"tIME", b"eXIf"})


def png_image_digest(data: bytes) -> str | None:
    """A digest of what a PNG's pixels are decoded from: every chunk but its text, time and EXIF
    metadata, as stored (compressed, with their CRCs). Two PNGs with the same digest decode to
    the same pixels, whatever their metadata; the same pixels written by another encoder or
    compression level give another digest (the digest then says nothing, it never says "same"
    wrongly). ``sha256:`` and 32 hex digits (128 bits); None for anything that is not a whole,
    well-formed PNG (signature, IHDR first, every chunk inside the data, IEND last), which is
    left to the decoder. ~0.1 ms for a 256x256 image, a tenth of decoding it."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    digest = hashlib.sha256()
    view = memoryview(data)
    pos, end, first = len(_PNG_SIGNATURE), len(data), True
    while pos + 12 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        stop = pos + 12 + length
        if stop > end or (first and kind != b"IHDR"):
            return None
        first = False
        if kind not in _PNG_METADATA:
            digest.update(view[pos:stop])
        if kind == b"IEND":
            return f"sha256:{digest.hexdigest()[:32]}" if stop == end else None
        pos = stop
    return None


def decode_image(data: bytes) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:
        raise Undecodable(f"Pillow cannot decode it as an image: {exc}") from None
    return img


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class MediaSettings:
    """How the outputs other than images are compared, for one output of one case.

    The ``[media]`` table of a settings file sets the last five (see ``casefile``); the hash,
    its size, the tolerance and hash-only mode are the case's, as for images."""

    method: str = "phash"
    hash_size: int = 8
    tolerance: int = 2
    hash_only: bool = False
    video_frames: int = 240  # frames hashed per video; longer ones are sampled evenly; 0 = all
    keep_video: bool = False  # keep the full video file in baselines (else sheet + hashes only)
    audio_duration_ms: float = 20.0  # allowed difference in duration
    audio_distance: float = 1.0  # allowed log-mel spectrogram distance (mean |dB| difference)
    latent_tolerance: float = 1e-4  # allowed largest |difference| of a latent value
