"""Plain-text renderings of a report document: the terminal table and GitHub markdown.

Both are pure functions of the document (and optionally the previous session's document), so
they can be tested without a terminal and re-rendered later from a saved ``report.json``.
Import them from ``comfytest.report.document``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from comfytest.report.document import (
    Record,
    cached_count,
    format_change,
    format_ms,
    node_name,
    previous_totals,
    sampler_speeds,
    server_line,
    server_total_ms,
    several_servers,
    slowest_nodes,
    summary_line,
    test_label,
    test_server,
)
from comfytest.report.memory import HOST_DEVICE_NOTE, memory_cell
from comfytest.report.perfcompare import markdown_lines as perf_markdown

HEADERS = ("test", "result", "server ms", "change", "it/s", "cached", "peak memory", "slowest nodes")


def table_rows(doc: Mapping[str, Any], previous: Mapping[str, Any] | None) -> list[tuple[str, ...]]:
    """One row of cells per test, in the column order of ``headers(doc)``."""
    before = previous_totals(previous)
    rows = [_row(t, before) for t in doc.get("tests") or []]
    if several_servers(doc):  # which server each test ran on, after its result
        rows = [(*row[:2], test_server(t), *row[2:]) for row, t in zip(rows, doc.get("tests") or [])]
    return rows


def headers(doc: Mapping[str, Any]) -> tuple[str, ...]:
    return (*HEADERS[:2], "server", *HEADERS[2:]) if several_servers(doc) else HEADERS


def _row(record: Record, before: Mapping[str, float | None]) -> tuple[str, ...]:
    total = server_total_ms(record)
    return (
        test_label(record),
        _result(record),
        format_ms(total),
        format_change(before.get(str(record.get("nodeid"))), total),
        ", ".join(f"{speed:.2f}" for speed in sampler_speeds(record)) or "-",
        str(cached_count(record)) if record.get("timing") else "-",
        memory_cell(record),
        "; ".join(f"{node_name(n)} {format_ms(n['duration_ms'])} ms{_load(n)}" for n in slowest_nodes(record))
        or "-",
    )


def _load(node: Mapping[str, Any]) -> str:
    return " (model load)" if node.get("model_load") else ""


def memory_note(doc: Mapping[str, Any]) -> list[str]:
    """What the memory figures mean on a CPU server (said once, under the table)."""
    devices = {(t.get("memory") or {}).get("device_type") for t in doc.get("tests") or []}
    return [f"peak memory: {HOST_DEVICE_NOTE}"] if devices & {"cpu", "mps"} else []


def _result(record: Record) -> str:
    outcome = str(record.get("outcome"))
    kind = record.get("failure_kind")
    return f"{outcome} ({kind})" if kind else outcome


def render_terminal(doc: Mapping[str, Any], previous: Mapping[str, Any] | None = None) -> list[str]:
    """Aligned lines for the pytest terminal summary (no colours: the caller may add them)."""
    rows = table_rows(doc, previous)
    lines = [f"comfytest: {summary_line(doc)}"]
    server = server_line(doc)
    lines.extend([server] if server else [])
    if rows:
        lines.extend(_aligned([headers(doc), *rows]))
        lines.extend(memory_note(doc))
    lines.extend(media_lines(doc))
    lines.extend(f"unused baseline: {path}" for path in doc.get("unused_baselines") or [])
    return lines


def _aligned(rows: Sequence[tuple[str, ...]]) -> list[str]:
    # the last column (slowest nodes) is free text, so only the others are padded
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return lines


#: GitHub's limit for one step's summary is 1 MiB; the session appends a few lines of its own
MARKDOWN_BUDGET = 900 * 1024
#: rows of passing tests (and of their outputs) listed before they are cut to a count
PASSED_ROWS = 200
#: characters of one failure's message in the summary (report.json has it whole)
MESSAGE_CHARS = 6000


def render_markdown(doc: Mapping[str, Any], previous: Mapping[str, Any] | None = None, *,
                    budget: int = MARKDOWN_BUDGET, passed_rows: int = PASSED_ROWS) -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY``: counts, a table (failures first; passing tests beyond
    ``passed_rows`` cut to a count), then failures folded away, within ``budget`` bytes."""
    server = server_line(doc)
    tests = list(doc.get("tests") or [])
    parts = [f"### comfytest: {summary_line(doc)}", "", *([server, ""] if server else [])]
    rows = table_rows(doc, previous)
    if rows:
        shown, cut = _failures_first(list(zip(tests, rows, strict=True)), passed_rows)
        parts.extend(_markdown_table(headers(doc), [row for _, row in shown]))
        parts.extend([_cut_line(cut, "passing test(s)"), ""] if cut else [])
        parts.extend([*memory_note(doc), ""] if memory_note(doc) else [])
    parts.extend(_compared_block(tests, passed_rows))
    parts.extend(perf_markdown(tests))
    head = "\n".join(parts).rstrip() + "\n"
    failures = _within(_failures_block(tests), budget - len(head.encode()) - 1)
    return head + ("\n" + failures if failures else "")


def _failures_first(pairs: list[tuple[Record, Any]], passed_rows: int) -> tuple[list[tuple[Record, Any]], int]:
    """Failing (and erroring) tests first, in their order; then passes up to ``passed_rows``."""
    failing = [p for p in pairs if p[0].get("outcome") not in ("passed", "skipped")]
    others = [p for p in pairs if p[0].get("outcome") in ("passed", "skipped")]
    return failing + others[:passed_rows], max(0, len(others) - passed_rows)


def _cut_line(count: int, what: str) -> str:
    return f"… and {count} more {what}: every one is in report.html and report.json"


def _within(blocks: list[str], budget: int) -> str:
    """The failures folded away, one block per failure, cut at a block when ``budget`` bytes
    would be passed (the rest counted)."""
    if not blocks:
        return ""
    head, tail = ["<details>", f"<summary>{len(blocks)} failure(s)</summary>", ""], "</details>\n"
    size = len("\n".join(head).encode()) + len(tail) + 200  # 200: the cut line
    kept = []
    for block in blocks:
        size += len(block.encode()) + 1
        if size > budget:
            break
        kept.append(block)
    cut = [_cut_line(len(blocks) - len(kept), "failure(s)"), ""] if len(kept) < len(blocks) else []
    return "\n".join([*head, *kept, *cut, tail])


def _markdown_table(names: Sequence[str], rows: Sequence[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
    return [*lines, ""]


def _cell(text: str) -> str:
    # a pipe would end the cell and a newline the row
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _failures_block(tests: Sequence[Record]) -> list[str]:
    """One markdown block per failing test: its label and its message (clipped) in a fence."""
    blocks = []
    for record in tests:
        if record.get("outcome") not in ("failed", "error"):
            continue
        message = str(record.get("message") or "no message")
        if len(message) > MESSAGE_CHARS:
            message = message[:MESSAGE_CHARS] + f"\n… ({len(message) - MESSAGE_CHARS} more characters in report.json)"
        blocks.append("\n".join([f"**{_inline(test_label(record))}**: {_inline(_result(record))}", "",
                                  *_fenced(message), ""]))
    return blocks


def _inline(text: str) -> str:
    # keep user-controlled names from opening HTML tags or emphasis inside the summary
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("*", "\\*").replace("_", "\\_")


def _fenced(text: str) -> list[str]:
    """A code fence longer than any backtick run inside, so the message cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, text, fence]


# --- what was compared and how (issue 10) ----------------------------------------------------

MEDIA_KINDS = ("video", "audio", "latent", "file")


def how_compared(comparison: Mapping[str, Any]) -> str:
    """In words: ``compared exactly (sha256 ...)``, ``per-frame phash ...``, ``phash hash ...``."""
    if comparison.get("compared"):
        return str(comparison["compared"])
    if comparison.get("kind") == "text":
        return "text exactly"
    if comparison.get("method"):
        return f"{comparison['method']} hash, tolerance {comparison.get('tolerance')}"
    return "-"


def _compared_rows(tests: Sequence[Record], kinds: Sequence[str] | None = None) -> list[tuple[str, ...]]:
    return [(test_label(t), str(c.get("output")), str(c.get("kind") or "image"), how_compared(c), str(c.get("status")))
            for t in tests for c in t.get("comparisons") or []
            if kinds is None or c.get("kind") in kinds]


def media_lines(doc: Mapping[str, Any]) -> list[str]:
    """Terminal: one line per video, audio, latent or file output, saying how it was compared
    (so an exact file check is never mistaken for a perceptual one)."""
    return [f"compared {label} {output} ({kind}): {how} -> {status}"
            for label, output, kind, how, status in _compared_rows(doc.get("tests") or [], MEDIA_KINDS)]


def _compared_block(tests: Sequence[Record], passed_rows: int = PASSED_ROWS) -> list[str]:
    """How each output was compared: failing tests' outputs first, passing ones cut to a count."""
    failing = [t for t in tests if t.get("outcome") not in ("passed", "skipped")]
    rows = _compared_rows(failing)
    passing = _compared_rows([t for t in tests if t.get("outcome") in ("passed", "skipped")])
    if not rows and not passing:
        return []
    head = ("test", "output", "kind", "compared", "result")
    lines = ["<details>", f"<summary>{len(rows) + len(passing)} output(s) compared</summary>", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in [*rows, *passing[:passed_rows]])
    cut = max(0, len(passing) - passed_rows)
    return [*lines, "", *([_cut_line(cut, "output(s) of passing tests"), ""] if cut else []), "</details>", ""]
