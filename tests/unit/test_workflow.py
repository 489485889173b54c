from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from comfytest.errors import PatchError, WorkflowError
from comfytest.workflows.preflight import model_references, preflight, required_classes
from comfytest.workflows.workflow import (
    Workflow,
    apply_patches,
    content_name,
    is_workflow_file,
    load_workflow,
    parse_workflow,
    pin_seeds,
    rewrite_inputs,
    seed_inputs,
    select,
)

DATA = Path(__file__).parent.parent / "data"
WORKFLOWS = DATA / "workflows"


@pytest.fixture(scope="module")
def object_info() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "object_info.json").read_text())
    return data


@pytest.fixture
def txt2img() -> Workflow:
    return load_workflow(WORKFLOWS / "tiny_txt2img.json")


def write(tmp_path: Path, text: str, name: str = "wf.json") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- loading -------------------------------------------------------------------------------


def test_load_keeps_nodes_titles_and_meta(txt2img: Workflow) -> None:
    assert list(txt2img.nodes) == ["1", "2", "3", "4", "5", "6", "7"]
    assert txt2img.nodes["2"].title == "Positive"
    assert txt2img.nodes["5"].inputs["positive"] == ["2", 0]
    prompt = txt2img.to_prompt()
    assert prompt["2"]["_meta"] == {"title": "Positive"}
    assert prompt == json.loads((WORKFLOWS / "tiny_txt2img.json").read_text())


def test_to_prompt_is_a_fresh_copy(txt2img: Workflow) -> None:
    prompt = txt2img.to_prompt()
    prompt["5"]["inputs"]["positive"][0] = "3"
    prompt["5"]["inputs"]["seed"] = 1
    assert txt2img.nodes["5"].inputs["positive"] == ["2", 0]
    assert txt2img.to_prompt()["5"]["inputs"]["seed"] == 42


def test_nodes_are_read_only(txt2img: Workflow) -> None:
    with pytest.raises(TypeError):
        txt2img.nodes["5"].inputs["seed"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        txt2img.nodes["9"] = txt2img.nodes["5"]  # type: ignore[index]


def test_digest_is_stable_and_changes_with_content(txt2img: Workflow) -> None:
    again = load_workflow(WORKFLOWS / "tiny_txt2img.json")
    assert txt2img.digest() == again.digest()
    assert len(txt2img.digest()) == 64
    patched, _ = apply_patches(txt2img, {"KSampler": {"steps": 5}})
    assert patched.digest() != txt2img.digest()


def test_invalid_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "1": {"class_type": "X",,}\n}')
    with pytest.raises(WorkflowError, match=r"wf\.json:2:27: invalid JSON"):
        load_workflow(path)


@pytest.mark.parametrize("text", ["", "  \n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    with pytest.raises(WorkflowError, match=r"wf\.json: the file is empty"):
        load_workflow(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [("[1, 2]", "expected a JSON object of nodes, found a list"), ("{}", "has no nodes")],
)
def test_not_an_object_or_no_nodes(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(WorkflowError, match=message):
        load_workflow(write(tmp_path, text))


UI_FORMAT = {"last_node_id": 2, "nodes": [{"id": 1, "type": "KSampler"}], "links": [],
             "version": 0.4}


def test_ui_format_explains_export_api(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps(UI_FORMAT))
    with pytest.raises(WorkflowError) as info:
        load_workflow(path)
    assert "UI-format" in str(info.value) and "Export (API)" in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (UI_FORMAT, True),
        ({"1": {"class_type": "KSampler", "inputs": {}}}, True),
        ({"1": {"inputs": {}}}, True),  # broken, but a workflow: reported, not skipped
        ({"name": "x", "dependencies": {"left-pad": "1.0"}}, False),
        ([1, 2], False),
        ({}, False),
    ],
)
def test_is_workflow_file(data: object, expected: bool) -> None:
    assert is_workflow_file(data) is expected


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ({"1": {"inputs": {}}}, "node 1 has no class_type"),
        ({"1": {"class_type": "X", "inputs": []}}, r"node 1 \(X\): 'inputs' must be an object"),
        ({"1": {"class_type": "X"}}, r"'inputs' must be an object, found null"),
        ({"1": 3}, "node 1 is a int"),
        (
            {"1": {"class_type": "X", "inputs": {"a": ["9", 0]}, "_meta": {"title": "T"}}},
            r"node 1 'T' \(X\) input 'a' links to node 9, which is not in the workflow",
        ),
    ],
)
def test_bad_nodes_are_named(nodes: dict[str, Any], message: str) -> None:
    with pytest.raises(WorkflowError, match=message):
        parse_workflow(nodes, Path("w.json"))


# --- seeds ---------------------------------------------------------------------------------


def test_seed_inputs_by_name(txt2img: Workflow) -> None:
    assert seed_inputs(txt2img) == [("5", "seed")]


def test_pin_seeds_returns_new_workflow(txt2img: Workflow) -> None:
    pinned, changes = pin_seeds(txt2img, 7)
    assert pinned.nodes["5"].inputs["seed"] == 7
    assert txt2img.nodes["5"].inputs["seed"] == 42
    assert [(c.node_id, c.class_type, c.input, c.old, c.new) for c in changes] == [
        ("5", "KSampler", "seed", 42, 7)
    ]


def test_custom_int_seed_found_via_object_info(object_info: dict[str, Any]) -> None:
    info = copy.deepcopy(object_info)
    info["MySampler"] = {"input": {"required": {
        "variation_seed": ["INT", {"default": 0}], "seed_mode": [["fixed", "random"]],
        "noise_seed": ["INT", {}]}}}
    info["Other"] = {"input": {"required": {"seed": [["a", "b"]]}}}
    wf = parse_workflow({
        "1": {"class_type": "MySampler",
              "inputs": {"variation_seed": 3, "seed_mode": "fixed", "noise_seed": ["2", 0]}},
        "2": {"class_type": "RandomNoise", "inputs": {"noise_seed": 5}},
        "3": {"class_type": "LatentBatchSeedBehavior", "inputs": {"seed_behavior": "fixed"}},
        "4": {"class_type": "Other", "inputs": {"seed": "a"}},  # a combo named seed: no seed
    })
    assert seed_inputs(wf, info) == [("1", "variation_seed"), ("2", "noise_seed")]
    # without object_info: by name only
    assert seed_inputs(wf, None) == [("2", "noise_seed"), ("4", "seed")]
    pinned, changes = pin_seeds(wf, 11, info)
    assert pinned.nodes["1"].inputs["variation_seed"] == 11
    assert pinned.nodes["1"].inputs["noise_seed"] == ["2", 0]  # links are left alone
    assert len(changes) == 2


# --- selectors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "ids"),
    [
        ("5", ("5",)),
        ("#5", ("5",)),
        ("id:5", ("5",)),
        ("KSampler", ("5",)),
        ("class:CLIPTextEncode", ("2", "3")),
        ("CLIPTextEncode", ("2", "3")),
        ("title:Positive", ("2",)),
        ("positive", ("2",)),
        ("negative", ("3",)),
        ("role:latent_image", ("4",)),
        ("KSampler.positive", ("2",)),
        ("KSampler.model", ("1",)),
        ("VAEDecode.samples", ("5",)),
    ],
)
def test_selectors(txt2img: Workflow, selector: str, ids: tuple[str, ...]) -> None:
    assert select(txt2img, selector, one=False) == ids


def test_role_through_cfg_guider() -> None:
    wf = parse_workflow({
        "1": {"class_type": "CLIPTextEncode", "inputs": {"text": "a"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "b"}},
        "3": {"class_type": "CFGGuider", "inputs": {"positive": ["1", 0], "negative": ["2", 0]}},
    })
    assert select(wf, "positive", one=True) == ("1",)
    assert select(wf, "CFGGuider.negative", one=True) == ("2",)


def test_no_match_lists_candidates(txt2img: Workflow) -> None:
    with pytest.raises(PatchError) as info:
        select(txt2img, "title:Postive", one=True)
    text = str(info.value)
    assert "selector 'title:Postive' matches no node" in text
    assert "2 'Positive' (CLIPTextEncode)" in text and "5 'KSampler' (KSampler)" in text


def test_several_when_one_meant(txt2img: Workflow) -> None:
    with pytest.raises(PatchError) as info:
        select(txt2img, "CLIPTextEncode", one=True)
    text = str(info.value)
    assert "matches 2 nodes, expected one" in text
    assert "2 'Positive' (CLIPTextEncode)" in text and "3 'Negative'" in text
    assert "'#<id>'" in text and "'all:CLIPTextEncode'" in text


# --- patches -------------------------------------------------------------------------------


def test_patches_do_not_mutate_source(txt2img: Workflow, object_info: dict[str, Any]) -> None:
    before = txt2img.to_prompt()
    patched, applied = apply_patches(
        txt2img, {"KSampler": {"steps": 2, "cfg": 1.0}, "positive": {"text": "a red cube"}},
        object_info,
    )
    assert txt2img.to_prompt() == before
    assert patched.nodes["5"].inputs["steps"] == 2
    assert patched.nodes["2"].inputs["text"] == "a red cube"
    assert [(a.node_id, a.input, a.old, a.new) for a in applied] == [
        ("5", "steps", 4, 2),
        ("5", "cfg", 3.0, 1.0),
        ("2", "text", "a lighthouse on a cliff at sunset", "a red cube"),
    ]


def test_patch_all_prefix(txt2img: Workflow) -> None:
    patched, applied = apply_patches(txt2img, {"all:CLIPTextEncode": {"text": "x"}})
    assert {patched.nodes[i].inputs["text"] for i in ("2", "3")} == {"x"}
    assert len(applied) == 2


def test_patch_over_a_link_replaces_it(txt2img: Workflow) -> None:
    patched, (applied,) = apply_patches(txt2img, {"KSampler": {"negative": ["2", 0]}})
    assert patched.nodes["5"].inputs["negative"] == ["2", 0]
    assert applied.replaced_link and applied.old == ["3", 0]


def test_patch_link_to_missing_node(txt2img: Workflow) -> None:
    with pytest.raises(PatchError, match="to node 99, which is not in the workflow"):
        apply_patches(txt2img, {"KSampler": {"negative": ["99", 0]}})


def test_unknown_input_did_you_mean(txt2img: Workflow, object_info: dict[str, Any]) -> None:
    with pytest.raises(PatchError) as info:
        apply_patches(txt2img, {"KSampler": {"stepz": 3}}, object_info)
    text = str(info.value)
    assert "tiny_txt2img.json" in text
    assert "node 5 'KSampler' (KSampler) has no input 'stepz'" in text
    assert "Did you mean 'steps'?" in text
    assert "Valid inputs: cfg, denoise, latent_image, model" in text


def test_optional_input_from_object_info_is_accepted(object_info: dict[str, Any]) -> None:
    wf = parse_workflow({"1": {"class_type": "CLIPLoader",
                               "inputs": {"clip_name": "a.safetensors", "type": "sd3"}}})
    patched, _ = apply_patches(wf, {"CLIPLoader": {"device": "cpu"}}, object_info)
    assert patched.nodes["1"].inputs["device"] == "cpu"


def test_unknown_class_checks_the_nodes_own_inputs() -> None:
    wf = parse_workflow({"1": {"class_type": "Mystery", "inputs": {"strength": 1}}})
    apply_patches(wf, {"Mystery": {"strength": 2}})
    with pytest.raises(PatchError, match="Did you mean 'strength'"):
        apply_patches(wf, {"Mystery": {"strenght": 2}})


# --- input files ---------------------------------------------------------------------------


def test_content_name_is_stable() -> None:
    a = content_name(b"png bytes", ".png")
    assert a == content_name(b"png bytes", "png")
    assert a.startswith("comfytest_") and a.endswith(".png") and len(a) == len("comfytest_") + 20
    assert content_name(b"other", ".png") != a


def test_rewrite_inputs() -> None:
    wf = load_workflow(WORKFLOWS / "tiny_img2img.json")
    new = rewrite_inputs(wf, {"title:Load input image": "comfytest_ab.png"})
    assert new.nodes["8"].inputs["image"] == "comfytest_ab.png"
    assert wf.nodes["8"].inputs["image"] == "tiny_input.png"
    assert rewrite_inputs(wf, {"LoadImage": "x.png"}).nodes["8"].inputs["image"] == "x.png"


def test_rewrite_inputs_rejects_non_image_node(txt2img: Workflow) -> None:
    with pytest.raises(PatchError, match=r"5 'KSampler' \(KSampler\) has no file input to upload to"):
        rewrite_inputs(txt2img, {"KSampler": "x.png"})


# --- requirements and preflight ------------------------------------------------------------


def test_required_classes(txt2img: Workflow) -> None:
    assert required_classes(txt2img) == {
        "CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode",
        "SaveImage"}


def test_model_references(object_info: dict[str, Any]) -> None:
    wf = parse_workflow({
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
        "2": {"class_type": "LoraLoader", "inputs": {"lora_name": "l.safetensors",
                                                    "model": ["1", 0], "clip": ["1", 1]}},
        "3": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "c1", "clip_name2": "c2",
                                                        "type": "sdxl"}},
        "4": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x.pth"}},
    })
    refs = {(r.node_id, r.input, r.value, r.folder) for r in model_references(wf, object_info)}
    assert refs == {
        ("1", "ckpt_name", "a.safetensors", "checkpoints"),
        ("2", "lora_name", "l.safetensors", "loras"),
        ("3", "clip_name1", "c1", "text_encoders"),
        ("3", "clip_name2", "c2", "text_encoders"),
        ("4", "model_name", "4x.pth", "upscale_models"),
    }


@pytest.mark.parametrize("name", ["seed_sdxl_txt2img.json", "seed_sdxl_img2img.json"])
def test_preflight_missing_sdxl_checkpoint(name: str, object_info: dict[str, Any]) -> None:
    problems = preflight(load_workflow(WORKFLOWS / name), object_info)
    assert [(p.kind, p.node_id, p.class_type, p.title) for p in problems] == [
        ("missing_model", "4", "CheckpointLoaderSimple", "Load Checkpoint")]
    assert problems[0].message.startswith(
        "sdXL_v10VAEFix.safetensors is not installed: node 4 'Load Checkpoint' "
        "(CheckpointLoaderSimple) needs it in models/checkpoints/ of the ComfyUI server")
    assert name in problems[0].message


def test_preflight_passes_when_model_installed(object_info: dict[str, Any]) -> None:
    info = copy.deepcopy(object_info)
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = [
        "tiny-sd15-random.safetensors"]
    wf = load_workflow(WORKFLOWS / "tiny_img2img.json")  # LoadImage file: checked after upload
    assert preflight(wf, info) == []


def test_preflight_missing_model_suggests_close_name(object_info: dict[str, Any]) -> None:
    info = copy.deepcopy(object_info)
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = [
        "sub/tiny-sd15-random.safetensors"]
    wf = parse_workflow({"1": {"class_type": "CheckpointLoaderSimple",
                               "inputs": {"ckpt_name": "sub\\tiny-sd15-random.safetensors"}}})
    assert preflight(wf, info) == []  # a Windows-style separator still matches
    wf = parse_workflow({"1": {"class_type": "CheckpointLoaderSimple",
                               "inputs": {"ckpt_name": "tiny-sd15-random.safetensors"}}})
    (problem,) = preflight(wf, info)
    assert "did you mean 'sub/tiny-sd15-random.safetensors'?" in problem.message


UNKNOWN_PACK = (
    "a custom node pack that provides TotallyUnknownNode; search the ComfyUI Manager for it"
)


@pytest.mark.parametrize(
    ("class_type", "pack"),
    [
        ("ComfyTestSolidImage", "comfytest's own node pack"),
        ("VHS_VideoCombine", "ComfyUI-VideoHelperSuite"),
        ("IPAdapterAdvanced", "ComfyUI_IPAdapter_plus"),
        ("ImpactWildcardProcessor", "ComfyUI-Impact-Pack"),
        ("SAMLoader", "ComfyUI-Impact-Pack"),
        ("KSampler (Efficient)", "efficiency-nodes-comfyui"),
        ("Seed (rgthree)", "rgthree-comfy"),
        ("CannyEdgePreprocessor", "comfyui_controlnet_aux"),
        ("TotallyUnknownNode", UNKNOWN_PACK),
    ],
)
def test_preflight_missing_node_names_pack(
    class_type: str, pack: str, object_info: dict[str, Any]
) -> None:
    wf = parse_workflow({"7": {"class_type": class_type, "inputs": {},
                               "_meta": {"title": "Mine"}}}, Path("flows/x.json"))
    (problem,) = preflight(wf, object_info)
    assert problem.kind == "missing_node" and problem.node_id == "7"
    assert f"node class {class_type} is not installed" in problem.message
    assert f"node 7 'Mine' ({class_type}) of flows/x.json needs it" in problem.message
    assert pack in problem.message


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"sampler_name": "eulr"},
            "input 'sampler_name' is 'eulr', not one of the server's choices; did you mean 'euler'?",
        ),
        ({"steps": 0}, "input 'steps' is 0, below the minimum 1"),
        ({"denoise": 1.5}, "input 'denoise' is 1.5, above the maximum 1.0"),
    ],
)
def test_preflight_bad_values(
    txt2img: Workflow, object_info: dict[str, Any], inputs: dict[str, Any], message: str
) -> None:
    info = copy.deepcopy(object_info)
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = [
        "tiny-sd15-random.safetensors"]
    patched, _ = apply_patches(txt2img, {"KSampler": inputs})
    (problem,) = preflight(patched, info)
    assert problem.kind == "bad_value" and problem.node_id == "5"
    assert message in problem.message


# -- issue 11: a cycle is named; huge titles are clipped


def test_a_cycle_names_every_link_of_it() -> None:
    data = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8}},
        "2": {"class_type": "ImageInvert", "_meta": {"title": "Flip"}, "inputs": {"image": ["3", 0]}},
        "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0]}},
    }
    with pytest.raises(WorkflowError) as err:
        parse_workflow(data)
    text = str(err.value)
    assert "the links form a cycle" in text
    assert "node 2 'Flip' (ImageInvert) input 'image' → node 3 (ImageBlur) input 'image' → node 2" in text \
        or "node 3 (ImageBlur) input 'image' → node 2 'Flip' (ImageInvert) input 'image' → node 3" in text, text


def test_a_node_linked_to_itself_is_a_cycle() -> None:
    with pytest.raises(WorkflowError, match="cycle: node 1 \\(ImageInvert\\) input 'image' → node 1"):
        parse_workflow({"1": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}}})


def test_huge_titles_are_clipped_in_messages() -> None:
    from comfytest.comfy.diagnostics import describe_node, node_info

    prompt = {"1": {"class_type": "EmptyImage", "_meta": {"title": "T" * 5_000_000}, "inputs": {"width": ["9", 0]}}}
    with pytest.raises(WorkflowError) as err:
        parse_workflow(prompt)
    assert len(str(err.value)) < 400 and "(4999920 more characters)" in str(err.value)
    assert len(describe_node("1", node_info(prompt))) < 200
