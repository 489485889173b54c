"""The trace of intermediate outputs, and which node changed first (pure).

A ``Trace`` lists, in execution order, every node a prompt ran with its linked inputs, its own
settings (literal inputs) and a fingerprint of each output (taken on the server by comfytest's
tap node, see ``comfy.trace``). It is stored beside a case's baselines as ``trace.txt``, one
JSON line per node with sorted keys, so a review sees which node's output moved.

``first_change`` walks the obtained trace in execution order against the baseline's and names
the first node whose output left the baseline's trace while all its inputs still matched: the
change is inside that node. A node that loads a file (an upload, a model) and changed says so;
a node whose settings changed says the workflow changed. Images are compared with tolerance
(phash bits, channel statistics) so that drift the suite's own comparison tolerates is not a
change; when nothing leaves the tolerance, exact digests still point at the first node whose
values moved.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from comfytest.compare import picturesheet as sheet
from comfytest.compare.fingerprint import Tolerance, fingerprint_diff, short
from comfytest.compare.store import TRACE_FILE

HEADER = "# comfytest trace 1: one node per line in execution order (docs/baselines.md#the-trace-of-intermediate-outputs)"
_CLIP = 60


@dataclass(frozen=True)
class Output:
    slot: int
    type: str
    fingerprint: Mapping[str, Any]


@dataclass(frozen=True)
class TraceNode:
    node_id: str
    class_type: str
    title: str | None
    inputs: Mapping[str, str]  # input name → "<node>:<slot>" it is wired to
    settings: Mapping[str, Any]  # literal inputs, long values clipped
    outputs: tuple[Output, ...]
    loads_file: bool = False

    @property
    def label(self) -> str:
        """``node 2 'Warm tint' (CR Color Tint)``; a subgraph's nodes with their title path."""
        parts = self.node_id.split(":")
        path = [f"subgraph {':'.join(parts[:i])}" for i in range(1, len(parts))]
        title = " › ".join([*path, self.title] if self.title else path)
        return f"node {self.node_id} '{title}' ({self.class_type})" if title else f"node {self.node_id} ({self.class_type})"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"node": self.node_id, "class": self.class_type, "title": self.title,
                                "in": dict(self.inputs), "set": dict(self.settings),
                                "out": [{"slot": o.slot, "type": o.type, **o.fingerprint} for o in self.outputs]}
        if self.loads_file:
            data["file"] = True
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TraceNode:
        outputs = tuple(Output(int(o["slot"]), str(o["type"]), {k: v for k, v in o.items() if k not in ("slot", "type")})
                        for o in data.get("out", ()))
        return cls(str(data["node"]), str(data["class"]), data.get("title"), dict(data.get("in", {})),
                   dict(data.get("set", {})), outputs, bool(data.get("file", False)))


@dataclass(frozen=True)
class Trace:
    nodes: tuple[TraceNode, ...]
    #: small PNGs of image outputs by "<node>:<slot>" (``trace.png`` on disk, not in the text)
    pictures: Mapping[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def node(self, node_id: str) -> TraceNode | None:
        return next((n for n in self.nodes if n.node_id == node_id), None)

    def to_text(self) -> str:
        return "\n".join([HEADER, *(json.dumps(n.to_json(), ensure_ascii=False) for n in self.nodes)]) + "\n"

    @classmethod
    def from_text(cls, text: str) -> Trace:
        return cls(tuple(TraceNode.from_json(json.loads(line)) for line in text.splitlines()
                         if line.strip() and not line.startswith("#")))


class TraceCorrupt(ValueError):
    """A ``trace.txt`` that cannot be read."""


def read_trace(path: Path) -> Trace | None:
    """The trace stored at ``path`` (with the pictures of ``trace.png`` beside it); None when
    there is none."""
    if not path.is_file():
        return None
    try:
        trace = Trace.from_text(path.read_text(encoding="utf-8"))
        sheet = path.with_suffix(".png")
        return replace(trace, pictures=sheet_pictures(trace, sheet.read_bytes())) if sheet.is_file() else trace
    except (ValueError, KeyError, TypeError) as exc:
        raise TraceCorrupt(f"{path} is not a comfytest trace ({exc}); delete it and run pytest with "
                           "--comfy-update-baselines to record it again") from None


# --- building a trace ----------------------------------------------------------------------


def _link(value: Any) -> str | None:
    if isinstance(value, list | tuple) and len(value) == 2 and isinstance(value[1], int) and not isinstance(value[1], bool):
        return f"{value[0]}:{value[1]}"
    return None


def _setting(value: Any) -> Any:
    text = json.dumps(value, sort_keys=True, default=str)
    return value if len(text) <= _CLIP else f"{text[:_CLIP]}… ({len(text)} chars)"


def _natural(node_id: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", node_id)]


def execution_order(prompt: Mapping[str, Any], nodes: Iterable[str]) -> list[str]:
    """``nodes`` sorted so that every node comes after the nodes it takes inputs from (ties by
    id), as ComfyUI runs them."""
    wanted = set(nodes)
    deps = {n: {s.rsplit(":", 1)[0] for v in prompt[n].get("inputs", {}).values() if (s := _link(v))} & wanted
            for n in wanted}
    order: list[str] = []
    while deps:
        ready = sorted((n for n, d in deps.items() if not d), key=_natural) or sorted(deps, key=_natural)[:1]
        order.append(ready[0])
        del deps[ready[0]]
        for d in deps.values():
            d.discard(ready[0])
    return order


def build_trace(
    prompt: Mapping[str, Any], fingerprints: Mapping[tuple[str, int], Mapping[str, Any]],
    types: Mapping[tuple[str, int], str], loaders: Iterable[str] = (),
) -> Trace:
    """The trace of one tapped run: ``fingerprints`` and ``types`` by (node id, output slot);
    ``loaders`` are the nodes that load a file (model loaders, image uploads)."""
    loading = set(loaders)
    traced = {node for node, _ in types}
    pictures: dict[str, bytes] = {}
    nodes = []
    for node_id in execution_order(prompt, traced):
        node = prompt[node_id]
        inputs = node.get("inputs", {})
        meta = node.get("_meta")
        title = meta.get("title") if isinstance(meta, Mapping) and isinstance(meta.get("title"), str) else None
        outputs = tuple(Output(slot, kind, _without_thumb(fingerprints.get((node_id, slot)), f"{node_id}:{slot}", pictures))
                        for (n, slot), kind in sorted(types.items(), key=lambda t: t[0][1]) if n == node_id)
        nodes.append(TraceNode(
            node_id, str(node.get("class_type")), title,
            {k: s for k, v in sorted(inputs.items()) if (s := _link(v))},
            {k: _setting(v) for k, v in sorted(inputs.items()) if _link(v) is None},
            outputs, node_id in loading))
    return Trace(tuple(nodes), pictures)


def _without_thumb(fingerprint: Mapping[str, Any] | None, where: str, pictures: dict[str, bytes]) -> dict[str, Any]:
    """The fingerprint with its thumbnail moved to ``pictures``; the text keeps its size."""
    found = dict(fingerprint or {"kind": "missing"})
    thumb = found.pop("thumb", None)
    if isinstance(thumb, str):
        try:
            data = base64.b64decode(thumb, validate=True)
            with Image.open(io.BytesIO(data)) as img:
                found["thumb"] = list(img.size)
            pictures[where] = data
        except (ValueError, OSError):
            pass  # no picture then; the fingerprint still compares
    return found


# --- trace.png: the pictures of image outputs, one cell each in trace order ----------------


def _cells(trace: Trace) -> list[tuple[str, tuple[int, int]]]:
    """(``node:slot``, thumbnail size) of every image output with a picture size, in order."""
    return [(f"{n.node_id}:{o.slot}", (int(o.fingerprint["thumb"][0]), int(o.fingerprint["thumb"][1])))
            for n in trace.nodes for o in n.outputs if isinstance(o.fingerprint.get("thumb"), list)]


def picture_sheet(trace: Trace) -> bytes | None:
    """``trace.png``: every image output's picture in a grid, in trace order; None when one lacks it."""
    cells = _cells(trace)
    if not cells or any(where not in trace.pictures for where, _ in cells):
        return None
    return sheet.pack([trace.pictures[where] for where, _ in cells])


def sheet_pictures(trace: Trace, data: bytes) -> dict[str, bytes]:
    """The pictures cut back out of ``trace.png`` (empty when it does not fit the trace)."""
    cells = _cells(trace)
    return dict(zip((where for where, _ in cells), sheet.unpack(data, [size for _, size in cells]), strict=False))


# --- comparing two traces ------------------------------------------------------------------


DEFAULT_TOLERANCE = Tolerance()

State = Literal["same", "origin", "loaded", "settings", "new", "follows"]


@dataclass(frozen=True)
class NodeCheck:
    """One node of the obtained trace against the baseline's."""

    node: TraceNode
    state: State
    outputs: Mapping[int, str] = field(default_factory=dict)  # slot → why it differs
    settings: tuple[str, ...] = ()  # "amount: 2 → 3"
    baseline: TraceNode | None = None

    @property
    def changed(self) -> bool:
        return self.state != "same"

    def to_json(self) -> dict[str, Any]:
        base = {o.slot: o.fingerprint for o in self.baseline.outputs} if self.baseline else {}
        return {"node_id": self.node.node_id, "class_type": self.node.class_type, "title": self.node.title,
                "label": self.node.label, "state": self.state, "settings": list(self.settings),
                "outputs": [{"slot": o.slot, "type": o.type, "differs": self.outputs.get(o.slot),
                             "baseline": base.get(o.slot), "obtained": dict(o.fingerprint)} for o in self.node.outputs]}


def _check(node: TraceNode, base: TraceNode | None, checked: Mapping[str, NodeCheck], tol: Tolerance | None) -> NodeCheck:
    if base is None:
        return NodeCheck(node, "new")
    theirs = {o.slot: o.fingerprint for o in base.outputs}

    def differs(a: Mapping[str, Any] | None, b: Mapping[str, Any]) -> str | None:
        if a is None:
            return "not in the baseline's trace"
        if tol is None:  # exact: the digests (and every other field) must be equal
            return None if dict(a) == dict(b) else fingerprint_diff(a, b, Tolerance(0, 0.0, 0.0)) or "exact values differ"
        return fingerprint_diff(a, b, tol)

    outputs = {o.slot: why for o in node.outputs if (why := differs(theirs.get(o.slot), o.fingerprint))}
    settings = tuple(f"{k}: {short(base.settings.get(k))} → {short(node.settings.get(k))}"
                     for k in sorted(set(base.settings) | set(node.settings)) if base.settings.get(k) != node.settings.get(k))
    if not outputs:
        return NodeCheck(node, "same", baseline=base)
    inputs_same = all(_input_same(src, checked) for src in node.inputs.values()) and dict(node.inputs) == dict(base.inputs)
    state: State = "follows" if not inputs_same else "settings" if settings else "loaded" if node.loads_file else "origin"
    return NodeCheck(node, state, outputs, settings, base)


def _input_same(source: str, checked: Mapping[str, NodeCheck]) -> bool:
    node, _, slot = source.rpartition(":")
    check = checked.get(node)
    return check is not None and (check.state == "same" or (slot.isdigit() and int(slot) not in check.outputs))


Status = Literal["found", "drift", "no_change"]


@dataclass(frozen=True)
class Finding:
    """What the walk found: the first node that changed on its own (``origin``) and every node."""

    status: Status
    chain: tuple[NodeCheck, ...]
    origins: tuple[NodeCheck, ...]

    @property
    def first(self) -> NodeCheck | None:
        return self.origins[0] if self.origins else None

    def message(self) -> str:
        first = self.first
        if first is None:
            return ("trace: no intermediate output differs from the baseline's trace, exactly or within tolerance "
                    "(the difference is in how outputs were saved or compared, not in a node's result)")
        lines = [f"first change at {_sentence(first, self.status)}"]
        if self.origins[1:]:
            lines.append("also changed on their own: " + "; ".join(_sentence(c, self.status) for c in self.origins[1:]))
        follows = [c.node.node_id for c in self.chain if c.state == "follows"]
        if follows:
            lines.append(f"{len(follows)} later node(s) differ because their inputs did: {', '.join(follows)}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        first = self.first
        return {"status": self.status, "message": self.message(),
                "first_change": None if first is None else {
                    "node_id": first.node.node_id, "class_type": first.node.class_type, "title": first.node.title,
                    "state": first.state},
                "chain": [c.to_json() for c in self.chain]}


def _sentence(check: NodeCheck, status: Status) -> str:
    node = check.node
    types = {o.slot: o.type for o in node.outputs}
    outs = "; ".join(f"{types.get(slot, '?')} output {slot} differs ({why})" if len(types) > 1
                     else f"{types.get(slot, '?')} output differs ({why})" for slot, why in sorted(check.outputs.items()))
    drift = (" — only beyond exact equality: no output left the trace's tolerance, so on another device this "
             "can be numerical drift") if status == "drift" else ""
    if check.state == "new":
        return (f"{node.label}: not in the baseline's trace — the workflow changed since the trace was recorded; "
                "record it again with --comfy-update-baselines")
    if check.state == "settings":
        return f"{node.label}: its settings changed since the baseline ({', '.join(check.settings)}); {outs}{drift}"
    if check.state == "loaded":
        return (f"{node.label}: {outs}; it loads a file and its inputs match the baseline — the file it loads "
                f"(an upload or a model) changed, not a node's code{drift}")
    return f"{node.label}: {outs}; its inputs match the baseline — the change is inside this node{drift}"


def _walk(baseline: Trace, obtained: Trace, tol: Tolerance | None) -> tuple[NodeCheck, ...]:
    checked: dict[str, NodeCheck] = {}
    for node in obtained.nodes:
        checked[node.node_id] = _check(node, baseline.node(node.node_id), checked, tol)
    return tuple(checked.values())


def first_change(baseline: Trace, obtained: Trace, tol: Tolerance = DEFAULT_TOLERANCE) -> Finding:
    """Walk ``obtained`` in execution order against ``baseline``; see the module docstring."""
    chain = _walk(baseline, obtained, tol)
    origins = tuple(c for c in chain if c.state in ("origin", "loaded", "settings", "new"))
    if origins:
        return Finding("found", chain, origins)
    exact = _walk(baseline, obtained, None)
    origins = tuple(c for c in exact if c.state in ("origin", "loaded", "settings", "new"))
    return Finding("drift", exact, origins) if origins else Finding("no_change", chain, ())


def traces_match(baseline: Trace, obtained: Trace, tol: Tolerance = DEFAULT_TOLERANCE) -> bool:
    """Whether ``obtained`` stays within ``baseline`` everywhere (an update keeps the old file then)."""
    return [n.node_id for n in baseline.nodes] == [n.node_id for n in obtained.nodes] and not any(
        c.changed for c in _walk(baseline, obtained, tol))


__all__ = ["HEADER", "TRACE_FILE", "Finding", "NodeCheck", "Output", "Tolerance", "Trace", "TraceCorrupt",
           "TraceNode", "build_trace", "execution_order", "fingerprint_diff", "first_change", "picture_sheet",
           "read_trace", "sheet_pictures", "traces_match"]
