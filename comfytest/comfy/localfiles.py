"""Output files of a server on this machine read from its folders instead of over ``GET /view``.

A server the session launched says where its folders are (``LocalServer.file_folders``). A
server given by ``--comfy-url`` does not, but when it listens on a loopback address its
``/system_stats`` lists its command line, and ComfyUI's rules give its folders from that:
``--output-directory`` (or ``<base>/output``), ``--temp-directory`` (``<it>/temp``, or
``<base>/temp``), ``--input-directory`` (or ``<base>/input``), where ``<base>`` is
``--base-directory`` or the folder of its ``main.py``. Relative paths are taken from the server's
working directory, which on Linux the ComfyUI process answering on the port shows (``/proc``,
found as for its RSS: ``resources.find_comfyui``); a process of another user, or on another
system, shows nothing, and then only absolute paths are used.

A guess is only a guess (a server in a container, a folder with the same path on the host): a
folder is used only once a file fetched over ``/view`` was found in it with the same bytes, and a
folder that once disagrees is never used again in the session. Only files written since the
prompt was queued are read or count as confirmation (a file of another ComfyUI at the same path
— one behind an SSH tunnel — is older; so is an output the server re-sent from its cache). Until then, and for anything not
found there, ``/view`` serves as before. ``GET /view`` of a 256x256 PNG costs ~2 ms here; reading
it ~0.05 ms.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from comfytest.comfy.resources import find_comfyui
from comfytest.outputs import FileRef

#: ComfyUI's flags that move its folders (argparse also takes unique prefixes: ``--output-dir``)
_FLAGS = ("--output-directory", "--temp-directory", "--input-directory", "--base-directory")


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def flag_values(argv: Sequence[str]) -> dict[str, str]:
    """The folder flags of a ComfyUI command line (``--x v``, ``--x=v``, or a unique prefix of
    ``--x``), by full name; the last one given wins, as with argparse."""
    found: dict[str, str] = {}
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if not name.startswith("--") or len(name) < 4:
            continue
        matches = [flag for flag in _FLAGS if flag.startswith(name)]
        if len(matches) != 1:
            continue
        if eq:
            found[matches[0]] = value
        elif i + 1 < len(argv):
            found[matches[0]] = argv[i + 1]
    return found


def folders_from_argv(argv: Sequence[str], cwd: Path | None) -> dict[str, Path]:
    """The ``/view`` types' folders of a server started with ``argv`` in ``cwd`` (None: unknown;
    then only absolute paths are of use). Empty when they cannot be told."""
    if not argv:
        return {}
    flags = flag_values(argv)

    def absolute(text: str) -> Path | None:
        path = Path(text)
        if path.is_absolute():
            return Path(os.path.normpath(path))
        return Path(os.path.normpath(cwd / path)) if cwd is not None else None

    main = absolute(argv[0])
    base = absolute(flags["--base-directory"]) if "--base-directory" in flags else \
        main.parent if main is not None else None
    out: dict[str, Path] = {}
    for kind, flag, default in (("output", "--output-directory", "output"), ("temp", "--temp-directory", "temp"),
                                ("input", "--input-directory", "input")):
        if flag in flags:
            folder = absolute(flags[flag])
            if folder is not None and kind == "temp":
                folder = folder / "temp"  # ComfyUI puts its temp folder inside the one given
        else:
            folder = base / default if base is not None else None
        if folder is not None:
            out[kind] = folder
    return out


def server_cwd(port: int, argv: Sequence[str], proc: Path = Path("/proc")) -> Path | None:
    """The working directory of the ComfyUI answering on loopback ``port`` (Linux, a process of
    this user: ``resources.find_comfyui``, which also sees through a port forwarder)."""
    found = find_comfyui(port, list(argv), proc)
    if found.pid is None:
        return None
    try:
        return Path(os.readlink(proc / str(found.pid) / "cwd"))
    except OSError:
        return None


class GuessedFolders:
    """A ``--comfy-url`` server's folders by ``/view`` type, each used once a file confirmed it."""

    def __init__(self, folders: Mapping[str, Path]) -> None:
        self.folders = dict(folders)
        self.trusted: dict[str, bool] = {}  # type -> confirmed (True) or refuted (False)

    @classmethod
    def of(cls, url: str, system_stats: Mapping[str, Any]) -> GuessedFolders | None:
        """The guess for a server at ``url`` reporting ``system_stats``; None where there is none
        (not on a loopback address, no command line, folders that cannot be told)."""
        if not is_loopback(url):
            return None
        system = system_stats.get("system")
        argv = system.get("argv") if isinstance(system, Mapping) else None
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            return None
        folders = folders_from_argv(argv, None)
        if len(folders) < 3:  # a relative path: the server's working directory tells the rest
            port = urlsplit(url).port
            cwd = server_cwd(port, argv) if port else None
            folders = folders_from_argv(argv, cwd) if cwd is not None else folders
        return cls(folders) if folders else None

    def _path(self, ref: FileRef) -> Path | None:
        folder = self.folders.get(ref.type)
        if folder is None:
            return None
        path = Path(os.path.normpath(folder / ref.subfolder / ref.filename))
        return path if path.is_relative_to(folder) else None  # what /view refuses: let it say so

    def read(self, ref: FileRef, since: float) -> bytes | None:
        """The file, from a confirmed folder, if it was written since ``since`` (a ``time.time()``
        before the prompt was queued); None otherwise (``/view`` then: an older file is an
        output the server re-sent from its cache, or not this server's)."""
        return read_inside(self.folders[ref.type], ref, since) if self.trusted.get(ref.type) else None

    def confirm(self, ref: FileRef, served: bytes, since: float) -> None:
        """After ``/view`` served ``ref``: whether its folder holds the same bytes, written since
        ``since``, decides whether the folder is used from now on (once per type; an older file
        decides nothing: a cached output, or a same-named file of another ComfyUI — one behind
        an SSH tunnel, with a folder at the same path here)."""
        if ref.type in self.trusted:
            return
        path = self._path(ref)
        if path is None:
            return
        try:
            if not _fresh(path, since):
                return
            self.trusted[ref.type] = path.read_bytes() == served
        except OSError:
            self.trusted[ref.type] = False


def read_inside(folder: Path, ref: FileRef, since: float | None = None) -> bytes | None:
    """``ref``'s file in ``folder`` (the server's folder for its type); None where it is not
    there or cannot be read, where its path leaves the folder (``..``, a link: what ``/view``
    refuses, left for it to say so) and, with ``since``, where it was written before then."""
    try:
        path = (folder / ref.subfolder / ref.filename).resolve()
        if not path.is_relative_to(folder.resolve()) or (since is not None and not _fresh(path, since)):
            return None
        return path.read_bytes()
    except OSError:
        return None


#: file time stamps may lag the clock by a tick (ext4: a few ms); a second covers any
_SLACK_S = 1.0


def _fresh(path: Path, since: float) -> bool:
    return path.stat().st_mtime >= since - _SLACK_S


__all__ = ["GuessedFolders", "flag_values", "folders_from_argv", "is_loopback", "read_inside", "server_cwd"]
