"""``--comfy-perf``: how a case is run for a performance check (no pytest here).

ComfyUI 0.3.75 caches a node's outputs under a key made of its class, its ``IS_CHANGED`` result
and *every* input in the prompt, its ancestors' keys included (``comfy_execution/caching.py``
``get_immediate_node_signature``); an input the node does not declare is in the key but never
validated nor passed to the node (``execution.py`` ``validate_inputs`` iterates the declared
inputs, ``get_input_data`` skips undeclared ones). So each run gives every node except the
model loaders an extra input ``comfytest_perf_run`` with a value of its own: those nodes miss
the cache and execute, the loaders hit it and their models stay loaded. ``POST /free`` would
empty the whole cache and reload the models each run, which is what the issue measured
(27–41 s instead of ~10 s, and load time mixed into every sample).

The first run is the **cold** one, the prompt exactly as a plain session runs it (models load
unless an earlier test loaded them, nodes an earlier case computed with the same inputs come
from the cache; with ``--comfy-free-cache`` it starts from an emptied cache); its outputs are the
ones checked. Then the **warm** runs. With a reference (the same test's pool of warm samples in
the earlier report), after ``screen_runs`` runs a case whose every scope lies inside the
reference's spread stops: "no material change" (``perfstats.screen``); so does one whose
suspicious scopes could no longer become significant within the runs still planned
(``perfstats.reachable``: "undecidable"); otherwise it runs on until the test can decide against
the pool — at least ``perfstats.robust_runs`` — and while the noise asks for more
(``perfstats.runs_against``, never beyond what the pool's own size allows) and the budget allows.
A test that calls a change takes ``min_runs`` at least: its report is the next session's
reference for it, and a pool of 3 would ask 12 runs of that session. Without a reference (the first
perf session, which makes it): at least ``min_runs``, then while ``perfstats.runs_needed`` asks.
At most ``max_runs``. A server that keeps no cache (``--cache-none``) re-runs its loaders every
time: ``reloaded`` names them and the report says so.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from comfytest.comfy.execution import RunResult
from comfytest.comfy.timing import RunTiming
from comfytest.report.perfstats import (
    Rule,
    reachable,
    robust_runs,
    robust_sd,
    runs_against,
    runs_needed,
    screen,
    smallest_material_ms,
)

PERF_INPUT = "comfytest_perf_run"

#: one run of a prompt: ``run(prompt, first)``; ``first`` asks for outputs (the checked run)
RunOnce = Callable[[Mapping[str, Any], bool], RunResult]
#: scope (``total`` or a node id) → warm samples in ms: a test's reference pool
Pool = Mapping[str, Sequence[float]]


@dataclass(frozen=True)
class PerfPlan:
    """How many warm runs, within which budget: ``budget`` is ``(value, "x" | "s")``;
    ``screen_runs``: the runs after which a case inside the reference's spread stops (0: never)."""

    rule: Rule
    budget: tuple[float, str] = (2.0, "x")
    min_runs: int = 6
    max_runs: int = 30
    warmup: int = 0
    screen_runs: int = 1

    def budget_s(self, cold_s: float) -> float:
        value, unit = self.budget
        return value * cold_s if unit == "x" else value


@dataclass(frozen=True)
class PerfRuns:
    """The cold run, the warm runs, why the warm runs stopped, and what the cache did;
    ``reference_runs``: the size of the reference pool the runs were screened against (0: none)."""

    cold: RunResult
    warm: tuple[RunResult, ...]
    stopped: str
    budget_s: float
    elapsed_s: float
    reloaded: tuple[str, ...]
    cached: tuple[str, ...]
    reference_runs: int = 0

    def note(self) -> str | None:
        if self.reloaded:
            return (f"model loaders executed again in warm runs (nodes {', '.join(self.reloaded)}): this server "
                    "does not keep their outputs cached (e.g. --cache-none), so warm figures include model loads")
        if self.cached:
            return (f"nodes {', '.join(self.cached)} were served from the cache in warm runs despite a new "
                    f"{PERF_INPUT} value: their timings are missing from the comparison")
        return None


def tag(prompt: Mapping[str, Any], loaders: Mapping[str, Any], value: str) -> dict[str, Any]:
    """The prompt with ``PERF_INPUT = value`` on every node that is not a model loader."""
    return {node_id: node if node_id in loaders else {**node, "inputs": {**node.get("inputs", {}), PERF_INPUT: value}}
            for node_id, node in prompt.items()}


def measure(
    run: RunOnce, prompt: Mapping[str, Any], loaders: Mapping[str, Any], plan: PerfPlan,
    reference: Pool | None = None, clock: Callable[[], float] = time.monotonic,
) -> PerfRuns:
    """The cold run, ``plan.warmup`` unmeasured runs, then the warm runs (module docstring)."""
    token = uuid.uuid4().hex[:12]
    started = clock()
    cold = run(prompt, True)  # as a plain session runs it
    cold.raise_for_status()
    budget_s = plan.budget_s(clock() - started)
    for index in range(plan.warmup):
        run(tag(prompt, loaders, f"{token}-warmup{index}"), False).raise_for_status()
    warm: list[RunResult] = []
    started = clock()
    stopped = "max runs"
    while len(warm) < plan.max_runs:
        result = run(tag(prompt, loaders, f"{token}-{len(warm)}"), False)
        result.raise_for_status()
        warm.append(result)
        stopped = _stop(warm, plan, clock() - started, budget_s, reference or {}) or stopped
        if stopped != "max runs":
            break
    executed = {n.node_id for r in warm for n in r.timing.nodes if not n.cached}
    cached = {n for r in warm for n in r.timing.cached_nodes if n not in loaders}
    usable = _usable(reference or {}, samples_of([r.timing for r in warm]))
    return PerfRuns(cold, tuple(warm), stopped, budget_s, clock() - started,
                    tuple(sorted(executed & set(loaders))), tuple(sorted(cached)),
                    min((len(v) for v in usable.values()), default=0))


def _stop(warm: list[RunResult], plan: PerfPlan, elapsed_s: float, budget_s: float, reference: Pool) -> str | None:
    """Why to stop after these runs (None: go on)."""
    samples = samples_of([r.timing for r in warm])
    pool = _usable(reference, samples)
    if not pool:  # no reference: the first perf session makes one
        return _stop_at(len(warm), plan.min_runs, needed_runs(samples, plan.rule), elapsed_s, budget_s)
    least = robust_runs(min(len(v) for v in pool.values()), plan.rule.alpha)
    screens = {s: screen(pool[s], samples[s], plan.rule) for s in pool}
    suspicious = [s for s, check in screens.items() if not check.inside]
    if 0 < plan.screen_runs <= len(warm):
        if not suspicious:
            return "inside"
        planned = min(plan.max_runs, max(least, len(warm) + _budget_left(len(warm), elapsed_s, budget_s)))
        if not any(reachable(pool[s], samples[s], planned, plan.rule.alpha) for s in suspicious):
            return "undecidable"
    reason = _stop_at(len(warm), least, _needed_against(pool, samples, plan.rule), elapsed_s, budget_s)
    if reason and len(warm) < plan.min_runs and any(screens[s].decided for s in suspicious):
        return None  # a change is called: this report becomes its reference, so it gets min_runs samples
    return reason


def _stop_at(runs: int, least: int, needed: int, elapsed_s: float, budget_s: float) -> str | None:
    if runs < least:
        return None
    if runs >= max(least, needed):
        return "precision"
    if elapsed_s + elapsed_s / runs > budget_s:
        return "budget"
    return None


def _budget_left(runs: int, elapsed_s: float, budget_s: float) -> int:
    """Runs the budget still has room for, at the mean duration so far."""
    return max(0, int((budget_s - elapsed_s) / (elapsed_s / runs))) if elapsed_s > 0 else 0


def _usable(reference: Pool, samples: Mapping[str, list[float]]) -> dict[str, Sequence[float]]:
    """The reference's scopes that these runs have too, with 2 samples or more."""
    return {scope: reference[scope] for scope in samples if len(reference.get(scope) or ()) >= 2}


def samples_of(timings: Sequence[RunTiming]) -> dict[str, list[float]]:
    """``total`` and each executed node id → its durations over these runs (as ``warm_samples``)."""
    samples: dict[str, list[float]] = {}
    for timing in timings:
        if timing.server_total_ms is None or all(n.cached for n in timing.nodes):
            continue
        samples.setdefault("total", []).append(timing.server_total_ms)
        for node in timing.nodes:
            if not node.cached and node.duration_ms is not None:
                samples.setdefault(node.node_id, []).append(node.duration_ms)
    return samples


def needed_runs(samples: Mapping[str, list[float]], rule: Rule) -> int:
    """Runs per side for the test to see the smallest material change of the noisiest scope."""
    needed = [runs_needed(robust_sd(values), smallest_material_ms(_median(values), rule), rule.alpha)
              for values in samples.values()]
    return max(needed, default=2)


def _needed_against(pool: Mapping[str, Sequence[float]], samples: Mapping[str, list[float]], rule: Rule) -> int:
    """Runs for the test to see the smallest material change of the noisiest scope against the pool
    (its noise: the reference's, or these runs' once there are 3 and they are noisier). A scope that
    would need more runs than the pool holds is limited by the pool, not by this session's runs:
    it asks for none beyond the minimum (the pool grows session by session instead)."""
    def needed(scope: str) -> int:
        noise = max(robust_sd(pool[scope]), robust_sd(samples[scope]) if len(samples[scope]) >= 3 else 0.0)
        runs = runs_against(noise, smallest_material_ms(_median(pool[scope]), rule), len(pool[scope]), rule.alpha)
        return runs if runs <= len(pool[scope]) else 0

    return max(needed(s) for s in pool)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def perf_json(runs: PerfRuns, plan: PerfPlan) -> dict[str, Any]:
    """The record's ``perf`` object, less ``cold`` (the caller's timing JSON) and the comparison."""
    return {
        "warm_runs": len(runs.warm), "stopped": runs.stopped, "budget_s": round(runs.budget_s, 3),
        "elapsed_s": round(runs.elapsed_s, 3), "min_runs": plan.min_runs, "max_runs": plan.max_runs,
        "screen_runs": plan.screen_runs, "reference_runs": runs.reference_runs,
        "reloaded": list(runs.reloaded), "cached": list(runs.cached), "note": runs.note(),
        "rule": {"alpha": plan.rule.alpha, "floor_ms": plan.rule.floor_ms, "floor_pct": plan.rule.floor_pct},
    }


__all__ = ["PERF_INPUT", "PerfPlan", "PerfRuns", "Pool", "measure", "needed_runs", "perf_json", "samples_of", "tag"]
