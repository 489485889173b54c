"""--comfy-calibrate N: run each case N times from a cleared cache, report the spread between runs
and a suggested tolerance; the pure measuring code first, then the option through pytester."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from comfytest.compare.calibrate import measure_runs, measure_spread, suggest_tolerance
from comfytest.compare.images import hash_distance, image_hash
from comfytest.errors import ComparisonError
from tests.integration.lifecycle import REPO, TINY_TXT2IMG, Workspace, text


@pytest.mark.parametrize(("largest", "suggested"), [(0, 1), (1, 2), (2, 3), (3, 5), (4, 6), (10, 15)])
def test_suggested_tolerance_is_the_largest_distance_plus_half_and_at_least_one(largest: int, suggested: int) -> None:
    assert suggest_tolerance(largest) == suggested


def test_spread_compares_every_pair_of_runs() -> None:
    grey, light = Image.new("RGB", (32, 32), (128, 128, 128)), Image.new("RGB", (32, 32), (131, 128, 128))
    half = Image.new("RGB", (32, 32), (128, 128, 128))
    half.paste((255, 255, 255), (0, 0, 16, 32))
    apart = hash_distance(image_hash(grey), image_hash(half))
    spread = measure_spread("7_0", [grey, light, half])
    assert apart > 0 and spread.distances == (0, apart, apart)  # pairs (0,1) (0,2) (1,2)
    assert (spread.runs, spread.min, spread.median, spread.max) == (3, 0, apart, apart)
    assert spread.max_abs_diff == 127
    assert spread.suggested_tolerance == suggest_tolerance(spread.max)


def test_an_output_missing_from_one_run_is_an_error() -> None:
    img = Image.new("RGB", (8, 8))
    with pytest.raises(ComparisonError, match=r"run 2 produced outputs \['7_0'\], run 1 produced \['7_0', '9_0'\]"):
        measure_runs([{"7_0": img, "9_0": img}, {"7_0": img}])


@pytest.fixture
def ws(pytester: pytest.Pytester, inner_args: list[str]) -> Workspace:
    return Workspace.create(pytester, inner_args)


def test_calibrate_runs_each_case_n_times_and_prints_the_spread(ws: Workspace) -> None:
    ws.workflow("noise_blur_chain", REPO / "workflows" / "noise_blur_chain.json", "seed = 42\n")
    ws.workflow("tiny_txt2img", TINY_TXT2IMG, "seed = 42\n[cases.base]\n")

    result = ws.run("--comfy-calibrate", "3")
    result.assert_outcomes(passed=2)  # no baselines exist, and none are needed
    assert not ws.baselines.exists()
    result.stdout.fnmatch_lines([
        ("calibration: hash distances between every pair of runs, cache cleared before each; "
        "suggested tolerance = max + max(1, ceil(max / 2))"),
        "test * output * hash * runs * min * median * max * max px diff * tolerance * suggested * suggested max_diff",
    ])
    table = result.outlines[next(i for i, ln in enumerate(result.outlines) if ln.startswith("calibration:")):]
    rows = {m.group(1): m.group(2).split() for m in
            (re.match(r"(workflows/\S+ \[\w+\])\s+(.*)", ln) for ln in table) if m}
    # on CPU with a pinned thread count every run gives the same pixels
    assert rows["workflows/noise_blur_chain.json [default]"] == ["5_0", "phash:8", "3", "0", "0", "0", "0", "2", "1", "0", "(exact)"]
    assert rows["workflows/tiny_txt2img.json [base]"] == ["7_0", "phash:8", "3", "0", "0", "0", "0", "2", "1", "0", "(exact)"]

    for record in ws.report()["tests"]:
        (entry,) = record["calibration"]
        assert (entry["runs"], entry["distances"], entry["max_abs_diff"]) == (3, [0, 0, 0], 0)
        assert entry["suggested_tolerance"] == 1 and entry["tolerance"] == 2
        assert entry["suggested_max_diff"] == 0, "identical pixels in every run: exact"
        assert record["comparisons"] == []
        assert len(record["runs"]) == 3
        assert all(run["nodes"] and not any(n["cached"] for n in run["nodes"]) for run in record["runs"]), \
            "every calibration run executes every node"


def test_calibrate_cannot_be_combined_with_updating_baselines(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--comfy-calibrate", "2", "--comfy-update-baselines")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "cannot be combined with --comfy-update-baselines" in text(result)


def test_calibrate_needs_a_positive_count(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--comfy-calibrate", "0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "'0' must be 1 or more" in text(result)
