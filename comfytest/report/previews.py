"""Preview frames of a run (binary WebSocket images) saved for the HTML report (``--comfy-previews``).

ComfyUI sends them while samplers step (with ``--preview-method``) and from nodes such as
``SaveImageWebsocket``. They are saved under ``<results>/_previews/<workflow>/<case>/`` (a folder
no baseline key can name: safe names never start with ``_``), at most ``MAX_FRAMES`` per case,
spread evenly over the run so the first and the last frame are always kept.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from comfytest.comfy.events import Event, Executing, Preview
from comfytest.compare.store import safe_name

PREVIEWS_DIR = "_previews"
MAX_FRAMES = 24


def attributed(events: Iterable[Event]) -> list[tuple[str | None, Preview]]:
    """Each preview with its node: its own id (type 4), else the node running when it came."""
    running: str | None = None
    found = []
    for event in events:
        if isinstance(event, Executing):
            running = event.node
        elif isinstance(event, Preview):
            found.append((event.node_id or running, event))
    return found


def spread(items: list[Any], limit: int = MAX_FRAMES) -> list[Any]:
    """At most ``limit`` items, evenly spaced, first and last included."""
    if len(items) <= limit:
        return items
    if limit <= 1:
        return items[-1:]
    step = (len(items) - 1) / (limit - 1)
    return [items[round(i * step)] for i in range(limit)]


def save_previews(events: Iterable[Event], folder: Path, results_dir: Path) -> list[dict[str, Any]]:
    """Write the frames into ``folder`` (emptied first: it is comfytest's); the records'
    ``previews`` entries, with paths relative to ``results_dir``."""
    shutil.rmtree(folder, ignore_errors=True)
    frames = spread(attributed(events))
    if not frames:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, (node, preview) in enumerate(frames):
        suffix = "jpg" if preview.image_format == "jpeg" else "png" if preview.image_format == "png" else "bin"
        path = folder / f"{index:03d}_{safe_name(node or 'unknown')}.{suffix}"
        path.write_bytes(preview.image)
        entries.append({"node_id": node, "index": index, "format": preview.image_format,
                        "path": path.relative_to(results_dir).as_posix()})
    return entries
