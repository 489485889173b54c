"""Where a session's paths are anchored, and the rootdir pytest took from the wrong place.

pytest picks its configuration file and rootdir before any plugin is loaded, from the words of
the command line that look like paths. It cannot yet know that ``~/ComfyUI`` in
``--comfy-launch ~/ComfyUI`` is an option's value, so it looks for a configuration there and
above, and ComfyUI's repository has a ``pytest.ini``: that file becomes the configuration and
ComfyUI's folder the rootdir. Test ids, baseline names and every relative path would follow it
(``--comfy-update-baselines`` would write the suite's baselines into the ComfyUI checkout).

So comfytest anchors its paths at the configuration file's folder, or at the invocation folder
when there is none (``anchor``), and stops a session whose configuration or rootdir came from an
option's value or from inside a ComfyUI it launches, or a pack it loads, before anything runs
(``misplaced_root``), with the file pytest picked and the fix. The hook that asks pytest which
setup the real positional arguments give lives in ``hooks``; this module is pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def anchor(inipath: Path | None, invocation_dir: Path) -> Path:
    """The folder every relative path of the session resolves against."""
    return inipath.parent if inipath is not None else invocation_dir


@dataclass(frozen=True)
class Setup:
    """What pytest chose: the rootdir and the configuration file (None without one)."""

    rootdir: Path
    inipath: Path | None

    def describe(self) -> str:
        return f"configuration file {self.inipath}" if self.inipath else f"rootdir {self.rootdir}"


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def misplaced_root(picked: Setup, intended: Setup | None, stray: Sequence[str], launch: Path | None,
                   packs: Sequence[Path], invocation_dir: Path) -> str | None:
    """Why this session must not run with the setup pytest ``picked``, or None when it may.

    ``intended`` is the setup pytest gives the command line without the option values
    (``stray``: the words pytest took for paths that are option values)."""
    fix = ("Write the option with '=' (--comfy-launch=DIR, --comfy-results=DIR, …) so pytest does not take its "
           "value for a path, or keep a pytest configuration (pytest.ini, or [tool.pytest.ini_options] in "
           "pyproject.toml) in the suite's repository and run pytest there (`comfytest init` writes one).")
    where = picked.inipath or picked.rootdir
    if intended is not None and (picked.rootdir, picked.inipath) != (intended.rootdir, intended.inipath):
        words = ", ".join(repr(w) for w in stray) or "an option's value"
        return (f"pytest took its {picked.describe()} from {words}, the value of an option, not from the suite "
                f"(without it pytest would use {intended.describe()}). Test ids, baselines and results would "
                f"follow it. {fix}")
    if launch is not None and _inside(where, launch):
        return (f"pytest picked the {picked.describe()}, inside the ComfyUI that --comfy-launch starts "
                f"({launch}); comfytest never uses or writes into a ComfyUI checkout it launches. {fix}")
    for pack in packs:
        if _inside(where, pack) and not _inside(invocation_dir, pack):
            return (f"pytest picked the {picked.describe()}, inside the node pack {pack} that "
                    f"--comfy-custom-nodes loads, not the suite's own repository ({invocation_dir}). {fix}")
    return None


def writes_into(launch: Path | None, paths: Sequence[tuple[str, Path | None]]) -> str | None:
    """The first folder comfytest would write into that lies inside the launched ComfyUI."""
    if launch is None:
        return None
    for name, path in paths:
        if path is not None and _inside(path, launch):
            return (f"{name} {path} is inside the ComfyUI checkout that --comfy-launch starts ({launch}); comfytest "
                    f"never writes into a ComfyUI it launches. Keep {name} in the suite's repository.")
    return None


__all__ = ["Setup", "anchor", "misplaced_root", "writes_into"]
