"""Model-aware order: model sets of cases, grouping, shards and xdist work units."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfytest.workflows.casefile import CaseSpec, Requirements
from comfytest.workflows.modelorder import (
    NodeidModels,
    case_models,
    group_name,
    loader_nodes,
    ordered,
    scopes,
    shard_groups,
    workflow_models,
)
from comfytest.workflows.workflow import parse_workflow, read_json

DATA = Path(__file__).parents[1] / "data" / "workflows"


def test_model_files_of_the_loaders() -> None:
    wf = parse_workflow(read_json(DATA / "seed_sdxl_txt2img.json"))
    assert workflow_models(wf) == ("checkpoints/sdXL_v10VAEFix.safetensors",)
    assert loader_nodes(wf) == frozenset({"4"})


def test_patches_and_requires_change_the_model_set() -> None:
    wf = parse_workflow(read_json(DATA / "tiny_txt2img.json"))
    other = CaseSpec("other", patches={"CheckpointLoaderSimple": {"ckpt_name": "b.safetensors"}},
                     requires=Requirements(models=("loras/x.safetensors",)))
    assert case_models(wf, other) == ("checkpoints/b.safetensors", "loras/x.safetensors")
    assert case_models(wf, CaseSpec("default")) == ("checkpoints/tiny-sd15-random.safetensors",)


def test_a_bad_selector_leaves_the_models_unpatched() -> None:
    wf = parse_workflow(read_json(DATA / "tiny_txt2img.json"))
    case = CaseSpec("bad", patches={"NoSuchNode": {"ckpt_name": "b.safetensors"}})
    assert case_models(wf, case) == ("checkpoints/tiny-sd15-random.safetensors",)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (["a", "b", "a", "b"], [0, 2, 1, 3]),
        ([None, "a", "b", None, "a"], [0, 1, 4, 3, 2]),  # other tests keep their places
        (["a", "a", "b"], [0, 1, 2]),
        ([], []),
    ],
)
def test_ordered_groups_equal_keys_in_order_of_first_appearance(keys: list[str | None], expected: list[int]) -> None:
    assert ordered(keys) == expected


def test_shards_are_deterministic_balanced_and_keep_groups_whole() -> None:
    groups = {"models:a": 6, "models:b": 6, **{f"test:t{i}": 1 for i in range(4)}}
    chosen = shard_groups(groups, 2)
    assert chosen == shard_groups(dict(reversed(list(groups.items()))), 2), "order of discovery does not matter"
    assert chosen["models:a"] != chosen["models:b"]
    sizes = [sum(n for g, n in groups.items() if chosen[g] == s) for s in (1, 2)]
    assert sizes == [8, 8]
    assert set(shard_groups(groups, 5).values()) == {1, 2, 3, 4, 5}


def test_cases_without_models_are_groups_of_their_own() -> None:
    assert group_name("x.json::a", ()) == "test:x.json::a"
    assert group_name("x.json::a", ("checkpoints/m",)) == "models:checkpoints/m"


def test_scopes_cut_a_big_group_into_equal_shares_per_worker() -> None:
    pairs = [(f"a{i}", "models:a") for i in range(4)] + [("t", "test:t")]
    units = scopes(pairs, workers=2)
    assert units == {"a0": "models:a#0", "a1": "models:a#0", "a2": "models:a#0",
                     "a3": "models:a#1", "t": "test:t"}
    assert len(set(scopes(pairs, workers=1).values())) == 2


def test_nodeid_models_reads_the_workflow_and_its_cases(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "x.json").write_text((DATA / "tiny_txt2img.json").read_text())
    (tmp_path / "w" / "x.toml").write_text('[cases.one]\n[cases.two]\npatches = { CheckpointLoaderSimple = { ckpt_name = "b.safetensors" } }\n')
    (tmp_path / "w" / "data.json").write_text(json.dumps({"name": "not a workflow"}))
    models = NodeidModels(tmp_path)
    assert models("w/x.json::one") == ("checkpoints/tiny-sd15-random.safetensors",)
    assert models("w/x.json::two") == ("checkpoints/b.safetensors",)
    assert models("w/data.json::x") is None and models("tests/test_a.py::test_b") is None
