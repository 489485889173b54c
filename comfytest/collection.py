"""Workflow JSON files → pytest items, one per case of the file's settings (``casefile``).

Collected: ``*.json`` under an ini ``comfy_workflows`` folder or under a path given on the
command line. JSON objects that are not workflows are left alone; invalid JSON, empty or
non-object files are collection errors that say how to fix them. UI-format workflows are
converted to API format when they run (``uiformat``; the conversion needs the server).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from comfytest.baselines import BaselineKey
from comfytest.casefile import CaseDefaults, CaseSpec, load_cases, settings_path
from comfytest.casetest import run_case
from comfytest.criteria import PixelLimits
from comfytest.errors import ComfyTestError, PreflightError
from comfytest.uiformat import convert_ui_workflow
from comfytest.workflow import Workflow, is_ui_format, is_workflow_file, parse_workflow, read_json


def baseline_name(path: Path, roots: Iterable[Path], rootdir: Path) -> str:
    """``workflows/sub/x.json`` → ``sub/x``: the path under its workflow folder (``roots``,
    resolved), no suffix."""
    resolved = path.resolve()
    for root in sorted(roots, key=lambda r: len(r.parts), reverse=True):
        if root in resolved.parents:
            return resolved.relative_to(root).with_suffix("").as_posix()
    try:
        return resolved.relative_to(rootdir.resolve()).with_suffix("").as_posix()
    except ValueError:
        return resolved.stem


def is_collectable(path: Path, roots: Iterable[Path]) -> bool:
    """A ``.json`` file at or under one of ``roots`` (resolved paths)."""
    if path.suffix != ".json" or path.name.startswith("."):
        return False
    resolved = path.resolve()
    return any(resolved == root or root in resolved.parents for root in roots)


class WorkflowFile(pytest.File):
    """One workflow file; yields a ``WorkflowItem`` per case."""

    def collect(self) -> Iterator[WorkflowItem]:
        try:
            data = read_json(self.path)
            if isinstance(data, dict) and not is_workflow_file(data):
                return  # some other JSON object (package.json, data): not ours
            ui_data = data if is_ui_format(data) else None
            # a UI-format file needs /object_info to name its widget values: converted in
            # runtest; here its links alone are enough to check the settings' selectors
            workflow = convert_ui_workflow(data, None, self.path) if ui_data else parse_workflow(data, self.path)
            cases = load_cases(settings_path(self.path), workflow)
        except ComfyTestError as exc:
            raise self.CollectError(str(exc)) from None
        from comfytest.plugin import state_of  # the plugin owns the session state

        name = baseline_name(self.path, state_of(self.config).workflow_roots, self.config.rootpath)
        for case in cases:
            item = WorkflowItem.from_parent(self, name=case.id, workflow=workflow, case=case, key=name, ui_data=ui_data)
            for mark in case.marks:
                item.add_marker(mark)
            item.add_marker("comfy")
            yield item


class WorkflowItem(pytest.Item):
    """One case of one workflow: run it on the session's server and check its outputs."""

    def __init__(self, *, workflow: Workflow, case: CaseSpec, key: str, ui_data: Any = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.workflow = workflow
        self.ui_data = ui_data  # the UI-format JSON, converted once the server is known
        self.key = key  # the workflow's name in baselines/ and results/
        self.case = case
        self.comfy_record: dict[str, Any] | None = None

    def runtest(self) -> None:
        from comfytest.plugin import session_or_exit, state_of  # the plugin owns the session state

        state = state_of(self.config)
        settings = state.settings
        case = self.case.with_defaults(
            CaseDefaults(
                tolerance=settings.tolerance, hash_method=settings.hash,
                hash_size=settings.hash_size, timeout=settings.timeout, seed=settings.seed,
                limits=PixelLimits(settings.max_diff, settings.mean_diff, settings.min_psnr),
            )
        )
        self.comfy_record = state.new_record(self.nodeid, case, self.path, BaselineKey(self.key, case.id, "").relative_dir)
        if case.skip:
            pytest.skip(case.skip)
        session = session_or_exit(self.config)
        if self.ui_data is not None:
            self.workflow = session.convert_ui(self.ui_data, self.path)
            self.comfy_record["conversion"] = session.conversions[str(self.path)].to_json()
        try:
            run_case(session, self.workflow, case, self.comfy_record, state.store(session), self.key)
        except PreflightError as exc:
            if settings.missing == "skip":
                pytest.skip(str(exc))
            raise

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, ComfyTestError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, None, str]:
        return self.path, None, f"{self.path.name}::{self.case.id}"


def unused_baselines(config: pytest.Config) -> list[str]:
    from comfytest.plugin import state_of

    return state_of(config).unused_baselines()


__all__ = ["WorkflowFile", "WorkflowItem", "baseline_name", "is_collectable"]
