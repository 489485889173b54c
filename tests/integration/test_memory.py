"""Memory sampled while a workflow runs, on the session's real server: a node that holds 500 MiB
shows up as the server's peak RSS in every report, and a comparison with a session that held
nothing flags it (a warning, or a failure of kind ``memory`` with ``--comfy-memory-fail``). The
three sessions write one history file, whose trend page is checked in headless Chromium.

The inner sessions use the outer session's server through ``--comfy-url``; it runs on this
machine, so comfytest finds its process by the listening port and reads its RSS from /proc.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser import DomIndex, find_chromium, run_chromium
from tests.integration.test_reports import ENV_DROPPED, fresh_seed, read_report, table

NODEID = "workflows/hold.json::default"
HOLD_MIB = 500


def hold_workflow(megabytes: int) -> dict[str, Any]:
    return {
        "1": {"class_type": "ComfyTestNoiseImage", "inputs": {"width": 32, "height": 32, "seed": 1, "batch_size": 1}},
        "2": {"class_type": "ComfyTestHoldMemory", "_meta": {"title": "Hold"},
              "inputs": {"image": ["1", 0], "megabytes": megabytes, "seconds": 1.0, "where": "ram"}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "hold"}},
    }


@dataclass(frozen=True)
class Inner:
    root: Path
    ret: int
    out: str

    @property
    def report(self) -> dict[str, Any]:
        return read_report(self.root / "results")


def run_inner(root: Path, comfy_url: str, megabytes: int, *extra: str) -> Inner:
    folder = root / "workflows"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hold.json").write_text(json.dumps(hold_workflow(megabytes)))
    (root / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if k not in ENV_DROPPED}
    args = [sys.executable, "-m", "pytest", "workflows", f"--comfy-url={comfy_url}",
            f"--comfy-baselines={root / 'baselines'}", f"--comfy-results={root / 'results'}",
            "-p", "no:cacheprovider", "--comfy-update-baselines", f"--comfy-seed={fresh_seed()}", *extra]
    done = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False)
    return Inner(root, done.returncode, done.stdout + done.stderr)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("history") / "history.jsonl"


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory, comfy_url: str, history: Path) -> Inner:
    """A session whose node holds nothing: the previous report of the comparisons."""
    done = run_inner(tmp_path_factory.mktemp("idle"), comfy_url, 0, f"--comfy-history={history}")
    with history.open("a") as fh:
        fh.write("{not json\n")  # a damaged line: named and skipped, never a crash
    return done


@pytest.fixture(scope="module")
def holding(tmp_path_factory: pytest.TempPathFactory, comfy_url: str, idle: Inner, history: Path) -> Inner:
    root = tmp_path_factory.mktemp("holding")
    return run_inner(root, comfy_url, HOLD_MIB, f"--comfy-compare={idle.root / 'results' / 'report.json'}",
                     f"--junitxml={root / 'junit.xml'}", f"--comfy-history={history}")


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory, comfy_url: str, holding: Inner, idle: Inner, history: Path) -> Inner:
    previous = idle.root / "results" / "report.json"
    return run_inner(tmp_path_factory.mktemp("failing"), comfy_url, HOLD_MIB, f"--comfy-compare={previous}",
                     "--comfy-memory-fail", f"--comfy-history={history}")


def test_a_held_500_mib_is_the_servers_peak_rss_above_idle(holding: Inner) -> None:
    assert holding.ret == 0, holding.out  # without --comfy-memory-fail a growth only warns
    (record,) = holding.report["tests"]
    memory = record["memory"]
    assert memory["samples"] >= 5 and memory["interval_ms"] == 100, memory  # 1 s held, sampled every 100 ms
    assert memory["rss_peak_bytes"] - memory["rss_idle_bytes"] >= 500 * 10**6, memory
    assert memory["ram_used_peak_bytes"] > 0 and memory["ram_total_bytes"] >= memory["ram_used_peak_bytes"]
    assert memory["device_type"] == "cpu" and memory["vram_used_peak_bytes"] is None  # RAM, not VRAM


def test_the_memory_shows_in_the_table_junit_and_markdown(holding: Inner) -> None:
    cell = table(holding.out)["workflows/hold.json [default]"]["peak memory"]
    assert cell.endswith(" RSS (+500 MiB)") or cell.endswith(" RSS (+501 MiB)"), cell
    assert "peak memory: CPU device: ComfyUI reports system RAM" in holding.out
    props = {p.get("name"): p.get("value") for p in ET.parse(holding.root / "junit.xml").getroot().iter("property")}
    assert int(props["comfy_rss_rise_bytes"]) >= 500 * 10**6 and int(props["comfy_memory_samples"]) >= 5
    assert "RSS (+5" in (holding.root / "results" / "report.md").read_text()


def test_a_comparison_warns_that_the_peak_rss_grew(holding: Inner, idle: Inner) -> None:
    assert idle.ret == 0, idle.out
    assert f"memory regression: {NODEID} peak RSS: grew +" in holding.out
    assert "memory regression: " in (holding.root / "results" / "report.md").read_text()


def test_memory_fail_makes_the_growth_a_failure_of_kind_memory(failing: Inner, idle: Inner) -> None:
    previous = idle.root / "results" / "report.json"
    done = failing
    assert done.ret == 1, done.out
    (record,) = done.report["tests"]
    assert record["outcome"] == "failed" and record["failure_kind"] == "memory"
    assert record["message"].startswith(f"memory regression against {previous}:")
    assert "peak RSS: grew +" in record["message"] and "MiB" in record["message"]
    assert done.report["summary"]["failure_kinds"]["memory"] == 1
    assert f"FAILED {NODEID}" in done.out


def test_sample_ms_0_turns_sampling_off(tmp_path: Path, comfy_url: str) -> None:
    done = run_inner(tmp_path, comfy_url, 0, "--comfy-sample-ms=0")
    assert done.ret == 0, done.out
    (record,) = done.report["tests"]
    assert record["memory"] is None and record["timing"]["server_total_ms"] > 0
    assert table(done.out)["workflows/hold.json [default]"]["peak memory"] == "-"



# --- trends -----------------------------------------------------------------------------------


def chromium_dom(page: Path, profile: Path) -> DomIndex:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium found (apt-get install -y chromium, or set COMFYTEST_CHROMIUM)")
    return DomIndex(run_chromium(binary, page, profile))


def test_the_trend_page_of_three_sessions_renders_in_chromium(failing: Inner, history: Path, tmp_path: Path) -> None:
    out = tmp_path / "trend"
    done = subprocess.run([sys.executable, "-m", "comfytest.report.cli", "trend", str(history), "-o", str(out)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert f"{history}:2: not a JSON line" in done.stderr and "line skipped" in done.stderr
    assert "3 session(s), 1 test(s)" in done.stdout
    markdown = (out / "trend.md").read_text()
    assert markdown.startswith("### comfytest trends: last 3 of 3 session(s)")
    (row,) = [line for line in markdown.splitlines() if line.startswith(f"| {NODEID} |")]
    assert row.count("|") == 1 + 1 + 3 + 3 and "peak RSS" in row  # test, 3 sessions, 3 change columns
    dom = chromium_dom(out / "trend.html", tmp_path / "profile")
    assert dom.one("body").attrs["data-charts-drawn"] == "2"  # server time and peak RSS, both drawn
    charts = {c.attrs["data-metric"]: c for c in dom.find("svg", "trend-chart")}
    assert {m: c.attrs["data-points"] for m, c in charts.items()} == {"server_ms": "3", "memory_bytes": "3"}
    memory = [float(p.attrs["data-value"]) for p in dom.find("circle", "point")][3:]
    assert memory[1] - memory[0] >= 500 * 10**6 and memory[2] - memory[0] >= 500 * 10**6


def test_report_html_gets_the_trend_charts_with_history(failing: Inner, tmp_path: Path) -> None:
    dom = chromium_dom(failing.root / "results" / "report.html", tmp_path / "profile")
    (section,) = [e for e in dom.elements if e.attrs.get("id") == "trends"]
    assert section.attrs["data-sessions"] == "3"
    assert dom.one("body").attrs["data-charts-drawn"] == "2"
    assert dom.one("body").attrs["data-images-loaded"] == "true"
    assert "history: " in failing.out and "line skipped" in failing.out
    memory = [e for e in dom.find("div", "memory")]
    assert len(memory) == 1 and int(memory[0].attrs["data-rss-rise-bytes"]) >= 500 * 10**6
