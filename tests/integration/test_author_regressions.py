"""Issue 14's table, played against comfytest's own node pack: the changes custom-node authors
make, each switched on in a launched ComfyUI through COMFYTEST_REGRESSIONS (see the nodepack).

Baselines (outputs, node interfaces, timings) are made on the session's server; then one
ComfyUI is launched with every regression on, and each case must fail with the defaults and a
message naming what changed. The timing check uses configured thresholds; a pack with a
syntax error must stop a session once, naming file and line, with exit code 1.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from comfytest.comfy.embedded import load_embedded
from comfytest.nodepack import REGRESSIONS, REGRESSIONS_ENV
from tests.integration.lifecycle import Workspace, text

REPO = Path(__file__).parents[2]
UPDATE = "--comfy-update-baselines"


def _chain(*nodes: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """Noise image → nodes... → SaveImage, each node taking the previous one's image."""
    prompt: dict[str, Any] = {"1": {"class_type": "ComfyTestNoiseImage",
                                    "inputs": {"width": 64, "height": 64, "seed": 3, "batch_size": 1}}}
    for index, (cls, inputs) in enumerate(nodes, start=2):
        prompt[str(index)] = {"class_type": cls, "inputs": {"image": [str(index - 1), 0], **inputs}}
    last = str(len(prompt))
    prompt["9"] = {"class_type": "SaveImage", "inputs": {"images": [last, 0], "filename_prefix": "authors"}}
    return prompt


WORKFLOWS: dict[str, dict[str, Any]] = {
    "resize": _chain(("ComfyTestResize", {"width": 48, "height": 48})),
    "blur": _chain(("ComfyTestBlur", {"amount": 2})),
    "desaturate": _chain(("ComfyTestDesaturate", {"factor": 1.0})),
    "label": _chain(("ComfyTestLabel", {"text": "v1.0", "shadow_distance": 1})),
    "math": {"1": {"class_type": "ComfyTestMath", "inputs": {"a": 8192.0, "b": 3.0}}},
    "frames": {"1": {"class_type": "ComfyTestFrames", "inputs": {"width": 16, "height": 16, "frames": 4}},
               "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "frames"}}},
    "levels": _chain(("ComfyTestLevels", {"strength": 0.8})),
    "invert": _chain(("ComfyTestInvert", {})),
}
TIMING = "timing = { abs_ms = 10, rel_pct = 50, floor_ms = 0 }\n"  # a millisecond-scale pack


@pytest.fixture
def ws(pytester: pytest.Pytester, inner_args: list[str]) -> Workspace:
    return Workspace.create(pytester, inner_args)


def _launched(ws: Workspace, base: Path) -> list[str]:
    """The workspace's arguments with the embedded ComfyUI launched (--comfy-launch) on ``base``."""
    emb = load_embedded(REPO / ".comfytest")
    return [a for a in ws.args if not a.startswith("--comfy-url")] + [
        f"--comfy-launch={emb.comfyui_dir}", f"--comfy-python={emb.python}",
        f"--comfy-launch-args=--cpu --base-directory {base}"]


def test_every_change_in_the_table_fails_with_the_defaults(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    for name, prompt in WORKFLOWS.items():
        ws.workflow(name, prompt, TIMING if name == "invert" else None)
    made = ws.run(UPDATE, "--comfy-interface", "--comfy-free-cache")
    made.assert_outcomes(passed=len(WORKFLOWS))
    previous = tmp_path / "previous.json"
    shutil.copyfile(ws.results / "report.json", previous)

    monkeypatch.setenv(REGRESSIONS_ENV, ",".join(REGRESSIONS))
    emb = load_embedded(REPO / ".comfytest")
    args = [a for a in ws.args if not a.startswith("--comfy-")] + [
        f"--comfy-baselines={ws.baselines}", f"--comfy-results={ws.results}",
        f"--comfy-embedded-home={emb.home}"]  # the embedded server, started with the regressions on
    result = ws.pytester.runpytest(*args, "--comfy-interface", "--comfy-free-cache",
                                   f"--comfy-compare={previous}", "--comfy-timing-fail")
    out = text(result)
    result.assert_outcomes(failed=len(WORKFLOWS))
    assert result.ret == 1
    records = {r["workflow"].split("/")[-1].removesuffix(".json"): r for r in ws.report()["tests"]}

    def message(name: str) -> str:
        return str(records[name]["message"])

    for name in ("resize", "blur", "desaturate", "label"):
        assert "max pixel diff" in message(name) and "> 4" in message(name), name
        assert records[name]["failure_kind"] == "regression"
    assert "text differs:\n  baseline: '2730.6666666666665'\n  obtained: '2730'" in message("math")
    assert "missing outputs: node 9 (SaveImage) produced 3 output(s) but has baselines for 4; not produced: 9_3" \
        in message("frames")
    assert "node interface of ComfyTestLevels changed" in message("levels")
    assert "ComfyTestLevels input 'strength': default 0.8 -> 0.5" in message("levels")
    assert records["invert"]["failure_kind"] == "timing"
    assert "node 2 ComfyTestInvert: slower +" in message("invert") and " ms (" in message("invert")
    assert "phash distance" in out  # the hash is reported beside the pixel criteria


BROKEN = "NODE_CLASS_MAPPINGS = {}\n\ndef run(image:\n    return image\n"


def test_a_pack_that_fails_to_import_stops_the_session_once_with_file_and_line(
    ws: Workspace, tmp_path: Path,
) -> None:
    base = tmp_path / "base"
    pack = base / "custom_nodes" / "broken_pack"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text("from .nodes import NODE_CLASS_MAPPINGS\n")
    (pack / "nodes.py").write_text(BROKEN)
    for name in ("resize", "blur"):
        ws.workflow(name, WORKFLOWS[name])

    result = ws.pytester.runpytest(*_launched(ws, base), "--comfy-missing=skip")
    out = text(result)
    assert result.ret == 1, "the pack's failure, not the machine's (75)"
    assert out.count("custom node pack(s) failed to import") == 1
    assert f"broken_pack ({pack}): SyntaxError: '(' was never closed" in out
    assert f"at {pack / 'nodes.py'}, line 3" in out
    assert "skipped" not in out.splitlines()[-1]
