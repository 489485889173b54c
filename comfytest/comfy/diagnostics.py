"""Server errors in words: validation failures, node exceptions, interrupts (no raw dicts).

Each function takes the server's reply plus ``NodeInfo`` (id → class and title, from the
workflow as sent) and returns the message a user reads: which node (id, title, class), which
input, what the server said, and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from comfytest.errors import clip, escape_controls


@dataclass(frozen=True)
class NodeLabel:
    class_type: str
    title: str | None = None


NodeInfo = Mapping[str, NodeLabel]


def as_mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a mapping, else an empty one (server replies are untrusted)."""
    return value if isinstance(value, Mapping) else {}


def node_info(prompt: Mapping[str, Any]) -> dict[str, NodeLabel]:
    """Labels of every node of an API-format prompt."""
    info: dict[str, NodeLabel] = {}
    for node_id, node in prompt.items():
        if isinstance(node, Mapping):
            meta = node.get("_meta")
            title = meta.get("title") if isinstance(meta, Mapping) else None
            info[str(node_id)] = NodeLabel(str(node.get("class_type", "?")), title if isinstance(title, str) else None)
    return info


def describe_node(node_id: str | None, info: NodeInfo, class_type: str | None = None) -> str:
    """``node 5 'KSampler' (KSampler)``: id, title when it differs from nothing, class."""
    if node_id is None:
        return "no node"
    label = info.get(str(node_id))
    cls = class_type or (label.class_type if label else "?")
    title = label.title if label and label.title else None
    node_id, cls = clip(str(node_id), 40), clip(cls)
    return f"node {node_id} '{clip(title)}' ({cls})" if title else f"node {node_id} ({cls})"


def _error_line(err: Mapping[str, Any]) -> str:
    message = str(err.get("message") or err.get("type") or "error")
    details = str(err.get("details") or "").strip()
    extra = err.get("extra_info") if isinstance(err.get("extra_info"), Mapping) else {}
    input_name = extra.get("input_name") if extra else None
    where = f"input '{input_name}': " if input_name else ""
    redundant = not details or details in message or details == input_name  # "— steps"
    return f"{where}{message}" + ("" if redundant else f" — {details}")


#: the ``error.type`` values of a 400 from POST /prompt that are about the workflow itself
#: (ComfyUI 0.3.75 … 0.26 ``execution.validate_prompt``); any other 400 is about the request
WORKFLOW_ERROR_TYPES = frozenset({
    "prompt_outputs_failed_validation", "prompt_no_outputs", "missing_node_type",
    "invalid_prompt", "dependency_cycle", "exception_during_validation",
    "exception_during_inner_validation",
})


def is_workflow_rejection(body: Mapping[str, Any]) -> bool:
    """True when a 400 from POST /prompt blames the workflow (its nodes or inputs)."""
    if as_mapping(body.get("node_errors")):
        return True
    error = body.get("error")
    if isinstance(error, str):  # some servers answer a bare message: read it as the workflow's
        return True
    return str(as_mapping(error).get("type") or "") in WORKFLOW_ERROR_TYPES


def format_unsupported(body: Mapping[str, Any], url: str, version: str | None) -> str:
    """A 400 from POST /prompt that is about comfytest's request, not the workflow."""
    error = as_mapping(body.get("error"))
    server = f"ComfyUI {version}" if version else "a ComfyUI of unknown version"
    lines = [
        f"{server} at {url} refused comfytest's request (POST /prompt, HTTP 400, "
        f"{error.get('type') or 'no error type'}): {error.get('message') or body!r}",
    ]
    if error.get("details"):
        lines.append(f"  {str(error['details']).strip()}")
    lines.append(
        "This is not about the workflow: this comfytest does not support that server's protocol "
        "yet. Retrying will not help; update comfytest, or run against a ComfyUI listed in "
        "docs/compatibility.md."
    )
    return "\n".join(lines)


def format_rejection(body: Mapping[str, Any], info: NodeInfo, status: int) -> str:
    """A 400 from POST /prompt, or a 200 whose node_errors is not empty."""
    error = as_mapping(body.get("error"))
    node_errors = as_mapping(body.get("node_errors"))
    head = "The server rejected the workflow" if status == 400 else (
        "The server accepted only part of the workflow (invalid branches were dropped)"
    )
    lines = [f"{head}: {error.get('message') or 'validation failed'}" if error else head + ":"]
    if error and error.get("details") and not node_errors:
        lines.append(f"  {str(error['details']).strip()}")
    for node_id in sorted(node_errors, key=id_order):
        entry = node_errors[node_id]
        if not isinstance(entry, Mapping):
            continue
        lines.append(f"  {describe_node(str(node_id), info, entry.get('class_type'))}:")
        for err in entry.get("errors") or []:
            if isinstance(err, Mapping):
                lines.append(f"    - {_error_line(err)}")
    lines.append("Fix the inputs named above (or the patches that set them) and run again.")
    return "\n".join(lines)


def id_order(node_id: str) -> tuple[int, str]:
    """Sort key for node ids: numeric ids in number order, then the others."""
    return (int(node_id), "") if str(node_id).isdigit() else (1 << 30, str(node_id))


def format_execution_error(
    data: Mapping[str, Any], info: NodeInfo, traceback_lines: int = 8, cached: Sequence[str] = ()
) -> str:
    """An ``execution_error`` event: node, exception, the traceback's end, what had finished.

    ``cached``: nodes the server took from its cache (``execution_cached``); the event's
    ``executed`` list leaves them out, so without them "finished: none" would mislead.
    """
    node = describe_node(str(data.get("node_id")), info, data.get("node_type"))
    exc = f"{data.get('exception_type') or 'Exception'}: {str(data.get('exception_message') or '').strip()}"
    lines = [f"{node} failed while running: {exc}"]
    tb = [ln.rstrip("\n") for ln in data.get("traceback") or [] if isinstance(ln, str)]
    if tb:
        text = "".join(ln + "\n" for ln in tb).splitlines()
        tail = [ln for ln in text if ln.strip(" ^~")][-traceback_lines:]  # no caret-only lines
        lines.append("  traceback (last lines):")
        lines.extend("    " + ln for ln in tail)
    lines.append(f"  finished before the failure: {_node_list(data.get('executed'), info)}")
    if cached:
        lines.append(f"  taken from the server's cache: {_node_list(cached, info)}")
    return escape_controls("\n".join(lines))  # the server's text, never obeyed by a terminal


def format_interrupted(data: Mapping[str, Any], info: NodeInfo) -> str:
    node = describe_node(str(data.get("node_id")), info, data.get("node_type"))
    return (
        f"The prompt was interrupted (not by comfytest) before {node}; "
        f"finished: {_node_list(data.get('executed'), info)}. "
        "Someone pressed Cancel or another client sent POST /interrupt."
    )


def _node_list(ids: Any, info: NodeInfo) -> str:
    if not ids:
        return "none"
    return ", ".join(describe_node(str(i), info) for i in sorted(map(str, ids), key=id_order))
