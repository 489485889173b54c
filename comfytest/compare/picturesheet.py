"""Small pictures packed into one PNG grid and cut back out (pure): ``trace.png``, the pictures
of a trace's image outputs, one 64 px cell each, 16 to a row, in trace order."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image

CELL = 64  # nodepack.THUMB_SIDE: no picture is larger
COLUMNS = 16


def _grid(count: int) -> tuple[int, int]:
    columns = max(1, min(count, COLUMNS))
    return columns, -(-count // columns)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def pack(pictures: Sequence[bytes]) -> bytes:
    """PNG pictures (each at most ``CELL`` a side) in one RGB grid, top-left aligned in their cells."""
    columns, rows = _grid(len(pictures))
    grid = Image.new("RGB", (columns * CELL, rows * CELL))
    for index, data in enumerate(pictures):
        with Image.open(io.BytesIO(data)) as img:
            grid.paste(img.convert("RGB"), ((index % columns) * CELL, (index // columns) * CELL))
    return _png(grid)


def unpack(data: bytes, sizes: Sequence[tuple[int, int]]) -> list[bytes]:
    """The pictures of ``sizes`` (width, height) cut out of a grid ``pack`` made; empty when the
    grid does not have the shape that many pictures give, or cannot be read."""
    columns, rows = _grid(len(sizes))
    try:
        with Image.open(io.BytesIO(data)) as grid:
            if grid.size != (columns * CELL, rows * CELL):
                return []
            return [_png(grid.crop((x, y, x + w, y + h)))
                    for index, (w, h) in enumerate(sizes)
                    for x, y in [((index % columns) * CELL, (index // columns) * CELL)]]
    except OSError:
        return []


__all__ = ["CELL", "COLUMNS", "pack", "unpack"]
