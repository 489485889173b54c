"""comfytest: run ComfyUI workflows as pytest regression tests.

The library (client, events, workflow, imagecompare, baselines, timing, report) knows nothing of
pytest; ``comfytest.plugin`` is the thin pytest layer. See docs/architecture.md.
"""

from __future__ import annotations

__version__ = "0.1.0"
