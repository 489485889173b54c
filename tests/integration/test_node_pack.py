"""Issue 22: a node pack tests itself. A small pack of our own (a node with a COMBO, an IMAGE and a
MASK output; a node returning STRING and INT; a requirements.txt of a pure-Python package the
venv lacks) is written into the test's folder as the repository root; ``comfytest init`` then
pytest go through the whole lifecycle on the real embedded ComfyUI. Issue 25 row 4: the rootdir
trap of ``--comfy-launch DIR`` (space) with a ComfyUI folder that holds a pytest.ini."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from comfytest.comfy.embedded import load_embedded
from comfytest.plugin.packinit import main as init_main

REPO = Path(__file__).parents[2]

PACK = '''
from text_unidecode import unidecode  # from requirements.txt: installed for the server only

GAIN = {"none": (1.0, 1.0, 1.0), "warm": (1.0, 0.8, 0.6), "cool": (0.6, 0.8, 1.0)}


class TinyTint:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "mode": (["none", "warm", "cool"],),
                             "strength": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0})}}

    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "run"
    CATEGORY = "tinypack"

    def run(self, image, mode, strength):
        import torch
        out = image * (1 - strength) + image * torch.tensor(GAIN[mode]) * strength
        return (out.clamp(0, 1), out[..., 0])


class TinyLabel:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "Crème brûlée"}), "count": ("INT", {"default": 3})}}

    RETURN_TYPES = ("STRING", "INT")
    FUNCTION = "run"
    CATEGORY = "tinypack"

    def run(self, text, count):
        return (unidecode(text).upper(), len(text) * count)


NODE_CLASS_MAPPINGS = {"TinyTint": TinyTint, "TinyLabel": TinyLabel}
'''


def write_pack(root: Path) -> None:
    (root / "__init__.py").write_text(PACK, encoding="utf-8")
    (root / "requirements.txt").write_text("text-unidecode>=1.3\n")


def files_under(folder: Path) -> set[str]:
    return {str(Path(d, f).relative_to(folder)) for d, dirs, fs in os.walk(folder) if "__pycache__" not in d
            for f in fs}


def test_a_pack_repo_goes_from_init_to_green_and_catches_a_change(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = REPO / ".comfytest"
    root = pytester.path
    write_pack(root)
    monkeypatch.chdir(root)
    assert init_main(["--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "pytest --comfy-update-baselines" in out
    assert sorted(p.name for p in (root / "workflows").iterdir()) == [
        "TinyLabel.json", "TinyLabel.toml", "TinyTint.json", "TinyTint.toml"], "one per class of the pack, found by python_module"
    args = [f"--comfy-embedded-home={home}", "-p", "no:cacheprovider"]

    first = pytester.runpytest(*args)
    first.assert_outcomes(failed=2)
    # counted before pytest's short summary, which repeats each message whole or cut to the
    # terminal's width (CI's wide terminal shows it whole: counting all output found it twice)
    failures = first.stdout.str().split("short test summary info")[0]
    assert len(re.findall(r"no baseline yet for \w+::default \(", failures)) == 2, "once per case"

    pytester.runpytest(*args, "--comfy-update-baselines").assert_outcomes(passed=2)
    recorded = files_under(root / "baselines")
    assert {"TinyTint/default/3_0.png", "TinyTint/default/5_0.png", "TinyLabel/default/2_0.txt",
            "TinyLabel/default/3_0.txt"} <= recorded, "inside the pack's repository; every output kept"

    # the same suite on a launched ComfyUI (here the embedded copy, launched as a user's
    # checkout): the pack and comfytest's nodepack are loaded into it, nothing is written there
    emb = load_embedded(home)
    before = files_under(emb.comfyui_dir)
    launched = pytester.runpytest(*args, f"--comfy-launch={emb.comfyui_dir}", f"--comfy-python={emb.python}",
                                  "--comfy-launch-args=--cpu")
    launched.assert_outcomes(passed=2)
    assert files_under(emb.comfyui_dir) == before

    (root / "__init__.py").write_text(PACK.replace("(1.0, 0.8, 0.6)", "(1.0, 0.8, 0.5)"), encoding="utf-8")
    changed = pytester.runpytest(*args)
    changed.assert_outcomes(failed=1, passed=1)
    assert "FAILED workflows/TinyTint.json::default" in changed.stdout.str()


def fake_comfyui(folder: Path) -> Path:
    folder.mkdir()
    for name in ("main.py", "nodes.py", "folder_paths.py"):
        (folder / name).write_text("")
    (folder / "comfy").mkdir()
    (folder / "pytest.ini").write_text("[pytest]\naddopts = -ra\n")  # ComfyUI's repository has one
    return folder


def test_a_launched_comfyui_given_with_a_space_never_becomes_the_rootdir(pytester: pytest.Pytester, tmp_path: Path) -> None:
    comfy = fake_comfyui(tmp_path / "ComfyUI")
    before = files_under(comfy)
    pytester.makeini("[pytest]\ncomfy_workflows = workflows\n")
    (pytester.path / "workflows").mkdir()
    result = pytester.runpytest_subprocess("--comfy-launch", str(comfy))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"configuration file {comfy / 'pytest.ini'}" in err and "--comfy-launch=DIR" in err, err
    assert files_under(comfy) == before, "nothing written into the ComfyUI checkout (no .pytest_cache either)"

    for words in (["--comfy-results", str(comfy / "out")], [f"--comfy-baselines={comfy / 'b'}"]):
        result = pytester.runpytest_subprocess(f"--comfy-launch={comfy}", *words)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert "never writes into a ComfyUI it launches" in result.stderr.str() or \
            "inside the ComfyUI" in result.stderr.str() or "the value of an option" in result.stderr.str()
    assert files_under(comfy) == before


def test_option_paths_resolve_against_the_config_file_folder(pytester: pytest.Pytester) -> None:
    """Run from a subfolder: --comfy-results (relative) lands beside pytest.ini, not in the cwd."""
    pytester.makeini("[pytest]\n")
    sub = pytester.mkdir("sub")
    pytester.makeconftest(
        "def pytest_collection_finish(session):\n"
        "    from comfytest.plugin.hooks import state_of\n"
        "    print('RESULTS', state_of(session.config).settings.results)\n")
    os.chdir(sub)
    result = pytester.runpytest("--comfy-results=out", "--collect-only", "-p", "no:cacheprovider")
    assert f"RESULTS {pytester.path / 'out'}" in result.stdout.str()


@pytest.mark.parametrize("option", ["--comfy-baselines", "--comfy-results"])
def test_a_rootdir_taken_from_an_option_value_is_refused(pytester: pytest.Pytester, option: str) -> None:
    """``--comfy-baselines ../x`` with a space: pytest's rootdir moves to a common ancestor and
    the suite's configuration is lost; the session stops and names the fix."""
    pytester.makeini("[pytest]\n")
    other = pytester.path.parent / f"elsewhere-{option[2:]}"
    other.mkdir(exist_ok=True)
    result = pytester.runpytest_subprocess(option, str(other), "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"from '{other}', the value of an option" in err and f"{pytester.path / 'tox.ini'}" in err, err


def test_a_requirement_that_conflicts_with_the_embedded_pins_stops_the_session_naming_both(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (pytester.path / "requirements.txt").write_text("numpy<1.0\n")
    pytester.makeini("[pytest]\ncomfy_workflows = workflows\ncomfy_custom_nodes = .\n")
    (pytester.path / "workflows").mkdir()
    (pytester.path / "workflows" / "w.json").write_text(
        '{"1": {"class_type": "ComfyTestNoiseImage", "inputs": {"width": 8, "height": 8, "seed": 0, "batch_size": 1}},'
        ' "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}')
    result = pytester.runpytest_subprocess(f"--comfy-embedded-home={REPO / '.comfytest'}", "-p", "no:cacheprovider")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 1, out[-3000:]  # the pack's failure, not the machine's (75)
    assert "'numpy<1.0'" in out and "requirements.txt, line 1" in out
    assert re.search(r"conflicts with numpy==\d[\d.]*, installed in .*\(pinned by comfytest/embedded_constraints.txt\)", out), out[-3000:]
