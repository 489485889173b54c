"""Which converter turns a UI-format workflow into an API prompt: ``--comfy-convert``.

``python``: ``uiformat`` with the server's ``/object_info``. ``frontend``: the server's own web
frontend in headless Chromium (``frontend``), exact even for custom nodes whose JavaScript adds
widgets; without a browser it is an error saying how to get one. ``auto`` (the default): the
frontend when a browser is found and the server's web UI opens, else Python; the report says
which converted each workflow and why.

One browser serves the whole session; it starts at the first UI-format workflow. A workflow
that uses node classes the server lacks is converted in Python whatever the mode: there is
nothing to run, and preflight then names what is missing.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfytest.comfy.frontend import INSTALL_HINT, FrontendConverter, FrontendError, find_browser
from comfytest.errors import ConfigError, WorkflowError
from comfytest.workflows.uiformat import convert_ui_workflow
from comfytest.workflows.uigraph import read_graph
from comfytest.workflows.workflow import ObjectInfo, Workflow, parse_workflow

CONVERT_MODES = ("python", "frontend", "auto")
MODES = CONVERT_MODES


@dataclass(frozen=True)
class Conversion:
    """How one workflow was converted, for reports: ``method`` and, for a fallback, why."""

    method: str  # "python" | "frontend"
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "reason": self.reason}


class UiConverter:
    """The session's converter: mode, browser (started once, on first use) and its errors."""

    def __init__(self, mode: str, url: str, chromium: str | None = None) -> None:
        if mode not in MODES:
            raise ConfigError(f"--comfy-convert {mode!r} is not one of: {', '.join(MODES)}")
        self.mode = mode
        self.url = url
        self.chromium = chromium
        self._frontend: FrontendConverter | None = None
        self._unavailable: str | None = None  # why the frontend cannot be used (auto falls back)

    def convert(
        self, data: Mapping[str, Any], object_info: ObjectInfo, source: Path | None = None
    ) -> tuple[Workflow, Conversion]:
        """The API-format workflow of UI-format ``data`` and how it was made."""
        with warnings.catch_warnings(record=True) as caught:  # shown only if Python's prompt is used
            warnings.simplefilter("always")
            python = convert_ui_workflow(data, object_info, source)
        if self.mode == "python":
            return _warned(python, caught), Conversion("python")
        missing = sorted({n.class_type for n in python.nodes.values() if n.class_type not in object_info})
        if missing:
            return _warned(python, caught), Conversion("python", f"node classes the server lacks: {', '.join(missing)}")
        frontend = self._browser()
        if frontend is None:
            return _warned(python, caught), Conversion("python", self.fallback_reason)
        where = str(source) if source else "<workflow>"
        try:
            prompt = frontend.convert(data, where)
        except FrontendError as exc:
            raise WorkflowError(f"{exc}. To convert it in Python instead, use --comfy-convert python") from None
        if not prompt:
            raise read_graph(data, source).fail("the frontend made an empty prompt of it (every node muted or bypassed?)")
        return parse_workflow(prompt, source), Conversion("frontend")

    def _browser(self) -> FrontendConverter | None:
        if self._unavailable is not None:
            self._fail_or_fallback(self._unavailable)
        if self._frontend is not None or self._unavailable is not None:
            return self._frontend
        binary = find_browser(self.chromium)
        if binary is None:
            wanted = f"the browser {self.chromium}" if self.chromium else "no Chromium or Chrome on PATH"
            self._fail_or_fallback(f"--comfy-convert {self.mode} needs a browser, and {wanted} was found; {INSTALL_HINT}")
            return None
        try:
            self._frontend = FrontendConverter(self.url, binary).start()
        except FrontendError as exc:
            self._fail_or_fallback(str(exc))
        return self._frontend

    def _fail_or_fallback(self, why: str) -> None:
        """``frontend`` fails (every time, without retrying the browser); ``auto`` notes why."""
        self._unavailable = why
        if self.mode == "frontend":
            raise ConfigError(why)

    @property
    def fallback_reason(self) -> str | None:
        return f"frontend unavailable: {self._unavailable}" if self._unavailable else None

    def close(self) -> None:
        if self._frontend is not None:
            self._frontend.close()
            self._frontend = None


def _warned(workflow: Workflow, caught: list[warnings.WarningMessage]) -> Workflow:
    for warning in caught:
        warnings.warn(warning.message, stacklevel=3)
    return workflow


def prompt_differences(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """Where two API prompts differ, input by input: ``"57:44 KSampler.steps"``, or a node only
    one of them has. Titles (``_meta``) are not compared: the server ignores them."""
    found = []
    for node_id in sorted(set(expected) | set(actual)):
        a, b = expected.get(node_id), actual.get(node_id)
        if a is None or b is None:
            present = a or b or {}
            found.append(f"{node_id} {present.get('class_type')} only in the {'first' if b is None else 'second'} prompt")
            continue
        if a.get("class_type") != b.get("class_type"):
            found.append(f"{node_id} class {a.get('class_type')} != {b.get('class_type')}")
            continue
        inputs_a, inputs_b = a.get("inputs") or {}, b.get("inputs") or {}
        for name in sorted(set(inputs_a) | set(inputs_b)):
            if name not in inputs_a or name not in inputs_b or inputs_a[name] != inputs_b[name]:
                found.append(f"{node_id} {a.get('class_type')}.{name}")
    return found
