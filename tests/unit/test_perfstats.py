"""The statistics of --comfy-perf on known distributions (seeded), and the record comparison."""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import numpy as np
import pytest

from comfytest.plugin.perf import PERF_INPUT, PerfPlan, tag
from comfytest.report.perfcompare import compare_perf, history_spread, properties, warm_samples
from comfytest.report.perfstats import (
    Rule,
    compare_samples,
    detectable_ms,
    fewest_runs,
    mann_whitney_p,
    robust_sd,
    runs_needed,
)


def _brute_force_p(a: list[float], b: list[float]) -> float:
    """Two-sided exact p by enumerating every split of the pooled values (no ties)."""
    pooled = a + b
    u_of = lambda after: sum(1 for x in after for y in pooled if y not in after and x > y)  # noqa: E731
    observed = u_of(b)
    us = [u_of([pooled[i] for i in idx]) for idx in combinations(range(len(pooled)), len(b))]
    low = sum(u <= observed for u in us) / len(us)
    high = sum(u >= observed for u in us) / len(us)
    return min(1.0, 2 * min(low, high))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_exact_p_matches_enumeration(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = [float(x) for x in rng.normal(10, 2, 5)]
    b = [float(x) for x in rng.normal(11, 2, 4)]
    assert mann_whitney_p(a, b) == pytest.approx(_brute_force_p(a, b))


def test_complete_separation_of_five_and_five_is_2_of_252() -> None:
    assert mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert mann_whitney_p([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]) == pytest.approx(2 / 252)


def test_whole_ms_ties_keep_small_samples_significant() -> None:
    # server totals are whole ms: 5 against 5, separated, with ties inside each side
    assert mann_whitney_p([80, 81, 82, 79, 80], [40, 41, 39, 40, 42]) == pytest.approx(2 / 252)
    assert mann_whitney_p([1, 1, 2, 2], [1, 2, 2, 1]) == pytest.approx(1.0)


def test_normal_approximation_with_ties_has_its_size() -> None:
    # large samples (beyond the exact limit) with ties from rounding to whole ms
    rng = np.random.default_rng(5)
    same = [mann_whitney_p(np.round(rng.normal(50, 3, 35)), np.round(rng.normal(50, 3, 35))) for _ in range(400)]
    false_rate = sum(p < 0.05 for p in same) / len(same)
    assert 0.01 <= false_rate <= 0.09  # a test of size 0.05 (continuity correction: slightly below)


def test_same_distribution_rarely_called_a_change() -> None:
    rng = np.random.default_rng(11)
    verdicts = [compare_samples(rng.lognormal(np.log(40), 0.1, 8), rng.lognormal(np.log(40), 0.1, 8)).verdict
                for _ in range(200)]
    assert verdicts.count("slower") + verdicts.count("faster") <= 2  # alpha 0.01 and a 20 ms floor


def test_doubling_is_slower_with_its_interval_and_words() -> None:
    rng = np.random.default_rng(3)
    before, after = rng.normal(40, 2, 8), rng.normal(80, 2, 8)
    c = compare_samples(before, after)
    assert c.verdict == "slower" and c.p_value < 0.01
    assert c.ratio is not None and c.ratio_low is not None and c.ratio_high is not None
    assert c.ratio_low < c.ratio < c.ratio_high and 1.8 < c.ratio < 2.2
    assert c.describe().startswith("slower ×2.0 [") and "+40 ms" in c.describe() and "p<0.001" in c.describe()


def test_significant_but_immaterial_and_noise_figure() -> None:
    rng = np.random.default_rng(4)
    # 1000 ms ± 1: a 10 ms change is real, but under the 5 % floor
    c = compare_samples(rng.normal(1000, 1, 10), rng.normal(1010, 1, 10))
    assert c.verdict == "immaterial" and "below the floor" in c.describe()
    # the same change with a 0.5 % floor counts
    assert compare_samples(rng.normal(1000, 1, 10), rng.normal(1010, 1, 10), Rule(floor_ms=5, floor_pct=0.5)).verdict == "slower"
    quiet = compare_samples(rng.normal(100, 5, 10), rng.normal(100, 5, 10))
    assert quiet.verdict == "unchanged"
    assert quiet.describe() == f"no change detectable at this noise (±{quiet.noise_ms:,.1f} ms)"
    assert 0 < quiet.noise_ms < 15


def test_ten_percent_of_one_second_is_flagged() -> None:
    rng = np.random.default_rng(8)
    c = compare_samples(rng.normal(1000, 3, 5), rng.normal(1100, 3, 5))
    assert c.verdict == "slower" and c.ratio == pytest.approx(1.1, abs=0.01)


def test_faster_and_too_few() -> None:
    assert compare_samples([80, 81, 82, 79, 80], [40, 41, 39, 40, 42]).verdict == "faster"
    few = compare_samples([80.0], [40.0, 41.0])
    assert few.verdict == "too few" and "1 before, 2 now" in few.describe()


def test_bootstrap_is_seeded() -> None:
    a, b = [40.0, 42, 39, 41, 45], [60.0, 58, 61, 66, 59]
    assert compare_samples(a, b) == compare_samples(a, b)


def test_runs_needed_and_detectable_are_inverse() -> None:
    assert runs_needed(10, 20) == 7  # 2 (2.576 + 0.842)² (10/20)² / (3/π) = 6.1
    assert runs_needed(1, 20) == 5 == fewest_runs(0.01)  # below 5 a side, p < 0.01 is out of reach
    assert fewest_runs(0.05) == 4
    assert runs_needed(10, 10) > runs_needed(10, 20)
    n = runs_needed(12, 20)
    assert detectable_ms(12, n) <= 20 < detectable_ms(12, n - 1)
    assert robust_sd([10, 10, 10, 50]) == 0.0  # one slow run does not make noise
    assert robust_sd([1.0]) == 0.0


def test_power_of_the_rule_matches_runs_needed() -> None:
    """Simulated: with the runs runs_needed asks for, a change of the floor is seen ~80 % of the time."""
    rng = np.random.default_rng(21)
    n = runs_needed(10, 20, alpha=0.01)
    assert n == 7
    hits = sum(compare_samples(rng.normal(100, 10, n), rng.normal(120, 10, n), Rule(floor_ms=0, floor_pct=0)).verdict == "slower"
               for _ in range(200))
    assert 0.65 <= hits / 200 <= 0.97


# --- records ----------------------------------------------------------------------------------


def _run(total: float, nodes: dict[str, float], cached: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"server_total_ms": total, "nodes": [
        {"node_id": n, "class_type": "ComfyTestWork", "title": "Tint" if n == "2" else None,
         "duration_ms": 0.0 if n in cached else d, "cached": n in cached} for n, d in nodes.items()]}


def _record(node2: float, seed: int, runs: int = 8) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    warm = [_run(node2 + 30 + float(rng.normal(0, 1)), {"1": 0.1, "2": node2 + float(rng.normal(0, 1)), "3": 30 + float(rng.normal(0, 1))})
            for _ in range(runs)]
    cold = _run(node2 + 530, {"4": 500.0, "2": node2, "3": 30.0})
    return {"nodeid": "w.json::default", "timing": cold, "runs": warm, "perf": {"cold": cold}}


def test_record_comparison_names_the_slowed_node() -> None:
    changes = compare_perf(_record(40, 1), _record(80, 2), Rule())
    slower = [c for c in changes if c.slower and c.phase == "warm"]
    assert {c.scope for c in slower} == {"total", "2"}
    node = next(c for c in slower if c.scope == "2")
    assert node.describe().startswith("node 2 'Tint' (ComfyTestWork): slower ×2.0 [")
    cold = [c for c in changes if c.phase == "cold"]
    assert {c.scope for c in cold} == {"total", "2", "3", "4"}  # the loader (4) ran only cold
    assert "one run each: shown, not tested" in next(c for c in cold if c.scope == "2").describe()


def test_cached_runs_and_nodes_are_not_samples() -> None:
    record = {"runs": [_run(10, {"1": 5, "2": 5}, cached=("1",)), _run(0, {"1": 0, "2": 0}, cached=("1", "2"))]}
    assert warm_samples(record) == {"total": [10.0], "2": [5.0]}


def test_properties_and_history_spread() -> None:
    record = _record(80, 2)
    record["perf"]["changes"] = [c.to_json() for c in compare_perf(_record(40, 1), record, Rule())]
    props = dict(properties(record))
    assert props["comfy_perf_runs"] == "8"
    assert props["comfy_perf_node_2_verdict"] == "slower" and float(props["comfy_perf_node_2_ratio"]) > 1.8
    spread = history_spread({"tests": [record]})["w.json::default"]
    assert spread["n"] == 8 and spread["min"] <= spread["q1"] <= spread["median"] <= spread["q3"] <= spread["max"]


def test_tag_leaves_loaders_alone() -> None:
    prompt = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
              "5": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": 1}}}
    tagged = tag(prompt, {"4": ("x.safetensors",)}, "abc-1")
    assert tagged["4"] == prompt["4"] and tagged["5"]["inputs"][PERF_INPUT] == "abc-1"
    assert PERF_INPUT not in prompt["5"]["inputs"]  # a new dict: the case's prompt is unchanged


def test_budget() -> None:
    assert PerfPlan(Rule(), (2.0, "x")).budget_s(1.5) == 3.0
    assert PerfPlan(Rule(), (20.0, "s")).budget_s(1.5) == 20.0
    assert not math.isnan(PerfPlan(Rule()).budget_s(0.0))


def test_trend_chart_draws_a_band_per_session_with_spread() -> None:
    from comfytest.report.trend import History, trend_section

    record = _record(40, 1)
    entries = ({"created": "a", "tests": {"w.json::default": 70.0}},  # an older line: no spread
               {"created": "b", "tests": {"w.json::default": 71.0}, "spread": history_spread({"tests": [record]})})
    page = trend_section(History(entries))
    assert 'data-bands="1"' in page and page.count('<g class="spread" data-n="8">') == 1
    assert '<rect class="iqr"' in page
