"""Live progress in real sessions: on a terminal (a pseudo-terminal here) one line rewritten in
place and erased, pytest's own output intact; without a terminal nothing extra, unless
``--comfy-progress nodes`` asks for a line per node. ``--comfy-previews`` keeps the binary
preview frames for the HTML report."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from comfytest.plugin.progress import CLEAR, RESTORE, SAVE
from tests.browser import DomIndex
from tests.integration.test_reports import ENV_DROPPED, TIMED, fresh_seed, read_report


def suite(root: Path) -> list[str]:
    (root / "workflows").mkdir()
    (root / "workflows" / "timed.json").write_text(json.dumps(TIMED))
    (root / "pytest.ini").write_text("[pytest]\n")
    return ["workflows", f"--comfy-baselines={root / 'b'}", f"--comfy-results={root / 'r'}",
            "-p", "no:cacheprovider", "--comfy-update-baselines", f"--comfy-seed={fresh_seed()}"]


def env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in ENV_DROPPED}, "COLUMNS": "200", "TERM": "xterm"}


def run_on_a_terminal(args: list[str], cwd: Path) -> str:
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(args, cwd=cwd, env=env(), stdin=secondary, stdout=secondary, stderr=secondary)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert proc.wait(timeout=300) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def test_on_a_terminal_one_line_is_rewritten_in_place_and_erased(tmp_path: Path, comfy_url: str) -> None:
    args = [sys.executable, "-m", "pytest", *suite(tmp_path), f"--comfy-url={comfy_url}"]
    out = run_on_a_terminal(args, tmp_path)
    rewrites = [part.split(CLEAR + RESTORE)[0] for part in out.split(SAVE + " ")[1:]]
    assert any("2 ComfyTestProgress 'Slow steps' step 4/4" in r and " it/s " in r for r in rewrites), rewrites
    # pytest wrote "workflows/timed.json " on that line already: the case id alone follows it
    assert all(r.startswith("default: ") and r.endswith(" s") for r in rewrites), rewrites
    assert SAVE + CLEAR + RESTORE in out  # erased when the run ended
    visible = out.replace(SAVE + CLEAR + RESTORE, "")
    for r in rewrites:
        visible = visible.replace(SAVE + " " + r + CLEAR + RESTORE, "")
    visible = re.sub(r"\x1b\[[0-9;]*m", "", visible)  # pytest's colours
    assert "\nworkflows/timed.json . " in visible.replace("\r", "")  # pytest's own line, as without us
    assert "1 passed" in visible


def test_without_a_terminal_nothing_extra_unless_nodes_asks(tmp_path: Path, comfy_url: str) -> None:
    args = [sys.executable, "-m", "pytest", *suite(tmp_path), f"--comfy-url={comfy_url}"]
    quiet = subprocess.run(args, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300, check=False)
    assert quiet.returncode == 0, quiet.stdout
    assert "\x1b7" not in quiet.stdout and "comfytest: workflows/timed.json::default" not in quiet.stdout
    nodes = subprocess.run([*args, "--comfy-progress=nodes", f"--comfy-seed={fresh_seed()}"], cwd=tmp_path,
                           env=env(), capture_output=True, text=True, timeout=300, check=False)
    assert nodes.returncode == 0, nodes.stdout
    lines = [line for line in nodes.stdout.splitlines() if line.startswith("comfytest: workflows/timed.json::default ")]
    assert [line.split()[2:4] for line in lines] == [["1", "ComfyTestNoiseImage"], ["2", "ComfyTestProgress"],
                                                     ["3", "SaveImage"]], nodes.stdout
    assert lines[1].endswith(" it/s)") and "(4 steps, " in lines[1]


PREVIEWED = {
    "1": {"class_type": "ComfyTestNoiseImage", "inputs": {"width": 24, "height": 16, "seed": 3, "batch_size": 2}},
    "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "previewed"}},
}


def test_previews_are_saved_and_shown_in_the_html_report(tmp_path: Path, comfy_url: str) -> None:
    args = suite(tmp_path)
    (tmp_path / "workflows" / "timed.json").write_text(json.dumps(PREVIEWED))
    done = subprocess.run([sys.executable, "-m", "pytest", *args, f"--comfy-url={comfy_url}", "--comfy-previews"],
                          cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout
    (record,) = read_report(tmp_path / "r")["tests"]
    assert [(p["node_id"], p["format"]) for p in record["previews"]] == [("2", "png"), ("2", "png")]
    assert all((tmp_path / "r" / p["path"]).read_bytes().startswith(b"\x89PNG") for p in record["previews"])
    dom = DomIndex((tmp_path / "r" / "report.html").read_text())
    previews = dom.find("img", "preview")
    # linked beside the report (--comfy-html linked, the default)
    assert len(previews) == 2 and all((tmp_path / "r" / p.attrs["src"]).read_bytes().startswith(b"\x89PNG")
                                      for p in previews)
