"""comfytest-node on a saved /object_info of the real 0.3.75 server (tests/data/object_info.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfytest.plugin.scaffold import main
from comfytest.workflows.casefile import load_cases
from comfytest.workflows.workflow import parse_workflow

INFO = Path(__file__).parents[1] / "data" / "object_info.json"


def test_prints_a_nodes_inputs_with_defaults_and_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--object-info", str(INFO), "ImageBlur"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "ImageBlur"
    assert '  input  blur_radius: INT [required]  default 1, max 31, min 1, step 1' in out
    assert "  output 0 IMAGE: IMAGE" in out


def test_scaffolds_a_chained_workflow_and_a_settings_file_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "workflows" / "blur.json"
    assert main(["--object-info", str(INFO), "ImageBlur", "ImageInvert", "--write", str(target)]) == 0
    out = capsys.readouterr().out
    prompt = json.loads(target.read_text())
    assert prompt["2"] == {"class_type": "ImageInvert", "_meta": {"title": "ImageInvert"}, "inputs": {"image": ["1", 0]}}
    assert prompt["3"]["class_type"] == "SaveImage" and prompt["3"]["inputs"]["images"] == ["2", 0]
    assert prompt["1"]["inputs"] == {"blur_radius": 1, "sigma": 1.0}
    assert "connect by hand: ImageBlur input 'image' needs a IMAGE" in out
    workflow = parse_workflow(prompt, target)
    assert [c.id for c in load_cases(target.with_suffix(".toml"), workflow)] == ["default"]
    assert main(["--object-info", str(INFO), "ImageBlur", "--write", str(target)]) == 2
    assert "never overwrites" in capsys.readouterr().err


def test_an_unknown_class_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--object-info", str(INFO), "NoSuchNode"]) == 2
    assert "node class(es) not on the server: NoSuchNode" in capsys.readouterr().err
