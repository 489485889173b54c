"""UI-format workflows (what ComfyUI's normal Save writes) converted to API format.

A UI-format file stores the graph as the editor draws it: ``{"nodes": [...], "links": [...]}``
where a node's literal values are a positional list, ``widgets_values``, and its connections
are link ids. The API format that ``POST /prompt`` takes names every input. The names and their
order come from the server's ``/object_info`` (``input_order``, else the order of ``required``
then ``optional``), so :func:`convert_ui_workflow` needs it; comfytest converts at run time,
once the server is known.

What the conversion does:

* widget inputs (INT, FLOAT, STRING, BOOLEAN, combos) take the next value of
  ``widgets_values``, in input order; a ``"control_after_generate"`` value
  (``fixed``/``increment``/``decrement``/``randomize``) written after a seed-like or INT widget
  is skipped, and so is the ``"image"`` value of an upload button after an upload combo;
* a widget that was turned into an input and is connected takes the link, not the value;
* links become ``[source_node_id, output_slot]``;
* muted nodes (mode 2) are left out, and inputs fed by them are dropped; bypassed nodes
  (mode 4) are left out and their outputs are passed through from the input of the same type;
* frontend-only nodes are left out: ``Note``/``MarkdownNote``, ``Reroute`` (followed to its
  source), ``PrimitiveNode`` (its value is written into the inputs it feeds);
* ``_meta.title`` is the node's title, else the class's display name, as Export (API) writes.

Limits: group nodes and subgraphs are not expanded, and nodes whose widgets the frontend
creates by itself (custom JavaScript widgets not listed in ``/object_info``) may shift the
values; both give an error or a wrong value that the server's validation reports. A class the
server lacks keeps only its links (preflight then names the missing node pack). When in doubt,
export the API format: Workflow menu → Export (API).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfytest.errors import WorkflowError
from comfytest.workflow import SEED_NAMES, ObjectInfo, Workflow, input_spec, parse_workflow

MUTED, BYPASSED = 2, 4
FRONTEND_ONLY = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
_UPLOAD_VALUES = frozenset({"image", "video", "audio"})
_MAX_HOPS = 100  # a chain of reroutes/bypasses longer than this is a cycle

EXPORT_HINT = (
    "export the API format instead: in ComfyUI use Workflow menu → Export (API) (older "
    'versions: enable "Dev mode options" in the settings, then "Save (API Format)")'
)


@dataclass(frozen=True)
class UiInput:
    name: str
    type: str
    link: int | None


@dataclass(frozen=True)
class UiNode:
    id: str
    type: str
    mode: int
    title: str | None
    inputs: tuple[UiInput, ...]
    widgets: Sequence[Any] | Mapping[str, Any]


@dataclass(frozen=True)
class UiLink:
    source: str
    slot: int
    type: str


@dataclass(frozen=True)
class UiGraph:
    nodes: Mapping[str, UiNode]
    links: Mapping[int, UiLink]
    where: str

    def fail(self, message: str) -> WorkflowError:
        return WorkflowError(
            f"{self.where}: cannot convert this UI-format workflow: {message}. "
            f"To test it, {EXPORT_HINT}"
        )


@dataclass(frozen=True)
class Literal:
    """A value that reaches an input through a PrimitiveNode rather than a link."""

    value: Any


def convert_ui_workflow(
    data: object, object_info: ObjectInfo | None, source: Path | None = None
) -> Workflow:
    """The API-format Workflow of a UI-format one (see the module docstring for the rules).

    Without ``object_info`` only links are converted: enough to check selectors (ids,
    classes, titles, roles) at collection, before a server is known.
    """
    graph = read_graph(data, source)
    prompt = {
        node.id: api_node(graph, node, object_info)
        for node in graph.nodes.values()
        if runs(node)
    }
    if not prompt:
        raise graph.fail("every node is muted, bypassed or frontend-only")
    try:
        return parse_workflow(prompt, source)
    except WorkflowError as exc:
        raise graph.fail(str(exc)) from None


def runs(node: UiNode) -> bool:
    return node.mode not in (MUTED, BYPASSED) and node.type not in FRONTEND_ONLY


# --- reading the graph ----------------------------------------------------------------------


def read_graph(data: object, source: Path | None) -> UiGraph:
    where = str(source) if source else "<workflow>"
    if not isinstance(data, Mapping) or not isinstance(data.get("nodes"), list):
        raise WorkflowError(f"{where}: not a UI-format workflow (no 'nodes' list)")
    graph = UiGraph({}, {}, where)
    subgraphs = _subgraph_ids(data)
    nodes = {}
    for index, raw in enumerate(data["nodes"]):
        node = _read_node(graph, index, raw)
        if node.type in subgraphs or node.type.startswith(("workflow>", "workflow/")):
            raise graph.fail(f"node {node.id} ({node.type}) is a group node or subgraph")
        nodes[node.id] = node
    links = dict(_read_link(graph, i, raw) for i, raw in enumerate(data.get("links") or []))
    return UiGraph(nodes, links, where)


def _subgraph_ids(data: Mapping[str, Any]) -> set[str]:
    definitions = data.get("definitions")
    subgraphs = definitions.get("subgraphs") if isinstance(definitions, Mapping) else None
    if not isinstance(subgraphs, list):
        return set()
    return {str(s.get("id")) for s in subgraphs if isinstance(s, Mapping)}


def _read_node(graph: UiGraph, index: int, raw: object) -> UiNode:
    if not isinstance(raw, Mapping) or "id" not in raw or not isinstance(raw.get("type"), str):
        raise graph.fail(f"entry {index} of 'nodes' has no 'id' or 'type'")
    node_id = str(raw["id"])
    title = raw.get("title")
    widgets = raw.get("widgets_values")
    return UiNode(
        id=node_id,
        type=raw["type"],
        mode=int(raw.get("mode") or 0),
        title=title if isinstance(title, str) and title else None,
        inputs=tuple(_read_input(graph, node_id, i) for i in raw.get("inputs") or []),
        widgets=widgets if isinstance(widgets, list | Mapping) else [],
    )


def _read_input(graph: UiGraph, node_id: str, raw: object) -> UiInput:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        raise graph.fail(f"node {node_id} has an input entry without a 'name'")
    link = raw.get("link")
    return UiInput(raw["name"], str(raw.get("type") or "*"), link if isinstance(link, int) else None)


def _read_link(graph: UiGraph, index: int, raw: object) -> tuple[int, UiLink]:
    # [id, origin_id, origin_slot, target_id, target_slot, type], or the same as an object
    if isinstance(raw, Mapping):
        raw = [raw.get(k) for k in ("id", "origin_id", "origin_slot", "target_id",
                                    "target_slot", "type")]
    if not isinstance(raw, list) or len(raw) < 6 or not isinstance(raw[0], int):
        raise graph.fail(f"entry {index} of 'links' is not [id, from, slot, to, slot, type]")
    if not isinstance(raw[2], int):
        raise graph.fail(f"link {raw[0]} has no output slot number")
    return raw[0], UiLink(str(raw[1]), raw[2], str(raw[5]))


# --- one node -------------------------------------------------------------------------------


def api_node(graph: UiGraph, node: UiNode, object_info: ObjectInfo | None) -> dict[str, Any]:
    info = (object_info or {}).get(node.type)
    inputs: dict[str, Any] = {}
    if object_info is not None and info is not None:
        inputs.update(widget_values(node, object_info))
    for entry in node.inputs:
        if entry.link is None:
            continue
        resolved = resolve_link(graph, entry.link)
        if isinstance(resolved, Literal):
            inputs[entry.name] = resolved.value
        elif resolved is not None:
            inputs[entry.name] = resolved
        else:
            inputs.pop(entry.name, None)  # fed by a muted node: the server sees no value
    return {"inputs": inputs, "class_type": node.type, "_meta": {"title": _title(node, info)}}


def _title(node: UiNode, info: Mapping[str, Any] | None) -> str:
    if node.title:
        return node.title
    name = info.get("display_name") if info else None
    return name if isinstance(name, str) and name else node.type


def input_names(object_info: ObjectInfo, class_type: str) -> list[str]:
    """Input names in the order the frontend creates their widgets."""
    info = object_info.get(class_type) or {}
    order = info.get("input_order")
    sections = ("required", "optional")
    if isinstance(order, Mapping):
        return [str(n) for s in sections for n in order.get(s) or []]
    spec = info.get("input") or {}
    return [str(n) for s in sections for n in spec.get(s) or {}]


def is_widget(spec: object) -> bool:
    """A literal input the editor shows as a widget (not a socket-only type like MODEL)."""
    if not isinstance(spec, list | tuple) or not spec:
        return False
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
    if options.get("forceInput"):
        return False
    return isinstance(spec[0], list) or spec[0] in WIDGET_TYPES


def widget_values(node: UiNode, object_info: ObjectInfo) -> dict[str, Any]:
    names = [n for n in input_names(object_info, node.type)
             if is_widget(input_spec(object_info, node.type, n))]
    if isinstance(node.widgets, Mapping):  # some custom nodes save {name: value}
        return {n: node.widgets[n] for n in names if n in node.widgets}
    values = list(node.widgets)
    result: dict[str, Any] = {}
    index = 0
    for name in names:
        if index >= len(values):
            break
        result[name] = values[index]
        index += 1 + _extra_values(input_spec(object_info, node.type, name), name,
                                   values[index + 1:index + 2])
    return result


def _extra_values(spec: Sequence[Any], name: str, following: list[Any]) -> int:
    """How many values after this widget's belong to a companion widget (0 or 1)."""
    if not following or not isinstance(following[0], str):
        return 0
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
    seed_like = options.get("control_after_generate") or name in SEED_NAMES or spec[0] == "INT"
    if seed_like and following[0] in CONTROL_VALUES:
        return 1
    upload = any(str(k).endswith("upload") for k in options)
    return 1 if upload and following[0] in _UPLOAD_VALUES else 0


# --- links ----------------------------------------------------------------------------------


def resolve_link(graph: UiGraph, link_id: int) -> list[Any] | Literal | None:
    """``[node, slot]`` of the running node behind a link, a PrimitiveNode's value, or None."""
    for _ in range(_MAX_HOPS):
        link = graph.links.get(link_id)
        if link is None:
            raise graph.fail(f"link {link_id} is used by an input but not in 'links'")
        node = graph.nodes.get(link.source)
        if node is None:
            raise graph.fail(f"link {link_id} comes from node {link.source}, which is missing")
        if node.type == "PrimitiveNode":
            return Literal(_first_value(node))
        if node.mode == MUTED or node.type in FRONTEND_ONLY - {"Reroute"}:
            return None
        upstream = _pass_through(node, link)
        if node.type != "Reroute" and node.mode != BYPASSED:
            return [node.id, link.slot]
        if upstream is None:
            return None
        link_id = upstream
    raise graph.fail(f"link {link_id} is part of a cycle of reroutes or bypassed nodes")


def _pass_through(node: UiNode, link: UiLink) -> int | None:
    """The link that a Reroute or bypassed node passes on for output ``link.slot``."""
    if node.type == "Reroute":
        return node.inputs[0].link if node.inputs else None
    same = [(i, e) for i, e in enumerate(node.inputs) if e.link is not None and e.type == link.type]
    for index, entry in same:
        if index == link.slot:
            return entry.link
    return same[0][1].link if same else None


def _first_value(node: UiNode) -> Any:
    values = node.widgets
    if isinstance(values, Mapping):
        return next(iter(values.values()), None)
    return values[0] if values else None
