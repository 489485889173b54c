"""Workflow JSON files → pytest items, one per case of the file's settings (``casefile``).

Collected: ``*.json`` under an ini ``comfy_workflows`` folder or under a path given on the
command line. JSON objects that are not workflows are left alone; invalid JSON, empty or
non-object files are collection errors that say how to fix them. UI-format workflows are
converted to API format when they run (``uiformat``; the conversion needs the server).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from comfytest.compare.baselines import BaselineKey
from comfytest.compare.criteria import PixelLimits
from comfytest.errors import ComfyTestError, ComparisonError, PreflightError
from comfytest.plugin.case import run_case
from comfytest.plugin.reporting import SessionState
from comfytest.plugin.session import ComfySession
from comfytest.workflows.casefile import CaseDefaults, CaseSpec, load_cases, settings_path
from comfytest.workflows.modelorder import ModelSet, case_models
from comfytest.workflows.uiformat import convert_ui_workflow
from comfytest.workflows.workflow import Workflow, is_ui_format, is_workflow_file, parse_workflow, read_json

OpenSession = Callable[[pytest.Config], ComfySession]  # the plugin's session_or_exit


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


def moved_baselines(baselines: Path, path: Path, roots: Iterable[Path], rootdir: Path, name: str, case: str) -> str | None:
    """Why baselines look missing when they were written under another name of this workflow:
    adding (or removing) its folder in ini ``comfy_workflows`` changes ``workflows/x`` to ``x``."""
    roots = list(roots)
    names = {baseline_name(path, [], rootdir), *(baseline_name(path, [r], rootdir) for r in roots)} - {name}
    for old in sorted(names):
        old_dir = baselines / BaselineKey(old, case, "").relative_dir
        if old_dir.is_dir():
            new_dir = baselines / BaselineKey(name, case, "").relative_dir
            why = ("its folder is listed in ini comfy_workflows, so names are relative to that folder"
                   if roots and any(r in path.resolve().parents for r in roots)
                   else "names are relative to the rootdir when the workflow is not under an ini comfy_workflows folder")
            return (f"The baselines of this case exist under the workflow's former name: {old_dir} "
                    f"(now {new_dir}; {why}). Move them, e.g. `git mv {old_dir.parent} {new_dir.parent}`, "
                    "instead of recording new ones.")
    return None


def is_collectable(path: Path, roots: Iterable[Path]) -> bool:
    """A ``.json`` file at or under one of ``roots`` (resolved paths)."""
    if path.suffix != ".json" or path.name.startswith("."):
        return False
    resolved = path.resolve()
    return any(resolved == root or root in resolved.parents for root in roots)


class WorkflowFile(pytest.File):
    """One workflow file; yields a ``WorkflowItem`` per case."""

    def __init__(self, *, state: SessionState, open_session: OpenSession, **kw: Any) -> None:
        super().__init__(**kw)
        # passed in by the plugin, which owns them (no import back into the plugin)
        self.state, self.open_session = state, open_session

    def collect(self) -> Iterator[WorkflowItem]:
        try:
            data = read_json(self.path)
            if isinstance(data, dict) and not is_workflow_file(data):
                return  # some other JSON object (package.json, data): not ours
            ui_data = data if is_ui_format(data) else None
            # a UI-format file needs /object_info to name its widget values: converted in
            # runtest; here its links alone are enough to check the settings' selectors
            workflow = convert_ui_workflow(data, None, self.path) if ui_data else parse_workflow(data, self.path)
            cases = load_cases(settings_path(self.path), workflow, max_cases=self.state.settings.max_cases)
        except ComfyTestError as exc:
            raise self.CollectError(str(exc)) from None
        name = baseline_name(self.path, self.state.workflow_roots, self.state.rootdir)
        for case in cases:
            item = WorkflowItem.from_parent(
                self, name=case.id, workflow=workflow, case=case, key=name, ui_data=ui_data,
                state=self.state, open_session=self.open_session,
            )
            for mark in case.marks:
                item.add_marker(mark)
            item.add_marker("comfy")
            yield item


class WorkflowItem(pytest.Item):
    """One case of one workflow: run it on the session's server and check its outputs."""

    def __init__(
        self, *, workflow: Workflow, case: CaseSpec, key: str, state: SessionState, open_session: OpenSession,
        ui_data: Any = None, **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.state, self.open_session = state, open_session
        self.workflow = workflow
        self.ui_data = ui_data  # the UI-format JSON, converted once the server is known
        self.key = key  # the workflow's name in baselines/ and results/
        self.case = case
        self.comfy_record: dict[str, Any] | None = None

    def runtest(self) -> None:
        state = self.state
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
        session = self.open_session(self.config)
        self.comfy_record["server"] = session.server_info()
        dead_before = len(session.dead)
        try:
            if self.ui_data is not None:
                self.workflow = session.convert_ui(self.ui_data, self.path)
                self.comfy_record["conversion"] = session.conversions[str(self.path)].to_json()
            run_case(session, self.workflow, case, self.comfy_record, state.store(session), self.key,
                     state.perf_reference(self.nodeid), state.offpath)
        except ComparisonError as exc:
            hint = moved_baselines(settings.baselines, self.path, state.workflow_roots, state.rootdir, self.key, case.id)
            if hint and any(c.get("status") == "missing" for c in self.comfy_record.get("comparisons") or []):
                raise type(exc)(f"{exc}\n\n{hint}") from None
            raise
        except PreflightError as exc:
            if settings.missing == "skip":
                pytest.skip(str(exc))
            raise
        finally:
            if len(session.dead) > dead_before:  # its server died under it (the session moved on)
                self.comfy_record["server"]["died"] = True

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, ComfyTestError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, None, str]:
        return self.path, None, f"{self.path.name}::{self.case.id}"


def model_keys(items: Iterable[pytest.Item]) -> list[ModelSet | None]:
    """Each item's model set (workflow cases), None for other tests."""
    return [case_models(i.workflow, i.case) if isinstance(i, WorkflowItem) else None for i in items]


__all__ = ["WorkflowFile", "WorkflowItem", "baseline_name", "is_collectable", "model_keys"]
