"""The trace of intermediate outputs (issue 23): taps on a copy of a prompt, the trace file,
and the walk that names the first node that changed (pure; the server side is in
tests/integration/test_trace.py)."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pytest
import torch
from PIL import Image

from comfytest.comfy.trace import TAP_CLASS, TapUnavailable, read_fingerprints, tapped_prompt
from comfytest.compare.trace import Trace, build_trace, first_change, picture_sheet, read_trace, traces_match
from comfytest.nodepack import ComfyTestTap, fingerprint, noise_pixels, phash_grey

INFO: dict[str, Any] = {
    "Load": {"output": ["IMAGE"], "input": {"required": {"image": [["a.png"], {"image_upload": True}]}}},
    "Blur": {"output": ["IMAGE"]}, "Tint": {"output": ["IMAGE"]}, "Split": {"output": ["IMAGE", "MASK"]},
    "Save": {"output": [], "output_node": True}, "Unused": {"output": ["IMAGE"]}, TAP_CLASS: {"output": []},
}
PROMPT: dict[str, Any] = {
    "1": {"class_type": "Load", "inputs": {"image": "a.png"}, "_meta": {"title": "Photo"}},
    "2": {"class_type": "Blur", "inputs": {"image": ["1", 0], "amount": 2}},
    "3": {"class_type": "Tint", "inputs": {"image": ["2", 0]}, "_meta": {"title": "Warm tint"}},
    "4": {"class_type": "Save", "inputs": {"images": ["3", 0]}},
    "7": {"class_type": "Unused", "inputs": {}},
}


def image(value: float, seed: int = 0) -> dict[str, Any]:
    pixels = torch.from_numpy(noise_pixels(32, 32, seed, 1)) * 0.5 + value
    return fingerprint(pixels, "IMAGE")


def trace(values: dict[str, float], prompt: dict[str, Any] = PROMPT) -> Trace:
    tapped = tapped_prompt(prompt, INFO)
    fps = {(n, 0): image(values[n], int(n)) for n, _ in tapped.types}
    return build_trace(prompt, fps, tapped.types, loaders={"1"})


BASE = {"1": 0.1, "2": 0.2, "3": 0.3}


def test_taps_go_on_a_copy_one_per_output_of_every_node_that_runs() -> None:
    original = copy.deepcopy(PROMPT)
    tapped = tapped_prompt(PROMPT, INFO)
    assert original == PROMPT, "the measured prompt is untouched"
    assert sorted(tapped.taps.values()) == [("1", 0), ("2", 0), ("3", 0)], "no tap on node 7, which never runs"
    tap = tapped.prompt[next(iter(tapped.taps))]
    assert tap["class_type"] == TAP_CLASS and tap["inputs"]["type"] == "IMAGE"
    outputs = {t: {"comfytest_trace": [{"kind": "value", "value": i}]} for i, t in enumerate(tapped.taps)}
    assert read_fingerprints(tapped, outputs) == {w: {"kind": "value", "value": i} for i, w in enumerate(tapped.taps.values())}
    with pytest.raises(TapUnavailable, match=r"no ComfyTestTap node .* custom_nodes/"):
        tapped_prompt(PROMPT, {k: v for k, v in INFO.items() if k != TAP_CLASS})


def test_the_trace_file_reads_back_as_it_was_written_in_execution_order() -> None:
    made = trace(BASE)
    text = made.to_text()
    assert Trace.from_text(text) == made
    assert [n.node_id for n in made.nodes] == ["1", "2", "3"]
    assert made.node("2") is not None and made.node("2").settings == {"amount": 2}  # type: ignore[union-attr]
    assert len(text.splitlines()) == 4 and len(text) < 3000


def test_a_node_that_changed_is_named_and_the_nodes_after_it_follow() -> None:
    finding = first_change(trace(BASE), trace({**BASE, "2": 0.35, "3": 0.45}))
    assert finding.status == "found"
    assert finding.first is not None and finding.first.node.node_id == "2"
    message = finding.message()
    assert message.startswith("first change at node 2 (Blur): IMAGE output differs (channel mean ")
    assert "its inputs match the baseline — the change is inside this node" in message
    assert "1 later node(s) differ because their inputs did: 3" in message
    assert [c.state for c in finding.chain] == ["same", "origin", "follows"]


def test_a_changed_upload_is_said_to_be_the_file_not_a_node() -> None:
    finding = first_change(trace(BASE), trace({**BASE, "1": 0.4}))
    assert "node 1 'Photo' (Load)" in finding.message()
    assert "it loads a file and its inputs match the baseline — the file it loads (an upload or a model) changed" in finding.message()


def test_changed_settings_say_the_workflow_changed() -> None:
    patched = copy.deepcopy(PROMPT)
    patched["2"]["inputs"]["amount"] = 5
    finding = first_change(trace(BASE), trace({**BASE, "2": 0.4}, patched))
    assert "its settings changed since the baseline (amount: 2 → 5)" in finding.message()


def test_drift_within_tolerance_is_no_change_and_an_exact_change_is_still_pointed_at() -> None:
    base = trace(BASE)
    assert traces_match(base, trace({**BASE, "3": 0.3 + 0.5 / 255}))
    finding = first_change(base, trace({**BASE, "3": 0.3 + 0.5 / 255}))
    assert finding.status == "drift" and finding.first is not None and finding.first.node.node_id == "3"
    assert "numerical drift" in finding.message()
    same = first_change(base, trace(BASE))
    assert same.status == "no_change" and "no intermediate output differs" in same.message()


def test_a_subgraph_node_is_named_by_its_flattened_id_and_title_path() -> None:
    prompt = {"5:2": {"class_type": "Blur", "inputs": {}, "_meta": {"title": "Soften"}},
              "4": {"class_type": "Save", "inputs": {"images": ["5:2", 0]}}}
    info = tapped_prompt(prompt, INFO)
    before = build_trace(prompt, {("5:2", 0): image(0.1)}, info.types)
    after = build_trace(prompt, {("5:2", 0): image(0.4)}, info.types)
    assert "first change at node 5:2 'subgraph 5 › Soften' (Blur)" in first_change(before, after).message()


def test_the_tap_fingerprints_values_tensors_latents_and_lists() -> None:
    tap = ComfyTestTap()
    assert tap.run([7], ["INT"]) == {"ui": {"comfytest_trace": [{"kind": "value", "value": 7}]}}
    assert ComfyTestTap.VALIDATE_INPUTS({"value": "LATENT"}) is True
    latent = tap.run([{"samples": torch.zeros(1, 4, 8, 8)}], ["LATENT"])["ui"]["comfytest_trace"][0]
    assert latent["items"]["samples"]["shape"] == [1, 4, 8, 8] and latent["items"]["samples"]["stats"] == [0, 0, 0, 0]
    mask = fingerprint(torch.ones(2, 16, 16), "MASK")
    assert mask["kind"] == "image" and len(mask["phash"]) == 2 and mask["mean"] == [1.0]
    assert tap.run(["a", "b"], ["STRING"])["ui"]["comfytest_trace"][0]["length"] == 2


def test_the_tap_phash_is_imagehash_phash_on_a_grey_picture() -> None:
    grey = noise_pixels(64, 40, 3, 1)[0, :, :, 0]
    pil = Image.fromarray((grey * 255).round().astype(np.uint8), mode="L")
    assert phash_grey(grey) == str(imagehash.phash(pil))


def test_pictures_go_to_trace_png_and_come_back_for_the_side_by_side(tmp_path: Path) -> None:
    made = trace(BASE)
    assert set(made.pictures) == {"1:0", "2:0", "3:0"}
    assert made.nodes[0].outputs[0].fingerprint["thumb"] == [32, 32], "the text keeps the size, not the picture"
    sheet = picture_sheet(made)
    assert sheet is not None
    (tmp_path / "trace.txt").write_text(made.to_text())
    (tmp_path / "trace.png").write_bytes(sheet)
    back = read_trace(tmp_path / "trace.txt")
    assert back == made and set(back.pictures) == set(made.pictures)  # type: ignore[union-attr]
    for where, data in made.pictures.items():
        with Image.open(io.BytesIO(data)) as a, Image.open(io.BytesIO(back.pictures[where])) as b:  # type: ignore[union-attr]
            assert np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))


# --- the setting: --comfy-trace on|off (ini comfy_trace), and `trace = false` per workflow -----


def test_the_trace_is_on_by_default_and_turned_off_by_option_or_settings_file(tmp_path: Path) -> None:
    from comfytest.errors import ConfigError
    from comfytest.workflows.casefile import load_cases
    from comfytest.workflows.workflow import load_workflow
    from tests.unit.test_settings import settings

    assert settings().trace is True
    assert settings({"trace": "off"}).trace is False and settings(ini={"trace": "off"}).trace is False
    with pytest.raises(ConfigError, match=r"ini comfy_trace: 'maybe' is not one of: on, off"):
        settings(ini={"trace": "maybe"})
    (tmp_path / "wf.json").write_text('{"1": {"class_type": "SaveImage", "inputs": {}}}')
    (tmp_path / "wf.toml").write_text("trace = false\n[cases.big]\n[cases.small]\ntrace = true\n")
    specs = {c.id: c.trace for c in load_cases(tmp_path / "wf.toml", load_workflow(tmp_path / "wf.json"))}
    assert specs == {"big": False, "small": True}
    (tmp_path / "wf.toml").write_text('trace = "no"\n')
    with pytest.raises(ConfigError, match="trace"):
        load_cases(tmp_path / "wf.toml", load_workflow(tmp_path / "wf.json"))


def test_reports_carry_the_first_change_as_junit_properties_and_an_html_chain() -> None:
    from comfytest.report.document import junit_properties
    from comfytest.report.trace import trace_html

    finding = first_change(trace(BASE), trace({**BASE, "2": 0.35, "3": 0.45}))
    record = {"trace": finding.to_json()}
    assert ("comfy_first_change", "node 2 (Blur)") in junit_properties(record)
    assert ("comfy_first_change_node", "2") in junit_properties(record)
    html = trace_html(record)
    assert '<tr class="first-change"><td>node 2 (Blur)</td><td>◀ first change: inside this node</td>' in html
    assert html.count('class="follows"') == 1 and "Warm tint" in html
    assert not [k for k, _ in junit_properties({"trace": {"status": "no_trace"}}) if k.startswith("comfy_first")]


def test_a_tap_never_takes_the_id_of_a_node_of_the_prompt() -> None:
    prompt = {**PROMPT, "comfytest_tap_0": {"class_type": "Blur", "inputs": {"image": ["1", 0]}}}
    prompt["4"] = {"class_type": "Save", "inputs": {"images": ["comfytest_tap_0", 0]}}
    tapped = tapped_prompt(prompt, INFO)
    assert tapped.prompt["comfytest_tap_0"] == prompt["comfytest_tap_0"]
    assert ("comfytest_tap_0", 0) in tapped.taps.values() and len(set(tapped.taps)) == len(tapped.taps)


def test_every_kind_of_fingerprint_reads_back_equal_so_an_unchanged_update_keeps_the_file() -> None:
    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(3, 2)

    class Patcher:  # ComfyUI's ModelPatcher: the module is its ``model``
        model = Model()

    values = {"MODEL": Patcher(), "LATENT": {"samples": torch.ones(1, 4, 8, 8)}, "INT": 3, "*": object(),
              "CONDITIONING": [[torch.zeros(1, 77, 8), {"pooled_output": torch.ones(1, 8)}]]}
    prompt = {str(i): {"class_type": "Blur", "inputs": {}} for i, _ in enumerate(values)}
    types = {(str(i), 0): kind for i, kind in enumerate(values)}
    made = build_trace(prompt, {(str(i), 0): fingerprint(v, k) for i, (k, v) in enumerate(values.items())}, types)
    assert made.nodes[0].outputs[0].fingerprint["object"] == "Patcher" and made.nodes[0].outputs[0].type == "MODEL"
    back = Trace.from_text(made.to_text())
    assert back == made and traces_match(back, made)


def test_two_branches_that_changed_on_their_own_are_both_named_first_in_execution_order() -> None:
    prompt = copy.deepcopy(PROMPT)
    prompt["3"]["inputs"]["image"] = ["1", 0]  # Tint now beside Blur, not after it
    prompt["5"] = {"class_type": "Save", "inputs": {"images": ["2", 0]}}
    finding = first_change(trace(BASE, prompt), trace({**BASE, "2": 0.4, "3": 0.6}, prompt))
    assert [c.node.node_id for c in finding.origins] == ["2", "3"]
    assert finding.message().splitlines()[1].startswith("also changed on their own: node 3 'Warm tint' (Tint)")
