"""End-of-session files: a new report never silently replaces the previous one."""

from __future__ import annotations

import json
from pathlib import Path

from comfytest.errors import PreflightError, ServerUnavailable
from comfytest.plugin.reporting import SessionState
from comfytest.plugin.settings import Settings
from comfytest.report.document import new_record


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


def test_report_json_has_the_permissions_of_the_other_reports(tmp_path: Path) -> None:
    finish(tmp_path, "first.json::a")
    modes = {name: (tmp_path / name).stat().st_mode & 0o777 for name in ("report.json", "report.md", "report.html")}
    assert len(set(modes.values())) == 1, modes


def test_a_preflight_failure_carries_no_server_log() -> None:
    """The log of a launched server says nothing about a model the workflow lacks."""

    class Server:
        def log_tail(self) -> str:
            return "ModuleNotFoundError: No module named 'torchaudio'"

    class Session:
        server = Server()

        def log_tail(self) -> str:  # the session's tail of the server it runs on
            return self.server.log_tail()

    state = SessionState(Settings(), "main", "/tmp")
    state._session = Session()  # type: ignore[assignment]
    missing = PreflightError("sdXL_v10VAEFix.safetensors is not installed")
    state.attach_log(missing)
    assert "torchaudio" not in str(missing)
    died = ServerUnavailable("the server exited")
    state.attach_log(died)
    assert "torchaudio" in str(died), "where the server is the cause, its log is attached"
