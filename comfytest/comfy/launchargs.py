"""The command line of a launched ComfyUI: the flags its ``main.py`` knows, each server's own
state folders, and hints for launch failures people meet.

ComfyUI's flags change between releases (``--user-directory``, ``--database-url`` since
0.3.75; ``--disable-assets`` only later), and ``main.py`` exits on a flag it does not know, so
comfytest adds a flag of its own only when ``main.py --help`` of the launched ComfyUI lists it.
Reading the help takes about 0.3 s; it is read once per ComfyUI folder and Python.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
_HELP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ComfyFlags:
    """The flags one ComfyUI's ``main.py --help`` lists; ``None``: the help could not be read."""

    known: frozenset[str] | None

    def knows(self, flag: str) -> bool:
        return self.known is not None and flag in self.known


def parse_help(text: str) -> ComfyFlags:
    """The ``--flags`` named in argparse help text (``None`` when it is not a help text)."""
    if "usage:" not in text:
        return ComfyFlags(None)
    return ComfyFlags(frozenset(_FLAG.findall(text)))


def read_flags(python: Path, comfyui_dir: Path, env: Mapping[str, str] | None = None) -> ComfyFlags:
    """``main.py --help`` of the ComfyUI in ``comfyui_dir``, run once per folder and Python."""
    main = comfyui_dir / "main.py"
    stamp = main.stat().st_mtime_ns if main.exists() else 0
    return _read_flags(str(python), str(comfyui_dir), stamp, tuple(sorted((env or {}).items())))


@lru_cache(maxsize=8)
def _read_flags(python: str, comfyui_dir: str, _stamp: int, env: tuple[tuple[str, str], ...]) -> ComfyFlags:
    try:
        done = subprocess.run(
            [python, "main.py", "--help"], cwd=comfyui_dir, capture_output=True, text=True,
            timeout=_HELP_TIMEOUT_S, stdin=subprocess.DEVNULL, env=dict(env) or None,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ComfyFlags(None)
    return parse_help(done.stdout)


def own_state_args(server_dir: Path, flags: ComfyFlags) -> list[str]:
    """A user folder and a database of this server's own, where its ComfyUI has the flags.

    Newer ComfyUI keeps an assets database in the user folder, locked for the whole process:
    a second server from the same folder exits ``ASSETS_STARTUP_FAILED: in_use``.
    """
    args: list[str] = []
    if flags.knows("--user-directory"):
        user = server_dir / "user"
        user.mkdir(parents=True, exist_ok=True)
        args += ["--user-directory", str(user)]
    if flags.knows("--database-url"):
        args += ["--database-url", f"sqlite:///{server_dir / 'comfyui.db'}"]
    return args


_HINTS: tuple[tuple[str, str], ...] = (
    ("Torch not compiled with CUDA enabled",
     "This ComfyUI found no CUDA (a CPU-only torch or machine): pass --cpu to it, e.g. "
     "--comfy-launch-args --cpu (or ini comfy_launch_args = --cpu)."),
    ("ASSETS_STARTUP_FAILED",
     "Another ComfyUI holds the assets database of this folder: stop it, or give this one its "
     "own with --comfy-launch-args '--database-url sqlite:////some/other.db'."),
    ("unrecognized arguments:",
     "The launched ComfyUI does not know a flag given to it: check --comfy-launch-args against "
     "its `python main.py --help`."),
)


def failure_hint(log: str, args: Sequence[str] = ()) -> str | None:
    """How to fix a launch that failed, judged from its log; ``None`` when nothing is known."""
    for needle, hint in _HINTS:
        if needle in log and not (needle.startswith("Torch not") and "--cpu" in args):
            return hint
    return None
