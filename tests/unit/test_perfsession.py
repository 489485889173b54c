"""--comfy-perf's settings and its reference report (no server: documents on disk)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comfytest.errors import ConfigError
from comfytest.plugin.perfsession import attach_comparison, failure, find_reference, reference_for
from comfytest.plugin.settings import resolve
from comfytest.report.document import new_document, new_record, write_json
from comfytest.report.perfstats import Rule

ROOT = Path("/project")


def settings(**cli: Any) -> Any:
    return resolve(lambda o: cli.get(o.name), lambda o: "", ROOT, {})


def test_perf_options_and_their_validation() -> None:
    s = settings(perf=True)
    assert (s.perf, s.perf_budget, s.perf_min_runs, s.perf_max_runs, s.perf_alpha) == (True, (2.0, "x"), 6, 30, 0.01)
    assert (s.perf_screen_runs, s.perf_pool) == (1, 20)
    assert settings(**{"perf-screen-runs": 0, "perf-pool": 50}).perf_pool == 50
    assert settings(**{"perf-budget": "20s"}).perf_budget == (20.0, "s")
    assert settings(**{"perf-budget": "3X"}).perf_budget == (3.0, "x")
    with pytest.raises(ConfigError, match="needs at least 2 warm runs"):
        settings(**{"perf-min-runs": 8, "perf-max-runs": 4})
    with pytest.raises(ConfigError, match="separate sessions"):
        settings(perf=True, calibrate=3)


@pytest.mark.parametrize(("option", "value", "fragment"), [
    ("perf-budget", "soon", "not a budget; expected a multiple of the cold run (e.g. 3x) or seconds"),
    ("perf-budget", "0x", "must be greater than 0"),
    ("perf-alpha", "5", "between 0 and 1"),
    ("perf-pool", "1", "keep between 2 and 200 samples"),
    ("perf-screen-runs", "-1", "must be 0 or more"),
])
def test_bad_perf_values_are_refused_with_the_fix(option: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        resolve(lambda o: None, lambda o: value if o.name == option else "", ROOT, {})


def _runs(ms: float, n: int = 6) -> list[dict[str, Any]]:
    return [{"server_total_ms": ms + i % 3, "nodes": [{"node_id": "2", "class_type": "ComfyTestWork", "title": "Tint",
                                                        "duration_ms": ms - 5 + i % 3, "cached": False}]} for i in range(n)]


def _doc(ms: float, perf: bool = True) -> dict[str, Any]:
    record = new_record("w.json::default", runs=_runs(ms) if perf else [], timing=_runs(ms)[0])
    if perf:
        record["perf"] = {"cold": _runs(ms)[0], "rule": {"alpha": 0.01, "floor_ms": 20, "floor_pct": 5}}
    return new_document({}, [record], created="2026-01-01T00:00:00+00:00")


def test_reference_is_the_newest_report_with_perf_runs(tmp_path: Path) -> None:
    assert find_reference(tmp_path) == (None, None)
    write_json(_doc(40), tmp_path / "report.previous.json")
    write_json(_doc(40, perf=False), tmp_path / "report.json")  # a plain session in between
    doc, source = find_reference(tmp_path)
    assert source == str(tmp_path / "report.previous.json") and doc is not None
    write_json(_doc(41), tmp_path / "report.json")
    assert find_reference(tmp_path)[1] == str(tmp_path / "report.json")
    (tmp_path / "report.json").write_text("{broken")
    assert find_reference(tmp_path)[1] == str(tmp_path / "report.previous.json")  # and the broken file is left


def test_slowdown_message_and_warn(tmp_path: Path) -> None:
    record = dict(_doc(80)["tests"][0])
    attach_comparison(_doc(40), "ref.json", record, Rule())
    message = failure(record, "ref.json", warn=False)
    assert message is not None and message.startswith("timing regression against ref.json (--comfy-perf: 6 warm runs in the reference, 6 now")
    assert "\n  node 2 'Tint' (ComfyTestWork): slower ×" in message and "--comfy-perf-warn" in message
    assert failure(record, "ref.json", warn=True) is None
    plain = dict(_doc(80)["tests"][0])
    attach_comparison(_doc(40, perf=False), "ref.json", plain, Rule())
    assert plain["perf"]["changes"] == [] and "needs repeated runs on both sides" in plain["perf"]["not_compared"]
    alone = dict(_doc(80)["tests"][0])
    attach_comparison(None, None, alone, Rule())
    assert "no earlier perf report" in alone["perf"]["not_compared"] and failure(alone, None, warn=False) is None
    assert alone["perf"]["pool"]["2"] == [75.0 + i % 3 for i in reversed(range(6))]  # its own, newest first


def test_the_pool_passes_on_where_nothing_changed() -> None:
    reference = _doc(40)
    assert reference_for(reference, "w.json::default") == {"total": [40.0 + i % 3 for i in range(6)],
                                                            "2": [35.0 + i % 3 for i in range(6)]}
    assert reference_for(reference, "other.json::default") is None and reference_for(None, "w.json::default") is None
    same = dict(_doc(40)["tests"][0])
    attach_comparison(reference, "ref.json", same, Rule(), pool_cap=8)
    assert len(same["perf"]["pool"]["2"]) == 8  # 6 own, then 2 of the reference's
    slowed = dict(_doc(80)["tests"][0])
    attach_comparison(reference, "ref.json", slowed, Rule(), pool_cap=8)
    assert len(slowed["perf"]["pool"]["2"]) == 6 and min(slowed["perf"]["pool"]["2"]) >= 75  # starts over
