"""Custom node packs that failed to import, read from a launched ComfyUI's log (pure).

ComfyUI keeps running when a pack in ``custom_nodes/`` raises on import: it logs the traceback,
``Cannot import <path> module for custom nodes: <exception>`` and, in its import-time table,
``0.0 seconds (IMPORT FAILED): <path>``. Every workflow using the pack then fails preflight as
if the pack were absent. ``import_failures`` finds those packs (never ComfyUI's own
``comfy_extras``, which fail for missing optional dependencies) with the exception and the file
and line inside the pack where it was raised, so the session can fail once, up front.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

from comfytest.errors import NodePackImportError

_FAILED = re.compile(r"^\s*[\d.]+ seconds \(IMPORT FAILED\): (?P<path>.+?)\s*$")
_CANNOT = re.compile(r"^Cannot import (?P<path>.+?) module for custom nodes: (?P<exc>.*)$")
_FILE = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)')


@dataclass(frozen=True)
class ImportFailure:
    """One pack that did not import: where it is, what it raised, and where."""

    pack: str  # the pack's folder (or single .py file) under custom_nodes/
    exception: str  # the last line of the traceback, e.g. "SyntaxError: invalid syntax"
    file: str | None = None
    line: int | None = None
    source: str | None = None  # the offending source line, when the traceback shows it

    def describe(self) -> str:
        where = f"\n    at {self.file}, line {self.line}" if self.file else ""
        code = f"\n      {self.source.strip()}" if self.source else ""
        return f"  - {PurePath(self.pack).name} ({self.pack}): {self.exception}{where}{code}"


def import_failures(log: str) -> list[ImportFailure]:
    """Every custom node pack the log reports as IMPORT FAILED, in log order."""
    lines = log.splitlines()
    failed = [m.group("path") for m in map(_FAILED.match, lines) if m]
    return [_failure(pack, lines) for pack in dict.fromkeys(failed)]


def _failure(pack: str, lines: list[str]) -> ImportFailure:
    end = next((i for i, ln in enumerate(lines) if (m := _CANNOT.match(ln)) and m.group("path") == pack), None)
    if end is None:
        return ImportFailure(pack, "the import failed (no traceback in the log)")
    start = max((i for i in range(end) if lines[i].startswith("Traceback (most recent call last)")), default=end)
    block = lines[start:end]
    exception = next((ln.strip() for ln in reversed(block) if ln.strip()), "") or \
        _CANNOT.match(lines[end]).group("exc")  # type: ignore[union-attr]
    frames = [(i, m) for i, ln in enumerate(block) if (m := _FILE.match(ln))]
    inside = [(i, m) for i, m in frames if _within(m.group("file"), pack)] or frames[-1:]
    if not inside:
        return ImportFailure(pack, exception)
    index, match = inside[-1]
    source = block[index + 1] if index + 1 < len(block) and not _FILE.match(block[index + 1]) else None
    if source is not None and (source.strip() == exception or not source.startswith("    ")):
        source = None
    return ImportFailure(pack, exception, match.group("file"), int(match.group("line")), source)


def _within(file: str, pack: str) -> bool:
    return file == pack or file.startswith(pack.rstrip("/") + "/")


def check_log(log: str, log_path: str) -> None:
    """Raise NodePackImportError naming every pack that failed to import."""
    failures = import_failures(log)
    if not failures:
        return
    raise NodePackImportError(
        f"{len(failures)} custom node pack(s) failed to import in the ComfyUI that comfytest started, "
        "so every workflow using them would fail:\n"
        + "\n".join(f.describe() for f in failures)
        + f"\nFix the pack and run again (server log: {log_path}). This is the pack's failure, not the "
        "machine's: the session stops here with exit code 1, and --comfy-missing=skip does not skip it."
    )


__all__ = ["ImportFailure", "check_log", "import_failures"]
