"""UI-format workflow files read into frozen values: nodes, links, and subgraph definitions.

A UI-format file (what ComfyUI's normal Save writes) is ``{"nodes": [...], "links": [...]}``
plus, since subgraphs, ``definitions.subgraphs``: each definition is a graph of its own
(``nodes``, ``links``) with ``inputs``/``outputs`` slots; inside it, links from the subgraph's
input node have origin ``-10`` and links to its output node have target ``-20``. A node whose
``type`` is a definition's id is an *instance* of that subgraph. This module only reads and
checks the structure; ``uiformat`` converts it. Every problem is one ``WorkflowError`` naming
the file, the graph and the entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfytest.errors import WorkflowError

INPUT_NODE, OUTPUT_NODE = "-10", "-20"  # the ids of a subgraph's input and output nodes

EXPORT_HINT = (
    "export the API format instead: in ComfyUI use Workflow menu → Export (API) (older "
    'versions: enable "Dev mode options" in the settings, then "Save (API Format)")'
)


@dataclass(frozen=True)
class UiInput:
    name: str
    type: str
    link: int | None
    widget: str | None = None  # the widget this socket stands for (a widget turned into an input)


@dataclass(frozen=True)
class UiNode:
    id: str
    type: str
    mode: int
    title: str | None
    inputs: tuple[UiInput, ...]
    widgets: Sequence[Any] | Mapping[str, Any]
    outputs: tuple[str, ...] = ()  # output types, by slot
    properties: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class UiLink:
    source: str
    slot: int
    target: str
    target_slot: int
    type: str


@dataclass(frozen=True)
class Scope:
    """One graph: the root, or the inside of one subgraph definition (``id`` is then its id)."""

    id: str | None
    name: str
    nodes: Mapping[str, UiNode]
    links: Mapping[int, UiLink]


@dataclass(frozen=True)
class SubgraphSlot:
    name: str
    type: str
    links: tuple[int, ...]


@dataclass(frozen=True)
class SubgraphDef:
    scope: Scope
    inputs: tuple[SubgraphSlot, ...]
    outputs: tuple[SubgraphSlot, ...]


@dataclass(frozen=True)
class UiGraph:
    root: Scope
    subgraphs: Mapping[str, SubgraphDef]
    where: str

    def fail(self, message: str) -> WorkflowError:
        return WorkflowError(
            f"{self.where}: cannot convert this UI-format workflow: {message}. "
            f"To test it, {EXPORT_HINT}"
        )


def read_graph(data: object, source: Path | None) -> UiGraph:
    """The root graph and every subgraph definition of a UI-format workflow."""
    where = str(source) if source else "<workflow>"
    if not isinstance(data, Mapping) or not isinstance(data.get("nodes"), list):
        raise WorkflowError(f"{where}: not a UI-format workflow (no 'nodes' list)")
    blank = UiGraph(Scope(None, "the workflow", {}, {}), {}, where)
    subgraphs = {}
    for index, raw in enumerate(_definitions(data)):
        sub = _read_subgraph(blank, index, raw)
        subgraphs[str(sub.scope.id)] = sub
    root = _read_scope(blank, None, "the workflow", data)
    graph = UiGraph(root, subgraphs, where)
    for scope in [root, *(s.scope for s in subgraphs.values())]:
        for node in scope.nodes.values():
            if node.type.startswith(("workflow>", "workflow/")):
                raise graph.fail(f"node {node.id} ({node.type}) in {scope.name} is a legacy group node, "
                                 "which comfytest cannot expand (convert it to a subgraph in ComfyUI)")
    return graph


def _definitions(data: Mapping[str, Any]) -> list[Any]:
    definitions = data.get("definitions")
    subgraphs = definitions.get("subgraphs") if isinstance(definitions, Mapping) else None
    return subgraphs if isinstance(subgraphs, list) else []


def _read_subgraph(graph: UiGraph, index: int, raw: object) -> SubgraphDef:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
        raise graph.fail(f"entry {index} of definitions.subgraphs has no 'id'")
    name = f"subgraph '{raw.get('name') or raw['id']}'"
    scope = _read_scope(graph, raw["id"], name, raw)
    return SubgraphDef(
        scope,
        tuple(_read_slot(graph, name, "input", s) for s in raw.get("inputs") or []),
        tuple(_read_slot(graph, name, "output", s) for s in raw.get("outputs") or []),
    )


def _read_slot(graph: UiGraph, where: str, kind: str, raw: object) -> SubgraphSlot:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        raise graph.fail(f"{where} has an {kind} slot without a 'name'")
    links = tuple(i for i in raw.get("linkIds") or [] if isinstance(i, int))
    return SubgraphSlot(raw["name"], str(raw.get("type") or "*"), links)


def _read_scope(graph: UiGraph, scope_id: str | None, name: str, raw: Mapping[str, Any]) -> Scope:
    nodes_raw = raw.get("nodes")
    if not isinstance(nodes_raw, list):
        raise graph.fail(f"{name} has no 'nodes' list")
    nodes = {}
    for index, node_raw in enumerate(nodes_raw):
        node = _read_node(graph, name, index, node_raw)
        nodes[node.id] = node
    links = dict(_read_link(graph, name, i, link) for i, link in enumerate(raw.get("links") or []))
    return Scope(scope_id, name, nodes, links)


def _read_node(graph: UiGraph, scope: str, index: int, raw: object) -> UiNode:
    if not isinstance(raw, Mapping) or "id" not in raw or not isinstance(raw.get("type"), str):
        raise graph.fail(f"entry {index} of 'nodes' in {scope} has no 'id' or 'type'")
    node_id = str(raw["id"])
    title = raw.get("title")
    widgets = raw.get("widgets_values")
    properties = raw.get("properties")
    try:
        mode = int(raw.get("mode") or 0)
    except (TypeError, ValueError):
        raise graph.fail(f"node {node_id} in {scope} has mode {raw.get('mode')!r}, not a number") from None
    return UiNode(
        id=node_id,
        type=raw["type"],
        mode=mode,
        title=title if isinstance(title, str) and title else None,
        inputs=tuple(_read_input(graph, scope, node_id, i) for i in raw.get("inputs") or []),
        widgets=widgets if isinstance(widgets, list | Mapping) else [],
        outputs=tuple(str(o.get("type") or "*") if isinstance(o, Mapping) else "*" for o in raw.get("outputs") or []),
        properties=properties if isinstance(properties, Mapping) else None,
    )


def _read_input(graph: UiGraph, scope: str, node_id: str, raw: object) -> UiInput:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        raise graph.fail(f"node {node_id} in {scope} has an input entry without a 'name'")
    link = raw.get("link")
    widget = raw.get("widget")
    widget_name = widget.get("name") if isinstance(widget, Mapping) else None
    return UiInput(
        raw["name"], str(raw.get("type") or "*"), link if isinstance(link, int) else None,
        widget_name if isinstance(widget_name, str) else None,
    )


def _read_link(graph: UiGraph, scope: str, index: int, raw: object) -> tuple[int, UiLink]:
    # [id, origin_id, origin_slot, target_id, target_slot, type], or the same as an object
    if isinstance(raw, Mapping):
        raw = [raw.get(k) for k in ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")]
    if not isinstance(raw, list) or len(raw) < 6 or not isinstance(raw[0], int):
        raise graph.fail(f"entry {index} of 'links' in {scope} is not [id, from, slot, to, slot, type]")
    if not isinstance(raw[2], int) or not isinstance(raw[4], int):
        raise graph.fail(f"link {raw[0]} in {scope} has no slot numbers")
    kind = raw[5] if isinstance(raw[5], str) else json.dumps(raw[5])
    return raw[0], UiLink(str(raw[1]), raw[2], str(raw[3]), raw[4], kind)


def instance_inputs(node: UiNode, sub: SubgraphDef) -> tuple[UiInput, ...]:
    """An instance's input slots as the frontend configures them: the definition's slots, in
    its order, each with the link saved with the instance's input of the same name."""
    saved: dict[str, UiInput] = {}
    for entry in node.inputs:
        saved.setdefault(entry.name, entry)
    result = []
    for slot in sub.inputs:
        found = saved.get(slot.name)
        result.append(UiInput(slot.name, slot.type, found.link if found else None, found.widget if found else None))
    return tuple(result)


def instance_outputs(node: UiNode, sub: SubgraphDef) -> tuple[str, ...]:
    base = [s.type for s in sub.outputs]
    saved = list(node.outputs)
    return tuple(saved[i] if i < len(saved) else base[i] for i in range(max(len(base), len(saved))))
