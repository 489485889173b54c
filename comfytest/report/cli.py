"""``comfytest-report``: work with saved reports and history files, without running tests.

One module, one table of subcommands (``COMMANDS``): each row names the subcommand, adds its
arguments to its parser and runs it. Exit codes: 0 done, 2 bad input (one message on stderr
naming the file and how to fix it).

    comfytest-report trend HISTORY -o DIR [--last N]
    comfytest-report merge shard*/report.json -o DIR
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfytest.errors import ComfyTestError, ConfigError


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# --- trend ------------------------------------------------------------------------------------


def _trend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("history", type=Path, help="the history file written by --comfy-history (JSON lines)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                        help="folder for trend.html (self-contained) and trend.md")
    parser.add_argument("--last", type=int, default=10, metavar="N",
                        help="sessions in the markdown table (default 10; 0: all)")


def _trend(args: argparse.Namespace) -> int:
    from comfytest.report.trend import load_history, render_markdown, render_page

    source: Path = args.history
    if not source.is_file():
        raise ConfigError(f"history file {source} does not exist: pass the file given to --comfy-history")
    try:
        history = load_history(source)
    except OSError as exc:
        raise ConfigError(f"cannot read the history file {source}: {exc.strerror}") from None
    for line in history.skipped:
        print(f"comfytest-report: {line}", file=sys.stderr)
    out: Path = args.output
    out.mkdir(parents=True, exist_ok=True)
    (out / "trend.html").write_text(render_page(history, str(source)), encoding="utf-8")
    (out / "trend.md").write_text(render_markdown(history, args.last), encoding="utf-8")
    print(f"{len(history.entries)} session(s), {len(history.tests())} test(s): "
          f"{out / 'trend.html'}, {out / 'trend.md'}")
    return 0


# --- merge -------------------------------------------------------------------------------------

ARTEFACT_KEYS = ("baseline", "obtained", "diff", "side_by_side", "thumbnail", "baseline_copy")


def _merge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", nargs="+", type=Path, metavar="REPORT.json", help="report.json of each shard")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                        help="folder for the merged report.json, report.md and report.html")
    parser.add_argument("--html", choices=("linked", "self-contained"), default="linked",
                        help="report.html links the shards' images by relative path (default) or embeds them")


def merge_reports(paths: Sequence[Path]) -> dict[str, Any]:
    """One document from the reports of disjoint runs (CI shards, ``--comfy-shard i/N``); a test
    in two of them is an error naming both files."""
    from comfytest.report.document import load_report, merge_documents

    docs: list[dict[str, Any]] = []
    seen: dict[str, Path] = {}
    for path in paths:
        doc = load_report(path)
        for record in doc["tests"]:
            nodeid = str(record.get("nodeid"))
            if nodeid in seen:
                raise ConfigError(f"{nodeid} is in both {seen[nodeid]} and {path}: merge reports of disjoint "
                                  "runs (one per shard), or leave one of them out")
            seen[nodeid] = path
            _relocate(record, path.parent)
        docs.append(doc)
    return merge_documents(docs)


def _relocate(record: dict[str, Any], folder: Path) -> None:
    """Artefact paths are the shard machine's; point them at the copies beside the report
    (the downloaded artifact) when the original paths are not here."""
    for comparison in record.get("comparisons") or []:
        for key in ARTEFACT_KEYS:
            value = comparison.get(key)
            if value and not Path(value).exists():
                parts = Path(value).parts
                found = next((folder.joinpath(*parts[i:]) for i in range(1, len(parts))
                              if folder.joinpath(*parts[i:]).is_file()), None)
                comparison[key] = str(found) if found else value


def _merge(args: argparse.Namespace) -> int:
    """Write every rendering of the merged document, as a session would (keeping the previous
    report.json as report.previous.json)."""
    from comfytest.report.document import summary_line, write_json
    from comfytest.report.html import render_html
    from comfytest.report.text import render_markdown

    doc = merge_reports(args.reports)
    out: Path = args.output
    out.mkdir(parents=True, exist_ok=True)
    target = out / "report.json"
    if target.is_file():
        os.replace(target, out / "report.previous.json")
    written = [write_json(doc, target)]
    (out / "report.md").write_text(render_markdown(doc), encoding="utf-8")
    (out / "report.html").write_text(render_html(doc, out, images=args.html), encoding="utf-8")
    written += [out / "report.md", out / "report.html"]
    print(f"merged {len(args.reports)} report(s): {summary_line(doc)}")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


#: every subcommand; add a row for a new one
COMMANDS: tuple[Command, ...] = (
    Command("trend", "render a history file as charts (HTML) and a table (markdown)", _trend_arguments, _trend),
    Command("merge", "merge the report.json of CI shards into one and render every format", _merge_arguments, _merge),
)


def parser(prog: str = "comfytest report") -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=prog,
                                  description="Work with saved comfytest reports and history files, without running tests.")
    subs = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = subs.add_parser(command.name, help=command.help, description=command.help)
        command.arguments(sub)
        sub.set_defaults(run=command.run)
    return top


def main(argv: Sequence[str] | None = None, prog: str = "comfytest report") -> int:
    args = parser(prog).parse_args(argv)
    try:
        return int(args.run(args))
    except ComfyTestError as exc:
        print(f"comfytest-report {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
