"""A tiny random-weight SD1.5 checkpoint, written without torch.

A real ComfyUI runs CheckpointLoaderSimple → CLIPTextEncode → KSampler → VAEDecode on this file
in well under a second on a CPU, so tests can exercise a real diffusion pipeline without a
model download. ComfyUI 0.3.75 detects the key layout as SD15:

* UNet: model_channels 320, context_dim 768, conv ``proj_in``, one level with one ResBlock and
  one SpatialTransformer, two output ResBlocks, no middle block (depth is read off the keys);
* CLIP-L: complete (12 layers, 768 wide, 49408 tokens) because its size is fixed by
  ``comfy/sd1_clip_config.json`` and missing layers would stay uninitialised (NaN conditioning);
* VAE: TAESD (``taesd_decoder.1.weight`` selects it) plus the scalars ``vae_scale``/``vae_shift``.

Weights come from splitmix64 keyed on the seed and the tensor name, computed in numpy integer
arithmetic, so a seed gives a byte-identical file on every machine. Scales are chosen so that
images are textured rather than flat and the prompt visibly changes them.

The file carries one metadata key holding a fingerprint of the seed, the layout and this
module's source: editing the generator makes ``ensure_tiny_checkpoint`` rewrite old files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import struct
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

#: the file name the shared tiny workflows load from ``models/checkpoints``
CHECKPOINT_NAME = "tiny-sd15-random.safetensors"
METADATA_KEY = "comfytest.comfy.tinymodel"

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
# Elements per generated chunk; a multiple of 4 because each uint64 yields four 16-bit draws.
_CHUNK = 1 << 22

_UNET = "model.diffusion_model."
_CLIP = "cond_stage_model.transformer.text_model."
_VAE = "first_stage_model."

# Latents leave the sampler at roughly sigma_max / 0.18215 ≈ 80 in magnitude (the random UNet
# does not denoise); this brings them near TAESD's ±3 clamp without saturating it.
_VAE_SCALE = 0.02
# Cross-attention is the only path from the prompt to the image; a larger gain there makes
# cond - uncond large enough that CFG turns a prompt change into a visible change.
_CROSS_GAIN = 8.0


@dataclass(frozen=True)
class Init:
    """How one tensor is filled: ``mean + uniform noise of standard deviation std``."""

    std: float = 0.0
    mean: float = 0.0
    #: subtract each output filter's mean, so ReLU features (all >= 0) add no colour offset
    centred: bool = False


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    init: Init

    @property
    def size(self) -> int:
        return math.prod(self.shape)


# ---------------------------------------------------------------- layout


def _fan_in(shape: tuple[int, ...]) -> int:
    return math.prod(shape[1:]) if len(shape) > 1 else 1


def _dense(name: str, shape: tuple[int, ...], gain: float = 1.0, bias: bool = True,
           centred: bool = False, bias_mean: float = 0.0) -> list[TensorSpec]:
    std = gain / math.sqrt(_fan_in(shape))
    specs = [TensorSpec(f"{name}.weight", shape, Init(std=std, centred=centred))]
    if bias:
        specs.append(TensorSpec(f"{name}.bias", (shape[0],), Init(mean=bias_mean)))
    return specs


def _norm(name: str, width: int) -> list[TensorSpec]:
    return [TensorSpec(f"{name}.weight", (width,), Init(mean=1.0)),
            TensorSpec(f"{name}.bias", (width,), Init())]


def _resblock(p: str, cin: int, cout: int) -> list[TensorSpec]:
    specs = _norm(f"{p}in_layers.0", cin) + _dense(f"{p}in_layers.2", (cout, cin, 3, 3))
    specs += _dense(f"{p}emb_layers.1", (cout, 1280))
    specs += _norm(f"{p}out_layers.0", cout) + _dense(f"{p}out_layers.3", (cout, cout, 3, 3))
    if cin != cout:
        specs += _dense(f"{p}skip_connection", (cout, cin, 1, 1))
    return specs


def _spatial_transformer(p: str, ch: int, context: int) -> list[TensorSpec]:
    b = f"{p}transformer_blocks.0."
    specs = _norm(f"{p}norm", ch) + _dense(f"{p}proj_in", (ch, ch, 1, 1))
    for q in ("to_q", "to_k", "to_v"):
        specs += _dense(f"{b}attn1.{q}", (ch, ch), bias=False)
    specs += _dense(f"{b}attn1.to_out.0", (ch, ch))
    specs += _dense(f"{b}attn2.to_q", (ch, ch), bias=False)
    specs += _dense(f"{b}attn2.to_k", (ch, context), gain=_CROSS_GAIN, bias=False)
    specs += _dense(f"{b}attn2.to_v", (ch, context), bias=False)
    specs += _dense(f"{b}attn2.to_out.0", (ch, ch), gain=_CROSS_GAIN)
    specs += _dense(f"{b}ff.net.0.proj", (ch * 8, ch)) + _dense(f"{b}ff.net.2", (ch, ch * 4))
    for n in ("norm1", "norm2", "norm3"):
        specs += _norm(f"{b}{n}", ch)
    return specs + _dense(f"{p}proj_out", (ch, ch, 1, 1))


def _unet() -> list[TensorSpec]:
    specs = _dense(f"{_UNET}time_embed.0", (1280, 320)) + _dense(f"{_UNET}time_embed.2", (1280, 1280))
    specs += _dense(f"{_UNET}input_blocks.0.0", (320, 4, 3, 3))
    specs += _resblock(f"{_UNET}input_blocks.1.0.", 320, 320)
    specs += _spatial_transformer(f"{_UNET}input_blocks.1.1.", 320, 768)
    specs += _resblock(f"{_UNET}output_blocks.0.0.", 640, 320)
    specs += _resblock(f"{_UNET}output_blocks.1.0.", 640, 320)
    return specs + _norm(f"{_UNET}out.0", 320) + _dense(f"{_UNET}out.2", (4, 320, 3, 3))


def _clip_layer(p: str) -> list[TensorSpec]:
    specs = _norm(f"{p}layer_norm1", 768) + _norm(f"{p}layer_norm2", 768)
    for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
        specs += _dense(f"{p}self_attn.{proj}", (768, 768))
    return specs + _dense(f"{p}mlp.fc1", (3072, 768)) + _dense(f"{p}mlp.fc2", (768, 3072))


def _clip() -> list[TensorSpec]:
    # Token embeddings of unit scale keep each token's identity strong against the residual
    # stream, so different prompts give clearly different conditioning.
    specs = [TensorSpec(f"{_CLIP}embeddings.token_embedding.weight", (49408, 768), Init(std=1.0)),
             TensorSpec(f"{_CLIP}embeddings.position_embedding.weight", (77, 768), Init(std=0.5))]
    for i in range(12):
        specs += _clip_layer(f"{_CLIP}encoder.layers.{i}.")
    return specs + _norm(f"{_CLIP}final_layer_norm", 768)


def _taesd_block(p: str) -> list[TensorSpec]:
    # He gain for the ReLU convs; the last conv of the residual branch is damped so that ten
    # stacked blocks do not blow the activations up.
    relu = math.sqrt(2.0)
    return (_dense(f"{p}conv.0", (64, 64, 3, 3), relu) + _dense(f"{p}conv.2", (64, 64, 3, 3), relu)
            + _dense(f"{p}conv.4", (64, 64, 3, 3), 0.5))


def _taesd(part: str, convs: dict[int, tuple[int, int, bool]], blocks: Sequence[int]) -> list[TensorSpec]:
    specs: list[TensorSpec] = []
    for i, (cout, cin, bias) in convs.items():
        specs += _dense(f"{_VAE}{part}.{i}", (cout, cin, 3, 3), math.sqrt(2.0), bias=bias)
    for i in blocks:
        specs += _taesd_block(f"{_VAE}{part}.{i}.")
    return specs


def _vae() -> list[TensorSpec]:
    enc = _taesd("taesd_encoder", {0: (64, 3, True), 2: (64, 64, False), 6: (64, 64, False),
                                   10: (64, 64, False)}, (1, 3, 4, 5, 7, 8, 9, 11, 12, 13))
    # Tuned by eye on ComfyUI: 2.0 lets the input image drown seed and prompt in img2img,
    # 0.5 decodes to near-flat grey.
    enc += _dense(f"{_VAE}taesd_encoder.14", (4, 64, 3, 3), 1.0)
    dec = _taesd("taesd_decoder", {1: (64, 4, True), 7: (64, 64, False), 12: (64, 64, False),
                                   17: (64, 64, False)}, (3, 4, 5, 8, 9, 10, 13, 14, 15, 18))
    # Zero-mean output filters around a mid-grey bias: pixels vary around 0.5 instead of
    # saturating to one colour. Gain 0.15 clipped ~20 % of pixel values; 0.08 clips < 1 %.
    dec += _dense(f"{_VAE}taesd_decoder.19", (3, 64, 3, 3), 0.08, centred=True, bias_mean=0.5)
    scalars = [TensorSpec(f"{_VAE}vae_scale", (), Init(mean=_VAE_SCALE)),
               TensorSpec(f"{_VAE}vae_shift", (), Init())]
    return enc + dec + scalars


def sd15_layout() -> list[TensorSpec]:
    """Every tensor of the tiny SD1.5 checkpoint, sorted by name (the order in the file)."""
    return sorted(_unet() + _clip() + _vae(), key=lambda s: s.name)


# ---------------------------------------------------------------- random numbers


def _tensor_key(seed: int, name: str) -> int:
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _splitmix64(key: int, first: int, count: int) -> NDArray[np.uint64]:
    """Outputs ``first .. first+count-1`` of the splitmix64 stream starting at state ``key``."""
    z = np.arange(first + 1, first + count + 1, dtype=np.uint64)
    z *= _GOLDEN  # wraps modulo 2**64, as splitmix64 requires
    z += np.uint64(key)
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return z


def _uniform(key: int, start: int, count: int) -> NDArray[np.float32]:
    """Elements ``start..start+count`` of a tensor's uniform(-1, 1) stream; ``start % 4 == 0``."""
    words = _splitmix64(key, start // 4, (count + 3) // 4)
    # Explicit little-endian views make the 16-bit draws identical on any host byte order.
    draws = words.astype("<u8", copy=False).view("<u2")[:count]
    return (draws.astype(np.float32) - np.float32(32767.5)) * np.float32(1.0 / 32768.0)


def _chunks(spec: TensorSpec, seed: int) -> Iterator[NDArray[np.float16]]:
    init = spec.init
    if init.std == 0.0:
        yield np.full(spec.size, init.mean, dtype="<f2")
        return
    key, scale = _tensor_key(seed, spec.name), np.float32(init.std * math.sqrt(3.0))
    step = spec.size if init.centred else _CHUNK  # centring needs whole filters at once
    for start in range(0, spec.size, step):
        values = _uniform(key, start, min(step, spec.size - start)) * scale
        if init.centred:
            rows = values.reshape(spec.shape[0], -1)
            values = (rows - rows.mean(axis=1, keepdims=True, dtype=np.float32)).ravel()
        yield (values + np.float32(init.mean)).astype("<f2")


# ---------------------------------------------------------------- safetensors file


def source_digest() -> str:
    """Hash of this module's source, so that an edited generator invalidates old files."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def fingerprint(specs: Sequence[TensorSpec], seed: int) -> str:
    layout = hashlib.sha256(repr(list(specs)).encode()).hexdigest()[:16]
    return f"seed={seed};layout={layout};source={source_digest()}"


def _header(specs: Sequence[TensorSpec], stamp: str) -> bytes:
    entries: dict[str, object] = {"__metadata__": {METADATA_KEY: stamp}}
    offset = 0
    for spec in specs:
        end = offset + 2 * spec.size
        entries[spec.name] = {"dtype": "F16", "shape": list(spec.shape), "data_offsets": [offset, end]}
        offset = end
    text = json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads the header to 8 bytes with spaces
    return struct.pack("<Q", len(text)) + text


def write_safetensors(out: BinaryIO, specs: Sequence[TensorSpec], seed: int) -> None:
    """Write the header, then each tensor chunk by chunk (never the whole model in memory)."""
    ordered = sorted(specs, key=lambda s: s.name)
    out.write(_header(ordered, fingerprint(ordered, seed)))
    for spec in ordered:
        out.writelines(chunk.tobytes() for chunk in _chunks(spec, seed))


def read_header(path: Path) -> dict[str, object] | None:
    """The parsed JSON header, or None when the file is missing, truncated or not safetensors."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100_000_000:
                return None
            header = json.loads(f.read(length))
            data_size = os.fstat(f.fileno()).st_size - 8 - length
    except (OSError, struct.error, ValueError):
        return None
    if not isinstance(header, dict) or data_size != _data_end(header):
        return None
    return header


def _data_end(header: dict[str, object]) -> int:
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    return max(ends, default=0)


def _stamp_of(header: dict[str, object] | None) -> str | None:
    meta = header.get("__metadata__") if header else None
    return meta.get(METADATA_KEY) if isinstance(meta, dict) else None


def ensure_checkpoint(path: Path, specs: Sequence[TensorSpec], seed: int = 0) -> bool:
    """Write ``specs`` to ``path`` unless an identical file is there; True when it wrote.

    Only the header is read for the check. The new file is written beside the target and moved
    into place with ``os.replace``, so readers (and parallel workers) never see half a file.
    """
    if _stamp_of(read_header(path)) == fingerprint(sorted(specs, key=lambda s: s.name), seed):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            write_safetensors(out, specs, seed)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a server run by another user must read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def ensure_tiny_checkpoint(path: Path, seed: int = 0) -> bool:
    """Make ``path`` the tiny SD1.5 checkpoint for ``seed``; True when the file was (re)written."""
    return ensure_checkpoint(path, sd15_layout(), seed)


# ---------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m comfytest.comfy.tinymodel",
        description="Write the tiny random-weight SD1.5 checkpoint unless it is already current.")
    parser.add_argument("path", type=Path, help=f"target file, e.g. models/checkpoints/{CHECKPOINT_NAME}")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (default: 0)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    wrote = ensure_tiny_checkpoint(args.path, args.seed)
    elapsed = time.perf_counter() - started
    if wrote:
        size_mb = args.path.stat().st_size / 1e6
        print(f"wrote {args.path} ({size_mb:.1f} MB, seed {args.seed}) in {elapsed:.2f} s")
    else:
        print(f"{args.path} is up to date (seed {args.seed}); checked in {elapsed:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
