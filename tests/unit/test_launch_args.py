"""``--comfy-launch-args`` as people type it: a separate word that starts with ``--``."""

from __future__ import annotations

import pytest

from comfytest.plugin.settings import join_dash_values

SHOW = """
def test_show(pytestconfig):
    print("LAUNCH_ARGS=" + repr(pytestconfig.getoption("comfy_launch_args")))
"""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--comfy-launch-args", "--cpu"], ["--comfy-launch-args=--cpu"]),
        (["-q", "--comfy-launch-args", "--cpu --lowvram", "x.py"], ["-q", "--comfy-launch-args=--cpu --lowvram", "x.py"]),
        (["--comfy-launch-args", "plain"], ["--comfy-launch-args", "plain"]),  # argparse reads that itself
        (["--comfy-launch-args"], ["--comfy-launch-args"]),  # argparse says what is missing
        (["--", "--comfy-launch-args", "--cpu"], ["--", "--comfy-launch-args", "--cpu"]),
        (["--comfy-url", "--cpu"], ["--comfy-url", "--cpu"]),  # only options whose values are flags
    ],
)
def test_flag_values_are_glued_to_their_option(args: list[str], expected: list[str]) -> None:
    join_dash_values(args)
    assert args == expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--comfy-launch-args", "--cpu"], "['--cpu']"),
        (["--comfy-launch-args", "--lowvram"], "['--lowvram']"),  # the README's example
        (["--comfy-launch-args", "--cpu --preview-method none"], "['--cpu', '--preview-method', 'none']"),
        (["--comfy-launch-args=--cpu"], "['--cpu']"),
    ],
)
def test_pytest_accepts_launch_args_as_typed(pytester: pytest.Pytester, argv: list[str], expected: str) -> None:
    pytester.makepyfile(test_show=SHOW)
    result = pytester.runpytest("-s", *argv)
    result.assert_outcomes(passed=1)
    assert f"LAUNCH_ARGS={expected}" in result.stdout.str()


def test_launch_args_from_pytest_addopts(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_ADDOPTS", "--comfy-launch-args --cpu")
    pytester.makepyfile(test_show=SHOW)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=1)
    assert "LAUNCH_ARGS=['--cpu']" in result.stdout.str()
