"""Timing regressions between two report documents, and a history file for trends.

A change is judged on the server total and on every node that really executed (cached nodes
carry no duration). The rule, also in ``docs/report-schema.md``:

* both sides below ``floor_ms``: ignored (sub-floor timings are dominated by noise);
* otherwise *slower*/*faster* only when the change exceeds BOTH thresholds: ``|delta| >
  abs_threshold_ms`` and ``|delta| / previous > rel_threshold``; a small node doubling from
  3 to 6 ms and a long workflow drifting by 2 % are both noise;
* when both sides were measured several times (``stats`` with ``runs >= 2``), the ranges must
  not overlap as well: slower needs ``current.min > previous.max``, faster needs
  ``current.max < previous.min``. Medians can move on noise; disjoint ranges rarely do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from comfytest.errors import ConfigError
from comfytest.report.document import Record, format_change, server_total_ms
from comfytest.report.memory import history_memory
from comfytest.report.perfcompare import history_spread

Verdict = Literal["ok", "slower", "faster", "new", "missing"]
Thresholds = tuple[float, float]


@dataclass(frozen=True)
class TimingChange:
    """One compared timing; ``scope`` is ``"total"`` or ``"node <id> <class>"``."""

    nodeid: str
    scope: str
    previous_ms: float | None
    current_ms: float | None
    delta_ms: float | None
    ratio: float | None
    verdict: Verdict

    @property
    def is_regression(self) -> bool:
        return self.verdict == "slower"

    def describe(self) -> str:
        """``tests/x.json::default total: slower +12% (412 → 461 ms)``."""
        change = format_change(self.previous_ms, self.current_ms)
        if self.verdict == "new":
            change = f"{self.current_ms:,.0f} ms"
        elif self.verdict == "missing":
            change = f"was {self.previous_ms:,.0f} ms"
        return f"{self.nodeid} {self.scope}: {self.verdict} {change}".rstrip()


@dataclass(frozen=True)
class _Measure:
    """A timing with its range; a single run has ``low == high == value``."""

    value: float
    low: float
    high: float
    repeated: bool

    @classmethod
    def single(cls, value: float) -> _Measure:
        return cls(value, value, value, False)

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any], runs: int) -> _Measure:
        median = float(stats["median"])
        low, high = float(stats.get("min", median)), float(stats.get("max", median))
        return cls(median, low, high, runs >= 2)


@dataclass(frozen=True)
class _Rule:
    rel: float
    abs_ms: float
    floor_ms: float


def compare_timings(
    previous_doc: Mapping[str, Any],
    current_doc: Mapping[str, Any],
    *,
    rel_threshold: float = 0.2,
    abs_threshold_ms: float = 50.0,
    floor_ms: float = 10.0,
    per_workflow: Mapping[str, Thresholds] | None = None,
) -> list[TimingChange]:
    """Compare every test's total and node timings; ``per_workflow`` maps a workflow path
    (or an fnmatch pattern of it) to its own ``(rel_threshold, abs_threshold_ms)``."""
    before = _by_nodeid(previous_doc)
    after = _by_nodeid(current_doc)
    changes: list[TimingChange] = []
    for nodeid in sorted(set(before) | set(after)):
        record = after.get(nodeid) or before[nodeid]
        rel, abs_ms = _thresholds(record, per_workflow or {}, (rel_threshold, abs_threshold_ms))
        rule = _record_rule(record, _Rule(rel, abs_ms, floor_ms))
        changes.extend(_compare_record(nodeid, before.get(nodeid), after.get(nodeid), rule))
    return changes


def regressions(changes: Sequence[TimingChange]) -> list[TimingChange]:
    return [c for c in changes if c.is_regression]


def _by_nodeid(doc: Mapping[str, Any]) -> dict[str, Record]:
    # a test without timing (skipped, failed before running) has nothing to compare
    return {str(t["nodeid"]): t for t in doc.get("tests") or [] if _total(t) is not None}


def _thresholds(
    record: Record, per_workflow: Mapping[str, Thresholds], default: Thresholds
) -> Thresholds:
    workflow = str(record.get("workflow") or "")
    if workflow in per_workflow:
        return per_workflow[workflow]
    for pattern, thresholds in per_workflow.items():
        if fnmatchcase(workflow, pattern):
            return thresholds
    return default


def _record_rule(record: Record, rule: _Rule) -> _Rule:
    """A case's own thresholds (its settings file's ``timing`` table, kept in its record)."""
    own = record.get("timing_thresholds") or {}
    return _Rule(
        float(own["rel_pct"]) / 100 if own.get("rel_pct") is not None else rule.rel,
        float(own["abs_ms"]) if own.get("abs_ms") is not None else rule.abs_ms,
        float(own["floor_ms"]) if own.get("floor_ms") is not None else rule.floor_ms,
    )


def _compare_record(
    nodeid: str, previous: Record | None, current: Record | None, rule: _Rule
) -> list[TimingChange]:
    if previous is None or current is None:
        # a whole test appearing or vanishing is one fact, not one per node
        change = _judge(nodeid, "total", _total(previous), _total(current), rule)
        return [change] if change else []
    changes = [_judge(nodeid, "total", _total(previous), _total(current), rule)]
    old, new = _nodes(previous), _nodes(current)
    for key in sorted(set(old) | set(new), key=_node_sort_key):
        changes.append(_judge(nodeid, key, old.get(key), new.get(key), rule))
    return [c for c in changes if c is not None]


def _total(record: Record | None) -> _Measure | None:
    if record is None:
        return None
    stats = record.get("stats") or {}
    if stats.get("server_total_ms"):
        return _Measure.from_stats(stats["server_total_ms"], int(stats.get("runs") or 0))
    value = server_total_ms(record)
    return None if value is None else _Measure.single(value)


def _nodes(record: Record) -> dict[str, _Measure]:
    """Executed nodes keyed by scope; cached ones are left out on purpose."""
    stats = record.get("stats") or {}
    node_stats = stats.get("nodes") or {}
    runs = int(stats.get("runs") or 0)
    measures: dict[str, _Measure] = {}
    for node in (record.get("timing") or {}).get("nodes") or []:
        if node.get("cached") or node.get("duration_ms") is None:
            continue
        scope = f"node {node.get('node_id')} {node.get('class_type') or '?'}"
        node_id = str(node.get("node_id"))
        if node_id in node_stats:
            measures[scope] = _Measure.from_stats(node_stats[node_id], runs)
        else:
            measures[scope] = _Measure.single(float(node["duration_ms"]))
    return measures


def _node_sort_key(scope: str) -> tuple[int, str]:
    # numeric node ids sort as numbers ("node 10" after "node 9")
    node_id = scope.split(" ")[1]
    return (int(node_id), scope) if node_id.isdigit() else (1 << 30, scope)


def _judge(
    nodeid: str, scope: str, previous: _Measure | None, current: _Measure | None, rule: _Rule
) -> TimingChange | None:
    values = [m.value for m in (previous, current) if m is not None]
    if not values or max(values) < rule.floor_ms:
        return None
    if previous is None or current is None:
        verdict: Verdict = "new" if previous is None else "missing"
        return TimingChange(nodeid, scope, _value(previous), _value(current), None, None, verdict)
    delta = current.value - previous.value
    ratio = current.value / previous.value if previous.value > 0 else None
    verdict = _verdict(previous, current, delta, rule)
    return TimingChange(nodeid, scope, previous.value, current.value, delta, ratio, verdict)


def _verdict(previous: _Measure, current: _Measure, delta: float, rule: _Rule) -> Verdict:
    relative = abs(delta) / previous.value if previous.value > 0 else float("inf")
    if abs(delta) <= rule.abs_ms or relative <= rule.rel:
        return "ok"
    if previous.repeated and current.repeated:
        if delta > 0 and current.low <= previous.high:
            return "ok"
        if delta < 0 and current.high >= previous.low:
            return "ok"
    return "slower" if delta > 0 else "faster"


def _value(measure: _Measure | None) -> float | None:
    return None if measure is None else measure.value


# --- history ----------------------------------------------------------------------------


def history_entry(doc: Mapping[str, Any]) -> dict[str, Any]:
    """One session as a small JSON object: enough to plot server time per test over commits."""
    fingerprint = doc.get("fingerprint") or {}
    system_stats = fingerprint.get("system_stats") or {}
    devices = system_stats.get("devices") or [{}]
    return {
        "created": doc.get("created"),
        "git_commit": fingerprint.get("git_commit"),
        "git_dirty": fingerprint.get("git_dirty"),
        "device": devices[0].get("name"),
        "comfyui_version": (system_stats.get("system") or {}).get("comfyui_version"),
        "tests": {
            str(t["nodeid"]): server_total_ms(t)
            for t in doc.get("tests") or []
            if server_total_ms(t) is not None
        },
        "memory": history_memory(doc),  # per test: peak figures in bytes (report_memory)
        "spread": history_spread(doc),  # per test with repeated runs: quartiles of its server totals
    }


def append_history(doc: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Append one JSON line; appending (not rewriting) keeps concurrent CI jobs from clobbering."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(history_entry(doc), ensure_ascii=False, sort_keys=True)
    with target.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    return target


def read_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The entries of a history file, oldest first; a bad line is a ConfigError naming it."""
    source = Path(path)
    entries = []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}:{number} is not a JSON line ({exc.msg})") from exc
    return entries
