"""--comfy-launch: start a user's own ComfyUI checkout for the session (here: the embedded copy,
launched as if it were the user's checkout, with a chosen python and extra arguments)."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfytest.comfy.embedded import load_embedded

REPO = Path(__file__).parents[2]

CHECK = """
from pathlib import Path

def test_runs_on_the_launched_server(comfy):
    stats = comfy.system_stats()
    argv = stats["system"]["argv"]
    assert "--disable-metadata" in argv
    own = comfy.server.session_dir
    # its own user folder and database: newer ComfyUI locks the assets database per folder
    assert argv[argv.index("--user-directory") + 1] == str(own / "user")
    assert argv[argv.index("--database-url") + 1] == f"sqlite:///{own / 'comfyui.db'}"
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
        "--comfy-launch-args", "--cpu --disable-metadata", f"--comfy-results={tmp_path / 'results'}",
        "-p", "no:cacheprovider",
    )
    result.assert_outcomes(passed=1)
    log = Path((pytester.path / "launched.txt").read_text())
    assert log.is_file() and "Starting server" in log.read_text(), "the server log is kept"


def test_a_launch_without_cuda_says_to_pass_cpu(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The embedded ComfyUI has a CPU-only torch: without --cpu it dies at start-up, as a
    user's ComfyUI does on a machine without CUDA."""
    emb = load_embedded(REPO / ".comfytest")
    pytester.makepyfile("def test_x(comfy):\n    comfy.system_stats()\n")
    result = pytester.runpytest(
        f"--comfy-launch={emb.comfyui_dir}", f"--comfy-python={emb.python}",
        "--comfy-launch-args", "--disable-metadata", f"--comfy-results={tmp_path / 'results'}",
        "-p", "no:cacheprovider",
    )
    text = result.stdout.str()
    assert "Torch not compiled with CUDA enabled" in text, text[-3000:]
    assert "pass --cpu to it, e.g. --comfy-launch-args --cpu" in text
    assert result.ret == 75  # the server could not start: infrastructure
