"""Preflight's checks for workflows people save today: output slots, literal types, where a
missing node class comes from (``properties.cnr_id``), surplus widget values."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from comfytest.workflows.preflight import NodeOrigin, preflight
from comfytest.workflows.uiformat import ConversionWarning, convert_ui_workflow, node_origins
from comfytest.workflows.workflow import parse_workflow

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture(scope="module")
def info() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "object_info.json").read_text())
    data.update(json.loads((DATA / "object_info_075_3d.json").read_text()))
    return data


def _kinds(problems: list[Any]) -> list[str]:
    return [p.kind for p in problems]


def test_a_link_to_an_output_the_server_node_lacks(info: dict[str, Any]) -> None:
    wf = parse_workflow({
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
        "2": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["1", 3]}},
    }, Path("tripo.json"))
    (problem,) = [p for p in preflight(wf, info) if p.kind == "bad_link"]
    assert problem.node_id == "2"
    assert ("node 2 (VAEDecode) of tripo.json: input 'vae' links to output 3 of node 1 (CheckpointLoaderSimple), "
            "which has 3 output(s) on this server (0: MODEL, 1: CLIP, 2: VAE)") in problem.message
    assert "reconnect the input in ComfyUI" in problem.message


def test_a_literal_comfyui_cannot_read_as_a_number(info: dict[str, Any]) -> None:
    wf = parse_workflow({"1": {"class_type": "EmptyLatentImage",
                               "inputs": {"width": "upload3dmodel", "height": "64", "batch_size": 1.0}}})
    (problem,) = [p for p in preflight(wf, info) if p.kind == "bad_type"]
    assert "input 'width' is 'upload3dmodel', not a number, but the server takes INT there" in problem.message
    assert "--comfy-convert frontend" in problem.message


def test_load3d_converted_in_python_names_the_frontend(info: dict[str, Any]) -> None:
    doc = {"nodes": [{"id": 1, "type": "Load3D", "mode": 0, "inputs": [], "outputs": [],
                      "widgets_values": ["toy.glb", "upload3dmodel", "uploadExtraResources", "clear", "", 1024, 1024]}],
           "links": []}
    wf = convert_ui_workflow(doc, info)
    assert wf.nodes["1"].inputs["width"] == 1024  # the button placeholders are not values
    (problem,) = [p for p in preflight(wf, info) if p.kind == "bad_type"]
    assert "input 'image' is '', but takes a LOAD_3D value: the scene the browser's 3D viewer captures" in problem.message


def _missing(info: dict[str, Any], origin: NodeOrigin | None, version: str | None = "0.3.75") -> str:
    wf = parse_workflow({"9": {"class_type": "EmptyQwenImageLayeredLatent", "inputs": {}}}, Path("q.json"))
    (problem,) = preflight(wf, info, {"9": origin} if origin else None, version)
    assert problem.kind == "missing_node"
    return problem.message


def test_a_missing_core_node_names_the_comfyui_it_needs(info: dict[str, Any]) -> None:
    text = _missing(info, NodeOrigin("comfy-core", "0.5.1"))
    assert "it comes with ComfyUI 0.5.1 or later (a core node); the server runs ComfyUI 0.3.75: update ComfyUI" in text
    assert "custom node pack" not in text
    older = _missing(info, NodeOrigin("comfy-core", "0.3.40"))
    assert "saved with ComfyUI 0.3.40), but this server (ComfyUI 0.3.75) lacks it" in older


def test_a_missing_pack_node_names_its_registry_id(info: dict[str, Any]) -> None:
    text = _missing(info, NodeOrigin("comfyui-kjnodes", "1.1.9"))
    assert "install the node pack 'comfyui-kjnodes' (version 1.1.9 was used) from the Comfy registry" in text
    assert "comfy node install comfyui-kjnodes" in text
    assert "search the ComfyUI Manager" in _missing(info, None)  # no cnr_id: the old advice


def test_node_origins_come_from_ui_properties_inside_subgraphs_too() -> None:
    doc = json.loads((DATA / "ui_workflows" / "tiny_subgraph_ui.json").read_text())
    inner = next(s for s in doc["definitions"]["subgraphs"] if s["name"] == "Sample and decode")
    next(n for n in inner["nodes"] if n["id"] == 5)["properties"].update(cnr_id="comfy-core", ver="0.3.75")
    assert node_origins(doc)["13:5"] == NodeOrigin("comfy-core", "0.3.75")


def test_surplus_widget_values_are_a_warning_naming_the_node(info: dict[str, Any]) -> None:
    doc = {"nodes": [{"id": 4, "type": "EmptyLatentImage", "title": "Latent", "mode": 0, "inputs": [],
                      "outputs": [], "widgets_values": [64, 64, 1, "extra", 7]}], "links": []}
    with pytest.warns(ConversionWarning) as caught:
        wf = convert_ui_workflow(doc, info, Path("w.json"))
    assert wf.nodes["4"].inputs == {"width": 64, "height": 64, "batch_size": 1}
    (message,) = [str(w.message) for w in caught]
    assert message.startswith("w.json: node 4 'Latent' (EmptyLatentImage) has 2 saved widget value(s) that no "
                              "input of the server's EmptyLatentImage takes: 'extra', 7; they are ignored.")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert_ui_workflow(doc, None)  # the skeleton at collection warns about nothing


def test_v3_dynamic_inputs_of_a_missing_class_say_the_server_is_too_old(info: dict[str, Any]) -> None:
    doc = {"nodes": [{"id": 3, "type": "Flux2ImageNode", "mode": 0, "outputs": [],
                      "properties": {"cnr_id": "comfy-core", "ver": "0.9.0"},
                      "inputs": [{"name": "model.width", "type": "INT", "widget": {"name": "model.width"}, "link": None},
                                 {"name": "model.height", "type": "INT", "link": None}],
                      "widgets_values": ["a prompt", "flux-2-pro", 1024, 1024]}], "links": []}
    wf = convert_ui_workflow(doc, info, Path("f.json"))
    (problem,) = preflight(wf, info, node_origins(doc), "0.3.75")
    assert "it comes with ComfyUI 0.9.0 or later (a core node); the server runs ComfyUI 0.3.75" in problem.message
    assert ("(it uses V3 dynamic inputs such as 'model.width', 'model.height', which ComfyUI 0.3.75 does not "
            "declare: they need a newer ComfyUI)") in problem.message
