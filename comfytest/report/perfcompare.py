"""Performance sessions in the report: samples of a record, their comparison, and renderings.

A ``--comfy-perf`` record carries every warm run in ``runs`` (every node executed, models kept
loaded), its first run in ``perf.cold``, and ``perf.pool``: per scope, the warm samples the next
session compares with — its own runs, newest first, then (where it found no change) the pool it
was compared with, up to a cap. So a session of 1–3 runs is compared with 10–20 earlier ones,
which is what lets it reach ``p < 0.01`` (``next_pool``). ``compare_perf`` compares a record with
the same test of an earlier report, scope by scope — the server total and each node that
executed — with ``perfstats``, the earlier report's pool against this record's warm samples. Cold figures (one run per session, model loads included)
are compared separately, by the floors only: one run a side supports no test, so a cold change is
shown and never fails a test. The changes are kept in the record (``perf.changes``), so every
rendering (terminal, markdown, HTML, JUnit, history) reads the document alone.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from comfytest.report.perfstats import Rule, SampleComparison, Verdict, compare_samples, screen

Phase = Literal["warm", "cold"]
Record = Mapping[str, Any]
TOTAL = "total"


@dataclass(frozen=True)
class PerfChange:
    """One compared scope of one test: ``scope`` is ``total`` or a node id."""

    nodeid: str
    scope: str
    label: str
    phase: Phase
    comparison: SampleComparison

    @property
    def slower(self) -> bool:
        return self.comparison.verdict == "slower"

    def describe(self) -> str:
        """``node 2 'Warm tint' (CR Color Tint): slower ×2.4 [2.1–2.8], +98 ms, p<0.01``."""
        return describe_json(self.to_json())

    def to_json(self) -> dict[str, Any]:
        return {"scope": self.scope, "label": self.label, "phase": self.phase, **self.comparison.to_json()}


# --- samples of a record ---------------------------------------------------------------------


def is_perf(record: Record) -> bool:
    return isinstance(record.get("perf"), Mapping)


def warm_samples(record: Record) -> dict[str, list[float]]:
    """``total`` and each executed node id → its durations over the measured (warm) runs."""
    found: dict[str, list[float]] = {}
    for run in record.get("runs") or []:
        total = _number(run.get("server_total_ms"))
        if total is None or all(n.get("cached") for n in run.get("nodes") or []):
            continue
        found.setdefault(TOTAL, []).append(total)
        for node in run.get("nodes") or []:
            duration = _number(node.get("duration_ms"))
            if not node.get("cached") and duration is not None:
                found.setdefault(str(node.get("node_id")), []).append(duration)
    return found


def reference_pool(record: Record) -> dict[str, list[float]]:
    """What a later session compares with: the record's ``perf.pool``, or its warm samples when it
    has none (a report from before pools, or a plain one with ``--comfy-runs``)."""
    pool = (record.get("perf") or {}).get("pool")
    if isinstance(pool, Mapping):
        found = {str(scope): [v for v in (_number(x) for x in values) if v is not None]
                 for scope, values in pool.items() if isinstance(values, list)}
        return {scope: values for scope, values in found.items() if values}
    return warm_samples(record)


def next_pool(reference: Mapping[str, Sequence[float]], record: Record, changes: Sequence[Mapping[str, Any]],
              cap: int) -> dict[str, list[float]]:
    """Per scope, this record's warm samples (newest first), then — unless its comparison called a
    change (slower or faster: the old samples no longer describe it) — the reference's pool, up to
    ``cap`` samples."""
    changed = {str(c["scope"]) for c in changes if c.get("phase") == "warm" and c.get("verdict") in ("slower", "faster")}
    pool: dict[str, list[float]] = {}
    for scope, values in warm_samples(record).items():
        older = [] if scope in changed else list(reference.get(scope) or [])
        pool[scope] = [*reversed(values), *older][:cap]
    return pool


def cold_figures(record: Record) -> dict[str, float]:
    """``total`` and each executed node of the first (cold) run."""
    cold = (record.get("perf") or {}).get("cold") or {}
    found: dict[str, float] = {}
    total = _number(cold.get("server_total_ms"))
    if total is not None:
        found[TOTAL] = total
    for node in cold.get("nodes") or []:
        duration = _number(node.get("duration_ms"))
        if not node.get("cached") and duration is not None:
            found[str(node.get("node_id"))] = duration
    return found


def node_labels(record: Record) -> dict[str, str]:
    """Node id → ``node 2 'Warm tint' (CR Color Tint)``, from any run of the record."""
    labels = {TOTAL: "total"}
    runs = [*(record.get("runs") or []), record.get("timing") or {}, (record.get("perf") or {}).get("cold") or {}]
    for run in runs:
        for node in run.get("nodes") or []:
            node_id = str(node.get("node_id"))
            title = f" '{node['title']}'" if node.get("title") else ""
            labels.setdefault(node_id, f"node {node_id}{title} ({node.get('class_type') or '?'})")
    return labels


# --- comparison ------------------------------------------------------------------------------


def compare_perf(previous: Record, record: Record, rule: Rule) -> list[PerfChange]:
    """Warm scopes by the statistical rule, then cold scopes by the floors (see the module). A
    record whose runs stopped early inside the reference's spread says so with the margin met."""
    nodeid = str(record.get("nodeid"))
    labels = node_labels(previous) | node_labels(record)
    before, after = reference_pool(previous), warm_samples(record)
    stopped = (record.get("perf") or {}).get("stopped")
    early = stopped if stopped in ("inside", "undecidable") else None
    changes = [PerfChange(nodeid, scope, labels.get(scope, scope), "warm", _warm(before[scope], after[scope], rule, early))
               for scope in _ordered(set(before) & set(after))]
    cold_before, cold_after = cold_figures(previous), cold_figures(record)
    changes += [PerfChange(nodeid, scope, labels.get(scope, scope), "cold",
                           _cold(cold_before[scope], cold_after[scope], rule))
                for scope in _ordered(set(cold_before) & set(cold_after))]
    return changes


def _warm(before: Sequence[float], after: Sequence[float], rule: Rule, early: str | None) -> SampleComparison:
    comparison = compare_samples(before, after, rule)
    if early is None or comparison.verdict != "unchanged" or len(before) < 2:
        return comparison
    check = screen(before, after, rule)
    return replace(comparison, allowed_ms=check.allowed_ms, early="inside" if check.inside else "undecidable")


def _cold(before: float, after: float, rule: Rule) -> SampleComparison:
    """One run a side: the change and its ratio, *slower*/*faster* by the floors alone."""
    delta = after - before
    ratio = after / before if before > 0 else None
    material = abs(delta) > rule.floor_ms and (ratio is None or abs(ratio - 1) * 100 > rule.floor_pct)
    verdict: Verdict = ("slower" if delta > 0 else "faster") if material else "unchanged"
    return SampleComparison(1, 1, before, after, delta, math.nan, math.nan, ratio, ratio, ratio,
                            math.nan, math.nan, verdict)


def _ordered(scopes: set[str]) -> list[str]:
    return sorted(scopes, key=lambda s: (s != TOTAL, int(s) if s.isdigit() else 1 << 30, s))


def not_compared(previous: Record | None, record: Record, source: str) -> str | None:
    """Why this record cannot be compared with ``previous`` (None when it can)."""
    if previous is None:
        return f"not compared: {source} has no result for this test"
    runs = len(reference_pool(previous).get(TOTAL, []))
    if runs < 2:
        return (f"not compared: {source} has {runs} executed run(s) of this test; a statistical comparison "
                "needs repeated runs on both sides (make the reference with --comfy-perf too)")
    return None


def slowdowns(record: Record) -> list[dict[str, Any]]:
    """The warm scopes of a record whose comparison says slower."""
    changes = (record.get("perf") or {}).get("changes") or []
    return [c for c in changes if c.get("phase") == "warm" and c.get("verdict") == "slower"]


# --- renderings ------------------------------------------------------------------------------


def terminal_lines(tests: Sequence[Record]) -> list[str]:
    """Slowed scopes only (warm slowdowns; cold ones marked), one line each, then a count."""
    perf = [t for t in tests if is_perf(t)]
    if not perf:
        return []
    warm: list[str] = []
    cold: list[str] = []
    for record in perf:
        for change in (record["perf"].get("changes") or []):
            if change.get("verdict") == "slower":
                (cold if change.get("phase") == "cold" else warm).append(f"  {record.get('nodeid')} {describe_json(change)}")
    compared = sum(1 for t in perf if t["perf"].get("changes"))
    head = (f"perf: {len(perf)} test(s) measured, {compared} compared with {_source(perf)}"
            + (f"; {len(warm)} significantly slower:" if warm else "; no significant slowdown"))
    cold_head = ["perf: cold runs slower (one run each: shown, not tested):"] if cold else []
    notes = sorted({str(t["perf"]["note"]) for t in perf if t["perf"].get("note")})
    return [head, *warm, *cold_head, *cold, *(f"perf: {n}" for n in notes)]


def markdown_lines(tests: Sequence[Record]) -> list[str]:
    """Per test, every compared scope with its verdict, change, interval and p-value."""
    perf = [t for t in tests if is_perf(t) and t["perf"].get("changes")]
    if not perf:
        return []
    lines = ["## Performance comparison", "",
             "| test | scope | phase | runs (before/now) | median ms (before → now) | change | verdict |",
             "|---|---|---|---|---|---|---|"]
    for record in perf:
        for c in record["perf"]["changes"]:
            lines.append(f"| {_cell(record.get('nodeid'))} | {_cell(c['label'])} | {c['phase']} | "
                         f"{c['n_before']}/{c['n_after']} | {_num(c['median_before'])} → {_num(c['median_after'])} | "
                         f"{_cell(change_words(c))} | {c['verdict']} |")
    return [*lines, ""]


def html_section(tests: Sequence[Record]) -> str:
    """``section#perf``: per compared scope, the ratio's interval drawn on a log axis (0.5×–2×)."""
    perf = [t for t in tests if is_perf(t) and t["perf"].get("changes")]
    if not perf:
        return ""
    rows = "".join(_html_row(record, c) for record in perf for c in record["perf"]["changes"])
    return ('<section id="perf"><h2>Performance comparison</h2><p>Bars: the median ratio now/before with '
            'its 95 % interval, on a log axis from ×0.5 to ×2; the line marks ×1.</p>'
            f'<table><tr><th>test</th><th>scope</th><th>phase</th><th>interval</th><th>result</th></tr>{rows}</table></section>')


def _html_row(record: Record, c: Mapping[str, Any]) -> str:
    e = html.escape
    return (f'<tr class="perf-change {e(str(c["verdict"]))}" data-scope="{e(str(c["scope"]))}" '
            f'data-phase="{e(str(c["phase"]))}" data-ratio="{c.get("ratio")}" data-ratio-low="{c.get("ratio_low")}" '
            f'data-ratio-high="{c.get("ratio_high")}" data-p="{c.get("p_value")}">'
            f'<td>{e(str(record.get("nodeid")))}</td><td>{e(str(c["label"]))}</td><td>{e(str(c["phase"]))}</td>'
            f"<td>{_interval_svg(c)}</td><td>{e(change_words(c))}</td></tr>")


def _interval_svg(c: Mapping[str, Any], width: int = 200) -> str:
    def x(ratio: float) -> float:
        return round((min(max(math.log2(ratio), -1.0), 1.0) + 1) / 2 * width, 1)

    ratio, low, high = c.get("ratio"), c.get("ratio_low"), c.get("ratio_high")
    if not ratio or ratio <= 0:
        return ""
    color = {"slower": "#c0392b", "faster": "#27ae60"}.get(str(c["verdict"]), "#7f8c8d")
    bar = ""
    if low and high and low > 0 and high > 0:
        bar = f'<rect class="interval" x="{x(low)}" y="5" width="{max(x(high) - x(low), 1)}" height="6" fill="{color}" opacity="0.5"/>'
    return (f'<svg class="perf-interval" width="{width}" height="16" viewBox="0 0 {width} 16">'
            f'<line x1="{width / 2}" y1="0" x2="{width / 2}" y2="16" stroke="#333"/>{bar}'
            f'<circle cx="{x(ratio)}" cy="8" r="3" fill="{color}"/></svg>')


def properties(record: Record) -> list[tuple[str, str]]:
    """JUnit ``<property>`` pairs: runs, and per compared warm scope its ratio, p and verdict."""
    perf = record.get("perf")
    if not isinstance(perf, Mapping):
        return []
    props = [("comfy_perf_runs", str(len(warm_samples(record).get(TOTAL, []))))]
    for c in perf.get("changes") or []:
        if c.get("phase") != "warm":
            continue
        name = "comfy_perf_" + ("total" if c["scope"] == TOTAL else f"node_{c['scope']}")
        props.append((f"{name}_verdict", str(c["verdict"])))
        if c.get("ratio") is not None:
            props.append((f"{name}_ratio", f"{c['ratio']:.4g}"))
        if c.get("p_value") is not None:
            props.append((f"{name}_p", f"{c['p_value']:.3g}"))
    return props


def history_spread(doc: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Per test with repeated runs: the quartiles of its server totals (the trend page's bands)."""
    found: dict[str, dict[str, float]] = {}
    for record in doc.get("tests") or []:
        totals = sorted(warm_samples(record).get(TOTAL, []))
        if len(totals) >= 2:
            found[str(record["nodeid"])] = {
                "n": len(totals), "min": totals[0], "q1": _quantile(totals, 0.25),
                "median": _quantile(totals, 0.5), "q3": _quantile(totals, 0.75), "max": totals[-1]}
    return found


def _quantile(values: Sequence[float], q: float) -> float:
    position = (len(values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return round(values[low] + (values[high] - values[low]) * (position - low), 3)


def describe_json(c: Mapping[str, Any]) -> str:
    """A stored change (``PerfChange.to_json``) in words again, cold ones saying they were not tested."""
    return f"{'cold ' if c.get('phase') == 'cold' else ''}{c['label']}: {change_words(c)}"


def change_words(c: Mapping[str, Any]) -> str:
    """A stored change's verdict in words, without its label."""
    def value(key: str) -> float:
        number = c.get(key)
        return math.nan if number is None else float(number)

    comparison = SampleComparison(
        int(c["n_before"]), int(c["n_after"]), value("median_before"), value("median_after"), value("delta_ms"),
        value("delta_low"), value("delta_high"), c.get("ratio"), c.get("ratio_low"), c.get("ratio_high"),
        value("p_value") if c.get("p_value") is not None else 1.0, value("noise_ms"), _verdict(c["verdict"]),
        c.get("allowed_ms"), c.get("early"))
    return _cold_words(comparison) if c.get("phase") == "cold" else comparison.describe()


def _verdict(value: Any) -> Verdict:
    known: tuple[Verdict, ...] = ("slower", "faster", "unchanged", "immaterial", "too few")
    return next((v for v in known if v == value), "unchanged")


def _cold_words(c: SampleComparison) -> str:
    sign = "+" if c.delta_ms >= 0 else "−"
    ratio = f" ×{c.ratio:.2f}" if c.ratio is not None else ""
    word = {"slower": "slower", "faster": "faster"}.get(c.verdict, "within the floor")
    return f"{word}{ratio}, {sign}{abs(c.delta_ms):,.0f} ms (one run each: shown, not tested)"


def _source(perf: Sequence[Record]) -> str:
    sources = sorted({str(t["perf"].get("compared_with")) for t in perf if t["perf"].get("compared_with")})
    return ", ".join(sources) or "nothing (no earlier report)"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):,.1f}"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


__all__ = [
    "PerfChange", "cold_figures", "compare_perf", "describe_json", "history_spread", "html_section", "is_perf",
    "markdown_lines", "next_pool", "node_labels", "not_compared", "properties", "reference_pool", "slowdowns",
    "terminal_lines", "warm_samples",
]
