"""--comfy-launch: start a user's own ComfyUI checkout for the session (here: the embedded copy,
launched as if it were the user's checkout, with a chosen python and extra arguments)."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfytest.embedded import load_embedded

REPO = Path(__file__).parents[2]

CHECK = """
from pathlib import Path

def test_runs_on_the_launched_server(comfy):
    stats = comfy.system_stats()
    assert "--disable-metadata" in stats["system"]["argv"]
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 255}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "launched"}},
    }
    result = comfy.run_prompt(prompt)
    assert result.ok and result.images[0].image.size == (16, 16)
    out = comfy.server.session_dir / "output"
    assert [p.name for p in out.iterdir()] == [result.images[0].ref.filename], "its own output folder"
    Path("launched.txt").write_text(str(comfy.server.log_path))
"""


def test_launch_a_comfyui_checkout_with_python_and_args(pytester: pytest.Pytester, tmp_path: Path) -> None:
    emb = load_embedded(REPO / ".comfytest")
    pytester.makepyfile(CHECK)
    result = pytester.runpytest(
        f"--comfy-launch={emb.comfyui_dir}", f"--comfy-python={emb.python}",
        "--comfy-launch-args=--cpu --disable-metadata", f"--comfy-results={tmp_path / 'results'}",
        "-p", "no:cacheprovider",
    )
    result.assert_outcomes(passed=1)
    log = Path((pytester.path / "launched.txt").read_text())
    assert log.is_file() and "Starting server" in log.read_text(), "the server log is kept"
