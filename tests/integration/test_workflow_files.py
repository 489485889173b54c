"""Workflow files as tests, end to end against the session's real ComfyUI.

pytester runs pytest on folders of workflow files (``inner_args`` points them at the server);
the Python-level tests use the ``comfy`` fixture directly. Workflows are model-free (the
project's node pack) except where the tiny SD1.5 checkpoint is the subject.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfytest.compare.images import image_hash
from comfytest.errors import PatchError
from comfytest.workflows.preflight import preflight
from comfytest.workflows.workflow import content_name, load_workflow

DATA = Path(__file__).parent.parent / "data"
WORKFLOWS = DATA / "workflows"
UI_FILE = DATA / "ui_workflows" / "tiny_txt2img_ui.json"

# In-process pytester runs restore sys.modules afterwards; a C extension imported lazily inside
# one (scipy.fftpack via phash) then cannot load again. Hashing once here imports it for good.
image_hash(Image.new("RGB", (8, 8)))


def noise(seed: int = 5, title: str = "Pattern") -> dict[str, Any]:
    return {"class_type": "ComfyTestNoiseImage", "_meta": {"title": title},
            "inputs": {"width": 16, "height": 16, "seed": seed, "batch_size": 1}}


def save(source: str, prefix: str = "ct_files") -> dict[str, Any]:
    return {"class_type": "SaveImage", "_meta": {"title": "Save"},
            "inputs": {"images": [source, 0], "filename_prefix": prefix}}


def through(class_type: str, title: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "_meta": {"title": title},
            "inputs": {"image": ["1", 0], **inputs}}


NOISE = {"1": noise(), "2": save("1")}
RAISE = {"1": noise(), "2": through("ComfyTestRaise", "Explode", message="boom on purpose"),
         "3": save("2")}
SLEEP = {"1": noise(), "2": through("ComfyTestSleep", "Nap", seconds=30.0), "3": save("2")}
ZERO_STEPS = {"1": noise(), "2": through("ComfyTestProgress", "Steps", steps=0, delay=0.0),
              "3": save("2")}
BAD_COMBO = {"1": noise(), "2": through("ImageScale", "Resize", upscale_method="bilinearx",
                                        width=8, height=8, crop="disabled"), "3": save("2")}
PARTIAL = {**ZERO_STEPS, "4": save("1", "ct_partial")}
VHS = {"1": {"class_type": "VHS_LoadVideo", "_meta": {"title": "Load clip"},
             "inputs": {"video": "clip.mp4"}}, "2": save("1")}


def write(folder: Path, files: dict[str, Any]) -> Path:
    """Write ``{relative name: dict (as JSON) | str (as is)}`` under ``folder``."""
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = content if isinstance(content, str) else json.dumps(content, indent=1)
        path.write_text(text, encoding="utf-8")
    return folder


def run(pytester: pytest.Pytester, args: list[str], files: dict[str, Any], *extra: str) -> Any:
    write(pytester.path / "wf", files)
    return pytester.runpytest(*args, *extra, "wf")


def report(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "results" / "report.json").read_text())
    return {t["nodeid"].removeprefix("wf/"): t for t in data["tests"]}  # "x.json::case"


def failure_text(result: Any) -> str:
    text = str(result.stdout.str())
    assert "{'" not in text, "a raw dict reached the user"
    assert "INTERNALERROR" not in text
    return text


def png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


# --- collection --------------------------------------------------------------------------


def test_a_folder_is_collected_and_other_json_left_alone(
    pytester: pytest.Pytester, inner_args: list[str]
) -> None:
    files = {"a.json": NOISE, "sub/b.json": NOISE, "package.json": {"name": "x", "version": "1"},
             "sub/data.json": {"colors": {"red": 1}}}
    result = run(pytester, inner_args, files, "--collect-only", "-q")
    result.assert_outcomes()
    assert result.ret == 0
    result.stdout.fnmatch_lines(["wf/a.json::default", "wf/sub/b.json::default"])
    assert "package.json" not in result.stdout.str()


CASES_TOML = """
[cases.alpha]
seed = 1
[cases.beta]
seed = 2
marks = ["slow"]
[cases.grid]
matrix = { "title:Pattern.seed" = [3, 4], "#1.width" = [8] }
"""


def test_k_m_and_matrix_ids(pytester: pytest.Pytester, inner_args: list[str]) -> None:
    files = {"n.json": NOISE, "n.toml": CASES_TOML}
    result = run(pytester, inner_args, files, "--collect-only", "-q")
    result.stdout.fnmatch_lines([
        "wf/n.json::alpha", "wf/n.json::beta",
        "wf/n.json::grid[[]3-8[]]", "wf/n.json::grid[[]4-8[]]",
    ])
    only_matrix = pytester.runpytest(*inner_args, "--collect-only", "-q", "-k", "grid[4-8]", "wf")
    only_matrix.stdout.fnmatch_lines(["wf/n.json::grid[[]4-8[]]", "*1/4 tests collected (3 deselected)*"])
    only_k = pytester.runpytest(*inner_args, "--collect-only", "-q", "-k", "beta", "wf")
    only_k.stdout.fnmatch_lines(["wf/n.json::beta", "*1/4 tests collected (3 deselected)*"])
    only_m = pytester.runpytest(*inner_args, "--collect-only", "-q", "-m", "slow", "wf")
    only_m.stdout.fnmatch_lines(["wf/n.json::beta", "*1/4 tests collected (3 deselected)*"])


def test_node_id_runs_one_case(
    pytester: pytest.Pytester, inner_args: list[str], tmp_path: Path
) -> None:
    write(pytester.path / "wf", {"n.json": NOISE, "n.toml": CASES_TOML})
    result = pytester.runpytest(*inner_args, "--comfy-update-baselines", "wf/n.json::alpha")
    result.assert_outcomes(passed=1)
    assert list(report(tmp_path)) == ["n.json::alpha"]


def test_last_failed_reruns_only_the_failure(
    pytester: pytest.Pytester, inner_args: list[str]
) -> None:
    args = [a for a in inner_args if a not in ("-p", "no:cacheprovider")]
    files = {"good.json": NOISE, "bad.json": RAISE}
    run(pytester, args, files, "--comfy-update-baselines").assert_outcomes(passed=1, failed=1)
    again = pytester.runpytest(*args, "--lf", "wf")
    again.assert_outcomes(failed=1)
    again.stdout.fnmatch_lines(["*run-last-failure: rerun previous 1 failure*"])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{\n  "1": {"class_type": "X",\n  "inputs": {}\n', "wf/bad.json:4:1: invalid JSON"),
        ("", "wf/bad.json: the file is empty; expected an API-format workflow"),
        ("[1, 2]", "wf/bad.json: expected a JSON object of nodes, found a list"),
    ],
    ids=["invalid", "empty", "list"],
)
def test_broken_files_are_collection_errors(
    pytester: pytest.Pytester, inner_args: list[str], content: str, expected: str
) -> None:
    result = run(pytester, inner_args, {"bad.json": content, "ok.json": NOISE}, "--collect-only")
    result.assert_outcomes(errors=1)
    assert expected in failure_text(result)
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("tolerence = 3", "wf/n.toml: top level: unknown key 'tolerence' (did you mean 'tolerance'?)"),
        ('[cases.one]\nseed = "x"',
         "wf/n.toml: case 'one': 'seed' must be an integer >= 0, found string 'x'"),
        ("[cases.one]\npatches = { Nope = { seed = 1 } }",
         "wf/n.json: selector 'Nope' matches no node. Nodes:\n  1 'Pattern' (ComfyTestNoiseImage)"),
    ],
    ids=["unknown-key", "wrong-type", "selector"],
)
def test_settings_file_errors_name_file_case_and_key(
    pytester: pytest.Pytester, inner_args: list[str], toml: str, expected: str
) -> None:
    result = run(pytester, inner_args, {"n.json": NOISE, "n.toml": toml}, "--collect-only")
    result.assert_outcomes(errors=1)
    text = failure_text(result)
    assert expected in text
    assert "wf/n.toml: " in text


# --- UI-format files ---------------------------------------------------------------------


def test_ui_format_converts_like_the_api_export(comfy: Any) -> None:
    prepared = comfy.prepare(UI_FILE)  # the server's own /object_info names the widgets
    assert prepared.workflow.to_prompt() == load_workflow(WORKFLOWS / "tiny_txt2img.json").to_prompt()


def test_ui_format_file_runs(
    pytester: pytest.Pytester, inner_args: list[str], tmp_path: Path
) -> None:
    files = {"ui.json": UI_FILE.read_text(), "ui.toml": "seed = 3\npatches = { KSampler = { steps = 1 } }",
             "group.json": {"nodes": [{"id": 1, "type": "workflow>Upscale group"}], "links": []}}
    result = run(pytester, inner_args, files, "--comfy-update-baselines", "--continue-on-collection-errors")
    result.assert_outcomes(passed=1, errors=1)  # a group node fails at collection already
    text = failure_text(result)
    assert "node 1 (workflow>Upscale group) in the workflow is a legacy group node" in text
    assert "Workflow menu → Export (API)" in text
    (seed,) = report(tmp_path)["ui.json::default"]["seeds"]
    assert (seed["node_id"], seed["input"], seed["value"]) == ("5", "seed", 3)


# --- seeds and the precedence of settings ------------------------------------------------


@pytest.mark.parametrize(
    ("case", "file_default", "cli", "ini", "expected"),
    [
        (11, 22, 33, 44, 11),
        (None, 22, 33, 44, 22),
        (None, None, 33, 44, 33),
        (None, None, None, 44, 44),
        (None, None, None, None, 5),  # the seed written in the workflow
    ],
    ids=["case", "file", "cli", "ini", "default"],
)
def test_seed_precedence(
    pytester: pytest.Pytester, inner_args: list[str], tmp_path: Path,
    case: int | None, file_default: int | None, cli: int | None, ini: int | None, expected: int,
) -> None:
    toml = (f"seed = {file_default}\n" if file_default is not None else "") + "[cases.c]\n"
    toml += f"seed = {case}\n" if case is not None else ""
    if ini is not None:
        pytester.makeini(f"[pytest]\ncomfy_seed = {ini}\n")
    extra = [f"--comfy-seed={cli}"] if cli is not None else []
    result = run(pytester, inner_args, {"n.json": NOISE, "n.toml": toml},
                 "--comfy-update-baselines", *extra)
    result.assert_outcomes(passed=1)
    assert report(tmp_path)["n.json::c"]["seeds"] == [
        {"node_id": "1", "class_type": "ComfyTestNoiseImage", "input": "seed", "value": expected}
    ]


# --- patches, selectors, uploads (Python API on the real server) --------------------------


def test_patches_by_id_class_title_and_role_are_what_ran(comfy: Any) -> None:
    patches = {
        "#4": {"width": 56},
        "KSampler": {"steps": 1},
        "title:Negative": {"text": "grainy"},
        "positive": {"text": "a red cube"},
    }
    result = comfy.run(WORKFLOWS / "tiny_txt2img.json", seed=9, patches=patches)
    ran = result.history["prompt"][2]  # the prompt as the server stored it
    assert ran["4"]["inputs"]["width"] == 56
    assert ran["5"]["inputs"]["steps"] == 1
    assert ran["5"]["inputs"]["seed"] == 9
    assert ran["3"]["inputs"]["text"] == "grainy"
    assert ran["2"]["inputs"]["text"] == "a red cube"
    assert {(p.node_id, p.input) for p in result.patches} == {
        ("4", "width"), ("5", "steps"), ("3", "text"), ("2", "text")}
    assert result.images[0].image.size == (56, 64)


@pytest.mark.parametrize(
    ("patches", "expected"),
    [
        ({"title:Nope": {"text": "x"}}, ["selector 'title:Nope' matches no node. Nodes:",
                                         "  2 'Positive' (CLIPTextEncode)"]),
        ({"CLIPTextEncode": {"text": "x"}}, ["matches 2 nodes, expected one:",
                                             "  2 'Positive' (CLIPTextEncode)",
                                             "  3 'Negative' (CLIPTextEncode)",
                                             "use 'all:CLIPTextEncode'"]),
        ({"KSampler": {"stpes": 2}}, ["(KSampler) has no input 'stpes'. Did you mean 'steps'?",
                                      "Valid inputs: cfg, denoise"]),
    ],
    ids=["nothing", "several", "unknown-input"],
)
def test_selector_errors_list_candidates(
    comfy: Any, patches: dict[str, Any], expected: list[str]
) -> None:
    with pytest.raises(PatchError) as err:
        comfy.prepare(WORKFLOWS / "tiny_txt2img.json", patches=patches)
    for line in expected:
        assert line in str(err.value)
    assert "{'" not in str(err.value)


def test_unknown_input_in_a_settings_file_fails_readably(
    pytester: pytest.Pytester, inner_args: list[str]
) -> None:
    result = run(pytester, inner_args, {"n.json": NOISE, "n.toml": 'patches = { "title:Pattern" = { sede = 1 } }'})
    result.assert_outcomes(failed=1)
    assert "has no input 'sede'. Did you mean 'seed'?" in failure_text(result)


def test_inputs_are_uploaded_under_content_addressed_names(comfy: Any) -> None:
    data = png((200, 30, 30))
    name = content_name(data, ".png")
    first = comfy.client.upload_image(data, name, overwrite=True)
    second = comfy.client.upload_image(data, name, overwrite=True)
    assert first == second == name  # the /upload/image reply: no "name (1).png" copies
    workflow = {"1": {"class_type": "LoadImage", "_meta": {"title": "Load input image"},
                      "inputs": {"image": "placeholder.png"}}, "2": save("1", "ct_upload")}
    result = comfy.run(workflow, inputs={"title:Load input image": data})
    assert result.prompt["1"]["inputs"]["image"] == name
    assert result.history["prompt"][2]["1"]["inputs"]["image"] == name
    assert result.images[0].image.convert("RGB").getpixel((0, 0)) == (200, 30, 30)


# --- preflight -----------------------------------------------------------------------------


def _sdxl_files() -> dict[str, Any]:
    toml = """seed = 1
patches = { positive = { text = "a glass bottle" }, negative = { text = "blurry" } }
[cases.img2img]
inputs = { "title:Load Image" = "in.png" }
"""
    return {
        "vhs.json": VHS,
        "sdxl_txt2img.json": (WORKFLOWS / "seed_sdxl_txt2img.json").read_text(),
        "sdxl_img2img.json": (WORKFLOWS / "seed_sdxl_img2img.json").read_text(),
        "sdxl_img2img.toml": toml,
    }


def test_preflight_names_missing_node_packs_and_models(
    pytester: pytest.Pytester, inner_args: list[str], tmp_path: Path
) -> None:
    (pytester.path / "wf").mkdir()
    (pytester.path / "wf" / "in.png").write_bytes(png((10, 90, 10)))
    result = run(pytester, inner_args, _sdxl_files())
    result.assert_outcomes(failed=3)
    text = failure_text(result)
    assert "node class VHS_LoadVideo is not installed: node 1 'Load clip' (VHS_LoadVideo) of" in text
    assert "install ComfyUI-VideoHelperSuite" in text
    records = report(tmp_path)
    for case in ("sdxl_txt2img.json::default", "sdxl_img2img.json::img2img"):
        assert "sdXL_v10VAEFix.safetensors is not installed" in records[case]["message"]
        assert records[case]["failure_kind"] == "preflight"
    # the settings were applied before the check: seed pinned, prompts patched
    img2img = records["sdxl_img2img.json::img2img"]
    assert img2img["seeds"][0]["value"] == 1
    assert {p["node_id"] for p in img2img["patches"]} == {"6", "7"}


def test_missing_skip_turns_preflight_into_skips(
    pytester: pytest.Pytester, inner_args: list[str], tmp_path: Path
) -> None:
    (pytester.path / "wf").mkdir()
    (pytester.path / "wf" / "in.png").write_bytes(png((10, 90, 10)))
    result = run(pytester, inner_args, _sdxl_files(), "--comfy-missing=skip", "-rs")
    result.assert_outcomes(skipped=3)
    records = report(tmp_path)
    message = records["sdxl_img2img.json::img2img"]["message"]
    assert "sdXL_v10VAEFix.safetensors is not installed" in message
    assert "install ComfyUI-VideoHelperSuite" in result.stdout.str()


def test_sdxl_workflows_load_patch_and_fail_preflight(comfy: Any) -> None:
    prepared = comfy.prepare(
        WORKFLOWS / "seed_sdxl_img2img.json", seed=123,
        patches={"positive": {"text": "a glass bottle"}},
        inputs={"title:Load Image": png((1, 2, 3))},
    )
    nodes = prepared.workflow.nodes
    assert nodes["3"].inputs["seed"] == 123
    assert nodes["6"].inputs["text"] == "a glass bottle"
    assert nodes["10"].inputs["image"].startswith("comfytest_")
    (problem,) = preflight(prepared.workflow, comfy.object_info())
    assert problem.message.startswith(
        "sdXL_v10VAEFix.safetensors is not installed: node 4 'Load Checkpoint' "
        "(CheckpointLoaderSimple) needs it in models/checkpoints/")


# --- failures while running ----------------------------------------------------------------


def test_validation_errors_name_node_input_and_message(
    pytester: pytest.Pytester, inner_args: list[str]
) -> None:
    result = run(pytester, inner_args, {"zero.json": ZERO_STEPS, "combo.json": BAD_COMBO,
                                        "partial.json": PARTIAL})
    result.assert_outcomes(failed=3)
    text = failure_text(result)
    assert "The server rejected the workflow" in text
    assert "node 2 'Steps' (ComfyTestProgress):" in text
    assert "input 'steps': Value 0 smaller than min of 1\n" in text
    assert "node 2 'Resize' (ImageScale):" in text
    assert "input 'upscale_method': Value not in list" in text
    assert "The server accepted only part of the workflow" in text


def test_execution_error_shows_node_exception_traceback_and_progress(
    pytester: pytest.Pytester, inner_args: list[str]
) -> None:
    fresh = {**RAISE, "1": noise(seed=4242)}  # a seed no other test uses: node 1 runs here,
    # and the same workflow again takes node 1 from the server's cache
    result = run(pytester, inner_args, {"a_raise.json": fresh, "b_again.json": fresh})
    result.assert_outcomes(failed=2)
    text = failure_text(result)
    assert "node 2 'Explode' (ComfyTestRaise) failed while running: RuntimeError: boom on purpose" in text
    assert "traceback (last lines):" in text
    assert "raise RuntimeError(message)" in text
    assert "finished before the failure: node 1 'Pattern' (ComfyTestNoiseImage)" in text
    assert "taken from the server's cache: node 1 'Pattern' (ComfyTestNoiseImage)" in text
    assert "^^^" not in text


def test_timeout_names_the_running_node(pytester: pytest.Pytester, inner_args: list[str]) -> None:
    result = run(pytester, inner_args, {"sleep.json": SLEEP, "sleep.toml": "timeout = 1"})
    result.assert_outcomes(failed=1)
    text = failure_text(result)
    assert "did not finish within 1 s" in text
    assert "node 2 'Nap' (ComfyTestSleep) was running" in text

