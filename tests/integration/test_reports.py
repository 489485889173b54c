"""Reports from real sessions: report.json, the terminal table, JUnit, markdown and the step
summary, HTML in headless Chromium, repeated runs and the cache, comparisons, history, xdist,
exit codes, and secrets kept out of all of it.

Every inner session runs against the real server of this session (``comfy_url``) with small
model-free workflows. One module-scoped session, with most options on, feeds the tests that only
read what it wrote; tests that need other options run their own ``pytester`` session.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import comfytest
from comfytest.comfy.server import free_port
from comfytest.report.document import RECORD_DEFAULTS, SCHEMA, fully_cached, server_total_ms
from comfytest.report.text import HEADERS
from tests.browser import DomIndex, find_chromium, run_chromium

REPO = Path(__file__).parents[2]
SECRET = "SECRET123"
STEP_SUMMARY_BEFORE = "# an earlier step's summary\n"

#: ~240 ms of real work on any machine: 4 progress steps of 60 ms (so also a speed, in it/s)
TIMED = {
    "1": {"class_type": "ComfyTestNoiseImage", "_meta": {"title": "Pattern"},
          "inputs": {"width": 48, "height": 32, "seed": 5, "batch_size": 1}},
    "2": {"class_type": "ComfyTestProgress", "_meta": {"title": "Slow steps"},
          "inputs": {"image": ["1", 0], "steps": 4, "delay": 0.06}},
    "3": {"class_type": "SaveImage", "_meta": {"title": "Save"},
          "inputs": {"images": ["2", 0], "filename_prefix": "timed"}},
}
NODEIDS = [
    "workflows/noise_blur_chain.json::default",
    "workflows/noise_blur_chain.json::strong_blur",
    "workflows/timed.json::default",
]
ENV_DROPPED = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_ADDOPTS",
               "GITHUB_STEP_SUMMARY", "COMFYUI_URL")


def write_suite(root: Path) -> Path:
    """``root/workflows`` with the timed workflow and noise_blur_chain (two cases)."""
    folder = root / "workflows"
    folder.mkdir(parents=True)
    (folder / "timed.json").write_text(json.dumps(TIMED, indent=1))
    for name in ("noise_blur_chain.json", "noise_blur_chain.toml"):
        shutil.copy(REPO / "workflows" / name, folder / name)
    (root / "pytest.ini").write_text("[pytest]\n")  # pins the rootdir, so node ids are stable
    return folder


def git_commit_all(root: Path) -> str:
    """Make ``root`` a throwaway git repository so the fingerprint has a commit to record."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "suite")
    return git("rev-parse", "HEAD")


def dir_args(root: Path) -> list[str]:
    return [f"--comfy-baselines={root / 'baselines'}", f"--comfy-results={root / 'results'}",
            "-p", "no:cacheprovider"]


def read_report(results: Path) -> dict[str, Any]:
    return json.loads((results / "report.json").read_text())  # type: ignore[no-any-return]


def by_nodeid(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["nodeid"]: t for t in doc["tests"]}


def table(out: str) -> dict[str, dict[str, str]]:
    """The comfytest terminal table: test label → {column header: cell}, cut at the header's
    column starts (the columns are aligned; the last one is free text)."""
    lines = out.split("= comfytest =", 1)[1].splitlines()
    header = next(line for line in lines if line.startswith("test "))
    starts = [header.index(h) for h in HEADERS]
    rows = {}
    for line in lines[lines.index(header) + 1:]:
        if not line.startswith("workflows/"):
            break
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows[cells[0]] = dict(zip(HEADERS, cells, strict=True))
    return rows


def fresh_seed() -> str:
    """A seed no earlier prompt on the shared server used, so the first run really executes."""
    return str(random.randrange(10**6, 10**9))


# --- one session with most options on --------------------------------------------------------


@dataclass(frozen=True)
class Session:
    root: Path
    ret: int
    out: str
    commit: str

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def report(self) -> dict[str, Any]:
        return read_report(self.results)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory, comfy_url: str) -> Session:
    """Three tests, three measured runs each from a freed cache, every report and a secret;
    baselines written by a first session, so this one compares against them."""
    root = tmp_path_factory.mktemp("reports")
    write_suite(root)
    commit = git_commit_all(root)
    (root / "summary.md").write_text(STEP_SUMMARY_BEFORE)
    env = {k: v for k, v in os.environ.items() if k not in ENV_DROPPED}
    common = [sys.executable, "-m", "pytest", "workflows", f"--comfy-url={comfy_url}", *dir_args(root)]
    first = subprocess.run([*common, "--comfy-update-baselines", "--comfy-no-report"],
                           cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    env["GITHUB_STEP_SUMMARY"] = str(root / "summary.md")
    args = [
        *common, "--comfy-runs=3", "--comfy-free-cache",
        f"--junitxml={root / 'junit.xml'}", f"--comfy-history={root / 'history.jsonl'}",
        "--comfy-header", f"Authorization: Bearer {SECRET}",
    ]
    done = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False)
    return Session(root, done.returncode, done.stdout + done.stderr, commit)


def test_the_session_passes(session: Session) -> None:
    assert session.ret == 0, session.out


def test_report_json_has_the_schema_and_real_timings(session: Session) -> None:
    doc = session.report
    assert doc["schema"] == SCHEMA
    assert set(doc) >= {"schema", "created", "fingerprint", "tests", "unused_baselines", "summary"}
    assert doc["summary"]["total"] == doc["summary"]["passed"] == 3
    assert [t["nodeid"] for t in doc["tests"]] == NODEIDS
    for record in doc["tests"]:
        assert set(record) >= set(RECORD_DEFAULTS)
        assert record["outcome"] == "passed" and record["failure_kind"] is None
        assert record["timing"]["server_total_ms"] > 0
        assert record["timing"]["status"] == "success"
        assert len(record["workflow_digest"]) >= 16 and record["prompt_id"]
        assert [c["status"] for c in record["comparisons"]] == ["passed"]
        assert record["comparisons"][0]["distance"] == 0
        for node in record["timing"]["nodes"]:
            assert node["class_type"] and node["duration_ms"] is not None


def test_timed_nodes_have_durations_and_a_speed(session: Session) -> None:
    nodes = {n["node_id"]: n for n in by_nodeid(session.report)[NODEIDS[2]]["timing"]["nodes"]}
    assert nodes["2"]["class_type"] == "ComfyTestProgress"
    assert 200 <= nodes["2"]["duration_ms"] < 5000  # 4 sleeps of 60 ms
    assert nodes["2"]["steps"] == 4 and nodes["2"]["steps_per_s"] > 0
    assert nodes["2"]["duration_ms"] <= by_nodeid(session.report)[NODEIDS[2]]["timing"]["server_total_ms"] + 5


def test_free_cache_makes_every_measured_run_execute(session: Session) -> None:
    for record in session.report["tests"]:
        assert len(record["runs"]) == 3
        for run in record["runs"]:
            assert [n["node_id"] for n in run["nodes"] if n["cached"]] == [], record["nodeid"]


def test_repeated_runs_give_stats(session: Session) -> None:
    record = by_nodeid(session.report)[NODEIDS[2]]
    stats = record["stats"]
    assert stats["runs"] == 3 and stats["cached_runs"] == 0
    total = stats["server_total_ms"]
    assert 0 < total["min"] <= total["median"] <= total["max"]
    assert total["spread"] == pytest.approx((total["max"] - total["min"]) / total["median"])
    assert sorted([r["server_total_ms"] for r in record["runs"]])[1] == total["median"]
    assert stats["nodes"]["2"]["min"] >= 200
    assert server_total_ms(record) == total["median"]  # the median stands for the test


def test_fingerprint_names_the_machine_the_code_and_the_server(session: Session) -> None:
    fingerprint = session.report["fingerprint"]
    assert fingerprint["comfytest_version"] == comfytest.__version__
    assert fingerprint["git_commit"] == session.commit
    system = fingerprint["system_stats"]["system"]
    assert system["comfyui_version"] and system["pytorch_version"]
    assert isinstance(system["argv"], list) and "--cpu" in system["argv"]
    assert fingerprint["system_stats"]["devices"][0]["name"]
    comfyui = fingerprint["comfyui"]  # what the server says about itself, read once
    assert comfyui["comfyui_version"] == system["comfyui_version"] == "0.3.75"
    assert comfyui["frontend_version"] == system["required_frontend_version"]
    assert comfyui["cache_mode"] == "classic"  # 0.3.75's default; 0.26 defaults to ram-pressure


def test_terminal_table_at_the_end_of_the_session(session: Session) -> None:
    section = session.out.split("= comfytest =", 1)[1]
    assert section.splitlines()[1] == "comfytest: 3 passed"
    assert section.splitlines()[2].startswith("server: ComfyUI 0.3.75 (frontend ")
    rows = table(session.out)
    assert list(rows) == ["workflows/noise_blur_chain.json [default]",
                          "workflows/noise_blur_chain.json [strong_blur]",
                          "workflows/timed.json [default]"]
    assert {row["result"] for row in rows.values()} == {"passed"}
    timed = rows["workflows/timed.json [default]"]
    record = by_nodeid(session.report)[NODEIDS[2]]
    assert timed["server ms"] == f"{record['stats']['server_total_ms']['median']:,.0f}"
    assert float(timed["it/s"]) > 0 and timed["cached"] == "0" and timed["change"] == ""
    assert timed["slowest nodes"].startswith('2 ComfyTestProgress "Slow steps"')
    assert "reports: " in section and "report.json" in section


def test_junit_xml_carries_timings_and_distances(session: Session) -> None:
    cases = ET.parse(session.root / "junit.xml").getroot().iter("testcase")
    every = [{p.get("name", ""): p.get("value", "") for p in c.iter("property")} for c in cases]
    assert len(every) == 3
    assert all(float(p["comfy_server_total_ms"]) > 0 for p in every)
    assert all(p["comfy_runs"] == "3" and "comfy_server_total_ms_median" in p for p in every)
    assert all(any(k.startswith("comfy_distance_") for k in p) for p in every)
    timed = next(p for p in every if "comfy_node_2_ms" in p and float(p["comfy_node_2_ms"]) >= 200)
    assert "comfy_node_1_ms" in timed


def test_markdown_report_and_step_summary(session: Session) -> None:
    markdown = (session.results / "report.md").read_text()
    assert markdown.startswith("### comfytest: 3 passed")
    assert "| workflows/timed.json [default] | passed |" in markdown
    summary = (session.root / "summary.md").read_text()
    assert summary.startswith(STEP_SUMMARY_BEFORE), "the step summary is appended to, not replaced"
    assert markdown in summary


def test_history_gets_one_line_per_session(session: Session) -> None:
    (line,) = (session.root / "history.jsonl").read_text().splitlines()
    entry = json.loads(line)
    assert entry["git_commit"] == session.commit
    assert set(entry["tests"]) == set(NODEIDS)
    assert entry["tests"][NODEIDS[2]] == server_total_ms(by_nodeid(session.report)[NODEIDS[2]])


def test_the_secret_header_is_in_no_output_and_no_file(session: Session) -> None:
    assert SECRET not in session.out
    files = [p for p in session.root.rglob("*") if p.is_file() and ".git" not in p.parts]
    assert len(files) > 10  # reports, baselines, obtained images: a real search
    leaked = [str(p) for p in files if SECRET.encode() in p.read_bytes()]
    assert leaked == []


# --- the HTML report in a real browser ---------------------------------------------------------


def test_html_report_renders_in_headless_chromium(session: Session, tmp_path: Path) -> None:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium found (apt-get install -y chromium, or set COMFYTEST_CHROMIUM)")
    dom = DomIndex(run_chromium(binary, session.results / "report.html", tmp_path / "profile"))
    body = dom.one("body")
    assert body.attrs["data-js-test-count"] == "3"
    assert [r.attrs["data-nodeid"] for r in dom.find("section", "test-record")] == NODEIDS
    assert int(body.attrs["data-images-decoded"]) >= 3  # one real output image per test at least
    assert body.attrs["data-images-loaded"] == "true"
    bars = [e for e in dom.find(cls="node-bar") if e.attrs.get("data-node-id") == "2"]
    assert max(float(b.attrs["data-duration-ms"]) for b in bars) >= 200  # timed.json's node 2


# --- sessions of their own -------------------------------------------------------------------


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """In a subprocess: an in-process run would re-import numpy's FFT (phash), which fails."""
    return pytester.runpytest_subprocess(*args, timeout=300)


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ENV_DROPPED:
        monkeypatch.delenv(name, raising=False)
    return write_suite(pytester.path)


def test_repeats_of_an_identical_prompt_are_cached_and_never_timed(
    pytester: pytest.Pytester, suite: Path, inner_args: list[str], tmp_path: Path
) -> None:
    result = run(pytester, *inner_args, "--comfy-update-baselines", "--comfy-runs=3",
                 f"--comfy-seed={fresh_seed()}", str(suite / "timed.json"))
    assert result.ret == 0, result.stdout.str()
    record = read_report(tmp_path / "results")["tests"][0]
    first, *repeats = record["runs"]
    assert not fully_cached(first) and all(fully_cached(run) for run in repeats)
    stats = record["stats"]
    assert stats["runs"] == 1 and stats["cached_runs"] == 2
    assert stats["server_total_ms"]["median"] == first["server_total_ms"]
    assert list(stats["nodes"]) == ["1", "2", "3"]
    row = table(result.stdout.str())["workflows/timed.json [default]"]
    speed = next(n for n in first["nodes"] if n["node_id"] == "2")["steps_per_s"]
    assert row["it/s"] == f"{speed:.2f}"  # the one executed run's speed, nothing else
    assert row["server ms"] == f"{first['server_total_ms']:,.0f}"
    result.stdout.fnmatch_lines(["*1 test(s) had measured runs served entirely from ComfyUI's cache*"])


@pytest.mark.parametrize("free_cache", [False, True], ids=["cached", "free-cache"])
def test_warmup_runs_before_the_measured_run(
    pytester: pytest.Pytester, suite: Path, inner_args: list[str], tmp_path: Path, free_cache: bool
) -> None:
    args = ["--comfy-update-baselines", "--comfy-warmup=1", f"--comfy-seed={fresh_seed()}"]
    result = run(pytester, *inner_args, *args, *(["--comfy-free-cache"] if free_cache else []),
                 str(suite / "timed.json"))
    assert result.ret == 0, result.stdout.str()
    record = read_report(tmp_path / "results")["tests"][0]
    assert record["runs"] == [] and record["stats"] is None  # the warm-up is not measured
    row = table(result.stdout.str())["workflows/timed.json [default]"]
    if free_cache:
        assert not any(n["cached"] for n in record["timing"]["nodes"])
        assert server_total_ms(record) == record["timing"]["server_total_ms"] > 200
    else:  # the warm-up ran this very prompt, so the measured run came from the cache
        assert fully_cached(record["timing"]) and server_total_ms(record) is None
        assert (row["server ms"], row["it/s"], row["cached"], row["slowest nodes"]) == ("-", "-", "3", "-")


def previous_report(current: dict[str, Any], factor: float) -> dict[str, Any]:
    """The report as if every timing had been ``factor`` times what it was."""
    def scale(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: scale(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [scale(v, key) for v in value]
        timed = key.endswith("_ms") or key in ("min", "median", "max")
        return value * factor if timed and isinstance(value, (int, float)) else value

    previous = dict(current)
    previous["tests"] = scale(current["tests"])
    return previous


@pytest.mark.parametrize("fail", [False, True], ids=["warn", "timing-fail"])
def test_compare_shows_changes_and_flags_a_timing_regression(
    pytester: pytest.Pytester, suite: Path, inner_args: list[str], tmp_path: Path,
    session: Session, fail: bool,
) -> None:
    previous = tmp_path / "previous.json"
    previous.write_text(json.dumps(previous_report(session.report, 0.1)))
    args = [f"--comfy-compare={previous}", "--comfy-update-baselines", "--comfy-free-cache"]
    result = run(pytester, *inner_args, *args, *(["--comfy-timing-fail"] if fail else []),
                 str(suite / "timed.json"))
    out = result.stdout.str()
    change = table(out)["workflows/timed.json [default]"]["change"]
    assert change.startswith("+") and "%" in change and " ms)" in change  # +900% (24 → 243 ms)
    result.stdout.fnmatch_lines(["timing regression: workflows/timed.json::default total: slower +*"])
    assert "node 2 ComfyTestProgress: slower" in out
    record = read_report(tmp_path / "results")["tests"][0]
    markdown = (tmp_path / "results" / "report.md").read_text()
    assert "timing regression: workflows/timed.json::default total: slower" in markdown
    if not fail:
        assert result.ret == 0, "a timing regression only warns by default"
        assert record["outcome"] == "passed" and record["failure_kind"] is None
        return
    assert result.ret == 1
    assert record["outcome"] == "failed" and record["failure_kind"] == "timing"
    assert record["message"].startswith(f"timing regression against {previous}")
    assert read_report(tmp_path / "results")["summary"]["failure_kinds"]["timing"] == 1
    result.stdout.fnmatch_lines(["FAILED workflows/timed.json::default*"])


def test_xdist_workers_results_merge_into_one_report(
    pytester: pytest.Pytester, suite: Path, inner_args: list[str], tmp_path: Path
) -> None:
    pytest.importorskip("xdist")
    junit = tmp_path / "junit.xml"
    result = run(pytester, *inner_args, "-n", "2", "--comfy-update-baselines",
                 f"--junitxml={junit}", str(suite))
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=3)
    doc = read_report(tmp_path / "results")
    assert [t["nodeid"] for t in doc["tests"]] == NODEIDS  # each once, from both workers
    assert all(t["timing"] and t["comparisons"] for t in doc["tests"])  # records travelled
    assert doc["summary"]["passed"] == 3
    assert doc["fingerprint"]["system_stats"]["devices"], "a worker's fingerprint reached the controller"
    assert len(list((tmp_path / "results").glob("report.json"))) == 1
    assert "comfy_server_total_ms" in junit.read_text()
    assert sum(line.startswith("workflows/") for line in result.outlines) >= 3


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_exit_75_when_the_server_is_unreachable(
    pytester: pytest.Pytester, suite: Path, workers: tuple[str, ...]
) -> None:
    if workers:
        pytest.importorskip("xdist")
    url = f"http://127.0.0.1:{free_port()}"
    result = run(pytester, f"--comfy-url={url}", *dir_args(pytester.path), *workers, str(suite))
    assert result.ret == 75, result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    if workers:  # serially the first test stops the run (pytest.exit), before any record
        kinds = {t["failure_kind"] for t in read_report(pytester.path / "results")["tests"]}
        assert kinds == {"infrastructure"}


def test_exit_1_when_an_output_regressed(
    pytester: pytest.Pytester, suite: Path, inner_args: list[str], tmp_path: Path
) -> None:
    target = str(suite / "noise_blur_chain.json")
    assert run(pytester, *inner_args, "--comfy-update-baselines", target).ret == 0
    chain = json.loads((suite / "noise_blur_chain.json").read_text())
    chain["4"] = {"class_type": "ImageFlip", "inputs": {"image": ["3", 0], "flip_method": "x-axis: vertically"}}
    chain["1"]["inputs"]["color"] = 0x00FF00
    (suite / "noise_blur_chain.json").write_text(json.dumps(chain))
    result = run(pytester, *inner_args, target)
    assert result.ret == 1, result.stdout.str()
    kinds = {t["failure_kind"] for t in read_report(tmp_path / "results")["tests"]}
    assert kinds == {"regression"}
