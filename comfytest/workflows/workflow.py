"""API-format workflows: loading, validation, selectors, seed pinning and patches.

A workflow is the JSON that ComfyUI's "Export (API)" writes: ``{node_id: {"class_type": ...,
"inputs": {...}, "_meta": {"title": ...}}}``. An input is either a literal value or a link
``[source_node_id, output_index]``. A :class:`Workflow` is immutable; every operation here
(:func:`pin_seeds`, :func:`apply_patches`, :func:`rewrite_inputs`) returns a new one, so the
loaded file is never changed by a test.

Selectors
---------
A selector names nodes, in a settings file or in Python:

=========================  ==========================================================
``"5"``, ``"#5"``          the node with id 5 (``#`` also works for ids like ``"12:3"``)
``"KSampler"``             every node whose class_type is KSampler
``"class:KSampler"``       the same, explicitly (for class names containing a dot)
``"title:Positive"``       nodes whose ``_meta.title`` is exactly "Positive"
``"positive"``             the node(s) linked into any node's ``positive`` input
``"negative"``             the same for ``negative``
``"role:latent_image"``    the node(s) linked into any node's ``latent_image`` input
``"KSampler.positive"``    the node(s) linked into the ``positive`` input of KSampler nodes
=========================  ==========================================================

A selector that must name one node (patches, input files) and matches several fails with the
list of matches; prefix it with ``all:`` (``"all:CLIPTextEncode"``) to patch every match.

Patches
-------
``{selector: {input_name: value}}``, e.g. ``{"KSampler": {"steps": 2}, "positive": {"text":
"a red cube"}}``. Input names are checked against ``/object_info`` (and the node's own inputs),
with a did-you-mean. A value may replace a link: the link is dropped and
:class:`AppliedPatch` records ``replaced_link=True``. A value that is itself a link
(``["4", 0]``) must point at an existing node.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeGuard

from comfytest.errors import PatchError, WorkflowError, clip
from comfytest.workflows.dynamic import (
    LiveInput,
    combo_keys,
    dynamic_parent,
    input_default,
    is_literal,
    live_inputs,
    option_input_names,
    options_with,
)

ObjectInfo = Mapping[str, Any]

_EXPORT_HINT = (
    "it is a UI-format workflow (the file ComfyUI's normal Save writes). comfytest runs API-format "
    "workflows: in ComfyUI use Workflow menu → Export (API) (in older versions, enable "
    '"Dev mode options" in the settings, then "Save (API Format)")'
)


@dataclass(frozen=True)
class Node:
    """One node; ``inputs`` is read-only (links are ``[node_id, output_index]`` lists)."""

    id: str
    class_type: str
    inputs: Mapping[str, Any]
    title: str | None = None
    #: every other key of the node object (``_meta`` included), written back by to_prompt
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def label(self) -> str:
        """``5 'KSampler' (KSampler)``: how messages name a node."""
        title = f" '{clip(self.title)}'" if self.title else ""
        return f"{clip(self.id, 40)}{title} ({clip(self.class_type)})"

    def with_inputs(self, updates: Mapping[str, Any]) -> Node:
        inputs = {**self.inputs, **copy.deepcopy(dict(updates))}
        return Node(self.id, self.class_type, MappingProxyType(inputs), self.title, self.extra)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"inputs": dict(self.inputs), "class_type": self.class_type}
        body.update(self.extra)
        return copy.deepcopy(body)


@dataclass(frozen=True)
class Workflow:
    """An API-format workflow; ``source`` is the file it came from, if any."""

    nodes: Mapping[str, Node]
    source: Path | None = None

    @property
    def name(self) -> str:
        return str(self.source) if self.source else "<workflow>"

    def to_prompt(self) -> dict[str, Any]:
        """A fresh deep copy of the API-format dict to POST (``_meta`` kept)."""
        return {node_id: node.to_json() for node_id, node in self.nodes.items()}

    def digest(self) -> str:
        """sha256 of the canonical JSON: equal prompts give equal digests."""
        text = json.dumps(self.to_prompt(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def replace_nodes(self, changed: Iterable[Node]) -> Workflow:
        nodes = dict(self.nodes)
        nodes.update((node.id, node) for node in changed)
        return Workflow(MappingProxyType(nodes), self.source)


def is_link(value: object) -> TypeGuard[Sequence[Any]]:
    """``[node_id, output_index]``: how API format writes a connection."""
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


# --- loading -------------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    """Parse a JSON file; errors name the file, line and column."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise WorkflowError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if not text.strip():
        raise WorkflowError(f"{path}: the file is empty; expected an API-format workflow")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from exc
    except RecursionError:
        raise WorkflowError(f"{path}: nested too deeply to read (objects or arrays inside each other "
                            "about a thousand levels or more); no workflow is built that way") from None


def is_ui_format(data: object) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def is_workflow_file(data: object) -> bool:
    """True for API- or UI-format workflows: JSON such as package.json is neither."""
    if is_ui_format(data):
        return True
    if not isinstance(data, dict):
        return False
    return any(isinstance(v, dict) and ("class_type" in v or "inputs" in v) for v in data.values())


def load_workflow(path: Path | str) -> Workflow:
    path = Path(path)
    return parse_workflow(read_json(path), path)


def parse_workflow(data: object, source: Path | None = None) -> Workflow:
    """Validate API-format data into a Workflow; a WorkflowError says what and where."""
    where = str(source) if source else "<workflow>"
    if is_ui_format(data):
        raise WorkflowError(f"{where}: {_EXPORT_HINT}")
    if not isinstance(data, dict):
        raise WorkflowError(f"{where}: expected a JSON object of nodes, found {_kind(data)}")
    if not data:
        raise WorkflowError(f"{where}: the workflow has no nodes")
    nodes = {str(k): _parse_node(where, str(k), v) for k, v in data.items()}
    for node in nodes.values():
        _check_links(where, node, nodes)
    _check_cycles(where, nodes)
    return Workflow(MappingProxyType(nodes), source)


def _check_cycles(where: str, nodes: Mapping[str, Node]) -> None:
    """A cycle of links cannot run (ComfyUI rejects or recurses on it): name every link of it."""
    done: set[str] = set()
    for start in nodes:
        if start in done:
            continue
        path: list[tuple[str, str]] = []  # (node, input) links followed from start
        stack = [(start, iter(_links(nodes[start])))]
        on_path = {start}
        while stack:
            node_id, links = stack[-1]
            step = next(links, None)
            if step is None:
                stack.pop()
                on_path.discard(node_id)
                done.add(node_id)
                if path:
                    path.pop()
                continue
            name, target = step
            if target in on_path:
                cycle = [*path[next((i for i, (n, _) in enumerate(path) if n == target), len(path)):], (node_id, name)]
                steps = " → ".join(f"node {nodes[n].label()} input '{clip(i, 40)}'" for n, i in cycle)
                raise WorkflowError(
                    f"{where}: the links form a cycle: {steps} → node {nodes[target].label()}. "
                    "A workflow must be acyclic; connect one of these inputs to another node."
                )
            if target not in done and target in nodes:
                path.append((node_id, name))
                on_path.add(target)
                stack.append((target, iter(_links(nodes[target]))))


def _links(node: Node) -> list[tuple[str, str]]:
    return [(name, str(value[0])) for name, value in node.inputs.items() if is_link(value)]


def _parse_node(where: str, node_id: str, raw: object) -> Node:
    if not isinstance(raw, dict):
        raise WorkflowError(f"{where}: node {node_id} is {_kind(raw)}, expected an object")
    class_type = raw.get("class_type")
    if not isinstance(class_type, str) or not class_type:
        raise WorkflowError(f"{where}: node {node_id} has no class_type")
    inputs = raw.get("inputs")
    if not isinstance(inputs, dict):
        raise WorkflowError(
            f"{where}: node {node_id} ({class_type}): 'inputs' must be an object, "
            f"found {_kind(inputs)}"
        )
    extra = {k: v for k, v in raw.items() if k not in ("class_type", "inputs")}
    meta = extra.get("_meta")
    title = meta.get("title") if isinstance(meta, dict) else None
    return Node(
        node_id,
        class_type,
        MappingProxyType(copy.deepcopy(inputs)),
        title if isinstance(title, str) else None,
        MappingProxyType(copy.deepcopy(extra)),
    )


def _check_links(where: str, node: Node, nodes: Mapping[str, Node]) -> None:
    for name, value in node.inputs.items():
        if is_link(value) and value[0] not in nodes:
            raise WorkflowError(
                f"{where}: node {node.label()} input '{name}' links to node {value[0]}, "
                "which is not in the workflow"
            )


def _kind(value: object) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


# --- seeds ---------------------------------------------------------------------------------

SEED_NAMES = frozenset({"seed", "noise_seed"})


@dataclass(frozen=True)
class PinnedSeed:
    node_id: str
    class_type: str
    input: str
    old: Any
    new: int


def input_spec(object_info: ObjectInfo | None, class_type: str, name: str) -> Any:
    """The ``[type, options]`` spec of one input from /object_info, or None."""
    sections = ((object_info or {}).get(class_type) or {}).get("input") or {}
    for section in ("required", "optional"):
        spec = (sections.get(section) or {}).get(name)
        if spec is not None:
            return spec
    return None


def seed_inputs(workflow: Workflow, object_info: ObjectInfo | None = None) -> list[tuple[str, str]]:
    """(node_id, input) of every literal seed: ``seed``/``noise_seed``, or INT '*seed*' inputs."""
    found = []
    for node in workflow.nodes.values():
        for name, value in node.inputs.items():
            if not is_link(value) and _is_seed(object_info, node.class_type, name):
                found.append((node.id, name))
    return found


def _is_seed(object_info: ObjectInfo | None, class_type: str, name: str) -> bool:
    spec = input_spec(object_info, class_type, name)
    if isinstance(spec, list) and spec:
        # the server knows the input: trust its type (a "seed_mode" combo is no seed)
        return "seed" in name.lower() and spec[0] == "INT"
    return name in SEED_NAMES


def pin_seeds(
    workflow: Workflow, seed: int, object_info: ObjectInfo | None = None
) -> tuple[Workflow, tuple[PinnedSeed, ...]]:
    """Set every seed input to ``seed``; returns the new workflow and what changed."""
    pinned = []
    for node_id, name in seed_inputs(workflow, object_info):
        node = workflow.nodes[node_id]
        pinned.append(PinnedSeed(node_id, node.class_type, name, node.inputs[name], seed))
        workflow = workflow.replace_nodes([node.with_inputs({name: seed})])
    return workflow, tuple(pinned)


# --- selectors -----------------------------------------------------------------------------

ROLE_WORDS = frozenset({"positive", "negative"})


def select(workflow: Workflow, selector: str, *, one: bool) -> tuple[str, ...]:
    """Node ids matching ``selector`` (syntax in the module docstring)."""
    ids = _match(workflow, selector.strip())
    if not ids:
        titled = [n.title for n in workflow.nodes.values() if n.title and n.title.lower() == selector.strip().lower()]
        hint = f"\nDid you mean 'title:{titled[0]}'? A bare name selects a node class." if titled else ""
        raise PatchError(
            f"{workflow.name}: selector '{selector}' matches no node.{hint} Nodes:\n"
            + _listing(workflow, workflow.nodes)
        )
    if one and len(ids) > 1:
        raise PatchError(
            f"{workflow.name}: selector '{selector}' matches {len(ids)} nodes, expected one:\n"
            + _listing(workflow, ids)
            + "\nName one with '#<id>' or 'title:<title>', or use 'all:"
            + f"{selector}' to mean every match"
        )
    return ids


def _match(workflow: Workflow, sel: str) -> tuple[str, ...]:
    nodes = workflow.nodes.values()
    prefix, _, rest = sel.partition(":")
    if sel.startswith("#") or prefix == "id":
        wanted = sel[1:] if sel.startswith("#") else rest
        return (wanted,) if wanted in workflow.nodes else ()
    if prefix == "class":
        return tuple(n.id for n in nodes if n.class_type == rest)
    if prefix == "title":
        return tuple(n.id for n in nodes if n.title == rest)
    if prefix == "role":
        return _linked_into(workflow, None, rest)
    if sel in workflow.nodes:
        return (sel,)
    if sel in ROLE_WORDS:
        return _linked_into(workflow, None, sel)
    if "." in sel:
        class_type, _, name = sel.rpartition(".")
        return _linked_into(workflow, class_type, name)
    return tuple(n.id for n in nodes if n.class_type == sel)


def split_input_path(workflow: Workflow, path: str) -> tuple[str, str]:
    """``"<selector>.<input>"`` (a matrix key) split where the selector matches a node: at the
    last dot (``KSampler.positive.text`` → ``KSampler.positive`` + ``text``), else at an earlier
    one, for V3 dynamic inputs, whose names hold dots (``ResizeImageMaskNode.resize_type.width``
    → ``ResizeImageMaskNode`` + ``resize_type.width``). Nothing matching: the last dot."""
    dots = [i for i, c in enumerate(path) if c == "."]
    for i in reversed(dots):
        selector, name = path[:i], path[i + 1:]
        if selector.strip() and name and _match(workflow, selector.removeprefix("all:").strip()):
            return selector, name
    selector, _, name = path.rpartition(".")
    return selector, name


def _linked_into(workflow: Workflow, class_type: str | None, name: str) -> tuple[str, ...]:
    found: dict[str, None] = {}  # an ordered set: several samplers may share one prompt
    for node in workflow.nodes.values():
        value = node.inputs.get(name)
        if is_link(value) and class_type in (None, node.class_type):
            found[value[0]] = None
    return tuple(found)


def _listing(workflow: Workflow, ids: Iterable[str]) -> str:
    return "\n".join(f"  {workflow.nodes[i].label()}" for i in ids)


# --- patches -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedPatch:
    selector: str
    node_id: str
    class_type: str
    title: str | None
    input: str
    old: Any
    new: Any
    replaced_link: bool


def apply_patches(
    workflow: Workflow,
    patches: Mapping[str, Mapping[str, Any]],
    object_info: ObjectInfo | None = None,
) -> tuple[Workflow, tuple[AppliedPatch, ...]]:
    """Apply ``{selector: {input: value}}``; returns a new workflow and what changed."""
    applied: list[AppliedPatch] = []
    for selector, values in patches.items():
        every = selector.startswith("all:")
        for node_id in select(workflow, selector.removeprefix("all:"), one=not every):
            node = workflow.nodes[node_id]
            applied.extend(_patch_one(workflow, object_info, selector, node, values))
            workflow = workflow.replace_nodes([_with_dynamic(node.with_inputs(values), node, object_info)])
    return workflow, tuple(applied)


def _patch_one(
    workflow: Workflow,
    object_info: ObjectInfo | None,
    selector: str,
    node: Node,
    values: Mapping[str, Any],
) -> list[AppliedPatch]:
    known = valid_inputs(object_info, node, values)
    live = live_inputs(object_info or {}, node.class_type, {**node.inputs, **values})
    result = []
    for name, new in values.items():
        parent = dynamic_parent(live, name)
        if parent is not None and name not in live:
            raise PatchError(_not_in_option(workflow, node, selector, name, parent, {**node.inputs, **values}, live))
        if name not in known:
            raise PatchError(_unknown_input(workflow, node, selector, name, known))
        if is_link(new) and new[0] not in workflow.nodes:
            raise PatchError(
                f"{workflow.name}: patch '{selector}' links {node.label()}.{name} to node "
                f"{new[0]}, which is not in the workflow"
            )
        old = node.inputs.get(name)
        result.append(
            AppliedPatch(selector, node.id, node.class_type, node.title, name, old, new,
                         is_link(old))
        )
    return result


def valid_inputs(object_info: ObjectInfo | None, node: Node, values: Mapping[str, Any] | None = None) -> list[str]:
    """Input names a patch may set: /object_info's, with the sub-inputs of each V3 dynamic combo's
    chosen option (``resize_type.width``; chosen by ``values`` when the patch sets the combo too)
    and every autogrow socket, plus the node's own (dynamic inputs of classes the server lacks)."""
    names = list(live_inputs(object_info or {}, node.class_type, {**node.inputs, **(values or {})}))
    return names + [n for n in node.inputs if n not in names]


def _not_in_option(workflow: Workflow, node: Node, selector: str, name: str, parent: str,
                   values: Mapping[str, Any], live: Mapping[str, LiveInput]) -> str:
    option = values.get(parent)
    spec = live[parent].spec
    own = option_input_names(live, parent)
    sub = name[len(parent) + 1:].split(".")[0]
    holders = options_with(spec, sub)
    if option not in combo_keys(spec):
        fix = f"'{parent}' is {option!r}, which is none of its options: {', '.join(repr(k) for k in combo_keys(spec))}"
    elif holders:
        fix = (f"'{sub}' belongs to option {', '.join(repr(k) for k in holders)}: set "
               f"{{ \"{parent}\" = {holders[0]!r}, \"{name}\" = ... }} in the same patch")
    else:
        fix = f"no option of '{parent}' has '{sub}'"
    return (f"{workflow.name}: patch '{selector}': node {node.label()} has no input '{name}': option "
            f"{option!r} of its dynamic combo '{parent}' takes {', '.join(own)}; {fix}")


def _with_dynamic(patched: Node, before: Node, object_info: ObjectInfo | None) -> Node:
    """A patched node whose dynamic combos may have changed option: the old option's sub-inputs
    are dropped and the new one's widgets get their defaults, as switching the combo in ComfyUI
    does (values the patch set itself are kept)."""
    if not object_info:
        return patched
    old = live_inputs(object_info, before.class_type, before.inputs)
    inputs = dict(patched.inputs)
    for _ in range(8):  # a new option may bring another dynamic combo, with its own options
        live = live_inputs(object_info, patched.class_type, inputs)
        stale = [n for n in inputs if n in old and old[n].combo is not None and n not in live]
        fresh = {n: input_default(e.spec) for n, e in live.items()
                 if e.combo is not None and n not in inputs and is_literal(e.spec)}
        if not stale and not fresh:
            break
        for name in stale:
            del inputs[name]
        inputs.update(fresh)
    return Node(patched.id, patched.class_type, MappingProxyType(inputs), patched.title, patched.extra)


def _unknown_input(
    workflow: Workflow, node: Node, selector: str, name: str, known: list[str]
) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return (
        f"{workflow.name}: patch '{selector}': node {node.label()} has no input '{name}'.{hint}"
        f" Valid inputs: {', '.join(sorted(known))}"
    )


# --- input files ---------------------------------------------------------------------------


def content_name(data: bytes, suffix: str) -> str:
    """A content-addressed upload name: the same bytes always get the same name."""
    if suffix and not suffix.startswith("."):
        suffix = "." + suffix
    return f"comfytest_{hashlib.sha256(data).hexdigest()[:16]}{suffix}"


def upload_input(workflow: Workflow, selector: str, object_info: ObjectInfo | None = None) -> tuple[str, str]:
    """``(input name, upload subfolder)`` of the loader a case's ``inputs`` entry selects.

    The input is the one ``/object_info`` marks as an upload (``image_upload``,
    ``audio_upload``, ``video_upload``, ``file_upload``...), so LoadAudio, LoadVideo, Load3D and
    custom loaders work like LoadImage; without object_info, or with no marked input, ``image``.
    Load3D lists files of ``input/3d``, so its uploads go there."""
    (node_id,) = select(workflow, selector, one=True)
    node = workflow.nodes[node_id]
    names = [name for name in node.inputs if _is_upload(input_spec(object_info, node.class_type, name))]
    name = names[0] if names else "image"
    if name not in node.inputs or is_link(node.inputs[name]):
        raise PatchError(
            f"{workflow.name}: input file for '{selector}': node {node.label()} has no file input "
            "to upload to (expected a loader such as LoadImage, LoadAudio, LoadVideo or Load3D, "
            "whose input the server marks as an upload)"
        )
    return name, "3d" if node.class_type == "Load3D" else ""


def _is_upload(spec: Any) -> bool:
    options = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 else None
    return isinstance(options, Mapping) and any(
        str(k).endswith("_upload") and v is True for k, v in options.items())


def rewrite_inputs(workflow: Workflow, mapping: Mapping[str, str], object_info: ObjectInfo | None = None) -> Workflow:
    """Point the upload input of loader nodes (by selector) at uploaded names."""
    for selector, uploaded in mapping.items():
        (node_id,) = select(workflow, selector, one=True)
        name, _ = upload_input(workflow, selector, object_info)
        node = workflow.nodes[node_id]
        workflow = workflow.replace_nodes([node.with_inputs({name: uploaded})])
    return workflow
