"""--comfy-perf against a real ComfyUI: every node but the model loader executes in each warm run
(nothing from the cache) while the loaded checkpoint stays cached; a node of our own pack made
2× slower (COMFYTEST_WORK_FACTOR in a launched embedded ComfyUI) fails with kind ``timing``,
naming the node, against the previous report found in the results folder.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from comfytest.comfy.embedded import load_embedded
from comfytest.nodepack import WORK_FACTOR_ENV
from comfytest.report.perfcompare import describe_json
from tests.integration.lifecycle import TINY_TXT2IMG, Workspace, text

REPO = Path(__file__).parents[2]

#: noise → a 40 ms "Tint" node → SaveImage
WORK: dict[str, Any] = {
    "1": {"class_type": "ComfyTestNoiseImage", "inputs": {"width": 16, "height": 16, "seed": 3, "batch_size": 1}},
    "2": {"class_type": "ComfyTestWork", "_meta": {"title": "Tint"}, "inputs": {"image": ["1", 0], "ms": 40.0}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "perf"}},
}


@pytest.fixture
def ws(pytester: pytest.Pytester, inner_args: list[str]) -> Workspace:
    return Workspace.create(pytester, inner_args)


def test_warm_runs_execute_every_node_but_the_loader(ws: Workspace) -> None:
    ws.workflow("txt2img", TINY_TXT2IMG)
    result = ws.run("--comfy-perf", "--comfy-update-baselines", "--comfy-perf-max-runs=6")
    result.assert_outcomes(passed=1)
    record = ws.report()["tests"][0]
    perf = record["perf"]
    assert perf["warm_runs"] == len(record["runs"]) == 6
    assert perf["reloaded"] == [] and perf["cached"] == [] and perf["note"] is None
    for run in record["runs"]:
        cached = {n["node_id"] for n in run["nodes"] if n["cached"]}
        executed = {n["node_id"] for n in run["nodes"] if not n["cached"]}
        assert cached == {"1"}, "only the checkpoint loader comes from the cache: its model stays loaded"
        assert executed == {"2", "3", "4", "5", "6", "7"}
    assert record["timing"] == perf["cold"]  # the cold run is the checked one
    assert "not compared: no earlier perf report" in perf["not_compared"]
    assert "perf: 1 test(s) measured, 0 compared" in text(result)


def test_a_node_made_twice_as_slow_fails_with_kind_timing(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws.workflow("work", WORK)
    emb = load_embedded(REPO / ".comfytest")
    args = [a for a in ws.args if not a.startswith("--comfy-url")] + [
        f"--comfy-embedded-home={emb.home}", "--comfy-perf", f"--junitxml={ws.pytester.path / 'junit.xml'}"]
    monkeypatch.setenv(WORK_FACTOR_ENV, "1")
    ws.pytester.runpytest(*args, "--comfy-update-baselines").assert_outcomes(passed=1)

    monkeypatch.setenv(WORK_FACTOR_ENV, "2")  # a new embedded server per session reads it
    result = ws.pytester.runpytest(*args)  # no --comfy-compare: the results folder's report.json
    result.assert_outcomes(failed=1)
    out = text(result)
    assert f"timing regression against {ws.results / 'report.json'}" in out
    record = ws.report()["tests"][0]
    assert "\n  node 2 'Tint' (ComfyTestWork): slower ×" in record["message"]  # the warm line, not the cold one
    assert "significantly slower:" in out
    assert record["failure_kind"] == "timing"
    node = next(c for c in record["perf"]["changes"] if c["scope"] == "2" and c["phase"] == "warm")
    # node durations come from the client's receive times: on a busy machine a frame's delay moves
    # a few ms from one node to its neighbour, so the +40 ms reads as +30 to +50
    assert node["verdict"] == "slower" and node["p_value"] < 0.01 and node["delta_ms"] > 20
    assert node["ratio_low"] > 1.2
    props = {p.get("name"): p.get("value") for p in ET.parse(ws.pytester.path / "junit.xml").iter("property")}
    assert props["comfy_perf_node_2_verdict"] == "slower" and props["comfy_failure_kind"] == "timing"
    assert "## Performance comparison" in (ws.results / "report.md").read_text()
    page = (ws.results / "report.html").read_text()
    assert 'class="perf-change slower" data-scope="2"' in page and "perf-interval" in page
    history_free = json.loads((ws.results / "report.json").read_text())
    assert history_free["tests"][0]["perf"]["compared_with"] == str(ws.results / "report.json")


def test_perf_warn_keeps_the_slowdown_a_warning(ws: Workspace, tmp_path: Path) -> None:
    """The slowdown by the node's own input (the outer server cannot take an env variable)."""
    ws.workflow("work", WORK)
    ws.run("--comfy-perf", "--comfy-update-baselines").assert_outcomes(passed=1)
    reference = tmp_path / "reference.json"
    reference.write_bytes((ws.results / "report.json").read_bytes())
    ws.workflow("work", {**WORK, "2": {**WORK["2"], "inputs": {"image": ["1", 0], "ms": 90.0}}})
    result = ws.run("--comfy-perf", "--comfy-perf-warn", f"--comfy-compare={reference}", "--comfy-update-baselines")
    result.assert_outcomes(passed=1)
    assert "timing regression: workflows/work.json::default node 2 'Tint' (ComfyTestWork): slower ×" in text(result)


def test_an_unchanged_test_stops_early_and_grows_the_reference_pool(ws: Workspace, tmp_path: Path) -> None:
    """The CI case: against a reference of 6 warm runs, an unchanged 40 ms node needs no 6 more."""
    ws.workflow("work", WORK)
    ws.run("--comfy-perf", "--comfy-update-baselines").assert_outcomes(passed=1)
    first = ws.report()["tests"][0]["perf"]
    assert first["warm_runs"] == 6 and first["reference_runs"] == 0 and len(first["pool"]["2"]) == 6
    reference = tmp_path / "reference.json"
    reference.write_bytes((ws.results / "report.json").read_bytes())

    result = ws.run("--comfy-perf", f"--comfy-compare={reference}")
    result.assert_outcomes(passed=1)
    record = ws.report()["tests"][0]
    perf = record["perf"]
    # a disturbed run on a busy machine costs another run, never six
    assert perf["stopped"] == "inside" and perf["warm_runs"] < 6 and perf["reference_runs"] == 6
    own = [n["duration_ms"] for run in record["runs"] for n in run["nodes"] if n["node_id"] == "2"]
    assert perf["pool"]["2"] == [*reversed(own), *first["pool"]["2"]]  # newest first, then the reference's
    node = next(c for c in perf["changes"] if c["scope"] == "2" and c["phase"] == "warm")
    assert node["verdict"] == "unchanged" and node["allowed_ms"] == 20 and node["n_before"] == 6
    assert describe_json(node).startswith("node 2 'Tint' (ComfyTestWork): no material change: ")
