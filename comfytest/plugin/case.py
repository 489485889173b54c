"""One case of one workflow, end to end: preflight, prepare, run (repeated), check outputs.

``run_case`` fills a report record (see ``report``) as it goes, so a failure at any step still
leaves what was learnt (seeds, timings, comparisons) in the report, and raises the first
blocking error or one ``ComparisonError`` listing every output that failed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image

from comfytest.comfy.diagnostics import describe_node, node_info
from comfytest.comfy.execution import RunResult
from comfytest.comfy.timing import RunTiming
from comfytest.compare.baselines import (
    UPDATE_OPTION,
    BaselineKey,
    BaselineStore,
    CheckResult,
    Mode,
    check_image,
    check_not_produced,
    check_text,
)
from comfytest.compare.calibrate import measure_runs, repeat
from comfytest.compare.files import MediaCheck, check_file
from comfytest.compare.interface import check_interfaces
from comfytest.compare.video import as_animation
from comfytest.errors import (
    BaselineMissing,
    ComparisonError,
    ImageMismatch,
    PreflightError,
    RunError,
    StorageError,
    clip,
)
from comfytest.media import MediaSettings, Undecodable
from comfytest.outputs import OutputFile, OutputImage
from comfytest.plugin.offpath import OffPath
from comfytest.plugin.perf import PerfPlan, Pool, measure, perf_json
from comfytest.plugin.resultfiles import keep_results
from comfytest.plugin.session import ComfySession
from comfytest.plugin.tracing import case_trace, diagnosable, diagnose, record_trace
from comfytest.report.document import summarize_runs
from comfytest.report.memory import summarize_memory
from comfytest.report.perfstats import Rule
from comfytest.report.previews import PREVIEWS_DIR, save_previews
from comfytest.workflows.casefile import CaseSpec
from comfytest.workflows.modelorder import workflow_models
from comfytest.workflows.preflight import NodeOrigin, model_references, preflight, server_models
from comfytest.workflows.workflow import ObjectInfo, Workflow


def check_requirements(
    workflow: Workflow, case: CaseSpec, info: ObjectInfo,
    origins: Mapping[str, NodeOrigin] | None = None, server_version: str | None = None,
) -> None:
    """Raise PreflightError listing everything the server lacks for this case."""
    problems = [p.message for p in preflight(workflow, info, origins, server_version) if p.kind != "bad_value"]
    for cls in case.requires.nodes:
        if cls not in info:
            problems.append(f"node class {cls} (required by the settings file) is not installed")
    for model in case.requires.models:
        folder, _, name = model.partition("/")
        if name and name not in server_models(info, folder):
            problems.append(f"{name} is not installed in models/{folder}/ (required by the settings file)")
    if problems:
        raise PreflightError(
            f"{workflow.name}::{case.id} cannot run on this server:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\n(--comfy-missing=skip turns this into a skip, for suites shared between machines)"
        )


def run_case(
    session: ComfySession, workflow: Workflow, case: CaseSpec, record: dict[str, Any],
    store: BaselineStore, name: str, reference: Pool | None = None, offpath: OffPath | None = None,
) -> None:
    """Run one case; ``name`` is the workflow's name in baselines/ (``sub/x`` for sub/x.json);
    ``reference``: with --comfy-perf, the earlier report's warm samples of this test;
    ``offpath``: the session's threads for work off the case's critical path (``offpath``)."""
    settings = session.settings
    info = session.object_info()
    prepared = session.prepare(workflow, seed=case.seed, patches=case.patches, inputs=dict(case.inputs))
    record["seeds"] = [{"node_id": p.node_id, "class_type": p.class_type, "input": p.input, "value": p.new} for p in prepared.seeds]
    record["patches"] = [{"node_id": p.node_id, "input": p.input, "value": p.new} for p in prepared.patches]
    check_requirements(prepared.workflow, case, info, session.node_origins.get(workflow.name),  # after patches:
                       session.server_version())  # a patch may name another model
    record["workflow_digest"] = prepared.workflow.digest()
    if case.timing:
        record["timing_thresholds"] = dict(case.timing)
    record["models"] = sorted(set(workflow_models(prepared.workflow)) | set(case.requires.models))
    prompt = prepared.workflow.to_prompt()
    timeout = case.timeout
    if settings.calibrate:  # spread between runs, no baseline read or written
        calibrate_case(session, prompt, case, record, settings.calibrate)
        return
    interface_problems: list[str] = []
    if settings.interface:
        classes = [str(node["class_type"]) for node in prompt.values()]
        interface_problems, written = check_interfaces(store.root, info, classes, update=settings.update_baselines)
        record["interface_written"] = written
    compare_only = not (settings.update_baselines or settings.hash_only)
    preloads = offpath.preloads if offpath is not None and compare_only else None
    # the baselines are decoded while the server runs the prompt (from when it accepted it)
    around = _RunHooks(offpath, partial(preloads.start, store.read_dirs(BaselineKey(name, case.id, ""))) if preloads
                       else None) if offpath is not None else None
    try:
        _run_and_check(session, prompt, timeout, name, case, record, store, loader_nodes(prepared.workflow, info),
                       reference, offpath, around)
    except ComparisonError as exc:
        if interface_problems:
            raise type(exc)("\n\n".join([*interface_problems, str(exc)])) from exc
        raise
    finally:
        if preloads is not None:
            preloads.clear()
    if interface_problems:
        raise ComparisonError(f"{name}::{case.id}: " + "\n\n".join(interface_problems))


def _run_and_check(
    session: ComfySession, prompt: Mapping[str, Any], timeout: float | None, name: str, case: CaseSpec,
    record: dict[str, Any], store: BaselineStore, loaders: dict[str, tuple[str, ...]], reference: Pool | None = None,
    offpath: OffPath | None = None, around: _RunHooks | None = None,
) -> None:
    settings = session.settings
    if settings.perf:  # issue 24: cold run, then warm runs with every node but the loaders executing
        cold = measure_perf(session, prompt, timeout, record, loaders, reference, around)
        check_outputs(cold, name, case, record, store, settings.results, settings.update_baselines, settings.hash_only,
                      keep_passed=settings.keep_passed, offpath=offpath)
        return
    for _ in range(settings.warmup):
        _run(session, prompt, timeout, fetch_images=False, free=settings.free_cache,
             around=around).raise_for_status()
    runs: list[RunResult] = []
    for index in range(settings.runs):
        result = _run(session, prompt, timeout, fetch_images=index == 0, free=settings.free_cache, around=around)
        runs.append(result)
        record["prompt_id"] = runs[0].prompt_id
        record["timing"] = timing_json(runs[0].timing, loaders)
        record_resources(record, runs, loaders)
        result.raise_for_status()
    if len(runs) > 1:
        record["runs"] = [timing_json(r.timing, loaders) for r in runs]
        record["stats"] = summarize_runs(record["runs"])
    if settings.previews:
        folder = settings.results / PREVIEWS_DIR / BaselineKey(name, case.id, "").relative_dir
        record["previews"] = save_previews(runs[0].events, folder, settings.results)
    trace = case_trace(session, prompt, timeout, BaselineKey(name, case.id, ""), case, loaders)
    try:
        check_outputs(runs[0], name, case, record, store, settings.results, settings.update_baselines, settings.hash_only,
                      keep_passed=settings.keep_passed, offpath=offpath)
    except ComparisonError as exc:  # issue 23: one tapped run names the node that changed first
        if trace is None or settings.update_baselines or not diagnosable(exc):
            raise
        raise type(exc)("\n\n".join(filter(None, [str(exc), diagnose(session, store, trace, record)]))) from exc
    if trace is not None and settings.update_baselines:
        record_trace(session, store, trace, record)


def _run(
    session: ComfySession, prompt: Mapping[str, Any], timeout: float | None, *, fetch_images: bool, free: bool,
    around: _RunHooks | None = None,
) -> RunResult:
    """One run. With ``free`` (--comfy-free-cache) from an emptied cache; else an identical
    prompt is served from it (every node cached), which measures and warms nothing. The server
    applies ``POST /free`` when its worker next wakes, which can be after it took the prompt:
    a run still served from cache is run again (twice at most) and reported cached if it stays so."""
    for _ in range(3 if free else 1):
        if free:
            session.guard(lambda: session.client.free(unload_models=False, free_memory=True))
        # the events carry outputs and timing: no GET /history per run (Runner.run)
        try:
            result = session.run_prompt(prompt, timeout=timeout, fetch_images=fetch_images, history=False,
                                        on_queued=around.queued if around is not None else None)
        finally:
            if around is not None:
                around.done()
        if not result.timing.cached_nodes:
            break
    return result


def measure_perf(
    session: ComfySession, prompt: Mapping[str, Any], timeout: float | None, record: dict[str, Any],
    loaders: dict[str, tuple[str, ...]], reference: Pool | None = None,
    around: _RunHooks | None = None,
) -> RunResult:
    """--comfy-perf (``plugin.perf``): ``timing`` is the cold run, ``runs`` the warm ones."""
    s = session.settings
    plan = PerfPlan(Rule(s.perf_alpha, s.perf_floor_ms, s.perf_floor_pct), s.perf_budget, s.perf_min_runs,
                    s.perf_max_runs, s.warmup, s.perf_screen_runs)
    runs = measure(lambda p, first: _run(session, p, timeout, fetch_images=first, free=first and s.free_cache,
                                         around=around), prompt, loaders, plan, reference)
    record["prompt_id"] = runs.cold.prompt_id
    record["timing"] = timing_json(runs.cold.timing, loaders)
    record["runs"] = [timing_json(r.timing, loaders) for r in runs.warm]
    record["stats"] = summarize_runs(record["runs"])
    record_resources(record, [runs.cold, *runs.warm], loaders)
    record["perf"] = {"cold": record["timing"], **perf_json(runs, plan)}
    return runs.cold


def calibrate_case(
    session: ComfySession, prompt: Mapping[str, Any], case: CaseSpec, record: dict[str, Any], times: int,
) -> None:
    """Run ``times`` times from a cleared cache; the outputs' spread goes to ``record["calibration"]``."""
    runs: list[RunResult] = []

    def run(_: int) -> dict[str, Any]:
        runs.append(fresh_run(session, prompt, case.timeout))
        wanted = [i for i in runs[-1].images if case.outputs is None or i.node_id in case.outputs]
        videos = [f for f in runs[-1].files if f.kind == "video" and (case.outputs is None or f.node_id in case.outputs)]
        return {i.key: _decoded(i) for i in wanted} | {f.key: _video_frames(f, case) for f in videos}

    images = repeat(run, times)
    record["prompt_id"] = runs[0].prompt_id
    record["timing"] = timing_json(runs[0].timing)
    record["runs"] = [timing_json(r.timing) for r in runs]
    record["stats"] = summarize_runs(record["runs"]) if times > 1 else None
    spreads = measure_runs(images, method=case.hash_method or "phash", hash_size=case.hash_size or 8)
    record["calibration"] = [s.to_json(case.tolerance) for s in spreads]


def _decoded(image: OutputImage) -> Image.Image:
    try:
        return image.image
    except Undecodable as exc:
        raise ComparisonError(f"image {image.ref.filename} of node {image.node_id} cannot be decoded for "
                              f"calibration: {exc}") from None


def _video_frames(file: OutputFile, case: CaseSpec) -> Any:
    """A video output as the animation of its hashed frames (calibration of video frames)."""
    try:
        return as_animation(file.data, int(case.media.get("video_frames", MediaSettings.video_frames)))
    except Undecodable as exc:
        raise ComparisonError(f"video {file.ref.filename} of node {file.node_id} cannot be decoded for "
                              f"calibration: {exc}") from None


def fresh_run(session: ComfySession, prompt: Mapping[str, Any], timeout: float | None) -> RunResult:
    """A run in which every node executes (calibration needs real runs)."""
    result = _run(session, prompt, timeout, fetch_images=True, free=True)
    result.raise_for_status()
    if result.timing.cached_nodes:
        raise RunError(f"{session.url} kept serving nodes {', '.join(result.timing.cached_nodes)} from its cache "
                       "after POST /free; calibration needs runs in which every node executes")
    return result


class _RunHooks:
    """What each run of a case tells the session's off-path threads (``offpath``): the server
    accepted the prompt (the first time, the case's baselines start preloading; the writer and
    the trash may work while it runs), and the run returned (they pause)."""

    def __init__(self, offpath: OffPath, preload: Callable[[], None] | None) -> None:
        self.offpath = offpath
        self.preload = preload

    def queued(self) -> None:
        preload, self.preload = self.preload, None
        if preload is not None:
            preload()
        self.offpath.server_running()

    def done(self) -> None:
        self.offpath.server_done()


# --- resources and model loads ---------------------------------------------------------------


def loader_nodes(workflow: Workflow, info: ObjectInfo) -> dict[str, tuple[str, ...]]:
    """Nodes that load a model file (the preflight loader table): node id → the files."""
    found: dict[str, tuple[str, ...]] = {}
    for ref in model_references(workflow, info):
        found[ref.node_id] = (*found.get(ref.node_id, ()), ref.value)
    return found


def record_resources(record: dict[str, Any], runs: list[RunResult], loaders: Mapping[str, tuple[str, ...]]) -> None:
    """Memory of the measured runs so far, and the model loads of the first one."""
    memory = [r.memory.to_json() if r.memory is not None else None for r in runs]
    record["memory"] = memory[0]
    if len(runs) > 1:
        record["memory_runs"] = memory
        record["memory_stats"] = summarize_memory(memory)
    record["model_loads"] = [
        {"node_id": n.node_id, "class_type": n.class_type, "title": n.title,
         "models": list(loaders[n.node_id]), "duration_ms": _round(n.duration_ms)}
        for n in runs[0].timing.nodes if n.node_id in loaders and not n.cached
    ]


def timing_json(timing: RunTiming, loaders: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A run's timing as JSON; ``loaders`` (node ids) marks executed loader nodes as model loads."""
    loaders = loaders or {}
    return {
        "queue_wait_ms": _round(timing.queue_wait_ms),
        "server_total_ms": _round(timing.server_total_ms),
        "client_wall_ms": _round(timing.client_wall_ms),
        "clock_offset_ms": _round(timing.clock_offset_ms),
        # server time in no node: prompt set-up (cache keys, execution list) and clean-up
        "server_overhead_ms": None if all(n.cached for n in timing.nodes) else _round(timing.overhead_ms),
        "status": timing.status,
        "nodes": [
            {
                "node_id": n.node_id, "class_type": n.class_type, "title": clip(n.title, 200) if n.title else None,
                "duration_ms": _round(n.duration_ms), "cached": n.cached,
                "steps": n.steps, "steps_per_s": _round(n.steps_per_s),
                "model_load": n.node_id in loaders and not n.cached,
            }
            for n in timing.nodes
        ],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def check_outputs(
    result: RunResult, name: str, case: CaseSpec, record: dict[str, Any],
    store: BaselineStore, results_dir: Path, update: bool, hash_only: bool, *, keep_passed: bool = False,
    offpath: OffPath | None = None,
) -> None:
    """Compare every image and text output; fail naming missing/extra outputs and mismatches.
    The results folder keeps thumbnails of passing images (their full copies with
    ``keep_passed``) and every artefact of failing ones (``resultfiles``). With ``offpath`` the
    baselines may come from its preloading thread, and the stale folder goes to its trash."""
    labels = node_info(result.prompt)
    problems = _expected_outputs(result, case, labels)
    # artefacts of an earlier run of this case would read as this run's: the folder is ours
    stale = results_dir / BaselineKey(name, case.id, "").relative_dir
    if not stale.resolve().is_relative_to(store.root.resolve()):  # never a baseline (settings forbid it too)
        if offpath is not None:
            offpath.writer.wait()  # an earlier run's thumbnails are in place before its folder goes
            offpath.trash.discard(stale, results_dir)  # moved aside now, deleted on a thread
        else:
            shutil.rmtree(stale, ignore_errors=True)
    preloads = offpath.preloads if offpath is not None else None
    checks: list[CheckResult] = []
    mode: Mode = "update" if update else "compare"
    unwritable: list[StorageError] = []  # one output's file refused: the others are still checked
    refused: set[str] = set()  # their stems: produced, so their baselines are not "no longer produced"

    undecodable: list[OutputFile] = []  # served PNGs that did not decode: checked as files are

    def check(key: BaselineKey, call: Callable[[], CheckResult]) -> None:
        try:
            checks.append(call())
        except StorageError as exc:
            unwritable.append(exc)
            refused.add(key.stem)

    images = []
    for img in result.images:
        if case.outputs is not None and img.node_id not in case.outputs:
            continue
        key = BaselineKey(name, case.id, img.key)
        tolerance, limits = case.criteria_for(img.node_id)
        try:  # as served: decoded only if it is not the image data its baseline was made from
            check(key, partial(
                check_image, store, key, img, mode=mode, method=case.hash_method or "phash",
                hash_size=case.hash_size or 8, tolerance=tolerance, limits=limits,
                results_dir=results_dir, hash_only=hash_only, preloads=preloads,
            ))
            images.append(img)
        except Undecodable as exc:
            undecodable.append(OutputFile(img.node_id, img.index, img.ref, "image", img.data or b"", img.kind, str(exc)))
    for text in result.texts:
        if case.outputs is None or text.node_id in case.outputs:
            text_key = BaselineKey(name, case.id, text.key)
            check(text_key, partial(check_text, store, text_key, text.text, mode=mode, results_dir=results_dir))
    media = check_media(result, name, case, store, results_dir, mode, hash_only, labels, undecodable)
    checks += [m.result for m in media]
    case_key = BaselineKey(name, case.id, "")
    gone = check_not_produced(store, case_key, {c.key.stem for c in checks} | refused, mode=mode, nodes=case.outputs)
    problems += _not_produced_summary(gone, checks, labels)
    if not checks and case.outputs is None:
        problems.append(_compared_nothing(result, labels))
    plain = [c for c in checks if all(c is not m.result for m in media)]
    record["comparisons"] = [comparison_json(c) for c in plain] + [
        {**comparison_json(m.result), **m.to_json(), **_media_numbers(m)} for m in media] + [
        comparison_json(c) for c in gone]
    keep_results(images, record["comparisons"], stale, keep_passed=keep_passed,
                 later=offpath.writer.submit if offpath is not None else None,
                 pixels={c.key.output_key: c.pixels for c in checks if c.pixels is not None})
    checks += gone
    if unwritable:  # after the record: the summary counts what was written before and after it
        raise StorageError("\n\n".join(str(e) for e in unwritable))
    problems += [c.message for c in checks if not c.ok and c.status != "not_produced"]  # those: once per node, above
    if problems:
        missing_only = all(c.status == "missing" for c in checks if not c.ok) and len(problems) == sum(not c.ok for c in checks)
        if missing_only:
            raise BaselineMissing(_first_run(name, case, [c for c in checks if not c.ok], results_dir))
        cls = BaselineMissing if missing_only else ImageMismatch if any(c.status == "mismatch" for c in checks) else ComparisonError
        raise cls(f"{name}::{case.id}: {len(problems)} output check(s) failed\n\n" + "\n\n".join(problems))


def _first_run(name: str, case: CaseSpec, missing: list[CheckResult], results_dir: Path) -> str:
    """A case's first run: one short paragraph, not one failure per output."""
    folder = missing[0].baseline_path.parent
    obtained = results_dir / BaselineKey(name, case.id, "").relative_dir
    keys = ", ".join(c.key.output_key for c in missing)
    return (f"no baseline yet for {name}::{case.id} ({len(missing)} output(s): {keys}); they belong in {folder}/ and "
            f"the obtained outputs are in {obtained}/. Review them, then run pytest with {UPDATE_OPTION} to create "
            "the baselines.")


def _not_produced_summary(gone: list[CheckResult], checks: list[CheckResult], labels: Mapping[str, Any]) -> list[str]:
    """One line per node whose baselines list more outputs than it produced."""
    missing: dict[str, list[CheckResult]] = {}
    for check in gone:
        if check.status == "not_produced":
            missing.setdefault(check.key.output_key.rsplit("_", 1)[0], []).append(check)
    lines = []
    for node, lost in missing.items():
        produced = sum(c.key.output_key.rsplit("_", 1)[0] == node for c in checks)
        fix = lost[0].message.rsplit(". ", 1)[-1]
        lines.append(
            f"missing outputs: {describe_node(node, labels) if node in labels else 'node ' + node} produced {produced} output(s) but has baselines for "
            f"{produced + len(lost)}; not produced: {', '.join(c.key.output_key for c in lost)}\n"
            + "".join(f"  baseline: {c.baseline_path}\n" for c in lost) + fix)
    return lines


def _compared_nothing(result: RunResult, labels: Mapping[str, Any]) -> str:
    nodes = ", ".join(describe_node(n, labels) for n in sorted(result.outputs)) or "none"
    return ("compared nothing: the run produced no image or text output to compare with a baseline "
            f"(nodes that reported outputs: {nodes}). Add an output node (SaveImage, PreviewImage, "
            "PreviewAny), or set `outputs = []` in the settings file if the case only has to run.")


def check_media(
    result: RunResult, name: str, case: CaseSpec, store: BaselineStore, results_dir: Path,
    mode: Mode, hash_only: bool, labels: Mapping[str, Any], undecodable: Sequence[OutputFile] = (),
) -> list[MediaCheck]:
    """Every output file that is not an image (video, audio, latent, 3D, other) by its kind, and
    the images that did not decode (``undecodable``), reported as files."""
    checks = []
    for file in (*result.files, *undecodable):
        if case.outputs is not None and file.node_id not in case.outputs:
            continue
        settings = MediaSettings(
            method=case.hash_method or "phash", hash_size=case.hash_size or 8,
            tolerance=case.criteria_for(file.node_id)[0], hash_only=hash_only, **dict(case.media))
        checks.append(check_file(store, BaselineKey(name, case.id, file.key), file, mode=mode,
                                 results_dir=results_dir, settings=settings, node=describe_node(file.node_id, labels)))
    return checks


def _media_numbers(check: MediaCheck) -> dict[str, Any]:
    """distance/tolerance at the top level of a comparison, as for images (JUnit, tables)."""
    metrics = check.metrics
    return {k: metrics[k] for k in ("method", "distance", "tolerance") if k in metrics}




def _expected_outputs(result: RunResult, case: CaseSpec, labels: Mapping[str, Any]) -> list[str]:
    if case.outputs is None:
        return []
    produced = {img.node_id for img in result.images} | {t.node_id for t in result.texts} | {f.node_id for f in result.files}
    problems = [f"expected output from {describe_node(n, labels)}, but it produced none" for n in case.outputs if n not in produced]
    extra = sorted(produced - set(case.outputs))
    if extra:
        problems.append("outputs not listed in the settings file's `outputs`: " + ", ".join(describe_node(n, labels) for n in extra)
                        + " (add them to `outputs` to compare them)")
    return problems


def comparison_json(check: CheckResult) -> dict[str, Any]:
    comp = check.comparison
    data: dict[str, Any] = {
        "kind": "text" if check.baseline_path.suffix == ".txt" and check.baseline_path.name != "hashes.txt" else "image",
        "output": check.key.output_key, "node_id": check.key.output_key.rsplit("_", 1)[0], "status": check.status,
        "method": None, "distance": None, "tolerance": None, "max_abs_diff": None,
        "mean_abs_diff": None, "psnr": None, "message": check.message,
        "baseline": _path(check.baseline_path), "obtained": _path(check.obtained_path),
        "diff": _path(check.diff_path), "side_by_side": _path(check.side_by_side_path),
    }
    if check.texts is not None:
        data["baseline_text"], data["text"] = check.texts
    if comp is not None:
        for name in ("method", "distance", "tolerance", "max_abs_diff", "mean_abs_diff", "psnr"):
            value = getattr(comp, name, None)
            data[name] = None if value == float("inf") else value
        frames = getattr(comp, "frames", None)
        if frames:  # an animation: per-frame comparisons carry the method
            data["method"] = frames[0].method
        criteria = getattr(frames[0] if frames else comp, "criteria", None)
        data["criteria"] = criteria.describe() if criteria is not None else None
        data["same_source"] = getattr(comp, "same_source", False)
    return data


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)


__all__ = ["check_outputs", "check_requirements", "run_case", "timing_json"]
