"""What one pytest session accumulates: the server, test records, and the reports at the end.

No pytest here: the plugin passes plain values (node ids, outcomes, records) in, and asks for
summary lines and files out. Under pytest-xdist each worker opens its own server and sends its
records to the controller inside the test reports; only the controller writes the reports.
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from comfytest.comfy.compat import info_from_dict, newer_warning, server_info
from comfytest.comfy.servers import ServerPool, death_lines, pool_error, server_list
from comfytest.compare.baselines import (
    HASHES_FILE,
    PROFILES_DIR,
    UPDATE_OPTION,
    BaselineStore,
    safe_name,
    unused_baselines,
)
from comfytest.compare.calibrate import render_table as render_calibration
from comfytest.compare.store import TRACE_FILE, TRACE_PICTURES, device_profile, stack_of
from comfytest.errors import (
    BaselineCorrupt,
    BaselineMissing,
    ComfyTestError,
    ComparisonError,
    ConfigError,
    PreflightError,
    ServerError,
    ServerUnavailable,
    StorageError,
    UnsupportedServer,
    WorkflowError,
    escape_controls,
    redact,
)
from comfytest.plugin import perfsession
from comfytest.plugin.offpath import OffPath
from comfytest.plugin.session import ComfySession, open_session, server_stats, start_pool
from comfytest.plugin.settings import Settings
from comfytest.report.compare import append_history, compare_timings, regressions
from comfytest.report.document import (
    collect_fingerprint,
    fully_cached,
    junit_properties,
    load_report,
    model_load_line,
    new_document,
    new_record,
    test_label,
    write_json,
)
from comfytest.report.html import render_html
from comfytest.report.memory import compare_memory, memory_regressions
from comfytest.report.perfcompare import terminal_lines
from comfytest.report.text import render_markdown, render_terminal
from comfytest.report.trend import load_history, trend_section
from comfytest.workflows.casefile import CaseSpec


def failure_kind(exc: BaseException) -> str:
    """regression (the code under test) vs infrastructure / preflight (CI may retry these),
    and unsupported (this comfytest does not speak that server's protocol yet)."""
    if isinstance(exc, ServerError):
        return "infrastructure"
    if isinstance(exc, UnsupportedServer):
        return "unsupported"
    if isinstance(exc, PreflightError):
        return "preflight"
    if isinstance(exc, (ConfigError, StorageError, BaselineCorrupt)):
        # the user's set-up (an option, a read-only folder, a damaged baseline), not the code under test
        return "usage"
    if isinstance(exc, BaselineMissing):
        return "no baseline"  # the first run of a case, not a regression
    return "regression"


class SessionState:
    """The session's server (opened on first use), records, and end-of-session reports."""

    def __init__(self, settings: Settings, worker: str, rootdir: str) -> None:
        self.settings = settings
        self.worker = worker
        self.rootdir = Path(rootdir)
        self._session: ComfySession | None = None
        self._start_error: ComfyTestError | None = None
        self.records: list[dict[str, Any]] = []
        self._recorded: set[str] = set()  # node ids in records: a thousand tests stay linear
        self.outcomes: list[tuple[str, str, str | None]] = []
        self.used_baselines: set[str] = set()
        self.timing_changes: list[Any] = []
        self.memory_changes: list[Any] = []
        #: live progress and other watchers of every run (execution.RunObserver)
        self.observers: list[Any] = []
        self.previous: dict[str, Any] | None = None
        self.written: list[Path] = []
        self.summary_notes: list[str] = []
        #: why the reports could not be written (the session then fails: exit code 4, usage)
        self.report_error: str | None = None
        self.deselected = False
        self.doc: dict[str, Any] | None = None
        #: the run covered every workflow folder, so a baseline folder of a workflow that no
        #: test ran is unused; otherwise only the folders of the workflows that ran are looked at
        self.full_run = True
        #: resolved once per session: the ini ``comfy_workflows`` folders, and those plus the
        #: paths given on the command line (where JSON files are collected as workflows)
        self.workflow_roots: tuple[Path, ...] = ()
        self.collect_roots: tuple[Path, ...] = ()
        self.worker_fingerprint: dict[str, Any] | None = None  # xdist: a worker's, for the controller
        self._store: BaselineStore | None = None
        #: baseline preloading and stale-results deletion, off each case's critical path
        self.offpath = OffPath()
        # several servers (issue 9): the pool a worker got from the xdist controller, or the one
        # the controller started for its workers; servers that died, as workers reported them
        self.pool: ServerPool | None = None
        self.pool_failure: ComfyTestError | None = None
        self.owns_pool = False
        self.dead_servers: list[str] = []
        if settings.compare is not None:
            self.previous = load_report(settings.compare)
        #: --comfy-perf's reference: --comfy-compare, else the results folder's last perf report
        self.perf_source: str | None = str(settings.compare) if settings.compare is not None else None
        if settings.perf and settings.compare is None:
            self.previous, self.perf_source = perfsession.find_reference(settings.results)

    # ------------------------------------------------------------ server

    def session(self) -> ComfySession:
        """The connected session; a start failure is raised once in full, then briefly."""
        if self._session is not None:
            return self._session
        if self._start_error is not None:
            first = str(self._start_error).splitlines()[0]
            raise type(self._start_error)(f"(failing fast: the server could not be used) {first}")
        try:
            if self.pool_failure is not None:
                raise self.pool_failure
            self._session = open_session(self.settings, self.settings.results, self.worker, self.pool)
        except ComfyTestError as exc:
            self._start_error = exc
            raise
        self._session.runner.observers.extend(self.observers)
        return self._session

    @property
    def started(self) -> ComfySession | None:
        return self._session

    def close(self) -> None:
        self.offpath.close()
        if self._session is not None:
            self._session.close()
            self._session = None
        if self.owns_pool and self.pool is not None:
            self.pool.close(discard_files=not self.settings.keep_passed)
            self.pool = None

    def pool_for_workers(self) -> list[dict[str, Any]] | dict[str, str]:
        """On the xdist controller: start (or probe) the servers once for every worker; what a
        worker receives in ``workerinput`` (the entries, or the error that stopped them)."""
        if self.pool is None and self.pool_failure is None:
            try:
                self.pool = start_pool(self.settings, self.settings.results, "controller")
                self.owns_pool = True
            except ComfyTestError as exc:
                self.pool_failure = exc
        if self.pool_failure is not None:
            return {"error": self.redact(str(self.pool_failure)), "kind": type(self.pool_failure).__name__}
        assert self.pool is not None
        return self.pool.to_json()

    def use_pool(self, data: Any) -> None:
        """On an xdist worker: the servers the controller started or probed."""
        if isinstance(data, dict):
            self.pool_failure = pool_error(data)
        elif data:
            self.pool = ServerPool.from_json(data)

    def attach_log(self, exc: ComfyTestError) -> None:
        """Give a failure the server log's tail when this session started the server (not for
        differing outputs or bad input files, where the log has nothing to add)."""
        session = self._session
        if session is not None and exc.server_log_tail is None:
            if not isinstance(exc, (ComparisonError, ConfigError, WorkflowError, PreflightError, StorageError)):
                exc.server_log_tail = session.log_tail()

    @staticmethod
    def pinned_summary(record: Mapping[str, Any]) -> str:
        """``seeds: 5.seed=42`` / ``patches: 2.text='a red cube'``: what the test pinned."""
        seeds = ", ".join(f"{s['node_id']}.{s['input']}={s['value']}" for s in record.get("seeds") or [])
        patches = ", ".join(f"{p['node_id']}.{p['input']}={p['value']!r}" for p in record.get("patches") or [])
        lines = [f"seeds pinned: {seeds}" if seeds else "", f"patches: {patches}" if patches else ""]
        return "\n".join(line for line in lines if line)

    def redact(self, text: str) -> str:
        """Secrets out and control characters escaped: what every shown or written message goes through."""
        return escape_controls(redact(text, self.settings.secrets))

    def store(self, session: ComfySession) -> BaselineStore:
        """The baseline store; its profile is --comfy-profile, else the device's when that
        profile folder exists (so a suite opts in per device by creating it)."""
        if self._store is None:
            self._store = self._make_store(session.system_stats())
        return self._store

    def _make_store(self, system_stats: Mapping[str, Any] | None) -> BaselineStore:
        root = self.settings.baselines
        profile = self.settings.profile
        derived = device_profile(system_stats) if system_stats else None
        if profile is None and derived and (root / PROFILES_DIR / safe_name(derived)).is_dir():
            profile = derived
        return BaselineStore(root, profile, derived, stack_of(system_stats) if system_stats else None,
                             perceptual=self.settings.perceptual)

    def unused_baselines(self) -> list[str]:
        """Baseline files that no test of this session read or wrote (full runs only).

        Works on the xdist controller too (records carry the paths). Baselines of cases that
        stopped before their comparison (a failure, a skip) are not listed: they were not
        checked, which is not the same as unused."""
        if self.deselected or self.settings.calibrate or not self.settings.baselines.is_dir() or not self.records:
            return []
        store = self._store or self._make_store(self._fingerprint_stats())
        used = {Path(c["baseline"]).resolve() for r in self.records for c in r.get("comparisons") or [] if c.get("baseline")}
        used |= {p.parent / name for p in used for name in (HASHES_FILE, TRACE_FILE, TRACE_PICTURES)}  # TRACE_FILE: issue 23
        used |= {Path(f).resolve() for r in self.records for c in r.get("comparisons") or [] for f in c.get("baseline_files") or []}
        dirs = [Path(r["baseline_dir"]) for r in self.records if r.get("baseline_dir")]
        unchecked = [Path(r["baseline_dir"]) for r in self.records if r.get("baseline_dir") and not r.get("comparisons")]
        scope = None if self.full_run else {d.parent for d in dirs}
        return [str(p) for p in unused_baselines(store, used) if self._counts_as_unused(store, p, unchecked, scope)]

    @staticmethod
    def _counts_as_unused(store: BaselineStore, path: Path, unchecked: list[Path], scope: set[Path] | None) -> bool:
        """Not under a case that stopped before comparing; within the workflows that ran unless
        the run covered every workflow."""
        roots = [store.root, *([store.profile_root()] if store.profile_root() else [])]
        rel = next((path.relative_to(r) for r in reversed(roots) if r and path.is_relative_to(r)), None)
        if rel is None:
            return True
        if any(rel.is_relative_to(d) for d in unchecked):
            return False
        return scope is None or any(rel.is_relative_to(d) for d in scope)

    def _fingerprint_stats(self) -> Mapping[str, Any] | None:
        if self._session is not None:
            return self._session.system_stats()
        stats = (self.worker_fingerprint or {}).get("system_stats")
        return stats if isinstance(stats, Mapping) else None

    # ------------------------------------------------------------ records

    def new_record(self, nodeid: str, case: CaseSpec, path: Path, baseline_dir: Path) -> dict[str, Any]:
        try:
            rel = str(path.relative_to(self.rootdir))
        except ValueError:
            rel = str(path)
        return new_record(nodeid, workflow=rel, case=case.id, baseline_dir=baseline_dir.as_posix())

    def finish_record(self, record: dict[str, Any], outcome: str, message: str | None, kind: str | None, duration: float) -> dict[str, Any]:
        record = dict(record)
        record["outcome"] = outcome
        record["duration_s"] = round(duration, 4)
        if message and outcome != "passed":
            record["message"] = self.redact(message)
            record["failure_kind"] = kind or "regression"
        return record

    def add_report(self, nodeid: str, outcome: str, kind: str | None, record: Mapping[str, Any] | None) -> None:
        self.outcomes.append((nodeid, outcome, kind))
        if record is None:
            return
        if nodeid in self._recorded:  # a rerun (or setup error after a call): the last one counts
            self.records = [r for r in self.records if r.get("nodeid") != nodeid]
        self._recorded.add(nodeid)
        self.records.append(dict(record))

    def only_infrastructure_failures(self) -> bool:
        kinds = [kind for _, outcome, kind in self.outcomes if outcome == "failed"]
        return bool(kinds) and all(k in ("infrastructure", "preflight") for k in kinds)

    # ------------------------------------------------------------ end of session

    def fingerprint(self) -> dict[str, Any]:
        if self._session is None and self.worker_fingerprint is not None:
            fingerprint = dict(self.worker_fingerprint)  # the xdist controller runs no test
            if self.pool is not None:
                fingerprint["servers"] = server_list(self.pool, lambda url: server_stats(url, self.settings), self.all_dead())
            return fingerprint
        stats: dict[str, Any] | None = None
        url = None
        if self._session is not None:
            url = self._session.url
            try:
                stats = self._session.system_stats()
            except ComfyTestError:
                stats = None
        fingerprint = collect_fingerprint(url, stats, repo_dir=self.rootdir)
        fingerprint["server_source"] = "url" if self.settings.url else "launch" if self.settings.launch else "embedded"
        if stats:
            fingerprint["comfyui"] = server_info(stats).as_dict()
        pool = self._session.pool if self._session is not None else self.pool
        if pool is not None:
            fingerprint["servers"] = server_list(pool, lambda url: server_stats(url, self.settings), self.all_dead())
        return fingerprint

    def server_notes(self) -> list[str]:
        """URLs that did not answer at the start; servers that died and how many tests moved."""
        pool = self._session.pool if self._session is not None else self.pool
        notes = list(pool.notes) if pool is not None else []
        count = len(pool.entries) if pool is not None else 1
        return notes + death_lines(self.all_dead(), self.doc["tests"] if self.doc else self.records, count)

    def all_dead(self) -> list[str]:
        """Names of the servers that died (this process's session's, and the workers')."""
        here = [e.name for e in self._session.dead] if self._session is not None else []
        return list(dict.fromkeys(here + self.dead_servers))

    def document(self, unused: list[str]) -> dict[str, Any]:
        records = sorted(self.records, key=lambda r: str(r.get("nodeid")))
        return new_document(self.fingerprint(), records, unused)

    def finish_session(self, unused_baselines: list[str]) -> None:
        self.offpath.writer.wait()  # every thumbnail written before a report refers to it
        self.summary_notes += [f"warning: comfytest could not write the {e}" for e in self.offpath.writer.errors]
        if not self.records or self.settings.no_report:
            self.doc = self.document(unused_baselines) if self.records else None
            return
        doc = self.document(unused_baselines)
        self.doc = doc
        if self.previous is not None:
            self.timing_changes = [] if self.settings.perf else self._compare(doc)  # perf: its own rule
            self.memory_changes = compare_memory(self.previous, doc)
        for record in doc["tests"] if self.settings.perf else []:
            perfsession.attach_comparison(self.previous, self.perf_source, record, perfsession.rule_of(self.settings),
                                          self.settings.perf_pool)
        try:
            self._write_reports(doc)
        except OSError as exc:  # a full disk, a read-only folder: said once, never a traceback
            where = exc.filename or self.settings.results
            self.report_error = (
                f"comfytest could not write its reports into the results folder {self.settings.results}: "
                f"{where}: {exc.strerror or exc}. "
                + ("Free space on that disk" if exc.errno == errno.ENOSPC else "Make it writable")
                + " or choose another folder with --comfy-results; the baselines were not affected.")
            self.summary_notes.append(f"error: {self.report_error}")

    def _write_reports(self, doc: dict[str, Any]) -> None:
        results = self.settings.results
        results.mkdir(parents=True, exist_ok=True)
        previous = results / "report.json"
        if previous.is_file():  # one level of history: ready for --comfy-compare, never lost silently
            os.replace(previous, results / "report.previous.json")
        self.written.append(write_json(doc, results / "report.json"))
        md = render_markdown(doc, self.previous) + "".join(f"\n{line}\n" for line in self._warnings())
        (results / "report.md").write_text(md)
        self.written.append(results / "report.md")
        if self.settings.history is not None:  # first, so report.html charts this session too
            self.written.append(append_history(doc, self.settings.history))
        (results / "report.html").write_text(render_html(doc, results, trends=self._trends(), images=self.settings.html))
        self.written.append(results / "report.html")
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(md + "\n")

    def _trends(self) -> str:
        """With --comfy-history: report.html's trend charts; skipped lines become notes."""
        if self.settings.history is None:
            return ""
        history = load_history(self.settings.history)
        self.summary_notes.extend(f"history: {line}" for line in history.skipped)
        return trend_section(history)

    def perf_reference(self, nodeid: str) -> dict[str, list[float]] | None:
        """--comfy-perf: this test's warm samples in the reference report (None: none, or no perf)."""
        return perfsession.reference_for(self.previous, nodeid) if self.settings.perf else None

    def timing_regressions(self) -> list[Any]:
        return regressions(self.timing_changes)

    def _compare(self, doc: Mapping[str, Any]) -> list[Any]:
        """Timing changes against --comfy-compare, by the --comfy-timing-* thresholds."""
        s = self.settings
        assert self.previous is not None
        return compare_timings(self.previous, doc, rel_threshold=s.timing_rel_pct / 100,
                               abs_threshold_ms=s.timing_abs_ms, floor_ms=s.timing_floor_ms)

    def timing_failure(self, record: dict[str, Any]) -> str | None:
        """With --comfy-timing-fail: why this test's timing fails against --comfy-compare; with
        --comfy-perf: why it fails its statistical comparison (``perfsession``)."""
        if self.settings.perf:
            perfsession.attach_comparison(self.previous, self.perf_source, record, perfsession.rule_of(self.settings),
                                          self.settings.perf_pool)
            return perfsession.failure(record, self.perf_source, self.settings.perf_warn)
        if self.previous is None or not self.settings.timing_fail:
            return None
        slower = regressions(self._compare({"tests": [record]}))
        if not slower:
            return None
        return "\n".join(
            [f"timing regression against {self.settings.compare}:"]
            + [f"  {c.describe()}" for c in slower]
            + ["(drop --comfy-timing-fail to only warn; a slower machine needs its own previous report)"]
        )

    def memory_failure(self, record: Mapping[str, Any]) -> str | None:
        """With --comfy-memory-fail: why this test's memory fails against --comfy-compare."""
        if self.previous is None or not self.settings.memory_fail:
            return None
        grew = memory_regressions(compare_memory(self.previous, {"tests": [record]}))
        if not grew:
            return None
        return "\n".join(
            [f"memory regression against {self.settings.compare}:"]
            + [f"  {c.describe()}" for c in grew]
            + ["(drop --comfy-memory-fail to only warn; a machine with other processes or another "
               "device needs its own previous report)"]
        )

    def _warnings(self) -> list[str]:
        """Timing and memory regressions (warnings unless --comfy-timing-fail /
        --comfy-memory-fail) and untimed cached runs."""
        lines = ["timing regression: " + change.describe() for change in self.timing_regressions()]
        lines += perfsession.warnings(self.records, self.settings.perf_warn)
        lines += ["memory regression: " + change.describe() for change in memory_regressions(self.memory_changes)]
        cached = [r for r in self.records if _cached_runs(r)]
        if cached:
            lines.append(
                f"{len(cached)} test(s) had measured runs served entirely from ComfyUI's cache (the "
                "identical prompt ran before on that server): not timed; --comfy-free-cache times every run"
            )
        return lines

    def summary_lines(self) -> list[str]:
        doc = self.doc
        if not doc:
            return list(self.summary_notes) + self.server_notes()
        lines = render_terminal(doc, self.previous) + render_calibration(doc["tests"]) + terminal_lines(doc["tests"])
        lines += self._warnings()
        lines.extend(version_warnings(doc))
        if self.settings.update_baselines:
            lines.extend(baseline_changes(doc["tests"]))
        lines.extend(self.summary_notes)
        lines.extend(line for line in [model_load_line(doc)] if line)
        lines.extend(self.server_notes())
        if self.written:
            lines.append("reports: " + ", ".join(_rel(p) for p in self.written))
        return lines

    def junit_properties(self, record: Mapping[str, Any]) -> list[tuple[str, str]]:
        return junit_properties(record)


def version_warnings(doc: Mapping[str, Any]) -> list[str]:
    """The one warning of a session whose server is newer than any version comfytest checked."""
    info = info_from_dict((doc.get("fingerprint") or {}).get("comfyui"))
    warning = newer_warning(info) if info else None
    return [f"warning: {warning}"] if warning else []


def baseline_changes(records: list[dict[str, Any]]) -> list[str]:
    """Update mode: how many baselines were created, updated, left alone; then each change."""
    found = [(r, c) for r in records for c in r.get("comparisons") or []]
    count = Counter(c["status"] for _, c in found)
    lines = [f"baselines ({UPDATE_OPTION}): {count['created']} created, {count['updated']} updated, "
             f"{count['unchanged']} unchanged"]
    for record, comp in found:
        if comp["status"] in ("created", "updated"):
            where = _rel(Path(comp["baseline"])) if comp.get("baseline") else ""
            lines.append(f"  {comp['status']:<8} {test_label(record)} {comp['output']}: {_change(comp)}  {where}")
    return lines


def _change(comp: Mapping[str, Any]) -> str:
    if comp["status"] == "created":
        return "new"
    if comp.get("kind") in ("video", "audio", "latent", "file"):  # their own words: what changed
        return f"{comp['kind']}: " + str(comp.get("message") or "").split("]: ", 1)[-1]
    if comp.get("distance") is None:
        return "replaced (text changed, or the old file was unreadable)"
    diff = comp.get("max_abs_diff")
    return (f"{comp['method']} distance {comp['distance']} (tolerance {comp['tolerance']}, "
            f"max pixel diff {'-' if diff is None else diff})")


def _cached_runs(record: Mapping[str, Any]) -> int:
    runs = record.get("runs") or [t for t in [record.get("timing")] if t]
    return sum(1 for run in runs if fully_cached(run))


def _rel(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


__all__ = ["ConfigError", "ServerUnavailable", "SessionState", "WorkflowError", "failure_kind"]
