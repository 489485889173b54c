"""Results folders and reports that grow with failures, not passes (issue 26), from real sessions
against the session's embedded server: passing outputs leave a thumbnail, a failing one every
artefact and a copy of its baseline; report.html links them and opens in headless Chromium.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.browser import DomIndex, find_chromium, run_chromium

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 256, "height": 256, "batch_size": 1, "color": 8421504}},
    "2": {"class_type": "ImageAddNoise", "inputs": {"image": ["1", 0], "seed": 0, "strength": 0.5}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "size"}},
}
CASES = 4


def write_suite(root: Path, base: int, changed: int | None = None) -> None:
    """CASES cases of one workflow; case ``changed`` gets another seed (its output changes)."""
    folder = root / "workflows"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "noise.json").write_text(json.dumps(WORKFLOW))
    cases = [f'[cases.c{i}]\npatches = {{ "2" = {{ seed = {base + i + (1000 if i == changed else 0)} }} }}\n'
             for i in range(CASES)]
    (folder / "noise.toml").write_text("\n".join(cases))


def run(pytester: pytest.Pytester, inner_args: list[str], *extra: str) -> pytest.RunResult:
    # in a subprocess: an in-process run would re-import numpy's FFT (phash), which fails
    return pytester.runpytest_subprocess(*inner_args, "workflows", *extra, timeout=300)


def case_files(results: Path, case: str) -> list[str]:
    folder = results / "workflows" / "noise" / case
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def sessions(pytester: pytest.Pytester, inner_args: list[str], tmp_path: Path) -> dict[str, Any]:
    """Baselines written, then a session in which case c1 fails."""
    base = random.randrange(10**6, 10**9)  # seeds the shared server has not cached
    write_suite(pytester.path, base)
    assert run(pytester, inner_args, "--comfy-update-baselines").ret == 0
    write_suite(pytester.path, base, changed=1)
    result = run(pytester, inner_args)
    result.assert_outcomes(passed=CASES - 1, failed=1)
    results = tmp_path / "results"
    return {"results": results, "doc": json.loads((results / "report.json").read_text()), "args": inner_args}


def test_passes_leave_a_thumbnail_and_a_failure_everything_and_the_page_shows_them(
    sessions: dict[str, Any], tmp_path: Path,
) -> None:
    results: Path = sessions["results"]
    assert case_files(results, "c0") == ["3_0.thumb.jpg"], "a pass keeps no full obtained image"
    assert (results / "workflows" / "noise" / "c0" / "3_0.thumb.jpg").stat().st_size < 12_000
    failed_files = case_files(results, "c1")
    assert [f for f in failed_files if not f.startswith("trace_")] == [
        "3_0.baseline.png", "3_0.diff.png", "3_0.obtained.png", "3_0.side_by_side.png"]
    # and the pictures of the node where the change started (issue 23's diagnostic run)
    assert [f for f in failed_files if f.startswith("trace_")] == ["trace_2_0.baseline.png", "trace_2_0.obtained.png"]
    baseline = tmp_path / "baselines" / "workflows" / "noise" / "c1" / "3_0.png"
    assert (results / "workflows" / "noise" / "c1" / "3_0.baseline.png").read_bytes() == baseline.read_bytes()
    with Image.open(results / "workflows" / "noise" / "c1" / "3_0.obtained.png") as obtained:
        assert obtained.size == (256, 256)
    tests = {t["case"]: t for t in sessions["doc"]["tests"]}
    passed, failed = tests["c0"]["comparisons"][0], tests["c1"]["comparisons"][0]
    assert passed["obtained"] is None and passed["thumbnail"].endswith("workflows/noise/c0/3_0.thumb.jpg")
    assert failed["baseline_copy"].endswith("workflows/noise/c1/3_0.baseline.png")
    assert tests["c0"]["timing"]["queue_wait_ms"] is not None, "queue wait without /history"
    # the linked report opens with its images in a real browser
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium found (apt-get install -y chromium, or set COMFYTEST_CHROMIUM)")
    page = sessions["results"] / "report.html"
    assert "data:image" not in page.read_text()
    dom = DomIndex(run_chromium(binary, page, tmp_path / "profile"))
    body = dom.one("body")
    assert body.attrs["data-js-test-count"] == str(CASES)
    assert body.attrs["data-images-loaded"] == "true"
    images = dom.find("img", "artefact")
    assert sorted(i.attrs["data-role"] for i in images) == sorted(
        ["thumbnail"] * (CASES - 1) + ["baseline", "obtained", "diff", "side_by_side"]
        + ["baseline", "obtained"])  # the changed node's intermediate images (the trace)
    assert int(body.attrs["data-images-decoded"]) == len(images)


def test_keep_passed_keeps_the_full_obtained_images(
    pytester: pytest.Pytester, sessions: dict[str, Any],
) -> None:
    run(pytester, sessions["args"], "--comfy-keep-passed").assert_outcomes(passed=CASES - 1, failed=1)
    results: Path = sessions["results"]
    assert case_files(results, "c0") == ["3_0.obtained.png", "3_0.thumb.jpg"]
    doc = json.loads((results / "report.json").read_text())
    passed = next(t for t in doc["tests"] if t["case"] == "c0")["comparisons"][0]
    assert passed["obtained"].endswith("workflows/noise/c0/3_0.obtained.png")
