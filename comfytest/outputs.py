"""What a workflow produced: typed, frozen references to output files and decoded values.

``FileRef`` is what the server reports (``/history`` outputs or ``executed`` events);
``OutputImage`` and ``OutputText`` are what the comparison and report code consume.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class FileRef:
    """A file on the server, as fetched with ``GET /view``."""

    filename: str
    subfolder: str = ""
    type: str = "output"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileRef:
        return cls(
            filename=str(data["filename"]),
            subfolder=str(data.get("subfolder", "") or ""),
            type=str(data.get("type", "output") or "output"),
        )

    @property
    def is_animated_format(self) -> bool:
        return self.filename.lower().endswith((".gif", ".webp", ".apng"))


@dataclass(frozen=True)
class OutputImage:
    """One image of one output node (``index`` is its place in the node's batch)."""

    node_id: str
    index: int
    ref: FileRef
    image: Image.Image = field(compare=False, repr=False)
    kind: str = "images"  # the output key the server used: images, gifs, animated...

    @property
    def key(self) -> str:
        """Stable name for baselines and reports: ``<node>_<index>``."""
        return f"{self.node_id}_{self.index}"


@dataclass(frozen=True)
class OutputText:
    """One text value of one output node (e.g. PreviewAny ``{"text": [...]}``)."""

    node_id: str
    index: int
    text: str

    @property
    def key(self) -> str:
        return f"{self.node_id}_{self.index}"


@dataclass(frozen=True)
class OutputFile:
    """Any other output file of a node, as downloaded: video, audio, latent, 3D or unknown.

    ``kind`` is ``comfytest.media.kind_of(ref.filename)``; ``problem`` is set when the file is
    an image Pillow could not decode (the check reports it, naming node and file).
    """

    node_id: str
    index: int
    ref: FileRef
    kind: str
    data: bytes = field(compare=False, repr=False)
    output_key: str = "images"  # the key the server reported it under
    problem: str | None = None

    @property
    def key(self) -> str:
        return f"{self.node_id}_{self.index}"

    @property
    def suffix(self) -> str:
        name = self.ref.filename
        return name[name.rfind("."):].lower() if "." in name else ""
