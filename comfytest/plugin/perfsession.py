"""``--comfy-perf`` across a session: the reference report, each test's comparison, its failure.

The reference is ``--comfy-compare FILE`` or, when none is given, the results folder's
``report.json`` (the previous session's, read before this session replaces it) — or its
``report.previous.json`` when only that one holds perf runs, so a plain session in between does
not leave a perf session with nothing to compare. No pytest here; ``reporting`` calls in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from comfytest.errors import ConfigError
from comfytest.plugin.settings import Settings
from comfytest.report.document import load_report
from comfytest.report.perfcompare import (
    compare_perf,
    describe_json,
    is_perf,
    next_pool,
    not_compared,
    reference_pool,
    slowdowns,
)
from comfytest.report.perfstats import Rule

REFERENCE_FILES = ("report.json", "report.previous.json")


def rule_of(settings: Settings) -> Rule:
    return Rule(settings.perf_alpha, settings.perf_floor_ms, settings.perf_floor_pct)


def find_reference(results: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The newest report in ``results`` holding perf runs, and its path (None, None if none)."""
    for name in REFERENCE_FILES:
        path = results / name
        if not path.is_file():
            continue
        try:
            doc = load_report(path)
        except ConfigError:
            continue  # an older schema or a broken file: not a reference, and not ours to delete
        if any(is_perf(t) for t in doc.get("tests") or []):
            return doc, str(path)
    return None, None


def reference_for(previous: Mapping[str, Any] | None, nodeid: str) -> dict[str, list[float]] | None:
    """The pool of warm samples ``previous`` holds for this test (None: nothing to compare with)."""
    earlier = _by_nodeid(previous).get(nodeid)
    if earlier is None or not_compared(earlier, {}, "") is not None:
        return None
    return reference_pool(earlier)


def attach_comparison(
    previous: Mapping[str, Any] | None, source: str | None, record: dict[str, Any], rule: Rule, pool_cap: int = 20,
) -> None:
    """Compare a perf record with the same test of ``previous``; keep the result, and the pool the
    next session compares with, in ``record["perf"]``."""
    perf = record.get("perf")
    if not isinstance(perf, dict):
        return
    earlier = _by_nodeid(previous).get(str(record.get("nodeid")))
    where = source or "the results folder"
    reason = not_compared(earlier, record, where) if previous is not None else (
        "not compared: no earlier perf report (this session's report.json is the reference for the next one; "
        "or give --comfy-compare FILE)")
    perf["compared_with"] = source if reason is None else None
    perf["not_compared"] = reason
    perf["changes"] = [] if reason is not None or earlier is None else [c.to_json() for c in compare_perf(earlier, record, rule)]
    reference = reference_pool(earlier) if reason is None and earlier is not None else {}
    perf["pool"] = next_pool(reference, record, perf["changes"], pool_cap)


def failure(record: Mapping[str, Any], source: str | None, warn: bool) -> str | None:
    """Why this test fails its performance check (None: it does not, or ``--comfy-perf-warn``)."""
    slower = slowdowns(record)
    if not slower or warn:
        return None
    perf = record["perf"]
    head = (f"timing regression against {source} (--comfy-perf: {slower[0]['n_before']} warm runs in the reference, "
            f"{slower[0]['n_after']} now; rule p < {perf['rule']['alpha']:g}, above {perf['rule']['floor_ms']:g} ms "
            f"and {perf['rule']['floor_pct']:g}%):")
    return "\n".join([head, *(f"  {describe_json(c)}" for c in slower),
                      "(--comfy-perf-warn reports slowdowns without failing; compare only with a reference made "
                      "on the same machine and device)"])


def warnings(records: Sequence[Mapping[str, Any]], warn: bool) -> list[str]:
    """``--comfy-perf-warn``: the slowdowns that did not fail their tests, one line each."""
    if not warn:
        return []
    return [f"timing regression: {r.get('nodeid')} {describe_json(c)}" for r in records for c in slowdowns(r)]


def _by_nodeid(doc: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    return {str(t.get("nodeid")): t for t in (doc or {}).get("tests") or []}


__all__ = ["attach_comparison", "failure", "find_reference", "reference_for", "rule_of", "warnings"]
