"""What a case leaves in the results folder, so that the folder grows with failures, not passes.

Called once the outputs of a case were checked, while its images are still in memory (nothing
is read back later), and filling the report record's paths:

- a passing image output: a thumbnail of a few KB (``report.assets.write_thumbnail``); its full
  obtained image only with ``--comfy-keep-passed``;
- a failing image output: everything the lifecycle wrote (obtained, diff, side by side) plus a
  copy of its baseline, so the results folder alone (a CI artefact) shows the failure in full;
- a passing video or audio output: its obtained file, which the checks keep for the report's
  player, is removed unless ``--comfy-keep-passed`` (the baseline plays instead).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from comfytest.compare.store import safe_name
from comfytest.outputs import OutputImage
from comfytest.report.assets import save_obtained, thumbnail_path, write_thumbnail

#: comparison statuses of an output that holds its baseline
OK_STATUSES = frozenset({"passed", "unchanged", "created", "updated"})
FAILED_IMAGE = frozenset({"mismatch"})


def keep_results(
    images: Iterable[OutputImage], comparisons: list[dict[str, Any]], folder: Path, *, keep_passed: bool,
    later: Callable[[Callable[[], object], str], None] | None = None,
    pixels: Mapping[str, Image.Image] | None = None,
) -> None:
    """Write/remove the case's result files in ``folder`` and record their paths in ``comparisons``.
    ``later(write, what)``: where a thumbnail may be written on a thread (``offpath.Writer``).
    ``pixels``: by output, the decoded pixels of passing images the check did not decode (the
    identical baseline's), so that their thumbnails need no decoding either."""
    by_output = {img.key: img for img in images}
    for comp in comparisons:
        kind, ok = comp.get("kind") or "image", comp.get("status") in OK_STATUSES
        if kind == "image" and ok and comp.get("output") in by_output:
            _passed_image(by_output[comp["output"]], comp, folder, keep_passed, later, (pixels or {}).get(comp["output"]))
        elif kind == "image" and comp.get("status") in FAILED_IMAGE and comp.get("baseline"):
            comp["baseline_copy"] = _copy_baseline(Path(comp["baseline"]), folder, comp)
        elif kind in ("video", "audio") and ok and not keep_passed:
            _drop_obtained_media(comp)


def _passed_image(image: OutputImage, comp: dict[str, Any], folder: Path, keep_passed: bool,
                  later: Callable[[Callable[[], object], str], None] | None, pixels: Image.Image | None) -> None:
    stem = _stem(comp)
    if later is None:
        comp["thumbnail"] = str(write_thumbnail(pixels if pixels is not None else image.image, folder, stem))
    else:
        comp["thumbnail"] = str(thumbnail_path(folder, stem))
        # where neither the check nor the preload decoded it, decoded on the thread
        later(lambda: write_thumbnail(pixels if pixels is not None else image.image, folder, stem), f"thumbnail {comp['thumbnail']}")
    if keep_passed:
        comp["obtained"] = str(save_obtained(image.image, folder, stem))


def _copy_baseline(baseline: Path, folder: Path, comp: Mapping[str, Any]) -> str | None:
    """The baseline beside the failure's other artefacts (a PNG; None when it cannot be read)."""
    target = folder / f"{_stem(comp)}.baseline{baseline.suffix}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(baseline, target)
    except OSError:
        return None
    return str(target)


def _drop_obtained_media(comp: dict[str, Any]) -> None:
    media = comp.get("media")
    if not isinstance(media, dict) or not media.get("obtained_media"):
        return
    path = Path(str(media["obtained_media"]))
    path.unlink(missing_ok=True)
    media["obtained_media"] = None
    if comp.get("obtained") == str(path):
        comp["obtained"] = None


def _stem(comp: Mapping[str, Any]) -> str:
    """The output's file stem in the results folder (``<node>_<index>``, made safe)."""
    return safe_name(str(comp.get("output")))
