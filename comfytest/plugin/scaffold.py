"""``comfytest-node``: a node's inputs, and a workflow + settings file scaffolded for node classes.

An author should not have to start ComfyUI by hand and read ``/object_info`` to write a test::

    comfytest-node ComfyTestBlur                        # inputs and outputs (embedded server)
    comfytest-node --url http://127.0.0.1:8188 ImageBlur ImageInvert --write workflows/blur.json

``--write`` chains the classes in the order given: every required widget input gets its
default, every linked input takes the output of the nearest earlier node of that type, and an
IMAGE left over at the end goes into a SaveImage. It writes the API-format workflow and a
settings file beside it (never over an existing file) and lists the inputs nothing feeds.
``/object_info`` comes from ``--url``, ``--launch DIR`` or the embedded server, or from a saved
JSON file (``--object-info FILE``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from comfytest.compare.interface import snapshot
from comfytest.errors import ComfyTestError

Info = Mapping[str, Any]


def describe(cls: str, entry: Mapping[str, Any]) -> list[str]:
    """``ImageBlur`` followed by one line per input and output."""
    snap = snapshot(entry)
    lines = [f"{cls}" + (" (output node)" if snap["output_node"] else "")]
    for name, spec in snap["inputs"].items():
        extra = ", ".join(f"{k} {json.dumps(v)}" for k, v in spec.items() if k not in ("section", "type"))
        lines.append(f"  input  {name}: {spec['type']} [{spec['section']}]" + (f"  {extra}" if extra else ""))
    for index, out in enumerate(snap["outputs"]):
        lines.append(f"  output {index} {out['name']}: {out['type']}")
    return lines


def scaffold(classes: Sequence[str], info: Info) -> tuple[dict[str, Any], list[str]]:
    """An API-format workflow chaining ``classes``, and the inputs left unconnected."""
    prompt: dict[str, Any] = {}
    produced: list[tuple[str, int, str]] = []  # (node id, output index, type), latest last
    unfed: list[str] = []
    for cls in classes:
        node_id = str(len(prompt) + 1)
        snap = snapshot(info[cls])
        inputs: dict[str, Any] = {}
        for name, spec in snap["inputs"].items():
            source = next(((n, i) for n, i, t in reversed(produced) if t == spec["type"]), None)
            if "default" in spec or spec["type"] == "COMBO":
                if spec["section"] == "required":
                    inputs[name] = spec.get("default", (spec.get("options") or [None])[0])
            elif source is not None:
                inputs[name] = [source[0], source[1]]
            elif spec["section"] == "required" and spec["type"] in ("INT", "FLOAT", "STRING", "BOOLEAN"):
                inputs[name] = {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[spec["type"]]
            elif spec["section"] == "required":
                unfed.append(f"node {node_id} ({cls}) input {name!r} needs a {spec['type']}")
        prompt[node_id] = {"class_type": cls, "_meta": {"title": cls}, "inputs": inputs}
        produced.extend((node_id, i, o["type"]) for i, o in enumerate(snap["outputs"]))
    last_image = next(((n, i) for n, i, t in reversed(produced) if t == "IMAGE"), None)
    if last_image is not None and "SaveImage" in info and not snapshot(info[classes[-1]])["output_node"]:
        prompt[str(len(prompt) + 1)] = {"class_type": "SaveImage", "_meta": {"title": "Save"},
                                        "inputs": {"images": list(last_image), "filename_prefix": "comfytest"}}
    return prompt, unfed


SETTINGS = """\
# comfytest settings for {name}.json (see docs/baselines.md)
seed = 0
# max_diff = 4          # pixel criteria beside the hash; exact = true for pure image operations
# timing = {{ abs_ms = 10, rel_pct = 50, floor_ms = 0 }}

[cases.default]
"""


def write(path: Path, prompt: Mapping[str, Any]) -> list[Path]:
    """The workflow and its settings file; refuses to overwrite either."""
    toml = path.with_suffix(".toml")
    for target in (path, toml):
        if target.exists():
            raise ComfyTestError(f"{target} exists; comfytest-node never overwrites a file (choose another name)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(prompt, indent=2) + "\n")
    toml.write_text(SETTINGS.format(name=path.stem))
    return [path, toml]


def fetch_info(args: argparse.Namespace) -> dict[str, Any]:
    if args.object_info:
        data: dict[str, Any] = json.loads(Path(args.object_info).read_text())
        return data
    from comfytest.plugin.session import open_session
    from comfytest.plugin.settings import Settings

    settings = Settings(urls=(args.url,) if args.url else (), launch=args.launch, python=args.python,
                        embedded_home=args.home, launch_args=("--cpu",) if args.launch else ())
    with tempfile.TemporaryDirectory(prefix="comfytest-node-") as tmp:
        session = open_session(settings, Path(tmp))
        try:
            return session.object_info()
        finally:
            session.close()


def main(argv: Sequence[str] | None = None, prog: str = "comfytest node") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("classes", nargs="+", metavar="CLASS", help="node class names (class_type)")
    parser.add_argument("--url", help="a running ComfyUI")
    parser.add_argument("--launch", type=Path, help="start the ComfyUI in this folder")
    parser.add_argument("--python", type=Path, help="python for --launch")
    parser.add_argument("--home", type=Path, help="embedded ComfyUI home (default: COMFYTEST_HOME)")
    parser.add_argument("--object-info", help="a saved /object_info JSON instead of a server")
    parser.add_argument("--write", type=Path, metavar="WORKFLOW.json", help="scaffold a workflow and settings file")
    args = parser.parse_args(argv)
    try:
        info = fetch_info(args)
        unknown = [c for c in args.classes if c not in info]
        if unknown:
            raise ComfyTestError(f"node class(es) not on the server: {', '.join(unknown)} (is the pack installed?)")
        for cls in args.classes:
            print("\n".join(describe(cls, info[cls])))
        if args.write:
            prompt, unfed = scaffold(args.classes, info)
            for path in write(args.write, prompt):
                print(f"wrote {path}")
            for line in unfed:
                print(f"connect by hand: {line}")
    except ComfyTestError as exc:
        print(f"comfytest-node: {exc}", file=sys.stderr)
        return 2
    return 0


__all__ = ["describe", "main", "scaffold", "write"]


if __name__ == "__main__":
    sys.exit(main())
