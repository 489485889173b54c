"""comfytest's own ComfyUI custom nodes: deterministic inputs and controllable behaviour.

ComfyUI loads this folder as a custom node pack (symlink or copy it into ``custom_nodes/``).
The nodes let tests exercise a server without any model file:

* ``ComfyTestNoiseImage``  a seeded IMAGE, identical on every machine (numpy's PCG64 stream);
* ``ComfyTestProgress``    reports ``progress`` each step, so timeouts and interrupts can act;
* ``ComfyTestSleep``       a slow node that still stops promptly when interrupted;
* ``ComfyTestRaise``       fails with a chosen message (an ``execution_error``);
* ``ComfyTestText``        an output node whose text shows up in ``executed`` and ``/history``.

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


_ISSUE14_NODES: dict[str, type] = {"ComfyTestSink": ComfyTestSink}
_ISSUE14_NAMES: dict[str, str] = {"ComfyTestSink": "Sink (comfytest)"}


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "ComfyTestNoiseImage": ComfyTestNoiseImage,
    "ComfyTestProgress": ComfyTestProgress,
    "ComfyTestSleep": ComfyTestSleep,
    "ComfyTestRaise": ComfyTestRaise,
    "ComfyTestText": ComfyTestText,
    **_ISSUE14_NODES,
}

NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "ComfyTestNoiseImage": "Noise image (comfytest)",
    "ComfyTestProgress": "Progress steps (comfytest)",
    "ComfyTestSleep": "Sleep (comfytest)",
    "ComfyTestRaise": "Raise error (comfytest)",
    "ComfyTestText": "Show text (comfytest)",
    **_ISSUE14_NAMES,
}
