"""End-of-session files: a new report never silently replaces the previous one."""

from __future__ import annotations

import json
from pathlib import Path

from comfytest.report import new_record
from comfytest.reporting import SessionState
from comfytest.settings import Settings


def finish(results: Path, nodeid: str) -> None:
    state = SessionState(Settings(results=results, baselines=results / "none"), "main", str(results))
    state.add_report(nodeid, "passed", None, new_record(nodeid, outcome="passed"))
    state.finish_session([])


def test_the_previous_report_is_kept_beside_the_new_one(tmp_path: Path) -> None:
    finish(tmp_path, "first.json::a")
    finish(tmp_path, "second.json::a")
    current = json.loads((tmp_path / "report.json").read_text())
    previous = json.loads((tmp_path / "report.previous.json").read_text())
    assert [t["nodeid"] for t in current["tests"]] == ["second.json::a"]
    assert [t["nodeid"] for t in previous["tests"]] == ["first.json::a"]
    assert (tmp_path / "report.md").is_file() and (tmp_path / "report.html").is_file()
