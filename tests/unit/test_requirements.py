"""A settings file's ``requires``: node classes and model files checked against /object_info."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from comfytest.errors import PreflightError
from comfytest.plugin.case import check_requirements
from comfytest.workflows.casefile import CaseSpec, Requirements
from comfytest.workflows.preflight import server_models
from comfytest.workflows.workflow import load_workflow

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture
def info() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "object_info.json").read_text())
    data = copy.deepcopy(data)
    data["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = ["tiny-sd15-random.safetensors"]
    return data


def test_server_models_are_read_off_every_loader_of_the_folder(info: dict[str, Any]) -> None:
    assert server_models(info, "checkpoints") == {"tiny-sd15-random.safetensors"}
    assert server_models(info, "loras") == set()


def test_requires_names_what_is_missing(info: dict[str, Any]) -> None:
    wf = load_workflow(DATA / "workflows" / "tiny_txt2img.json")
    ok = CaseSpec("a", requires=Requirements(models=("checkpoints/tiny-sd15-random.safetensors",)))
    check_requirements(wf, ok, info)
    bad = CaseSpec("b", requires=Requirements(nodes=("VHS_LoadVideo",), models=("loras/detail.safetensors",)))
    with pytest.raises(PreflightError) as err:
        check_requirements(wf, bad, info)
    text = str(err.value)
    assert "node class VHS_LoadVideo (required by the settings file) is not installed" in text
    assert "detail.safetensors is not installed in models/loras/" in text
