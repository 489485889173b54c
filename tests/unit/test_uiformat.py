"""UI-format → API-format conversion, against a recorded /object_info (no server)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from comfytest.errors import WorkflowError
from comfytest.workflows.uiformat import convert_ui_workflow
from comfytest.workflows.workflow import is_ui_format, load_workflow, select

DATA = Path(__file__).parent.parent / "data"
UI_FILE = DATA / "ui_workflows" / "tiny_txt2img_ui.json"


@pytest.fixture(scope="module")
def object_info() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "object_info.json").read_text())
    return data


@pytest.fixture
def ui() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(UI_FILE.read_text())
    return data


def _node(doc: dict[str, Any], node_id: int) -> dict[str, Any]:
    found: dict[str, Any] = next(n for n in doc["nodes"] if n["id"] == node_id)
    return found


def _add_node(doc: dict[str, Any], node_id: int, type_: str, **fields: Any) -> dict[str, Any]:
    node = {"id": node_id, "type": type_, "mode": 0, "inputs": [], "outputs": [],
            "widgets_values": [], **fields}
    doc["nodes"].append(node)
    return node


def _relink(doc: dict[str, Any], link_id: int, source: int, slot: int = 0) -> None:
    link = next(link for link in doc["links"] if link[0] == link_id)
    link[1], link[2] = source, slot


def test_hand_written_ui_file_converts_to_the_api_export(object_info: dict[str, Any]) -> None:
    data = json.loads(UI_FILE.read_text())
    assert is_ui_format(data)
    converted = convert_ui_workflow(data, object_info, UI_FILE)
    expected = load_workflow(DATA / "workflows" / "tiny_txt2img.json")
    # the Note, the Reroute and the muted preview are gone; "randomize" was skipped
    assert converted.to_prompt() == expected.to_prompt()
    assert converted.source == UI_FILE


def test_without_object_info_only_links_are_converted(ui: dict[str, Any]) -> None:
    skeleton = convert_ui_workflow(ui, None)
    assert skeleton.nodes["5"].inputs == {
        "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
    }
    assert select(skeleton, "positive", one=True) == ("2",)
    assert select(skeleton, "title:Save", one=True) == ("7",)


def test_title_defaults_to_display_name(ui: dict[str, Any], object_info: dict[str, Any]) -> None:
    del _node(ui, 4)["title"]
    wf = convert_ui_workflow(ui, object_info)
    assert wf.nodes["4"].title == object_info["EmptyLatentImage"]["display_name"]


def test_bypassed_node_passes_its_input_through(
    ui: dict[str, Any], object_info: dict[str, Any]
) -> None:
    _add_node(ui, 20, "ImageInvert", mode=4, inputs=[{"name": "image", "type": "IMAGE", "link": 10}])
    ui["links"].append([30, 20, 0, 7, 0, "IMAGE"])
    _node(ui, 7)["inputs"][0]["link"] = 30
    wf = convert_ui_workflow(ui, object_info)
    assert "20" not in wf.nodes
    assert wf.nodes["7"].inputs["images"] == ["6", 0]


def test_input_fed_by_a_muted_node_is_dropped(
    ui: dict[str, Any], object_info: dict[str, Any]
) -> None:
    _node(ui, 2)["mode"] = 2
    wf = convert_ui_workflow(ui, object_info)
    assert "2" not in wf.nodes
    assert "positive" not in wf.nodes["5"].inputs  # the server then reports it missing


def test_primitive_node_value_is_written_into_the_input(
    ui: dict[str, Any], object_info: dict[str, Any]
) -> None:
    _add_node(ui, 21, "PrimitiveNode", widgets_values=[1234, "fixed"],
              outputs=[{"name": "INT", "type": "INT", "links": [31]}])
    ui["links"].append([31, 21, 0, 5, 4, "INT"])
    _node(ui, 5)["inputs"].append({"name": "seed", "type": "INT", "link": 31,
                                   "widget": {"name": "seed"}})
    wf = convert_ui_workflow(ui, object_info)
    assert wf.nodes["5"].inputs["seed"] == 1234
    assert wf.nodes["5"].inputs["steps"] == 4  # the widget values still line up


def test_widget_turned_into_a_linked_input_takes_the_link(
    ui: dict[str, Any], object_info: dict[str, Any]
) -> None:
    _node(ui, 2)["inputs"].append({"name": "text", "type": "STRING", "link": 32,
                                   "widget": {"name": "text"}})
    _add_node(ui, 22, "CustomTextSource")  # a class the server lacks keeps its links only
    ui["links"].append([32, 22, 0, 2, 1, "STRING"])
    wf = convert_ui_workflow(ui, object_info)
    assert wf.nodes["2"].inputs["text"] == ["22", 0]
    assert wf.nodes["22"].inputs == {}


def test_widgets_values_as_an_object(ui: dict[str, Any], object_info: dict[str, Any]) -> None:
    _node(ui, 4)["widgets_values"] = {"width": 32, "height": 48, "batch_size": 2}
    wf = convert_ui_workflow(ui, object_info)
    assert wf.nodes["4"].inputs == {"width": 32, "height": 48, "batch_size": 2}


def test_upload_button_value_is_skipped(object_info: dict[str, Any]) -> None:
    doc = {"nodes": [], "links": []}
    _add_node(doc, 1, "LoadImage", widgets_values=["cliff.png", "image"])
    _add_node(doc, 2, "LoadImageMask", widgets_values=["mask.png", "image", "red"])
    wf = convert_ui_workflow(doc, object_info)
    assert wf.nodes["1"].inputs == {"image": "cliff.png"}
    assert wf.nodes["2"].inputs == {"image": "mask.png", "channel": "red"}


def test_reroute_chain_is_followed(ui: dict[str, Any], object_info: dict[str, Any]) -> None:
    _add_node(ui, 23, "Reroute", inputs=[{"name": "", "type": "*", "link": 4}])
    ui["links"].append([33, 23, 0, 3, 0, "CLIP"])
    _node(ui, 3)["inputs"][0]["link"] = 33
    assert convert_ui_workflow(ui, object_info).nodes["3"].inputs["clip"] == ["1", 1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(definitions={"subgraphs": [{"id": "abc"}]}) or _add_node(d, 40, "abc"),
         "subgraph 'abc' has no 'nodes' list"),
        (lambda d: _add_node(d, 41, "workflow>My group"), "node 41 (workflow>My group) in the workflow is a legacy group node"),
        (lambda d: d["links"].pop(0), "link 1 is used by input 'model' of node 5 (KSampler) in the workflow but is not in its 'links'"),
        (lambda d: d["nodes"].append({"type": "KSampler"}), "has no 'id' or 'type'"),
        (lambda d: d["links"].append([99, 1]), "entry 11 of 'links' in the workflow is not"),
        (lambda d: [n.update(mode=4) for n in d["nodes"]], "every node is muted, bypassed"),
    ],
)
def test_errors_say_how_to_export_the_api_format(
    ui: dict[str, Any], object_info: dict[str, Any], change: Any, message: str
) -> None:
    doc = copy.deepcopy(ui)
    change(doc)
    with pytest.raises(WorkflowError) as err:
        convert_ui_workflow(doc, object_info, Path("x.json"))
    text = str(err.value)
    assert text.startswith("x.json: cannot convert this UI-format workflow")
    assert message in text
    assert "Workflow menu → Export (API)" in text
    assert "{'" not in text


def test_not_a_ui_workflow() -> None:
    with pytest.raises(WorkflowError, match="not a UI-format workflow"):
        convert_ui_workflow({"1": {"class_type": "X", "inputs": {}}}, {})


# --- subgraphs ---------------------------------------------------------------------------

SUBGRAPH_FILE = DATA / "ui_workflows" / "tiny_subgraph_ui.json"


@pytest.fixture
def sub() -> dict[str, Any]:
    """Saved by ComfyUI 0.3.75's frontend (1.32.9): instance 13 of "Sample and decode" holds a
    muted preview and instance 13 of "Prompts"; the positive text is promoted through both."""
    data: dict[str, Any] = json.loads(SUBGRAPH_FILE.read_text())
    return data


def _definition(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in doc["definitions"]["subgraphs"] if s["name"] == name)
    return found


def test_subgraphs_convert_as_the_frontend_does(sub: dict[str, Any], object_info: dict[str, Any]) -> None:
    recorded = json.loads((DATA / "ui_workflows" / "tiny_subgraph_frontend.json").read_text())
    assert convert_ui_workflow(sub, object_info).to_prompt() == recorded  # app.graphToPrompt().output


def test_inner_nodes_are_named_by_their_instance_path(sub: dict[str, Any], object_info: dict[str, Any]) -> None:
    wf = convert_ui_workflow(sub, object_info)
    assert sorted(wf.nodes) == ["1", "13:13:2", "13:13:3", "13:4", "13:5", "13:6", "7"]  # muted 13:11 left out
    assert wf.nodes["13:5"].inputs["positive"] == ["13:13:2", 0]
    assert wf.nodes["7"].inputs["images"] == ["13:6", 0]  # an instance's output is the inner node's
    assert wf.nodes["13:13:3"].inputs["clip"] == ["1", 1]  # through two instance inputs and a Reroute


def test_selectors_reach_inner_nodes_before_the_server_is_known(sub: dict[str, Any]) -> None:
    skeleton = convert_ui_workflow(sub, None)
    assert select(skeleton, "title:Positive", one=True) == ("13:13:2",)
    assert select(skeleton, "13:5", one=True) == ("13:5",)
    assert select(skeleton, "#13:13:3", one=True) == ("13:13:3",)
    assert select(skeleton, "KSampler.negative", one=True) == ("13:13:3",)


def test_promoted_widget_value_comes_from_the_instance(sub: dict[str, Any], object_info: dict[str, Any]) -> None:
    outer = _node(sub, 13)
    del outer["properties"]["proxyWidgets"]  # plain promotion: widgets_values in input order
    outer["widgets_values"] = ["a promoted prompt"]
    assert convert_ui_workflow(sub, object_info).nodes["13:13:2"].inputs["text"] == "a promoted prompt"
    outer["widgets_values"] = []  # nothing saved with the instance: the inner widget's own value
    inner_text = _node(_definition(sub, "Sample and decode"), 13)["widgets_values"]
    expected = inner_text[0] if inner_text else "this inner value is replaced by the promoted one"
    assert convert_ui_workflow(sub, object_info).nodes["13:13:2"].inputs["text"] == expected


def test_a_linked_instance_input_follows_the_outer_link(sub: dict[str, Any], object_info: dict[str, Any]) -> None:
    _add_node(sub, 30, "CLIPTextEncode", widgets_values=["an outer prompt"],
              inputs=[{"name": "clip", "type": "CLIP", "link": 40}])
    sub["links"] += [[40, 1, 1, 30, 0, "CLIP"], [41, 30, 0, 13, 0, "STRING"]]
    next(i for i in _node(sub, 13)["inputs"] if i["name"] == "prompt")["link"] = 41
    wf = convert_ui_workflow(sub, object_info)
    assert wf.nodes["13:13:2"].inputs["text"] == ["30", 0]


def test_bypassed_node_inside_a_subgraph_passes_through(sub: dict[str, Any], object_info: dict[str, Any]) -> None:
    _node(_definition(sub, "Sample and decode"), 6)["mode"] = 4  # VAEDecode: no LATENT→IMAGE match
    wf = convert_ui_workflow(sub, object_info)
    assert "13:6" not in wf.nodes
    assert "images" not in wf.nodes["7"].inputs  # nothing of that type to pass on: dropped


def test_a_subgraph_that_contains_itself_is_one_error(sub: dict[str, Any], object_info: dict[str, Any]) -> None:
    prompts = _definition(sub, "Prompts")
    prompts["nodes"].append({"id": 50, "type": prompts["id"], "mode": 0, "inputs": [], "outputs": []})
    with pytest.raises(WorkflowError, match=r"node 13:13:50 \(subgraph 'Prompts'\) contains itself"):
        convert_ui_workflow(sub, object_info, Path("x.json"))


def test_list_values_are_boxed_as_the_frontend_does(object_info: dict[str, Any]) -> None:
    doc = {"nodes": [], "links": []}
    _add_node(doc, 1, "EmptyLatentImage", widgets_values=[[64, 64], 64, 1])
    assert convert_ui_workflow(doc, object_info).nodes["1"].inputs["width"] == {"__value__": [64, 64]}


def test_frontend_widgets_of_core_nodes(object_info: dict[str, Any]) -> None:
    full = json.loads((DATA / "object_info_075_3d.json").read_text())
    doc = {"nodes": [], "links": []}
    _add_node(doc, 1, "Load3D", widgets_values=["toy.glb", "upload3dmodel", "uploadExtraResources", "clear", "", 512, 256])
    _add_node(doc, 2, "SaveGLB", widgets_values=["3d/out", ""], inputs=[{"name": "mesh", "type": "MESH", "link": None}])
    wf = convert_ui_workflow(doc, full)
    assert wf.nodes["1"].inputs == {"model_file": "toy.glb", "upload 3d model": "upload3dmodel",
                                    "upload extra resources": "uploadExtraResources", "clear": "clear",
                                    "image": "", "width": 512, "height": 256}
    assert wf.nodes["2"].inputs == {"filename_prefix": "3d/out", "image": ""}
