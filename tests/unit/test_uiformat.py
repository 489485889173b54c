"""UI-format → API-format conversion, against a recorded /object_info (no server)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from comfytest.errors import WorkflowError
from comfytest.uiformat import convert_ui_workflow
from comfytest.workflow import is_ui_format, load_workflow, select

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
