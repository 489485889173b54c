"""Time UI-format conversion, Python vs the server's frontend: ``python benchmarks/bench_conversion.py``.

Starts the embedded ComfyUI (or uses ``--url``), opens one headless Chromium on its web UI
(timing how long until ``app.graphToPrompt`` exists), then converts the same workflows both ways,
side by side, ``--repeat`` times each: the subgraph example and, when the
``comfyui-workflow-templates-json`` dev dependency is installed, a few official templates.
Prints medians per workflow and the ratio frontend / Python.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comfytest.comfy.frontend import FrontendConverter, find_browser
from comfytest.plugin.session import open_session
from comfytest.plugin.settings import Settings
from comfytest.workflows.uiformat import convert_ui_workflow

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = ("flux_dev_checkpoint_example.json", "image_ovis_text_to_image.json", "sdxl_simple_example.json")


def workflows() -> list[tuple[str, Any]]:
    found = [("tiny_subgraph.json", json.loads((REPO / "workflows" / "tiny_subgraph.json").read_text()))]
    try:
        root = importlib.resources.files("comfyui_workflow_templates_json") / "templates"
    except ModuleNotFoundError:
        return found
    for name in TEMPLATES:
        path = root / name
        if path.is_file():
            found.append((name, json.loads(path.read_text())))
    return found


def median_ms(call: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="a running ComfyUI (default: start the embedded one)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    browser = find_browser()
    if browser is None:
        sys.exit("no Chromium on PATH")
    settings = Settings(url=args.url, embedded_home=REPO / ".comfytest")
    session = open_session(settings, Path(tempfile.mkdtemp(prefix="comfytest-bench-")))
    try:
        info = session.object_info()
        start = time.perf_counter()
        with FrontendConverter(session.url, browser) as frontend:
            ready = time.perf_counter() - start
            print(f"browser start + page ready: {ready:.2f} s")
            print(f"{'workflow':40} {'python ms':>10} {'frontend ms':>12} {'ratio':>7}")
            warnings.simplefilter("ignore")
            for name, data in workflows():
                python = median_ms(lambda d=data: convert_ui_workflow(d, info), args.repeat)
                front = median_ms(lambda d=data, n=name: frontend.convert(d, n), args.repeat)
                print(f"{name:40} {python:10.2f} {front:12.1f} {front / python:7.0f}x")
    finally:
        session.close()


if __name__ == "__main__":
    main()
