"""The cheaper --comfy-perf: the early stop inside the reference's spread, the runs a decision
needs against a reference pool, and the pool a report hands to the next session.

``measure`` is driven by a scripted run function here: the stopping rule is a decision on
durations, and a real server cannot produce chosen durations on demand (the integration tests in
tests/integration/test_perf.py run it against a real ComfyUI)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest

from comfytest.comfy.execution import RunResult
from comfytest.comfy.timing import NodeTiming, RunTiming
from comfytest.plugin.perf import PERF_INPUT, PerfPlan, measure
from comfytest.report.perfcompare import compare_perf, describe_json, next_pool, reference_pool
from comfytest.report.perfstats import (
    Rule,
    compare_samples,
    mann_whitney_p,
    reachable,
    robust_runs,
    runs_against,
    runs_needed,
    screen,
)

# --- statistics -------------------------------------------------------------------------------


def test_robust_runs_against_a_pool() -> None:
    assert [robust_runs(m, 0.01) for m in (20, 10, 6)] == [3, 4, 5]
    # n runs all above a pool of m, but one pair swapped: still p < 0.01 (and not with one run fewer)
    for m in (20, 10, 6):
        n = robust_runs(m, 0.01)
        pool = [float(i) for i in range(m)]
        swapped = [m - 1.5, *[m + float(i) for i in range(n - 1)]]  # one new run below the pool's top
        assert mann_whitney_p(pool, swapped) < 0.01
        assert mann_whitney_p(pool, swapped[: n - 1]) >= 0.01 or n - 1 == 0


def test_runs_against_a_large_pool_need_about_half() -> None:
    assert runs_against(10, 20, 10**6) == 4 == math.ceil(6.1 / 2)  # half of runs_needed's 6.1 a side
    assert runs_against(10, 20, 20) < runs_needed(10, 20)
    assert runs_against(10, 20, 2) == 10**6  # a pool of 2 alone is too small for a ±10 ms noise


def test_screen_stops_an_unchanged_case_and_not_a_slowed_one() -> None:
    rng = np.random.default_rng(3)
    pool = list(rng.normal(40, 2, 20))
    assert screen(pool, [41.5]).inside  # within the 20 ms floor of the median
    slowed = screen(pool, [80.0])
    assert not slowed.inside and slowed.delta_ms == pytest.approx(40, abs=3) and slowed.allowed_ms == 20
    # a noisy reference widens the margin to twice its noise: one run cannot be told from it
    noisy = list(rng.normal(2000, 500, 20))
    wide = screen(noisy, [2500.0])
    assert wide.allowed_ms > 800 and wide.inside
    # ten per cent of one second: 100 ms over the 50 ms floor is not inside
    assert not screen(list(rng.normal(1000, 3, 20)), [1100.0]).inside
    # a change the test already calls is never stopped as unchanged, even inside the margin
    spread = [100.0 * i for i in range(21)]  # median 1000 ms, noise ~740 ms: a margin of ~1480 ms
    both_above = screen(spread, [2100.0, 2101.0])  # +1100 ms, above all 21: p = 2/C(23, 2) < 0.01
    assert both_above.delta_ms < both_above.allowed_ms and both_above.decided and not both_above.inside


def test_reachable_is_the_best_case_of_the_runs_still_planned() -> None:
    pool = [40.0 + 0.1 * i for i in range(20)]
    assert reachable(pool, [80.0], 3, 0.01)  # two more runs above all: p = 2/C(23, 3)
    assert not reachable(pool, [80.0, 39.0], 3, 0.01)  # one run below the whole pool: out of reach in 3
    assert reachable(pool, [80.0, 39.0], 8, 0.01)  # ... but not in 8
    assert reachable(pool, [20.0], 3, 0.01)  # a speed-up is a change too
    assert not reachable(pool, [41.0, 41.0, 41.0], 3, 0.01)  # nothing left to run


def test_one_run_is_compared_but_never_called_a_change() -> None:
    c = compare_samples([40.0 + i * 0.1 for i in range(20)], [400.0])
    assert c.n_after == 1 and c.verdict == "unchanged" and c.delta_ms > 300
    assert compare_samples([40.0], [41.0]).verdict == "too few"


# --- the pool ---------------------------------------------------------------------------------


def _run(total: float, node: float) -> dict[str, Any]:
    return {"server_total_ms": total, "nodes": [
        {"node_id": "2", "class_type": "ComfyTestWork", "title": "Tint", "duration_ms": node, "cached": False}]}


def _record(nodes: list[float], stopped: str = "precision", pool: Mapping[str, list[float]] | None = None) -> dict[str, Any]:
    perf: dict[str, Any] = {"cold": _run(nodes[0] + 10, nodes[0]), "stopped": stopped}
    if pool is not None:
        perf["pool"] = dict(pool)
    return {"nodeid": "w.json::default", "timing": perf["cold"], "runs": [_run(n + 10, n) for n in nodes], "perf": perf}


def test_next_pool_keeps_the_newest_first_and_forgets_after_a_change() -> None:
    reference = {"total": [50.0 + i for i in range(20)], "2": [40.0 + i for i in range(20)]}
    record = _record([41.0, 42.0])
    changes = [{"scope": "2", "phase": "warm", "verdict": "unchanged"}]
    pool = next_pool(reference, record, changes, cap=20)
    assert pool["2"][:3] == [42.0, 41.0, 40.0] and len(pool["2"]) == 20  # own runs, newest first, then the pool
    changed = next_pool(reference, record, [{"scope": "2", "phase": "warm", "verdict": "slower"}], cap=20)
    assert changed["2"] == [42.0, 41.0] and len(changed["total"]) == 20  # only the changed scope starts over
    assert next_pool({}, record, [], cap=1)["2"] == [42.0]


def test_reference_pool_prefers_the_kept_pool() -> None:
    assert reference_pool(_record([40.0, 41.0]))["2"] == [40.0, 41.0]  # an older report: its warm runs
    kept = _record([40.0], pool={"2": [40.0, 39.0, 41.0], "total": [50.0, 49.0, 51.0]})
    assert reference_pool(kept) == {"2": [40.0, 39.0, 41.0], "total": [50.0, 49.0, 51.0]}


def test_a_case_stopped_early_says_so_with_its_margin() -> None:
    previous = _record([40.0], pool={"2": [40.0 + 0.2 * i for i in range(20)], "total": [50.0 + 0.2 * i for i in range(20)]})
    changes = compare_perf(previous, _record([43.0], stopped="inside"), Rule())
    node = next(c for c in changes if c.scope == "2" and c.phase == "warm")
    assert node.comparison.verdict == "unchanged" and node.comparison.allowed_ms == 20
    assert describe_json(node.to_json()) == (
        "node 2 'Tint' (ComfyTestWork): no material change: +1.1 ms from the reference's median, "
        "inside ±20 ms (1 run against 20, stopped early)")
    straddled = compare_perf(previous, _record([100.0, 39.0], stopped="undecidable"), Rule())
    words = describe_json(next(c for c in straddled if c.scope == "2" and c.phase == "warm").to_json())
    assert words.endswith("and the runs left could not make it significant (2 runs against 20, stopped early)")
    slowed = compare_perf(previous, _record([80.0, 81.0, 82.0]), Rule())
    assert next(c for c in slowed if c.scope == "2" and c.phase == "warm").comparison.verdict == "slower"


# --- measure: when the warm runs stop ----------------------------------------------------------


def _result(prompt: Mapping[str, Any], node_ms: float) -> RunResult:
    nodes = (NodeTiming("1", "CheckpointLoaderSimple", None, 0.0, True, 1),
             NodeTiming("2", "ComfyTestWork", "Tint", node_ms, False, 1))
    timing = RunTiming("p", "success", 0.0, node_ms + 10, node_ms + 12, 0.0, nodes, ("1",))
    return RunResult("p", "success", prompt, (), {}, (), (), {}, timing)


def _measure(durations: Iterator[float], reference: Mapping[str, list[float]] | None, **plan: Any) -> tuple[Any, list[Any]]:
    prompts: list[Any] = []

    def run(prompt: Mapping[str, Any], first: bool) -> RunResult:
        prompts.append(prompt)
        return _result(prompt, next(durations))

    clock = itertools.count(0.0, 0.01)  # every call 10 ms later: the budget never binds
    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {}},
              "2": {"class_type": "ComfyTestWork", "inputs": {"ms": 40}}}
    plan = {"budget": (1000.0, "x"), **plan}
    runs = measure(run, prompt, {"1": ()}, PerfPlan(Rule(), **plan), reference, clock=lambda: next(clock))
    return runs, prompts


def _pool(node: float, n: int = 20) -> dict[str, list[float]]:
    return {"2": [node + 0.1 * i for i in range(n)], "total": [node + 10 + 0.1 * i for i in range(n)]}


def test_an_unchanged_case_stops_after_one_warm_run() -> None:
    runs, prompts = _measure(itertools.repeat(41.0), _pool(40))
    assert (len(runs.warm), runs.stopped, runs.reference_runs) == (1, "inside", 20)
    assert PERF_INPUT not in prompts[0]["2"]["inputs"]  # the cold run is the case as a plain session runs it
    assert PERF_INPUT in prompts[1]["2"]["inputs"] and PERF_INPUT not in prompts[1]["1"]["inputs"]


def test_a_slowed_case_runs_until_the_test_can_decide() -> None:
    """At least the runs that survive a swapped pair against the pool; a pool too noisy for the
    floor asks for no more (that is the pool's limit, not this session's)."""
    runs, _ = _measure(itertools.repeat(80.0), _pool(40), min_runs=2)
    assert (len(runs.warm), runs.stopped) == (3, "precision")  # 3 against 20 survive a swapped pair
    runs, _ = _measure(itertools.repeat(80.0), _pool(40, n=4), min_runs=2)
    assert len(runs.warm) == 8  # against 4: 4 / C(12, 4) < 0.01
    # a called change starts the next session's pool: it gets min_runs samples (6), not 3
    runs, _ = _measure(itertools.repeat(80.0), _pool(40))
    assert (len(runs.warm), runs.stopped) == (6, "precision")


def test_a_noisy_first_run_is_checked_again() -> None:
    runs, _ = _measure(iter([40.0, 75.0, 41.0, 40.0, 41.0]), _pool(40))  # the cold run, then the warm ones
    assert (len(runs.warm), runs.stopped) == (2, "inside")  # the median of 75 and 41 is inside


def test_runs_that_cannot_become_significant_stop() -> None:
    # 100 ms then 39 ms against 40-42 ms: outside the screen, but with the 3 runs planned (the
    # budget has room for no more) no third run can make it significant
    runs, _ = _measure(iter([40.0, 100.0, 39.0, 100.0, 100.0]), _pool(40), budget=(2.0, "x"))
    assert (len(runs.warm), runs.stopped) == (2, "undecidable")
    # with a budget for many runs it goes on: 8 runs could still make it
    runs, _ = _measure(iter([40.0, 100.0, 39.0, *[100.0] * 10]), _pool(40))
    assert len(runs.warm) > 2 and runs.stopped == "precision"


def test_no_reference_or_no_early_stop_takes_the_minimum() -> None:
    runs, _ = _measure(itertools.repeat(41.0), None)
    assert (len(runs.warm), runs.stopped, runs.reference_runs) == (6, "precision", 0)
    runs, _ = _measure(itertools.repeat(41.0), _pool(40), screen_runs=0)
    assert (len(runs.warm), runs.stopped) == (3, "precision")


def test_a_pool_too_noisy_for_the_floor_asks_for_no_more_than_the_minimum() -> None:
    noisy = {"2": [40.0 + 20 * i for i in range(10)], "total": [50.0 + 20 * i for i in range(10)]}  # ±74 ms
    runs, _ = _measure(iter([40.0, 400.0, 400.0, 100.0, *[400.0] * 30]), noisy)
    assert (len(runs.warm), runs.stopped) == (4, "precision")  # 4 against 10; not 30 chasing a 20 ms floor
