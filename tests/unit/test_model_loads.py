"""Model loads: loader nodes (the preflight loader table) found in a workflow, marked when they
executed (not cached) in the record, the terminal table and the HTML timing bars; the memory
block of the HTML report and its CPU note."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from comfytest.comfy.timing import NodeTiming, RunTiming
from comfytest.plugin.case import loader_nodes, timing_json
from comfytest.report.html import render_html
from comfytest.report.text import render_terminal
from comfytest.workflows.workflow import parse_workflow
from tests.browser import DomIndex

DATA = Path(__file__).parents[1] / "data"


def test_the_checkpoint_loader_is_the_loader_of_tiny_txt2img() -> None:
    info = json.loads((DATA / "object_info.json").read_text())
    workflow = parse_workflow(json.loads((DATA / "workflows" / "tiny_txt2img.json").read_text()))
    loaders = loader_nodes(workflow, info)
    assert list(loaders.values()) == [("tiny-sd15-random.safetensors",)]
    (node_id,) = loaders
    assert workflow.nodes[node_id].class_type == "CheckpointLoaderSimple"


def timing(cached_loader: bool) -> RunTiming:
    nodes = (NodeTiming("4", "CheckpointLoaderSimple", None, 0.0 if cached_loader else 900.0, cached_loader, 1),
             NodeTiming("3", "KSampler", "Sampler", 300.0, False, 1, 20, 66.7))
    return RunTiming("p", "success", 1.0, 1250.0, 1260.0, 0.0, nodes, ("4",) if cached_loader else ())


def test_an_executed_loader_is_a_model_load_and_a_cached_one_is_not() -> None:
    loaders = {"4": ("tiny.safetensors",)}
    executed = {n["node_id"]: n["model_load"] for n in timing_json(timing(False), loaders)["nodes"]}
    cached = {n["node_id"]: n["model_load"] for n in timing_json(timing(True), loaders)["nodes"]}
    assert executed == {"4": True, "3": False} and cached == {"4": False, "3": False}


def doc() -> dict[str, Any]:
    record = {"nodeid": "w.json::a", "workflow": "w.json", "case": "a", "outcome": "passed",
              "timing": timing_json(timing(False), {"4": ("tiny.safetensors",)}),
              "memory": {"samples": 12, "interval_ms": 100, "device_type": "cpu", "rss_idle_bytes": 2**30,
                         "rss_peak_bytes": 2**30 + 500 * 2**20, "ram_used_idle_bytes": 4 * 2**30,
                         "ram_used_peak_bytes": 5 * 2**30}}
    return {"schema": "comfytest.report/1", "tests": [record], "summary": {"total": 1, "passed": 1}}


def test_the_table_says_model_load_and_what_cpu_figures_mean() -> None:
    lines = render_terminal(doc())
    row = next(line for line in lines if line.startswith("w.json [a]"))
    assert "4 CheckpointLoaderSimple 900 ms (model load)" in row and "1.49 GiB RSS (+500 MiB)" in row
    assert any(line.startswith("peak memory: CPU device: ComfyUI reports system RAM") for line in lines)


def test_the_html_marks_the_load_and_shows_the_memory(tmp_path: Path) -> None:
    dom = DomIndex(render_html(doc(), tmp_path))
    bars = {b.attrs["data-node-id"]: b.classes for b in dom.find(cls="node-bar")}
    assert "model-load" in bars["4"] and "model-load" not in bars["3"]
    (memory,) = dom.find("div", "memory")
    assert memory.attrs["data-samples"] == "12" and memory.attrs["data-rss-rise-bytes"] == str(500 * 2**20)
    text = "".join(dom.text)
    assert "900 ms · model load" in text and "peak RSS: 1.49 GiB" in text and "CPU device" in text
