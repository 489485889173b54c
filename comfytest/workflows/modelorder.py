"""Model-aware order: which model files a case loads, grouping, shards, xdist scopes.

A case's *model set* is every model file its loader nodes name once its patches are applied
(``ckpt_name``, ``unet_name``, ``vae_name``, ``lora_name``, … — the loader table of
``preflight``), plus the models its settings file ``requires``. Cases sharing a model set run
back to back (``ordered``), on one server under xdist (``scopes``: units for xdist's own
LoadScope scheduler), and in one CI shard (``shard_groups``). Cases that load no model belong
to no group: they spread freely. Pure functions; the plugin feeds them.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from comfytest.errors import ComfyTestError
from comfytest.workflows.casefile import CaseSpec, load_cases, settings_path
from comfytest.workflows.preflight import MODEL_SUFFIXES, model_folder
from comfytest.workflows.uiformat import convert_ui_workflow
from comfytest.workflows.workflow import (
    Node,
    Workflow,
    apply_patches,
    is_ui_format,
    is_workflow_file,
    parse_workflow,
    read_json,
)

ModelSet = tuple[str, ...]


def node_models(node: Node) -> set[str]:
    """``folder/name`` of every model file this node names (a literal loader input)."""
    found = set()
    for name, value in node.inputs.items():
        if isinstance(value, str):
            folder = model_folder(node.class_type, name)
            if folder or value.lower().endswith(MODEL_SUFFIXES):
                found.add(f"{folder or 'models'}/{value.replace(chr(92), '/')}")
    return found


def workflow_models(workflow: Workflow) -> ModelSet:
    """Every model file the workflow's nodes name (sorted, no duplicates)."""
    return tuple(sorted(set().union(*(node_models(n) for n in workflow.nodes.values()))))


def loader_nodes(workflow: Workflow) -> frozenset[str]:
    """Ids of the nodes that name a model file: each execution of one is a model load."""
    return frozenset(n.id for n in workflow.nodes.values() if node_models(n))


def case_models(workflow: Workflow, case: CaseSpec) -> ModelSet:
    """The model set of one case: its patches applied (a patch may name another checkpoint)."""
    try:
        patched, _ = apply_patches(workflow, case.patches)
    except ComfyTestError:
        patched = workflow  # a bad selector fails the test itself, with its own message
    return tuple(sorted(set(workflow_models(patched)) | set(case.requires.models)))


def ordered(keys: Sequence[Hashable | None]) -> list[int]:
    """A permutation of ``range(len(keys))``: items with a key (workflow cases; the key is the
    model set) are regrouped so that equal keys are adjacent, groups in order of first
    appearance and items in their order within a group; items without a key (other tests)
    keep their places."""
    slots = [i for i, k in enumerate(keys) if k is not None]
    groups: dict[Hashable, list[int]] = {}
    for i in slots:
        groups.setdefault(keys[i], []).append(i)
    regrouped = iter([i for members in groups.values() for i in members])
    return [next(regrouped) if k is not None else i for i, k in enumerate(keys)]


def shard_groups(groups: Mapping[str, int], shards: int) -> dict[str, int]:
    """Group name → shard (1-based), deterministic: the largest group first goes to the shard
    with the fewest tests so far (ties: the lowest shard); ties in size are broken by name."""
    load = [0] * shards
    chosen: dict[str, int] = {}
    for name, size in sorted(groups.items(), key=lambda g: (-g[1], g[0])):
        target = min(range(shards), key=lambda s: (load[s], s))
        load[target] += size
        chosen[name] = target + 1
    return chosen


def group_name(nodeid: str, models: ModelSet | None) -> str:
    """Cases sharing models share a group; everything else is its own group."""
    return "models:" + "|".join(models) if models else "test:" + nodeid


def scopes(groups: Sequence[tuple[str, str]], workers: int) -> dict[str, str]:
    """nodeid → xdist work unit for ``(nodeid, group)`` pairs in run order. A group larger than
    an equal share of the tests (``ceil(tests / workers)``) is cut into chunks of that size, so
    one big model group cannot leave the other workers idle; each chunk still loads its models
    once."""
    share = max(1, math.ceil(len(groups) / max(1, workers)))
    seen: dict[str, int] = {}
    result = {}
    for nodeid, group in groups:
        index = seen.get(group, 0)
        seen[group] = index + 1
        result[nodeid] = group if group.startswith("test:") else f"{group}#{index // share}"
    return result


class NodeidModels:
    """The model set of a collected nodeid, read from its workflow file (the xdist controller
    schedules by nodeid and collects nothing itself); None for what is not a workflow case."""

    def __init__(self, rootdir: Path) -> None:
        self.rootdir = rootdir
        self._files: dict[str, dict[str, ModelSet] | None] = {}

    def __call__(self, nodeid: str) -> ModelSet | None:
        path, sep, case_id = nodeid.partition("::")
        if not sep or not path.endswith(".json"):
            return None
        if path not in self._files:
            self._files[path] = self._read(self.rootdir / path)
        cases = self._files[path]
        return None if cases is None else cases.get(case_id)

    @staticmethod
    def _read(path: Path) -> dict[str, ModelSet] | None:
        try:
            data: Any = read_json(path)
            if not isinstance(data, dict) or not is_workflow_file(data):
                return None
            workflow = convert_ui_workflow(data, None, path) if is_ui_format(data) else parse_workflow(data, path)
            return {case.id: case_models(workflow, case) for case in load_cases(settings_path(path), workflow, max_cases=None)}
        except ComfyTestError:
            return None


__all__ = ["NodeidModels", "case_models", "group_name", "loader_nodes", "node_models", "ordered", "scopes", "shard_groups", "workflow_models"]
