"""The report document, its JSON storage, merging, text renderers, JUnit and timing compare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfytest.errors import ConfigError
from comfytest.report.compare import (
    TimingChange,
    append_history,
    compare_timings,
    read_history,
    regressions,
)
from comfytest.report.document import (
    SCHEMA,
    collect_fingerprint,
    junit_properties,
    load_report,
    merge_documents,
    new_document,
    new_record,
    redact_url,
    summarize_runs,
    write_json,
)
from comfytest.report.text import render_markdown, render_terminal

Rec = dict[str, Any]

FINGERPRINT: Rec = {
    "comfytest_version": "0.1.0",
    "python_version": "3.11.7",
    "platform": "Linux-x86_64",
    "hostname": "ci-1",
    "git_commit": "abc123",
    "git_dirty": False,
    "server_url": "http://127.0.0.1:8188",
    "system_stats": {
        "system": {"comfyui_version": "0.3.40", "pytorch_version": "2.5.1"},
        "devices": [{"name": "cuda:0 NVIDIA H100", "type": "cuda", "vram_total": 80}],
    },
}


def timing(total: float, *nodes: tuple[str, str, float | None, bool]) -> dict[str, Any]:
    """A timing block; each node is (id, class, ms, cached)."""
    return {
        "queue_wait_ms": 3.0,
        "server_total_ms": total,
        "client_wall_ms": total + 20,
        "status": "success",
        "nodes": [
            {
                "node_id": node_id,
                "class_type": cls,
                "title": "Sampler" if cls == "KSampler" else cls,
                "duration_ms": None if cached else ms,
                "cached": cached,
                "steps": 20 if cls == "KSampler" else None,
                "steps_per_s": 12.5 if cls == "KSampler" and not cached else None,
            }
            for node_id, cls, ms, cached in nodes
        ],
    }


def record(nodeid: str = "wf/a.json::default", total: float = 461.0, **fields: Any) -> Rec:
    base = timing(
        total,
        ("3", "KSampler", 300.0, False),
        ("8", "VAEDecode", 90.0, False),
        ("9", "SaveImage", 40.0, False),
        ("4", "CheckpointLoaderSimple", None, True),
        ("6", "CLIPTextEncode", 5.0, False),
    )
    fields.setdefault("timing", base)
    return new_record(nodeid, workflow="wf/a.json", case="default", **fields)


def doc(*records: dict[str, Any], unused: tuple[str, ...] = ()) -> dict[str, Any]:
    return new_document(FINGERPRINT, records, unused, created="2025-01-01T00:00:00+00:00")


# --- document --------------------------------------------------------------------------


def test_summary_counts_outcomes_kinds_and_comparisons() -> None:
    d = doc(
        record("a"),
        record("b", outcome="failed", failure_kind="regression",
               comparisons=[{"output": "9_0", "status": "mismatch"}]),
        record("c", outcome="failed", failure_kind="timing"),
        record("d", outcome="skipped", timing=None),
        record("e", outcome="error", failure_kind="infrastructure", timing=None),
        unused=("baselines/old.png",),
    )
    summary = d["summary"]
    assert d["schema"] == SCHEMA
    assert (summary["total"], summary["passed"], summary["failed"]) == (5, 1, 2)
    assert (summary["skipped"], summary["error"], summary["unused_baselines"]) == (1, 1, 1)
    assert summary["failure_kinds"] == {
        "regression": 1, "infrastructure": 1, "preflight": 0, "timing": 1, "unsupported": 0, "usage": 0, "memory": 0, "no baseline": 0,
    }
    assert summary["comparisons"] == {"mismatch": 1}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://user:secret@gpu-box:8188/api", "http://gpu-box:8188/api"),
        ("https://token@comfy.example", "https://comfy.example"),
        ("http://127.0.0.1:8188", "http://127.0.0.1:8188"),
    ],
)
def test_server_url_never_keeps_credentials(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert new_document({"server_url": url}, [])["fingerprint"]["server_url"] == expected


def test_collect_fingerprint_outside_git(tmp_path: Path) -> None:
    stats = {"system": {"comfyui_version": "0.3.40"}, "devices": []}
    fp = collect_fingerprint("http://u:p@host:1", stats, repo_dir=tmp_path)
    assert (fp["git_commit"], fp["git_dirty"], fp["server_url"]) == (None, None, "http://host:1")
    assert fp["system_stats"] == stats and fp["python_version"].startswith("3.")
    assert set(fp) == set(FINGERPRINT)


def test_new_record_fills_defaults_and_rejects_typos() -> None:
    r = new_record("x::y")
    assert r["outcome"] == "passed" and r["seeds"] == [] and r["timing"] is None
    assert new_record("a")["seeds"] is not new_record("b")["seeds"]
    with pytest.raises(TypeError, match="outcom"):
        new_record("x::y", outcom="failed")


def test_write_and_load_round_trip_atomically(tmp_path: Path) -> None:
    d = doc(record())
    target = write_json(d, tmp_path / "deep" / "report.json")
    assert load_report(target) == d
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]  # no temp left


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "invalid JSON"),
        ('{"schema": "comfytest.report/2", "tests": []}', "comfytest.report/2"),
        ('{"tests": []}', "no \"schema\" key"),
        ("[1, 2]", "not a comfytest report"),
        ('{"schema": "comfytest.report/1", "tests": {}}', "\"tests\" is not a list"),
    ],
)
def test_load_report_names_the_file_on_bad_content(
    tmp_path: Path, content: str, match: str
) -> None:
    bad = tmp_path / "prev.json"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=match) as info:
        load_report(bad)
    assert str(bad) in str(info.value)


def test_load_report_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_report(tmp_path / "absent.json")


def test_merge_sorts_tests_and_intersects_unused_baselines() -> None:
    w1 = new_document(FINGERPRINT, [record("b"), record("d")], ["x.png", "y.png"], created="t5")
    w2 = new_document(FINGERPRINT, [record("c", outcome="failed"), record("a")], ["y.png"],
                      created="t1")
    merged = merge_documents([w1, w2])
    assert [t["nodeid"] for t in merged["tests"]] == ["a", "b", "c", "d"]
    assert merged["unused_baselines"] == ["y.png"]  # x.png was used by worker 2
    assert merged["created"] == "t1"  # the earliest worker start
    assert merged["fingerprint"] == FINGERPRINT
    assert (merged["summary"]["total"], merged["summary"]["failed"]) == (4, 1)


def test_merge_rejects_foreign_documents() -> None:
    with pytest.raises(ConfigError, match="partial report #1"):
        merge_documents([doc(record()), {"schema": "other/1", "tests": []}])
    with pytest.raises(ValueError):
        merge_documents([])


def test_summarize_runs_excludes_cached_and_computes_spread() -> None:
    runs = [
        timing(400.0, ("3", "KSampler", 300.0, False), ("4", "Loader", None, True)),
        timing(500.0, ("3", "KSampler", 320.0, False), ("4", "Loader", 80.0, False)),
        timing(450.0, ("3", "KSampler", 310.0, False)),
    ]
    stats = summarize_runs(runs)
    assert stats is not None
    assert stats["runs"] == 3
    assert stats["server_total_ms"] == {"min": 400.0, "median": 450.0, "max": 500.0,
                                        "spread": pytest.approx(100 / 450)}
    assert stats["nodes"]["3"] == {"min": 300.0, "median": 310.0, "max": 320.0}
    assert stats["nodes"]["4"] == {"min": 80.0, "median": 80.0, "max": 80.0}
    assert summarize_runs([]) is None


# --- text renderers ----------------------------------------------------------------------


def test_terminal_table_shows_numbers_slowest_nodes_and_change() -> None:
    previous = doc(record(total=412.0))
    lines = render_terminal(doc(record(total=461.0)), previous)
    text = "\n".join(lines)
    assert lines[0] == "comfytest: 1 passed"
    assert lines[1].split()[:3] == ["test", "result", "server"]
    row = lines[2]
    assert row.startswith("wf/a.json [default]")
    assert "461" in row and "+12% (412 → 461 ms)" in row
    assert '3 KSampler "Sampler" 300 ms; 8 VAEDecode 90 ms; 9 SaveImage 40 ms' in row
    assert "12.50" in row  # sampler it/s
    assert "CheckpointLoader" not in text  # cached: no duration, never among the slowest
    assert "  1  " in row  # one cached node


def test_terminal_cached_sampler_is_not_a_speed() -> None:
    t = timing(50.0, ("3", "KSampler", None, True))
    row = render_terminal(doc(record(timing=t)))[2]
    assert "12.50" not in row and "it/s" not in row


def test_terminal_lists_failures_and_unused_baselines() -> None:
    d = doc(record(outcome="failed", failure_kind="regression", timing=None), unused=("old.png",))
    lines = render_terminal(d)
    assert lines[0] == "comfytest: 1 failed (1 regression); 1 unused baseline(s)"
    assert "failed (regression)" in lines[2]
    assert lines[-1] == "unused baseline: old.png"


def test_markdown_has_summary_table_and_folded_failures() -> None:
    failing = record("wf/b.json::x", outcome="failed", failure_kind="regression",
                     message="output 9_0 differs: distance 12 > 5\n```oops```")
    failing["workflow"] = "wf/b|pipe.json"
    md = render_markdown(doc(record(), failing), doc(record(total=412.0)))
    assert md.startswith("### comfytest: 1 passed, 1 failed (1 regression)\n")
    assert "| test | result | server ms | change | it/s | cached | peak memory | slowest nodes |" in md
    assert "+12% (412 → 461 ms)" in md
    assert "wf/b\\|pipe.json" in md  # a pipe cannot break the table
    assert "<details>" in md and "<summary>1 failure(s)</summary>" in md
    assert "````\noutput 9_0 differs: distance 12 > 5\n```oops```\n````" in md


def test_markdown_without_failures_has_no_details() -> None:
    assert "<details>" not in render_markdown(doc(record()))


# --- JUnit ------------------------------------------------------------------------------


def test_junit_properties_hold_timings_and_distances() -> None:
    r = record(
        outcome="failed", failure_kind="regression",
        comparisons=[{"output": "9_0", "status": "mismatch", "distance": 12},
                     {"output": "9_1", "status": "passed", "distance": 0.03125}],
        stats={"runs": 3, "nodes": {},
               "server_total_ms": {"min": 450, "median": 461.5, "max": 470}},
    )
    props = dict(junit_properties(r))
    assert props["comfy_server_total_ms"] == "461"
    assert props["comfy_queue_wait_ms"] == "3"
    assert props["comfy_node_3_ms"] == "300"
    assert "comfy_node_4_ms" not in props  # cached
    assert props["comfy_distance_9_0"] == "12"
    assert props["comfy_distance_9_1"] == "0.03125"
    assert props["comfy_runs"] == "3"
    assert props["comfy_server_total_ms_median"] == "461.50"
    assert props["comfy_failure_kind"] == "regression"
    assert all(isinstance(v, str) for _, v in junit_properties(r))


def test_junit_properties_of_a_skipped_test_are_empty() -> None:
    assert junit_properties(new_record("x", outcome="skipped")) == []


# --- timing comparison ------------------------------------------------------------------


def by_scope(changes: list[TimingChange]) -> dict[str, TimingChange]:
    return {c.scope: c for c in changes}


def test_compare_flags_slower_total_and_node() -> None:
    slow = timing(700.0, ("3", "KSampler", 560.0, False), ("8", "VAEDecode", 95.0, False))
    fast = timing(400.0, ("3", "KSampler", 300.0, False), ("8", "VAEDecode", 90.0, False))
    changes = by_scope(compare_timings(doc(record(timing=fast)), doc(record(timing=slow))))
    total = changes["total"]
    assert (total.verdict, total.previous_ms, total.current_ms) == ("slower", 400, 700)
    assert total.delta_ms == 300
    assert total.ratio == pytest.approx(1.75)
    assert changes["node 3 KSampler"].verdict == "slower"
    assert changes["node 8 VAEDecode"].verdict == "ok"  # +5 ms is under both thresholds
    assert "slower +75% (400 → 700 ms)" in total.describe()


def test_compare_needs_both_thresholds() -> None:
    # +40% but only +40 ms: under the absolute threshold
    small = compare_timings(doc(record(timing=timing(100.0))), doc(record(timing=timing(140.0))))
    assert by_scope(small)["total"].verdict == "ok"
    # +60 ms but only +6%: under the relative threshold
    big = compare_timings(doc(record(timing=timing(1000.0))), doc(record(timing=timing(1060.0))))
    assert by_scope(big)["total"].verdict == "ok"
    faster = compare_timings(doc(record(timing=timing(1000.0))), doc(record(timing=timing(500.0))))
    assert by_scope(faster)["total"].verdict == "faster"


def stats(low: float, median: float, high: float) -> dict[str, Any]:
    return {"runs": 5, "server_total_ms": {"min": low, "median": median, "max": high, "spread": 0},
            "nodes": {}}


def test_compare_noise_rule_with_repeated_runs() -> None:
    prev = doc(record(stats=stats(380, 400, 520)))
    overlapping = doc(record(stats=stats(480, 600, 700)))  # median +50% but 480 <= 520
    disjoint = doc(record(stats=stats(530, 600, 700)))
    assert by_scope(compare_timings(prev, overlapping))["total"].verdict == "ok"
    assert by_scope(compare_timings(prev, disjoint))["total"].verdict == "slower"
    assert by_scope(compare_timings(prev, disjoint))["total"].previous_ms == 400  # the median


def test_compare_ignores_nodes_below_floor_and_cached_nodes() -> None:
    before = timing(400.0, ("6", "CLIPTextEncode", 2.0, False), ("4", "Loader", 200.0, False))
    after = timing(400.0, ("6", "CLIPTextEncode", 9.0, False), ("4", "Loader", None, True))
    changes = by_scope(compare_timings(doc(record(timing=before)), doc(record(timing=after)),
                                       abs_threshold_ms=1, rel_threshold=0.1))
    assert "node 6 CLIPTextEncode" not in changes  # 2 → 9 ms, both under the 10 ms floor
    assert changes["node 4 Loader"].verdict == "missing"  # cached now: no duration to compare
    assert set(changes) == {"total", "node 4 Loader"}


def test_compare_new_and_missing_tests_and_per_workflow_thresholds() -> None:
    prev = doc(record("gone", total=300.0), record("kept", total=1000.0))
    cur = doc(record("kept", total=1100.0), record("fresh", total=200.0))
    changes = compare_timings(prev, cur, per_workflow={"wf/*.json": (0.05, 20.0)})
    verdicts = {(c.nodeid, c.scope): c.verdict for c in changes}
    assert verdicts[("gone", "total")] == "missing"
    assert verdicts[("fresh", "total")] == "new"
    assert verdicts[("kept", "total")] == "slower"  # +10% only counts under the tighter rule
    assert not any(c.nodeid == "fresh" and c.scope != "total" for c in changes)
    assert [c.nodeid for c in regressions(changes)] == ["kept"]


def test_compare_skips_tests_without_timing() -> None:
    prev = doc(record("a", timing=None, outcome="skipped"))
    assert compare_timings(prev, prev) == []


# --- history ----------------------------------------------------------------------------


def test_append_history_writes_one_line_per_session(tmp_path: Path) -> None:
    path = tmp_path / "hist" / "history.jsonl"
    append_history(doc(record("a", total=400.0), record("s", timing=None)), path)
    append_history(doc(record("a", stats=stats(390, 410, 430))), path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["git_commit"] == "abc123"
    assert first["device"] == "cuda:0 NVIDIA H100"
    assert first["tests"] == {"a": 400.0}
    assert [e["tests"]["a"] for e in read_history(path)] == [400.0, 410.0]


def test_read_history_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('{"tests": {}}\n\nnot json\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"history.jsonl:3"):
        read_history(path)


@pytest.mark.parametrize(("previous", "current", "text"), [
    (0.0, 30.0, "+30.0 ms (0 → 30 ms)"),
    (0.5, 20.4, "+19.9 ms"),
    (20.0, 185000.0, "+184,980.0 ms"),
    (412.0, 461.0, "+12% (412 → 461 ms)"),
])
def test_a_change_from_about_zero_is_shown_in_ms_not_percent(previous: float, current: float, text: str) -> None:
    from comfytest.report.document import format_change

    assert text in format_change(previous, current)


# --- several servers (issue 9)


def test_with_several_servers_every_rendering_names_each_tests_server() -> None:
    from comfytest.report.html import render_html
    from comfytest.report.text import render_markdown, render_terminal

    a = new_record("wf/x.json::a", outcome="passed", server={"url": "http://h:1", "label": "GPU 0", "device": "cuda:0 L4"})
    b = new_record("wf/x.json::b", outcome="passed",
                   server={"url": "http://h:2", "label": "GPU 1", "device": "cuda:0 L4", "moved_from": "http://h:3 (GPU 2)"})
    doc = new_document({}, [a, b], created="t")
    lines = render_terminal(doc)
    assert lines[1].split()[:3] == ["test", "result", "server"]
    assert any("http://h:1 (GPU 0, cuda:0 L4)" in line for line in lines)
    assert any("http://h:2 (GPU 1, cuda:0 L4) [moved from http://h:3 (GPU 2)]" in line for line in lines)
    assert "| test | result | server |" in render_markdown(doc)
    assert "ran on http://h:1 (GPU 0, cuda:0 L4)" in render_html(doc, Path("."))
    assert ("comfy_server", "http://h:1 (GPU 0, cuda:0 L4)") in junit_properties(a)
    one = new_document({}, [a], created="t")
    assert render_terminal(one)[1].split()[:4] == ["test", "result", "server", "ms"], "one server: no column"
