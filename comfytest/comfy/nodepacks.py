"""Node packs loaded into a server comfytest starts, for the session only.

ComfyUI 0.3.75 reads extra ``custom_nodes`` folders from an ``--extra-model-paths-config`` YAML
(``utils/extra_config.py``: every key under a section is a folder kind; ``custom_nodes`` is one)
and imports every package inside such a folder (``nodes.init_external_custom_nodes``). A pack
under test is one package, not a folder of them, so the session gets a folder of its own,
``<home>/sessions/<pid>-…/custom_nodes``, holding one link per pack (``.`` → the repository the tests live
in), and a YAML naming that folder. Nothing is written into the ComfyUI checkout: the same two
files serve the embedded server and a ``--comfy-launch``ed one.

comfytest's own helper nodes (``comfytest/nodepack``: ``ComfyTestText`` to compare a node's
text, ``ComfyTestNoiseImage`` as a seeded image source, …) are linked the same way into every
server, unless the server's own ``custom_nodes`` already has them (the embedded base directory).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from comfytest.errors import ConfigError

NODEPACK_NAME = "comfytest_nodepack"
YAML_NAME = "comfytest_custom_nodes.yaml"


def our_nodepack() -> Path:
    return Path(__file__).resolve().parents[1] / "nodepack"


@dataclass(frozen=True)
class PackLinks:
    """The session's custom-nodes folder and the YAML that adds it to a server."""

    folder: Path
    config: Path
    packs: tuple[Path, ...]

    def args(self) -> tuple[str, ...]:
        return ("--extra-model-paths-config", str(self.config))


def check_pack(path: Path, source: str = "--comfy-custom-nodes") -> Path:
    """The pack folder, resolved; a ConfigError unless it looks like a node pack."""
    pack = path.expanduser().resolve()
    if not pack.is_dir():
        raise ConfigError(f"{source} {path}: no such folder; expected a custom node pack "
                          "(a folder with __init__.py that defines NODE_CLASS_MAPPINGS)")
    if not (pack / "__init__.py").is_file():
        raise ConfigError(f"{source} {path}: {pack} has no __init__.py, so ComfyUI would not import it as a "
                          "node pack. Give the pack's own folder (for a pack at the repository root: .)")
    return pack


def link_name(pack: Path, taken: set[str]) -> str:
    """The folder name ComfyUI will see: the pack's own name, made unique among the session's."""
    base = re.sub(r"[^\w\-]", "_", pack.name) or "pack"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def session_folder(home: Path) -> Path:
    """A new folder ``<home>/sessions/<pid>-…`` for one server pool's links and YAML.

    Outside the suite's repository on purpose: a link back to the repository inside its own
    results folder would be a loop for anything that walks the tree. Folders of processes that
    no longer run are removed (they hold only links and the YAML)."""
    root = home / "sessions"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        pid = old.name.split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (owned by anyone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare(packs: Sequence[Path], session_dir: Path, comfy_custom_nodes: Path | None) -> PackLinks:
    """Links to ``packs`` (and to comfytest's nodepack, unless ``comfy_custom_nodes`` — the
    server's own folder — has it) in ``<session_dir>/custom_nodes``, and the YAML naming it."""
    folder = session_dir / "custom_nodes"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_symlink():
            old.unlink()
    wanted = list(dict.fromkeys(p.resolve() for p in packs))
    has_ours = comfy_custom_nodes is not None and (comfy_custom_nodes / NODEPACK_NAME).exists()
    taken: set[str] = set()
    if not has_ours and our_nodepack() not in wanted:
        taken.add(NODEPACK_NAME)
        (folder / NODEPACK_NAME).symlink_to(our_nodepack(), target_is_directory=True)
    for pack in wanted:
        (folder / link_name(pack, taken)).symlink_to(pack, target_is_directory=True)
    config = session_dir / YAML_NAME
    # a JSON string is a valid YAML scalar, so no YAML library is needed to quote the path
    config.write_text(f'comfytest:\n  custom_nodes: "{_yaml_quote(str(folder))}"\n', encoding="utf-8")
    return PackLinks(folder, config, tuple(wanted))


def _yaml_quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def inside(path: Path, folder: Path) -> bool:
    """True when ``path`` is ``folder`` or lies under it (both resolved)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


__all__ = ["NODEPACK_NAME", "PackLinks", "check_pack", "inside", "link_name", "our_nodepack", "pid_alive", "prepare",
           "session_folder"]
