"""Is one set of timings slower than another? Repeated samples, a robust test, a floor (pure).

Two questions, both must say yes before a change is called (docs/performance.md):

* **significant**: the two-sided Mann–Whitney U test (exact distribution for small samples
  without ties, the normal approximation with tie and continuity correction otherwise) gives
  ``p < alpha``, and the bootstrap interval of the median difference excludes 0. Ranks, not
  means: one run disturbed by the machine moves a mean, hardly a rank sum;
* **material**: the medians differ by more than ``floor_ms`` *and* by more than ``floor_pct``
  percent. A real but tiny change (a 40 ms node now 41 ms) is not worth a failing build.

The effect is the ratio of the medians with a percentile-bootstrap interval (seeded: the same
samples give the same interval on every machine). ``runs_needed`` turns a noise level into the
number of runs per side that detect a given change (the normal-theory size, over the test's
asymptotic efficiency of 3/π relative to the t-test under normal noise); ``runs_against`` the
runs that do so against a reference pool of a given size.

``screen`` is the early stop of a perf session: after its first run(s), a case whose every scope
lies within the floor, or within twice the reference's noise, of the reference's median stops
with "no material change"; ``reachable`` stops it when the runs still planned could not make any
scope significant whatever they measure. Both only ever stop a case *without* calling a change,
so they cannot raise a false alarm; the screen costs the power to see changes smaller than its
margin, the second costs none.

numpy only: the exact U distribution is a small dynamic programme, the normal tail is
``math.erfc``; scipy would add a large dependency for two functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

Verdict = Literal["slower", "faster", "unchanged", "immaterial", "too few"]

#: the exact distribution up to this many values in all; beyond, the normal approximation
_EXACT_VALUES = 60
#: Mann–Whitney's asymptotic relative efficiency against the t-test under normal noise
_EFFICIENCY = 3 / math.pi
#: MAD × this estimates the standard deviation of normal noise
_MAD_TO_SD = 1.4826
#: the early stop's margin: this many times the reference's noise (if wider than the floor)
SCREEN_SPREAD = 2.0


@dataclass(frozen=True)
class Rule:
    """When a change counts: significance ``alpha``, materiality ``floor_ms`` and ``floor_pct``."""

    alpha: float = 0.01
    floor_ms: float = 20.0
    floor_pct: float = 5.0
    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 20240


@dataclass(frozen=True)
class SampleComparison:
    """Before against after: medians, the change with its interval, the p-value, the verdict.

    ``noise_ms`` is the half-width of the interval of the median difference: a change smaller
    than it could not have been told from noise with these samples. ``allowed_ms`` is set when
    the runs stopped early, inside the reference's spread (``screen``): the margin they met.
    """

    n_before: int
    n_after: int
    median_before: float
    median_after: float
    delta_ms: float
    delta_low: float
    delta_high: float
    ratio: float | None
    ratio_low: float | None
    ratio_high: float | None
    p_value: float
    noise_ms: float
    verdict: Verdict
    allowed_ms: float | None = None
    early: str | None = None  # "inside" or "undecidable": how the runs stopped early

    @property
    def significant(self) -> bool:
        return self.verdict in ("slower", "faster", "immaterial")

    def describe(self) -> str:
        """``slower ×2.4 [2.1–2.8], +98 ms, p<0.01`` or ``no change detectable at this noise (±12 ms)``."""
        if self.verdict == "too few":
            return f"too few runs to compare ({self.n_before} before, {self.n_after} now; 2 or more before, 1 now)"
        runs = f"{self.n_after} run{'s' if self.n_after != 1 else ''} against {self.n_before}, stopped early"
        if self.verdict == "unchanged" and self.early == "undecidable":
            return (f"no change detectable: {_signed(self.delta_ms)} ms from the reference's median, and the runs "
                    f"left could not make it significant ({runs})")
        if self.verdict == "unchanged" and self.allowed_ms is not None:
            return (f"no material change: {_signed(self.delta_ms)} ms from the reference's median, inside "
                    f"±{_ms(self.allowed_ms)} ms ({runs})")
        if self.verdict == "unchanged":
            return f"no change detectable at this noise (±{_ms(self.noise_ms)} ms)"
        change = f"{_signed(self.delta_ms)} ms"
        if self.ratio is not None:
            change += f" ({_signed((self.ratio - 1) * 100, 1)}%)"
        if self.verdict == "immaterial":
            return f"changed {change}, {format_p(self.p_value)}, but below the floor"
        return f"{self.verdict} {_ratio_text(self)}, {_signed(self.delta_ms)} ms, {format_p(self.p_value)}"

    def to_json(self) -> dict[str, float | int | str | None]:
        return {
            "verdict": self.verdict, "n_before": self.n_before, "n_after": self.n_after,
            "median_before": _r(self.median_before), "median_after": _r(self.median_after),
            "delta_ms": _r(self.delta_ms), "delta_low": _r(self.delta_low), "delta_high": _r(self.delta_high),
            "ratio": _r(self.ratio, 4), "ratio_low": _r(self.ratio_low, 4), "ratio_high": _r(self.ratio_high, 4),
            "p_value": _r(self.p_value, 6), "noise_ms": _r(self.noise_ms),
            **({"allowed_ms": _r(self.allowed_ms)} if self.allowed_ms is not None else {}),
            **({"early": self.early} if self.early is not None else {}),
        }


def compare_samples(before: Sequence[float], after: Sequence[float], rule: Rule = Rule()) -> SampleComparison:
    """The comparison of two sets of repeated timings (ms) under ``rule``. A single run after
    (a case stopped early) is compared, but never called a change: one run proves nothing."""
    a, b = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if a.size < 2 or b.size < 1:
        med_a = float(np.median(a)) if a.size else math.nan
        med_b = float(np.median(b)) if b.size else math.nan
        return SampleComparison(a.size, b.size, med_a, med_b, med_b - med_a, math.nan, math.nan,
                                None, None, None, 1.0, math.nan, "too few")
    med_a, med_b = float(np.median(a)), float(np.median(b))
    boot_a, boot_b = _bootstrap_medians(a, b, rule)
    tail = (1 - rule.confidence) / 2 * 100
    d_low, d_high = (float(x) for x in np.percentile(boot_b - boot_a, [tail, 100 - tail]))
    ratio = ratio_low = ratio_high = None
    if med_a > 0 and bool(np.all(boot_a > 0)):
        ratio = med_b / med_a
        ratio_low, ratio_high = (float(x) for x in np.percentile(boot_b / boot_a, [tail, 100 - tail]))
    p = mann_whitney_p(a, b)
    comparison = SampleComparison(a.size, b.size, med_a, med_b, med_b - med_a, d_low, d_high,
                                  ratio, ratio_low, ratio_high, p, max((d_high - d_low) / 2, 0.0), "unchanged")
    return _with_verdict(comparison, rule)


def _with_verdict(c: SampleComparison, rule: Rule) -> SampleComparison:
    excludes_zero = c.delta_low > 0 or c.delta_high < 0
    if c.p_value >= rule.alpha or not excludes_zero or c.n_after < 2:
        return c
    material = abs(c.delta_ms) > rule.floor_ms and (
        c.median_before <= 0 or abs(c.delta_ms) / c.median_before * 100 > rule.floor_pct)
    verdict: Verdict = ("slower" if c.delta_ms > 0 else "faster") if material else "immaterial"
    return replace(c, verdict=verdict)


def _bootstrap_medians(a: np.ndarray, b: np.ndarray, rule: Rule) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(rule.seed)
    med_a = np.median(a[rng.integers(0, a.size, (rule.resamples, a.size))], axis=1)
    med_b = np.median(b[rng.integers(0, b.size, (rule.resamples, b.size))], axis=1)
    return med_a, med_b


# --- Mann–Whitney U --------------------------------------------------------------------------


def mann_whitney_p(before: Sequence[float] | np.ndarray, after: Sequence[float] | np.ndarray) -> float:
    """Two-sided p-value of the Mann–Whitney U test that both samples come from one distribution.

    Exact (the permutation distribution of the rank sum, ties kept as midranks) up to
    ``_EXACT_VALUES`` values in all: server totals are whole milliseconds, so ties are common,
    and the normal approximation then misses small-sample significance (5 runs against 5
    completely separated give p = 0.008 exactly, 0.012 approximated)."""
    a, b = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    m, n = a.size, b.size
    both = np.concatenate([a, b])
    ranks = _midranks(both)
    if m + n <= _EXACT_VALUES:
        return _exact_p(ranks, n)
    u = float(ranks[m:].sum() - n * (n + 1) / 2)  # pairs (a_i, b_j) with b_j > a_i, ties half
    return _normal_p(u, m, n, both)


def _midranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=float)
    ranks[order] = np.arange(1, values.size + 1, dtype=float)
    for value in np.unique(values):  # ties share the mean of their ranks
        same = values == value
        if same.sum() > 1:
            ranks[same] = ranks[same].mean()
    return ranks


def _exact_p(ranks: np.ndarray, n: int) -> float:
    """P(rank sum of ``n`` values drawn from ``ranks`` as far from its mean as the last ``n``'s):
    a 0/1 knapsack over doubled (whole) midranks counts the subsets of each size and sum."""
    doubled = np.rint(ranks * 2).astype(int)
    observed = int(doubled[-n:].sum())
    counts = np.zeros((n + 1, int(doubled.sum()) + 1))
    counts[0, 0] = 1.0
    for value in doubled:
        counts[1:, value:] += counts[:-1, : counts.shape[1] - value].copy()
    sums = counts[n] / counts[n].sum()
    return float(min(1.0, 2 * min(sums[: observed + 1].sum(), sums[observed:].sum())))


def _normal_p(u: float, m: int, n: int, both: np.ndarray) -> float:
    _, tie_sizes = np.unique(both, return_counts=True)
    total = m + n
    tie_term = float(((tie_sizes**3) - tie_sizes).sum()) / (total * (total - 1))
    variance = m * n / 12 * ((total + 1) - tie_term)
    if variance <= 0:
        return 1.0
    z = (abs(u - m * n / 2) - 0.5) / math.sqrt(variance)
    return float(min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2))))


# --- the early stop -------------------------------------------------------------------------


@dataclass(frozen=True)
class Screen:
    """The runs so far against the reference: ``delta_ms`` between the medians, the ``allowed_ms``
    margin (the floor, or twice the reference's noise if wider), and whether the test already
    calls a change (``decided``: then the case is not stopped as unchanged)."""

    delta_ms: float
    allowed_ms: float
    decided: bool

    @property
    def inside(self) -> bool:
        return abs(self.delta_ms) <= self.allowed_ms and not self.decided


def screen(reference: Sequence[float], samples: Sequence[float], rule: Rule = Rule()) -> Screen:
    """Is the median of ``samples`` inside the reference's spread (module docstring)?"""
    med_ref = float(np.median(np.asarray(reference, dtype=float)))
    allowed = max(smallest_material_ms(med_ref, rule), SCREEN_SPREAD * robust_sd(reference))
    delta = float(np.median(np.asarray(samples, dtype=float))) - med_ref
    decided = len(samples) >= 2 and compare_samples(reference, samples, rule).verdict in ("slower", "faster")
    return Screen(delta, allowed, decided)


def reachable(reference: Sequence[float], samples: Sequence[float], runs: int, alpha: float) -> bool:
    """Could ``runs`` runs in all, these ``samples`` first, still give ``p < alpha``? The best
    case: every run still to come beyond every value so far, on the side of a slowdown or of a
    speed-up. When neither can, more runs up to ``runs`` cannot call a change (curtailment: no
    power is lost by stopping)."""
    values = [*reference, *samples]
    more = max(runs - len(samples), 0)
    high = [*samples, *[max(values) + 1.0] * more]
    low = [*samples, *[min(values) - 1.0] * more]
    return min(mann_whitney_p(reference, high), mann_whitney_p(reference, low)) < alpha


def robust_runs(reference_runs: int, alpha: float) -> int:
    """Runs against a reference of ``reference_runs`` samples with which ``p < alpha`` survives one
    swapped pair: the fewest n with 4 / C(n + m, n) < alpha (3 against 20, 4 against 10, 5 against
    6 for 0.01; 6 a side when both sides have n)."""
    n = 1
    while 4 / math.comb(n + reference_runs, n) >= alpha and n < 10_000:
        n += 1
    return n


# --- noise and the runs it needs -------------------------------------------------------------


def robust_sd(values: Sequence[float]) -> float:
    """The noise of repeated timings: MAD × 1.4826 (a standard deviation a slow run cannot inflate)."""
    data = np.asarray(values, dtype=float)
    if data.size < 2:
        return 0.0
    return float(np.median(np.abs(data - np.median(data))) * _MAD_TO_SD)


def _z(p: float) -> float:
    """The standard normal quantile, by bisection on ``erfc`` (only a few values are asked for)."""
    low, high = -10.0, 10.0
    for _ in range(80):
        mid = (low + high) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def runs_needed(noise_sd_ms: float, change_ms: float, alpha: float = 0.01, power: float = 0.8) -> int:
    """Runs per side for the test to see a shift of ``change_ms`` under noise ``noise_sd_ms``
    with probability ``power`` (at least 2; a shift of 0 ms is never seen: a huge number)."""
    if change_ms <= 0:
        return 10**6
    z = _z(1 - alpha / 2) + _z(power)
    return max(fewest_runs(alpha), math.ceil(2 * (z * noise_sd_ms / change_ms) ** 2 / _EFFICIENCY))


def runs_against(noise_sd_ms: float, change_ms: float, reference_runs: int, alpha: float = 0.01,
                 power: float = 0.8) -> int:
    """Runs for the test to see ``change_ms`` against a reference of ``reference_runs`` samples:
    n with 1/n + 1/m = 2/n_equal (the variance of a difference of means); huge when the
    reference alone is too small for it."""
    if change_ms <= 0:
        return 10**6
    z = _z(1 - alpha / 2) + _z(power)
    equal = 2 * (z * noise_sd_ms / change_ms) ** 2 / _EFFICIENCY
    room = 2 / equal - 1 / max(reference_runs, 1) if equal > 0 else math.inf
    return 10**6 if room <= 0 else max(1, math.ceil(1 / room - 1e-9))


def fewest_runs(alpha: float) -> int:
    """Runs per side below which no result can reach ``p < alpha`` (the rank test's floor: two
    completely separated samples of n give p = 2 / C(2n, n); 5 for 0.01, 4 for 0.05)."""
    n = 2
    while 2 / math.comb(2 * n, n) >= alpha:
        n += 1
    return n


def detectable_ms(noise_sd_ms: float, runs: int, alpha: float = 0.01, power: float = 0.8) -> float:
    """The smallest shift ``runs`` runs per side see with probability ``power`` (inverse of the above)."""
    z = _z(1 - alpha / 2) + _z(power)
    return z * noise_sd_ms * math.sqrt(2 / (_EFFICIENCY * max(runs, 1)))


def smallest_material_ms(median_ms: float, rule: Rule) -> float:
    """The smallest change the floors let count: above ``floor_ms`` and ``floor_pct`` both."""
    return max(rule.floor_ms, median_ms * rule.floor_pct / 100)


# --- words -----------------------------------------------------------------------------------


def format_p(p: float) -> str:
    for bound in (0.001, 0.01):
        if p < bound:
            return f"p<{bound:g}"
    return f"p={p:.2f}"


def _ratio_text(c: SampleComparison) -> str:
    if c.ratio is None or c.ratio_low is None or c.ratio_high is None:
        return "(no ratio: the earlier median is 0 ms)"
    return f"×{_x(c.ratio)} [{_x(c.ratio_low)}–{_x(c.ratio_high)}]"


def _x(ratio: float) -> str:
    return f"{ratio:.2f}" if abs(ratio - 1) < 0.1 else f"{ratio:.1f}" if ratio < 10 else f"{ratio:.0f}"


def _ms(value: float) -> str:
    return f"{value:,.1f}" if abs(value) < 10 else f"{value:,.0f}"


def _signed(value: float, digits: int | None = None) -> str:
    text = f"{abs(value):.{digits}f}" if digits is not None else _ms(abs(value))
    return ("+" if value >= 0 else "−") + text


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


__all__ = [
    "SCREEN_SPREAD", "Rule", "SampleComparison", "Screen", "compare_samples", "detectable_ms", "fewest_runs",
    "format_p", "mann_whitney_p", "reachable", "robust_runs", "robust_sd", "runs_against", "runs_needed", "screen",
    "smallest_material_ms",
]
