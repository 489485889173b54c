"""Adding a workflow folder to ini comfy_workflows renames its baselines (``workflows/x`` → ``x``):
the missing-baseline failure says where the old ones are and how to move them."""

from __future__ import annotations

from pathlib import Path

from comfytest.plugin.collection import baseline_name, moved_baselines


def test_baselines_under_the_former_name_are_found_and_explained(tmp_path: Path) -> None:
    root = tmp_path / "workflows"
    (root / "sub").mkdir(parents=True)
    wf = root / "sub" / "x.json"
    wf.write_text("{}")
    baselines = tmp_path / "baselines"
    (baselines / "workflows" / "sub" / "x" / "default").mkdir(parents=True)
    name = baseline_name(wf, [root.resolve()], tmp_path)
    assert name == "sub/x"
    hint = moved_baselines(baselines, wf, [root.resolve()], tmp_path, name, "default")
    assert hint is not None
    assert f"{baselines / 'workflows' / 'sub' / 'x' / 'default'}" in hint and "ini comfy_workflows" in hint
    assert f"git mv {baselines / 'workflows' / 'sub' / 'x'} {baselines / 'sub' / 'x'}" in hint


def test_no_hint_without_baselines_under_another_name(tmp_path: Path) -> None:
    wf = tmp_path / "workflows" / "x.json"
    wf.parent.mkdir()
    wf.write_text("{}")
    assert moved_baselines(tmp_path / "baselines", wf, [], tmp_path, "workflows/x", "default") is None
