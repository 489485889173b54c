"""Record what a newer ComfyUI's frontend makes of the templates with V3 dynamic combos (maintainers' tool).

CI runs ComfyUI 0.3.75, which declares no V3 dynamic inputs, and cannot fetch or run a newer
one; so the unit test ``tests/unit/test_dynamic_combos.py`` replays what this script recorded
from a real ComfyUI 0.26.0 (frontend 1.45.19) by hand:

* ``object_info.json``: the server's ``/object_info``, trimmed to the node classes the recorded
  templates use (tooltips, descriptions and other display text dropped: no converter reads them);
* ``frontend_prompts.json``: for each template in ``TEMPLATES`` (of the pinned
  ``comfyui-workflow-templates-json``; each uses a class whose ``/object_info`` declares a
  ``COMFY_DYNAMICCOMBO_V3`` input, and 0.26.0 has all its classes): ``(await app.graphToPrompt()).output`` after
  ``app.loadGraphData(template)`` in headless Chromium (comfytest's own ``FrontendConverter``);
* ``frontend_nodes.json``: for one node of each such class, its widgets and input slots as the
  frontend built them after loading, and how it saves them again (``node.serialize()``).

Run it with comfytest's venv against a running server, e.g.::

    python main.py --cpu --port 8199 &          # in the ComfyUI 0.26.0 checkout, with its venv
    COMFY_URL=http://127.0.0.1:8199 .venv/bin/python scripts/record_dynamic_combos.py \\
        tests/data/dynamic_combos

Nothing here is needed at test time.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import sys
from pathlib import Path
from typing import Any

import requests

from comfytest.comfy.compat import server_info
from comfytest.comfy.frontend import FrontendConverter, find_browser
from comfytest.workflows.dynamic import class_entries, is_dynamic_combo
from comfytest.workflows.uigraph import read_graph

#: the templates recorded: ten that use dynamic-combo sub-inputs, one or two per kind of node
#: (ResizeImageMaskNode alone and inside a subgraph with promoted sub-widgets, API nodes whose
#: ``model`` combo holds widgets and autogrow sockets, Rodin's ``mode``, Meshy's ``should_remesh``)
TEMPLATES = (
    "Image_capybara_v0_1_image_edit.json", "api_flux2.json", "api_google_nano_banana2_text_to_image.json",
    "api_meshy_text_to_model.json", "api_openai_gpt_image_2_t2i.json", "api_rodin3d_gen2_5_text_to_3d.json",
    "api_vidu_q3_text_to_video.json", "api_wan2_7_t2v.json", "utility_image_stitch.json", "video_ltx2_i2v.json",
)
VIRTUAL = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
DISPLAY_KEYS = {"tooltip", "description", "display_name", "search_aliases", "output_tooltips", "price_badge",
                "essentials_category", "category", "python_module"}

_INSPECT_JS = """
((type) => {
  const subs = window.app.graph.subgraphs ? [...window.app.graph.subgraphs.values()].flatMap((s) => s.nodes) : [];
  const node = window.app.graph.nodes.find((n) => n.type === type) ?? subs.find((n) => n.type === type);
  if (!node) return null;
  const saved = node.serialize();
  return {
    id: node.id,
    widgets: (node.widgets ?? []).map((w) => ({name: w.name, type: w.type, value: w.value,
                                               serialize: w.serialize !== false})),
    inputs: (node.inputs ?? []).map((i) => ({name: i.name, type: i.type, link: i.link ?? null,
                                             widget: i.widget ? i.widget.name : null})),
    saved_inputs: (saved.inputs ?? []).map((i) => i.name),
    saved_widgets_values: saved.widgets_values ?? null,
  };
})
"""


def templates() -> list[tuple[str, Any]]:
    root = importlib.resources.files("comfyui_workflow_templates_json") / "templates"
    found = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json"):
            data = json.loads(entry.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("nodes"), list):
                found.append((entry.name, data))
    return found


def classes_of(data: Any) -> set[str]:
    graph = read_graph(data, None)
    scopes = [graph.root, *(s.scope for s in graph.subgraphs.values())]
    return {n.type for scope in scopes for n in scope.nodes.values()
            if n.type not in VIRTUAL and n.type not in graph.subgraphs}


def dynamic_classes(info: dict[str, Any]) -> set[str]:
    return {c for c in info if any(is_dynamic_combo(spec) for _, spec, _ in class_entries(info, c))}


def trimmed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: trimmed(v) for k, v in value.items() if k not in DISPLAY_KEYS}
    if isinstance(value, list):
        return [trimmed(v) for v in value]
    return value


def main(out: Path) -> None:
    url = os.environ.get("COMFY_URL", "http://127.0.0.1:8199").rstrip("/")
    info: dict[str, Any] = requests.get(url + "/object_info", timeout=60).json()
    stats = requests.get(url + "/system_stats", timeout=10).json()["system"]
    dynamic = dynamic_classes(info)
    chosen = []
    for name, data in templates():
        used = classes_of(data)
        if name in TEMPLATES and used & dynamic and used <= set(info):
            chosen.append((name, data, used))
    browser = find_browser()
    if browser is None:
        sys.exit("no Chromium found")
    prompts: dict[str, Any] = {}
    nodes: dict[str, Any] = {}
    with FrontendConverter(url, browser) as frontend:
        for name, data, used in chosen:
            prompts[name] = frontend.convert(data, name)
            for cls in sorted(used & dynamic - set(nodes)):
                found = frontend.evaluate(f"({_INSPECT_JS})({json.dumps(cls)})", name)
                if found is not None:
                    nodes[cls] = {"template": name, **found}
    classes = sorted(set().union(*(used for _, _, used in chosen)))
    server = server_info({"system": stats}).label()
    out.mkdir(parents=True, exist_ok=True)
    write(out / "object_info.json", {"server": server, "classes": {c: trimmed(info[c]) for c in classes}})
    write(out / "frontend_prompts.json", {"server": server, "prompts": prompts})
    write(out / "frontend_nodes.json", {"server": server, "nodes": nodes})
    print(f"{server}: {len(dynamic)} classes declare dynamic combos; {len(chosen)} templates recorded, "
          f"{len(classes)} classes kept")


def write(path: Path, document: Any) -> None:
    # keys keep the server's order: an option's inputs are laid out in it
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/dynamic_combos"))
