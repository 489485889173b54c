"""The repository's own example suite: ``pytest workflows/`` (``scripts/run-examples``), and
``pytest`` / ``pytest .`` from the repository root.

The comfytest plugin comes from the installed package (its ``pytest11`` entry point) and
``pyproject.toml`` sets ``comfy_workflows = ["workflows"]`` and the embedded ComfyUI's home, so
the examples need no fixtures of their own. What they need here is to stay apart from the
other JSON files of a checkout: with a path on the command line (``pytest .``) every JSON file
under it is a candidate workflow, and these folders hold JSON that is not a test of ours —
the embedded ComfyUI's own files, reports and server outputs, baselines, the virtual
environment, benchmark data.
"""

from __future__ import annotations

collect_ignore = [".comfytest", ".venv", "comfytest-results", "baselines", "benchmarks", "docs"]
collect_ignore_glob = ["*/comfytest-results/*", "*/.venv/*"]
