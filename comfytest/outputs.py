"""What a workflow produced: typed, frozen references to output files and decoded values.

``FileRef`` is what the server reports (``/history`` outputs or ``executed`` events);
``OutputImage`` and ``OutputText`` are what the comparison and report code consume.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from PIL import Image

from comfytest.media import decode_image, png_image_digest


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
    """One image of one output node (``index`` is its place in the node's batch).

    Either ``decoded`` already, or the file's ``data`` as served, decoded on first use of
    ``image`` (``Undecodable`` when Pillow cannot): an output identical to the one its baseline
    was made from is recognised by ``digest`` without decoding it at all."""

    node_id: str
    index: int
    ref: FileRef
    decoded: Image.Image | None = field(default=None, compare=False, repr=False)
    kind: str = "images"  # the output key the server used: images, gifs, animated...
    data: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.decoded is None and self.data is None:
            raise ValueError("an OutputImage needs its decoded image or the file's data")

    @cached_property
    def image(self) -> Image.Image:
        """The decoded image (decoded once, on first use)."""
        if self.decoded is not None:
            return self.decoded
        assert self.data is not None
        return decode_image(self.data)

    @cached_property
    def digest(self) -> str | None:
        """``media.png_image_digest`` of the served file; None for a decoded image or another format."""
        return png_image_digest(self.data) if self.data is not None else None

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
