"""The trace of intermediate outputs in a case: recorded with the baselines, read on a failure.

``record_trace`` runs the tapped copy of a case's prompt once, after its measured runs, when
baselines are updated, and stores ``trace.txt`` beside them (kept as it is when the new trace
matches it, so an update does not churn reviews). ``diagnose`` runs the tapped prompt once for a
case whose outputs failed and returns the finding in words (and as data for the report): the
first node whose output left the baseline's trace while its inputs still matched. Both are one
extra run of the prompt on the server; the original nodes mostly come from ComfyUI's cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfytest.comfy.trace import TAP_CLASS, TapUnavailable, read_fingerprints, tap_missing, tapped_prompt
from comfytest.compare.baselines import BaselineKey, BaselineStore
from comfytest.compare.store import TRACE_PICTURES, atomic_write, safe_name
from comfytest.compare.trace import (
    TRACE_FILE,
    Finding,
    Tolerance,
    Trace,
    TraceCorrupt,
    build_trace,
    first_change,
    picture_sheet,
    read_trace,
    traces_match,
)
from comfytest.errors import BaselineCorrupt, BaselineMissing, ComfyTestError, ComparisonError
from comfytest.plugin.session import ComfySession
from comfytest.workflows.casefile import CaseSpec
from comfytest.workflows.workflow import ObjectInfo

_UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "upload")


@dataclass(frozen=True)
class TraceContext:
    """What a trace of one case needs: its prompt, where its baselines live, which nodes load files."""

    prompt: Mapping[str, Any]
    key: BaselineKey  # the case's folder (output key "")
    loaders: frozenset[str]
    timeout: float | None
    tolerance: Tolerance
    artefacts: Path  # the case's results folder: the changed node's pictures go there
    pictures: bool = True  # trace.png beside trace.txt (not with --comfy-hash-only: no images kept)


def file_loaders(prompt: Mapping[str, Any], info: ObjectInfo, model_loaders: Mapping[str, Any]) -> frozenset[str]:
    """Nodes that load a file: model loaders (the preflight table) and nodes with an upload input."""
    found = set(model_loaders)
    for node_id, node in prompt.items():
        spec = info.get(str(node.get("class_type")), {}).get("input", {})
        for group in ("required", "optional"):
            for value in (spec.get(group) or {}).values():
                if isinstance(value, list | tuple) and len(value) > 1 and isinstance(value[1], Mapping) \
                        and any(value[1].get(flag) for flag in _UPLOAD_FLAGS):
                    found.add(str(node_id))
    return frozenset(found)


def case_trace(
    session: ComfySession, prompt: Mapping[str, Any], timeout: float | None, key: BaselineKey, case: CaseSpec,
    model_loaders: Mapping[str, Any],
) -> TraceContext | None:
    """The trace of one case (``key``: its baselines folder), unless --comfy-trace off or the
    settings file's ``trace = false``; the hash tolerance is the case's, 2 bits at least."""
    if not (case.trace if case.trace is not None else session.settings.trace):
        return None
    return TraceContext(prompt, key, file_loaders(prompt, session.object_info(), model_loaders), timeout,
                        Tolerance(hash_bits=max(case.tolerance or 0, 2)), session.settings.results / key.relative_dir,
                        pictures=not session.settings.hash_only)


def diagnosable(exc: ComparisonError) -> bool:
    """A failed comparison the trace can explain: not a missing or unreadable baseline."""
    return not isinstance(exc, BaselineMissing | BaselineCorrupt)


def _take(session: ComfySession, ctx: TraceContext) -> Trace:
    """One run of the tapped copy of the prompt → its trace."""
    info = session.object_info()
    tapped = tapped_prompt(ctx.prompt, info)
    if not tapped.taps:  # only nodes without outputs (SaveImage alone): nothing to trace, no run
        return Trace(())
    observers, session.runner.observers = session.runner.observers, []  # no live progress lines for taps
    try:
        result = session.run_prompt(tapped.prompt, timeout=ctx.timeout, fetch_images=False)
    finally:
        session.runner.observers = observers  # the runner now in use (a failover may have replaced it)
    result.raise_for_status()
    return build_trace(ctx.prompt, read_fingerprints(tapped, result.outputs), tapped.types, ctx.loaders)


def record_trace(session: ComfySession, store: BaselineStore, ctx: TraceContext, record: dict[str, Any]) -> None:
    """With the baselines: take the trace and write ``trace.txt`` unless the stored one matches."""
    path = store.write_dir(ctx.key) / TRACE_FILE
    try:
        trace = _take(session, ctx)
        old = read_trace(path)
    except TapUnavailable as exc:
        record["trace"] = {"status": "unavailable", "message": f"trace not recorded: {exc}"}
        return
    except TraceCorrupt:
        old = None
    if not trace.nodes:
        record["trace"] = {"status": "empty", "message": "no node with outputs to trace"}
        return
    store.mark_used(path)
    if old is not None and traces_match(old, trace, ctx.tolerance):
        record["trace"] = {"status": "kept", "message": f"trace {path} still matches; kept"}
        return
    atomic_write(path, trace.to_text().encode("utf-8"))
    sheet, sheet_path = picture_sheet(trace) if ctx.pictures else None, path.with_name(TRACE_PICTURES)
    if sheet is not None:
        atomic_write(sheet_path, sheet)
    elif sheet_path.is_file():  # an earlier trace's pictures, which no longer fit this trace
        sheet_path.unlink()
    record["trace"] = {"status": "written", "message": f"trace written to {path}", "path": str(path)}


def diagnose(session: ComfySession, store: BaselineStore, ctx: TraceContext, record: dict[str, Any]) -> str:
    """After a failed comparison: one tapped run against the stored trace → the finding in words
    (also in ``record["trace"]``); "" when the prompt has no node output to trace."""
    info = session.object_info()
    if TAP_CLASS not in info:
        return _note(record, "unavailable", f"trace: the node that changed cannot be located: {tap_missing()}")
    if not tapped_prompt(ctx.prompt, info).taps:
        return ""  # no node with outputs (a lone output node): nothing a trace could tell
    path = store.find_file(ctx.key, TRACE_FILE)
    if path is None:
        return _note(record, "no_trace", (
            "trace: this case has no trace of intermediate outputs yet, so the node that changed cannot be "
            f"named. Record one with the baselines: pytest --comfy-update-baselines (writes {TRACE_FILE} "
            "beside them; --comfy-trace off turns traces off)"))
    store.mark_used(path)
    try:
        baseline = read_trace(path)
        obtained = _take(session, ctx)
    except TapUnavailable as exc:
        return _note(record, "unavailable", f"trace: the node that changed cannot be located: {exc}")
    except (TraceCorrupt, ComfyTestError) as exc:
        return _note(record, "error", f"trace: the diagnostic run with taps failed, no node named: {exc}")
    assert baseline is not None  # find_file found it
    finding = first_change(baseline, obtained, ctx.tolerance)
    record["trace"] = {**finding.to_json(), "path": str(path), "pictures": _pictures(finding, baseline, obtained, ctx)}
    return finding.message()


def _pictures(finding: Finding, baseline: Trace, obtained: Trace, ctx: TraceContext) -> list[dict[str, Any]]:
    """The baseline and obtained pictures of the changed nodes' image outputs, as artefacts."""
    found = []
    for check in finding.origins:
        for slot in check.outputs:
            where = f"{check.node.node_id}:{slot}"
            if where in baseline.pictures and where in obtained.pictures:
                paths = {}
                for role, trace in (("baseline", baseline), ("obtained", obtained)):
                    paths[role] = ctx.artefacts / f"trace_{safe_name(check.node.node_id)}_{slot}.{role}.png"
                    paths[role].parent.mkdir(parents=True, exist_ok=True)
                    paths[role].write_bytes(trace.pictures[where])
                found.append({"node_id": check.node.node_id, "slot": slot, **{k: str(v) for k, v in paths.items()}})
    return found


def _note(record: dict[str, Any], status: str, message: str) -> str:
    record["trace"] = {"status": status, "message": message}
    return message


__all__ = ["TraceContext", "case_trace", "diagnosable", "diagnose", "file_loaders", "record_trace"]
