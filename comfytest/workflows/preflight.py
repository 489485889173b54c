"""Preflight: what a server lacks for a workflow, found before anything is queued.

:func:`preflight` compares an API-format :class:`~comfytest.workflows.workflow.Workflow` with the
server's ``/object_info``: node classes that are not installed (with the node pack that most
likely provides them), model files that the loaders' combo lists do not offer (with the
``models/`` folder they belong in), and literal values outside a combo or a numeric range.
Links to an output slot the server's node does not have, and literals of the wrong type (a
string where the server takes an INT), are found too: ComfyUI would answer them with "list index
out of range" or "invalid literal for int()". A UI-format file tells where a missing node comes
from (``properties.cnr_id``/``ver``, see :func:`comfytest.workflows.uiformat.node_origins`): a core node
names the ComfyUI version it needs, another the node pack's registry id.
Each problem names the node (id, title, class) and the workflow.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from comfytest.workflows.dynamic import (
    LiveInput,
    combo_keys,
    dynamic_parent,
    is_dynamic_combo,
    live_inputs,
    option_input_names,
    options_with,
)
from comfytest.workflows.workflow import Node, ObjectInfo, Workflow, is_link

#: input name (digits stripped) → folder under models/; class-specific entries win
MODEL_FOLDERS: Mapping[str, str] = MappingProxyType({
    "ckpt_name": "checkpoints", "lora_name": "loras", "vae_name": "vae",
    "control_net_name": "controlnet", "unet_name": "diffusion_models",
    "clip_name": "text_encoders", "upscale_model": "upscale_models",
    "style_model_name": "style_models", "gligen_name": "gligen",
    "hypernetwork_name": "hypernetworks", "photomaker_model_name": "photomaker",
    "audio_encoder_name": "audio_encoders", "model_patch_name": "model_patches",
    "UpscaleModelLoader.model_name": "upscale_models", "CLIPVisionLoader.clip_name": "clip_vision",
    "unCLIPCheckpointLoader.ckpt_name": "checkpoints",
})

_MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")
MODEL_SUFFIXES = _MODEL_SUFFIXES  # public: modelorder reads model names without /object_info

#: (class-name pattern, node pack): custom node packs whose classes are easy to recognise
NODE_PACKS: tuple[tuple[str, str], ...] = (
    (r"^ComfyTest", "comfytest's own node pack (loaded into every server comfytest starts; a server given by URL needs comfytest/nodepack in its custom_nodes/)"),
    (r"^VHS_", "ComfyUI-VideoHelperSuite"),
    (r"IPAdapter", "ComfyUI_IPAdapter_plus"),
    (r"^(Impact|SAM)", "ComfyUI-Impact-Pack"),
    (r"^Efficient|\(Efficient\)$", "efficiency-nodes-comfyui"),
    (r"\(rgthree\)$", "rgthree-comfy"),
    (r"^ADE_", "ComfyUI-AnimateDiff-Evolved"),
    (r"^ACN_", "ComfyUI-Advanced-ControlNet"),
    (r"Preprocessor$", "comfyui_controlnet_aux"),
    (r"^CR ", "ComfyUI_Comfyroll_CustomNodes"),
    (r"^easy ", "ComfyUI-Easy-Use"),
    (r"GGUF", "ComfyUI-GGUF"),
    (r"^UltimateSDUpscale", "ComfyUI_UltimateSDUpscale"),
    (r"InstantID", "ComfyUI_InstantID"),
)


@dataclass(frozen=True)
class ModelRef:
    node_id: str
    class_type: str
    input: str
    value: str
    folder: str | None


@dataclass(frozen=True)
class NodeOrigin:
    """Where a node class comes from, as a UI-format file records it (``properties``)."""

    cnr_id: str | None  # "comfy-core" for ComfyUI's own nodes, else the node pack's registry id
    ver: str | None = None
    #: V3 dynamic inputs saved with the node (``model.width``: a sub-widget of a dynamic combo)
    dynamic_inputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class PreflightProblem:
    #: "missing_node" | "missing_model" | "bad_link" | "bad_type" | "bad_value", or for V3 dynamic
    #: combos "bad_option" (an option the combo lacks) | "bad_input" (a sub-input the chosen option
    #: lacks, or a required one missing): ComfyUI would drop or miss them without a clear error
    kind: str
    node_id: str
    class_type: str
    title: str | None
    message: str


def required_classes(workflow: Workflow) -> set[str]:
    return {node.class_type for node in workflow.nodes.values()}


def combo_options(spec: object) -> list[str] | None:
    """The choices of a combo input, in both the old and the "COMBO" spec forms."""
    if not isinstance(spec, list) or not spec:
        return None
    if isinstance(spec[0], list):
        return [str(v) for v in spec[0]]
    options = spec[1].get("options") if spec[0] == "COMBO" and len(spec) > 1 else None
    return [str(v) for v in options] if isinstance(options, list) else None


def node_inputs(object_info: ObjectInfo, node: Node) -> dict[str, LiveInput]:
    """The inputs the server's class takes with this node's values (V3 dynamic ones expanded:
    ``resize_type.width`` once ``resize_type`` chose "scale dimensions")."""
    return live_inputs(object_info, node.class_type, node.inputs)


def model_folder(class_type: str, name: str) -> str | None:
    base = name.rsplit(".", 1)[-1].rstrip("0123456789")  # clip_name1, clip_name2 of DualCLIPLoader
    return MODEL_FOLDERS.get(f"{class_type}.{base}") or MODEL_FOLDERS.get(base)


def model_references(workflow: Workflow, object_info: ObjectInfo) -> list[ModelRef]:
    """Combo inputs that name a model file (known input names, or a model file suffix)."""
    refs = []
    for node in workflow.nodes.values():
        specs = node_inputs(object_info, node)
        for name, value in node.inputs.items():
            spec = specs[name].spec if name in specs else None
            if not isinstance(value, str) or combo_options(spec) is None:
                continue
            folder = model_folder(node.class_type, name)
            if folder or value.lower().endswith(_MODEL_SUFFIXES):
                refs.append(ModelRef(node.id, node.class_type, name, value, folder))
    return refs


def server_models(object_info: ObjectInfo, folder: str) -> set[str]:
    """Model files the server offers in ``models/<folder>/``: the choices of every loader input
    that names a file of that folder (``MODEL_FOLDERS``)."""
    found: set[str] = set()
    for class_type, spec in object_info.items():
        sections = (spec or {}).get("input") or {}
        for section in ("required", "optional"):
            for name, input_def in (sections.get(section) or {}).items():
                if model_folder(class_type, name) == folder:
                    found.update(combo_options(input_def) or [])
    return found


def missing_pack(class_type: str) -> str:
    for pattern, pack in NODE_PACKS:
        if re.search(pattern, class_type):
            return pack
    return f"a custom node pack that provides {class_type}; search the ComfyUI Manager for it"


def preflight(
    workflow: Workflow, object_info: ObjectInfo, origins: Mapping[str, NodeOrigin] | None = None,
    server_version: str | None = None,
) -> list[PreflightProblem]:
    """What the server lacks for this workflow: node classes, model files, output slots, values.

    ``origins`` (node id → where its class comes from) and ``server_version`` (ComfyUI's) make
    the advice for a missing class exact."""
    problems = []
    for node in workflow.nodes.values():
        if node.class_type not in object_info:
            origin = (origins or {}).get(node.id)
            message = (
                f"node class {node.class_type} is not installed: node {node.label()} of "
                f"{workflow.name} needs it; {_where_from(node.class_type, origin, server_version)}"
                f"{_dynamic(origin, server_version)}"
            )
            problems.append(_problem("missing_node", node, message))
    problems.extend(_missing_models(workflow, object_info))
    problems.extend(_bad_links(workflow, object_info))
    problems.extend(_bad_values(workflow, object_info))
    problems.extend(_dynamic_problems(workflow, object_info))
    return problems


def _dynamic(origin: NodeOrigin | None, server_version: str | None) -> str:
    if origin is None or not origin.dynamic_inputs:
        return ""
    names = ", ".join(f"'{n}'" for n in origin.dynamic_inputs[:3])
    server = f"ComfyUI {server_version}" if server_version else "this server"
    return (f" (it uses V3 dynamic inputs such as {names}, which {server} does not declare: they need a "
            "newer ComfyUI)")


def _where_from(class_type: str, origin: NodeOrigin | None, server_version: str | None) -> str:
    runs = f"the server runs ComfyUI {server_version}" if server_version else "update the server"
    if origin is None or origin.cnr_id is None:
        return f"install {missing_pack(class_type)}"
    if origin.cnr_id == "comfy-core":
        if origin.ver and server_version and _version(server_version) >= _version(origin.ver):
            return (f"it is a core node (the file was saved with ComfyUI {origin.ver}), but this server "
                    f"(ComfyUI {server_version}) lacks it: it is newer than that release, or one of the "
                    "server's comfy_extras modules failed to import (see the server log)")
        needs = f"ComfyUI {origin.ver} or later" if origin.ver else "a newer ComfyUI"
        return f"it comes with {needs} (a core node); {runs}: update ComfyUI"
    version = f" (version {origin.ver} was used)" if origin.ver else ""
    return (f"install the node pack '{origin.cnr_id}'{version} from the Comfy registry "
            f"(ComfyUI Manager, or: comfy node install {origin.cnr_id})")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _bad_links(workflow: Workflow, object_info: ObjectInfo) -> list[PreflightProblem]:
    """Links to an output slot the source node's class does not have on this server."""
    problems = []
    for node in workflow.nodes.values():
        for name, value in node.inputs.items():
            if not is_link(value) or value[0] not in workflow.nodes:
                continue
            source = workflow.nodes[value[0]]
            outputs = (object_info.get(source.class_type) or {}).get("output")
            if not isinstance(outputs, list) or value[1] < len(outputs):
                continue
            listing = ", ".join(f"{i}: {t}" for i, t in enumerate(outputs)) or "none"
            message = (
                f"node {node.label()} of {workflow.name}: input '{name}' links to output {value[1]} of "
                f"node {source.label()}, which has {len(outputs)} output(s) on this server ({listing}); "
                "the workflow was saved with another version of that node: reconnect the input in ComfyUI"
            )
            problems.append(_problem("bad_link", node, message))
    return problems


def _problem(kind: str, node: Node, message: str) -> PreflightProblem:
    return PreflightProblem(kind, node.id, node.class_type, node.title, message)


def _missing_models(workflow: Workflow, object_info: ObjectInfo) -> list[PreflightProblem]:
    problems = []
    for ref in model_references(workflow, object_info):
        options = combo_options(node_inputs(object_info, workflow.nodes[ref.node_id])[ref.input].spec) or []
        if _normalise(ref.value) in {_normalise(o) for o in options}:
            continue
        node = workflow.nodes[ref.node_id]
        where = f"models/{ref.folder}/" if ref.folder else "its models/ folder"
        message = (
            f"{ref.value} is not installed: node {node.label()} needs it in {where} of the "
            f"ComfyUI server (workflow {workflow.name}){_did_you_mean(ref.value, options)}"
        )
        problems.append(_problem("missing_model", node, message))
    return problems


def _normalise(path: str) -> str:
    return path.replace("\\", "/")  # a Windows server lists sub/x.safetensors as sub\x...


def _did_you_mean(value: str, options: list[str]) -> str:
    close = difflib.get_close_matches(value, options, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _bad_values(workflow: Workflow, object_info: ObjectInfo) -> list[PreflightProblem]:
    models = {(r.node_id, r.input) for r in model_references(workflow, object_info)}
    problems = []
    for node in workflow.nodes.values():
        specs = node_inputs(object_info, node)
        for name, value in node.inputs.items():
            spec = specs[name].spec if name in specs else None
            if is_link(value) or spec is None or (node.id, name) in models or is_dynamic_combo(spec):
                continue
            wrong_type = type_problem(spec, value)
            message = wrong_type or _value_problem(spec, value)
            if message:
                text = f"node {node.label()} of {workflow.name}: input '{name}' {message}"
                problems.append(_problem("bad_type" if wrong_type else "bad_value", node, text))
    return problems


#: inputs whose value the frontend computes in the page (a 3D viewer's capture)
_PAGE_VALUES = frozenset({"LOAD_3D", "LOAD_3D_ANIMATION"})
_NUMBERS: Mapping[str, type] = MappingProxyType({"INT": int, "FLOAT": float})


def type_problem(spec: list[Any], value: Any) -> str | None:
    """A literal ComfyUI cannot take for the input: ``int(value)`` / ``float(value)`` fails
    there (with a traceback), or the value is one only the frontend can make."""
    kind = spec[0] if spec else None
    if is_link(value) or isinstance(value, dict) or not isinstance(kind, str):
        return None
    if kind in _PAGE_VALUES:
        return (f"is {value!r}, but takes a {kind} value: the scene the browser's 3D viewer captures "
                "when you queue in ComfyUI, which a saved workflow does not hold (a headless conversion "
                "gives '' too); load the model with a node that takes a file instead")
    number = _NUMBERS.get(kind)
    if number is None or isinstance(value, bool):
        return None
    try:
        number(value)
    except (TypeError, ValueError):
        return (f"is {value!r}, not a number, but the server takes {kind} there: the node's saved widget "
                "values do not line up with the server's inputs (a node of another version, or widgets "
                "its JavaScript adds: try --comfy-convert frontend)")
    return None


def _value_problem(spec: list[Any], value: Any) -> str | None:
    options = combo_options(spec)
    extra = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if options is not None:
        # upload inputs (LoadImage) are checked after comfytest has uploaded the files
        if any(k.endswith("upload") for k in extra) or str(value) in options:
            return None
        return f"is {value!r}, not one of the server's choices{_did_you_mean(str(value), options)}"
    if spec[0] in ("INT", "FLOAT") and isinstance(value, int | float):
        if "min" in extra and value < extra["min"]:
            return f"is {value}, below the minimum {extra['min']}"
        if "max" in extra and value > extra["max"]:
            return f"is {value}, above the maximum {extra['max']}"
    return None


def _dynamic_problems(workflow: Workflow, object_info: ObjectInfo) -> list[PreflightProblem]:
    """V3 dynamic combos: the chosen option must be one the server declares; every sub-input
    (``resize_type.width``) must belong to the chosen option, and its required ones be set."""
    problems = []
    for node in workflow.nodes.values():
        specs = node_inputs(object_info, node)
        combos = {n: e for n, e in specs.items() if is_dynamic_combo(e.spec)}
        for name, entry in combos.items():
            value = node.inputs.get(name)
            if name in node.inputs and not is_link(value) and str(value) not in combo_keys(entry.spec):
                problems.append(_problem("bad_option", node, _bad_option(workflow, node, name, value, entry)))
        for name in node.inputs:
            parent = dynamic_parent(specs, name)
            if parent is not None and name not in specs and str(node.inputs.get(parent)) in combo_keys(combos[parent].spec):
                problems.append(_problem("bad_input", node, _foreign_input(workflow, node, name, parent, combos[parent], specs)))
        for name, entry in specs.items():
            if entry.combo is not None and entry.required and name not in node.inputs:
                message = (f"node {node.label()} of {workflow.name}: input '{name}' is missing: option "
                           f"'{entry.option}' of '{entry.combo}' needs it ({_type_name(entry.spec)}); set it in "
                           "the settings file's patches, or re-save the workflow in ComfyUI")
                problems.append(_problem("bad_input", node, message))
    return problems


def _bad_option(workflow: Workflow, node: Node, name: str, value: Any, entry: LiveInput) -> str:
    keys = combo_keys(entry.spec)
    return (f"node {node.label()} of {workflow.name}: input '{name}' is {value!r}, not one of the options "
            f"this server's {node.class_type} declares: {', '.join(repr(k) for k in keys)}"
            f"{_did_you_mean(str(value), keys)} (the workflow was saved with another version of the node, "
            "or a patch chose an option it lacks)")


def _foreign_input(workflow: Workflow, node: Node, name: str, parent: str, entry: LiveInput,
                   specs: Mapping[str, LiveInput]) -> str:
    option = node.inputs[parent]
    own = option_input_names(specs, parent)
    sub = name[len(parent) + 1:]
    holders = options_with(entry.spec, sub.split(".")[0])
    where = (f"; '{sub}' belongs to option {', '.join(repr(k) for k in holders)}: set '{parent}' to it"
             if holders else f"; no option of '{parent}' has '{sub}'")
    return (f"node {node.label()} of {workflow.name}: input '{name}' is not an input of option {option!r} of "
            f"'{parent}' (its inputs: {', '.join(own)}){where}, or remove the input")


def _type_name(spec: Any) -> str:
    kind = spec[0] if isinstance(spec, list) and spec else None
    return "a combo" if isinstance(kind, list) else str(kind)
