"""Issue 23: the trace of intermediate outputs names the node that changed.

A node pack of our own (written into tmp_path, like an author's) has a chain of four image
nodes; ``TRACEPACK_CHANGE=1`` in the ComfyUI process changes the one in the middle. A launched
ComfyUI loads it beside comfytest's node pack (the tap). Baselines and traces are recorded with
the pack as released; with the change on, every changed-output failure must name that node (id,
title, class) as the first change and no other, with one diagnostic run per failing case; with
the pack unchanged the trace adds no failure and no run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from comfytest.comfy.embedded import load_embedded
from comfytest.comfy.server import LaunchSpec, LocalServer
from comfytest.comfy.trace import TAP_CLASS
from comfytest.plugin.session import ComfySession
from tests.integration.lifecycle import Workspace, text
from tests.load import loaded

REPO = Path(__file__).parents[2]
UPDATE = "--comfy-update-baselines"
CHANGE_ENV = "TRACEPACK_CHANGE"

PACK = '''
import os

class _Image:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "tracepack"

class TraceBrighten(_Image):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "amount": ("FLOAT", {"default": 0.1})}}
    def run(self, image, amount):
        return ((image + amount).clamp(0, 1),)

class TraceWarmTint(_Image):
    """The released tint adds 0.05 red; the change (TRACEPACK_CHANGE=1) adds 0.25."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}
    def run(self, image):
        red = 0.25 if os.environ.get("TRACEPACK_CHANGE") == "1" else 0.05
        out = image.clone()
        out[..., 0] = (out[..., 0] + red).clamp(0, 1)
        return (out,)

class TraceContrast(_Image):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "factor": ("FLOAT", {"default": 1.5})}}
    def run(self, image, factor):
        return (((image - 0.5) * factor + 0.5).clamp(0, 1),)

class TraceFlip(_Image):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}
    def run(self, image):
        return (image.flip(2),)

NODE_CLASS_MAPPINGS = {c.__name__: c for c in (TraceBrighten, TraceWarmTint, TraceContrast, TraceFlip)}
'''


def chain(prefix: str) -> dict[str, Any]:
    """Noise → Brighten → Warm tint → Contrast → Flip → SaveImage."""
    def node(cls: str, title: str, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"class_type": cls, "_meta": {"title": title}, "inputs": inputs}

    return {
        "1": node("ComfyTestNoiseImage", "Noise", {"width": 48, "height": 48, "seed": 5, "batch_size": 1}),
        "2": node("TraceBrighten", "Brighten", {"image": ["1", 0], "amount": 0.1}),
        "3": node("TraceWarmTint", "Warm tint", {"image": ["2", 0]}),
        "4": node("TraceContrast", "Contrast", {"image": ["3", 0], "factor": 1.5}),
        "5": node("TraceFlip", "Flip", {"image": ["4", 0]}),
        "9": node("SaveImage", "Save", {"images": ["5", 0], "filename_prefix": prefix}),
    }


#: two cases (seeds) of the chain, and one workflow that does not use the changed node
CASES_TOML = "[cases.a]\nseed = 1\n[cases.b]\nseed = 2\n"
OTHER = {k: v for k, v in chain("other").items() if k != "3"} | {
    "4": {"class_type": "TraceContrast", "inputs": {"image": ["2", 0], "factor": 1.5}}}


@pytest.fixture
def ws(pytester: pytest.Pytester, inner_args: list[str]) -> Workspace:
    return Workspace.create(pytester, inner_args)


@pytest.fixture
def tapped_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The prompts with taps that the inner sessions ran (pytester runs them in this process)."""
    runs: list[str] = []
    original = ComfySession.run_prompt

    def counting(self: ComfySession, prompt: Any, **kw: Any) -> Any:
        if any(node.get("class_type") == TAP_CLASS for node in prompt.values()):
            runs.append(json.dumps(sorted(prompt)))
        return original(self, prompt, **kw)

    monkeypatch.setattr(ComfySession, "run_prompt", counting)
    return runs


def launched(ws: Workspace, base: Path, *, tap: bool = True) -> list[str]:
    """Arguments that launch the embedded ComfyUI on ``base``, with our pack (and comfytest's)."""
    nodes = base / "custom_nodes"
    (nodes / "tracepack").mkdir(parents=True, exist_ok=True)
    (nodes / "tracepack" / "__init__.py").write_text(PACK)
    if tap and not (nodes / "comfytest_nodepack").exists():
        (nodes / "comfytest_nodepack").symlink_to(REPO / "comfytest" / "nodepack")
    emb = load_embedded(REPO / ".comfytest")
    return [a for a in ws.args if not a.startswith("--comfy-url")] + [
        f"--comfy-launch={emb.comfyui_dir}", f"--comfy-python={emb.python}",
        f"--comfy-launch-args=--cpu --base-directory {base}"]


def run(ws: Workspace, args: list[str], *extra: str) -> pytest.RunResult:
    """One inner session on the launched server; the results folder emptied first."""
    shutil.rmtree(ws.results, ignore_errors=True)
    return ws.pytester.runpytest(*args, *extra)


def records(ws: Workspace) -> dict[str, dict[str, Any]]:
    return {f"{r['workflow'].split('/')[-1].removesuffix('.json')}::{r['case']}": r for r in ws.report()["tests"]}


def test_a_changed_node_in_a_chain_is_named_as_the_first_change(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tapped_runs: list[str],
) -> None:
    ws.workflow("chain", chain("chain"), CASES_TOML)
    ws.workflow("notrace", chain("notrace"))
    ws.workflow("other", OTHER)
    args = launched(ws, tmp_path / "base")
    monkeypatch.delenv(CHANGE_ENV, raising=False)
    run(ws, args, UPDATE).assert_outcomes(passed=4)
    assert len(tapped_runs) == 4, "one tapped run per case records its trace"
    trace = (ws.case_dir("chain", "a") / "trace.txt").read_text().splitlines()
    assert [json.loads(line)["node"] for line in trace[1:]] == ["1", "2", "3", "4", "5"]
    assert json.loads(trace[3])["out"][0]["type"] == "IMAGE" and json.loads(trace[3])["title"] == "Warm tint"
    assert (ws.case_dir("chain", "a") / "trace.png").is_file(), "the image outputs' pictures"
    (ws.case_dir("notrace", "default") / "trace.txt").unlink()  # a baseline made before traces
    (ws.case_dir("notrace", "default") / "trace.png").unlink()

    tapped_runs.clear()
    unchanged = run(ws, args)
    unchanged.assert_outcomes(passed=4)
    assert tapped_runs == [], "passing cases run no taps"
    assert "unused baseline" not in text(unchanged).lower()

    monkeypatch.setenv(CHANGE_ENV, "1")
    changed = run(ws, args)
    changed.assert_outcomes(passed=1, failed=3)
    found = records(ws)
    assert len(tapped_runs) == 2, "one diagnostic run per failing case that has a trace"
    for case in ("chain::a", "chain::b"):
        message = str(found[case]["message"])
        assert "first change at node 3 'Warm tint' (TraceWarmTint): IMAGE output differs (" in message, message
        assert "its inputs match the baseline — the change is inside this node" in message
        assert "also changed on their own" not in message
        assert "2 later node(s) differ because their inputs did: 4, 5" in message
        assert found[case]["trace"]["first_change"] == {
            "node_id": "3", "class_type": "TraceWarmTint", "title": "Warm tint", "state": "origin"}
        [pictures] = found[case]["trace"]["pictures"]
        assert pictures["node_id"] == "3" and Path(pictures["baseline"]).is_file() and Path(pictures["obtained"]).is_file()
        states = {n["node_id"]: n["state"] for n in found[case]["trace"]["chain"]}
        assert states == {"1": "same", "2": "same", "3": "origin", "4": "follows", "5": "follows"}
    assert "no trace of intermediate outputs yet" in str(found["notrace::default"]["message"])
    assert UPDATE in str(found["notrace::default"]["message"])
    assert found["other::default"]["trace"] is None
    junit_out = text(changed)
    assert junit_out.count("first change at node 3 'Warm tint' (TraceWarmTint)") >= 2
    html = (ws.results / "report.html").read_text()
    assert "first change" in html and "TraceWarmTint" in html
    assert html.count('data-role="baseline"') >= 2 and "baseline: node 3 output 0" in html


def test_a_server_without_the_tap_node_says_the_node_cannot_be_located(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
) -> None:
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0x336699}},
        "2": {"class_type": "TraceBrighten", "inputs": {"image": ["1", 0], "amount": 0.1}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "notap"}},
    }
    ws.workflow("notap", prompt)
    # every server comfytest starts gets its node pack (--comfy-custom-nodes); a server without it
    # is one the user runs: started here, on a base folder holding only our pack, given by URL
    base = tmp_path / "base"
    launched(ws, base, tap=False)
    emb = load_embedded(REPO / ".comfytest")
    server = LocalServer(LaunchSpec(comfyui_dir=emb.comfyui_dir, python=emb.python, args=("--cpu",), base_dir=base),
                         tmp_path / "server")
    server.start(timeout=loaded(120))
    request.addfinalizer(server.stop)
    args = [a for a in ws.args if not a.startswith("--comfy-url")] + [f"--comfy-url={server.url}"]
    made = run(ws, args, UPDATE)
    made.assert_outcomes(passed=1)
    assert not (ws.case_dir("notap", "default") / "trace.txt").exists()
    assert "no ComfyTestTap node" in records(ws)["notap::default"]["trace"]["message"]
    ws.settings("notap", '[patches."TraceBrighten"]\namount = 0.5\n')
    failed = run(ws, args)
    failed.assert_outcomes(failed=1)
    message = str(records(ws)["notap::default"]["message"])
    assert "the node that changed cannot be located: the server has no ComfyTestTap node" in message
    assert "custom_nodes/" in message
