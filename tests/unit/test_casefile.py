from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comfytest.errors import ConfigError
from comfytest.workflows.casefile import (
    CaseDefaults,
    CaseSpec,
    Requirements,
    load_cases,
    resolve,
    settings_path,
)
from comfytest.workflows.workflow import Workflow, apply_patches, load_workflow

WORKFLOWS = Path(__file__).parent.parent / "data" / "workflows"
DEFAULTS = CaseDefaults(tolerance=2, hash_method="phash", hash_size=8, timeout=300.0, seed=None)


@pytest.fixture
def txt2img() -> Workflow:
    return load_workflow(WORKFLOWS / "tiny_txt2img.json")


def cases(tmp_path: Path, wf: Workflow, text: str) -> tuple[CaseSpec, ...]:
    path = tmp_path / "tiny_txt2img.toml"
    path.write_text(text)
    return load_cases(path, wf)


def error(tmp_path: Path, wf: Workflow, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        cases(tmp_path, wf, text)
    return str(info.value)


def test_settings_path() -> None:
    assert settings_path(Path("a/b/flow.json")) == Path("a/b/flow.toml")


def test_no_toml_gives_one_default_case(tmp_path: Path, txt2img: Workflow) -> None:
    assert load_cases(tmp_path / "missing.toml", txt2img) == (CaseSpec("default"),)


def test_top_level_only_gives_default_case(tmp_path: Path, txt2img: Workflow) -> None:
    (case,) = cases(tmp_path, txt2img, "seed = 3\ntolerance = 0\n")
    assert (case.id, case.seed, case.tolerance) == ("default", 3, 0)


FULL = """
seed = 42
tolerance = 4
hash = "dhash"
hash_size = 16
timeout = 120
marks = ["slow"]
requires = { nodes = ["ComfyTestSolidImage"], models = ["checkpoints/a.safetensors"] }
patches = { KSampler = { steps = 4, cfg = 2.0 } }

[cases.base]

[cases.red]
seed = 7
timeout = 5.5
marks = ["gpu", "slow"]
patches = { positive = { text = "a red cube" }, KSampler = { cfg = 1.5 } }
outputs = ["title:Save", "SaveImage"]
requires = { models = ["loras/b.safetensors"] }

[cases.later]
skip = "waits for the new VAE"
"""


def test_full_example(tmp_path: Path, txt2img: Workflow) -> None:
    base, red, later = cases(tmp_path, txt2img, FULL)
    assert (base.id, base.seed, base.tolerance, base.hash_method, base.hash_size) == (
        "base", 42, 4, "dhash", 16)
    assert base.timeout == 120.0 and base.marks == ("slow",)
    assert base.patches == {"KSampler": {"steps": 4, "cfg": 2.0}}
    assert base.outputs is None and base.skip is None
    assert base.requires == Requirements(("ComfyTestSolidImage",), ("checkpoints/a.safetensors",))
    assert red.seed == 7 and red.timeout == 5.5
    assert red.marks == ("slow", "gpu")
    assert red.patches == {"KSampler": {"steps": 4, "cfg": 1.5}, "positive": {"text": "a red cube"}}
    assert red.outputs == ("7",)
    assert red.requires.models == ("checkpoints/a.safetensors", "loras/b.safetensors")
    assert later.skip == "waits for the new VAE"


def test_case_values_are_read_only(tmp_path: Path, txt2img: Workflow) -> None:
    base = cases(tmp_path, txt2img, FULL)[0]
    with pytest.raises(TypeError):
        base.patches["KSampler"]["steps"] = 1  # type: ignore[index]


def test_patches_from_case_apply(tmp_path: Path, txt2img: Workflow) -> None:
    red = cases(tmp_path, txt2img, FULL)[1]
    patched, _ = apply_patches(txt2img, red.patches)
    assert patched.nodes["2"].inputs["text"] == "a red cube"
    assert patched.nodes["5"].inputs["cfg"] == 1.5


def test_inputs_resolved_relative_to_toml(tmp_path: Path, txt2img: Workflow) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"x")
    wf = load_workflow(WORKFLOWS / "tiny_img2img.json")
    (case,) = cases(tmp_path, wf, '[cases.a]\ninputs = { "title:Load input image" = "in/a.png" }')
    assert case.inputs == {"title:Load input image": tmp_path / "in" / "a.png"}


def test_missing_input_file_names_path(tmp_path: Path) -> None:
    wf = load_workflow(WORKFLOWS / "tiny_img2img.json")
    text = error(tmp_path, wf, '[cases.a]\ninputs = { LoadImage = "nope.png" }')
    assert "case 'a'" in text and f"not found: {tmp_path / 'nope.png'}" in text


# --- matrix --------------------------------------------------------------------------------


def test_matrix_expansion_ids_and_patches(tmp_path: Path, txt2img: Workflow) -> None:
    specs = cases(tmp_path, txt2img, """
patches = { KSampler = { steps = 3 } }
[cases.base]
matrix = { "KSampler.sampler_name" = ["euler", "dpmpp_2m"], "KSampler.steps" = [2, 4] }
""")
    assert [s.id for s in specs] == [
        "base[euler-2]", "base[euler-4]", "base[dpmpp_2m-2]", "base[dpmpp_2m-4]"]
    assert specs[1].patches == {"KSampler": {"steps": 4, "sampler_name": "euler"}}
    assert specs[1].params == {"KSampler.sampler_name": "euler", "KSampler.steps": 4}


def test_matrix_labels_are_pytest_friendly(tmp_path: Path, txt2img: Workflow) -> None:
    specs = cases(tmp_path, txt2img, """
[cases.p]
matrix = { "positive.text" = ["a red cube", "a/b [c]"], "negative.text" = ["x"] }
""")
    assert [s.id for s in specs] == [
        "p[a_red_cube-x]", "p[a_b__c_-x]"]
    assert not any("=" in s.id for s in specs), "'=' breaks -k expressions"


def test_matrix_duplicate_labels_made_unique(tmp_path: Path, txt2img: Workflow) -> None:
    specs = cases(tmp_path, txt2img, '[cases.p]\nmatrix = { "positive.text" = ["a b", "a/b"] }')
    assert [s.id for s in specs] == ["p[a_b]", "p[a_b-1]"]


def test_top_level_matrix_expands_default_case(tmp_path: Path, txt2img: Workflow) -> None:
    specs = cases(tmp_path, txt2img, 'matrix = { "#4.width" = [64, 128] }')
    assert [s.id for s in specs] == ["default[64]", "default[128]"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[cases.a]\nmatrix = { "KSampler.steps" = [] }', "must be a non-empty array"),
        ('[cases.a]\nmatrix = { "KSampler.steps" = 3 }', "found integer 3"),
        ('[cases.a]\nmatrix = { "steps" = [1] }', "must be '<selector>.<input>'"),
        ('[cases.a]\nmatrix = { "Nope.steps" = [1] }', "selector 'Nope' matches no node"),
    ],
)
def test_matrix_errors(tmp_path: Path, txt2img: Workflow, text: str, message: str) -> None:
    assert message in error(tmp_path, txt2img, text)


# --- validation ----------------------------------------------------------------------------


def test_unknown_key_did_you_mean(tmp_path: Path, txt2img: Workflow) -> None:
    text = error(tmp_path, txt2img, "[cases.a]\nsed = 3")
    assert "tiny_txt2img.toml: case 'a': unknown key 'sed' (did you mean 'seed'?)" in text
    assert "Known keys:" in text and "tolerance" in text


def test_unknown_top_level_key(tmp_path: Path, txt2img: Workflow) -> None:
    text = error(tmp_path, txt2img, "case = {}")
    assert "top level: unknown key 'case' (did you mean 'cases'?)" in text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('seed = "abc"', "'seed' must be an integer >= 0, found string 'abc'"),
        ("seed = true", "'seed' must be an integer >= 0, found boolean True"),
        ("tolerance = -1", "'tolerance' must be an integer >= 0, found integer -1"),
        ("hash_size = 0", "'hash_size' must be an integer >= 1"),
        ("timeout = 0", "'timeout' must be a number of seconds > 0"),
        ('hash = "phsh"', "unknown hash method 'phsh' (did you mean 'phash'?)"),
        ('marks = "slow"', "'marks' must be an array of strings, found string 'slow'"),
        ('marks = ["not a mark"]', "mark 'not a mark' is not a valid pytest mark name"),
        ("skip = 1", "'skip' must be a non-empty string, found integer 1"),
        ("patches = 3", "'patches' must be a table"),
        ("patches = { KSampler = 3 }", "'patches.KSampler' must be a table of input = value"),
        ('patches = { "title:Nope" = { a = 1 } }', "selector 'title:Nope' matches no node"),
        ("patches = { CLIPTextEncode = { text = 'x' } }", "matches 2 nodes, expected one"),
        ('outputs = "7"', "'outputs' must be an array of strings"),
        ("requires = { node = [] }", "unknown key 'requires.node'"),
        ('requires = { models = ["x.safetensors"] }', "must be '<folder>/<file>'"),
    ],
)
def test_type_errors_name_file_case_and_key(
    tmp_path: Path, txt2img: Workflow, line: str, message: str
) -> None:
    text = error(tmp_path, txt2img, f"[cases.mine]\n{line}\n")
    assert text.startswith(f"{tmp_path / 'tiny_txt2img.toml'}: case 'mine': ")
    assert message in text


def test_invalid_toml_names_file(tmp_path: Path, txt2img: Workflow) -> None:
    text = error(tmp_path, txt2img, "seed = = 3")
    assert "tiny_txt2img.toml: invalid TOML" in text and "line 1" in text


@pytest.mark.parametrize("text", ["cases = 3", "cases = {}"])
def test_bad_cases_table(tmp_path: Path, txt2img: Workflow, text: str) -> None:
    assert "'cases' must be a table" in error(tmp_path, txt2img, text)


def test_bad_case_name(tmp_path: Path, txt2img: Workflow) -> None:
    assert "case names may use only" in error(tmp_path, txt2img, '[cases."a b"]\n')


# --- precedence ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "file", "cli", "builtin", "expected"),
    [
        (1, 2, 3, 4, 1),
        (None, 2, 3, 4, 2),
        (None, None, 3, 4, 3),
        (None, None, None, 4, 4),
        (0, 2, 3, 4, 0),  # 0 is a value, not "unset"
        (None, 0, 3, 4, 0),
    ],
)
def test_resolve_precedence(case: Any, file: Any, cli: Any, builtin: Any, expected: Any) -> None:
    assert resolve(case, file, cli, builtin) == expected


@pytest.mark.parametrize(
    ("toml", "expected_tolerance"),
    [
        ("tolerance = 1\n[cases.a]\ntolerance = 0\n", 0),  # case wins
        ("tolerance = 1\n[cases.a]\n", 1),  # file default beats CLI/ini
        ("[cases.a]\n", 2),  # CLI/ini/built-in (DEFAULTS) fill the rest
    ],
)
def test_with_defaults_precedence(
    tmp_path: Path, txt2img: Workflow, toml: str, expected_tolerance: int
) -> None:
    (case,) = cases(tmp_path, txt2img, toml)
    filled = case.with_defaults(DEFAULTS)
    assert filled.tolerance == expected_tolerance
    assert (filled.hash_method, filled.hash_size, filled.timeout) == ("phash", 8, 300.0)


def test_with_defaults_seed(tmp_path: Path, txt2img: Workflow) -> None:
    (case,) = cases(tmp_path, txt2img, "[cases.a]\n")
    assert case.with_defaults(DEFAULTS).seed is None
    assert case.with_defaults(CaseDefaults(2, "phash", 8, 1.0, seed=9)).seed == 9
    (case,) = cases(tmp_path, txt2img, "[cases.a]\nseed = 0\n")
    assert case.with_defaults(CaseDefaults(2, "phash", 8, 1.0, seed=9)).seed == 0


def test_output_tolerance_by_selector_and_its_precedence(tmp_path: Path, txt2img: Workflow) -> None:
    toml = 'output_tolerance = { "title:Save" = 6 }\n[cases.a]\n[cases.b]\noutput_tolerance = { "7" = 1 }\n'
    a, b = cases(tmp_path, txt2img, toml)
    assert dict(a.output_tolerance) == {"7": 6}
    assert dict(b.output_tolerance) == {"7": 1}, "the case's value beats the file default"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('output_tolerance = 3\n', "a table of selector = bits"),
        ('output_tolerance = { "title:Nope" = 3 }\n', "title:Nope"),
        ('output_tolerance = { "7" = -1 }\n', "output_tolerance.7"),
    ],
)
def test_output_tolerance_errors(tmp_path: Path, txt2img: Workflow, toml: str, message: str) -> None:
    assert message in error(tmp_path, txt2img, toml)
