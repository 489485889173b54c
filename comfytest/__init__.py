"""comfytest: run ComfyUI workflows as pytest regression tests.

The library knows nothing of pytest: ``comfytest.comfy`` talks to a ComfyUI, ``comfytest.workflows``
holds workflows as values, ``comfytest.compare`` compares outputs with baselines and
``comfytest.report.document`` writes what a session measured. ``comfytest.plugin.hooks`` is the thin pytest
layer (``comfytest.plugin.hooks`` is the ``pytest11`` entry point). See docs/architecture.md.

The names most scripts need are importable from here; they load their module on first use, so
``import comfytest`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "RunResult": "comfytest.comfy.execution",
    "NodeTiming": "comfytest.comfy.timing",
    "Workflow": "comfytest.workflows.workflow",
    "load_workflow": "comfytest.workflows.workflow",
    "ComfyTestError": "comfytest.errors",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'comfytest' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
