"""Every output file that is not a still or animated image: to the check that fits its kind.

``check_file`` sends videos to ``comparevideo``, audio to ``compareaudio``, latents to
``comparelatent`` and anything else (3D meshes, unknown files) to ``comparefile``'s exact check;
an image Pillow could not decode fails as an undecodable output (a regression naming the node,
the file and why).
"""

from __future__ import annotations

from pathlib import Path

from comfytest.compare.audio import check_audio
from comfytest.compare.baselines import BaselineKey, BaselineStore, Mode
from comfytest.compare.exact import check_exact
from comfytest.compare.latent import check_latent
from comfytest.compare.mediacheck import MediaCheck, undecodable
from comfytest.compare.video import check_video
from comfytest.media import MediaSettings
from comfytest.outputs import OutputFile


def check_file(store: BaselineStore, key: BaselineKey, file: OutputFile, *, mode: Mode,
               results_dir: Path, settings: MediaSettings, node: str) -> MediaCheck:
    """Compare (or in update mode, record) one output file; ``node`` names it in messages."""
    if file.problem is not None:
        return undecodable(key, file, file.problem, results_dir, node)
    if file.kind == "video":
        return check_video(store, key, file, mode=mode, results_dir=results_dir, settings=settings, node=node)
    if file.kind == "audio":
        return check_audio(store, key, file, mode=mode, results_dir=results_dir, settings=settings, node=node)
    if file.kind == "latent":
        return check_latent(store, key, file, mode=mode, results_dir=results_dir, settings=settings, node=node)
    return check_exact(store, key, file, mode=mode, results_dir=results_dir, node=node)


__all__ = ["MediaCheck", "MediaSettings", "check_file"]
