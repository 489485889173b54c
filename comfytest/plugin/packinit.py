"""``comfytest init``: a node pack's repository set up to test itself, on a free CPU runner.

Run in the pack's repository (the folder with its ``__init__.py``), it writes, never over an
existing file:

* the pytest configuration (``pytest.ini``: the rootdir is then the pack's repository whatever
  the command line says), with ``comfy_custom_nodes = .`` so every server comfytest starts loads
  the pack, and ``comfy_workflows = workflows``;
* ``workflows/<Class>.json`` + ``.toml``: one scaffolded workflow per chosen node class, or per
  class of the pack (its classes are those whose ``python_module`` in ``/object_info`` is the
  pack's folder), each output consumed and each image input fed a seeded noise image;
* ``baselines/`` (empty until ``pytest --comfy-update-baselines``);
* ``.github/workflows/comfytest.yml``: the suite on a hosted CPU runner with the embedded
  ComfyUI, installed once and cached between runs, the reports uploaded.

One ComfyUI is started (the embedded one unless ``--url``/``--launch``) to read ``/object_info``.
"""

from __future__ import annotations

import argparse
import configparser
import sys
from collections.abc import Sequence
from pathlib import Path

from comfytest.comfy.nodepacks import check_pack, link_name
from comfytest.errors import ComfyTestError
from comfytest.plugin.scaffold import add_server_options, fetch_info, pack_classes, scaffold
from comfytest.plugin.scaffold import write as write_workflow

PYTEST_INI = """\
# written by `comfytest init`: this repository is the rootdir, whatever the command line says
[pytest]
testpaths = workflows
comfy_workflows = workflows
# the pack at the repository root, loaded into every ComfyUI comfytest starts
comfy_custom_nodes = .
addopts = -ra
"""

GITIGNORE = "comfytest-results/\n.comfytest-home/\n"

INI_LINES = ("comfy_workflows = workflows", "comfy_custom_nodes = .")

GITHUB_WORKFLOW = """\
# written by `comfytest init`: the pack's workflow tests on a hosted CPU runner, with
# comfytest's embedded ComfyUI (installed once, then restored from the cache in seconds).
name: comfytest

on:
  push:
  pull_request:

jobs:
  comfytest:
    runs-on: ubuntu-latest
    timeout-minutes: 30
    env:
      COMFYTEST_HOME: ${{{{ github.workspace }}}}/.comfytest-home
      COMFYTEST_TORCH_INDEX: https://download.pytorch.org/whl/cpu
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        id: python
        with:
          python-version: "3.11"
      - name: Install comfytest
        run: python -m pip install {spec}
      - name: Restore the embedded ComfyUI
        uses: actions/cache@v4
        with:
          path: .comfytest-home
          key: comfytest-embedded-${{{{ runner.os }}}}-py${{{{ steps.python.outputs.python-version }}}}-${{{{ hashFiles('requirements.txt') }}}}
          # a changed requirements.txt restores the ComfyUI and installs only the pack's requirements
          restore-keys: comfytest-embedded-${{{{ runner.os }}}}-py${{{{ steps.python.outputs.python-version }}}}-
      - name: Install the embedded ComfyUI (CPU; a no-op when restored)
        run: comfytest embedded install
      - name: Run the workflow tests
        run: python -m pytest
      - name: Upload the reports
        if: always()
        uses: actions/upload-artifact@v4
        with:
          name: comfytest-results
          path: comfytest-results/
          if-no-files-found: ignore
"""


def has_pytest_config(root: Path) -> Path | None:
    """The file pytest would take as this repository's configuration, if there is one."""
    for name in ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini"):
        if (root / name).is_file():
            return root / name
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and "[tool.pytest" in pyproject.read_text(encoding="utf-8", errors="replace"):
        return pyproject
    for name in ("tox.ini", "setup.cfg"):
        path = root / name
        if path.is_file():
            parser = configparser.ConfigParser(interpolation=None)
            try:
                parser.read(path, encoding="utf-8")
            except configparser.Error:
                continue
            if parser.has_section("pytest" if name == "tox.ini" else "tool:pytest"):
                return path
    return None


def write_new(path: Path, text: str, wrote: list[str], kept: list[str]) -> None:
    if path.exists():
        kept.append(str(path))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    wrote.append(str(path))


def init(root: Path, info: dict[str, object], classes: Sequence[str], spec: str) -> tuple[list[str], list[str], list[str]]:
    """Write the files; returns (written, kept as they were, notes)."""
    wrote: list[str] = []
    kept: list[str] = []
    notes: list[str] = []
    config = has_pytest_config(root)
    if config is None:
        write_new(root / "pytest.ini", PYTEST_INI, wrote, kept)
    else:
        text = config.read_text(encoding="utf-8", errors="replace")
        missing = [ln for ln in INI_LINES if ln.split(" =")[0] not in text]
        if missing:
            notes.append(f"{config} is this repository's pytest configuration and comfytest never edits it: "
                         f"add {' and '.join(repr(m) for m in missing)} to its pytest section "
                         "(in pyproject.toml: comfy_custom_nodes = [\".\"], comfy_workflows = [\"workflows\"])")
    for cls in classes:
        prompt, unfed = scaffold([cls], info)
        target = root / "workflows" / f"{_file_name(cls)}.json"
        if target.exists() or target.with_suffix(".toml").exists():
            kept.append(str(target))
            continue
        wrote.extend(str(p) for p in write_workflow(target, prompt))
        notes.extend(f"{target.name}: connect by hand: {line}" for line in unfed)
    write_new(root / "baselines" / ".gitkeep", "", wrote, kept)
    ignore = root / ".gitignore"
    if not ignore.exists():
        write_new(ignore, GITIGNORE, wrote, kept)
    else:
        lines = ignore.read_text(encoding="utf-8", errors="replace").split()
        absent = [ln for ln in GITIGNORE.split() if ln not in lines]
        if absent:
            notes.append(f"add {', '.join(absent)} to {ignore} (comfytest's results; the CI job's embedded ComfyUI)")
    write_new(root / ".github" / "workflows" / "comfytest.yml", GITHUB_WORKFLOW.format(spec=spec), wrote, kept)
    return wrote, kept, notes


def _file_name(cls: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in cls) or "node"


def main(argv: Sequence[str] | None = None, prog: str = "comfytest init") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("classes", nargs="*", metavar="CLASS",
                        help="node classes to scaffold a workflow for (default: every class of the pack)")
    parser.add_argument("--dir", type=Path, default=Path("."), help="the pack's repository (default: .)")
    parser.add_argument("--comfytest-spec", default="comfytest",
                        help="what the CI workflow pip-installs for comfytest (default: comfytest)")
    add_server_options(parser)
    args = parser.parse_args(argv)
    try:
        root = check_pack(args.dir, "comfytest init --dir")
        args.custom_nodes = [str(root)]
        info = fetch_info(args)
        module = link_name(root, set())
        own = [cls for cls, _, _ in pack_classes(info, module)]
        classes = list(args.classes) or own
        unknown = [c for c in classes if c not in info]
        if unknown:
            raise ComfyTestError(f"node class(es) not on the server: {', '.join(unknown)}; the pack's classes are: "
                                 f"{', '.join(own) or 'none (did the pack import? see the server log)'}")
        if not classes:
            raise ComfyTestError(f"the pack {root} defines no node class the server lists (python_module "
                                 f"custom_nodes.{module}); did it import? Name classes: comfytest init CLASS ...")
        wrote, kept, notes = init(root, info, classes, args.comfytest_spec)
    except ComfyTestError as exc:
        print(f"comfytest init: {exc}", file=sys.stderr)
        return 2
    for path in wrote:
        print(f"wrote {path}")
    for path in kept:
        print(f"kept  {path} (exists; never overwritten)")
    for note in notes:
        print(f"note: {note}")
    print("\nNext:\n  pytest                              # first run: 'no baseline yet' for each case\n"
          "  pytest --comfy-update-baselines     # record the baselines (commit baselines/), then pytest passes")
    return 0


__all__ = ["GITHUB_WORKFLOW", "PYTEST_INI", "has_pytest_config", "init", "main"]
