"""Which flags comfytest adds to a launched ComfyUI, judged from real ``main.py --help`` texts
(saved from ComfyUI 0.3.75 and 0.26.0), and the hints for launch failures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from comfytest.comfy.launchargs import ComfyFlags, failure_hint, own_state_args, parse_help, read_flags

HELP = Path(__file__).resolve().parents[1] / "data" / "comfyui_help"


@pytest.mark.parametrize("version", ["0.3.75", "0.26.0"])
def test_both_versions_get_their_own_user_folder_and_database(version: str, tmp_path: Path) -> None:
    flags = parse_help((HELP / f"{version}.txt").read_text())
    assert flags.knows("--output-directory") and flags.knows("--cpu")
    args = own_state_args(tmp_path, flags)
    assert args == ["--user-directory", str(tmp_path / "user"), "--database-url", f"sqlite:///{tmp_path / 'comfyui.db'}"]
    assert (tmp_path / "user").is_dir()  # ComfyUI refuses a --user-directory that does not exist


def test_flags_that_differ_between_versions() -> None:
    old, new = (parse_help((HELP / f"{v}.txt").read_text()) for v in ("0.3.75", "0.26.0"))
    assert new.knows("--enable-assets") and not old.knows("--enable-assets")
    assert not new.knows("--no-such-flag")


def test_an_unreadable_help_adds_nothing(tmp_path: Path) -> None:
    assert own_state_args(tmp_path, parse_help("Traceback (most recent call last): ...")) == []
    assert own_state_args(tmp_path, ComfyFlags(None)) == []
    assert not (tmp_path / "user").exists()


def test_read_flags_runs_main_py_help(tmp_path: Path) -> None:
    main = tmp_path / "main.py"
    main.write_text("import argparse\np = argparse.ArgumentParser()\np.add_argument('--user-directory')\np.parse_args()\n")
    flags = read_flags(Path(sys.executable), tmp_path)
    assert flags.knows("--user-directory") and not flags.knows("--database-url")


@pytest.mark.parametrize(
    ("log", "args", "fragment"),
    [
        ('  raise AssertionError("Torch not compiled with CUDA enabled")\nAssertionError: Torch not compiled with CUDA enabled',
         (), "pass --cpu to it, e.g. --comfy-launch-args --cpu"),
        ("ASSETS_STARTUP_FAILED: in_use", (), "its own with --comfy-launch-args '--database-url"),
        ("main.py: error: unrecognized arguments: --lowram", ("--lowram",), "does not know a flag"),
    ],
)
def test_launch_failure_hints(log: str, args: tuple[str, ...], fragment: str) -> None:
    hint = failure_hint(log, args)
    assert hint is not None and fragment in hint


def test_no_cpu_hint_when_cpu_was_passed() -> None:
    assert failure_hint("Torch not compiled with CUDA enabled", ("--cpu",)) is None
    assert failure_hint("Starting server") is None
