"""The baseline lifecycle end to end, through pytester against the real ComfyUI:
missing → created → pass → changed → updated → pass, plus hash-only baselines, corrupt
baseline files, the ``outputs`` list and the end-of-session lists (changes, unused files)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from comfytest.compare.criteria import HASH_BACKSTOP
from tests.integration.lifecycle import NOT_A_PNG, TINY_TXT2IMG, TWO_OUTPUTS, Workspace, text

UPDATE = "--comfy-update-baselines"
TINY_TOML = "tolerance = 2\n\n[cases.base]\nseed = {seed}\n"


@pytest.fixture
def ws(pytester: pytest.Pytester, inner_args: list[str]) -> Workspace:
    return Workspace.create(pytester, inner_args)


def test_tiny_txt2img_walks_the_whole_lifecycle(ws: Workspace) -> None:
    ws.workflow("tiny_txt2img", TINY_TXT2IMG, TINY_TOML.format(seed=42))
    png = ws.case_dir("tiny_txt2img", "base") / "7_0.png"

    # 1. no baseline: fails, says so, keeps the obtained image, writes nothing under baselines/
    missing = ws.run()
    missing.assert_outcomes(failed=1)
    assert f"no baseline yet for tiny_txt2img::base (1 output(s): 7_0); they belong in {png.parent}/" in text(missing)
    assert f"run pytest with {UPDATE} to create the baselines" in text(missing)
    assert ws.report()["tests"][0]["failure_kind"] == "no baseline", "a first run is not a regression"
    assert ws.artefact("tiny_txt2img", "base", "7_0.obtained.png").is_file()
    assert ws.snapshot() == {}
    assert [c["status"] for c in ws.comparisons()] == ["missing"]

    # 2. update: png + hashes.txt (and the trace, issue 23) written, the test passes, the summary lists the new file
    created = ws.run(UPDATE)
    created.assert_outcomes(passed=1)
    assert sorted(ws.snapshot()) == ["tiny_txt2img/base/7_0.png", "tiny_txt2img/base/hashes.txt",
                                     "tiny_txt2img/base/trace.png", "tiny_txt2img/base/trace.txt"]
    created.stdout.fnmatch_lines([
        f"baselines ({UPDATE}): 1 created, 0 updated, 0 unchanged",
        "  created  workflows/tiny_txt2img.json [[]base[]] 7_0: new  *7_0.png",
    ])
    first = ws.snapshot()

    # 3. same seed: passes with distance 0
    ws.run().assert_outcomes(passed=1)
    (same,) = ws.comparisons()
    assert (same["status"], same["distance"], same["max_abs_diff"]) == ("passed", 0, 0)

    # 4. another seed: fails by more than the tolerance, with every artefact, baselines untouched
    ws.settings("tiny_txt2img", TINY_TOML.format(seed=7))
    changed = ws.run()
    changed.assert_outcomes(failed=1)
    (diff,) = ws.comparisons()
    # the baseline's pixels are kept: the hash is a backstop at HASH_BACKSTOP x the tolerance
    assert diff["status"] == "mismatch" and diff["distance"] > diff["tolerance"] == 2 * HASH_BACKSTOP
    assert f"phash distance {diff['distance']} > tolerance {2 * HASH_BACKSTOP} ({HASH_BACKSTOP} × 2" in text(changed)
    assert f"run pytest with {UPDATE} to accept it" in text(changed)
    for name in ("7_0.obtained.png", "7_0.diff.png", "7_0.side_by_side.png"):
        assert ws.artefact("tiny_txt2img", "base", name).is_file(), name
        assert str(ws.artefact("tiny_txt2img", "base", name)) in text(changed)
    assert ws.snapshot() == first

    # 5. update: the change is listed with its distance, and written
    updated = ws.run(UPDATE)
    updated.assert_outcomes(passed=1)
    updated.stdout.fnmatch_lines([
        f"baselines ({UPDATE}): 0 created, 1 updated, 0 unchanged",
        (f"  updated  workflows/tiny_txt2img.json [[]base[]] 7_0: phash distance {diff['distance']} "
        f"(tolerance {2 * HASH_BACKSTOP}, max pixel diff *)  *7_0.png"),
    ])
    second = ws.snapshot()
    assert second["tiny_txt2img/base/7_0.png"][1] != first["tiny_txt2img/base/7_0.png"][1]

    # 6. the new baseline passes (ComfyUI's own PNG, recognised by its image data without being
    # decoded, its thumbnail written all the same); 7. an update with nothing changed rewrites nothing
    ws.run().assert_outcomes(passed=1)
    comp = ws.comparisons()[0]
    assert (comp["distance"], comp["max_abs_diff"], comp["same_source"]) == (0, 0, True)
    assert Path(comp["thumbnail"]).is_file()
    again = ws.run(UPDATE)
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines([f"baselines ({UPDATE}): 0 created, 0 updated, 1 unchanged"])
    assert ws.snapshot() == second


def test_hash_only_keeps_a_hash_line_and_no_image(ws: Workspace) -> None:
    ws.workflow("two", TWO_OUTPUTS)
    ws.run(UPDATE, "--comfy-hash-only").assert_outcomes(passed=1)
    assert sorted(ws.snapshot()) == ["two/default/hashes.txt", "two/default/trace.txt"], "no trace.png either"
    lines = ws.case_dir("two", "default").joinpath("hashes.txt").read_text().splitlines()
    assert [ln.split()[0] for ln in lines] == ["2_0", "4_0"]
    assert all(ln.split()[1].startswith("phash:8:") and "  16x16 RGB  device=cpu  torch=" in ln
               and ln.split()[-2].startswith("colour=lab1:") for ln in lines)
    # the digest of the served PNG's image data: the next run recognises it without decoding
    assert all(re.fullmatch(r"served=sha256:[0-9a-f]{32}", ln.split()[-1]) for ln in lines)

    ws.run("--comfy-hash-only").assert_outcomes(passed=1)
    for comp in ws.comparisons():
        assert (comp["status"], comp["distance"], comp["max_abs_diff"]) == ("passed", 0, None)
        assert comp["baseline"].endswith("hashes.txt")
        assert comp["same_source"] is True, comp


def test_an_undecodable_baseline_image_is_named_and_left_alone(ws: Workspace) -> None:
    ws.workflow("two", TWO_OUTPUTS)
    ws.run(UPDATE).assert_outcomes(passed=1)
    png = ws.case_dir("two", "default") / "2_0.png"
    png.write_bytes(NOT_A_PNG)
    before = ws.snapshot()

    result = ws.run()
    result.assert_outcomes(failed=1)
    assert f"baseline image {png} cannot be decoded" in text(result)
    assert str(ws.artefact("two", "default", "2_0.obtained.png")) in text(result)
    assert ws.snapshot() == before


def test_a_malformed_hash_line_is_named_and_left_alone(ws: Workspace) -> None:
    ws.workflow("two", TWO_OUTPUTS)
    ws.run(UPDATE, "--comfy-hash-only").assert_outcomes(passed=1)
    hashes = ws.case_dir("two", "default") / "hashes.txt"
    hashes.write_text("2_0  phash:8:nothex  16x16 RGB\n")
    before = ws.snapshot()

    result = ws.run("--comfy-hash-only")
    result.assert_outcomes(failed=1)
    assert f"{hashes}:1: malformed line" in text(result)
    assert ws.snapshot() == before


def test_outputs_list_reports_missing_and_extra_output_nodes(ws: Workspace) -> None:
    ws.workflow("two", TWO_OUTPUTS, (
        '[cases.missing]\noutputs = ["title:Save A", "title:Save B", "title:Invert"]\n\n'
        '[cases.extra]\noutputs = ["title:Save A"]\n'))
    result = ws.run(UPDATE)
    result.assert_outcomes(failed=2)
    out = text(result)
    assert "expected output from node 3 'Invert' (ImageInvert), but it produced none" in out
    assert ("outputs not listed in the settings file's `outputs`: node 4 'Save B' (SaveImage) "
            "(add them to `outputs` to compare them)") in out
    # only the listed outputs were checked (and written)
    assert sorted(ws.snapshot()) == [
        "two/extra/2_0.png", "two/extra/hashes.txt",
        "two/missing/2_0.png", "two/missing/4_0.png", "two/missing/hashes.txt"]


#: a removed case's files: its outputs, hash lines and trace (issue 23)
STALE = ("2_0.png", "4_0.png", "hashes.txt", "trace.png", "trace.txt")


def test_baselines_of_a_case_that_no_longer_exists_are_listed_as_unused(ws: Workspace) -> None:
    ws.workflow("two", TWO_OUTPUTS, "[cases.old]\n")
    ws.run(UPDATE).assert_outcomes(passed=1)
    ws.settings("two", "[cases.new]\n")

    result = ws.run(UPDATE)
    result.assert_outcomes(passed=1)
    stale = [str(ws.case_dir("two", "old") / n) for n in STALE]
    result.stdout.fnmatch_lines([f"unused baseline: {p}" for p in stale])
    assert ws.report()["unused_baselines"] == stale


def test_a_run_of_some_files_lists_unused_baselines_only_of_those_workflows(ws: Workspace) -> None:
    ws.workflow("two", TWO_OUTPUTS, "[cases.kept]\n")
    ws.workflow("other", TWO_OUTPUTS, "[cases.fine]\n")
    ws.run(UPDATE).assert_outcomes(passed=2)
    ws.settings("two", "[cases.renamed]\n")
    stale = ws.case_dir("two", "kept")

    only_two = ws.run(UPDATE, "workflows/two.json")
    only_two.assert_outcomes(passed=1)
    assert ws.report()["unused_baselines"] == [str(stale / n) for n in STALE]
    assert "unused baseline: " + str(ws.case_dir("other", "fine")) not in text(only_two), "other.json did not run"

    by_case = ws.run("workflows/two.json::renamed")
    by_case.assert_outcomes(passed=1)
    assert ws.report()["unused_baselines"] == [], "a run narrowed to node ids lists nothing"


def test_unused_baselines_under_xdist_and_with_a_keyword_filter(ws: Workspace) -> None:
    ws.workflow("two", TWO_OUTPUTS, "[cases.old]\n[cases.kept]\n")
    ws.run(UPDATE).assert_outcomes(passed=2)
    ws.settings("two", "[cases.kept]\n[cases.added]\n")
    ws.run(UPDATE, "-k", "added").assert_outcomes(passed=1)
    stale = [str(ws.case_dir("two", "old") / n) for n in STALE]

    ws.run("-n", "2").assert_outcomes(passed=2)
    assert ws.report()["unused_baselines"] == stale, "the controller lists what no worker used"

    ws.run("-n", "2", "-k", "kept").assert_outcomes(passed=1)
    assert ws.report()["unused_baselines"] == [], "-k narrows the run: nothing is called unused"


def test_a_baseline_for_an_output_the_run_did_not_produce_fails(ws: Workspace) -> None:
    ws.workflow("two", TWO_OUTPUTS, "[cases.both]\n")
    ws.run(UPDATE).assert_outcomes(passed=1)
    one_output = {k: v for k, v in TWO_OUTPUTS.items() if k != "4"}  # "Save B" dropped
    ws.workflow("two", one_output)

    result = ws.run()
    result.assert_outcomes(failed=1)
    out = text(result)
    stale = ws.case_dir("two", "both") / "4_0.png"
    assert "missing outputs: node 4 produced 0 output(s) but has baselines for 1; not produced: 4_0" in out
    assert f"baseline: {stale}" in out
    assert f"run pytest with {UPDATE} to delete its baseline" in out
    assert [c["status"] for c in ws.comparisons()] == ["passed", "not_produced"]

    # update mode deletes the stale baseline (file and hash line) and the case passes again
    removed = ws.run(UPDATE)
    removed.assert_outcomes(passed=1)
    assert not stale.exists()
    assert "4_0" not in (ws.case_dir("two", "both") / "hashes.txt").read_text()
    ws.run().assert_outcomes(passed=1)


def test_a_case_that_compared_nothing_fails_unless_its_outputs_are_empty(ws: Workspace) -> None:
    no_output = {"1": TWO_OUTPUTS["1"], "3": {"class_type": "ComfyTestSink", "inputs": {"image": ["1", 0]}}}
    ws.workflow("silent", no_output)
    result = ws.run()
    result.assert_outcomes(failed=1)
    assert "compared nothing: the run produced no image or text output" in text(result)
    assert "set `outputs = []` in the settings file if the case only has to run" in text(result)

    ws.settings("silent", "outputs = []\n")
    ws.run().assert_outcomes(passed=1)


#: EmptyImage (a flat colour; phash sees no structure, so no colour change moves it) → SaveImage
FLAT: dict[str, Any] = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 0x336699}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "flat"}},
}


@pytest.mark.parametrize("hash_only", [False, True], ids=["image", "hash-only"])
def test_a_colour_change_phash_misses_fails_against_a_baseline_from_another_device(ws: Workspace, hash_only: bool) -> None:
    extra = ["--comfy-hash-only"] if hash_only else []
    ws.workflow("flat", FLAT)
    ws.run(UPDATE, *extra).assert_outcomes(passed=1)
    hashes = ws.case_dir("flat", "default") / "hashes.txt"
    line = hashes.read_text()
    assert "device=cpu" in line
    hashes.write_text(line.replace("device=cpu", "device=NVIDIA_L4"))  # as if a GPU runner made it
    swapped = json.loads(json.dumps(FLAT))
    swapped["1"]["inputs"]["color"] = 0x996633  # the same colour with red and blue swapped
    ws.workflow("flat", swapped)
    result = ws.run(*extra)
    result.assert_outcomes(failed=1)
    out = text(result)
    assert "hue turned" in out and "baseline: NVIDIA_L4" in out and "perceptual criteria" in out
    (comp,) = ws.comparisons()
    assert comp["distance"] == 0  # the hash alone passed it, as before this issue
