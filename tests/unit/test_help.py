"""`pytest --help` documents every comfytest option with its value, ini key and default."""

from __future__ import annotations

import pytest

from comfytest.plugin.settings import OPTIONS


def test_help_lists_every_option_with_ini_key_and_default(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    text = " ".join(result.stdout.str().split())  # undo argparse's line wrapping
    assert "ComfyUI workflow regression tests (comfytest):" in text
    for opt in OPTIONS:
        assert opt.cli in text, opt.cli
        assert f"ini {opt.ini}" in text, opt.ini
        if opt.default not in (None, (), False):
            assert f"(default: {opt.default})" in text, opt.cli
    for golden in ("--comfy-url=URL", "--comfy-timeout=SECONDS", "--comfy-hash={phash,dhash,ahash,whash,colorhash}",
                   "--comfy-missing={fail,skip}", "env COMFYUI_URL", "--comfy-header='NAME: VALUE'"):
        assert golden in text, golden
