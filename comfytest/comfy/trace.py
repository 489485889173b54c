"""Taps on a copy of a prompt: one ``ComfyTestTap`` per node output, and their fingerprints.

The trace of intermediate outputs (issue 23) is taken on the server: ``tapped_prompt`` returns
a copy of the prompt with a tap node of comfytest's node pack wired to every output slot of
every node the prompt executes (ancestors of its output nodes); the original prompt, and so the
measured runs, stay untouched. ``read_fingerprints`` reads what the taps reported (their UI
output ``comfytest_trace``, from ``executed``/``/history``). Comparing traces is
``compare.trace``'s job; this module knows nothing of baselines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TAP_CLASS = "ComfyTestTap"
TRACE_KEY = "comfytest_trace"  # the tap's UI output key (nodepack.TRACE_KEY)
_TAP_PREFIX = "comfytest_tap_"


class TapUnavailable(Exception):
    """The server has no ``ComfyTestTap`` node: the trace cannot be taken there."""


@dataclass(frozen=True)
class TappedPrompt:
    """A copy of a prompt with taps; ``taps`` maps each tap's node id to (node id, output slot)."""

    prompt: Mapping[str, Any]
    taps: Mapping[str, tuple[str, int]]
    types: Mapping[tuple[str, int], str]


def link(value: Any) -> tuple[str, int] | None:
    """``["4", 0]`` (an input wired to node 4's output 0) → ("4", 0); anything else → None."""
    if isinstance(value, list | tuple) and len(value) == 2 and isinstance(value[1], int) and not isinstance(value[1], bool):
        return str(value[0]), value[1]
    return None


def executed_nodes(prompt: Mapping[str, Any], info: Mapping[str, Any]) -> set[str]:
    """The nodes a prompt runs: its output nodes and everything they take inputs from."""
    todo = [n for n, node in prompt.items() if info.get(str(node.get("class_type")), {}).get("output_node")]
    seen: set[str] = set()
    while todo:
        node_id = todo.pop()
        if node_id in seen or node_id not in prompt:
            continue
        seen.add(node_id)
        todo.extend(src for v in prompt[node_id].get("inputs", {}).values() if (src := (link(v) or ("", 0))[0]))
    return seen


def output_types(class_type: str, info: Mapping[str, Any]) -> tuple[str, ...]:
    """The output types a node class declares in ``/object_info`` (``IMAGE``, ``LATENT``...)."""
    outputs = info.get(class_type, {}).get("output") or ()
    return tuple(o if isinstance(o, str) else "COMBO" for o in outputs)


def tap_missing() -> str:
    """Why a server cannot take a trace, and how to fix it."""
    return (f"the server has no {TAP_CLASS} node (comfytest's node pack): its /object_info does not list it. "
            "The embedded server loads the pack itself; for a --comfy-url or --comfy-launch server, link or "
            "copy comfytest/nodepack into its custom_nodes/ folder as comfytest_nodepack and restart it")


def tapped_prompt(prompt: Mapping[str, Any], info: Mapping[str, Any]) -> TappedPrompt:
    """A copy of ``prompt`` with one tap per output of each executed node; raises
    ``TapUnavailable`` when the server lacks the tap node."""
    if TAP_CLASS not in info:
        raise TapUnavailable(tap_missing())
    copy: dict[str, Any] = {k: dict(v) for k, v in prompt.items()}
    taps: dict[str, tuple[str, int]] = {}
    types: dict[tuple[str, int], str] = {}
    for node_id in sorted(executed_nodes(prompt, info)):
        for slot, kind in enumerate(output_types(str(prompt[node_id].get("class_type")), info)):
            tap_id = _free_id(copy, f"{_TAP_PREFIX}{len(taps)}")
            taps[tap_id] = (node_id, slot)
            types[(node_id, slot)] = kind
            copy[tap_id] = {"class_type": TAP_CLASS, "inputs": {"value": [node_id, slot], "type": kind},
                            "_meta": {"title": f"comfytest tap {node_id}:{slot}"}}
    return TappedPrompt(copy, taps, types)


def _free_id(prompt: Mapping[str, Any], wanted: str) -> str:
    """``wanted``, or with a suffix when the prompt already has a node of that id."""
    found, suffix = wanted, 0
    while found in prompt:
        suffix += 1
        found = f"{wanted}_{suffix}"
    return found


def read_fingerprints(tapped: TappedPrompt, outputs: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, int], Any]:
    """(node id, slot) → the fingerprint its tap reported; taps that reported nothing are left out."""
    found: dict[tuple[str, int], Any] = {}
    for tap_id, where in tapped.taps.items():
        values = (outputs.get(tap_id) or {}).get(TRACE_KEY)
        if isinstance(values, list) and values and isinstance(values[0], Mapping):
            found[where] = values[0]
    return found


__all__ = [
    "TAP_CLASS",
    "TapUnavailable",
    "TappedPrompt",
    "executed_nodes",
    "link",
    "output_types",
    "read_fingerprints",
    "tap_missing",
    "tapped_prompt",
]
