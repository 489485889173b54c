"""The session report as data: one JSON document per session, then renderings of it.

The document schema ``comfytest.report/1`` is described in ``docs/report-schema.md``. Records
are plain JSON-able dicts so that workers, the controller and later sessions (``load_report``)
all share one representation; this module only builds, stores, merges and reads them, and
renders the terminal/markdown/JUnit views. HTML lives in ``report_html`` and timing
regressions in ``report_compare``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import secrets
import socket
import statistics
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import comfytest
from comfytest.comfy.compat import info_from_dict
from comfytest.errors import ConfigError
from comfytest.report.memory import memory_properties
from comfytest.report.perfcompare import properties as perf_properties
from comfytest.report.trace import trace_properties

SCHEMA = "comfytest.report/1"
OUTCOMES = ("passed", "failed", "skipped", "error")
FAILURE_KINDS = ("regression", "infrastructure", "preflight", "timing", "unsupported", "usage", "memory", "no baseline")

#: every key of a test record with its default; ``new_record`` fills the missing ones
RECORD_DEFAULTS: Mapping[str, Any] = {
    "nodeid": "",
    "workflow": None,
    "case": None,
    "outcome": "passed",
    "failure_kind": None,
    "message": None,
    "duration_s": None,
    "prompt_id": None,
    "workflow_digest": None,
    "seeds": [],
    "patches": [],
    "timing": None,
    "runs": [],
    "stats": None,
    "comparisons": [],
    "baseline_dir": None,
    "calibration": None,
    # --- resources (report_memory), model loads, previews ---
    "memory": None,
    "memory_runs": [],
    "memory_stats": None,
    "model_loads": [],
    "previews": [],
    # where it ran and which models it loaded (several servers, model-aware order)
    "server": None,  # {"url", "label", "device", "moved_from"?, "died"?}
    "models": [],  # the model files the case loads, "folder/name"
    # issue 23: the trace of intermediate outputs (recorded, or the finding of a failing case)
    "trace": None,
}

Document = dict[str, Any]
Record = Mapping[str, Any]


def new_record(nodeid: str, **fields: Any) -> dict[str, Any]:
    """A complete test record; unknown keys raise so typos do not silently vanish."""
    unknown = sorted(set(fields) - set(RECORD_DEFAULTS))
    if unknown:
        raise TypeError(f"unknown report record field(s): {', '.join(unknown)}")
    # deep-copy the defaults through JSON so no two records share a list
    record: dict[str, Any] = json.loads(json.dumps(dict(RECORD_DEFAULTS)))
    record.update(fields, nodeid=nodeid)
    return record


def new_document(
    fingerprint: Mapping[str, Any],
    records: Iterable[Record],
    unused_baselines: Iterable[str] = (),
    *,
    created: str | None = None,
) -> Document:
    """Build a session document; ``created`` is injectable so tests are deterministic."""
    tests = [dict(r) for r in records]
    unused = sorted(str(p) for p in unused_baselines)
    return {
        "schema": SCHEMA,
        "created": created or datetime.now(UTC).isoformat(timespec="seconds"),
        "fingerprint": _without_credentials(fingerprint),
        "tests": tests,
        "unused_baselines": unused,
        "summary": summarize(tests, unused),
    }


def collect_fingerprint(
    server_url: str | None,
    system_stats: Mapping[str, Any] | None,
    *,
    repo_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Where and with what a session ran; ``system_stats`` is ComfyUI's raw /system_stats."""
    commit = _git(repo_dir, "rev-parse", "HEAD")
    # untracked files do not change what ran; no optional locks so a report never writes .git
    args = ("--no-optional-locks", "status", "--porcelain", "--untracked-files=no")
    status = _git(repo_dir, *args) if commit else None
    return {
        "comfytest_version": _package_version(),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "server_url": redact_url(server_url) if server_url else None,
        "system_stats": dict(system_stats or {}),
    }


def redact_url(url: str) -> str:
    """The URL without user:password, which must never land in a shared report."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _without_credentials(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(fingerprint)
    if isinstance(result.get("server_url"), str):
        result["server_url"] = redact_url(result["server_url"])
    return result


def _package_version() -> str:
    # the package's own constant also works from a source checkout that was never installed
    return str(getattr(comfytest, "__version__", None) or metadata.version("comfytest"))


def _git(repo_dir: str | os.PathLike[str] | None, *args: str) -> str | None:
    # a report must still be written outside a git checkout or without git installed
    try:
        done = subprocess.run(
            ["git", *args], cwd=repo_dir, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def summarize(tests: Sequence[Record], unused_baselines: Sequence[str] = ()) -> dict[str, Any]:
    """Counts per outcome, failure kind and comparison status."""
    outcomes = Counter(str(t.get("outcome")) for t in tests)
    kinds = Counter(str(t["failure_kind"]) for t in tests if t.get("failure_kind"))
    comparisons = Counter(str(c.get("status")) for t in tests for c in t.get("comparisons") or [])
    summary: dict[str, Any] = {"total": len(tests)}
    summary.update({name: outcomes.get(name, 0) for name in OUTCOMES})
    summary["failure_kinds"] = {kind: kinds.get(kind, 0) for kind in FAILURE_KINDS}
    summary["comparisons"] = dict(sorted(comparisons.items()))
    summary["unused_baselines"] = len(unused_baselines)
    summary.update(model_load_counts(tests))
    return summary


def model_load_counts(tests: Sequence[Record]) -> dict[str, int]:
    """``model_loads``: loader nodes that executed (not cached), over all tests;
    ``model_sets``: distinct model sets; ``servers``: distinct servers the tests ran on."""
    loads = sum(len(t.get("model_loads") or []) for t in tests)
    sets = {tuple(t.get("models") or []) for t in tests if t.get("models")}
    servers = {(t.get("server") or {}).get("url") for t in tests if t.get("server")}
    return {"model_loads": loads, "model_sets": len(sets), "servers": len(servers)}


def model_load_line(doc: Mapping[str, Any]) -> str | None:
    """``model loads: 2 (loader nodes executed) for 2 distinct model sets on 1 server``."""
    counts = model_load_counts(doc.get("tests") or [])
    if not counts["model_sets"]:
        return None
    return (f"model loads: {counts['model_loads']} (loader nodes executed, not cached) for "
            f"{counts['model_sets']} distinct model set(s) on {counts['servers']} server(s)")


def write_json(doc: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write atomically: a reader (or a crashed run) never sees half a report.

    The file gets the permissions the umask gives report.md and report.html (mkstemp's 0600
    would hide report.json from a CI artefact uploader or another user)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_report(path: str | os.PathLike[str]) -> Document:
    """Read a report written by ``write_json``; any problem is a ConfigError naming the file."""
    source = Path(path)
    try:
        doc = json.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the comfytest report {source}: {exc.strerror}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{source} is not a valid comfytest report: invalid JSON ({exc}). "
            "Delete it or point the option at a report written by comfytest."
        ) from exc
    check_schema(doc, str(source))
    return doc  # type: ignore[no-any-return]


def check_schema(doc: Any, where: str) -> None:
    """Accept only the schema this comfytest writes; the version rule is in the docs."""
    if not isinstance(doc, dict) or "schema" not in doc:
        raise ConfigError(f"{where} is not a comfytest report (no \"schema\" key)")
    if doc["schema"] != SCHEMA:
        raise ConfigError(
            f"{where} has report schema {doc['schema']!r}; this comfytest reads {SCHEMA!r}. "
            "Re-create the report with this version of comfytest."
        )
    if not isinstance(doc.get("tests"), list):
        raise ConfigError(f"{where} is not a comfytest report (\"tests\" is not a list)")


def merge_documents(docs: Sequence[Mapping[str, Any]]) -> Document:
    """Merge pytest-xdist workers' partial documents into one session document.

    Workers run on one machine, so the first fingerprint stands for all. A baseline is unused
    only if no worker used it, hence the intersection of the workers' unused lists.
    """
    if not docs:
        raise ValueError("merge_documents needs at least one document")
    for index, doc in enumerate(docs):
        check_schema(doc, f"partial report #{index}")
    tests = sorted((t for d in docs for t in d["tests"]), key=lambda t: str(t.get("nodeid")))
    unused = set(docs[0].get("unused_baselines") or [])
    for doc in docs[1:]:
        unused &= set(doc.get("unused_baselines") or [])
    created = min(str(d.get("created") or "") for d in docs) or None
    return new_document(_merged_fingerprint(docs), tests, unused, created=created)


def _merged_fingerprint(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The first document's fingerprint; with several (CI shards), ``servers`` lists every
    server of every document (with its host) and ``merged_from`` says what each one ran."""
    fingerprint = dict(docs[0].get("fingerprint") or {})
    if all((d.get("fingerprint") or {}) == fingerprint for d in docs[1:]):
        return fingerprint  # xdist workers of one session
    servers: dict[str, dict[str, Any]] = {}
    for doc in docs:
        prints = doc.get("fingerprint") or {}
        for server in prints.get("servers") or []:
            entry = {"host": prints.get("hostname"), **server}
            servers.setdefault(json.dumps(entry, sort_keys=True), entry)
    fingerprint["servers"] = list(servers.values())
    fingerprint["merged_from"] = [
        {key: (d.get("fingerprint") or {}).get(key) for key in ("hostname", "git_commit", "server_url")}
        | {"created": d.get("created"), "tests": len(d["tests"])}
        for d in docs
    ]
    return fingerprint


# --- values derived from records, shared by every renderer -------------------------------


def server_total_ms(record: Record) -> float | None:
    """The representative server time: the median of repeated runs, else the single run.

    None when nothing executed (every node came from ComfyUI's cache): that is no timing.
    """
    stats = record.get("stats")
    if stats and stats.get("server_total_ms"):
        return _number(stats["server_total_ms"].get("median"))
    timing = record.get("timing")
    if not timing or fully_cached(timing):
        return None
    return _number(timing.get("server_total_ms"))


def fully_cached(timing: Mapping[str, Any]) -> bool:
    """A run in which no node executed: an identical prompt served from ComfyUI's cache."""
    nodes = timing.get("nodes") or []
    return bool(nodes) and all(n.get("cached") for n in nodes)


def measured_nodes(record: Record) -> list[dict[str, Any]]:
    """Nodes that really executed: cached nodes took no time worth showing as a duration."""
    timing = record.get("timing") or {}
    return [n for n in timing.get("nodes") or [] if not n.get("cached")]


def cached_count(record: Record) -> int:
    timing = record.get("timing") or {}
    return sum(1 for n in timing.get("nodes") or [] if n.get("cached"))


def slowest_nodes(record: Record, count: int = 3) -> list[dict[str, Any]]:
    nodes = [n for n in measured_nodes(record) if _number(n.get("duration_ms")) is not None]
    return sorted(nodes, key=lambda n: -float(n["duration_ms"]))[:count]


def sampler_speeds(record: Record) -> list[float]:
    return [float(n["steps_per_s"]) for n in measured_nodes(record) if n.get("steps_per_s")]


def test_label(record: Record) -> str:
    """``workflow [case]`` reads better than a nodeid; fall back to the nodeid."""
    workflow = record.get("workflow")
    if not workflow:
        return str(record.get("nodeid"))
    return f"{workflow} [{record['case']}]" if record.get("case") else str(workflow)


def node_name(node: Mapping[str, Any]) -> str:
    name = f"{node.get('node_id')} {node.get('class_type') or '?'}"
    title = node.get("title")
    return f"{name} \"{title}\"" if title and title != node.get("class_type") else name


def format_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def format_change(previous_ms: float | None, current_ms: float | None) -> str:
    """``+12% (412 → 461 ms)``; empty when either side has no number to compare."""
    if previous_ms is None or current_ms is None:
        return ""
    delta = current_ms - previous_ms
    percent = delta / previous_ms * 100 if previous_ms > 0 else math.inf
    if previous_ms < 1 or abs(percent) >= 1000:  # from ~0 a percentage means nothing: "+184970 %"
        return f"{delta:+,.1f} ms ({format_ms(previous_ms)} → {format_ms(current_ms)} ms)"
    return f"{percent:+.0f}% ({format_ms(previous_ms)} → {format_ms(current_ms)} ms)"


def previous_totals(previous: Mapping[str, Any] | None) -> dict[str, float | None]:
    if not previous:
        return {}
    return {str(t.get("nodeid")): server_total_ms(t) for t in previous.get("tests") or []}


def test_server(record: Record) -> str:
    """``http://10.0.0.5:8188 (GPU 1, cuda:0 NVIDIA L4)``: where a test ran ("-" if unknown)."""
    server = record.get("server") or {}
    if not server.get("url"):
        return "-"
    detail = ", ".join(str(v) for v in (server.get("label"), server.get("device")) if v)
    text = f"{server['url']} ({detail})" if detail else str(server["url"])
    return text + (f" [moved from {server['moved_from']}]" if server.get("moved_from") else "")


def several_servers(doc: Mapping[str, Any]) -> bool:
    return len({(t.get("server") or {}).get("url") for t in doc.get("tests") or [] if t.get("server")}) > 1


def server_line(doc: Mapping[str, Any]) -> str | None:
    """``server: ComfyUI 0.26.0 (frontend 1.45.19, templates 0.10.3, cache ram-pressure)``."""
    info = info_from_dict((doc.get("fingerprint") or {}).get("comfyui"))
    return f"server: {info.label()}" if info else None


def summary_line(doc: Mapping[str, Any]) -> str:
    summary = doc.get("summary") or summarize(doc.get("tests") or [])
    parts = [f"{summary.get(name, 0)} {name}" for name in OUTCOMES if summary.get(name)]
    kinds = summary.get("failure_kinds") or {}
    detail = ", ".join(f"{n} {k}" for k, n in kinds.items() if n)
    text = ", ".join(parts) or "no tests"
    text += f" ({detail})" if detail else ""
    unused = summary.get("unused_baselines") or 0
    return text + (f"; {unused} unused baseline(s)" if unused else "")


# --- JUnit ------------------------------------------------------------------------------


def junit_properties(record: Record) -> list[tuple[str, str]]:
    """Timings and distances as JUnit ``<property>`` pairs (CI dashboards can chart these)."""
    props: list[tuple[str, str]] = []
    timing = record.get("timing") or {}
    keys = ("queue_wait_ms",) if fully_cached(timing) else ("server_total_ms", "queue_wait_ms", "client_wall_ms")
    for key in keys:
        if _number(timing.get(key)) is not None:
            props.append((f"comfy_{key}", _fmt_number(timing[key])))
    props.extend(_stats_properties(record.get("stats")))
    for node in measured_nodes(record):
        if _number(node.get("duration_ms")) is not None:
            name = f"comfy_node_{_safe(node.get('node_id'))}_ms"
            props.append((name, _fmt_number(node["duration_ms"])))
    for comparison in record.get("comparisons") or []:
        if _number(comparison.get("distance")) is not None:
            name = f"comfy_distance_{_safe(comparison.get('output'))}"
            props.append((name, _fmt_number(comparison["distance"])))
    props.extend(memory_properties(record))
    props.extend(trace_properties(record))  # issue 23
    props.extend(perf_properties(record))
    if record.get("failure_kind"):
        props.append(("comfy_failure_kind", str(record["failure_kind"])))
    if record.get("server"):
        props.append(("comfy_server", test_server(record)))
    return props


def _stats_properties(stats: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    if not stats or not stats.get("server_total_ms"):
        return []
    total = stats["server_total_ms"]
    props = [("comfy_runs", str(stats.get("runs")))]
    for key in ("min", "median", "max"):
        if _number(total.get(key)) is not None:
            props.append((f"comfy_server_total_ms_{key}", _fmt_number(total[key])))
    return props


# --- repeated runs -----------------------------------------------------------------------


def summarize_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The ``stats`` of a record from its measured runs; ``spread`` is (max - min) / median.

    Runs in which nothing executed (``fully_cached``) are counted in ``cached_runs`` only.
    """
    executed = [r for r in runs if not fully_cached(r)]
    totals = [v for v in (_number(r.get("server_total_ms")) for r in executed) if v is not None]
    if not totals:
        return None
    per_node: dict[str, list[float]] = {}
    for run in executed:
        for node in run.get("nodes") or []:
            # a node cached in some run has no comparable duration in that run
            if not node.get("cached") and _number(node.get("duration_ms")) is not None:
                per_node.setdefault(str(node["node_id"]), []).append(float(node["duration_ms"]))
    total = _min_median_max(totals)
    total["spread"] = (total["max"] - total["min"]) / total["median"] if total["median"] else 0.0
    nodes = {node_id: _min_median_max(values) for node_id, values in per_node.items()}
    cached_runs = len(runs) - len(executed)
    return {"runs": len(totals), "cached_runs": cached_runs, "server_total_ms": total, "nodes": nodes}


def _min_median_max(values: Sequence[float]) -> dict[str, float]:
    return {"min": min(values), "median": float(statistics.median(values)), "max": max(values)}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _fmt_number(value: Any) -> str:
    number = float(value)
    if number.is_integer():
        return str(int(number))
    # distances are small fractions; timings need no more than 0.01 ms
    return f"{number:.4g}" if abs(number) < 1 else f"{number:.2f}"


def _safe(value: Any) -> str:
    """Property names stay XML- and dashboard-friendly whatever the node id looks like."""
    return re.sub(r"[^A-Za-z0-9_]", "_", str(value))


__all__ = [
    "SCHEMA",
    "check_schema",
    "collect_fingerprint",
    "junit_properties",
    "load_report",
    "merge_documents",
    "model_load_line",
    "new_document",
    "new_record",
    "redact_url",
    "several_servers",
    "summarize",
    "summarize_runs",
    "test_server",
    "write_json",
]
