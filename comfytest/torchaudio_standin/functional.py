"""``torchaudio.functional.resample`` for the stand-in (see the package docstring)."""

from __future__ import annotations

import math
from typing import Any


def resample(waveform: Any, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6,
             rolloff: float = 0.99, resampling_method: str = "sinc_interp_hann",
             beta: float | None = None) -> Any:
    """Resample along the last dimension (polyphase FIR, Kaiser window: SciPy's resample_poly).

    Same signature as torchaudio's; the filter parameters are accepted and not used, so the
    samples differ from torchaudio's by the filter, not by length or rate."""
    import torch
    from scipy.signal import resample_poly

    orig, new = int(orig_freq), int(new_freq)
    if orig <= 0 or new <= 0:
        raise ValueError(f"resample: frequencies must be positive, got {orig_freq} and {new_freq}")
    if orig == new:
        return waveform
    g = math.gcd(orig, new)
    data = waveform.detach().cpu().to(torch.float64).numpy()
    out = resample_poly(data, new // g, orig // g, axis=-1)
    return torch.from_numpy(out.copy()).to(dtype=waveform.dtype, device=waveform.device)
