"""Trends from a history file: tolerant reading, labels, charts, the markdown table, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfytest.report.cli import main
from comfytest.report.compare import history_entry
from comfytest.report.memory import MIB
from comfytest.report.trend import History, axis_range, chart, load_history, render_markdown, render_page, session_label
from tests.browser import DomIndex


def entry(commit: str | None, ms: float, rss: int | None, created: str = "2026-01-02T03:04:05+00:00") -> dict[str, Any]:
    line: dict[str, Any] = {"created": created, "git_commit": commit, "git_dirty": False,
                            "tests": {"w.json::a": ms}, "memory": {}}
    if rss is not None:
        line["memory"] = {"w.json::a": {"rss_peak_bytes": rss}}
    return line


def write(path: Path, *lines: Any) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_bad_lines_are_named_and_skipped(tmp_path: Path) -> None:
    path = write(tmp_path / "h.jsonl", entry("a" * 40, 100, MIB), "{oops", "[1, 2]", '{"tests": 3}', "",
                 entry(None, 120, 2 * MIB))
    history = load_history(path)
    assert len(history.entries) == 2
    assert [s.split(": ", 1)[0] for s in history.skipped] == [f"{path}:2", f"{path}:3", f"{path}:4"]
    assert "not a JSON line" in history.skipped[0] and "a JSON list" in history.skipped[1]
    assert all(s.endswith("line skipped") for s in history.skipped)


def test_sessions_are_labelled_by_commit_else_by_time() -> None:
    assert session_label({"git_commit": "4f1c2e0abc", "git_dirty": True}) == "4f1c2e0*"
    assert session_label({"git_commit": None, "created": "2026-01-02T03:04:05+00:00"}) == "2026-01-02 03:04"


def test_a_history_line_carries_the_memory_of_each_test() -> None:
    doc = {"fingerprint": {}, "tests": [
        {"nodeid": "w.json::a", "timing": {"server_total_ms": 10.0, "nodes": []},
         "memory": {"rss_peak_bytes": 3 * MIB, "rss_idle_bytes": MIB, "ram_used_peak_bytes": 9 * MIB,
                    "ram_used_idle_bytes": 8 * MIB}},
        {"nodeid": "w.json::b", "timing": None, "memory": None},
    ]}
    line = history_entry(doc)
    assert line["tests"] == {"w.json::a": 10.0}
    assert line["memory"] == {"w.json::a": {"rss_peak_bytes": 3 * MIB, "ram_used_peak_bytes": 9 * MIB,
                                            "ram_rise_bytes": MIB}}


def test_a_chart_has_a_point_per_measured_session_and_says_when_there_is_none() -> None:
    dom = DomIndex(chart([1.0, None, 3.0], ["a", "b", "c"], metric="server_ms", title="server time", unit="ms"))
    svg = dom.one("svg")
    assert svg.attrs["data-points"] == "2"
    assert [p.attrs["data-value"] for p in dom.find("circle", "point")] == ["1.0", "3.0"]
    empty = chart([None], ["a"], metric="memory_bytes", title="peak RSS", unit="bytes")
    assert 'data-points="0"' in empty and "no peak RSS recorded" in empty


def test_noise_draws_flat_and_a_real_change_fills_the_chart() -> None:
    def heights(values: list[float]) -> float:
        ys = [float(p.attrs["cy"]) for p in DomIndex(chart(values, ["a", "b", "c"], metric="m", title="t",
                                                           unit="bytes")).find("circle", "point")]
        return max(ys) - min(ys)

    noise = heights([884 * MIB, 882 * MIB, 881 * MIB])  # 0.3 %: what the comparison ignores
    change = heights([884 * MIB, 882 * MIB, 1400 * MIB])  # +58 %: a regression
    assert noise < 5 < 60 < change
    assert axis_range([884.0, 882.0]) == pytest.approx((794.6, 971.4))  # widened to 20 % about the middle
    assert axis_range([0.01, 0.02]) == pytest.approx((0.0, 0.2))  # never below 0 for figures that are not
    assert axis_range([100.0, 300.0]) == (100.0, 300.0)  # a range wider than 20 % is kept


def test_the_page_escapes_names_and_needs_no_network(tmp_path: Path) -> None:
    hostile = entry("b" * 40, 5, None)
    hostile["tests"] = {"<script>x</script>.json::a": 5}
    page = render_page(History((hostile,)), "h.jsonl")
    assert "<script>x</script>" not in page and "&lt;script&gt;" in page
    assert "http://" not in page and "https://" not in page


def test_markdown_shows_the_last_sessions_and_the_change(tmp_path: Path) -> None:
    history = History(tuple(entry(c * 40, ms, rss) for c, ms, rss in
                            (("a", 100, 100 * MIB), ("b", 200, 100 * MIB), ("c", 100, 100 * MIB), ("d", 150, 700 * MIB))))
    markdown = render_markdown(history, last=3)
    assert markdown.splitlines()[0] == "### comfytest trends: last 3 of 4 session(s)"
    header, _, row = markdown.splitlines()[2:5]
    assert header == "| test | bbbbbbb | ccccccc | ddddddd | change | peak memory | memory change |"
    assert row == "| w.json::a | 200 | 100 | 150 | +50% (100 → 150 ms) | 700 MiB peak RSS | +600 MiB (+600%) |"


def test_the_cli_writes_both_files_and_names_a_missing_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "h.jsonl", entry("a" * 40, 100, MIB), "garbage", entry("b" * 40, 110, MIB))
    assert main(["trend", str(path), "-o", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert f"{path}:2: not a JSON line" in captured.err
    assert (tmp_path / "out" / "trend.html").read_text().count('class="trend"') == 1
    assert "| w.json::a |" in (tmp_path / "out" / "trend.md").read_text()
    assert main(["trend", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "out")]) == 2
    assert "nope.jsonl does not exist: pass the file given to --comfy-history" in capsys.readouterr().err
