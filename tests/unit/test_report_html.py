"""The HTML report, checked as rendered by a real headless Chromium (JS run, images decoded).

Chromium comes from ``$COMFYTEST_CHROMIUM`` or the PATH (``apt-get install -y chromium``); the
browser tests skip, saying so, only when no binary exists.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfytest.report.document import new_document, new_record
from comfytest.report.html import render_html
from tests.browser import DomIndex, run_chromium

HOSTILE = '<script>alert("x")</script> & "quotes"'


def png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture
def report_doc(tmp_path: Path) -> dict[str, Any]:
    """Two tests: a mismatch with baseline (relative path), obtained (absolute) and diff, and a
    pass whose obtained image is missing on disk."""
    png(tmp_path / "baselines" / "a" / "9_0.png", (200, 10, 10))
    obtained = png(tmp_path / "results" / "a" / "9_0.obtained.png", (10, 200, 10))
    png(tmp_path / "results" / "a" / "9_0.diff.png", (255, 255, 255), (32, 32))
    mismatch = {
        "output": "9_0", "node_id": "9", "status": "mismatch", "method": "phash",
        "distance": 12, "tolerance": 5, "psnr": 21.5,
        "baseline": "baselines/a/9_0.png", "obtained": str(obtained),
        "diff": "results/a/9_0.diff.png", "side_by_side": None, "message": HOSTILE,
    }
    timing = {
        "queue_wait_ms": 2, "server_total_ms": 461, "client_wall_ms": 480, "status": "success",
        "nodes": [
            {"node_id": "3", "class_type": "KSampler", "title": HOSTILE, "duration_ms": 300,
             "cached": False, "steps": 20, "steps_per_s": 12.5},
            {"node_id": "8", "class_type": "VAEDecode", "title": None, "duration_ms": 150,
             "cached": False, "steps": None, "steps_per_s": None},
            {"node_id": "4", "class_type": "CheckpointLoaderSimple", "title": None,
             "duration_ms": None, "cached": True, "steps": None, "steps_per_s": None},
        ],
    }
    failed = new_record(
        "workflows/a.json::default", workflow="workflows/a.json", case="default",
        outcome="failed", failure_kind="regression", message=HOSTILE, timing=timing,
        comparisons=[mismatch],
        seeds=[{"node_id": "3", "class_type": "KSampler", "input": "seed", "value": 42}],
        patches=[{"node_id": "5", "input": "width", "value": 512}],
    )
    passed = new_record(
        "workflows/b.json::small", workflow="workflows/b.json", case="small",
        comparisons=[{"output": "7_0", "status": "passed", "baseline": "baselines/b/7_0.png",
                      "obtained": "results/b/missing.png"}],
    )
    png(tmp_path / "baselines" / "b" / "7_0.png", (0, 0, 255))
    fingerprint = {"hostname": "ci", "git_commit": None, "server_url": "http://127.0.0.1:8188",
                   "system_stats": {"devices": [{"name": "cuda:0 H100", "vram_total": 1}]}}
    return new_document(fingerprint, [failed, passed], ["baselines/old.png"], created="2025-01-01")


def test_static_markup_is_escaped_and_self_contained(
    tmp_path: Path, report_doc: dict[str, Any]
) -> None:
    markup = render_html(report_doc, tmp_path, images="self-contained")
    dom = DomIndex(markup)
    assert len(dom.find("script")) == 1  # only ours; the hostile title stayed text
    assert HOSTILE in "".join(dom.text)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", markup)
    assert "url(" not in markup and "@import" not in markup
    assert all(e.attrs["src"].startswith("data:image/png;base64,") for e in dom.find("img"))
    assert len(dom.find("img", "artefact")) == 4
    assert [e.attrs["data-role"] for e in dom.find(cls="not-available")] == ["obtained"]


def test_timing_bars_are_proportional_and_mark_cached(
    tmp_path: Path, report_doc: dict[str, Any]
) -> None:
    dom = DomIndex(render_html(report_doc, tmp_path))
    bars = {e.attrs["data-node-id"]: e for e in dom.find(cls="node-bar")}
    assert "width:100.0%" in bars["3"].attrs["style"]
    assert "width:50.0%" in bars["8"].attrs["style"]
    assert "cached" in bars["4"].classes and "width:0.0%" in bars["4"].attrs["style"]
    assert "cached" not in bars["3"].classes


def test_report_renders_in_headless_chromium(
    tmp_path: Path, report_doc: dict[str, Any], chromium: str
) -> None:
    page = tmp_path / "out" / "report.html"
    page.parent.mkdir()
    page.write_text(render_html(report_doc, tmp_path, images="self-contained"), encoding="utf-8")
    dom = DomIndex(run_chromium(chromium, page, tmp_path / "profile"))
    body = dom.one("body")
    assert body.attrs["data-js-test-count"] == "2"  # the inline script ran
    assert body.attrs["data-images-decoded"] == "4"
    assert body.attrs["data-images-loaded"] == "true"  # every embedded PNG decoded
    records = dom.find("section", "test-record")
    assert [r.attrs["data-nodeid"] for r in records] == [
        "workflows/a.json::default", "workflows/b.json::small",
    ]
    assert [r.attrs["data-outcome"] for r in records] == ["failed", "passed"]
    assert len(dom.find("script")) == 1
    urls = [e.attrs.get(a, "") for e in dom.elements for a in ("src", "href")]
    assert not [u for u in urls if u and not u.startswith(("data:", "#"))]


def test_broken_image_is_reported_by_the_page(
    tmp_path: Path, report_doc: dict[str, Any], chromium: str
) -> None:
    (tmp_path / "baselines" / "b" / "7_0.png").write_bytes(b"not a png")
    page = tmp_path / "report.html"
    page.write_text(render_html(report_doc, tmp_path), encoding="utf-8")
    body = DomIndex(run_chromium(chromium, page, tmp_path / "profile")).one("body")
    assert body.attrs["data-images-loaded"] == "false"
    assert body.attrs["data-images-decoded"] == "3"


def test_overview_rows_carry_the_tests_server_time_and_peak_memory_once(tmp_path: Path, report_doc: dict[str, Any]) -> None:
    failed = report_doc["tests"][0]
    failed["comparisons"].append({**failed["comparisons"][0], "output": "9_1"})
    failed["memory"] = {"samples": 3, "device_type": "cpu", "rss_idle_bytes": 400 * 2**20,
                        "rss_peak_bytes": 900 * 2**20}
    markup = render_html(report_doc, tmp_path)
    table = re.search(r'<table class="overview">(.*?)</table>', markup, re.S)
    assert table is not None

    def cells(row: str, tag: str) -> list[str]:
        return [re.sub(r"<[^>]+>", "", c) for c in re.findall(rf"<{tag}[^>]*>(.*?)</{tag}>", row, re.S)]

    assert cells(table.group(1), "th")[-2:] == ["server ms", "peak memory"]
    rows = [cells(r, "td") for r in re.findall(r'<tr class="(?:failed|passed)">(.*?)</tr>', table.group(1), re.S)]
    first, second = rows[0], rows[1]
    assert (first[1], second[1]) == ("9_0", "9_1")  # two outputs of the failed test
    assert first[-2:] == ["461", "900 MiB RSS (+500 MiB)"] and second[-2:] == ["", ""]


def test_overview_table_leads_failures_first_with_rounded_metrics_and_text_outputs(
    tmp_path: Path, report_doc: dict[str, Any],
) -> None:
    text_pass = new_record(
        "workflows/0.json::text", workflow="workflows/0.json", case="text",
        comparisons=[{"output": "1_0", "status": "passed", "text": "2730.6666666666665",
                      "baseline_text": "2730.6666666666665", "mean_abs_diff": None}],
    )
    report_doc["tests"].insert(0, text_pass)
    report_doc["tests"][1]["comparisons"][0]["mean_abs_diff"] = 0.123456789
    markup = render_html(report_doc, tmp_path)
    dom = DomIndex(markup)
    rows = [e for e in dom.find("tr") if e.classes & {"failed", "passed"}]
    assert rows[0].classes == {"failed"}, "failures first"
    assert markup.index('class="overview"') < markup.index('class="test-record"')
    assert "0.123" in markup and "0.123456789" not in markup
    (obtained,) = [e for e in dom.find("pre", "text-output")]
    assert "2730.6666666666665" in markup and obtained.attrs["data-role"] == "obtained"
    small = [e for e in dom.find("img", "artefact") if e.attrs.get("data-role") == "diff"]
    assert small and small[0].attrs["width"] == "128", "a 32 px diff is shown 4x, crisp"
    assert "image-rendering:pixelated" in markup
    assert markup.count(HOSTILE.replace("<", "&lt;").replace(">", "&gt;")[:20]) >= 1
