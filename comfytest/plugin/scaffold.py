"""``comfytest node``: a node's inputs, a pack's classes, and a workflow + settings file scaffolded for node classes.

An author should not have to start ComfyUI by hand and read ``/object_info`` to write a test::

    comfytest node ComfyTestBlur                        # inputs and outputs (embedded server)
    comfytest node --custom-nodes . --list my_pack      # the classes of the pack in this folder
    comfytest node --url http://127.0.0.1:8188 ImageBlur ImageInvert --write workflows/blur.json

``--write`` chains the classes in the order given: widgets get their defaults (a COMBO whose
default gives a flat image — ``none``, ``custom``, ``black`` — gets another option; colours a
mid-tone), every linked input takes the output of the nearest earlier node of that type or a
seeded source (``ComfyTestNoiseImage``), and every output nothing consumes goes into a node
that shows it (SaveImage, SaveLatent, ComfyTestText, PreviewAny), so the whole chain runs and
every output is compared. It writes the API-format workflow and a settings file beside it
(never over an existing file) and lists what it could not connect. ``/object_info`` comes from
``--url``, ``--launch DIR`` or the embedded server (one per command, however many classes), or
from a saved JSON file (``--object-info FILE``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from comfytest.comfy.nodepacks import check_pack
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


# values that make an image flat or empty: a scaffold that picks them tests nothing
_DEGENERATE = frozenset({"none", "custom", "disabled", "disable", "off", "false", "black", "transparent", "", "null",
                         "zero", "no", "empty"})
_COLOR = "#e07b39"
_SINK = {"IMAGE": "SaveImage", "LATENT": "SaveLatent", "STRING": "ComfyTestText"}


class _Builder:
    """A prompt being assembled: nodes by id, and the outputs nothing consumes yet."""

    def __init__(self, info: Info) -> None:
        self.info = info
        self.prompt: dict[str, Any] = {}
        self.unfed: list[str] = []
        self.produced: list[tuple[str, int, str]] = []  # (node id, output index, type), latest last
        self.used: set[tuple[str, int]] = set()

    def add(self, cls: str, inputs: dict[str, Any], title: str | None = None) -> str:
        node_id = str(len(self.prompt) + 1)
        self.prompt[node_id] = {"class_type": cls, "_meta": {"title": title or cls}, "inputs": inputs}
        return node_id

    def source(self, kind: str) -> list[Any] | None:
        found = next(((n, i) for n, i, t in reversed(self.produced) if t == kind), None)
        if found is None:
            found = self._made_source(kind)
        if found is None:
            return None
        self.used.add(found)
        return [found[0], found[1]]

    def _made_source(self, kind: str) -> tuple[str, int] | None:
        """A seeded noise image (and, for a MASK, its red channel); an empty latent."""
        if kind in ("IMAGE", "MASK") and "ComfyTestNoiseImage" in self.info:
            seed = sum(1 for n in self.prompt.values() if n["class_type"] == "ComfyTestNoiseImage")
            image = self.add("ComfyTestNoiseImage", {"width": 128, "height": 128, "seed": seed, "batch_size": 1},
                             "seeded noise (comfytest)")  # a second image differs from the first
            if kind == "IMAGE":
                return image, 0
            if "ImageToMask" in self.info:
                return self.add("ImageToMask", {"image": [image, 0], "channel": "red"}), 0
        if kind == "LATENT" and "EmptyLatentImage" in self.info:
            return self.add("EmptyLatentImage", {"width": 64, "height": 64, "batch_size": 1}), 0
        return None

    def node(self, cls: str) -> None:
        snap = snapshot(self.info[cls])
        inputs: dict[str, Any] = {}
        pending: list[tuple[str, dict[str, Any]]] = []
        for name, spec in snap["inputs"].items():
            if spec["section"] != "required":
                continue
            value = widget_value(name, spec)
            if value is not _LINK:
                inputs[name] = value
            else:
                pending.append((name, spec))
        for name, spec in pending:
            link = self.source(spec["type"])
            if link is not None:
                inputs[name] = link
            else:
                self.unfed.append(f"{cls} input {name!r} needs a {spec['type']}")
        node_id = self.add(cls, inputs)
        self.produced.extend((node_id, i, o["type"]) for i, o in enumerate(snap["outputs"]))

    def sinks(self) -> None:
        """Every output nothing consumes goes into a node that shows it, so every node runs and
        everything it makes is compared."""
        for node_id, index, kind in list(self.produced):
            if (node_id, index) in self.used:
                continue
            link = [node_id, index]
            if kind == "MASK" and "MaskToImage" in self.info:
                link, kind = [self.add("MaskToImage", {"mask": link}), 0], "IMAGE"
            sink = _SINK.get(kind)
            if sink == "SaveImage" and sink in self.info:
                self.add(sink, {"images": link, "filename_prefix": "comfytest"}, "Save")
            elif sink == "SaveLatent" and sink in self.info:
                self.add(sink, {"samples": link, "filename_prefix": "comfytest"}, "Save latent")
            elif sink == "ComfyTestText" and sink in self.info:
                self.add(sink, {"value": link}, "Text (comfytest)")
            elif "PreviewAny" in self.info:
                self.add("PreviewAny", {"source": link}, f"Show {kind}")
            else:
                self.unfed.append(f"output {index} ({kind}) of node {node_id} goes nowhere (no node to show it)")


_LINK = object()


def widget_value(name: str, spec: Mapping[str, Any]) -> Any:
    """The value a scaffold gives a widget input, or ``_LINK`` when the input takes a link."""
    kind = spec["type"]
    if spec.get("forceInput"):
        return _LINK
    colorish = "color" in name.lower() or "colour" in name.lower()
    if kind == "COMBO" or "options" in spec:
        return combo_value(list(spec.get("options") or []), spec.get("default"))
    if kind == "STRING" and "default" in spec:
        default = spec["default"]
        if colorish or (isinstance(default, str) and default.startswith("#")):
            return _COLOR
        return default
    if kind == "INT" and colorish:
        return min(int(spec.get("max", 0xE07B39)), 0xE07B39)
    if kind in ("INT", "FLOAT", "BOOLEAN") and "default" in spec:
        return spec["default"]
    if kind in ("INT", "FLOAT", "BOOLEAN", "STRING") and "default" not in spec:
        return {"INT": spec.get("min", 0), "FLOAT": spec.get("min", 0.0), "BOOLEAN": False, "STRING": ""}[kind]
    return _LINK


def combo_value(options: Sequence[Any], default: Any) -> Any:
    """The default unless it makes a degenerate output ("custom", "none", "black"…); then the
    first option that does not."""
    def degenerate(value: Any) -> bool:
        return str(value).strip().lower() in _DEGENERATE

    if default is not None and not degenerate(default):
        return default
    return next((o for o in options if not degenerate(o)), default if default is not None else (options or [None])[0])


def scaffold(classes: Sequence[str], info: Info) -> tuple[dict[str, Any], list[str]]:
    """An API-format workflow chaining ``classes``, and what it could not connect.

    Inputs that take links are fed by the nearest earlier output of their type, else by a seeded
    source (``ComfyTestNoiseImage`` for IMAGE/MASK, ``EmptyLatentImage`` for LATENT); every
    output nothing consumes is shown (IMAGE/MASK → SaveImage, LATENT → SaveLatent, STRING →
    ComfyTestText, anything else → PreviewAny)."""
    builder = _Builder(info)
    for cls in classes:
        builder.node(cls)
    builder.sinks()
    return builder.prompt, builder.unfed


def pack_classes(info: Info, pack: str | None = None) -> list[tuple[str, str, str]]:
    """``(class, category, python_module)`` of every class, or of those whose ``python_module``
    is ``custom_nodes.<pack>`` (a pack's folder name, compared without case)."""
    rows = []
    for cls, entry in info.items():
        module = str(entry.get("python_module") or "")
        if pack is None or module.lower() in (f"custom_nodes.{pack}".lower(), pack.lower()):
            rows.append((cls, str(entry.get("category") or ""), module))
    return sorted(rows, key=lambda r: (r[2], r[1], r[0]))


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
    """``/object_info`` from a saved file, a URL, or one server started for this command."""
    if args.object_info:
        data: dict[str, Any] = json.loads(Path(args.object_info).read_text())
        return data
    from comfytest.plugin.session import open_session
    from comfytest.plugin.settings import Settings

    launch_args = tuple(args.launch_args or (("--cpu",) if args.launch else ()))
    packs = tuple(check_pack(Path(p), "--custom-nodes") for p in args.custom_nodes or ())
    settings = Settings(urls=(args.url,) if args.url else (), launch=args.launch, python=args.python,
                        embedded_home=args.home, launch_args=launch_args, custom_nodes=packs)
    with tempfile.TemporaryDirectory(prefix="comfytest-node-") as tmp:
        session = open_session(settings, Path(tmp))
        try:
            return session.object_info()
        finally:
            session.close()


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """Where ``/object_info`` comes from: the options ``node`` and ``init`` share."""
    parser.add_argument("--url", help="a running ComfyUI")
    parser.add_argument("--launch", type=Path, help="start the ComfyUI in this folder")
    parser.add_argument("--python", type=Path, help="python for --launch")
    parser.add_argument("--launch-args", type=shlex.split, default=None, metavar="'ARGS'",
                        help="arguments for the started ComfyUI (default for --launch: --cpu)")
    parser.add_argument("--home", type=Path, help="embedded ComfyUI home (default: COMFYTEST_HOME)")
    parser.add_argument("--object-info", help="a saved /object_info JSON instead of a server")


def main(argv: Sequence[str] | None = None, prog: str = "comfytest node") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("classes", nargs="*", metavar="CLASS", help="node class names (class_type)")
    parser.add_argument("--list", nargs="?", const="", default=None, metavar="PACK",
                        help="list the classes (of one pack: its folder name) with category and module")
    parser.add_argument("--custom-nodes", action="append", metavar="PACK_DIR",
                        help="load this node pack into the server started for the command (repeatable)")
    add_server_options(parser)
    parser.add_argument("--write", type=Path, metavar="WORKFLOW.json", help="scaffold a workflow and settings file")
    args = parser.parse_args(argv)
    if args.list is None and not args.classes:
        parser.error("give node classes, or --list [PACK]")
    try:
        info = fetch_info(args)  # one server for the whole command, however many classes
        if args.list is not None:
            for cls, category, module in pack_classes(info, args.list or None):
                print(f"{cls}\t{category}\t{module}")
            return 0
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


__all__ = ["add_server_options", "combo_value", "describe", "main", "pack_classes", "scaffold", "widget_value", "write"]


if __name__ == "__main__":
    sys.exit(main())
