"""UI-format conversion checked against the real frontend that the embedded server serves.

One headless Chromium (Debian's ``chromium``) for the module, on the session's real server.
The Python converter is compared with the frontend on every official template (the pinned
``comfyui-workflow-templates-json`` dev dependency) whose node classes the server has.
"""

from __future__ import annotations

import importlib.resources
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfytest.comfy.frontend import FrontendConverter, FrontendError, find_browser
from comfytest.errors import ConfigError, WorkflowError
from comfytest.workflows.conversion import UiConverter, prompt_differences
from comfytest.workflows.uiformat import convert_ui_workflow
from comfytest.workflows.uigraph import read_graph

from ..conftest import REPO

SUBGRAPH_EXAMPLE = REPO / "workflows" / "tiny_subgraph.json"

#: template → differences explained in docs/conversion.md (none left with 0.1.123 on 0.3.75).
#: A difference not listed here fails, and so does a listed one that went away.
KNOWN_DIFFERENCES: dict[str, set[str]] = {}
NO_WARNINGS = pytest.mark.filterwarnings("ignore::comfytest.workflows.uiformat.ConversionWarning")


def templates() -> list[Path]:
    try:
        root = importlib.resources.files("comfyui_workflow_templates_json") / "templates"
    except ModuleNotFoundError:
        return []
    return sorted(Path(str(p)) for p in root.iterdir() if str(p).endswith(".json"))


def ui_templates() -> list[tuple[Path, Any]]:
    found = []
    for path in templates():
        data = json.loads(path.read_text())
        if isinstance(data, dict) and isinstance(data.get("nodes"), list):
            found.append((path, data))
    return found


@pytest.fixture(scope="module")
def frontend(comfy: Any) -> Iterator[FrontendConverter]:
    browser = find_browser()
    if browser is None:
        pytest.skip("no Chromium on PATH (scripts/test installs Debian's chromium as root)")
    with FrontendConverter(comfy.url, browser) as converter:
        yield converter


def classes_known(data: Any, info: dict[str, Any]) -> bool:
    graph = read_graph(data, None)
    scopes = [graph.root, *(s.scope for s in graph.subgraphs.values())]
    virtual = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
    return all(n.type in info or n.type in virtual or n.type in graph.subgraphs
               for scope in scopes for n in scope.nodes.values())


@NO_WARNINGS
def test_python_converter_matches_the_frontend_on_every_known_template(
    comfy: Any, frontend: FrontendConverter
) -> None:
    found = ui_templates()
    if not found:
        pytest.skip("comfyui-workflow-templates-json is not installed (pip install -e '.[dev]')")
    info = comfy.object_info()
    compared, unexpected, gone = 0, {}, {}
    for path, data in found:
        if not classes_known(data, info):
            continue
        compared += 1
        python = convert_ui_workflow(data, info, path).to_prompt()
        differences = set(prompt_differences(frontend.convert(data, path.name), python))
        known = KNOWN_DIFFERENCES.get(path.name, set())
        if differences - known:
            unexpected[path.name] = sorted(differences - known)
        if known - differences:
            gone[path.name] = sorted(known - differences)
    print(f"templates: {len(found)}; compared: {compared}; identical: {compared - len(KNOWN_DIFFERENCES)}")
    # ovis: the frontend sends the inner KSampler's seed as its steps; so must the Python converter
    ovis = next(data for path, data in found if path.name == "image_ovis_text_to_image.json")
    assert convert_ui_workflow(ovis, info).nodes["57:44"].inputs["steps"] == 775709856082329
    assert compared >= 100  # the pinned 0.1.123 has 137 whose (audio nodes load since the torchaudio stand-in) classes 0.3.75 has
    assert unexpected == {}
    assert gone == {}, "update KNOWN_DIFFERENCES and docs/conversion.md"


@NO_WARNINGS
def test_every_template_converts_or_is_refused_in_one_sentence(comfy: Any) -> None:
    found = ui_templates()
    if not found:
        pytest.skip("comfyui-workflow-templates-json is not installed (pip install -e '.[dev]')")
    info = comfy.object_info()
    refused = {}
    for path, data in found:
        try:
            workflow = convert_ui_workflow(data, info, path)
        except WorkflowError as exc:
            refused[path.name] = str(exc)
            continue
        assert workflow.nodes, path.name
    assert len(found) == 644
    for name, message in refused.items():
        assert "\n" not in message and "Traceback" not in message, name
    assert not [n for n, m in refused.items() if "subgraph" in m and "contains itself" not in m]
    print(f"{len(found)} templates: {len(found) - len(refused)} convert, {len(refused)} refused")


def test_subgraph_example_converts_the_same_both_ways(comfy: Any, frontend: FrontendConverter) -> None:
    data = json.loads(SUBGRAPH_EXAMPLE.read_text())
    python = convert_ui_workflow(data, comfy.object_info(), SUBGRAPH_EXAMPLE).to_prompt()
    from_frontend = frontend.convert(data, "tiny_subgraph.json")
    assert "13:13:2" in from_frontend  # node 2 inside the nested instance 13 of instance 13
    assert prompt_differences(from_frontend, python) == []


@pytest.mark.parametrize("mode", ["python", "frontend"])
def test_subgraph_example_matches_its_baseline(
    pytester: pytest.Pytester, comfy_url: str, tmp_path: Path, mode: str
) -> None:
    if mode == "frontend" and find_browser() is None:
        pytest.skip("no Chromium on PATH (scripts/test installs Debian's chromium as root)")
    shutil.copy(SUBGRAPH_EXAMPLE, pytester.path / "tiny_subgraph.json")
    shutil.copy(SUBGRAPH_EXAMPLE.with_suffix(".toml"), pytester.path / "tiny_subgraph.toml")
    result = pytester.runpytest_subprocess(
        "tiny_subgraph.json", f"--comfy-url={comfy_url}", f"--comfy-convert={mode}",
        f"--comfy-baselines={REPO / 'baselines'}", f"--comfy-results={tmp_path / 'results'}",
        "-p", "no:cacheprovider", "-k", "lighthouse",
    )
    result.assert_outcomes(passed=1)
    (record,) = json.loads((tmp_path / "results" / "report.json").read_text())["tests"]
    assert record["conversion"]["method"] == mode


def test_a_workflow_the_frontend_cannot_load_says_so(frontend: FrontendConverter) -> None:
    broken = {"nodes": [{"id": 1, "type": "KSampler", "inputs": "not a list"}], "links": []}
    with pytest.raises(FrontendError, match=r"broken.json: the frontend at http://\S+ cannot load this workflow: TypeError"):
        frontend.convert(broken, "broken.json")
    dangling = {"nodes": [{"id": 1, "type": "VAEDecode", "inputs": [{"name": "samples", "type": "LATENT", "link": 5}]}],
                "links": [[5, 9, 0, 1, 0, "LATENT"]]}
    with pytest.raises(FrontendError, match=r"JavaScript error in the frontend .*InvalidLinkError"):
        frontend.convert(dangling, "dangling.json")


def test_frontend_mode_without_a_browser_says_how_to_get_one(comfy: Any) -> None:
    converter = UiConverter("frontend", comfy.url, chromium="/nonexistent/chromium")
    data = json.loads(SUBGRAPH_EXAMPLE.read_text())
    with pytest.raises(ConfigError, match=r"needs a browser.*apt-get install chromium.*--comfy-chromium PATH"):
        converter.convert(data, comfy.object_info(), SUBGRAPH_EXAMPLE)
    auto = UiConverter("auto", comfy.url, chromium="/nonexistent/chromium")
    workflow, how = auto.convert(data, comfy.object_info(), SUBGRAPH_EXAMPLE)
    assert how.method == "python" and how.reason is not None and "frontend unavailable" in how.reason
    assert "13:5" in workflow.nodes
