"""comfytest's own ComfyUI custom nodes: deterministic inputs and controllable behaviour.

ComfyUI loads this folder as a custom node pack (symlink or copy it into ``custom_nodes/``).
The nodes let tests exercise a server without any model file:

* ``ComfyTestNoiseImage``  a seeded IMAGE, identical on every machine (numpy's PCG64 stream);
* ``ComfyTestProgress``    reports ``progress`` each step, so timeouts and interrupts can act;
* ``ComfyTestSleep``       a slow node that still stops promptly when interrupted;
* ``ComfyTestRaise``       fails with a chosen message (an ``execution_error``);
* ``ComfyTestText``        an output node whose text shows up in ``executed`` and ``/history``;
* ``ComfyTestFile``        an output node that writes given bytes as a file of any kind (a broken
  video, a GLB mesh...) and reports it under a given output key (``images``, ``audio``...);
* issue 14's nodes (``ComfyTestResize``, ``ComfyTestBlur``, ``ComfyTestDesaturate``,
  ``ComfyTestLabel``, ``ComfyTestMath``, ``ComfyTestFrames``, ``ComfyTestLevels``,
  ``ComfyTestInvert``, ``ComfyTestSink``): small copies of real pack nodes, each with the
  regression an author made switchable through ``COMFYTEST_REGRESSIONS`` (see below).
* ``ComfyTestHoldMemory``  holds a given number of MiB (RAM, or the torch device) for a given time.
* ``ComfyTestWork``        takes ``ms`` milliseconds, times the factor in the environment variable
  ``COMFYTEST_WORK_FACTOR`` of the ComfyUI process (read when the node runs): issue 24's
  switchable slowdown for performance sessions.
* ``ComfyTestTap``         takes any output and reports a compact fingerprint of it in its UI
  output (``comfytest_trace``): the trace of intermediate outputs (issue 23, ``comfy/trace.py``).

This module runs inside ComfyUI's process: it must not import comfytest or pytest. ComfyUI's
own modules (and torch) are imported inside the functions, so the module can be imported, and
type-checked, where ComfyUI is absent.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

CATEGORY = "comfytest"
_MAX_SEED = 0xFFFF_FFFF_FFFF_FFFF
# Sleeping in short slices bounds how late an interrupt is noticed.
_SLICE_S = 0.05

InputTypes = dict[str, tuple[Any, ...]]


def _check_interrupt() -> None:
    import comfy.model_management

    comfy.model_management.throw_exception_if_processing_interrupted()


def _interruptible_sleep(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        _check_interrupt()
        time.sleep(min(_SLICE_S, left))
    _check_interrupt()


def noise_pixels(width: int, height: int, seed: int, batch_size: int) -> np.ndarray[Any, Any]:
    """[B, H, W, 3] float32 in 0..1: smooth seeded waves plus fine noise.

    The waves give each seed a distinct low-frequency layout (what perceptual hashes see); the
    noise gives texture. PCG64 with ``random()`` is a stable numpy stream across versions.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    images = np.empty((batch_size, height, width, 3), dtype=np.float32)
    for b in range(batch_size):
        freq, phase = rng.random((2, 3, 3), dtype=np.float32)
        for c in range(3):
            fx, fy, _ = 6.0 * freq[c] / max(width, height)
            images[b, :, :, c] = np.sin(2 * np.pi * (fx * xs + fy * ys + phase[c, 0]))
        images[b] = 0.5 + 0.35 * images[b] + 0.15 * (rng.random((height, width, 3), dtype=np.float32) - 0.5)
    return np.clip(images, 0.0, 1.0)


class ComfyTestNoiseImage:
    """A deterministic image from a seed, for workflows that need pixels but no model."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, InputTypes]:
        return {"required": {
            "width": ("INT", {"default": 64, "min": 1, "max": 8192}),
            "height": ("INT", {"default": 64, "min": 1, "max": 8192}),
            "seed": ("INT", {"default": 0, "min": 0, "max": _MAX_SEED}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 64}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "generate"
    CATEGORY = CATEGORY

    def generate(self, width: int, height: int, seed: int, batch_size: int) -> tuple[Any]:
        import torch

        return (torch.from_numpy(noise_pixels(width, height, seed, batch_size)),)


class ComfyTestProgress:
    """Passes the image through after ``steps`` steps of ``delay`` seconds, reporting each."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, InputTypes]:
        return {"required": {
            "image": ("IMAGE",),
            "steps": ("INT", {"default": 5, "min": 1, "max": 10000}),
            "delay": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 60.0, "step": 0.01}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = CATEGORY

    def run(self, image: Any, steps: int, delay: float) -> tuple[Any]:
        import comfy.utils

        bar = comfy.utils.ProgressBar(steps)
        for step in range(1, steps + 1):
            _interruptible_sleep(delay)
            bar.update_absolute(step, steps)
        return (image,)


class ComfyTestSleep:
    """Passes the image through after ``seconds``; an interrupt stops it within ~50 ms."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, InputTypes]:
        return {"required": {
            "image": ("IMAGE",),
            "seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3600.0, "step": 0.01}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = CATEGORY

    def run(self, image: Any, seconds: float) -> tuple[Any]:
        _interruptible_sleep(seconds)
        return (image,)


class ComfyTestRaise:
    """Fails on purpose with ``RuntimeError(message)``, after validation has passed."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, InputTypes]:
        return {"required": {
            "image": ("IMAGE",),
            "message": ("STRING", {"default": "ComfyTestRaise: failing on purpose"}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = CATEGORY

    def run(self, image: Any, message: str) -> tuple[Any]:
        raise RuntimeError(message)


class ComfyTestText:
    """An output node: the text comes back as ``{"text": [value]}`` in ``executed``/history."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, InputTypes]:
        return {"required": {"value": ("STRING", {"default": "", "multiline": True})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY

    def run(self, value: str) -> dict[str, Any]:
        return {"ui": {"text": [value]}, "result": (value,)}


# --- issue 14: nodes for the regressions custom-node authors make -------------------------


class ComfyTestSink:
    """An output node that shows nothing (it "saves" elsewhere): a run with nothing to compare."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, InputTypes]:
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY

    def run(self, image: Any) -> dict[str, Any]:
        return {"ui": {}}


# Each node below mirrors one of ComfyUI_essentials' (ImageResize+, MaskBlur+, ...) and carries
# the change an author made to it in issue 14's trial, switched on by name in the environment
# variable COMFYTEST_REGRESSIONS (comma-separated) of the ComfyUI process, e.g. "bgr,frames".
# Read when the node runs (and when /object_info is served), so one launched server can play
# the whole table; unset, every node behaves as released.
REGRESSIONS_ENV = "COMFYTEST_REGRESSIONS"
REGRESSIONS = ("bgr", "blur", "desaturate", "shadow", "floordiv", "frames", "default", "slow")


def regressed(name: str) -> bool:
    import os

    return name in os.environ.get(REGRESSIONS_ENV, "").replace(" ", "").split(",")


class ComfyTestResize:
    """ImageResize+: nearest-neighbour resize. Regression ``bgr``: channels come out reversed."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, InputTypes]:
        return {"required": {
            "image": ("IMAGE",),
            "width": ("INT", {"default": 48, "min": 1, "max": 8192}),
            "height": ("INT", {"default": 48, "min": 1, "max": 8192}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = CATEGORY

    def run(self, image: Any, width: int, height: int) -> tuple[Any]:
        import torch.nn.functional as F

        out = F.interpolate(image.movedim(-1, 1), size=(height, width), mode="nearest").movedim(1, -1)
        return (out.flip(-1) if regressed("bgr") else out,)


class ComfyTestBlur:
    """MaskBlur+: a box blur of ``amount`` pixels each side. Regression ``blur``: the kernel
    is two pixels wider than asked."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, InputTypes]:
        return {"required": {
            "image": ("IMAGE",),
            "amount": ("INT", {"default": 2, "min": 0, "max": 64}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = CATEGORY

    def run(self, image: Any, amount: int) -> tuple[Any]:
        import torch.nn.functional as F

        size = 2 * amount + 1 + (2 if regressed("blur") else 0)
        pixels = F.pad(image.movedim(-1, 1), (size // 2,) * 4, mode="replicate")
        return (F.avg_pool2d(pixels, size, stride=1).movedim(1, -1),)


class ComfyTestDesaturate:
    """ImageDesaturate+: Rec. 601 luma, mixed by ``factor``. Regression ``desaturate``: the
    weights in BGR order."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, InputTypes]:
        return {"required": {
            "image": ("IMAGE",),
            "factor": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = CATEGORY

    def run(self, image: Any, factor: float) -> tuple[Any]:
        import torch

        weights = [0.299, 0.587, 0.114]
        w = torch.tensor(weights[::-1] if regressed("desaturate") else weights, dtype=image.dtype)
        grey = (image * w).sum(-1, keepdim=True).expand_as(image)
        return (image * (1 - factor) + grey * factor,)


class ComfyTestLabel:
    """DrawText+: a text label with a drop shadow. Regression ``shadow``: the shadow sits one
    pixel further away."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, InputTypes]:
        return {"required": {
            "image": ("IMAGE",),
            "text": ("STRING", {"default": "comfytest"}),
            "shadow_distance": ("INT", {"default": 1, "min": 0, "max": 16}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = CATEGORY

    def run(self, image: Any, text: str, shadow_distance: int) -> tuple[Any]:
        import torch
        from PIL import Image, ImageDraw, ImageFont

        font = ImageFont.load_default()
        d = shadow_distance + (1 if regressed("shadow") else 0)
        out = []
        for frame in image:
            pil = Image.fromarray((frame.numpy() * 255).round().astype(np.uint8))
            draw = ImageDraw.Draw(pil)
            draw.text((4 + d, 4 + d), text, fill=(0, 0, 0), font=font)
            draw.text((4, 4), text, fill=(255, 255, 255), font=font)
            out.append(torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0))
        return (torch.stack(out),)


class ComfyTestMath:
    """SimpleMath+: ``a / b``, shown as text the way many packs return it: a plain string in
    ``ui.text`` (ComfyUI flattens it into characters). Regression ``floordiv``: ``a // b``."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, InputTypes]:
        return {"required": {
            "a": ("FLOAT", {"default": 8192.0}),
            "b": ("FLOAT", {"default": 3.0}),
        }}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY

    def run(self, a: float, b: float) -> dict[str, Any]:
        value = float(a // b) if regressed("floordiv") else a / b
        text = str(int(value)) if value == int(value) else str(value)
        return {"ui": {"text": text}, "result": (value,)}


class ComfyTestFrames:
    """TransitionMask+: ``frames`` images fading from black to white. Regression ``frames``:
    the last frame is dropped (batch 4 → 3)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, InputTypes]:
        return {"required": {
            "width": ("INT", {"default": 16, "min": 1, "max": 8192}),
            "height": ("INT", {"default": 16, "min": 1, "max": 8192}),
            "frames": ("INT", {"default": 4, "min": 1, "max": 256}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = CATEGORY

    def run(self, width: int, height: int, frames: int) -> tuple[Any]:
        import torch

        count = frames - 1 if regressed("frames") and frames > 1 else frames
        levels = torch.linspace(0.0, 1.0, frames)[:count]
        return (levels.view(-1, 1, 1, 1).expand(count, height, width, 3).contiguous(),)


class ComfyTestLevels:
    """A gamma adjustment. Regression ``default``: the default ``strength`` changes from 0.8 to
    0.5 (API workflows carry every value, so only the node's interface shows it)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, InputTypes]:
        default = 0.5 if regressed("default") else 0.8
        return {"required": {
            "image": ("IMAGE",),
            "strength": ("FLOAT", {"default": default, "min": 0.0, "max": 4.0, "step": 0.05}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = CATEGORY

    def run(self, image: Any, strength: float) -> tuple[Any]:
        return (image.clamp(0.0, 1.0) ** strength,)


class ComfyTestInvert:
    """Inverts an image in well under a millisecond. Regression ``slow``: 20 ms slower, with
    the same output."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, InputTypes]:
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = CATEGORY

    def run(self, image: Any) -> tuple[Any]:
        if regressed("slow"):
            time.sleep(0.020)
        return (1.0 - image,)


_ISSUE14_NODES: dict[str, type] = {
    "ComfyTestSink": ComfyTestSink, "ComfyTestResize": ComfyTestResize, "ComfyTestBlur": ComfyTestBlur,
    "ComfyTestDesaturate": ComfyTestDesaturate, "ComfyTestLabel": ComfyTestLabel, "ComfyTestMath": ComfyTestMath,
    "ComfyTestFrames": ComfyTestFrames, "ComfyTestLevels": ComfyTestLevels, "ComfyTestInvert": ComfyTestInvert,
}
_ISSUE14_NAMES: dict[str, str] = {
    "ComfyTestSink": "Sink (comfytest)", "ComfyTestResize": "Resize (comfytest)", "ComfyTestBlur": "Blur (comfytest)",
    "ComfyTestDesaturate": "Desaturate (comfytest)", "ComfyTestLabel": "Label with shadow (comfytest)",
    "ComfyTestMath": "Divide (comfytest)", "ComfyTestFrames": "Fade frames (comfytest)",
    "ComfyTestLevels": "Levels (comfytest)", "ComfyTestInvert": "Invert (comfytest)",
}


# --- memory (comfytest's resource sampler must see it) -------------------------------------


def hold_bytes(megabytes: int, where: str) -> Any:
    """``megabytes`` MiB of memory that is really resident: every page is written.

    ``ram``: a numpy buffer in the server process (RSS and system RAM grow); ``device``: a torch
    tensor on ComfyUI's torch device (VRAM on a GPU; on a CPU server the same as ``ram``).
    """
    size = megabytes * 1024 * 1024
    if where == "device":
        import comfy.model_management
        import torch

        return torch.ones(size, dtype=torch.uint8, device=comfy.model_management.get_torch_device())
    buffer = np.empty(size, dtype=np.uint8)
    buffer.fill(1)  # np.zeros would map lazily-zeroed pages that never count as resident
    return buffer


class ComfyTestHoldMemory:
    """Passes the image through after holding ``megabytes`` MiB for ``seconds``, then frees it."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, InputTypes]:
        return {"required": {
            "image": ("IMAGE",),
            "megabytes": ("INT", {"default": 256, "min": 0, "max": 1 << 20}),
            "seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3600.0, "step": 0.01}),
            "where": (["ram", "device"], {"default": "ram"}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = CATEGORY

    def run(self, image: Any, megabytes: int, seconds: float, where: str) -> tuple[Any]:
        held = hold_bytes(megabytes, where)
        try:
            _interruptible_sleep(seconds)
        finally:
            del held
        return (image,)


# --- issue 10: files of any kind as outputs ------------------------------------------------


class ComfyTestFile:
    """Writes ``content`` (text, or base64 with ``base64``) to ``output/comfytest/<name>`` and
    reports it under ``output_key``: files of any kind, including undecodable ones, on demand.

    ``report_subfolder`` / ``report_name`` (optional) report another path than the one written:
    a node with a bad output path, which ComfyUI's ``/view`` refuses (HTTP 403 / 400)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, InputTypes]:
        return {"required": {
            "name": ("STRING", {"default": "file.bin"}),
            "content": ("STRING", {"default": "", "multiline": True}),
            "base64": ("BOOLEAN", {"default": False}),
            "output_key": ("STRING", {"default": "images"}),
        }, "optional": {
            "report_subfolder": ("STRING", {"default": ""}),
            "report_name": ("STRING", {"default": ""}),
        }}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY

    def run(self, name: str, content: str, base64: bool, output_key: str,
            report_subfolder: str = "", report_name: str = "") -> dict[str, Any]:
        import base64 as b64
        import os

        import folder_paths

        data = b64.b64decode(content) if base64 else content.encode("utf-8")
        folder = os.path.join(folder_paths.get_output_directory(), "comfytest")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, os.path.basename(name)), "wb") as fh:
            fh.write(data)
        entry = {"filename": report_name or os.path.basename(name),
                 "subfolder": report_subfolder or "comfytest", "type": "output"}
        extra = {"animated": [True]} if output_key == "images" and not name.endswith(".png") else {}
        return {"ui": {output_key: [entry], **extra}}


# --- issue 23: the tap node of the trace of intermediate outputs -------------------------

TRACE_KEY = "comfytest_trace"
_PHASH_SIZE = 8
_MAX_ITEMS = 8  # frames hashed, list items fingerprinted: the trace stays small


def phash_grey(grey: np.ndarray[Any, Any]) -> str:
    """imagehash's ``phash`` of an ``[H, W]`` 0..1 picture, as hex: 32x32 greyscale (Lanczos),
    DCT-II of rows and columns, the top-left 8x8 compared with its median."""
    from PIL import Image

    size = 4 * _PHASH_SIZE
    pil = Image.fromarray((np.clip(grey, 0.0, 1.0) * 255).round().astype(np.uint8), mode="L")
    pixels = np.asarray(pil.resize((size, size), Image.Resampling.LANCZOS), dtype=np.float64)
    k = np.arange(size)
    dct = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * size))  # rows: frequencies
    low = (dct @ pixels @ dct.T)[:_PHASH_SIZE, :_PHASH_SIZE]
    bits = (low > np.median(low)).flatten()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):0{_PHASH_SIZE * _PHASH_SIZE // 4}x}"


def _digest(array: np.ndarray[Any, Any]) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def _rounded(values: Any) -> list[float]:
    return [float(f"{float(v):.5g}") for v in np.atleast_1d(values)]


def _numpy(tensor: Any) -> np.ndarray[Any, Any]:
    return np.asarray(tensor.detach().to("cpu").float().numpy())


def fingerprint_image(tensor: Any) -> dict[str, Any]:
    """IMAGE ``[B, H, W, C]`` or MASK ``[B, H, W]``: shape, a phash per frame (8 at most), and
    the mean and standard deviation of each channel over the batch."""
    pixels = _numpy(tensor)
    frames = pixels if pixels.ndim == 4 else pixels[..., None]
    if frames.ndim == 3:
        frames = frames[None]
    grey = frames[..., :3].mean(-1) if frames.shape[-1] >= 3 else frames[..., 0]
    axes = tuple(range(frames.ndim - 1))
    return {"kind": "image", "shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch."),
            "phash": [phash_grey(g) for g in grey[:_MAX_ITEMS]],
            "mean": _rounded(frames.mean(axis=axes)), "std": _rounded(frames.std(axis=axes)),
            "sha": _digest(pixels), "thumb": thumbnail(frames[0])}


THUMB_SIDE = 64


def thumbnail(frame: np.ndarray[Any, Any]) -> str:
    """The frame as a small PNG (base64, at most 64 px a side): comfytest keeps it beside the
    trace and shows a changed node's baseline and obtained pictures side by side."""
    import base64
    import io

    from PIL import Image

    channels = frame.shape[-1]
    pixels = (np.clip(frame[..., :3] if channels >= 3 else frame[..., 0], 0.0, 1.0) * 255).round().astype(np.uint8)
    pil = Image.fromarray(pixels, mode="RGB" if channels >= 3 else "L")
    pil.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def fingerprint_tensor(tensor: Any) -> dict[str, Any]:
    """Any other tensor (latents, conditioning): shape, dtype and summary statistics."""
    values = _numpy(tensor)
    stats = [values.mean(), values.std(), values.min(), values.max()] if values.size else [0, 0, 0, 0]
    return {"kind": "tensor", "shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch."),
            "stats": _rounded(stats), "sha": _digest(values)}


def _module_of(value: Any) -> Any:
    import torch

    for name in ("model", "cond_stage_model", "first_stage_model"):
        module = getattr(value, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    return value if isinstance(value, torch.nn.Module) else None


def fingerprint_module(value: Any, module: Any) -> dict[str, Any]:
    """A model (MODEL, CLIP, VAE): parameter count, and a digest of a sample of the weights
    (the first values of the first tensors), so a changed model file shows without hashing it."""
    params = list(module.parameters())
    sample = [_numpy(p.flatten()[:64]) for p in params[:_MAX_ITEMS]]
    return {"kind": "model", "object": type(value).__name__, "params": sum(p.numel() for p in params),
            "sha": _digest(np.concatenate(sample)) if sample else ""}


def fingerprint(value: Any, type_name: str = "*", depth: int = 0) -> dict[str, Any]:
    """A compact, JSON-able fingerprint of one output value of a node."""
    import torch

    if isinstance(value, torch.Tensor):
        images = type_name in ("IMAGE", "MASK") and value.ndim in (2, 3, 4)
        return fingerprint_image(value) if images else fingerprint_tensor(value)
    if isinstance(value, bool | int | float) or value is None:
        return {"kind": "value", "value": value}
    if isinstance(value, str):
        if len(value) <= 200:
            return {"kind": "value", "value": value}
        return {"kind": "text", "length": len(value), "start": value[:60], "sha": _digest(np.frombuffer(value.encode(), np.uint8))}
    if isinstance(value, dict) and depth < 2:
        return {"kind": "dict", "items": {str(k): fingerprint(v, "*", depth + 1) for k, v in sorted(value.items(), key=str)[:_MAX_ITEMS]}}
    if isinstance(value, list | tuple) and depth < 3:
        return {"kind": "list", "length": len(value), "items": [fingerprint(v, type_name, depth + 1) for v in value[:4]]}
    module = _module_of(value)
    if module is not None:
        return fingerprint_module(value, module)
    return {"kind": "opaque", "object": type(value).__name__}


class ComfyTestTap:
    """Takes any output (the ``*`` type: ``VALIDATE_INPUTS`` asks for ``input_types``, which
    makes ComfyUI skip its type check of the link) and reports its fingerprint in the UI output
    ``comfytest_trace``. comfytest appends one per node output to a copy of a prompt."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, InputTypes]:
        return {"required": {
            "value": ("*", {}),
            "type": ("STRING", {"default": "*"}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, input_types: dict[str, Any]) -> bool:
        return True

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    INPUT_IS_LIST = True  # a node's list output arrives whole, not one tap call per item
    CATEGORY = CATEGORY

    def run(self, value: list[Any], type: list[str]) -> dict[str, Any]:
        kind = type[0] if type else "*"
        try:
            found = fingerprint(value[0], kind) if len(value) == 1 else fingerprint(list(value), kind)
        except Exception as exc:  # a value the tap cannot read must not fail the diagnostic run
            found = {"kind": "error", "error": f"{exc.__class__.__name__}: {exc}"[:200]}
        return {"ui": {TRACE_KEY: [found]}}


# --- performance (issue 24): a node whose cost is set, and a pack-wide switch to slow it down ---

WORK_FACTOR_ENV = "COMFYTEST_WORK_FACTOR"


def work_factor() -> float:
    import os

    try:
        return max(float(os.environ.get(WORK_FACTOR_ENV, "1") or 1), 0.0)
    except ValueError:
        return 1.0


class ComfyTestWork:
    """Passes the image through after ``ms`` milliseconds × ``COMFYTEST_WORK_FACTOR`` (default 1)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, InputTypes]:
        return {"required": {
            "image": ("IMAGE",),
            "ms": ("FLOAT", {"default": 40.0, "min": 0.0, "max": 600000.0, "step": 1.0}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = CATEGORY

    def run(self, image: Any, ms: float) -> tuple[Any]:
        _interruptible_sleep(ms * work_factor() / 1000.0)
        return (image,)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "ComfyTestFile": ComfyTestFile,
    "ComfyTestNoiseImage": ComfyTestNoiseImage,
    "ComfyTestProgress": ComfyTestProgress,
    "ComfyTestSleep": ComfyTestSleep,
    "ComfyTestRaise": ComfyTestRaise,
    "ComfyTestText": ComfyTestText,
    **_ISSUE14_NODES,
    "ComfyTestHoldMemory": ComfyTestHoldMemory,
    "ComfyTestTap": ComfyTestTap,
    "ComfyTestWork": ComfyTestWork,
}

NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "ComfyTestFile": "Write file output (comfytest)",
    "ComfyTestNoiseImage": "Noise image (comfytest)",
    "ComfyTestProgress": "Progress steps (comfytest)",
    "ComfyTestSleep": "Sleep (comfytest)",
    "ComfyTestRaise": "Raise error (comfytest)",
    "ComfyTestText": "Show text (comfytest)",
    **_ISSUE14_NAMES,
    "ComfyTestHoldMemory": "Hold memory (comfytest)",
    "ComfyTestTap": "Trace tap (comfytest)",
    "ComfyTestWork": "Work N ms (comfytest)",
}
