"""UI-format workflows (what ComfyUI's normal Save writes) converted to API format.

A UI-format file stores the graph as the editor draws it (read by ``uigraph``): a node's literal
values are a positional list, ``widgets_values``, and its connections are link ids. The API
format that ``POST /prompt`` takes names every input. The names and their order come from the
server's ``/object_info`` (``input_order``, else the order of ``required`` then ``optional``), so
:func:`convert_ui_workflow` needs it; comfytest converts at run time, once the server is known.

The rules are those of the frontend's ``graphToPrompt`` (ComfyUI_frontend ``executionUtil`` and
litegraph's ``ExecutableNodeDTO``, version 1.32.9 as served by ComfyUI 0.3.75):

* subgraphs are flattened: the nodes inside an instance get ids ``"<instance>:<inner>"``
  (``"56:52"``; nested instances ``"56:60:52"``); a link from the subgraph's input node follows
  the instance's input outwards, or, where that input is not connected, takes the value of the
  widget promoted to the instance (its ``widgets_values``, else the inner widget's value); an
  output of an instance is the inner node linked to the subgraph's output;
* widget inputs (INT, FLOAT, STRING, BOOLEAN, combos) take the next value of
  ``widgets_values``, in input order; a ``"control_after_generate"`` value
  (``fixed``/``increment``/``decrement``/``randomize``) written after a seed-like or INT widget
  is skipped, and so is the ``"image"`` value of an upload button after an upload combo;
  list values are written as ``{"__value__": [...]}`` as the frontend does;
* a V3 dynamic combo (``COMFY_DYNAMICCOMBO_V3``, ComfyUI ≥ 0.26, module ``dynamic``) is a combo
  widget that, once it has its value, brings the widgets of the chosen option right after itself,
  named ``<combo>.<input>`` (``resize_type`` = "scale dimensions", then ``resize_type.width``,
  ``resize_type.height``, ``resize_type.crop``, as the frontend 1.45.19 lays them out); an
  autogrow group's sockets are the saved ones of its name (``images.image0``…);
* a widget that was turned into an input and is connected takes the link, not the value;
* muted nodes (mode 2) are left out, and inputs fed by them are dropped; bypassed nodes
  (mode 4) are left out and each output passes on the input of the same slot if its type fits,
  else the first input of that type;
* frontend-only (virtual) nodes are left out: ``Note``/``MarkdownNote``, ``Reroute`` (followed to
  its source), ``PrimitiveNode`` (its value is written into the inputs it feeds);
* ``_meta.title`` is the node's title, else the class's display name, as Export (API) writes.

Limits: nodes whose widgets the frontend creates by itself (custom JavaScript widgets not listed
in ``/object_info``) may shift the values; ``--comfy-convert frontend`` converts with the
server's own frontend instead (module ``frontend``). A class the server lacks keeps only its
links (preflight then names what is missing).
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfytest.errors import WorkflowError
from comfytest.workflows.dynamic import AUTOGROW, class_entries, input_default, is_dynamic_combo, kind, option_inputs
from comfytest.workflows.preflight import NodeOrigin
from comfytest.workflows.uigraph import (
    INPUT_NODE,
    OUTPUT_NODE,
    Scope,
    SubgraphDef,
    UiGraph,
    UiInput,
    UiNode,
    instance_inputs,
    instance_outputs,
    read_graph,
)
from comfytest.workflows.workflow import SEED_NAMES, ObjectInfo, Workflow, input_spec, parse_workflow

MUTED, BYPASSED = 2, 4
VIRTUAL = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
FRONTEND_ONLY = VIRTUAL  # kept for callers of the earlier name
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
_UPLOAD_VALUES = frozenset({"image", "video", "audio"})
#: widgets the frontend's own extensions add to core nodes (after the server's), serialized
#: into the prompt: class → names, each taking the next saved value (default "")
FRONTEND_WIDGETS: Mapping[str, tuple[str, ...]] = {
    "SaveGLB": ("image",), "PreviewAny": ("preview",), "Preview3D": ("image",),
    # the frontend's audio extension adds its player widget to these (serialized as "")
    **{name: ("audioUI",) for name in ("LoadAudio", "SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "PreviewAudio")},
}
#: nodes whose widgets the frontend lays out itself: widget names in saved order (the frontend
#: sends its buttons too, with their placeholder values)
WIDGET_LAYOUTS: Mapping[str, tuple[str | None, ...]] = {
    "Load3D": ("model_file", "upload 3d model", "upload extra resources", "clear", "image", "width", "height"),
}
_MAX_DEPTH = 32  # subgraphs nested deeper than this are a cycle


class ConversionWarning(UserWarning):
    """The conversion went through but left something out (surplus widget values)."""


@dataclass(frozen=True)
class Exec:
    """One node as the frontend executes it: where it sits and the instance that holds it."""

    path: tuple[str, ...]  # ids of the instances from the root down to the one holding it
    node: UiNode
    scope: Scope
    instance: Exec | None = None

    @property
    def id(self) -> str:
        return ":".join((*self.path, self.node.id))


@dataclass(frozen=True)
class Value:
    """A literal that reaches an input: a promoted widget's or a PrimitiveNode's value."""

    value: Any


@dataclass(frozen=True)
class Origin:
    node: str
    slot: int


Resolved = Value | Origin | None  # None: nothing connected; the node's own widget value stays


def convert_ui_workflow(
    data: object, object_info: ObjectInfo | None, source: Path | None = None
) -> Workflow:
    """The API-format Workflow of a UI-format one (see the module docstring for the rules).

    Without ``object_info`` only links are converted: enough to check selectors (ids,
    classes, titles, roles) at collection, before a server is known.
    """
    graph = read_graph(data, source)
    converter = Converter(graph, object_info)
    prompt = converter.prompt()
    for message in converter.warnings:
        warnings.warn(ConversionWarning(message), stacklevel=2)
    if not prompt:
        raise graph.fail("every node is muted, bypassed or frontend-only")
    try:
        return parse_workflow(prompt, source)
    except WorkflowError as exc:
        raise graph.fail(str(exc)) from None


def node_origins(data: object, source: Path | None = None) -> dict[str, NodeOrigin]:
    """Node id (as converted, ``"56:52"`` inside subgraphs) → where its class comes from, for
    every node whose ``properties`` name a ``cnr_id`` or that has V3 dynamic inputs (``model.x``):
    preflight's advice for missing classes."""
    converter = Converter(read_graph(data, source), None)
    converter.flatten()
    found = {}
    for ex in converter.execs.values():
        props = ex.node.properties or {}
        cnr_id, ver = props.get("cnr_id"), props.get("ver")
        dynamic = tuple(e.name for e in ex.node.inputs if "." in e.name)
        if (isinstance(cnr_id, str) and cnr_id) or dynamic:
            found[ex.id] = NodeOrigin(cnr_id if isinstance(cnr_id, str) and cnr_id else None,
                                      str(ver) if isinstance(ver, str | int | float) else None, dynamic)
    return found


def runs(node: UiNode) -> bool:
    return node.mode not in (MUTED, BYPASSED) and node.type not in VIRTUAL


@dataclass
class Converter:
    """graphToPrompt in Python: flatten the graph into executable nodes, then resolve links."""

    graph: UiGraph
    object_info: ObjectInfo | None
    execs: dict[str, Exec] = field(default_factory=dict)
    _widgets: dict[str, dict[str, Any]] = field(default_factory=dict)
    _promoted_names: dict[str, set[str]] = field(default_factory=dict)
    _writes: dict[tuple[str | None, str], dict[str, Any]] | None = None
    #: what the conversion could not place (surplus widget values), one sentence each
    warnings: list[str] = field(default_factory=list)

    def flatten(self) -> None:
        for node in self.graph.root.nodes.values():
            self._add(Exec((), node, self.graph.root))

    def prompt(self) -> dict[str, Any]:
        self.flatten()
        self._writes = self._instance_writes()
        prompt = {ex.id: self.api_node(ex) for ex in self.execs.values() if self._emits(ex)}
        for body in prompt.values():  # inputs linked to nodes left out (muted) are dropped
            for name, value in list(body["inputs"].items()):
                if isinstance(value, list) and len(value) == 2 and value[0] not in prompt:
                    del body["inputs"][name]
        return prompt

    # ---------------------------------------------------------------- flattening

    def subgraph(self, node: UiNode) -> SubgraphDef | None:
        return self.graph.subgraphs.get(node.type)

    def _add(self, ex: Exec) -> None:
        self.execs[ex.id] = ex
        sub = self.subgraph(ex.node)
        if sub is None:
            return
        path = (*ex.path, ex.node.id)
        if len(path) > _MAX_DEPTH or sub.scope.id in self._enclosing(ex):
            raise self.graph.fail(f"node {ex.id} ({sub.scope.name}) contains itself")
        for inner in sub.scope.nodes.values():
            self._add(Exec(path, inner, sub.scope, ex))

    def _enclosing(self, ex: Exec) -> set[str]:
        found: set[str] = set()
        holder = ex.instance
        while holder is not None:
            found.add(holder.node.type)
            holder = holder.instance
        return found

    def _emits(self, ex: Exec) -> bool:
        return runs(ex.node) and self.subgraph(ex.node) is None

    def inputs_of(self, ex: Exec) -> tuple[UiInput, ...]:
        return self.inputs_of_node(ex.node)

    # ---------------------------------------------------------------- one node

    def api_node(self, ex: Exec) -> dict[str, Any]:
        node = ex.node
        info = (self.object_info or {}).get(node.type)
        inputs: dict[str, Any] = {name: _wrap(v) for name, v in self.widgets_of(ex).items()}
        for index, entry in enumerate(self.inputs_of(ex)):
            resolved = self.resolve_input(ex, index, set())
            if isinstance(resolved, Value):
                inputs[entry.name] = _wrap(resolved.value)
            elif isinstance(resolved, Origin):
                inputs[entry.name] = [resolved.node, resolved.slot]
        return {"inputs": inputs, "class_type": node.type, "_meta": {"title": _title(node, info)}}

    def widgets_of(self, ex: Exec) -> dict[str, Any]:
        """Widget name → value as the prompt is made: loaded values, then what the instances'
        ``serialize`` wrote into the widgets their inputs reach (``SubgraphNode.serialize``)."""
        loaded = self.loaded(ex)
        if self._writes is None:
            return loaded
        written = self._writes.get((ex.scope.id, ex.node.id), {})
        return {**loaded, **{k: v for k, v in written.items() if k in loaded}}

    def loaded(self, ex: Exec) -> dict[str, Any]:
        """Widget name → value once the file is loaded: a node's own widgets, or the widgets
        promoted to an instance."""
        if ex.id not in self._widgets:
            sub = self.subgraph(ex.node)
            if sub is not None:
                self._widgets[ex.id] = self._promoted(ex, sub)
            elif self.object_info is not None and ex.node.type in self.object_info:
                self._widgets[ex.id], surplus = read_widgets(ex.node, self.object_info)
                if any(v not in (None, "") for v in surplus) and self._emits(ex):
                    self.warnings.append(self._surplus(ex, surplus))
            else:
                self._widgets[ex.id] = {}
        return self._widgets[ex.id]

    def _instance_writes(self) -> dict[tuple[str | None, str], dict[str, Any]]:
        """Each instance's widget values, written (as its ``serialize`` does before every
        conversion) into the inner widgets its inputs' links reach. Inner nodes are shared by the
        instances of a definition: the last instance written wins."""
        writes: dict[tuple[str | None, str], dict[str, Any]] = {}
        done: set[tuple[str | None, str]] = set()
        ordered = sorted(self.execs.values(), key=lambda e: len(e.path) > 0)  # root nodes first
        for ex in ordered:
            sub = self.subgraph(ex.node)
            if sub is None or (ex.scope.id, ex.node.id) in done:
                continue
            done.add((ex.scope.id, ex.node.id))
            slots = {s.name: s for s in sub.inputs}
            names = {e.name for e in self.inputs_of(ex)}
            for name, value in self.loaded(ex).items():
                for link_id in slots[name].links if name in names and name in slots else ():
                    link = sub.scope.links.get(link_id)
                    node = sub.scope.nodes.get(link.target) if link else None
                    # the input that holds the link (a link no input holds was dropped at load)
                    entry = next((e for e in self.inputs_of_node(node) if e.link == link_id), None) if node else None
                    if node is not None and entry is not None and entry.widget is not None:
                        writes.setdefault((sub.scope.id, node.id), {})[entry.widget] = value
        return writes

    def _slot_target(self, sub: SubgraphDef, link_id: int) -> tuple[UiNode, UiInput] | None:
        """The inner node and input a subgraph input's link reached when the instance promoted its
        widget: the input at the saved ``target_slot`` in the frontend's slot order (1.32.9 reads
        it there before it re-points the link, so a widget saved in another order is copied from
        the slot that now has that index)."""
        link = sub.scope.links.get(link_id)
        target = sub.scope.nodes.get(link.target) if link else None
        if link is None or target is None:
            return None
        inputs = self.inputs_of_node(target)
        return (target, inputs[link.target_slot]) if 0 <= link.target_slot < len(inputs) else None

    def _surplus(self, ex: Exec, surplus: list[Any]) -> str:
        info = (self.object_info or {}).get(ex.node.type)
        shown = ", ".join(repr(v)[:40] for v in surplus[:4]) + (", …" if len(surplus) > 4 else "")
        return (
            f"{self.graph.where}: node {ex.id} '{_title(ex.node, info)}' ({ex.node.type}) has "
            f"{len(surplus)} saved widget value(s) that no input of the server's {ex.node.type} takes: "
            f"{shown}; they are ignored. The node is of another version than the server's, or has widgets "
            "its JavaScript adds: check its inputs, or convert with the server's own frontend "
            "(--comfy-convert frontend)"
        )

    def _promoted(self, ex: Exec, sub: SubgraphDef) -> dict[str, Any]:
        """The widgets of an instance: one per input whose subgraph slot feeds an inner widget,
        valued from the inner widget, then ``widgets_values``, then ``proxyWidgets`` entries."""
        widgets: list[list[Any]] = []
        slots = {s.name: s for s in sub.inputs}
        for entry in self.inputs_of(ex):
            slot = slots.get(entry.name)
            for link_id in slot.links if slot else ():
                found = self._inner_widget(ex, sub, link_id)
                if found is not None:
                    widgets.append([slot.name if slot else entry.name, found.value])
                    break
        values = ex.node.widgets if isinstance(ex.node.widgets, list) else []
        for index, value in enumerate(values[:len(widgets)]):
            widgets[index][1] = value
        self._promoted_names[ex.id] = {name for name, _ in widgets}
        proxies = _proxy_widgets(ex.node)
        if proxies is not None:  # the proxyWidgets extension reorders and replaces them
            named = {name for _, name in proxies}
            by_name = {w[0]: w for w in reversed(widgets)}
            widgets = [w for w in widgets if w[0] not in named]
            widgets += [by_name[name] for node_id, name in proxies if node_id == "-1" and name in by_name]
            for index, value in enumerate(values[:len(proxies)]):
                node_id, name = proxies[index]
                if node_id == "-1" and value is not None and name in by_name:
                    by_name[name][1] = value
        result: dict[str, Any] = {}
        for name, value in widgets:
            result.setdefault(name, value)
        return result

    def _inner_widget(self, ex: Exec, sub: SubgraphDef, link_id: int) -> Value | None:
        found = self._slot_target(sub, link_id)
        if found is None or found[1].widget is None:
            return None
        target, entry = found
        inner = Exec((*ex.path, ex.node.id), target, sub.scope, ex)
        values = self.loaded(self.execs.get(inner.id, inner))
        return Value(values[entry.widget]) if entry.widget in values else None

    def inputs_of_node(self, node: UiNode) -> tuple[UiInput, ...]:
        """A node's input slots as the frontend (1.32.9) builds them: the class's sockets, then a
        slot for each widget (each with the saved link of its name), then saved slots the class
        lacks."""
        sub = self.subgraph(node)
        if sub is not None:
            return instance_inputs(node, sub)
        if self.object_info is None or node.type not in self.object_info:
            return node.inputs
        info = self.object_info
        layout = [(n, spec) for n, spec in widget_walk(node, info)[0] if is_widget(spec)]
        widgets = [n for n, _ in layout]
        saved: dict[str, UiInput] = {}
        for entry in node.inputs:
            saved.setdefault(entry.name, entry)
        sockets = self._sockets(node, widgets)
        names = [*sockets, *widgets]
        types = {n: _slot_type(s) for n, s in layout}
        slots = [UiInput(n, types.get(n) or _widget_type(info, node.type, n), saved[n].link if n in saved else None,
                         n if n in types else None)
                 for n in names]  # sockets, then widgets
        keep_next = False
        for entry in node.inputs:  # saved slots the server's class lacks
            if entry.name in names:
                continue
            # one with a widget the class lacks is dropped, and the frontend (1.32.9) then keeps
            # the next one unchecked: it removes while walking forward
            if keep_next or entry.widget is None:
                slots.append(entry)
                keep_next = False
            else:
                keep_next = True
        return tuple(slots)

    def _sockets(self, node: UiNode, widgets: list[str]) -> list[str]:
        """The class's socket inputs; an autogrow group stands for its saved sockets
        (``images.image0``…), which the frontend names after the group."""
        names: list[str] = []
        for name in input_names(self.object_info or {}, node.type):
            spec = input_spec(self.object_info, node.type, name)
            if name in widgets:
                continue
            if kind(spec) == AUTOGROW:
                names += [e.name for e in node.inputs if e.name.startswith(name + ".") and e.name not in names]
            else:
                names.append(name)
        return names

    # ---------------------------------------------------------------- links

    def resolve_input(self, ex: Exec, slot: int, visited: set[tuple[Any, ...]], kind: str | None = None) -> Resolved:
        """What feeds input ``slot`` of ``ex`` (``ExecutableNodeDTO.resolveInput``)."""
        self._visit(visited, (ex.scope.id, ex.node.id, "I", slot), ex)
        inputs = self.inputs_of(ex)
        if slot >= len(inputs) or inputs[slot].link is None:
            return None
        entry = inputs[slot]
        link = ex.scope.links.get(entry.link) if entry.link is not None else None
        if link is None:
            raise self.graph.fail(f"link {entry.link} is used by input '{entry.name}' of node {ex.id} "
                                  f"({ex.node.type}) in {ex.scope.name} but is not in its 'links'")
        holder = ex.instance
        if holder is not None and link.source == INPUT_NODE:
            return self._through_instance_input(holder, link.slot, visited)
        source = ex.scope.nodes.get(link.source)
        if source is None:
            raise self.graph.fail(f"link {entry.link} comes from node {link.source}, which is not in {ex.scope.name}")
        return self.resolve_output(self.execs[":".join((*ex.path, source.id))], link.slot, kind or entry.type, visited)

    def _through_instance_input(self, holder: Exec, slot: int, visited: set[tuple[Any, ...]]) -> Resolved:
        inputs = self.inputs_of(holder)
        if slot >= len(inputs):
            raise self.graph.fail(f"subgraph instance {holder.id} ({holder.node.type}) has no input {slot}")
        outer = inputs[slot]
        if outer.link is None:  # SubgraphNode.getWidgetFromSlot: the promoted widget's value
            promoted = self.widgets_of(holder)
            name = outer.name if outer.name in self._promoted_names.get(holder.id, ()) else outer.widget
            return Value(promoted[name]) if name is not None and name in promoted else None
        link = holder.scope.links.get(outer.link)
        if link is None:
            raise self.graph.fail(f"link {outer.link} into subgraph instance {holder.id} is not in {holder.scope.name}")
        return self.resolve_input(holder, slot, visited)  # the frontend re-points link.target_slot here

    def resolve_output(self, ex: Exec, slot: int, kind: str, visited: set[tuple[Any, ...]]) -> Resolved:
        """The running node behind output ``slot`` of ``ex`` (``resolveOutput``)."""
        self._visit(visited, (ex.scope.id, ex.node.id, "O", slot), ex)
        if ex.node.mode == BYPASSED:
            index = self._bypass_slot(ex, slot, kind)
            return None if index < 0 else self.resolve_input(ex, index, visited)
        sub = self.subgraph(ex.node)
        if sub is not None:
            return self._instance_output(ex, sub, slot, kind, visited)
        if ex.node.type == "PrimitiveNode":
            values = ex.node.widgets
            first = next(iter(values.values()), None) if isinstance(values, Mapping) else (values[0] if values else None)
            return Value(first)
        if ex.node.type in VIRTUAL:
            inputs = ex.node.inputs
            if slot < len(inputs) and inputs[slot].link is not None:
                return self.resolve_input(ex, slot, visited, kind)
            return None
        return Origin(ex.id, slot)

    def _instance_output(self, ex: Exec, sub: SubgraphDef, slot: int, kind: str, visited: set[tuple[Any, ...]]) -> Resolved:
        if slot >= len(sub.outputs):
            raise self.graph.fail(f"a link uses output {slot} of subgraph instance {ex.id} ({sub.scope.name}), "
                                  f"which has {len(sub.outputs)} outputs")
        link = next((sub.scope.links[i] for i in sub.outputs[slot].links if i in sub.scope.links), None)
        if link is None or link.target != OUTPUT_NODE:
            return None
        inner = self.execs.get(":".join((*ex.path, ex.node.id, link.source)))
        if inner is None:
            raise self.graph.fail(f"{sub.scope.name} links its output '{sub.outputs[slot].name}' from node "
                                  f"{link.source}, which it does not contain")
        return self.resolve_output(inner, link.slot, kind, visited)

    def _bypass_slot(self, ex: Exec, slot: int, kind: str) -> int:
        inputs = self.inputs_of(ex)
        sub = self.subgraph(ex.node)
        outputs = instance_outputs(ex.node, sub) if sub else ex.node.outputs
        out_type = outputs[slot] if slot < len(outputs) else "*"
        if kind in ("*", ""):
            return slot if len(inputs) > slot else 0
        if slot < len(inputs) and valid_connection(inputs[slot].type, out_type) and valid_connection(inputs[slot].type, kind):
            return slot
        exact = next((i for i, e in enumerate(inputs) if e.type == kind), -1)
        if exact >= 0:
            return exact
        return next((i for i, e in enumerate(inputs)
                     if valid_connection(e.type, out_type) and valid_connection(e.type, kind)), -1)

    def _visit(self, visited: set[tuple[Any, ...]], key: tuple[Any, ...], ex: Exec) -> None:
        if key in visited:
            raise self.graph.fail(f"the links through node {ex.id} ({ex.node.type}) form a cycle")
        visited.add(key)


def valid_connection(a: str, b: str) -> bool:
    """LiteGraph.isValidConnection: ``*`` matches anything, ``A,B`` lists match any member."""
    a, b = ("" if t in ("", "*", "0") else t for t in (a, b))
    if not a or not b or a == b:
        return True
    a, b = a.lower(), b.lower()
    if "," not in a and "," not in b:
        return a == b
    return any(valid_connection(x, y) for x in a.split(",") for y in b.split(","))


def _widget_type(object_info: ObjectInfo, class_type: str, name: str) -> str:
    spec = input_spec(object_info, class_type, name)
    if not isinstance(spec, list | tuple) or not spec:  # in input_order only (a V3 hidden or dynamic input)
        return "*"
    return spec[0] if isinstance(spec[0], str) else "COMBO"


def _slot_type(spec: Any) -> str | None:
    if not isinstance(spec, list | tuple) or not spec:
        return None
    return "COMBO" if isinstance(spec[0], list) or is_dynamic_combo(spec) else str(spec[0])


def _proxy_widgets(node: UiNode) -> list[tuple[str, str]] | None:
    raw = (node.properties or {}).get("proxyWidgets")
    if not isinstance(raw, list):
        return None
    return [(str(e[0]), str(e[1])) for e in raw if isinstance(e, list | tuple) and len(e) == 2]


def _wrap(value: Any) -> Any:
    """A list literal is boxed, or the server would read it as a link (as the frontend does)."""
    return {"__value__": value} if isinstance(value, list) else value


def _title(node: UiNode, info: Mapping[str, Any] | None) -> str:
    if node.title:
        return node.title
    name = info.get("display_name") if info else None
    return name if isinstance(name, str) and name else node.type


# --- widget values ---------------------------------------------------------------------------


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
    return isinstance(spec[0], list) or spec[0] in WIDGET_TYPES or is_dynamic_combo(spec)


def widget_values(node: UiNode, object_info: ObjectInfo) -> dict[str, Any]:
    return read_widgets(node, object_info)[0]


def read_widgets(node: UiNode, object_info: ObjectInfo) -> tuple[dict[str, Any], list[Any]]:
    """Widget name → saved value, and the saved values no widget of the server's class took."""
    _, values, surplus = widget_walk(node, object_info)
    return values, surplus


Layout = list[tuple[str, Any]]  # (widget name, its /object_info spec), in the frontend's order


def widget_walk(node: UiNode, object_info: ObjectInfo) -> tuple[Layout, dict[str, Any], list[Any]]:
    """The node's widgets as the frontend creates them while it loads the saved values: each
    takes the next value in order, and a V3 dynamic combo, once it has its value, inserts the
    widgets of the chosen option right after itself (``resize_type`` → ``resize_type.width``…;
    frontend 1.45.19 ``dynamicWidgets``). Returns the layout, the values, and the surplus."""
    layout = WIDGET_LAYOUTS.get(node.type)
    if layout is not None and isinstance(node.widgets, list):
        taken = {name: value for name, value in zip(layout, node.widgets) if name is not None}
        specs = [(n, input_spec(object_info, node.type, n)) for n in layout if n is not None]
        return specs, taken, list(node.widgets[len(layout):])
    queue = deque((n, s) for n, s, _ in class_entries(object_info, node.type) if is_widget(s))
    walked: Layout = []
    result: dict[str, Any] = {}
    saved = node.widgets
    values = list(saved) if not isinstance(saved, Mapping) else []
    index, ran_out = 0, False
    while queue:
        name, spec = queue.popleft()
        walked.append((name, spec))
        if isinstance(saved, Mapping):  # some custom nodes save {name: value}
            if name in saved:
                result[name] = saved[name]
        elif index < len(values):
            result[name] = values[index]
            index += 1 + _extra_values(spec, name, values[index + 1:index + 2])
        else:
            ran_out = True
        _open_combo(queue, name, spec, result[name] if name in result else input_default(spec))
    if isinstance(saved, Mapping) or ran_out:  # the frontend's own widgets then keep no value
        return walked, result, []
    for name in FRONTEND_WIDGETS.get(node.type, ()):
        value = values[index] if index < len(values) else None
        result[name] = "" if value is None else value
        walked.append((name, None))
        index += 1
    return walked, result, values[index:]


def _open_combo(queue: deque[tuple[str, Any]], name: str, spec: Any, value: Any) -> None:
    """A dynamic combo's chosen option: its widgets come next (an unknown option brings none)."""
    if is_dynamic_combo(spec):
        chosen = option_inputs(spec, value) or []
        queue.extendleft(reversed([(f"{name}.{n}", s) for n, s, _ in chosen if is_widget(s)]))


def _extra_values(spec: Sequence[Any], name: str, following: list[Any]) -> int:
    """How many values after this widget's belong to a companion widget (0 or 1)."""
    if not following:
        return 0
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
    if following[0] is None and any(str(k).endswith("upload") for k in options):
        return 1  # an upload button saved without a value (the frontend's audio/video upload)
    if not isinstance(following[0], str):
        return 0
    seed_like = options.get("control_after_generate") or name in SEED_NAMES or spec[0] == "INT"
    if seed_like and following[0] in CONTROL_VALUES:
        return 1
    upload = any(str(k).endswith("upload") for k in options)
    return 1 if upload and following[0] in _UPLOAD_VALUES else 0
