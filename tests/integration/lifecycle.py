"""A pytester workspace for walking workflows through the baseline lifecycle.

Like pytest-regressions' ``testing.py``: a test sets up a ``workflows/`` folder with workflow
JSON and settings files, runs the inner pytest session against the outer session's real
ComfyUI (``inner_args``), and reads back what the session left: the terminal output, the
``report.json`` in the results folder, the baseline files and the artefacts.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfytest.compare.images import image_hash

# In-process pytester runs restore sys.modules afterwards; a C extension imported lazily inside
# one (scipy.fftpack via phash) then cannot load again. Hashing once here imports it for good.
image_hash(Image.new("RGB", (8, 8)))

REPO = Path(__file__).parents[2]
TINY_TXT2IMG = REPO / "workflows" / "tiny_txt2img.json"

#: EmptyImage → SaveImage "Save A", and → ImageInvert "Invert" → SaveImage "Save B"; 16x16, no model
TWO_OUTPUTS: dict[str, Any] = {
    "1": {"class_type": "EmptyImage", "_meta": {"title": "Canvas"},
          "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0x336699}},
    "2": {"class_type": "SaveImage", "_meta": {"title": "Save A"},
          "inputs": {"images": ["1", 0], "filename_prefix": "lifecycle_a"}},
    "3": {"class_type": "ImageInvert", "_meta": {"title": "Invert"}, "inputs": {"image": ["1", 0]}},
    "4": {"class_type": "SaveImage", "_meta": {"title": "Save B"},
          "inputs": {"images": ["3", 0], "filename_prefix": "lifecycle_b"}},
}

#: a Pillow-decodable 1x1 PNG would pass for a baseline; these bytes never decode
NOT_A_PNG = b"\x89PNG\r\n\x1a\n this is not a picture"

Snapshot = dict[str, tuple[int, bytes]]


def _arg(args: list[str], option: str) -> Path:
    return Path(next(a.split("=", 1)[1] for a in args if a.startswith(option + "=")))


@dataclass
class Workspace:
    """A pytester folder with ``workflows/`` collected through the ``comfy_workflows`` ini key."""

    pytester: pytest.Pytester
    args: list[str]

    @classmethod
    def create(cls, pytester: pytest.Pytester, inner_args: list[str]) -> Workspace:
        pytester.makeini("[pytest]\ncomfy_workflows = workflows\n")
        (pytester.path / "workflows").mkdir()
        return cls(pytester, list(inner_args))

    @property
    def baselines(self) -> Path:
        return _arg(self.args, "--comfy-baselines")

    @property
    def results(self) -> Path:
        return _arg(self.args, "--comfy-results")

    def workflow(self, name: str, source: Path | dict[str, Any], toml: str | None = None) -> Path:
        """Write ``workflows/<name>.json`` (copied or from a dict) and its settings file."""
        path = self.pytester.path / "workflows" / f"{name}.json"
        if isinstance(source, Path):
            shutil.copyfile(source, path)
        else:
            path.write_text(json.dumps(source))
        if toml is not None:
            self.settings(name, toml)
        return path

    def settings(self, name: str, toml: str) -> None:
        (self.pytester.path / "workflows" / f"{name}.toml").write_text(toml)

    def run(self, *extra: str) -> pytest.RunResult:
        """One inner session; the results folder is emptied first so artefacts are this run's."""
        shutil.rmtree(self.results, ignore_errors=True)
        return self.pytester.runpytest(*self.args, *extra)

    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.results / "report.json").read_text())
        return data

    def comparisons(self) -> list[dict[str, Any]]:
        return [c for t in self.report()["tests"] for c in t["comparisons"]]

    def case_dir(self, workflow: str, case: str) -> Path:
        return self.baselines / workflow / case

    def artefact(self, workflow: str, case: str, name: str) -> Path:
        return self.results / workflow / case / name

    def snapshot(self) -> Snapshot:
        """Every baseline file with its mtime and bytes: equal snapshots mean nothing was rewritten."""
        if not self.baselines.exists():
            return {}
        return {str(p.relative_to(self.baselines)): (p.stat().st_mtime_ns, p.read_bytes())
                for p in sorted(self.baselines.rglob("*")) if p.is_file()}


def text(result: pytest.RunResult) -> str:
    """Everything the inner session printed, stdout then stderr."""
    return "\n".join(result.outlines + result.errlines)
