"""Issue 25, round two of the fault matrix: the library-level rows (numbers, files, escaping,
storage). Faults a real server can produce are in tests/integration/test_hardening.py."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfytest.compare import baselines
from comfytest.compare.baselines import BaselineKey, BaselineStore, check_image
from comfytest.compare.criteria import Criteria
from comfytest.compare.store import HASHES_FILE, check_line, read_hashes
from comfytest.errors import ConfigError, WorkflowError
from comfytest.plugin.settings import OPTIONS, resolve
from comfytest.workflows.casefile import load_cases
from comfytest.workflows.workflow import load_workflow
from tests.load import loaded

KEY = BaselineKey("wf", "base", "9_0")
WORKFLOWS = Path(__file__).parent.parent / "data" / "workflows"


def noise(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8), "RGB")


# -- row 14: a baseline image and its hashes.txt line never disagree after an interruption


def test_ctrl_c_while_a_baseline_image_is_written_waits_for_its_hash_line(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The interruption is placed between the two files (a real server cannot aim a signal
    there): the KeyboardInterrupt arrives once both are written, and they agree."""
    store, results = BaselineStore(tmp_path / "b"), tmp_path / "r"
    check_image(store, KEY, noise(1), mode="update", results_dir=results)
    real = baselines.atomic_write

    def write_then_ctrl_c(path: Path, data: bytes) -> None:
        real(path, data)
        if path.suffix == ".png":
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(baselines, "atomic_write", write_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        check_image(store, KEY, noise(2), mode="update", results_dir=results)
    folder = tmp_path / "b" / KEY.relative_dir
    png = folder / "9_0.png"
    frames = [Image.open(png).convert("RGB")]
    check_line(folder / HASHES_FILE, "9_0", read_hashes(folder / HASHES_FILE)["9_0"], png, frames)


# -- rows 6 and 7: NaN and infinities refused where they enter, with the option or key named

NOT_FINITE = ["nan", "inf", "-inf", "NaN", "Infinity"]


@pytest.mark.parametrize("value", NOT_FINITE)
@pytest.mark.parametrize("option", ["timeout", "idle-timeout", "startup-timeout", "mean-diff", "min-psnr",
                                    "timing-abs", "timing-rel", "timing-floor"])
def test_a_number_that_is_not_finite_is_refused_from_ini_and_env(option: str, value: str) -> None:
    opt = next(o for o in OPTIONS if o.name == option)
    with pytest.raises(ConfigError, match=f"ini {opt.ini}: .{value}. is not a finite number.*{opt.cli}"):
        resolve(lambda o: None, lambda o: value if o is opt else "", Path.cwd(), {})
    if opt.env:
        with pytest.raises(ConfigError, match=f"{opt.env}.*finite"):
            resolve(lambda o: None, lambda o: "", Path.cwd(), {opt.env: value})


def test_nan_on_the_command_line_is_a_usage_error_naming_the_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--comfy-timeout", "nan", "--comfy-idle-timeout=inf")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--comfy-timeout" in result.stderr.str() and "finite" in result.stderr.str()


@pytest.mark.parametrize("key", ["timeout", "mean_diff", "min_psnr"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+inf"])
def test_a_settings_file_number_that_is_not_finite_names_the_key(tmp_path: Path, key: str, value: str) -> None:
    wf = load_workflow(WORKFLOWS / "tiny_txt2img.json")
    path = tmp_path / "tiny_txt2img.toml"
    path.write_text(f"{key} = {value}\n\n[cases.a]\n{key} = 1\n")
    with pytest.raises(ConfigError, match=f"{path}: top level: '{key}' must be .*finite.*{value.lstrip('+')}"):
        load_cases(path, wf)


@pytest.mark.parametrize("field", ["mean_diff", "min_psnr"])
def test_criteria_refuse_a_limit_that_is_not_finite(field: str) -> None:
    with pytest.raises(ConfigError, match=f"{field}.*finite"):
        Criteria(**{field: float("nan")})  # type: ignore[arg-type]


# -- row 8: deep or undecodable files are named errors, never tracebacks


def test_a_workflow_nested_10000_deep_is_a_named_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"1": {"class_type": "X", "inputs": {"a": ' + "[" * 10_000 + "]" * 10_000 + "}}}")
    with pytest.raises(WorkflowError, match=f"{path}: nested too deeply"):
        load_workflow(path)


def test_a_settings_file_that_is_not_utf8_is_a_named_error(tmp_path: Path) -> None:
    wf = load_workflow(WORKFLOWS / "tiny_txt2img.json")
    path = tmp_path / "tiny_txt2img.toml"
    path.write_bytes(b"tolerance = 2\n# caf\xe9 in Latin-1\n")
    with pytest.raises(ConfigError, match=f"{path}: not UTF-8 text .*at byte 19"):
        load_cases(path, wf)


def test_deep_and_undecodable_files_fail_collection_without_a_traceback(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncomfy_workflows = workflows\n")
    (pytester.path / "workflows").mkdir()
    (pytester.path / "workflows" / "deep.json").write_text('{"1": ' * 10_000 + "{}" + "}" * 10_000)
    (pytester.path / "workflows" / "latin.json").write_text((WORKFLOWS / "tiny_txt2img.json").read_text())
    (pytester.path / "workflows" / "latin.toml").write_bytes(b"tolerance = 2\n# caf\xe9\n")
    result = pytester.runpytest("--collect-only", "-p", "no:cacheprovider")
    out = result.stdout.str()
    assert "deep.json: nested too deeply" in out and "latin.toml: not UTF-8 text" in out, out
    assert "RecursionError" not in out and "UnicodeDecodeError" not in out and "Traceback" not in out


# -- row 11: a runaway matrix is refused before collection expands it


def _matrix_toml(a: int, b: int) -> str:
    return (f'[cases.grid.matrix]\n"KSampler.steps" = {list(range(1, a + 1))}\n'
            f'"KSampler.seed" = {list(range(b))}\n')


def test_a_runaway_matrix_is_refused_with_its_size_before_it_is_expanded(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncomfy_workflows = workflows\n")
    (pytester.path / "workflows").mkdir()
    (pytester.path / "workflows" / "tiny.json").write_text((WORKFLOWS / "tiny_txt2img.json").read_text())
    (pytester.path / "workflows" / "tiny.toml").write_text(_matrix_toml(3000, 3000))
    start = time.monotonic()
    result = pytester.runpytest("--collect-only", "-p", "no:cacheprovider")
    assert time.monotonic() - start < loaded(15), "refused before 9,000,000 cases are built"
    out = result.stdout.str()
    assert "case 'grid': its matrix makes 9,000,000 cases (3000 × 3000)" in out, out[-3000:]
    assert "--comfy-max-cases" in out and "1,000" in out
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error


def test_the_case_limit_is_settable(tmp_path: Path) -> None:
    wf = load_workflow(WORKFLOWS / "tiny_txt2img.json")
    path = tmp_path / "tiny_txt2img.toml"
    path.write_text(_matrix_toml(2, 3) + "\n[cases.other]\nseed = 1\n")
    assert len(load_cases(path, wf, max_cases=7)) == 7
    with pytest.raises(ConfigError, match=r"7 cases in all, more than the 6 allowed per workflow file"):
        load_cases(path, wf, max_cases=6)
    opt = next(o for o in OPTIONS if o.name == "max-cases")
    assert resolve(lambda o: None, lambda o: "7" if o is opt else "", Path.cwd(), {}).max_cases == 7
