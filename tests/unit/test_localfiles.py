"""A --comfy-url server's folders guessed from its command line, and used only once confirmed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from comfytest.comfy.localfiles import GuessedFolders, flag_values, folders_from_argv, is_loopback
from comfytest.outputs import FileRef


@pytest.mark.parametrize(("url", "local"), [
    ("http://127.0.0.1:8188", True), ("http://localhost:8188", True), ("https://[::1]:9", True),
    ("http://127.8.0.2", True), ("http://192.168.1.5:8188", False), ("http://comfy.example:8188", False),
])
def test_only_loopback_servers_are_guessed(url: str, local: bool) -> None:
    assert is_loopback(url) is local


def test_flags_in_every_form_argparse_takes_and_the_last_one_wins() -> None:
    argv = ["main.py", "--output-directory", "/a", "--temp-directory=/t", "--output-dir", "/b",
            "--input-d=/i", "--listen", "127.0.0.1", "--base-directory"]
    assert flag_values(argv) == {"--output-directory": "/b", "--temp-directory": "/t", "--input-directory": "/i"}


def test_folders_follow_comfyuis_rules() -> None:
    # the default folders beside main.py; the temp folder inside the one given
    assert folders_from_argv(["/srv/ComfyUI/main.py", "--temp-directory", "/scratch"], None) == {
        "output": Path("/srv/ComfyUI/output"), "temp": Path("/scratch/temp"), "input": Path("/srv/ComfyUI/input")}
    # --base-directory moves all three; relative paths need the working directory
    assert folders_from_argv(["main.py", "--base-directory", "data"], Path("/home/u/ComfyUI")) == {
        "output": Path("/home/u/ComfyUI/data/output"), "temp": Path("/home/u/ComfyUI/data/temp"),
        "input": Path("/home/u/ComfyUI/data/input")}
    assert folders_from_argv(["main.py", "--output-directory", "/o"], None) == {"output": Path("/o")}
    assert folders_from_argv([], Path("/x")) == {}


def test_a_server_elsewhere_or_without_a_command_line_is_not_guessed() -> None:
    stats = {"system": {"argv": ["/srv/ComfyUI/main.py"]}}
    assert GuessedFolders.of("http://10.0.0.7:8188", stats) is None
    assert GuessedFolders.of("http://127.0.0.1:8188", {"system": {}}) is None
    guessed = GuessedFolders.of("http://127.0.0.1:8188", stats)
    assert guessed is not None and guessed.folders["output"] == Path("/srv/ComfyUI/output")


def test_a_folder_is_read_only_once_a_served_file_confirmed_it(tmp_path: Path) -> None:
    (tmp_path / "out" / "sub").mkdir(parents=True)
    (tmp_path / "out" / "sub" / "a.png").write_bytes(b"A")
    (tmp_path / "out" / "b.png").write_bytes(b"B")
    (tmp_path / "elsewhere.png").write_bytes(b"secret")
    since = time.time() - 0.5  # the prompt was queued before the server wrote these
    guessed = GuessedFolders({"output": tmp_path / "out", "temp": tmp_path / "tmp"})
    a, b = FileRef("a.png", "sub"), FileRef("b.png")
    assert guessed.read(a, since) is None, "not confirmed yet: /view serves it"
    guessed.confirm(a, b"A", since)
    assert guessed.read(b, since) == b"B" and guessed.read(FileRef("gone.png"), since) is None
    assert guessed.read(FileRef("elsewhere.png", ".."), since) is None, "a path /view would refuse stays /view's"
    (tmp_path / "out" / "link.png").symlink_to(tmp_path / "elsewhere.png")
    assert guessed.read(FileRef("link.png"), since) is None, "nor one that leaves the folder through a link"


def test_a_file_older_than_the_prompt_is_never_read_nor_decides(tmp_path: Path) -> None:
    """A cached output re-sent by the server, or a same-named file of another ComfyUI (one
    behind an SSH tunnel, with a folder at the same path here): /view serves it."""
    (tmp_path / "out").mkdir()
    old = tmp_path / "out" / "old.png"
    old.write_bytes(b"same bytes")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    guessed = GuessedFolders({"output": tmp_path / "out"})
    guessed.confirm(FileRef("old.png"), b"same bytes", time.time())
    assert guessed.trusted == {}, "an old file confirms nothing"
    (tmp_path / "out" / "new.png").write_bytes(b"new")
    guessed.confirm(FileRef("new.png"), b"new", time.time() - 0.5)
    assert guessed.read(FileRef("old.png"), time.time()) is None
    assert guessed.read(FileRef("new.png"), time.time() - 0.5) == b"new"


def test_a_folder_that_disagrees_once_is_never_used(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"host's own file")
    since = time.time() - 0.5
    guessed = GuessedFolders({"output": tmp_path / "out"})
    guessed.confirm(FileRef("a.png"), b"what the server in its container sent", since)
    assert guessed.trusted == {"output": False}
    guessed.confirm(FileRef("a.png"), b"host's own file", since)
    assert guessed.read(FileRef("a.png"), since) is None
    missing = GuessedFolders({"temp": tmp_path / "nothing"})
    missing.confirm(FileRef("x.png", "", "temp"), b"x", since)
    assert missing.trusted == {"temp": False}
