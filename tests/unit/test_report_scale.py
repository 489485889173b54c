"""Reports of big suites stay small (issue 26): thumbnails for passes, linked files, filters, a
markdown summary within GitHub's 1 MiB, and result folders that keep full images of failures only.

The page is checked as rendered by a real headless Chromium (``tests.browser``), with a few
hundred tests; ``benchmarks/bench_scale.py`` measures 1,000 from a real session.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfytest.outputs import FileRef, OutputImage
from comfytest.plugin.resultfiles import keep_results
from comfytest.report.assets import THUMB_PX, Assets, write_thumbnail
from comfytest.report.document import new_document, new_record
from comfytest.report.html import render_html
from comfytest.report.text import MARKDOWN_BUDGET, render_markdown
from tests.browser import DomIndex, run_chromium
from tests.load import loaded


def noise(size: tuple[int, int] = (256, 256), mode: str = "RGB") -> Image.Image:
    return Image.effect_noise(size, 80).convert(mode)


def png(path: Path, image: Image.Image) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return str(path)


TIMING = {"queue_wait_ms": 1, "server_total_ms": 9, "client_wall_ms": 15, "status": "success",
          "nodes": [{"node_id": str(i), "class_type": "ImageAddNoise", "title": None, "duration_ms": 3,
                     "cached": False, "steps": None, "steps_per_s": None} for i in range(3)]}


def passing(index: int, thumbnail: str, baseline: str) -> dict[str, Any]:
    return new_record(
        f"workflows/w{index % 7}.json::c{index}", workflow=f"workflows/w{index % 7}.json", case=f"c{index}",
        timing=TIMING,
        comparisons=[{"kind": "image", "output": "3_0", "status": "passed", "method": "phash", "distance": 0,
                      "tolerance": 2, "baseline": baseline, "obtained": None, "thumbnail": thumbnail,
                      "message": "output 3_0 matches its baseline: phash distance 0 <= 2"}])


def failing(results: Path, baselines: Path, index: int) -> dict[str, Any]:
    folder = results / "workflows" / f"f{index}"
    paths = {role: png(folder / f"3_0.{role}.png", noise()) for role in ("obtained", "diff", "side_by_side")}
    baseline = png(baselines / f"f{index}" / "3_0.png", noise())
    return new_record(
        f"workflows/f.json::f{index}", workflow="workflows/f.json", case=f"f{index}", outcome="failed",
        failure_kind="regression", message="output 3_0 differs", timing=TIMING,
        comparisons=[{"kind": "image", "output": "3_0", "status": "mismatch", "distance": 30, "tolerance": 2,
                      "baseline": baseline, "baseline_copy": png(folder / "3_0.baseline.png", noise()),
                      **paths}])


def suite(tmp_path: Path, passes: int, failures: int) -> tuple[dict[str, Any], Path]:
    """A document of ``passes`` passing tests (one shared thumbnail file) and ``failures``
    failing ones with every artefact, and its results folder."""
    results, baselines = tmp_path / "results", tmp_path / "baselines"
    thumb = str(write_thumbnail(noise(), results / "workflows" / "w", "3_0"))
    baseline = png(baselines / "w" / "3_0.png", noise())
    records = [failing(results, baselines, i) for i in range(failures)]
    records += [passing(i, thumb, baseline) for i in range(passes)]
    return new_document({"hostname": "ci"}, records, [], created="2026-01-01"), results


# --- thumbnails and links ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "I;16"])
def test_thumbnail_is_a_few_kb_of_jpeg_and_leaves_the_image_alone(tmp_path: Path, mode: str) -> None:
    image = noise((512, 256), mode) if mode != "I;16" else Image.new("I;16", (512, 256), 3000)
    path = write_thumbnail(image, tmp_path, "9_0")
    with Image.open(path) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (THUMB_PX, THUMB_PX // 2)
    assert path.name == "9_0.thumb.jpg" and path.stat().st_size < 12_000
    assert image.size == (512, 256)


def test_small_images_get_a_crisp_enlarged_thumbnail(tmp_path: Path) -> None:
    image = Image.new("P", (48, 32), 3)
    with Image.open(write_thumbnail(image, tmp_path, "1_0")) as thumb:
        assert thumb.size == (96, 64)  # twice, whole pixels: the page needs no size of its own


def test_linked_page_refers_to_files_beside_it_and_shows_failures_at_full_size(tmp_path: Path) -> None:
    doc, results = suite(tmp_path, passes=2, failures=1)
    markup = render_html(doc, results)
    assert "data:" not in markup
    dom = DomIndex(markup)
    images = dom.find("img")
    for img in images:  # every reference resolves from the report's folder
        assert (results / img.attrs["src"]).resolve().is_file(), img.attrs["src"]
    thumbs = [i for i in images if i.attrs["data-role"] == "thumbnail"]
    assert len(thumbs) == 2 and all(t.attrs.get("loading") == "lazy" for t in thumbs)
    assert all(not t.attrs["src"].startswith("/") for t in thumbs)
    failure_roles = [i.attrs["data-role"] for i in images if "thumb" not in i.classes]
    assert failure_roles == ["baseline", "obtained", "diff", "side_by_side"]
    assert "baseline.png" in next(i for i in images if i.attrs["data-role"] == "baseline").attrs["src"], \
        "the failure's baseline is the copy in the results folder"
    assert len([f for f in dom.find("figure") if "full" in f.classes]) == 4
    links = [a.attrs["href"] for a in dom.find("a") if a.attrs.get("href", "").endswith(".png")]
    assert links and all((results / href).resolve().is_file() for href in links), "thumbnail → full image"


def test_self_contained_page_embeds_thumbnails_not_full_passing_images(tmp_path: Path) -> None:
    doc, results = suite(tmp_path, passes=3, failures=0)
    markup = render_html(doc, results, images="self-contained")
    srcs = [i.attrs["src"] for i in DomIndex(markup).find("img")]
    assert len(srcs) == 3 and all(s.startswith("data:image/jpeg;base64,") for s in srcs)
    assert len(markup) < 3 * 12_000 + 20_000


def test_assets_refuse_unknown_modes_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="linked, self-contained"):
        render_html(new_document({}, [], []), tmp_path, images="inline")
    assert Assets(tmp_path).src("nowhere.png") is None
    assert Assets(tmp_path, embed=True).src("nowhere.png") is None


# --- a page for a thousand tests ----------------------------------------------------------------


def test_a_thousand_passing_tests_make_a_page_of_a_few_kb_each(tmp_path: Path) -> None:
    doc, results = suite(tmp_path, passes=1000, failures=2)
    started = time.perf_counter()
    markup = render_html(doc, results)
    assert time.perf_counter() - started < loaded(10.0)
    assert len(markup.encode()) < 6_000 * 1002, f"{len(markup) / 1002:.0f} bytes per test"
    assert len(markup.encode()) < 10 * 2**20


def test_big_linked_page_opens_in_chromium_with_its_images(tmp_path: Path, chromium: str) -> None:
    doc, results = suite(tmp_path, passes=300, failures=2)
    page = results / "report.html"
    page.write_text(render_html(doc, results), encoding="utf-8")
    started = time.perf_counter()
    body = DomIndex(run_chromium(chromium, page, tmp_path / "profile")).one("body")
    assert time.perf_counter() - started < loaded(30.0)
    assert body.attrs["data-js-test-count"] == "302" and body.attrs["data-shown"] == "302"
    assert body.attrs["data-images-loaded"] == "true"  # the failures' full images and the thumbnails in view
    assert int(body.attrs["data-images-decoded"]) >= 2 * 4


def test_filters_from_the_address_show_only_what_matches(tmp_path: Path, chromium: str) -> None:
    doc, results = suite(tmp_path, passes=20, failures=3)
    page = results / "report.html"
    page.write_text(render_html(doc, results), encoding="utf-8")
    dom = DomIndex(run_chromium(chromium, page, tmp_path / "p1", fragment="outcome=failed"))
    assert dom.one("body").attrs["data-shown"] == "3"
    hidden = [s for s in dom.find("section", "test-record") if "filtered" in s.classes]
    assert len(hidden) == 20 and all(s.attrs["data-outcome"] == "passed" for s in hidden)
    rows = [t for t in dom.find("tbody") if "data-workflow" in t.attrs and "filtered" not in t.classes]
    assert [t.attrs["data-outcome"] for t in rows] == ["failed"] * 3, "the overview is filtered too"
    dom = DomIndex(run_chromium(chromium, page, tmp_path / "p2", fragment="workflow=workflows/w3.json&kind=image"))
    assert dom.one("body").attrs["data-shown"] == str(sum(1 for i in range(20) if i % 7 == 3))
    options = {e.attrs["value"] for e in dom.find("option")}
    assert {"passed", "failed", "workflows/f.json", "workflows/w0.json", "image"} <= options


# --- the markdown summary -----------------------------------------------------------------------


def test_markdown_lists_failures_first_and_cuts_passes_to_a_count(tmp_path: Path) -> None:
    doc, _ = suite(tmp_path, passes=1000, failures=2)
    md = render_markdown(doc)
    table = [line for line in md.splitlines() if line.startswith("| workflows/")]
    assert table[0].startswith("| workflows/f.json [f0]") and table[1].startswith("| workflows/f.json [f1]")
    assert "… and 800 more passing test(s)" in md
    assert "… and 800 more output(s) of passing tests" in md  # the "compared" block: 2 + 200 rows
    assert len(md.encode()) < 150_000


def test_markdown_of_many_long_failures_stays_within_githubs_limit() -> None:
    records = [new_record(f"wf/x.json::c{i}", workflow="wf/x.json", case=f"c{i}", outcome="failed",
                          failure_kind="regression", message=f"case {i}\n" + "x" * 50_000) for i in range(400)]
    md = render_markdown(new_document({}, records, []))
    assert len(md.encode()) <= MARKDOWN_BUDGET < 2**20
    assert "more characters in report.json" in md
    assert "more failure(s): every one is in report.html and report.json" in md
    assert md.rstrip().endswith("</details>")
    assert md.count("```\ncase ") == md.count("**wf/x.json [c")  # whole blocks only


# --- what a case leaves in the results folder ----------------------------------------------------


def test_passing_images_leave_a_thumbnail_and_failures_their_baseline(tmp_path: Path) -> None:
    image = OutputImage("3", 0, FileRef("x.png"), noise())
    baseline = png(tmp_path / "baselines" / "4_0.png", noise())
    comps: list[dict[str, Any]] = [
        {"kind": "image", "output": "3_0", "status": "passed", "obtained": None},
        {"kind": "image", "output": "4_0", "status": "mismatch", "baseline": baseline},
        {"kind": "text", "output": "5_0", "status": "passed"},
    ]
    folder = tmp_path / "results" / "wf" / "case"
    keep_results([image], comps, folder, keep_passed=False)
    assert sorted(p.name for p in folder.iterdir()) == ["3_0.thumb.jpg", "4_0.baseline.png"]
    assert comps[0]["thumbnail"] == str(folder / "3_0.thumb.jpg") and comps[0]["obtained"] is None
    assert Path(comps[1]["baseline_copy"]).read_bytes() == Path(baseline).read_bytes()
    assert "thumbnail" not in comps[2]
    keep_results([image], comps[:1], folder, keep_passed=True)
    with Image.open(comps[0]["obtained"]) as kept:
        assert kept.size == (256, 256) and comps[0]["obtained"].endswith("3_0.obtained.png")


def test_passing_media_drop_their_obtained_file_unless_kept(tmp_path: Path) -> None:
    def comparison(name: str) -> dict[str, Any]:
        media = tmp_path / name / "3_0.obtained.flac"
        media.parent.mkdir()
        media.write_bytes(b"fLaC")
        return {"kind": "audio", "output": "3_0", "status": "passed", "media": {"obtained_media": str(media)}}

    dropped, kept = comparison("a"), comparison("b")
    keep_results([], [dropped], tmp_path, keep_passed=False)
    assert dropped["media"]["obtained_media"] is None and not (tmp_path / "a" / "3_0.obtained.flac").exists()
    keep_results([], [kept], tmp_path, keep_passed=True)
    assert Path(kept["media"]["obtained_media"]).is_file()


# --- the options ----------------------------------------------------------------------------------


def test_html_and_keep_passed_options_resolve_and_validate() -> None:
    from comfytest.errors import ConfigError
    from comfytest.plugin.settings import resolve

    def settings(cli: dict[str, Any], ini: dict[str, str]) -> Any:
        return resolve(lambda o: cli.get(o.name), lambda o: ini.get(o.name, ""), Path("/p"), {})

    default = settings({}, {})
    assert (default.html, default.keep_passed) == ("linked", False)
    chosen = settings({"html": "self-contained"}, {"html": "linked", "keep-passed": "true"})
    assert (chosen.html, chosen.keep_passed) == ("self-contained", True)  # the command line wins
    with pytest.raises(ConfigError, match=r"ini comfy_html: 'inline' is not one of: linked, self-contained"):
        settings({}, {"html": "inline"})
