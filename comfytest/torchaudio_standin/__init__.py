"""An import stand-in for ``torchaudio``, for comfytest's embedded ComfyUI only.

``comfytest-embedded install`` copies this folder, as ``torchaudio/``, into its own ComfyUI copy
(the folder of ``main.py``, first on that server's ``sys.path``) when the embedded Python cannot
import a real torchaudio. Why: ComfyUI 0.3.75's audio nodes (``comfy_extras/nodes_audio.py``)
import torchaudio and fail to load without it, and ``torchaudio`` 2.11.1 (``--no-deps``) does not
load beside torch 2.13.0+cpu (its ``_torchaudio.so`` is built for another torch). Those nodes use
torchaudio only for ``torchaudio.functional.resample`` (decoding and encoding go through PyAV),
which this stand-in provides with SciPy's polyphase resampler. Nothing else of torchaudio is
here: a node that needs more still fails, naming the missing attribute.

It is never installed into a user's environment or ComfyUI, and never shadows a real torchaudio.
"""

from __future__ import annotations

from . import functional

__version__ = "0.0.0+comfytest.standin"
__all__ = ["functional"]
