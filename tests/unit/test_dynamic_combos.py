"""V3 dynamic combos (``COMFY_DYNAMICCOMBO_V3``, ComfyUI ≥ 0.26), replayed from a real 0.26.0.

Why a replay: CI runs ComfyUI 0.3.75, which declares no dynamic inputs, and can neither fetch nor
run 0.26.0 (no newer ComfyUI installs from PyPI on Python 3.11). ``scripts/record_dynamic_combos.py``
recorded by hand, from a real ComfyUI 0.26.0 with its frontend 1.45.19 in headless Chromium, the
server's ``/object_info`` (trimmed to the classes the templates use) and the frontend's
``graphToPrompt`` output for every template of the pinned ``comfyui-workflow-templates-json``
that uses a class declaring a dynamic combo and whose classes 0.26.0 all has. Here the Python
converter, preflight and patches run against those recordings.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

import pytest

from comfytest.errors import PatchError
from comfytest.workflows.casefile import load_cases
from comfytest.workflows.conversion import prompt_differences
from comfytest.workflows.dynamic import combo_keys, is_dynamic_combo, live_inputs
from comfytest.workflows.preflight import preflight
from comfytest.workflows.uiformat import convert_ui_workflow, node_origins
from comfytest.workflows.workflow import Workflow, apply_patches, parse_workflow, valid_inputs

DATA = Path(__file__).parent.parent / "data" / "dynamic_combos"
RECORDED = json.loads((DATA / "frontend_prompts.json").read_text(encoding="utf-8"))
INFO: dict[str, Any] = json.loads((DATA / "object_info.json").read_text(encoding="utf-8"))["classes"]
OLD_INFO: dict[str, Any] = json.loads((DATA.parent / "object_info.json").read_text(encoding="utf-8"))

#: template → the inputs where the Python converter differs from the 0.26.0 frontend, each
#: explained in docs/conversion.md ("V3 dynamic combos"). A new difference fails, and so does a
#: listed one that went away.
KNOWN_DIFFERENCES: dict[str, set[str]] = {}
NO_WARNINGS = pytest.mark.filterwarnings("ignore::comfytest.workflows.uiformat.ConversionWarning")


def template(name: str) -> Any:
    try:
        root = importlib.resources.files("comfyui_workflow_templates_json") / "templates"
    except ModuleNotFoundError:
        pytest.skip("comfyui-workflow-templates-json is not installed (pip install -e '.[dev]')")
    return json.loads((root / name).read_text(encoding="utf-8"))


def test_the_recording_is_of_0_26_and_holds_the_dynamic_combo_templates() -> None:
    assert RECORDED["server"].startswith("ComfyUI 0.26.0 (frontend 1.45.19")
    assert len(RECORDED["prompts"]) == 10
    resize = INFO["ResizeImageMaskNode"]["input"]["required"]["resize_type"]
    assert is_dynamic_combo(resize)
    assert "scale dimensions" in combo_keys(resize)


@NO_WARNINGS
@pytest.mark.parametrize("name", sorted(RECORDED["prompts"]))
def test_python_converter_matches_the_0_26_frontend(name: str) -> None:
    python = convert_ui_workflow(template(name), INFO, Path(name)).to_prompt()
    differences = set(prompt_differences(RECORDED["prompts"][name], python))
    assert differences == KNOWN_DIFFERENCES.get(name, set())


@NO_WARNINGS
def test_the_recorded_prompts_pass_preflight_and_use_sub_inputs() -> None:
    subs = 0
    for name, prompt in RECORDED["prompts"].items():
        wf = parse_workflow(prompt, Path(name))
        problems = [p for p in preflight(wf, INFO) if p.kind in ("bad_option", "bad_input", "bad_type")]
        assert problems == [], name
        subs += sum("." in k for node in wf.nodes.values() for k in node.inputs)
    assert subs > 10


# --- preflight and patches on a ResizeImageMaskNode ----------------------------------------


def resize(**inputs: Any) -> Workflow:
    values = {"resize_type": "scale dimensions", "resize_type.width": 512, "resize_type.height": 384,
              "resize_type.crop": "center", "scale_method": "area", **inputs}
    values = {k: v for k, v in values.items() if v is not None}
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
              "2": {"class_type": "ResizeImageMaskNode", "inputs": {"input": ["1", 0], **values},
                    "_meta": {"title": "Resize"}}}
    return parse_workflow(prompt, Path("r.json"))


def problems(wf: Workflow) -> list[tuple[str, str]]:
    return [(p.kind, p.message) for p in preflight(wf, INFO) if p.node_id == "2"]


def test_live_inputs_follow_the_chosen_option() -> None:
    live = live_inputs(INFO, "ResizeImageMaskNode", {"resize_type": "scale dimensions"})
    assert [n for n in live if n.startswith("resize_type.")] == ["resize_type.width", "resize_type.height", "resize_type.crop"]
    assert live["resize_type.width"].combo == "resize_type" and live["resize_type.width"].option == "scale dimensions"
    other = live_inputs(INFO, "ResizeImageMaskNode", {"resize_type": "scale by multiplier"})
    assert [n for n in other if n.startswith("resize_type.")] == ["resize_type.multiplier"]


def test_a_valid_dynamic_combo_passes_preflight() -> None:
    assert problems(resize()) == []


def test_an_option_the_server_lacks_is_named_with_the_valid_ones() -> None:
    ((kind, message),) = problems(resize(**{"resize_type": "scale dimension"}))
    assert kind == "bad_option"
    assert message.startswith("node 2 'Resize' (ResizeImageMaskNode) of r.json: input 'resize_type' is "
                              "'scale dimension', not one of the options this server's ResizeImageMaskNode declares: "
                              "'scale dimensions', 'scale by multiplier', 'scale longer dimension'")
    assert "did you mean 'scale dimensions'?" in message


def test_sub_input_values_are_checked_like_plain_inputs() -> None:
    found = problems(resize(**{"resize_type.width": -5, "resize_type.crop": "sideways"}))
    assert [kind for kind, _ in found] == ["bad_value", "bad_value"]
    messages = [m for _, m in found]
    assert any("input 'resize_type.width' is -5, below the minimum 0" in m for m in messages)
    assert any("input 'resize_type.crop' is 'sideways', not one of the server's choices" in m for m in messages)
    ((kind, message),) = problems(resize(**{"resize_type.height": "tall"}))
    assert kind == "bad_type" and "input 'resize_type.height' is 'tall', not a number, but the server takes INT" in message


def test_a_sub_input_of_another_option_is_named_with_its_option() -> None:
    ((kind, message),) = problems(resize(**{"resize_type.multiplier": 2.0}))
    assert kind == "bad_input"
    assert ("input 'resize_type.multiplier' is not an input of option 'scale dimensions' of 'resize_type' (its "
            "inputs: resize_type.width, resize_type.height, resize_type.crop); 'multiplier' belongs to option "
            "'scale by multiplier': set 'resize_type' to it, or remove the input") in message


def test_a_missing_required_sub_input_is_named() -> None:
    ((kind, message),) = problems(resize(**{"resize_type.height": None}))
    assert kind == "bad_input"
    assert "input 'resize_type.height' is missing: option 'scale dimensions' of 'resize_type' needs it (INT)" in message


def test_the_0_3_75_server_says_it_is_too_old() -> None:
    doc = template("video_ltx2_canny_to_video.json")
    wf = convert_ui_workflow(doc, OLD_INFO, Path("t.json"))
    found = [p.message for p in preflight(wf, OLD_INFO, node_origins(doc), "0.3.75") if "ResizeImageMaskNode" in p.message]
    assert found and all("(it uses V3 dynamic inputs such as 'resize_type.width', 'resize_type.height', which "
                         "ComfyUI 0.3.75 does not declare: they need a newer ComfyUI)" in m for m in found)


def test_patches_set_sub_inputs_of_the_chosen_option() -> None:
    wf = resize()
    assert "resize_type.width" in valid_inputs(INFO, wf.nodes["2"])
    assert "resize_type.multiplier" not in valid_inputs(INFO, wf.nodes["2"])
    patched, (applied,) = apply_patches(wf, {"ResizeImageMaskNode": {"resize_type.width": 640}}, INFO)
    assert patched.nodes["2"].inputs["resize_type.width"] == 640
    assert (applied.input, applied.old, applied.new) == ("resize_type.width", 512, 640)


def test_a_patch_of_a_sub_input_the_option_lacks_says_which_option_has_it() -> None:
    with pytest.raises(PatchError) as info:
        apply_patches(resize(), {"ResizeImageMaskNode": {"resize_type.multiplier": 2.0}}, INFO)
    assert str(info.value) == (
        "r.json: patch 'ResizeImageMaskNode': node 2 'Resize' (ResizeImageMaskNode) has no input "
        "'resize_type.multiplier': option 'scale dimensions' of its dynamic combo 'resize_type' takes "
        "resize_type.width, resize_type.height, resize_type.crop; 'multiplier' belongs to option "
        "'scale by multiplier': set { \"resize_type\" = 'scale by multiplier', \"resize_type.multiplier\" = ... } "
        "in the same patch")


def test_a_patch_that_changes_the_option_swaps_the_sub_inputs() -> None:
    patched, _ = apply_patches(resize(), {"ResizeImageMaskNode": {"resize_type": "scale by multiplier",
                                                                  "resize_type.multiplier": 2.0}}, INFO)
    inputs = patched.nodes["2"].inputs
    assert {k: v for k, v in inputs.items() if k.startswith("resize_type")} == {
        "resize_type": "scale by multiplier", "resize_type.multiplier": 2.0}
    longer, _ = apply_patches(resize(), {"ResizeImageMaskNode": {"resize_type": "scale longer dimension"}}, INFO)
    assert longer.nodes["2"].inputs["resize_type.longer_size"] == 512  # the option's default, as in ComfyUI
    assert problems(longer) == []


def test_matrix_keys_reach_dynamic_combos_and_their_sub_inputs(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('[cases.sizes]\nmatrix = { "ResizeImageMaskNode.resize_type.width" = [256, 640] }\n'
                    '[cases.modes]\nmatrix = { "ResizeImageMaskNode.resize_type" = ["scale longer dimension"] }\n')
    small, _, modes = load_cases(path, resize())
    assert small.id == "sizes[256]"
    assert {k: dict(v) for k, v in small.patches.items()} == {"ResizeImageMaskNode": {"resize_type.width": 256}}
    patched, _ = apply_patches(resize(), modes.patches, INFO)
    assert patched.nodes["2"].inputs["resize_type.longer_size"] == 512
