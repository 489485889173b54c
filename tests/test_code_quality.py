"""The package stays typed (mypy --strict) and lint-clean (ruff), as pyproject.toml configures."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return found


def test_mypy_strict_on_the_package() -> None:
    done = subprocess.run([_tool("mypy")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]


def test_ruff_on_package_tests_and_benchmarks() -> None:
    done = subprocess.run([_tool("ruff"), "check", "comfytest", "tests", "benchmarks"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]


def test_import_contract_holds() -> None:
    """The architecture's layers, the pytest-free library and no cycles, as pyproject.toml's
    [tool.importlinter] states them (docs/architecture.md)."""
    done = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout, done.stdout[-3000:]


def test_the_package_root_holds_few_modules() -> None:
    """The folders show the architecture: concerns live in their subpackage, not beside it."""
    top = sorted(p.name for p in (REPO / "comfytest").glob("*.py"))
    assert len(top) <= 10, top
