"""Shared fixtures of comfytest's own tests.

The plugin under test is active here too: the session-scoped ``comfy`` fixture is the real
embedded ComfyUI that the plugin starts. Tests that drive pytest through ``pytester`` point the
inner session at that server with ``--comfy-url`` so only one server starts per run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy.fft  # noqa: F401  imported before any in-process pytester run: pytester's
import pytest
import scipy.fftpack  # noqa: F401  module snapshot would drop them, and numpy cannot reload them

from tests.browser import find_chromium

pytest_plugins = ["pytester"]
collect_ignore = ["data"]  # fixtures for unit tests, e.g. workflows that must not be collected

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent


@pytest.fixture(scope="session")
def comfy_url(comfy: Any) -> str:
    """URL of the session's real ComfyUI server."""
    return str(comfy.url)


@pytest.fixture
def inner_args(comfy_url: str, tmp_path: Path) -> list[str]:
    """Arguments for a pytester run against the session's server, writing under tmp_path."""
    return [
        f"--comfy-url={comfy_url}",
        f"--comfy-baselines={tmp_path / 'baselines'}",
        f"--comfy-results={tmp_path / 'results'}",
        "-p", "no:cacheprovider",
    ]


@pytest.fixture
def chromium() -> str:
    """Debian's (or the named) Chromium for the tests that open a report in a real browser."""
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium found (apt-get install -y chromium, or set COMFYTEST_CHROMIUM)")
    return binary
